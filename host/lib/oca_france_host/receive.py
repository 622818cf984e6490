"""odoo-production-data-receive (recette): what prod's transfer key runs, and nothing else.

    odoo-production-data-receive      (sshd's forced command; rsync's in SSH_ORIGINAL_COMMAND)

Each rsync session of prod's transfer:
  1. takes the incoming lock (the acceptance holds it while it copies a delivery out, so a
     delivery is never rewritten while it is being accepted), waiting up to
     production_data_incoming_lock_wait_sec;
  2. runs rrsync -wo (write into the incoming directory, nothing else) under a size limit,
     production_data_incoming_limit_mib for the whole directory: no file may grow past what is
     left (the kernel's RLIMIT_FSIZE: rsync fails with "File too large"), and the session is stopped
     within seconds of the directory going over it (Watch);
  3. a session that went over is refused: the incoming directory is emptied (it only holds
     the last delivery, already copied out: prod's next transfer sends everything again).
Messages go to stderr: prod's rsync shows them, and its unit fails with them.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from oca_france_host import config, programs, state

BLOCK = 4096  # what a file or a directory takes at least: many small files add up too
POLL_SEC = 1.0
WALK_EVERY_SEC = 2.0
RSYNC_FILE_IO_ERROR = 11  # rsync's status when a write fails: past RLIMIT_FSIZE, disk full


def say(message: str) -> None:
    print(f"odoo-production-data-receive: {message}", file=sys.stderr, flush=True)


def usage(directory: Path) -> int:
    """The bytes the directory's entries take: each at least a block, sparse files at their
    size (an upper bound of what they may come to take). Entries removed meanwhile (rsync's
    temporary files, --delete) count for nothing."""
    total = 0
    stack = [directory]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except FileNotFoundError:
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            taken = max(info.st_size, info.st_blocks * 512)
            total += max(-(-taken // BLOCK) * BLOCK, BLOCK)
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
    return total


def filesystem_used(directory: Path) -> int:
    fs = os.statvfs(directory)
    return (fs.f_blocks - fs.f_bfree) * fs.f_frsize


def empty(directory: Path) -> None:
    for entry in directory.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


class Watch:
    """The incoming directory's size during a session: walked every WALK_EVERY_SEC (or
    rarer for a tree so large that walking it would take more than a tenth of the time),
    and at once when the filesystem's own count, read each second, says the limit may be
    passed (that count moves with every writer on the filesystem, PostgreSQL included, up
    and down: it hastens a walk, never replaces one)."""

    def __init__(self, directory: Path, limit: int):
        self.directory, self.limit = directory, limit
        self.walk()

    def walk(self) -> None:
        started = time.monotonic()
        self.rebase(usage(self.directory))
        spent = time.monotonic() - started
        self.next_walk = time.monotonic() + max(WALK_EVERY_SEC, 10 * spent)

    def rebase(self, used: int) -> None:
        self.used, self.fs_used = used, filesystem_used(self.directory)

    def over(self) -> bool:
        estimate = self.used + filesystem_used(self.directory) - self.fs_used
        if estimate <= self.limit and time.monotonic() < self.next_walk:
            return False
        self.walk()
        return self.used > self.limit


def run_limited(command: list[str], room: int, watch: Watch) -> tuple[int, bool]:
    """(exit status, stopped for going over the limit)."""

    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (room, room))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past it fails, with EFBIG
        os.setpgid(0, 0)  # its own group: stopped with everything it runs

    child = subprocess.Popen(command, preexec_fn=limits)  # noqa: PLW1509 - rlimits, no threads
    while True:
        try:
            return child.wait(timeout=POLL_SEC), False
        except subprocess.TimeoutExpired:
            if watch.over():
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
                return 1, True


def incoming_limit(settings: dict) -> int:
    """The incoming directory's limit, in bytes."""
    return int(config.value(settings, "production_data_incoming_limit_mib")) * 2**20


def main(argv: list[str]) -> int:
    refused = programs.refused_arguments(argv, __doc__)
    if refused is not None:
        return refused
    settings = config.load()
    incoming = Path(config.value(settings, "incoming_dir"))
    limit = incoming_limit(settings)
    command = list(config.value(settings, "receive_command"))
    try:
        held = state.take(
            config.value(settings, "incoming_lock_file"),
            config.value(settings, "production_data_incoming_lock_wait_sec"),
        )
    except state.LockBusy as busy:
        say(f"ERROR: recette is still accepting the previous delivery: {busy}")
        return 1
    with held:
        watch = Watch(incoming, limit)
        if watch.used > limit:  # the limit was lowered: start from nothing
            say(f"{incoming} holds {mib(watch.used)}, over its {mib(limit)}: emptied first")
            empty(incoming)
            watch.walk()
        status, stopped = run_limited(command, max(limit - watch.used, 0), watch)
        if stopped or status == RSYNC_FILE_IO_ERROR or usage(incoming) > limit:
            empty(incoming)
            say(
                f"ERROR: delivery refused: {incoming} would hold more than its limit"
                f" ({mib(limit)}, production_data_incoming_limit_mib on recette), or a write"
                " failed there; emptied, nothing accepted"
            )
            return 1
        return status
