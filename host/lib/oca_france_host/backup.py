"""odoo-backup: backs up this host's database while it serves, as odoo (odoo-backup.service).

  1. waits for the deploy lock: never during a deploy, never two backups at once;
  2. removes the partial directories of backups that died (killed, a power cut), and checks
     there is room for the dump;
  3. dumps the database (pg_dump custom format) and checks the dump's catalogue; counts a
     few key tables' rows in the dump's own snapshot (the manifest keeps them: the drill);
  4. snapshots the filestore, hard-linking the files unchanged since the previous backup
     (Odoo writes each attachment once and never rewrites it);
  5. writes the manifest (database, commit, time, sizes, checksums), last;
  6. renames the directory into place: only a complete, verified backup is ever visible;
  7. prunes old backups (grandfather-father-son), only after this one succeeded.
A failure or a stop (SIGTERM, SIGINT, SIGHUP) removes the partial directory and exits
non-zero: the unit is then failed. One killed outright leaves it: the next backup removes it,
and says so.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from oca_france_host import backups, config, programs, prune, runner, state


class Stopped(Exception):
    """A signal asked the backup to stop."""

    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


class Failed(Exception):
    """The backup failed: said once, the unit failed."""


def log(message: str, error: bool = False) -> None:
    line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} odoo-backup: {message}"
    print(line, file=sys.stderr if error else sys.stdout, flush=True)


def usage(settings: dict) -> str:
    return (
        f"Usage: odoo-backup [-h|--help]: back up {settings['odoo_db_name']} into"
        f" {settings['backup_dir']} (the daily backup: dump, filestore, manifest, prune)"
    )


def take_lock(settings: dict) -> state.Held:
    lock_file, wait = settings["deploy_lock_file"], int(settings["backup_lock_wait_sec"])
    try:
        held = state.take(lock_file, wait)
    except state.LockBusy:
        raise Failed(f"{lock_file} still held after {wait}s: no backup taken") from None
    # A deploy that died mid-way left its database half-migrated: never back that up (it
    # would become the newest backup, and retention would drop a good one).
    found = state.unfinished(settings["deploy_state_file"])
    if found is not None:
        held.close()
        raise Failed(
            f"a deploy of {found.get('ref', '?')} is unfinished (step {found.get('step', '?')}):"
            " no backup of a half-done database; odoo-deploy-repair.timer repairs it within a"
            " minute"
        )
    return held


def remove_stale_partials(backup_dir: Path) -> None:
    """A backup killed without its cleanup left its partial directory: a whole dump on
    PostgreSQL's disk. Removed under the lock (no backup runs now)."""
    for stale in sorted(backup_dir.glob(f"{backups.PARTIAL}*")):
        log(f"removing {stale}, left by a backup that died")
        shutil.rmtree(stale, ignore_errors=True)


def check_free_space(settings: dict, db: str, backup_dir: Path) -> None:
    """Room for the dump before it starts: the database's size (the dump is smaller) plus the
    margin a deploy keeps (deploy_disk_margin_mib)."""
    try:
        query = f"SELECT pg_database_size('{db}')"
        size = int(runner.output(["psql", "-XAtq", "-d", "postgres", "-c", query]) or 0)
    except (runner.Failed, ValueError):
        size = 0
    margin = int(settings["deploy_disk_margin_mib"]) * 2**20
    free = shutil.disk_usage(backup_dir).free
    if free < size + margin:
        raise Failed(
            f"not enough free disk for a backup of {db} in {backup_dir}: {free // 2**20} MiB"
            f" free, {size // 2**20} MiB (the database) plus {margin // 2**20} MiB"
            " (deploy_disk_margin_mib) needed; nothing written"
        )


def dump_database(db: str, partial: Path, counted: list[str]) -> dict[str, int]:
    """pg_dump, and the row counts of the `counted` tables as the dump has them: both read
    one snapshot, exported by a transaction kept open until the dump is done. The drill on the
    backup host restores the dump and compares."""
    log(f"dumping {db}")
    dump = partial / f"{db}.dump"
    with runner.Session(["psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", db]) as psql:
        snapshot = psql.ask(
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SELECT pg_export_snapshot();"
        )
        counts = json.loads(psql.ask(backups.count_rows_sql(counted)) or "{}")
        runner.run(["pg_dump", "--format=custom", f"--snapshot={snapshot}", f"--file={dump}", db])
    try:
        runner.run(["pg_restore", "--list", str(dump)], capture=True)
    except runner.Failed:
        raise Failed("the dump's catalogue is unreadable") from None
    return counts


def snapshot_filestore(filestore: Path, partial: Path, previous: Path | None) -> None:
    linked = f" (unchanged files linked to {previous})" if previous else ""
    log(f"snapshotting the filestore{linked}")
    filestore.mkdir(parents=True, exist_ok=True)
    link = [f"--link-dest={previous}/{backups.FILESTORE}/"] if previous else []
    runner.run(["rsync", "-a", "--delete", *link, f"{filestore}/", f"{partial}/filestore/"])


def disk_used(path: Path) -> str:
    return runner.output(["du", "-sh", str(path)]).split()[0]


def back_up(settings: dict) -> Path:
    db = settings["odoo_db_name"]
    backup_dir = Path(settings["backup_dir"])
    # UTC: names sort by time all year (a local time goes back an hour in October).
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    final = backup_dir / f"{db}-{stamp}"
    partial = backup_dir / f"{backups.PARTIAL}{final.name}"
    with take_lock(settings):
        backup_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(backup_dir)
        previous = backups.newest(backup_dir, db)
        check_free_space(settings, db, backup_dir)
        try:
            partial.mkdir()
            counts = dump_database(db, partial, settings["backup_counted_tables"])
            snapshot_filestore(Path(settings["filestore_root"]) / db, partial, previous)
            commit = runner.output(["git", "-C", settings["oca_france_dir"], "rev-parse", "HEAD"])
            backups.write_manifest(partial, db, commit, name=final.name, row_counts=counts)
            partial.rename(final)
        except BaseException:
            if partial.exists():
                log(f"backup failed: removing {partial}", error=True)
                shutil.rmtree(partial, ignore_errors=True)
            raise
        log(f"backup complete: {final} ({disk_used(final)} on disk)")
        prune.main([str(backup_dir)])
    return final


def stop_on(signum: int, _frame) -> None:
    raise Stopped(128 + signum)


def main(argv: list[str]) -> int:
    settings = config.load()
    refused = programs.refused_arguments(argv, usage(settings))
    if refused is not None:
        return refused
    os.chdir("/")
    # Stopped (systemctl stop, SIGTERM at shutdown): the partial directory goes too.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop_on)
    try:
        back_up(settings)
    except Stopped as stopped:
        return stopped.status
    except Failed as failure:
        log(f"ERROR: {failure}", error=True)
        return 1
    except (runner.Failed, backups.BackupError, OSError) as error:
        log(f"ERROR: {error}", error=True)
        return 1
    return 0
