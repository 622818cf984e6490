"""The one seam between the host programs and the tools they drive (git, uv, psql, pg_dump,
pg_restore, rsync, systemctl, curl...): each run as an argument list, found on PATH, so that
the unit tests put fakes first on PATH and nothing else changes. No shell, ever."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

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


@contextmanager
def reading(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cut: tuple[type[BaseException], ...] = (),
) -> Iterator[IO[bytes]]:
    """argv's stdout, a binary pipe read while it runs (borg export-tar into our own unpacking);
    what is left unread is drained. Raises Failed (with its stderr) when it exits non-zero, and
    when the reading raised one of `cut` (the stream ended short) because the command failed:
    its own words say why. Stopped, never left running, when the reading fails otherwise."""
    with tempfile.TemporaryFile() as errors:

        def failed(status: int) -> Failed:
            errors.seek(0)
            return Failed(argv, status, errors.read().decode(errors="replace"))

        try:
            process = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=errors, env=env)
        except OSError as error:
            raise Failed(argv, 127, str(error)) from None
        try:
            yield process.stdout
            while process.stdout.read(1 << 20):
                pass
        except BaseException as error:
            # Its output closed: it ends on its own (borg then releases its lock), or is killed.
            process.stdout.close()
            try:
                status = process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise error from None
            if isinstance(error, cut) and status != 0:
                raise failed(status) from error
            raise
        finally:
            process.stdout.close()
        status = process.wait()
        if status != 0:
            raise failed(status)


def output(argv: Sequence[str], **options) -> str:
    """argv's stdout, stripped (raises Failed)."""
    return run(argv, capture=True, **options).stdout.strip()


def succeeds(argv: Sequence[str], **options) -> bool:
    """Whether argv exits 0, its output discarded."""
    options.setdefault("stdout", subprocess.DEVNULL)
    options.setdefault("stderr", subprocess.DEVNULL)
    return run(argv, check=False, **options).returncode == 0


class Session:
    """A command kept running while we talk to it a line at a time (psql holding a
    transaction open while pg_dump reads its snapshot). Ends with its input: `with` closes it,
    and raises Failed when it failed."""

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None = None):
        self.argv = list(argv)
        try:
            self.process = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
            )
        except OSError as error:
            raise Failed(argv, 127, str(error)) from None

    def ask(self, line: str) -> str:
        """Send one line; its answer's first line (raises Failed when the command ended)."""
        try:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # it ended: said below
        answer = self.process.stdout.readline()
        if not answer:
            status = self.process.wait()
            raise Failed(self.argv, status or 1, f"ended before answering {line[:60]!r}")
        return answer.rstrip("\n")

    def __enter__(self) -> Session:
        return self

    def __exit__(self, kind, *_) -> None:
        try:
            self.process.stdin.close()
        except BrokenPipeError:
            pass
        if kind is not None:  # interrupted or failed: never leave it running without us
            self.process.terminate()
        status = self.process.wait()
        self.process.stdout.close()
        if kind is None and status != 0:
            raise Failed(self.argv, status)
