"""odoo-status: what it shows, and each thing it flags (exit 1), with fake systemctl, git and
journalctl and a local health page."""

from __future__ import annotations

import json
import os
import socket
import threading
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from .conftest import PROD_DB, edit_manifest, stamp, write_backup

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OK = "status:           OK\n"


class Health(BaseHTTPRequestHandler):
    """Odoo's health page: the database is up, but under /down."""

    def do_GET(self):  # noqa: N802 - http.server's name
        body = json.dumps({"db_server_status": not self.path.startswith("/down")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def health_url():
    server = HTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/web/health?db_server_status=1"
    server.shutdown()
    server.server_close()


def systemctl(failed: str = "") -> str:
    """A fake systemctl: the service active, `failed` the failed units' list."""
    return (
        'case "$*" in\n'
        '    "is-active "*) echo active ;;\n'
        '    "is-enabled "*) echo enabled ;;\n'
        f"    \"list-units \"*) printf '%s' '{failed}' ;;\n"
        '    "show -p InvocationID --value "*) echo 5f1c0ffee ;;\n'
        '    "show -p StateChangeTimestamp --value "*) echo "Fri 2026-11-27 02:41:07 CET" ;;\n'
        "    *) exit 1 ;;\n"
        "esac"
    )


@pytest.fixture
def status_host(make_host, health_url):
    """make_host(name), where all is fine: the service active and healthy, a fresh backup
    (prod), recent production data in use (recette)."""

    def make(name: str):
        host = make_host(name)
        host.config["health_url"] = host.config["front_health_url"] = health_url
        host.write_config()
        host.fake("systemctl", systemctl())
        host.fake(
            "git",
            'case "$*" in\n'
            f"    *rev-parse*) echo {COMMIT} ;;\n"
            "    *describe*) echo 18.0-20261127 ;;\n"
            "esac",
        )
        host.fake("journalctl", "echo 'starting'; echo 'ERROR: the reason'; echo 'exit 1'")
        now = datetime.now().astimezone()
        if host.config["backup_enabled"]:
            write_backup(host.path("backup_dir"), f"{PROD_DB}-{stamp(now)}")
            push(host, now, "success")
        if host.config["deploy_restore_allowed"]:
            in_use = f"{PROD_DB}-{stamp(now)} {(now - timedelta(days=1)).isoformat()}\n"
            host.path("production_data_in_use_file").write_text(in_use)
        return host

    return make


def push(host, when: datetime, result: str, last_success: datetime | None = None) -> None:
    """odoo-offsite-push's record of its last attempt."""
    success = last_success or (when if result == "success" else None)
    host.path("offsite_push_state_file").write_text(
        json.dumps(
            {
                "time": when.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "result": result,
                "archive": f"{PROD_DB}-{stamp(when)}",
                "error": None if result == "success" else "borg create failed (the reason)",
                "last_success": success.strftime("%Y-%m-%dT%H:%M:%S%z") if success else None,
            }
        )
    )


def attention(result) -> list[str]:
    assert result.returncode == 1, result.stdout + result.stderr
    assert OK not in result.stdout
    return [
        line.split(":", 1)[1].strip()
        for line in result.stdout.splitlines()
        if line.startswith("ATTENTION:")
    ]


@pytest.mark.parametrize("name", ["oca-france-prod", "oca-france-recette"])
def test_all_fine_is_ok(status_host, name):
    host = status_host(name)
    host.fake("runuser", 'shift 3; exec "$@"')  # runuser -u <user> -- <command>
    result = host.run("odoo-status")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.endswith(OK) and "ATTENTION" not in result.stdout
    assert f"deployed:         18.0-20261127 {COMMIT[:12]}\n" in result.stdout
    assert "service:          odoo-oca-france.service active, health ok\n" in result.stdout
    checkout = host.config["oca_france_dir"]
    assert f"git -C {checkout} rev-parse HEAD" in host.logged()
    assert not [call for call in host.logged() if "safe.directory" in call]  # git's check kept
    if os.getuid() == 0:  # root (make status, odoo-check): git runs as the checkout's owner
        user = host.config["odoo_user"]
        assert f"runuser -u {user} -- git -C {checkout} rev-parse HEAD" in host.logged()
    if name == "oca-france-prod":
        assert f"last backup:      {PROD_DB}-" in result.stdout
    else:
        assert (
            f"production data:  {PROD_DB}-" in result.stdout and "taken 24.0 h ago" in result.stdout
        )


def closed_port() -> int:
    with socket.socket() as closed:  # a port nothing listens on once closed
        closed.bind(("127.0.0.1", 0))
        return closed.getsockname()[1]


@pytest.mark.parametrize("where", ["no server", "database down"])
def test_a_failing_health_is_flagged(status_host, health_url, where):
    host = status_host("oca-france-prod")
    host.config["health_url"] = {
        "no server": f"http://127.0.0.1:{closed_port()}/web/health?db_server_status=1",
        "database down": health_url.replace("/web/health", "/down/web/health"),
    }[where]
    host.write_config()
    result = host.run("odoo-status")
    assert "odoo-oca-france.service active, health failing" in result.stdout
    assert attention(result) == ["odoo-oca-france.service is active, health failing"]


def test_a_front_door_down_or_not_passing_odoo_on_is_flagged(status_host):
    """Odoo healthy behind it: HAProxy stopped, or answering without reaching Odoo."""
    host = status_host("oca-france-prod")
    host.config["front_health_url"] = f"http://127.0.0.1:{closed_port()}/web/health"
    host.write_config()
    result = host.run("odoo-status")
    assert "front door:       haproxy active, health through it failing" in result.stdout
    assert attention(result) == ["haproxy is active, but Odoo's health fails through it"]
    host.fake("systemctl", systemctl().replace('"is-active "*)', '"is-active haproxy.service")'
              ' echo failed ;;\n    "is-active "*)'))  # fmt: skip
    result = host.run("odoo-status")
    assert "front door:       haproxy failed, health through it -" in result.stdout
    assert attention(result) == ["haproxy is failed: nothing reaches Odoo from outside"]


def test_the_service_or_a_timer_left_off_is_flagged(status_host):
    """An apply for a recovery whose closing apply never ran: no backup would run."""
    host = status_host("oca-france-prod")
    host.fake(
        "systemctl",
        systemctl().replace(
            '"is-enabled "*)',
            '"is-enabled odoo-backup.timer") echo disabled; exit 1 ;;\n    "is-enabled "*)',
        ),
    )
    result = host.run("odoo-status")
    assert result.returncode == 1
    assert attention(result) == ["odoo-backup.timer is disabled, not enabled: an apply enables it"]


def test_recettes_incoming_directory_near_its_limit_is_flagged(status_host):
    host = status_host("oca-france-recette")
    host.config["production_data_incoming_limit_mib"] = 1
    host.write_config()
    incoming = host.path("incoming_dir")
    (incoming / "part.dump").write_bytes(b"x" * 300 * 1024)
    result = host.run("odoo-status")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "incoming:         300.0 KiB of its 1.0 MiB limit\n" in result.stdout
    (incoming / "more.dump").write_bytes(b"x" * 600 * 1024)
    assert attention(host.run("odoo-status")) == [
        f"{incoming} holds 900.0 KiB, over 80% of its limit"
        " (production_data_incoming_limit_mib): the next delivery may be refused"
    ]


def test_an_old_backup_is_flagged(status_host):
    host = status_host("oca-france-prod")
    old = datetime.now().astimezone() - timedelta(hours=40)
    (backup,) = host.path("backup_dir").iterdir()
    edit_manifest(backup, time=old.isoformat(timespec="seconds"))
    assert host.config["status_backup_max_age_hours"] == 36
    assert attention(host.run("odoo-status")) == ["the last backup is 40.0 h old"]


def test_no_backup_is_flagged(status_host):
    host = status_host("oca-france-prod")
    for backup in host.path("backup_dir").iterdir():
        (backup / "manifest.json").unlink()  # incomplete: not a backup
    assert attention(host.run("odoo-status")) == [f"no backup in {host.config['backup_dir']}"]


def test_a_failed_unit_is_flagged_with_when_and_why(status_host):
    host = status_host("oca-france-prod")
    host.fake("systemctl", systemctl("odoo-backup.service loaded failed failed Backup\n"))
    assert attention(host.run("odoo-status")) == [
        "odoo-backup.service failed (Fri 2026-11-27 02:41:07 CET): ERROR: the reason"
    ]
    assert "systemctl show -p InvocationID --value odoo-backup.service" in host.logged()
    assert "journalctl --no-pager -q -o cat _SYSTEMD_INVOCATION_ID=5f1c0ffee" in host.logged()


def test_a_failed_refresh_from_production_is_flagged(status_host):
    host = status_host("oca-france-recette")
    refresh = {
        "action": "deploy",
        "restore": True,
        "result": "rolled back",
        "failed_step": "neutralizing",
        "error": "boom",
        "time": "2026-11-30T04:00:12+01:00",
        "by": "odoo-weekly-deploy",
    }
    deployed = {"action": "deploy", "restore": False, "result": "deployed", "time": "later"}
    lines = [json.dumps(refresh), "not json", json.dumps(deployed)]
    host.path("deploy_history_file").write_text("\n".join(lines) + "\n")
    result = host.run("odoo-status")
    assert "last refresh:     2026-11-30T04:00:12+01:00 by odoo-weekly-deploy: rolled back\n" in (
        result.stdout
    )
    assert attention(result) == [
        "the last refresh from production (2026-11-30T04:00:12+01:00, by odoo-weekly-deploy)"
        " rolled back at step neutralizing: boom"
    ]


def test_old_or_missing_production_data_is_flagged(status_host):
    host = status_host("oca-france-recette")
    taken = datetime.now().astimezone() - timedelta(days=10)
    host.path("production_data_in_use_file").write_text(f"{PROD_DB}-x {taken.isoformat()}\n")
    assert attention(host.run("odoo-status")) == ["the production data in use is 10.0 days old"]
    host.path("production_data_in_use_file").unlink()
    assert attention(host.run("odoo-status")) == ["no production data restored yet"]


def test_an_unfinished_deploy_is_flagged(status_host):
    host = status_host("oca-france-recette")
    host.path("deploy_state_file").write_text("step=updating\nref=origin/18.0\n")
    assert attention(host.run("odoo-status")) == [
        "a deploy of origin/18.0 is unfinished (step updating): odoo-deploy-repair.timer repairs it"
    ]


def test_the_last_push_is_shown_and_an_old_one_flagged(status_host):
    host = status_host("oca-france-prod")
    now = datetime.now().astimezone()
    result = host.run("odoo-status")
    assert result.returncode == 0, result.stdout
    assert f"last push:        {PROD_DB}-{stamp(now)} at " in result.stdout
    # A failed attempt after a recent success: said, not flagged (its unit failing is).
    push(host, now, "failed", last_success=now - timedelta(hours=20))
    result = host.run("odoo-status")
    assert "last push:        failed at " in result.stdout
    assert "borg create failed (the reason)" in result.stdout
    assert result.returncode == 0, result.stdout
    # None succeeded for longer than offsite_max_age_hours: flagged.
    assert host.config["offsite_max_age_hours"] == 36
    push(host, now, "failed", last_success=now - timedelta(hours=40))
    assert attention(host.run("odoo-status")) == [
        "no push to the backup host succeeded recently (the last one 40.0 h ago)"
    ]
    host.path("offsite_push_state_file").unlink()
    assert attention(host.run("odoo-status")) == ["no backup pushed to the backup host yet"]
