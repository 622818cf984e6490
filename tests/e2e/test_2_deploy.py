"""The deploy script, run for real on recette (and refused where it must be on prod).

Tests run in file order: each builds on the state the previous one left.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from .conftest import (
    ADMIN,
    ADMIN_PARTNER,
    DB,
    NEUTRALIZED,
    PROD,
    RECETTE,
    deploy,
    head,
    installed_version,
    login_page_ok,
    main_pid,
    neutralization,
    psql,
)
from .frontdoor_client import Traffic

ADDON = Path("oca_france_all")  # addons sit at the repository root, as in the real app
FILESTORE = "/home/odoo/.local/share/Odoo/filestore"


def set_version(version: str):
    def change(work: Path) -> None:
        manifest = work / ADDON / "__manifest__.py"
        text = re.sub(r'"version": "[^"]+"', f'"version": "{version}"', manifest.read_text())
        manifest.write_text(text)

    return change


def with_migration(version: str, body: str):
    """A release of ADDON at `version` whose post-migration script runs `body` (Python, in
    `migrate(cr, version)`): Odoo runs it when the update moves the addon to `version`."""

    def change(work: Path) -> None:
        set_version(version)(work)
        script = work / ADDON / "migrations" / version / "post-migrate.py"
        script.parent.mkdir(parents=True)
        lines = "".join(f"    {line}\n" for line in body.strip().splitlines())
        script.write_text(f"import time  # noqa: F401\n\n\ndef migrate(cr, version):\n{lines}")

    return change


SNAPSHOTS = "/home/odoo/.odoo_dumps/snapshots"


def snapshots(host) -> list[str]:
    """The deploy's snapshots: databases in PostgreSQL, each with its filestore directory."""
    names = psql(host, "postgres", "SELECT datname FROM pg_database WHERE datname LIKE '%-snap-%'")
    return sorted(names.split())


def last_history(host) -> dict:
    return json.loads(host.check_output("tail -n 1 /home/odoo/.odoo_dumps/deploy-history.jsonl"))


def site(sandbox, recette) -> tuple[str, bool]:
    """What a visitor sees: the version of the app's meta-module, and a working login page."""
    return installed_version(recette, DB[RECETTE], "oca_france_all"), login_page_ok(
        sandbox, RECETTE
    )


def traffic(sandbox) -> Traffic:
    """A client reading and writing through recette's front door every 0.1 s (its hold is
    longer than a deploy's downtime: no request may fail)."""
    return Traffic(sandbox.url(RECETTE, ""), DB[RECETTE], *ADMIN, ADMIN_PARTNER)


def assert_no_request_failed(client: Traffic) -> None:
    assert client.count() > 20 and not client.failures(), client.summary()
    print(f"through the front door: {client.summary()}")


def test_deploy_moves_recette_to_a_new_commit(sandbox, recette):
    commit = sandbox.push_commit("feature/release-2", "Release 2", set_version("18.0.1.1.0"))
    with traffic(sandbox) as client:
        result = deploy(recette, "origin/feature/release-2")
    assert result.rc == 0, result.stdout + result.stderr
    assert_no_request_failed(client)
    assert head(recette) == commit
    assert site(sandbox, recette) == ("18.0.1.1.0", True)
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
    assert "Updating addons" not in result.stdout and "odoo.modules" not in result.stdout
    log = recette.file(entry["log"]).content_string
    assert "Updating addons for their hash changed: oca_france_all." in log


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
    assert login_page_ok(sandbox, RECETTE)
    company = psql(recette, DB[RECETTE], "SELECT name FROM res_company ORDER BY id LIMIT 1")
    assert company == "OCA France Production SA"
    # Real `odoo neutralize`: Odoo's and the app's neutralize.sql, the flag as Odoo writes it.
    assert neutralization(recette, DB[RECETTE]) == NEUTRALIZED
    assert recette.file(f"{FILESTORE}/{DB[RECETTE]}/ab/cafe").content_string == "invoice\n"
    # Production itself is untouched.
    production = neutralization(prod, DB[PROD])
    assert production["flag"] == "" and production["app_secret"] == 1
    assert production["active_crons"] > 0 and production["live_mail_servers"] > 0


