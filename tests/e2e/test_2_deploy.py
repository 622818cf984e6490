"""The deploy script, run for real on recette (and refused where it must be on prod).

Tests run in file order: each builds on the state the previous one left.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from .conftest import DB, PROD, RECETTE, deploy, head, main_pid, psql

ADDON = Path("oca_france_all")  # addons sit at the repository root, as in the real app
FILESTORE = "/home/odoo/.local/share/Odoo/filestore"


def set_version(version: str):
    def change(work: Path) -> None:
        manifest = work / ADDON / "__manifest__.py"
        text = re.sub(r'"version": "[^"]+"', f'"version": "{version}"', manifest.read_text())
        manifest.write_text(text)

    return change


SNAPSHOTS = "/home/odoo/.odoo_dumps/snapshots"


def snapshots(host) -> list[str]:
    """The deploy's snapshots: databases in PostgreSQL, each with its filestore directory."""
    names = psql(host, "postgres", "SELECT datname FROM pg_database WHERE datname LIKE '%-snap-%'")
    return sorted(names.split())


def last_history(host) -> dict:
    return json.loads(host.check_output("tail -n 1 /home/odoo/.odoo_dumps/deploy-history.jsonl"))


def login_page(sandbox) -> str:
    status, page = sandbox.get(RECETTE, "/web/login")
    assert status == 200, page
    return page


def test_deploy_moves_recette_to_a_new_commit(sandbox, recette):
    commit = sandbox.push_commit("feature/release-2", "Release 2", set_version("18.0.1.1.0"))
    result = deploy(recette, "origin/feature/release-2")
    assert result.rc == 0, result.stdout + result.stderr
    assert head(recette) == commit
    assert "oca_france_all 18.0.1.1.0" in login_page(sandbox)
    # The snapshot: a copy of the database in PostgreSQL, the filestore as hard links.
    [snapshot] = snapshots(recette)
    assert snapshot.startswith(f"{DB[RECETTE]}-snap-")
    assert recette.file(f"{SNAPSHOTS}/{snapshot}/filestore").is_directory
    entry = last_history(recette)
    assert (entry["action"], entry["result"], entry["to"]) == ("deploy", "deployed", commit)
    assert entry["ref"] == "origin/feature/release-2" and entry["failed_step"] is None
    assert 0 <= entry["downtime_s"] <= entry["duration_s"]
    # The terminal got the step lines, the log got Odoo's and uv's output too.
    assert "log of this deploy" in result.stdout
    assert "all modules up to date" not in result.stdout and "updated" not in result.stdout
    log = recette.file(entry["log"]).content_string
    assert "updated oca_france_all" in log


def test_deploy_restore_brings_neutralized_production_data(sandbox, recette, prod):
    # Production: business data and an attachment, saved in the deploy's backup format.
    psql(prod, DB[PROD], "UPDATE res_company SET name = 'OCA France Production SA'")
    prod.check_output(
        f"sudo -u odoo sh -c 'mkdir -p {FILESTORE}/{DB[PROD]}/ab"
        f" && echo invoice > {FILESTORE}/{DB[PROD]}/ab/cafe'"
    )
    prod.check_output(
        f"sudo -u odoo sh -c 'cd / && pg_dump -Fc -f /tmp/prod.dump {DB[PROD]}"
        f" && tar -C {FILESTORE} -czf /tmp/prod.filestore.tar.gz {DB[PROD]}'"
    )
    # Copied to recette the way production data arrives there.
    target = f"/home/odoo/.odoo_dumps/production-data/{DB[PROD]}-20260101T030000"
    for suffix in (".dump", ".filestore.tar.gz"):
        data = sandbox.ssh(PROD, f"cat /tmp/prod{suffix}")
        sandbox.ssh(RECETTE, f"sudo -u odoo sh -c 'cat > {target}{suffix}'", stdin=data)

    result = deploy(recette, "-R", "origin/feature/release-2")
    assert result.rc == 0, result.stdout + result.stderr
    page = login_page(sandbox)
    assert "OCA France Production SA" in page
    assert "database.is_neutralized = True" in page
    assert '<span id="active-crons">0</span>' in page
    assert '<span id="active-mail-servers">0</span>' in page
    assert recette.file(f"{FILESTORE}/{DB[RECETTE]}/ab/cafe").content_string == "invoice\n"
    # Production itself is untouched.
    assert psql(prod, DB[PROD], "SELECT count(*) FROM ir_cron WHERE active") == "2"


