"""Backups, transfer and restore on generated production data, today's way and the previous
generation's, in one run on the sandbox (a benchmark, not a test).

    sudo make sandbox && sudo .venv/bin/python tests/benchmark_backups.py   # or: make bench

Production gets about 1 GB of database (a table of random text) and 2 GB of incompressible
attachments; then "a day later", 20 MB of new attachments. Measured:
- odoo-backup (pg_dump + filestore snapshot hard-linked to the previous backup): time, disk
  each backup adds, bytes the transfer sends to recette; recette's acceptance (its copy out
  of the incoming directory, hard-linked to the previous accepted backup, and its verify)
  and the disk that copy adds; recette's restore (deploy -R);
- the push to the backup host (borg, encrypted and deduplicated): what it sends (the backup
  host's received bytes), what the repository grows by, and its time;
- recovery from bare at that size: prod destroyed, a bare container, `make apply-prod
  RECOVERING=1`, `make recover-prod` (the newest archive, then the closing apply), until Odoo
  serves the recovered data;
- the previous generation's way, as `click-odoo-backupdb --format folder` did: pg_dump and a
  full copy of the filestore each day (and `scp -r` of all of it: every byte sent); its
  restore (pg_restore and a copy of the filestore), on the same kind of container.
Leaves the generated data in place: tear the sandbox down afterwards (make sandbox-down).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
SANDBOX = ["bash", str(PROJECT_DIR / "tests" / "sandbox" / "sandbox.sh")]
STATE_DIR = Path("/var/lib/oca-france-sandbox")
# make's pyinfra runs with the sandbox's group data (as make sandbox does)
WITH_GROUP_DATA = f"PYINFRA_ARGS=--group-data {STATE_DIR}/group_data"
RECETTE, PROD, BACKUP_HOST = "oca-france-recette", "oca-france-prod", "oca-france-backup"
REPOSITORY = "/srv/borg/oca-france-prod"  # prod's, on the backup host
PUSH = "odoo-offsite-push.service"
DB = "oca-france-production"
HOME = "/home/odoo"
FILESTORE = f"{HOME}/.local/share/Odoo/filestore/{DB}"
BACKUPS = f"{HOME}/.odoo_dumps/backups"
PUSH_STATE = f"{HOME}/.odoo_dumps/.offsite-push.json"
PRODUCTION_DATA = f"{HOME}/.odoo_dumps/production-data"  # recette's accepted copies
PREVIOUS_WAY = f"{HOME}/bench-previous-way"  # the previous generation's backups
ROWS = 8_000_000  # about 1 GB of table (three md5s of text per row)
ATTACHMENTS_MIB = 2048  # the filestore, in 1 MiB attachments
NEW_ATTACHMENTS_MIB = 20  # what a day adds


def sandbox_env() -> dict[str, str]:
    """The sandbox's secrets and SSH config, as `make` and pyinfra get them there."""
    lines = (STATE_DIR / "env").read_text().splitlines()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ODOO_OCA_FRANCE_")}
    return {**clean, **dict(line.split("=", 1) for line in lines if "=" in line)}


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


def received_bytes(host: str) -> int:
    """eth0's received bytes, from /proc (the container's sysfs may show other counters)."""
    line = ssh(host, "grep -E '^ *eth0:' /proc/net/dev")
    return int(line.split(":", 1)[1].split()[0])


def repository_bytes() -> int:
    return int(ssh(BACKUP_HOST, f"du -sb {REPOSITORY} | cut -f1"))


