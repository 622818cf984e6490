"""odoo-offsite: the backup host's side of prod's off-site repository, as its owner (borg),
the passphrase handed to the unit as a systemd credential (root's file, never in odoo's nor
prod's reach).

    odoo-offsite --init          create the repository (repokey-blake2), once (odoo-offsite-init)
    odoo-offsite --prune         the guard, then prune and compact (odoo-offsite-prune.timer)
    odoo-offsite --transactions  the repository's transactions, and the last one this host made
    odoo-offsite --rollback N    undo every transaction after N (a delete through prod's key)
    odoo-offsite --drill         restore the newest archive into scratch, check it (drill.py)

The guard: prod's key can only append (borg serve --append-only), so an archive deleted
through it is only a transaction in the repository's log until a client with full access
commits it; this prune is that client. Before it prunes, every archive it saw at its last run
must still be there unless it pruned it itself, none of prod's commits since may have deleted
an object (borg's raw delete keeps archives listed), and the newest must be fresh
(offsite_max_age_hours). A guard that trips prunes and compacts nothing, fails its unit, and
says which archives went missing: the log's transactions can still be rolled back (README).
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import struct
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

from oca_france_host import borg, config, runner, state

SEEN = "seen.json"  # the archives the last run left, and when
KEY_COPY = "repository-key"  # the repository's key as `borg key export` writes it
LAST_PRUNE = "last-prune.json"  # the last run's result (status shows it)


class GuardTripped(Exception):
    """Archives went missing, or none is fresh: nothing is pruned."""


def log(message: str, error: bool = False) -> None:
    line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} odoo-offsite: {message}"
    print(line, file=sys.stderr if error else sys.stdout, flush=True)


USAGE = """Usage: odoo-offsite --init | --prune | --transactions | --rollback N
  --init            create prod's repository (repokey-blake2), once
  --prune           check the guard (no archive gone that this host did not prune, the
                    newest fresh), then prune (keep daily/weekly/monthly) and compact
  --transactions    the repository's transactions (id, UTC time), and the last this host made
  --rollback N      undo every transaction after N: what prod's key deleted comes back
                    (never past the last transaction this host made: it compacted before)
  --drill           restore the newest archive into a scratch database and directory, check
                    it against its manifest (sha256s, row counts), then borg check"""


def environment(settings: dict) -> dict:
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if not credentials:
        raise config.ConfigError(
            "no passphrase: run through its unit (odoo-offsite-init or odoo-offsite-prune),"
            " or as root (which hands it over the same way)"
        )
    passphrase = f"{credentials}/{settings['offsite_credential']}"
    return borg.environment(
        passphrase, settings["offsite_repository"], settings["offsite_lock_wait_sec"]
    )


def state_file(settings: dict, name: str) -> Path:
    return Path(settings["offsite_state_dir"]) / name


def write_json(path: Path, value) -> None:
    staged = path.with_name(f".{path.name}.new")
    staged.write_text(json.dumps(value, indent=1) + "\n", encoding="utf-8")
    staged.replace(path)


def read_json(path: Path, default):
    """A state file's content, `default` when there is none; ValueError when it is not JSON
    of the default's type."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default
    if not isinstance(value, type(default)):
        raise ValueError(f"{path}: not what this program writes there")
    return value


def init(settings: dict) -> int:
    repository = settings["offsite_repository"]
    if Path(repository, "config").exists():
        log(f"{repository} exists: nothing to do")
        return 0
    borg.run(["init", "--encryption=repokey-blake2", repository], environment(settings))
    check_key(settings)  # its first copy
    log(f"created {repository} (repokey-blake2); export its key: README, Off-site copies")
    return 0


def repository_key(settings: dict) -> str:
    """The repository's key (encrypted with the passphrase), in `borg key export`'s form."""
    path = Path(settings["offsite_repository"], "config")
    parsed = configparser.ConfigParser()
    try:
        parsed.read(path, encoding="utf-8")
        return f"BORG_KEY {parsed['repository']['id']}\n{parsed['repository']['key']}\n"
    except (KeyError, configparser.Error) as error:
        raise GuardTripped(f"{path} holds no repository key ({error!r}): not borg's") from None