def assert_rolled_back(sandbox, recette, result, previous_head, previous_page, failed_step):
    assert result.rc == 5, result.stdout + result.stderr
    assert "ROLLBACK" in result.stdout
    assert head(recette) == previous_head
    assert sandbox.health(RECETTE)["db_server_status"] is True
    assert login_page(sandbox) == previous_page
    entry = last_history(recette)
    assert (entry["result"], entry["failed_step"]) == ("rolled back", failed_step)
    assert entry["from"] == previous_head and entry["to"] != previous_head
    # The failing step's last lines, and where the whole log is.
    assert f"last lines of the failed step (whole log: {entry['log']})" in result.stderr


def test_failed_update_rolls_back_and_keeps_the_site_up(sandbox, recette):
    previous_head, previous_page = head(recette), login_page(sandbox)

    def broken_update(work: Path) -> None:
        set_version("18.0.1.3.0")(work)
        (work / ADDON / "data" / "update.sql").write_text("UPDATE no_such_table SET x = 1;\n")

    sandbox.push_commit("broken/update", "Broken migration", broken_update)
    result = deploy(recette, "origin/broken/update")
    assert_rolled_back(sandbox, recette, result, previous_head, previous_page, "updating")
    assert 'relation "no_such_table" does not exist' in result.stderr


def test_server_that_cannot_start_rolls_back(sandbox, recette):
    previous_head, previous_page = head(recette), login_page(sandbox)

    def broken_import(work: Path) -> None:
        (work / ADDON / "__init__.py").write_text('raise RuntimeError("broken release")\n')

    sandbox.push_commit("broken/start", "Broken import", broken_import)
    result = deploy(recette, "origin/broken/start")
    assert_rolled_back(sandbox, recette, result, previous_head, previous_page, "starting")


def test_bad_input_is_refused_before_anything_is_touched(recette, prod):
    pids = {RECETTE: main_pid(recette), PROD: main_pid(prod)}
    before = snapshots(recette)
    cases = [
        (recette, (), 1, "missing <git-ref>"),
        (recette, ("--bogus", "origin/18.0"), 1, "unknown option"),
        (recette, ("origin/18.0", "extra"), 1, "only one git ref"),
        (recette, ("--status", "--dry-run", "origin/18.0"), 1, "do not go together"),
        (recette, ("--status", "origin/18.0"), 1, "--status takes no ref"),
        (recette, ("--boot",), 1, "--boot goes with --repair"),
        (recette, ("no-such-ref",), 2, "unknown git ref"),
        (prod, ("origin/18.0",), 1, "does not match"),
        (prod, ("-R", "18.0-20260101"), 1, "--restore is not allowed"),
    ]
    for host, args, code, message in cases:
        result = deploy(host, *args)
        assert result.rc == code, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
    as_root = recette.run("/home/odoo/scripts/deploy origin/18.0")
    assert as_root.rc == 2 and "run me as odoo" in as_root.stderr
    assert {RECETTE: main_pid(recette), PROD: main_pid(prod)} == pids
    assert snapshots(recette) == before


def test_auto_deploy_follows_18_0_with_production_data(sandbox, recette):
    commit = sandbox.push_commit("18.0", "Release 4", set_version("18.0.1.4.0"))
    deadline = time.monotonic() + 150  # the timer fires every minute
    while time.monotonic() < deadline and head(recette) != commit:
        time.sleep(3)
    assert head(recette) == commit, recette.check_output(
        "journalctl -u odoo-auto-deploy.service --no-pager -n 30"
    )
    sandbox.wait_healthy(RECETTE)
    page = login_page(sandbox)
    assert "oca_france_all 18.0.1.4.0" in page
    assert "database.is_neutralized = True" in page
