"""Backups, transfer and restore on generated production data, today's way and the previous
generation's, in one run on the sandbox (a benchmark, not a test).

    sudo make sandbox && sudo .venv/bin/python tests/benchmark_backups.py   # or: make bench

Production gets about 1 GB of database (a table of random text) and 2 GB of incompressible
attachments; then "a day later", 20 MB of new attachments. Measured:
- odoo-backup (pg_dump + filestore snapshot hard-linked to the previous backup): time, disk
  each backup adds, bytes the transfer sends to recette; recette's acceptance (its copy out
  of the incoming directory, hard-linked to the previous accepted backup, and its verify)
  and the disk that copy adds; recette's restore (deploy -R);
- the previous generation's way, as `click-odoo-backupdb --format folder` did: pg_dump and a
  full copy of the filestore each day (and `scp -r` of all of it: every byte sent); its
  restore (pg_restore and a copy of the filestore), on the same kind of container.
Leaves the generated data in place: tear the sandbox down afterwards (make sandbox-down).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

STATE_DIR = Path("/var/lib/oca-france-sandbox")
RECETTE, PROD = "oca-france-recette", "oca-france-prod"
DB = "oca-france-production"
HOME = "/home/odoo"
FILESTORE = f"{HOME}/.local/share/Odoo/filestore/{DB}"
BACKUPS = f"{HOME}/.odoo_dumps/backups"
PRODUCTION_DATA = f"{HOME}/.odoo_dumps/production-data"  # recette's accepted copies
PREVIOUS_WAY = f"{HOME}/bench-previous-way"  # the previous generation's backups
ROWS = 8_000_000  # about 1 GB of table (three md5s of text per row)
ATTACHMENTS_MIB = 2048  # the filestore, in 1 MiB attachments
NEW_ATTACHMENTS_MIB = 20  # what a day adds


def ssh(host: str, command: str, check: bool = True) -> str:
    result = subprocess.run(
        ["ssh", "-F", str(STATE_DIR / "ssh_config.root"), host, command],
        capture_output=True,
        text=True,
    )
    if check and result.returncode != 0:
        sys.exit(
            f"{host}: {command[:80]}... failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )
    return result.stdout.strip()


def as_odoo(host: str, command: str, check: bool = True) -> str:
    return ssh(host, f"cd / && sudo -u odoo bash -c {quote(command)}", check)


def quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def timed(host: str, command: str) -> float:
    start = time.monotonic()
    as_odoo(host, command)
    return time.monotonic() - start


def note(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def mib(size: float) -> str:
    return f"{size / 2**20:,.0f} MiB"


def add_attachments(count: int, prefix: str, host: str = PROD, filestore: str = FILESTORE) -> None:
    """count attachments of 1 MiB of random bytes, sharded like Odoo's filestore."""
    as_odoo(
        host,
        f"for i in $(seq 1 {count}); do d={filestore}/$(printf %02x $((i % 256)));"
        f" mkdir -p $d; head -c 1M /dev/urandom > $d/{prefix}-$i; done",
    )


def generate_production_data() -> None:
    note(f"generating {ROWS:,} rows and {ATTACHMENTS_MIB} MiB of attachments on prod")
    as_odoo(
        PROD,
        f"psql -Xq -d {DB} -c 'DROP TABLE IF EXISTS bench_payload' -c 'CREATE TABLE"
        " bench_payload AS SELECT g AS id, md5(random()::text) || md5(random()::text)"
        f" || md5(random()::text) AS payload FROM generate_series(1, {ROWS}) g'",
    )
    add_attachments(ATTACHMENTS_MIB, "day0")


def database_bytes() -> int:
    return int(as_odoo(PROD, f"psql -XAt -d {DB} -c \"SELECT pg_database_size('{DB}')\""))


def filestore_bytes() -> int:
    return int(as_odoo(PROD, f"du -sb {FILESTORE} | cut -f1"))


