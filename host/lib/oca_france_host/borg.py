"""BorgBackup, as both ends drive it: the environment borg runs with (the passphrase from a
file through BORG_PASSCOMMAND, never in an argument nor in the environment; SSH with one key
and one pinned host key), and its errors said with their cause."""

from __future__ import annotations

import atexit
import json
import os
import shlex
import shutil
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Collection
from pathlib import Path

from oca_france_host import runner

# borg's exit status 2 with these words in its output: the cause, as an operator reads it.
CAUSES = (
    ("newer than repository", "the repository is older than borg here last saw it: rolled"
     " back by the backup host (then: odoo-offsite-push --after-rollback, README), or an attack"),
    ("BORG_PASSCOMMAND failed", "the passphrase file could not be read"),
    ("passphrase supplied in BORG_PASSPHRASE", "wrong passphrase"),
    ("passphrase", "wrong passphrase (ODOO_OCA_FRANCE_BORG_PASSPHRASE)"),
    ("Failed to create/acquire the lock", "the repository is locked (a borg still running,"
     " or one that died: `borg break-lock` on the backup host once none runs)"),
    ("Connection refused", "the backup host refused the connection"),
    ("Connection timed out", "the backup host did not answer (unreachable)"),
    ("No route to host", "the backup host is unreachable (no route)"),
    ("Host key verification failed", "the backup host's key is not the pinned one"),
    ("Could not resolve hostname", "the backup host's name does not resolve"),
    ("Permission denied (publickey", "the backup host refused the key"),
    # borg's own line after any of ssh's above: the least precise, looked for last of them.
    ("Connection closed by remote host", "the backup host closed the connection (its guarded"
     " prune held the repository for offsite_lock_wait_sec; a compact there did not finish:"
     " systemctl start odoo-offsite-prune there finishes it; or its sshd or borg failed)"),
    ("No space left on device", "a disk is full (the backup host's, or this host's where"
     " borg extracts)"),
    ("Insufficient free space", "the backup host's disk is full"),
    ("does not exist", "no such repository or archive"),
    ("is not a valid repository", "no repository there"),
    ("Repository path not allowed", "the key may not reach that repository"),
    ("Permission denied", "permission denied (see borg's output)"),
    ("errors found", "borg check found damage"),
    ("problems found", "borg check found damage"),
)  # fmt: skip


class BorgError(Exception):
    """borg failed; the message names the cause when borg's output does."""


# What `run` reads the repository lock's wait from (borg has no variable for it).
LOCK_WAIT = "OCA_FRANCE_BORG_LOCK_WAIT_SEC"
# Where ssh writes its own errors (ssh -E): borg relays ssh's stderr, but may exit on the
# closed connection before it relays the line that says why.
SSH_LOG = "OCA_FRANCE_BORG_SSH_LOG"


def environment(
    passphrase_file: str, repository: str, lock_wait_sec: int, ssh: list[str] | None = None
) -> dict:
    """What borg runs with: ours, plus its repository, passphrase command and SSH, and how long
    it waits for the repository's lock (offsite_lock_wait_sec) before it fails."""
    env = dict(os.environ)
    env.update(
        BORG_REPO=repository,
        **{LOCK_WAIT: str(int(lock_wait_sec))},
        BORG_PASSCOMMAND=shlex.join(["cat", passphrase_file]),
        # Never on a repository that moved or is not encrypted: both mean a substituted one.
        BORG_RELOCATED_REPO_ACCESS_IS_OK="no",
        BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="no",
        BORG_CHECK_I_KNOW_WHAT_I_AM_DOING="NO",
        BORG_DELETE_I_KNOW_WHAT_I_AM_DOING="NO",
    )
    env.pop("BORG_PASSPHRASE", None)
    if ssh:
        fd, log = tempfile.mkstemp(prefix="borg-ssh-", suffix=".log")
        os.close(fd)
        atexit.register(lambda: Path(log).unlink(missing_ok=True))
        env.update(BORG_RSH=shlex.join([*ssh, "-E", log]), **{SSH_LOG: log})
    return env


def cause(output: str) -> str:
    for words, said in CAUSES:
        if words in output:
            return said
    return "see borg's output"


def argv_for(args: list[str], env: dict) -> list[str]:
    """borg ARGS, waiting for the repository's lock as long as configured; ssh's log emptied
    (this run's lines only)."""
    if env.get(SSH_LOG):
        Path(env[SSH_LOG]).write_text("")
    return ["borg", args[0], f"--lock-wait={env[LOCK_WAIT]}", *args[1:]]