def check_key(settings: dict) -> None:
    """borg serve lets an append-only client rewrite the repository's key (`borg key
    change-passphrase` or `key import` through prod's key): every archive would then be
    unreadable with the passphrase. Compared with the copy kept here since the first run;
    raises GuardTripped, saying how to put it back."""
    copy = state_file(settings, KEY_COPY)
    current = repository_key(settings)
    try:
        kept = copy.read_text(encoding="utf-8")
    except FileNotFoundError:
        log(f"no copy of the repository's key yet (a first run): keeping it in {copy}")
        fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(current)
        return
    if kept != current:
        raise GuardTripped(
            "the repository's key was replaced (borg key change-passphrase or key import"
            " through prod's key?): no archive reads with the passphrase until it is put"
            f" back: sudo -u {settings['offsite_user']} borg key import"
            f" {settings['offsite_repository']} {copy}"
        )


# A push commits its archive after it started, up to its retries later: an archive new since
# the last run may start this long before that run; never earlier (backdated), nor ahead of
# the clock (future-dated: it would look fresh for ever).
PUSH_GRACE = timedelta(hours=12)
CLOCK_SKEW = timedelta(hours=1)
PRUNED = re.compile(r"^Pruning archive.*\[([0-9a-f]{64})\]\s*$")


def start_of(archive: dict) -> datetime:
    return datetime.fromisoformat(archive["start"])


def guard(settings: dict, archives: list[dict], now: datetime) -> None:
    """Raises GuardTripped when an archive seen last time is gone or replaced (same name,
    another archive), when prod committed more transactions since the last run than it added
    archives (one pushed and deleted in between: never seen, yet gone), when one of them
    deleted or overwrote an object other than the manifest (archives' data), when a new one is dated
    before the last run or in the future (it would take a real one's place in the retention),
    or when none is fresh."""
    seen = read_json(state_file(settings, SEEN), {})
    if not seen:
        log("nothing seen before (a first run, or its state lost): what is there is the baseline")
    known = seen.get("archives") if isinstance(seen.get("archives"), dict) else {}
    present = {(a["name"], a["id"]) for a in archives}
    missing = sorted(name for name, ident in known.items() if (name, ident) not in present)
    if missing:
        raise GuardTripped(
            f"{len(missing)} archive(s) gone or replaced that this host did not prune:"
            f" {', '.join(missing)} (deleted through prod's key? the repository's log can"
            " still roll it back: README)"
        )
    own = seen.get("transaction")
    if isinstance(own, int):
        # borg logs each commit of an append-only client: a push is one (it never checkpoints,
        # push.py), a delete, a prune or a compact through prod's key one that adds no archive.
        since = [number for number, _ in transactions(settings) if number > own]
        added = [a for a in archives if a["id"] not in known.values()]
        if len(since) > len(added):
            raise GuardTripped(
                f"prod committed {len(since)} transaction(s) since the last run"
                f" ({', '.join(map(str, since))}) and added {len(added)} archive(s): an archive"
                " pushed then deleted, or another write through prod's key (the repository's"
                " log can still roll it back: README)"
            )
        deleted = objects_deleted_by_prod(settings, own)
        if deleted:
            raise GuardTripped(
                f"prod's key deleted or overwrote {sum(map(len, deleted.values()))} object(s)"
                f" of the repository since the last run (transaction(s)"
                f" {', '.join(map(str, deleted))}): archives' data, through borg's raw calls,"
                " which a compact would destroy (the repository's log can still roll it back:"
                " README)"
            )
    if not archives:
        raise GuardTripped("the repository holds no archive (no push ever arrived)")
    since = datetime.fromisoformat(seen["time"]) if seen.get("time") else None
    odd = sorted(
        a["name"]
        for a in archives
        if a["id"] not in known.values()
        and (
            start_of(a) > now + CLOCK_SKEW
            or (since is not None and start_of(a) < since - PUSH_GRACE)
        )
    )
    if odd:
        raise GuardTripped(
            f"archive(s) dated before the last prune or in the future: {', '.join(odd)}"
            " (pushed through prod's key with --timestamp? they would take real archives'"
            " places in the retention)"
        )
    newest = start_of(borg.newest(archives))
    limit = timedelta(hours=int(settings["offsite_max_age_hours"]))
    if now - newest > limit:
        raise GuardTripped(
            f"the newest archive is from {newest:%Y-%m-%d %H:%M}, older than"
            f" offsite_max_age_hours ({settings['offsite_max_age_hours']} h): pushes stopped"
        )


