"""The alerts (odoo-notify, odoo-check): what a failure sends through each channel (msmtp
faked at the runner's seam, a real HTTP listener for the webhook and the pings), once per
incident for a unit that restarts itself, a channel that cannot deliver said without its
secret, and the periodic check's one alert each way."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

TOKEN = "token-5e8b"  # in the webhook's URL: never printed


class Listener:
    """An HTTP listener on loopback: records each request (method, path, body)."""

    def __init__(self):
        self.requests: list[tuple[str, str, bytes]] = []
        self.status = 200
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                listener.requests.append((self.command, self.path, body))
                self.send_response(listener.status)
                self.end_headers()

            do_GET = do_POST = answer

            def log_message(self, *_):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def posts(self) -> list[dict]:
        return [json.loads(body) for method, _, body in self.requests if method == "POST"]

    def paths(self) -> list[str]:
        return [path for method, path, _ in self.requests if method == "GET"]


@pytest.fixture
def listener():
    found = Listener()
    yield found
    found.server.shutdown()


@pytest.fixture
def alerting(make_host, listener):
    """prod with both channels set: msmtp (faked: each message kept in mails/) and a webhook
    to the listener; systemctl and journalctl faked (a unit's properties, its journal)."""
    host = make_host("oca-france-prod")
    mails = host.root / "mails"
    mails.mkdir()
    host.fake("msmtp", f'cat > "$(mktemp -p {mails})"')
    (host.root / "restart").write_text("no\n")
    host.fake(
        "systemctl",
        'case "$*" in *InvocationID*) echo 0123abcd ;; *Result*) echo exit-code ;;'
        f" *Restart*) cat {host.root}/restart ;; esac",
    )
    host.fake(
        "journalctl",
        'echo "2026-12-03T01:15:02+01:00 prod odoo-backup[42]: ERROR: [Errno 13] Permission'
        ' denied: /home/odoo/.odoo_dumps/backups/.partial-x"',
    )
    webhook = host.root / "etc" / "alerts-webhook"
    webhook.write_text(f"{listener.url}/hook/{TOKEN}\n")
    host.config.update(
        alert_email_to=["ops@test"],
        alert_email_from="odoo@test",
        alert_msmtp_config=str(host.root / "etc" / "msmtprc"),
        alert_webhook_file=str(webhook),
        alert_state_dir=str(host.root / "alerts"),
        ping_urls={"backup": f"{listener.url}/ping/b"},
        check_settle_sec=1,
    )
    host.write_config()
    host.mails = mails
    return host


def mails(host) -> list[str]:
    return sorted(path.read_text() for path in host.mails.iterdir())


def test_a_failed_unit_sends_one_mail_and_one_post_with_its_reason(alerting, listener):
    result = alerting.run("odoo-notify", "odoo-backup.service")
    assert result.returncode == 0, result.stdout + result.stderr
    [mail] = mails(alerting)
    assert "Subject: [" in mail and "odoo-backup.service failed (exit-code)" in mail
    assert "To: ops@test" in mail and "From: odoo@test" in mail
    assert "ERROR: [Errno 13] Permission denied" in mail  # the failed run's journal
    assert "msmtp -C " + alerting.config["alert_msmtp_config"] + " -t" in alerting.logged()
    [post] = listener.posts()
    assert (post["unit"], post["result"]) == ("odoo-backup.service", "exit-code")
    assert "Permission denied" in post["text"]
    assert listener.paths() == ["/ping/b/fail"]  # its dead man's switch told too
    assert "journalctl --no-pager -o short-iso -n 20 _SYSTEMD_INVOCATION_ID=0123abcd" in (
        alerting.logged()
    )
    last = json.loads((alerting.path("alert_state_dir") / "last-alert.json").read_text())
    assert last["delivered"] == "e-mail sent, webhook sent"
    # Failing again: one more of each.
    assert alerting.run("odoo-notify", "odoo-backup.service").returncode == 0
    assert len(mails(alerting)) == 2 and len(listener.posts()) == 2


def test_a_unit_that_restarts_itself_alerts_once_per_incident(alerting, listener):
    (alerting.root / "restart").write_text("on-failure\n")
    for _ in range(3):  # the server killed three times: each restart stops it
        result = alerting.run(
            "odoo-notify",
            "--exited",
            "odoo-oca-france.service",
            SERVICE_RESULT="signal",
            EXIT_STATUS="KILL",
        )
        assert result.returncode == 0, result.stdout + result.stderr
    assert len(mails(alerting)) == 1 and len(listener.posts()) == 1
    assert "odoo-oca-france.service failed (signal, KILL)" in mails(alerting)[0]
    assert "already alerted at" in result.stdout
    # A clean stop (a deploy's, a restart's) is no failure.
    clean = alerting.run("odoo-notify", "--exited", "odoo-oca-france.service")
    assert clean.returncode == 0 and len(mails(alerting)) == 1


def test_a_channel_that_cannot_deliver_says_why_without_its_secret(alerting, listener):
    alerting.fake("msmtp", 'echo "msmtp: cannot connect to relay.test, port 587" >&2; exit 69')
    listener.status = 500
    result = alerting.run("odoo-notify", "odoo-backup.service")
    assert result.returncode == 1  # its unit fails: make status shows it (it never loops)
    assert "e-mail: not delivered: msmtp exited 69: msmtp: cannot connect" in result.stdout
    assert "webhook: not delivered: HTTP 500" in result.stdout
    assert TOKEN not in result.stdout + result.stderr


def test_pings_go_to_the_jobs_url_and_never_fail_the_job(alerting, listener):
    for kind in ("start", "success"):
        assert alerting.run("odoo-notify", "--ping", "backup", kind).returncode == 0
    assert listener.paths() == ["/ping/b/start", "/ping/b"]
    assert alerting.run("odoo-notify", "--ping", "refresh", "start").returncode == 0  # none set
    alerting.config["ping_urls"] = {"backup": "http://127.0.0.1:9/ping/b"}  # nobody listens
    alerting.write_config()
    unreachable = alerting.run("odoo-notify", "--ping", "backup", "start")
    assert unreachable.returncode == 0
    assert "the backup job's start ping was not delivered" in unreachable.stdout


def test_the_test_alert_goes_through_every_channel(alerting, listener):
    result = alerting.run("odoo-notify", "--test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test alert" in mails(alerting)[0] and listener.posts()[0]["test"] is True


def test_the_check_alerts_once_when_a_disk_fills_and_once_when_it_recovers(alerting, listener):
    watched = alerting.path("postgresql_data_root")
    alerting.config.update(disk_watched_paths=[str(watched)], disk_alert_percent=0)
    alerting.write_config()
    first = alerting.run("odoo-check")
    assert first.returncode == 0, first.stdout + first.stderr
    flagged = [p for p in listener.posts() if p.get("flag") == f"disk {watched}"]
    assert len(flagged) == 1 and "% full" in flagged[0]["text"]
    posts = len(listener.posts())
    assert alerting.run("odoo-check").returncode == 0
    assert len(listener.posts()) == posts  # still full: nothing new
    alerting.config["disk_alert_percent"] = 100
    alerting.write_config()
    assert alerting.run("odoo-check").returncode == 0
    recovered = [p for p in listener.posts() if p.get("recovered") == f"disk {watched}"]
    assert len(recovered) == 1


def test_the_check_alerts_a_server_that_stays_down_not_one_restarting(alerting, listener):
    """A crash alerts on its own (OnFailure=, once per incident): the check, running while
    systemd restarts the server, looks again before saying anything."""
    health = alerting.root / "health.json"
    health.write_text('{"db_server_status": true}')
    answers = alerting.root / "is-active"
    answers.write_text("activating\nactivating\n")
    alerting.fake(
        "systemctl",
        f'case "$*" in "is-active "*) head -n1 {answers} | grep . || echo active;'
        f" sed -i 1d {answers} ;; esac",
    )
    alerting.config.update(health_url=health.as_uri(), check_settle_sec=3)
    alerting.write_config()
    restarting = alerting.run("odoo-check")
    assert restarting.returncode == 0, restarting.stdout + restarting.stderr
    assert "looking again in 0.5 s: service" in restarting.stdout
    assert not [p for p in listener.posts() if p.get("flag") == "service"]
    answers.write_text("failed\n" * 100)  # down, and staying so
    down = alerting.run("odoo-check")
    assert down.returncode == 0, down.stdout + down.stderr
    [flagged] = [p for p in listener.posts() if p.get("flag") == "service"]
    assert "is failed, health ok" in flagged["text"]
    again = alerting.run("odoo-check")  # flagged already: said at once, nothing new
    assert "looking again" not in again.stdout
    assert len([p for p in listener.posts() if p.get("flag") == "service"]) == 1


def test_the_check_says_nothing_of_a_server_down_while_a_deploy_runs(alerting, listener):
    """A deploy's downtime (its update may take many minutes): the deploy's own end says how
    it went; the check alerts nothing meanwhile, and does not wait for it."""
    import fcntl
    import os

    alerting.fake("systemctl", 'case "$*" in "is-active "*) echo inactive ;; esac')
    lock_file = alerting.config["deploy_lock_file"]
    with open(lock_file, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.write(f"deploy by ops (pid {os.getpid()}) since now\n")
        lock.flush()
        during = alerting.run("odoo-check")
    assert during.returncode == 0, during.stdout + during.stderr
    assert "not alerted while deploy by ops" in during.stdout
    assert not [p for p in listener.posts() if p.get("flag") == "service"]


def test_a_failed_transfer_is_tried_again_then_fails_once(make_host, tmp_path):
    """rsync fails (recette away), then succeeds: the retry sends it; failing each time, the
    transfer fails once, after its bounded retries (its unit then alerts, once)."""
    from .conftest import write_backup

    host = make_host("oca-france-prod")
    write_backup(host.path("backup_dir"), "oca-france-production-20261203T011500")
    failures = tmp_path / "failures"
    failures.write_text("1\n")
    host.fake(
        "rsync",
        f"n=$(cat {failures}); if ((n > 0)); then echo $((n - 1)) > {failures};"
        ' echo "ssh: connect to host recette.test port 22: No route to host" >&2; exit 255; fi;'
        ' echo "Total bytes sent: 1,234"',
    )
    host.config.update(backup_transfer_retries=2, backup_transfer_retry_sec=0)
    host.write_config()
    result = host.run("odoo-backup-transfer")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No route to host" in result.stderr and "try 2 of 3 in 0 s" in result.stdout
    assert "transfer of oca-france-production-20261203T011500 complete" in result.stdout
    failures.write_text("9\n")
    calls = len(host.logged())
    failed = host.run("odoo-backup-transfer")
    assert failed.returncode == 1
    assert len(host.logged()) - calls == 3  # the first send, then 2 retries: bounded