def odoo_backup() -> dict:
    """One odoo-backup.service run, then its transfer, recette's acceptance and the push to
    the backup host (what the backup host receives: the push, and these few SSH commands)."""
    transfer = unit_invocation(PROD, "odoo-backup-transfer.service")
    accept = unit_invocation(RECETTE, "odoo-production-data-accept.service")
    push = unit_invocation(PROD, PUSH)
    received, stored = received_bytes(BACKUP_HOST), repository_bytes()
    start = time.monotonic()
    as_odoo(PROD, "systemctl start odoo-backup.service")
    backup_seconds = time.monotonic() - start
    wait_done(PROD, "odoo-backup-transfer.service", transfer)
    transfer_seconds = time.monotonic() - start - backup_seconds
    wait_done(RECETTE, "odoo-production-data-accept.service", accept)
    accept_seconds = time.monotonic() - start - backup_seconds - transfer_seconds
    wait_done(PROD, PUSH, push)
    pushed = json.loads(as_odoo(PROD, f"cat {PUSH_STATE}"))
    name = newest_backup()
    if pushed["archive"] != name:
        sys.exit(f"the push sent {pushed['archive']}, not the newest backup {name}")
    return {
        "name": name,
        "backup_s": backup_seconds,
        "transfer_s": transfer_seconds,
        "accept_s": accept_seconds,
        "added": added_by(PROD, BACKUPS, name),
        "accepted_added": added_by(RECETTE, PRODUCTION_DATA, name),
        "sent": sent_bytes(),
        "dump": int(as_odoo(PROD, f"stat -c %s {BACKUPS}/{name}/{DB}.dump")),
        "push_s": pushed["seconds"],
        "offsite_sent": received_bytes(BACKUP_HOST) - received,
        "offsite_stored": repository_bytes() - stored,
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


def bench_attachments() -> str:
    """The generated attachments on prod: how many, their bytes (Odoo's own may change)."""
    sizes = f"find {FILESTORE} -type f -name 'day*' -printf '%s\\n'"
    return as_odoo(PROD, f"{sizes} | awk '{{s+=$1}} END {{print NR, s}}'")


def recover_from_bare() -> dict:
    """prod destroyed, a bare container in its place, `make apply-prod RECOVERING=1`, `make
    recover-prod` (the newest archive, then the closing apply); then the recovered data
    checked against what prod had."""
    before = (as_odoo(PROD, f"psql -XAt -d {DB} -c 'SELECT count(*) FROM bench_payload'"),
              bench_attachments())  # fmt: skip
    env = sandbox_env()
    steps = {}
    for step, command in (
        ("rebuild", [*SANDBOX, "rebuild", PROD]),
        ("apply", ["make", "--no-print-directory", "apply-prod", "YES=1", "RECOVERING=1",
                   WITH_GROUP_DATA]),
        ("recover", ["make", "--no-print-directory", "recover-prod", "YES=1", WITH_GROUP_DATA]),
    ):  # fmt: skip
        start = time.monotonic()
        done = subprocess.run(command, cwd=PROJECT_DIR, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"recovery, {step}: failed\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        steps[step] = time.monotonic() - start
    after = (as_odoo(PROD, f"psql -XAt -d {DB} -c 'SELECT count(*) FROM bench_payload'"),
             bench_attachments())  # fmt: skip
    if after != before:
        sys.exit(f"recovered (rows, attachments and bytes) {after}, prod had {before}")
    return steps


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
    note("recovery from bare: prod rebuilt, applied, recovered from the backup host")
    recovery = recover_from_bare()
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
        *offsite_rows("day 1", day1),
        *offsite_rows("day 2", day2),
        ("recovery from bare: a bare container", seconds(recovery["rebuild"]), "-"),
        ("recovery from bare: make apply-prod RECOVERING=1", seconds(recovery["apply"]), "-"),
        ("recovery from bare: make recover-prod (extract, check, restore, start, closing apply)",
         seconds(recovery["recover"]), "-"),
        ("recovery from bare: whole", seconds(sum(recovery.values())), "-"),
    ]  # fmt: skip


def seconds(value: float) -> str:
    return f"{value:.0f} s"


def offsite_rows(day: str, figures: dict) -> list[tuple[str, str, str]]:
    return [
        (f"{day}: sent to the backup host (borg push)", mib(figures["offsite_sent"]), "-"),
        (f"{day}: the backup host's repository grows by", mib(figures["offsite_stored"]), "-"),
        (f"{day}: push time", seconds(figures["push_s"]), "-"),
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
