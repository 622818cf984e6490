"""The one seam between the host programs and the tools they drive (git, uv, psql, pg_dump,
pg_restore, rsync, systemctl, curl...): each run as an argument list, found on PATH, so that
the unit tests put fakes first on PATH and nothing else changes. No shell, ever."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

TIMED_OUT = (124, 137)  # coreutils timeout: the command ran out of time (TERM, then KILL)


class Failed(Exception):
    """A command exited non-zero (or could not start)."""

    def __init__(self, argv: Sequence[str], status: int, output: str = ""):
        self.argv, self.status, self.output = list(argv), status, output
        super().__init__(f"{' '.join(self.argv)} exited {status}")

    @property
    def timed_out(self) -> bool:
        return self.status in TIMED_OUT


def bounded(argv: Sequence[str], seconds: int | None) -> list[str]:
    """argv cut short after `seconds` (TERM, then KILL 30 s later): coreutils timeout, which
    also stops what the command started in its process group."""
    if not seconds:
        return list(argv)
    return ["timeout", "--kill-after=30", str(seconds), *argv]


def run(
    argv: Sequence[str],
    *,
    cwd: str | Path | None = None,
    timeout: int | None = None,
    input: str | None = None,
    capture: bool = False,
    check: bool = True,
    stdout=None,
    stderr=None,
    env: dict[str, str] | None = None,
    pass_fds: tuple[int, ...] = (),
) -> subprocess.CompletedProcess:
    """Run argv; raise Failed when it fails (check; without check, one that cannot start
    returns status 127). capture: its stdout as text (stderr too, unless given); otherwise its
    output goes to `stdout`/`stderr` (default: ours). pass_fds: descriptors it inherits."""
    command = bounded(argv, timeout)
    try:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.PIPE if input is not None else None,
            text=True,
            stdout=subprocess.PIPE if capture else stdout,
            stderr=stderr if stderr is not None else (subprocess.PIPE if capture else None),
            env=env,
            pass_fds=pass_fds,
        )
    except OSError as error:  # not installed, not executable, no such directory
        if check:
            raise Failed(argv, 127, str(error)) from None
        return subprocess.CompletedProcess(argv, 127, "", str(error))
    try:
        out, err = process.communicate(input)
    except BaseException:
        # Interrupted (Ctrl-C, a signal of ours): stop the command (coreutils timeout passes
        # the TERM on), never leave it running without us.
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        raise
    done = subprocess.CompletedProcess(command, process.returncode, out, err)
    if check and done.returncode != 0:
        output = "\n".join(part for part in (done.stdout, done.stderr) if isinstance(part, str))
        raise Failed(argv, done.returncode, output)
    return done


def output(argv: Sequence[str], **options) -> str:
    """argv's stdout, stripped (raises Failed)."""
    return run(argv, capture=True, **options).stdout.strip()


def succeeds(argv: Sequence[str], **options) -> bool:
    """Whether argv exits 0, its output discarded."""
    options.setdefault("stdout", subprocess.DEVNULL)
    options.setdefault("stderr", subprocess.DEVNULL)
    return run(argv, check=False, **options).returncode == 0