def failure(command: str, output: str, env: dict) -> BorgError:
    """borg COMMAND failed: the error, its cause named from borg's and ssh's last words."""
    said = Path(env[SSH_LOG]).read_text(errors="replace") if env.get(SSH_LOG) else ""
    output = f"{output}\n{said}".strip()
    last = " | ".join(output.splitlines()[-3:])
    return BorgError(f"borg {command} failed ({cause(output)}): {last}")


def run(args: list[str], env: dict, cwd: str | None = None) -> subprocess.CompletedProcess:
    """borg ARGS (its output captured). On failure a BorgError with the cause and borg's last
    lines."""
    done = runner.run(argv_for(args, env), env=env, cwd=cwd, capture=True, check=False)
    # 1 is borg's "warning": from check, damage found; from create, a file it could not read
    # (a backup never changes while pushed). Neither passes here.
    if done.returncode != 0:
        raise failure(args[0], f"{done.stdout or ''}\n{done.stderr or ''}", env)
    return done


class UnsafeArchive(BorgError):
    """An archive holding what a backup never holds: a link, a device, a path leaving it."""


def extract(env: dict, archive: str, target: Path) -> None:
    """ARCHIVE's files in TARGET, emptied first (the drill's scratch, a recovery's extract),
    written here from borg's tar stream, never by `borg extract`: it follows a symlink the
    archive itself holds (CVE-2026-62268), and an archive is what prod's key wrote, so a
    compromised prod could have it write anywhere its reader may (on the backup host, the
    repository itself)."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True, mode=0o700)
    try:
        export = argv_for(["export-tar", f"::{archive}", "-"], env)
        with runner.reading(export, env=env, cut=(tarfile.TarError, EOFError)) as tar:
            unpack(tar, target)
    except runner.Failed as failed:
        ended = f"killed by signal {-failed.status}" if failed.status < 0 else ""
        raise failure("export-tar", failed.output or ended, env) from None
    except (tarfile.TarError, EOFError) as cut:  # borg ended well, its stream did not
        raise BorgError(f"borg export-tar: its stream ended short ({cut})") from None


def inside(name: str) -> tuple[str, ...]:
    """A member's path as parts below the extract ("." and empty parts dropped); a path that
    is absolute or climbs out refused."""
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if name.startswith("/") or ".." in parts:
        raise UnsafeArchive(f"{name!r}: a path leaving the extract")
    return parts


def unpack(stream, target: Path) -> None:
    """A tar stream's directories and regular files (and hard links between them) under
    TARGET, each path checked to stay inside; anything else refused (UnsafeArchive). No link
    is ever made that a later path could pass through."""
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            tar.members = []  # a stream's members are never looked up: not kept (memory)
            parts = inside(member.name)
            if member.isdir():
                target.joinpath(*parts).mkdir(mode=0o700, parents=True, exist_ok=True)
                continue
            if not parts:
                raise UnsafeArchive(f"{member.name!r}: a file in the extract's own place")
            path = target.joinpath(*parts)
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            source = target.joinpath(*inside(member.linkname)) if member.islnk() else None
            if source is not None and stat.S_ISREG(os.lstat(source).st_mode):  # written here
                os.link(source, path, follow_symlinks=False)
            elif member.isreg():
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                with os.fdopen(os.open(path, flags, member.mode & 0o755), "wb") as out:
                    shutil.copyfileobj(tar.extractfile(member), out, 1 << 20)
                os.utime(path, (member.mtime, member.mtime))
            else:
                kind = "symbolic link" if member.issym() else "link, device or fifo"
                raise UnsafeArchive(
                    f"{member.name!r}: a {kind} (a backup holds files and directories only:"
                    " an archive made to write outside its extract?)"
                )


def newest(archives: list[dict], excluding: Collection[str] = ()) -> dict | None:
    """The newest of `archives` by their time (borg's start, ISO: sorts as it reads), a name in
    `excluding` never: what the drill checks and a recovery takes by default. Of two in the
    same second, the one borg lists later (it lists them in the order they were made)."""
    kept = [archive for archive in archives if archive["name"] not in excluding]
    return max(reversed(kept), key=lambda archive: archive["start"]) if kept else None


def archives(env: dict) -> list[dict]:
    """The repository's archives, oldest first: name, start (ISO), id."""
    listed = json.loads(run(["list", "--json"], env).stdout)
    return [
        {"name": a["name"], "start": a["start"], "id": a["id"]} for a in listed.get("archives", [])
    ]