def assert_rolled_back(sandbox, recette, result, previous_head, previous_site, failed_step):
    assert result.rc == 5, result.stdout + result.stderr
    assert "ROLLBACK" in result.stdout
    assert head(recette) == previous_head
    assert sandbox.health(RECETTE)["db_server_status"] is True
    assert site(sandbox, recette) == previous_site
    entry = last_history(recette)
    assert (entry["result"], entry["failed_step"]) == ("rolled back", failed_step)
    assert entry["from"] == previous_head and entry["to"] != previous_head
    # The failing step's last lines, and where the whole log is.
    assert f"last lines of the failed step (whole log: {entry['log']})" in result.stderr


def test_failed_migration_rolls_back_and_keeps_the_site_up(sandbox, recette):
    previous_head, previous_site = head(recette), site(sandbox, recette)
    broken = with_migration("18.0.1.3.0", "cr.execute('UPDATE no_such_table SET x = 1')")
    sandbox.push_commit("broken/update", "Broken migration", broken)
    with traffic(sandbox) as client:
        result = deploy(recette, "origin/broken/update")
    assert_rolled_back(sandbox, recette, result, previous_head, previous_site, "updating")
    assert_no_request_failed(client)
    assert 'relation "no_such_table" does not exist' in result.stderr
    error = last_history(recette)["error"]
    assert 'relation "no_such_table" does not exist' in error, error


def with_data_file(version: str, path: str, content: str):
    """A release of ADDON at `version` that loads one more data file (its manifest's data)."""

    def change(work: Path) -> None:
        set_version(version)(work)
        (work / ADDON / path).parent.mkdir(parents=True, exist_ok=True)
        (work / ADDON / path).write_text(content)
        manifest = work / ADDON / "__manifest__.py"
        data = f'"data": ["{path}"],\n    "installable"'
        manifest.write_text(manifest.read_text().replace('"installable"', data))

    return change


def test_a_view_that_does_not_parse_rolls_back(sandbox, recette):
    previous_head, previous_site = head(recette), site(sandbox, recette)
    broken_view = with_data_file(
        "18.0.1.3.1",
        "views/partner.xml",
        '<odoo><record id="view_partner_broken" model="ir.ui.view">'
        '<field name="name">broken</field><field name="model">res.partner</field>'
        '<field name="arch" type="xml"><form><field name="name"></form>'
        "</field></record></odoo>\n",
    )
    sandbox.push_commit("broken/view", "A view that does not parse", broken_view)
    result = deploy(recette, "origin/broken/view")
    assert_rolled_back(sandbox, recette, result, previous_head, previous_site, "updating")
    assert "Opening and ending tag mismatch" in result.stderr


def test_a_login_page_that_crashes_rolls_back(sandbox, recette):
    """The update passes (the template is valid), the started server cannot serve its
    login page: the deploy's start check fails, and it rolls back."""
    previous_head, previous_site = head(recette), site(sandbox, recette)
    crashing_login = with_data_file(
        "18.0.1.3.2",
        "views/login.xml",
        '<odoo><template id="login_crashes" inherit_id="web.login">'
        '<xpath expr="//form" position="before"><t t-out="1 / 0"/></xpath>'
        "</template></odoo>\n",
    )
    sandbox.push_commit("broken/start", "A login page that crashes", crashing_login)
    result = deploy(recette, "origin/broken/start")
    assert_rolled_back(sandbox, recette, result, previous_head, previous_site, "starting")
    assert "/web/login answers 500" in result.stdout + result.stderr


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
    assert site(sandbox, recette) == ("18.0.1.4.0", True)
    assert neutralization(recette, DB[RECETTE]) == NEUTRALIZED