def tripped(settings: dict, when: str, error: GuardTripped) -> int:
    log(f"GUARD: {error}; nothing pruned nor compacted", error=True)
    write_json(
        state_file(settings, LAST_PRUNE),
        {"time": when, "result": "guard tripped", "error": str(error)},
    )
    return 1


def prune(settings: dict) -> int:
    """The guard, then prune and compact; whatever happens, last-prune.json says how it went
    (status and its alerts read it)."""
    when = datetime.now().isoformat(timespec="seconds")
    try:
        with holding_prods_writes(settings):
            return guarded_prune(settings)
    except GuardTripped as error:
        return tripped(settings, when, error)
    except (borg.BorgError, OSError, ValueError) as error:  # ValueError: a state file unreadable
        write_json(
            state_file(settings, LAST_PRUNE),
            {"time": when, "result": "failed", "error": str(error)},
        )
        raise


def holding_prods_writes(settings: dict) -> state.Held:
    """prod's key waits meanwhile (its forced command takes this lock shared, flock): nothing
    it commits lands between the guard and the compact, nor passes for this host's own."""
    try:
        return state.take(
            settings["offsite_writes_lock"],
            int(settings["offsite_lock_wait_sec"]),
            who=f"odoo-offsite {' '.join(sys.argv[1:2])}",
            holders="prod's key: a push, or a recovery reading",
        )
    except state.LockBusy as busy:
        raise borg.BorgError(f"prod's key kept the repository busy: {busy}") from None


def record_seen(settings: dict, when: str, archives: dict[str, str]) -> None:
    """What the next run's guard compares with (name -> id), and this host's own last
    transaction: a rollback never goes before it (its compact moved what came before)."""
    write_json(
        state_file(settings, SEEN),
        {"time": when, "archives": archives, "transaction": committed_transaction(settings)},
    )


