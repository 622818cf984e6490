"""The deploy script, run for real on recette (and refused where it must be on prod).

Tests run in file order: each builds on the state the previous one left.
"""

from __future__ import annotations

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
    backups = recette.check_output("ls /home/odoo/.odoo_dumps/before-deploy").split()
    assert any(name.endswith(".dump") for name in backups)
    assert any(name.endswith(".filestore.tar.gz") for name in backups)


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


def assert_rolled_back(sandbox, recette, result, previous_head, previous_page):
    assert result.rc == 5, result.stdout + result.stderr
    assert "ROLLBACK" in result.stdout
    assert head(recette) == previous_head
    assert sandbox.health(RECETTE)["db_server_status"] is True
    assert login_page(sandbox) == previous_page


def test_failed_update_rolls_back_and_keeps_the_site_up(sandbox, recette):
    previous_head, previous_page = head(recette), login_page(sandbox)

    def broken_update(work: Path) -> None:
        set_version("18.0.1.3.0")(work)
        (work / ADDON / "data" / "update.sql").write_text("UPDATE no_such_table SET x = 1;\n")

    sandbox.push_commit("broken/update", "Broken migration", broken_update)
    result = deploy(recette, "origin/broken/update")
    assert_rolled_back(sandbox, recette, result, previous_head, previous_page)


def test_server_that_cannot_start_rolls_back(sandbox, recette):
    previous_head, previous_page = head(recette), login_page(sandbox)

    def broken_import(work: Path) -> None:
        (work / ADDON / "__init__.py").write_text('raise RuntimeError("broken release")\n')

    sandbox.push_commit("broken/start", "Broken import", broken_import)
    result = deploy(recette, "origin/broken/start")
    assert_rolled_back(sandbox, recette, result, previous_head, previous_page)


def test_bad_input_is_refused_before_anything_is_touched(recette, prod):
    pids = {RECETTE: main_pid(recette), PROD: main_pid(prod)}
    backups = recette.check_output("ls /home/odoo/.odoo_dumps/before-deploy")
    cases = [
        (recette, (), 1, "missing <git-ref>"),
        (recette, ("--bogus", "origin/18.0"), 1, "unknown option"),
        (recette, ("origin/18.0", "extra"), 1, "only one git ref"),
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
    assert recette.check_output("ls /home/odoo/.odoo_dumps/before-deploy") == backups


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