def newest_backup() -> str:
    return as_odoo(PROD, f"ls {BACKUPS} | grep -v '^\\.' | tail -n 1")


def unit_invocation(host: str, unit: str) -> str:
    return ssh(host, f"systemctl show -p InvocationID --value {unit}")


def wait_done(host: str, unit: str, before: str) -> None:
    while True:
        show = ssh(host, f"systemctl show -p InvocationID,ActiveState,Result {unit}")
        state = dict(line.split("=", 1) for line in show.splitlines())
        if state["InvocationID"] != before and state["ActiveState"] in ("inactive", "failed"):
            if state["Result"] != "success":
                sys.exit(f"{host}: {unit} failed: {ssh(host, f'journalctl -u {unit} -n 20')}")
            return
        time.sleep(0.5)


def sent_bytes() -> int:
    journal = ssh(PROD, "journalctl -u odoo-backup-transfer.service -o cat --no-pager -n 20")
    files = re.findall(r"files sent: (\d+) bytes", journal)[-1]
    manifest = re.findall(r"manifest sent \((\d+) bytes\)", journal)[-1]
    return int(files) + int(manifest)


def added_by(host: str, directory: str, name: str) -> int:
    """The disk `name` adds in `directory`: du counts a file hard-linked into several
    backups once, in the first it lists."""
    others = as_odoo(host, f"ls -d {directory}/* | grep -v {name} || true").split()
    sizes = as_odoo(host, f"du -sb {' '.join(others)} {directory}/{name} | cut -f1").split()
    return int(sizes[-1])


def odoo_backup() -> dict:
    """One odoo-backup.service run, then its transfer and recette's acceptance."""
    transfer = unit_invocation(PROD, "odoo-backup-transfer.service")
    accept = unit_invocation(RECETTE, "odoo-production-data-accept.service")
    start = time.monotonic()
    as_odoo(PROD, "systemctl start odoo-backup.service")
    backup_seconds = time.monotonic() - start
    wait_done(PROD, "odoo-backup-transfer.service", transfer)
    transfer_seconds = time.monotonic() - start - backup_seconds
    wait_done(RECETTE, "odoo-production-data-accept.service", accept)
    accept_seconds = time.monotonic() - start - backup_seconds - transfer_seconds
    name = newest_backup()
    return {
        "name": name,
        "backup_s": backup_seconds,
        "transfer_s": transfer_seconds,
        "accept_s": accept_seconds,
        "added": added_by(PROD, BACKUPS, name),
        "accepted_added": added_by(RECETTE, PRODUCTION_DATA, name),
        "sent": sent_bytes(),
        "dump": int(as_odoo(PROD, f"stat -c %s {BACKUPS}/{name}/{DB}.dump")),
    }


def previous_way_backup(day: str) -> dict:
    """pg_dump and a full copy of the filestore, as click-odoo-backupdb --format folder."""
    target = f"{PREVIOUS_WAY}/{day}"
    seconds = timed(
        PROD,
        f"mkdir -p {target} && pg_dump --format=custom --file={target}/db.dump {DB}"
        f" && cp -a {FILESTORE} {target}/filestore",
    )
    added = int(as_odoo(PROD, f"du -sb {target} | cut -f1"))
    return {"backup_s": seconds, "added": added, "sent": added}


def yesterday(name: str) -> None:
    """Make the newest backup a day older (daily retention keeps one backup a day)."""
    stamp = ssh(PROD, "date -d yesterday +%Y%m%dT%H%M%S")
    as_odoo(PROD, f"mv {BACKUPS}/{name} {BACKUPS}/{DB}-{stamp}")


