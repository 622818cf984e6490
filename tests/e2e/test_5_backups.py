"""Production's daily backup, run for real while the site serves.

Tests run in file order: each builds on the backups the previous one left.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta

from .conftest import (
    BACKUPS,
    DB,
    DEPLOY,
    NEUTRALIZED,
    PROD,
    PRODUCTION_DATA,
    RECETTE,
    backup_dirs,
    filestore,
    head,
    login_page_ok,
    main_pid,
    make_dump_from_the_future,
    neutralization,
    psql,
    run_backup,
    unit_invocation,
    wait_unit_done,
)

FILESTORE = filestore(PROD)
LOCK = "/home/odoo/.odoo_dumps/.deploy.lock"


def attach(prod, path: str, content: str) -> None:
    prod.check_output(
        f"sudo -u odoo sh -c 'mkdir -p {FILESTORE}/$(dirname {path})"
        f" && echo {content} > {FILESTORE}/{path}'"
    )


def test_backup_timer_on_prod_only(recette, prod):
    timer = prod.service("odoo-backup.timer")
    assert timer.is_enabled and timer.is_running
    assert not recette.file("/etc/systemd/system/odoo-backup.timer").exists


def test_backup_while_the_site_serves(sandbox, prod):
    psql(prod, DB[PROD], "UPDATE res_company SET name = 'Backed up SA'")
    attach(prod, "ab/abcdef", "first-attachment")
    pid = main_pid(prod)

    result = run_backup(prod)
    assert result.rc == 0, result.stderr
    [name] = backup_dirs(prod)  # complete, and nothing partial left around
    backup = f"{BACKUPS}/{name}"
    manifest = json.loads(prod.file(f"{backup}/manifest.json").content_string)
    assert manifest["database"] == DB[PROD]
    assert manifest["commit"] == head(prod)
    dump_sha256 = prod.check_output(f"sha256sum {backup}/{DB[PROD]}.dump").split()[0]
    assert manifest["dump_sha256"] == dump_sha256
    assert manifest["dump_bytes"] == int(prod.check_output(f"stat -c %s {backup}/{DB[PROD]}.dump"))
    assert manifest["filestore_files"] >= 1
    catalogue = prod.check_output(f"sudo -u odoo pg_restore --list {backup}/{DB[PROD]}.dump")
    assert "TABLE DATA public res_company" in catalogue
    assert prod.file(f"{backup}/filestore/ab/abcdef").content_string == "first-attachment\n"
    assert prod.file(backup).mode == 0o700
    assert main_pid(prod) == pid  # served all along
    sandbox.wait_healthy(PROD, timeout=5)


def test_next_backup_links_the_files_it_already_has(prod):
    # Yesterday's backup (a second one the same day would replace it: one a day is kept).
    [today] = backup_dirs(prod)
    # A day before today's own stamp (the names' clock, whatever the local date says).
    stamp = datetime.strptime(today.rsplit("-", 1)[1], "%Y%m%dT%H%M%S")
    first = f"{DB[PROD]}-{stamp - timedelta(days=1):%Y%m%dT%H%M%S}"
    prod.check_output(f"sudo -u odoo mv {BACKUPS}/{today} {BACKUPS}/{first}")
    attach(prod, "cd/cdef01", "second-attachment")
    assert run_backup(prod).rc == 0
    assert backup_dirs(prod)[0] == first
    [second] = backup_dirs(prod)[1:]
    inodes = prod.check_output(
        f"stat -c %i {BACKUPS}/{first}/filestore/ab/abcdef {BACKUPS}/{second}/filestore/ab/abcdef"
    ).split()
    assert inodes[0] == inodes[1]  # one copy on disk for both backups
    assert not prod.file(f"{BACKUPS}/{first}/filestore/cd/cdef01").exists
    assert prod.file(f"{BACKUPS}/{second}/filestore/cd/cdef01").content_string == (
        "second-attachment\n"
    )


def test_backup_and_deploy_never_overlap(prod):
    before = backup_dirs(prod)
    transfer = unit_invocation(prod, "odoo-backup-transfer.service")
    # A deploy holds the lock: the backup waits for it instead of running beside it.
    prod.check_output(
        f"systemd-run --unit=hold-deploy-lock --uid=odoo --gid=odoo flock {LOCK} sleep 15"
    )
    try:
        time.sleep(1)
        prod.check_output("systemctl start --no-block odoo-backup.service")
        time.sleep(4)
        assert prod.check_output("systemctl is-active odoo-backup.service || true") == (
            "activating"
        )
        assert backup_dirs(prod) == before
        journal = prod.check_output("journalctl -u odoo-backup.service --no-pager -o cat -n 5")
        assert "is held (a deploy, a backup or a repair): waiting up to" in journal
        # And a deploy started during a backup is refused, nothing touched.
    finally:
        prod.run("systemctl stop hold-deploy-lock.service")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and set(backup_dirs(prod)) <= set(before):
        time.sleep(1)
    assert set(backup_dirs(prod)) - set(before), "no backup once the lock was released"
    assert wait_unit_done(prod, "odoo-backup-transfer.service", transfer) == "success"

    prod.check_output(
        f"systemd-run --unit=hold-deploy-lock-2 --uid=odoo --gid=odoo flock {LOCK} sleep 10"
    )
    time.sleep(1)
    refused = prod.run(f"sudo -u odoo {DEPLOY} 18.0-20261127")
    prod.run("systemctl stop hold-deploy-lock-2.service")
    assert refused.rc == 2, refused.stdout + refused.stderr
    assert "another deploy, a backup or a repair is running" in refused.stderr


def test_failed_backup_fails_the_unit_and_leaves_nothing_partial(sandbox, prod):
    before = backup_dirs(prod)
    # A file odoo cannot read makes the filestore snapshot fail, after the dump.
    prod.check_output(f"install -m 600 -o root /dev/null {FILESTORE}/unreadable")
    try:
        result = run_backup(prod)
    finally:
        prod.check_output(f"rm -f {FILESTORE}/unreadable")
    assert result.rc != 0
    assert prod.check_output("systemctl is-failed odoo-backup.service || true") == "failed"
    journal = prod.check_output("journalctl -u odoo-backup.service --no-pager -o cat -n 20")
    assert "Permission denied" in journal and "backup failed: removing" in journal
    assert backup_dirs(prod) == before  # no partial directory, the others untouched
    prod.check_output("systemctl reset-failed odoo-backup.service")
    sandbox.wait_healthy(PROD, timeout=5)


def partial_backups(prod) -> list[str]:
    return [name for name in backup_dirs(prod) if name.startswith(".partial-")]


def test_a_stopped_or_killed_backup_leaves_no_partial_directory_after_the_next(prod):
    """A backup stopped (SIGTERM: systemctl stop, a shutdown) removes its partial directory;
    one killed outright (SIGKILL, a power cut) cannot: the next backup removes it."""
    before = [name for name in backup_dirs(prod) if not name.startswith(".")]
    # A table another session holds exclusively: pg_dump waits for it, mid-backup.
    psql(prod, DB[PROD], "CREATE TABLE backup_blocker (id int)")
    hold = (
        "systemd-run --unit=hold-backup-blocker --uid=odoo --gid=odoo"
        f" --setenv=PGAPPNAME=backup-blocker psql -d {DB[PROD]} -c"
        " 'BEGIN; LOCK TABLE backup_blocker IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(120)'"
    )

    def started_and_dumping() -> None:
        prod.check_output("systemctl start --no-block odoo-backup.service")
        deadline = time.monotonic() + 60
        while not partial_backups(prod):
            assert time.monotonic() < deadline, "the backup never started its dump"
            time.sleep(0.5)

    try:
        prod.check_output(hold)
        time.sleep(1)
        started_and_dumping()
        prod.check_output("systemctl stop odoo-backup.service")  # SIGTERM
        assert partial_backups(prod) == []
        started_and_dumping()
        prod.check_output("systemctl kill -s KILL odoo-backup.service")
        time.sleep(1)
        assert len(partial_backups(prod)) == 1  # nothing could clean up after SIGKILL
    finally:
        prod.run("systemctl stop hold-backup-blocker.service")
        # Its server side sleeps on, holding the lock, until it is ended too.
        prod.run(
            'sudo -u postgres psql -XAtq -c "SELECT pg_terminate_backend(pid)'
            " FROM pg_stat_activity WHERE application_name = 'backup-blocker'\""
        )
        prod.run("systemctl reset-failed odoo-backup.service hold-backup-blocker.service")
        psql(prod, DB[PROD], "DROP TABLE IF EXISTS backup_blocker")
    assert run_backup(prod).rc == 0
    assert partial_backups(prod) == []
    journal = prod.check_output("journalctl -u odoo-backup.service --no-pager -o cat -n 30")
    assert "left by a backup that died" in journal
    assert len(backup_dirs(prod)) >= len(before)


def send_to_recette(sandbox, name: str, as_name: str) -> None:
    """Copy a production backup into recette's production data by hand, past the transfer's
    checks: deploy --restore must still verify it."""
    archive = sandbox.ssh(PROD, f"tar -C {BACKUPS} -cf - {name}")
    rename = f" && mv {name} {as_name}" if as_name != name else ""
    sandbox.ssh(
        RECETTE,
        f"sudo -u odoo sh -c 'cd {PRODUCTION_DATA} && tar -xf -{rename}'",
        stdin=archive,
    )


def test_restore_reads_a_backup_directory(sandbox, recette, prod):
    newest = backup_dirs(prod)[-1]
    assert newest in backup_dirs(recette, PRODUCTION_DATA)  # delivered and accepted
    result = recette.run(f"sudo -u odoo {DEPLOY} -R origin/18.0")
    assert result.rc == 0, result.stdout + result.stderr
    assert f"production data to restore: {PRODUCTION_DATA}/{newest}" in result.stdout
    assert login_page_ok(sandbox, RECETTE)
    assert psql(recette, DB[RECETTE], "SELECT name FROM res_company ORDER BY id LIMIT 1") == (
        "Backed up SA"
    )
    assert neutralization(recette, DB[RECETTE]) == NEUTRALIZED
    filestore = f"/home/odoo/.local/share/Odoo/filestore/{DB[RECETTE]}"
    assert recette.file(f"{filestore}/ab/abcdef").content_string == "first-attachment\n"
    assert recette.file(f"{filestore}/cd/cdef01").content_string == "second-attachment\n"


def test_a_corrupted_backup_is_refused_and_recette_keeps_running(sandbox, recette, prod):
    newest = backup_dirs(prod)[-1]
    later = f"{DB[PROD]}-29991231T235959"  # the newest by name: the one -R would take
    send_to_recette(sandbox, newest, later)
    recette.check_output(f"sudo -u odoo truncate -s -100 {PRODUCTION_DATA}/{later}/{DB[PROD]}.dump")
    pid, commit = main_pid(recette), head(recette)
    try:
        result = recette.run(f"sudo -u odoo {DEPLOY} -R origin/18.0")
    finally:
        recette.check_output(f"rm -rf {PRODUCTION_DATA}/{later}")
    assert result.rc == 2, result.stdout + result.stderr
    assert "production data refused, not restored" in result.stderr
    assert "bytes, the manifest says" in result.stderr
    assert (main_pid(recette), head(recette)) == (pid, commit)
    sandbox.wait_healthy(RECETTE, timeout=5)


def test_a_dump_recette_cannot_read_is_refused_before_the_site_stops(sandbox, recette, prod):
    """A dump from a newer PostgreSQL than recette's: refused by deploy -R (exit 2) while the
    site serves, and the weekly refresh fails with the reason, which make status shows."""
    newest = backup_dirs(prod)[-1]
    later = f"{DB[PROD]}-29991231T235959"  # the newest by name: the one -R would take
    send_to_recette(sandbox, newest, later)
    make_dump_from_the_future(recette, f"{PRODUCTION_DATA}/{later}")
    pid, commit = main_pid(recette), head(recette)
    weekly = "odoo-weekly-deploy.service"
    try:
        result = recette.run(f"sudo -u odoo {DEPLOY} -R origin/18.0")
        refresh = recette.run(f"systemctl start {weekly}")
        status = sandbox.make("status")
    finally:
        recette.check_output(f"rm -rf {PRODUCTION_DATA}/{later}")
        recette.run(f"systemctl reset-failed {weekly}")
    assert result.rc == 2, result.stdout + result.stderr
    assert "production data refused, not restored" in result.stderr
    assert "was made by PostgreSQL 99" in result.stderr
    assert "oca-france-recette has 17" in result.stderr
    assert (main_pid(recette), head(recette)) == (pid, commit)
    sandbox.wait_healthy(RECETTE, timeout=5)
    assert refresh.rc != 0
    out = status.stdout + status.stderr
    assert status.returncode != 0, out
    assert re.search(
        rf"\[{RECETTE}\]\s+ATTENTION:\s+{weekly} failed \(\w+ \d{{4}}-\d\d-\d\d [\d:]+ \w+\):"
        r" .*was made by PostgreSQL 99",
        out,
    ), out
