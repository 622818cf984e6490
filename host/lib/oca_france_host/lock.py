"""The deploy's lock and state file, as every program reads them.

The lock (flock on deploy_lock_file) is held by whoever touches the database, the filestore
or the service: a deploy, a backup, a repair, recette's acceptance. The state file
(deploy_state_file, key=value lines written by the deploy before each step) outlives a
deploy that died: while it is there, the deploy is unfinished and only its repair may act.

    python3 -m oca_france_host.lock unfinished STATE_FILE
        "<ref> <step>" of the unfinished deploy (the bash programs: host_unfinished_deploy);
        status 1 when none is
"""

from __future__ import annotations

import fcntl
import sys
import time
from pathlib import Path


class LockBusy(Exception):
    """The lock stayed held for the whole wait."""


def waiting(message: str) -> None:
    """The line every program says when it waits (host_lock in host.sh says the same)."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"{stamp} {Path(sys.argv[0]).name}: {message}", file=sys.stderr, flush=True)


def take(lock_file: str, wait: float, poll: float = 1.0, say: bool = True):
    """The lock, waiting up to `wait` seconds; an open handle (closing it releases it)."""
    handle = open(lock_file, "a")  # noqa: SIM115 - held by the caller
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() >= deadline:
                handle.close()
                raise LockBusy(
                    f"{lock_file} still held after {wait:.0f}s (a deploy, backup or repair)"
                ) from None
            if say:
                waiting(
                    f"{lock_file} is held (a deploy, a backup or a repair): waiting up to"
                    f" {wait:.0f}s"
                )
                say = False
            time.sleep(poll)


def take_when_finished(lock_file: str, state_file: str, wait: float, poll: float = 2.0):
    """The lock, once no deploy is unfinished: while a deploy's state file is there (it died:
    its repair comes first), the lock is left to the repair and taken again later. Raises
    LockBusy after `wait` seconds."""
    deadline = time.monotonic() + wait
    said = False  # one waiting line per wait, not one per try
    while True:
        held = take(lock_file, max(deadline - time.monotonic(), 0), poll, say=not said)
        unfinished = read_state(state_file)
        if unfinished is None:
            return held
        held.close()
        ref, step = unfinished.get("ref", "?"), unfinished.get("step", "?")
        if time.monotonic() >= deadline:
            raise LockBusy(
                f"a deploy of {ref} is still unfinished (step {step}) after {wait:.0f}s:"
                " its repair comes first"
            )
        if not said:
            waiting(
                f"a deploy of {ref} is unfinished (step {step}): waiting up to {wait:.0f}s"
                " for its repair"
            )
            said = True
        time.sleep(poll)


def read_state(state_file: str) -> dict[str, str] | None:
    """The unfinished deploy's state (None when no deploy is unfinished)."""
    try:
        lines = Path(state_file).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return None
    pairs = (line.split("=", 1) for line in lines if "=" in line)
    return {key: value for key, value in pairs}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "unfinished":
        print(__doc__.strip(), file=sys.stderr)
        return 2
    state = read_state(argv[1])
    if state is None:
        return 1
    print(state.get("ref", "?"), state.get("step", "?"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