def restore_on_recette() -> dict:
    """deploy -R: the restore step's time from its own log lines, and the whole deploy."""
    start = time.monotonic()
    log = as_odoo(RECETTE, f"{HOME}/scripts/deploy -R origin/18.0")
    total = time.monotonic() - start
    stamps = {}
    for line in log.splitlines():
        match = re.match(r"(\S+ \S+) deploy: (restoring|neutralizing)", line)
        if match:
            stamps[match.group(2)] = time.mktime(time.strptime(match.group(1), "%Y-%m-%d %H:%M:%S"))
    return {"restore_s": stamps["neutralizing"] - stamps["restoring"], "deploy_s": total}


def previous_way_restore() -> float:
    """pg_restore into a scratch database and a copy of the filestore, on prod."""
    seconds = timed(
        PROD,
        f"dropdb --if-exists bench_restore && createdb bench_restore && pg_restore --no-owner"
        f" --exit-on-error -d bench_restore {PREVIOUS_WAY}/day2/db.dump"
        f" && rm -rf {PREVIOUS_WAY}/restored && cp -a {PREVIOUS_WAY}/day2/filestore"
        f" {PREVIOUS_WAY}/restored",
    )
    as_odoo(PROD, f"dropdb bench_restore && rm -rf {PREVIOUS_WAY}/restored")
    return seconds


def run() -> list[tuple[str, str, str]]:
    generate_production_data()
    size = f"database {mib(database_bytes())}, filestore {mib(filestore_bytes())}"
    note(f"production data: {size}")
    note("day 1: odoo-backup, transfer; the previous way")
    day1 = odoo_backup()
    old1 = previous_way_backup("day1")
    yesterday(day1["name"])
    add_attachments(NEW_ATTACHMENTS_MIB, "day2")
    note(f"day 2 (+{NEW_ATTACHMENTS_MIB} MiB of attachments): odoo-backup, transfer; previous way")
    day2 = odoo_backup()
    old2 = previous_way_backup("day2")
    note("restore on recette (deploy -R); the previous way's restore")
    restore = restore_on_recette()
    old_restore = previous_way_restore()
    new_bytes = NEW_ATTACHMENTS_MIB * 2**20
    target = day2["dump"] + 1.2 * new_bytes
    return [
        ("production data", size, "same"),
        ("day 1: backup time", f"{day1['backup_s']:.0f} s", f"{old1['backup_s']:.0f} s"),
        ("day 1: disk added", mib(day1["added"]), mib(old1["added"])),
        ("day 1: sent to recette", mib(day1["sent"]), mib(old1["sent"])),
        ("day 1: transfer time", f"{day1['transfer_s']:.0f} s", "-"),
        ("day 1: recette's acceptance (copy and verify)", f"{day1['accept_s']:.0f} s", "-"),
        ("day 1: disk the accepted copy adds on recette", mib(day1["accepted_added"]), "-"),
        ("day 2: backup time", f"{day2['backup_s']:.0f} s", f"{old2['backup_s']:.0f} s"),
        ("day 2: disk added", mib(day2["added"]), mib(old2["added"])),
        ("day 2: sent to recette", mib(day2["sent"]), mib(old2["sent"])),
        ("day 2: transfer time", f"{day2['transfer_s']:.0f} s", "-"),
        ("day 2: recette's acceptance (copy and verify)", f"{day2['accept_s']:.0f} s", "-"),
        ("day 2: disk the accepted copy adds on recette", mib(day2["accepted_added"]), "-"),
        ("day 2: target (dump + 1.2 x new attachments)", mib(target), "-"),
        (
            "restore on recette (database and filestore)",
            f"{restore['restore_s']:.0f} s",
            f"{old_restore:.0f} s",
        ),
        ("whole deploy -R on recette", f"{restore['deploy_s']:.0f} s", "-"),
    ]


HEADERS = ("measure", "odoo-backup (now)", "pg_dump + full copy (before)")


def print_table(rows: list[tuple[str, str, str]], headers: tuple[str, ...] = HEADERS) -> None:
    """A Markdown table, as the README has it."""
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("-" * (len(header) + 2) for header in headers) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    print_table(run())
