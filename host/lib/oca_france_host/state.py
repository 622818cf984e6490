"""The instance's authority, in one place: the deploy lock, the deploy's state file, the
deploy history, and the rule that nothing acts on an unfinished deploy.

- The lock (flock on deploy_lock_file) is held by whoever touches the database, the filestore,
  the venv or the service: a deploy, a backup, a repair, recette's acceptance, an apply. Its
  holder writes who it is into it, so that a waiter can say whom it waits for. The lock's file
  descriptor is close-on-exec: what a holder starts (git's background maintenance...) never
  keeps it after the holder is gone.
- The state file (deploy_state_file, key=value lines) is written by the deploy before each
  step, in one rename, and outlives a deploy that died: while it is there, the deploy is
  unfinished and nothing but its repair may act on the data.
- The history (deploy_history_file): one JSON line per deploy, rollback or repair.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import sys
import time
from datetime import datetime
from pathlib import Path


class LockBusy(Exception):
    """The lock stayed held for the whole wait (or a deploy stayed unfinished)."""


def program() -> str:
    return Path(sys.argv[0]).name


def waiting(message: str) -> None:
    """The line every program says when it waits."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"{stamp} {program()}: {message}", file=sys.stderr, flush=True)


# --- The lock


class Held:
    """The lock, held until closed (or the process exits)."""

    def __init__(self, fd: int):
        self.fd = fd

    def close(self) -> None:
        if self.fd >= 0:
            os.ftruncate(self.fd, 0)  # no longer its holder: nobody is named
            os.close(self.fd)  # releases the flock
            self.fd = -1

    def __enter__(self) -> Held:
        return self

    def __exit__(self, *_) -> None:
        self.close()


def holder(lock_file: str) -> str:
    """Who holds the lock, as it wrote itself in; "" when unknown (a holder that died named
    itself and is gone; one from outside names nobody)."""
    try:
        text = Path(lock_file).read_text(encoding="utf-8", errors="replace").strip()[:200]
    except OSError:
        return ""
    found = re.search(r"\(pid (\d+)\)", text)
    return text if found and alive(int(found.group(1))) else ""


def deploying(lock_file: str) -> str:
    """The deploy (or its repair) holding the lock now, as it named itself; "" when none."""
    found = holder(lock_file)
    return found if found.startswith("deploy") else ""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's: alive
    return True


def is_held(lock_file: str) -> bool:
    """Whether someone holds the lock now (opened for reading: nothing is created)."""
    try:
        fd = os.open(lock_file, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def take(
    lock_file: str,
    wait: float,
    poll: float = 1.0,
    say: bool = True,
    who: str = "",
    holders: str = "a deploy, a backup or a repair",
) -> Held:
    """The lock, waiting up to `wait` seconds (saying so, and for whom); raises LockBusy.
    `holders`: who may hold it, as the waiting line says."""
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise LockBusy(f"{lock_file} still held after {wait:.0f}s ({holders})") from None
            if say:
                held_by = holder(lock_file)
                waiting(
                    f"{lock_file} is held ({holders}"
                    f"{': ' + held_by if held_by else ''}): waiting up to {wait:.0f}s"
                )
                say = False
            time.sleep(poll)
    os.ftruncate(fd, 0)
    stamp = datetime.now().astimezone().isoformat(timespec="seconds")
    os.pwrite(fd, f"{who or program()} (pid {os.getpid()}) since {stamp}\n".encode(), 0)
    return Held(fd)


def take_when_finished(lock_file: str, state_file: str, wait: float, poll: float = 2.0) -> Held:
    """The lock, once no deploy is unfinished: while a deploy's state file is there (it died:
    its repair comes first), the lock is left to the repair and taken again later. Raises
    LockBusy after `wait` seconds."""
    deadline = time.monotonic() + wait
    said = False  # one waiting line per wait, not one per try
    while True:
        held = take(lock_file, max(deadline - time.monotonic(), 0), poll, say=not said)
        found = unfinished(state_file)
        if found is None:
            return held
        held.close()
        ref, step = found.get("ref", "?"), found.get("step", "?")
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


# --- The state file: one format (key=value lines), this one parser.


def unfinished(state_file: str) -> dict[str, str] | None:
    """The unfinished deploy's state; None when no deploy is unfinished (the one rule)."""
    try:
        lines = Path(state_file).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return None
    pairs = (line.split("=", 1) for line in lines if "=" in line)
    return {key: value for key, value in pairs if key}


def write(state_file: str, state: dict[str, str]) -> None:
    """The whole state, in one rename: a reader sees the old one or the new one."""
    temporary = f"{state_file}.tmp"
    text = "".join(f"{key}={str(value).replace(chr(10), ' ')}\n" for key, value in state.items())
    Path(temporary).write_text(text, encoding="utf-8")
    os.replace(temporary, state_file)


def clear(state_file: str) -> None:
    Path(state_file).unlink(missing_ok=True)


# --- The history: one JSON line per deploy, rollback or repair.


def record(history_file: str, **fields) -> None:
    entry = {"time": datetime.now().astimezone().isoformat(timespec="seconds")}
    entry.update({key: (None if value == "" else value) for key, value in fields.items()})
    with open(history_file, "a", encoding="utf-8") as history:
        history.write(json.dumps(entry) + "\n")


def history(history_file: str) -> list[dict]:
    """Every entry, oldest first (a line that does not parse is skipped)."""
    try:
        lines = Path(history_file).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    entries = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries
