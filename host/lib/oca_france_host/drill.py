"""odoo-offsite --drill: proves the backup host's copy restores (odoo-offsite-drill.timer).

  1. extracts the newest archive into a scratch directory (offsite_drill_dir), emptied first;
  2. checks it against its manifest: the dump's and every attachment's sha256 (what prod
     recorded), and that this host's pg_restore reads the dump;
  3. restores the dump into a scratch database, and compares the row counts prod recorded
     at backup time (the dump's own snapshot) with what the restore holds;
  4. runs borg check: the repository and the archives' metadata each week, every chunk's data
     (--verify-data) when the last such check is older than offsite_drill_verify_data_days;
  5. records the result and its duration (last-drill.json: odoo-status shows and flags it).
The scratch database and directory are removed whatever happens. A failure fails the unit,
which alerts, and says what did not match.
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import datetime, timedelta
from pathlib import Path

from oca_france_host import backups, borg, offsite, runner

LAST_DRILL = "last-drill.json"
SCRATCH_DB = "oca_france_drill"  # the scratch database (the drill's role owns it)


class DrillFailed(Exception):
    """The archive did not restore, or not as its manifest says."""


def verify_data_due(settings: dict, last: dict, now: datetime) -> bool:
    """Whether this drill reads every chunk (borg check --verify-data): its cadence."""
    done = last.get("verify_data_time")
    if not done:
        return True
    every = timedelta(days=int(settings["offsite_drill_verify_data_days"]))
    return now - datetime.fromisoformat(done) >= every


def psql(sql: str, database: str = "postgres") -> str:
    return runner.output(["psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", database, "-c", sql])


def drop_scratch_database() -> None:
    runner.run(["dropdb", "--if-exists", "--force", SCRATCH_DB], check=False)


def restore_and_count(scratch: Path, manifest: dict) -> dict[str, int]:
    """The dump restored into the scratch database (as a deploy restores it): the tables'
    counts compared with prod's. Returns the counts."""
    drop_scratch_database()
    runner.run(["createdb", SCRATCH_DB])
    done = runner.run(
        backups.restore_command(SCRATCH_DB, scratch / manifest["dump"]), capture=True, check=False
    )
    if done.returncode != 0:
        last = " | ".join((done.stderr or "").strip().splitlines()[-3:])
        raise DrillFailed(f"pg_restore of {manifest['dump']} failed: {last}")
    recorded = manifest.get("row_counts")
    if not isinstance(recorded, dict) or not recorded:
        raise DrillFailed(
            f"{manifest['name']}'s manifest holds no row counts to compare (none of"
            " backup_counted_tables exists in prod's database?)"
        )
    restored = json.loads(psql(backups.count_rows_sql(sorted(recorded)), SCRATCH_DB) or "{}")
    wrong = [
        f"{table}: {restored.get(table, 'no table')} restored, {count} recorded"
        for table, count in sorted(recorded.items())
        if restored.get(table) != count
    ]
    if wrong:
        raise DrillFailed("row counts differ from what prod recorded: " + "; ".join(wrong))
    return restored


FAILURES = (
    DrillFailed,
    offsite.GuardTripped,
    borg.BorgError,
    backups.BackupError,
    runner.Failed,
    OSError,
    ValueError,
)


def restore_newest(env: dict, scratch: Path, result: dict) -> None:
    """Steps 1 to 3: the newest archive extracted, checked and restored (raises on failure)."""
    newest = borg.newest(borg.archives(env))
    if newest is None:
        raise DrillFailed("the repository holds no archive")
    archive = newest["name"]
    result["archive"] = archive
    offsite.log(f"drill: extracting {archive} into {scratch}")
    borg.extract(env, archive, scratch)
    wrong = backups.problem(scratch, digests_required=True)
    if wrong:
        raise DrillFailed(f"{archive} does not match its manifest: {wrong}")
    manifest = backups.read_manifest(scratch)
    offsite.log(f"drill: {manifest['filestore_files']} attachments match their sha256")
    counts = restore_and_count(scratch, manifest)
    offsite.log(f"drill: {manifest['dump']} restored; rows as recorded: {counts}")
    result.update(files=manifest["filestore_files"], row_counts=counts)


def drill(settings: dict) -> int:
    env = offsite.environment(settings)
    started = time.monotonic()
    now = datetime.now()
    record_file = offsite.state_file(settings, LAST_DRILL)
    try:
        last = offsite.read_json(record_file, {})
    except ValueError:
        last = {}  # unreadable: as if none (this drill writes a new one)
    verify_data = verify_data_due(settings, last, now)
    result = {"time": now.isoformat(timespec="seconds"), "archive": None, "result": "failed"}
    if last.get("verify_data_time"):
        result["verify_data_time"] = last["verify_data_time"]
    scratch = Path(settings["offsite_drill_dir"]) / "archive"
    errors = []
    try:
        offsite.check_key(settings)
        restore_newest(env, scratch, result)
    except FAILURES as error:
        errors.append(str(error))
        offsite.log(f"DRILL FAILED: {error}", error=True)
    finally:
        drop_scratch_database()
        shutil.rmtree(scratch, ignore_errors=True)
    # The repository is checked whatever the restore did (a failed restore says nothing of it).
    check = ["check", "--verify-data"] if verify_data else ["check"]
    offsite.log(f"drill: borg {' '.join(check)}")
    try:
        borg.run(check, env)
        if verify_data:
            result["verify_data_time"] = result["time"]
    except FAILURES as error:
        errors.append(str(error))
        offsite.log(f"DRILL FAILED: {error}", error=True)
    result["seconds"] = round(time.monotonic() - started, 1)
    if errors:
        result["error"] = "; ".join(errors)
    else:
        result["result"] = "success"
    offsite.write_json(record_file, result)
    if errors:
        return 1
    offsite.log(f"drill passed: {result['archive']} restores, in {result['seconds']} s")
    return 0