def compact(settings: dict, env: dict, when: str, kept: list[dict]) -> None:
    """borg compact, marked while it runs: what it moves lives only in its own commits until
    it is done, and a rollback past them would delete it. prod's forced command refuses while
    the mark is there (a compact that died: a power cut, a kill), so nothing prod writes comes
    between; the next prune finishes the compact first. Then this host's last transaction is
    the compact's: the rollback's floor, and `kept` what the next guard expects."""
    marker = Path(settings["offsite_compacting"])
    with marker.open("w", encoding="utf-8") as mark:  # on disk before the compact starts
        mark.write(f"{when}\n")
        mark.flush()
        os.fsync(mark.fileno())
    directory = os.open(marker.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    borg.run(["compact"], env)
    record_seen(settings, when, {a["name"]: a["id"] for a in kept})
    marker.unlink()


def guarded_prune(settings: dict) -> int:
    env = environment(settings)
    started = time.monotonic()
    now = datetime.now()
    when = now.isoformat(timespec="seconds")
    check_key(settings)
    if Path(settings["offsite_compacting"]).exists():
        log("the last compact did not finish (prod's key kept out since): finishing it first")
        compact(settings, env, when, borg.archives(env))
    before = borg.archives(env)
    guard(settings, before, now)
    listed = borg.run(
        [
            "prune",
            "--list",
            f"--keep-daily={settings['offsite_keep_daily']}",
            f"--keep-weekly={settings['offsite_keep_weekly']}",
            f"--keep-monthly={settings['offsite_keep_monthly']}",
        ],
        env,
    )
    ours = {m.group(1) for line in listed.stderr.splitlines() if (m := PRUNED.match(line))}
    kept = borg.archives(env)
    # Recorded before the compact: a compact that fails leaves no false "gone" next time. An
    # archive gone meanwhile, not by this prune (a delete through prod's key between the guard
    # and the prune), stays expected: the next guard names it too.
    expected = {a["name"]: a["id"] for a in before if a["id"] not in ours}
    record_seen(settings, when, {**expected, **{a["name"]: a["id"] for a in kept}})
    still = {a["id"] for a in kept}
    others = sorted(a["name"] for a in before if a["id"] not in ours and a["id"] not in still)
    if others:  # nothing compacted: the log can still roll it back
        raise GuardTripped(f"archive(s) gone during the prune, not by it: {', '.join(others)}")
    pruned = sorted(a["name"] for a in before if a["id"] in ours)
    compact(settings, env, when, kept)
    write_json(
        state_file(settings, LAST_PRUNE),
        {
            "time": when,
            "result": "success",
            "archives": len(kept),
            "pruned": pruned,
            "newest": (borg.newest(kept) or {}).get("name"),
            "seconds": round(time.monotonic() - started, 1),
        },
    )
    log(
        f"pruned {len(pruned)} archive(s) ({', '.join(pruned) or 'none'}), kept {len(kept)};"
        " compacted"
    )
    return 0


TRANSACTION = re.compile(r"transaction (\d+), UTC time (\S+)")


def transactions(settings: dict) -> list[tuple[int, str]]:
    """(id, UTC time) of each transaction in the repository's log, oldest first."""
    log_file = Path(settings["offsite_repository"], "transactions")
    found = []
    if not log_file.exists():  # a repository nothing was committed to yet
        return found
    for line in log_file.read_text(encoding="utf-8").splitlines():
        match = TRANSACTION.fullmatch(line.strip())
        if match:
            found.append((int(match.group(1)), match.group(2)))
    return found


# borg's segment files: a magic, then entries (crc32, size of the whole entry, tag, 32-byte id
# for a PUT or a DELETE). Only the headers are read.
SEGMENT_MAGIC = b"BORG_SEG"
ENTRY = struct.Struct("<IIB")
TAG_DELETE, TAG_COMMIT = 1, 2
MANIFEST_ID = bytes(32)  # every push rewrites the manifest: its one legitimate delete


def segments(settings: dict, after: int) -> list[tuple[int, Path]]:
    """The repository's segment files numbered above `after`, oldest first."""
    found = []
    for directory in (Path(settings["offsite_repository"]) / "data").iterdir():
        if directory.is_dir() and not directory.is_symlink():
            found += [(n, path) for n, path in numbered(directory) if n > after]
    return sorted(found)


def commits(settings: dict, after: int) -> list[tuple[int, list[str]]]:
    """The transactions committed in the segments after `after`, oldest first: (id, the
    objects it deleted, the manifest aside). Its id is the segment holding its commit."""
    found: list[tuple[int, list[str]]] = []
    pending: list[str] = []
    damage = ""  # what follows the last commit may be an unfinished write, as borg sees it
    for number, path in segments(settings, after):
        with path.open("rb") as segment:
            if segment.read(len(SEGMENT_MAGIC)) != SEGMENT_MAGIC:
                damage = damage or f"{path}: not a borg segment (a file put there by hand?)"
                continue
            while header := segment.read(ENTRY.size):
                if len(header) < ENTRY.size:
                    break  # an unfinished write: never committed
                _, size, tag = ENTRY.unpack(header)
                if size < ENTRY.size:
                    damage = damage or f"{path}: a damaged segment (an entry of {size} bytes)"
                    break
                if tag == TAG_DELETE:
                    ident = segment.read(32)
                    if ident != MANIFEST_ID:
                        pending.append(ident.hex())
                    segment.seek(size - ENTRY.size - len(ident), os.SEEK_CUR)
                else:
                    segment.seek(size - ENTRY.size, os.SEEK_CUR)
                if tag == TAG_COMMIT:
                    if damage:  # committed after it: not an unfinished write
                        raise GuardTripped(damage)
                    found.append((number, pending))
                    pending = []
    return found


def objects_deleted_by_prod(settings: dict, own: int) -> dict[int, list[str]]:
    """The objects each of prod's transactions after `own` deleted, the manifest aside
    (transaction id -> object ids). A push only adds: new chunks, and the manifest rewritten
    (a delete of it, then a put). borg serve --append-only also takes a raw delete, or a put
    over an existing object (the server writes a delete first): such a commit keeps every
    archive listed while its data goes, for good at the next compact. Every commit after
    `own` is prod's when the guard runs: this host's prune comes after it, and a compact that
    died is finished (and recorded) before it."""
    return {n: deleted for n, deleted in commits(settings, own) if deleted}


def committed_transaction(settings: dict) -> int | None:
    """The repository's last committed transaction, whoever made it (its newest index.N).
    borg logs in `transactions` only what append-only clients commit: never this host's own
    prune and compact, whose compact moves live data into segments after prod's last one."""
    found = numbered(Path(settings["offsite_repository"]), "index.")
    return max(number for number, _ in found) if found else None


def rollback_points(settings: dict) -> tuple[list[tuple[int, str]], int | None]:
    """What a rollback may go back to, oldest first: borg's logged transactions, and the last
    this host made (its prune and compact, not in borg's log); and that last one's id."""
    seen = read_json(state_file(settings, SEEN), {})
    own = seen.get("transaction")
    points = transactions(settings)
    if own is not None and own not in {number for number, _ in points}:
        points = sorted([*points, (own, f"{seen.get('time')} (local time)")])
    return points, own


def show_transactions(settings: dict) -> int:
    points, own = rollback_points(settings)
    for number, when in points:
        mark = "  <- the last this host made (its prune and compact)" if number == own else ""
        print(f"{number:>8}  {when}{mark}")
    return 0


def numbered(directory: Path, prefix: str = "") -> list[tuple[int, Path]]:
    """The regular files named <prefix><number> in directory (never a link)."""
    found = []
    with os.scandir(directory) as entries:
        for entry in entries:
            name = entry.name.removeprefix(prefix)
            if (
                entry.name.startswith(prefix)
                and name.isdigit()
                and entry.is_file(follow_symlinks=False)
            ):
                found.append((int(name), Path(entry.path)))
    return found


def rollback(settings: dict, target: int) -> int:
    """Drop the transactions after `target` (prod's key kept out meanwhile, as for a prune)."""
    with holding_prods_writes(settings):
        return rolled_back(settings, target)


def rolled_back(settings: dict, target: int) -> int:
    """Drop the transactions after `target`: its segments, and the index, hints and integrity
    files borg then rebuilds by replaying the segments left (borg's append-only recovery)."""
    repository = Path(settings["offsite_repository"])
    points, own = rollback_points(settings)
    known = [number for number, _ in points]
    if target not in known:
        log(f"ERROR: no transaction {target} to roll back to (--transactions)", True)
        return 2
    if own is not None and target < own:
        log(
            f"ERROR: transaction {target} is before {own}, the last this host made (its prune"
            f" compacted what came before): roll back to {own} or later",
            error=True,
        )
        return 2
    if Path(settings["offsite_compacting"]).exists():
        log(
            "ERROR: the last compact did not finish (a rollback could delete what it moved):"
            " run the prune first (systemctl start odoo-offsite-prune), which finishes it",
            error=True,
        )
        return 2
    later = [n for n in known if n > target]
    if not later:
        log(f"transaction {target} is the last: nothing to undo")
        return 0
    env = environment(settings)
    # borg's own exclusive lock (its lock.exclusive directory, taken by mkdir): a push or a
    # prune that starts meanwhile waits, then fails and is tried again. (borg with-lock would
    # commit its own view of the repository when the command ends, undoing the rollback.)
    lock = repository / "lock.exclusive"
    try:
        lock.mkdir()
    except FileExistsError:
        log(f"ERROR: {repository} is locked (a borg runs): try again once it is done", True)
        return 1
    holder = lock / "odoo-offsite-rollback"  # not borg's name form: never taken as stale
    holder.touch()
    try:
        drop_after(settings, target)
    finally:
        holder.unlink()
        lock.rmdir()
    borg.run(["check", "--repository-only"], env)
    forget_newer_manifest(repository)
    names = [archive["name"] for archive in borg.archives(env)]
    log(
        f"rolled back to transaction {target} (undid {', '.join(map(str, later))});"
        f" {len(names)} archive(s): {', '.join(names)}. On prod, once: README, Off-site copies"
        " (its borg refuses a repository older than it saw until told)"
    )
    return 0


def forget_newer_manifest(repository: Path) -> None:
    """This host's own borg saw the manifest the rollback undid: it would refuse the older one
    as an attack. The rollback is this host's deliberate act: its memory of that manifest (the
    manifest's timestamp, the cache) goes; the nonce it used stays (never reused)."""
    config = configparser.ConfigParser()
    config.read(repository / "config")
    repository_id = config["repository"]["id"]
    home = Path(os.path.expanduser("~"))  # borg's own rule (its unit: the owner's home)
    security = home / ".config" / "borg" / "security" / repository_id
    (security / "manifest-timestamp").unlink(missing_ok=True)
    shutil.rmtree(home / ".cache" / "borg" / repository_id, ignore_errors=True)


def drop_after(settings: dict, target: int) -> None:
    """The rollback's file work, under the repository's lock."""
    repository = Path(settings["offsite_repository"])
    for directory in (repository / "data").iterdir():
        if directory.is_dir() and not directory.is_symlink():
            for number, segment in numbered(directory):
                if number > target:
                    segment.unlink()
    for prefix in ("index.", "hints.", "integrity."):
        for number, path in numbered(repository, prefix):
            if number > target:
                path.unlink()
    log_file = repository / "transactions"
    kept = [
        line
        for line in log_file.read_text(encoding="utf-8").splitlines(keepends=True)
        if not (m := TRANSACTION.fullmatch(line.strip())) or int(m.group(1)) <= target
    ]
    staged = log_file.with_name(".transactions.new")
    staged.write_text("".join(kept), encoding="utf-8")
    staged.replace(log_file)


def as_owner_with_passphrase(settings: dict, argv: list[str]) -> int:
    """Root (an operator): the same program as the repository's owner, handed the passphrase
    as its units are (a systemd credential), its output here."""
    argv0 = str(Path(sys.argv[0]).resolve())
    done = runner.run(
        [
            "systemd-run", "--quiet", "--wait", "--pipe", "--collect",
            "-p", f"User={settings['offsite_user']}",
            "-p", f"LoadCredential={settings['offsite_credential']}:"
            f"{settings['offsite_passphrase_file']}",
            argv0, *argv,
        ],
        check=False,
    )  # fmt: skip
    return done.returncode


def main(argv: list[str]) -> int:
    settings = config.load()
    if argv in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    os.chdir("/")
    handed = "CREDENTIALS_DIRECTORY" in os.environ
    if os.geteuid() == 0 and not handed and argv[:1] in (["--prune"], ["--rollback"], ["--drill"]):
        return as_owner_with_passphrase(settings, argv)
    try:
        if argv == ["--init"]:
            return init(settings)
        if argv == ["--prune"]:
            return prune(settings)
        if argv == ["--drill"]:
            from oca_france_host import drill  # it imports this module

            return drill.drill(settings)
        if argv == ["--transactions"]:
            return show_transactions(settings)
        if len(argv) == 2 and argv[0] == "--rollback" and argv[1].isdigit():
            return rollback(settings, int(argv[1]))
    except (borg.BorgError, OSError, ValueError) as error:
        log(f"ERROR: {error}", error=True)
        return 1
    print(USAGE, file=sys.stderr)
    return 2
