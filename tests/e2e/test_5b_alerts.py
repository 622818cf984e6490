"""Nothing fails silently, for real: prod applied with both alert channels pointed at the
test side (a real SMTP relay, Debian's aiosmtpd requiring a login, and an HTTP listener),
then real faults: a backup that cannot write, the server killed in a loop, a filesystem that
fills, recette unreachable during a transfer."""

from __future__ import annotations

import dataclasses
import json
import mailbox
import os
import re
import secrets
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from .conftest import (
    BACKUPS,
    PROD,
    RECETTE,
    backup_dirs,
    main_pid,
    unit_invocation,
    wait_unit_done,
)

SMTP_PORT, HTTP_PORT = 2525, 8925
SERVER = "odoo-oca-france.service"
WATCHED = "/mnt/oca-watched"  # a small tmpfs in prod, one of the watched paths here
TRANSFER = "odoo-backup-transfer.service"


def gateway(sandbox, name: str) -> str:
    """The test side's address as the container reaches it (tests/sandbox: <net>.1)."""
    return sandbox.addresses[name].rsplit(".", 1)[0] + ".1"


class Listener:
    """HTTP on the gateways: each request kept (method, path, JSON body if any)."""

    def __init__(self, addresses: list[str]):
        self.requests: list[tuple[str, str, dict]] = []
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                listener.requests.append((self.command, self.path, json.loads(body or b"{}")))
                self.send_response(200)
                self.end_headers()

            do_GET = do_POST = answer

            def log_message(self, *_):
                pass

        self.servers = [ThreadingHTTPServer((a, HTTP_PORT), Handler) for a in addresses]
        for server in self.servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()

    def posts(self) -> list[dict]:
        return [body for method, _, body in self.requests if method == "POST"]

    def pings(self) -> list[str]:
        return [path for method, path, _ in self.requests if method == "GET"]

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


@dataclasses.dataclass
class Alerts:
    maildir: Path
    listener: Listener
    token: str
    password: str

    def mails(self) -> list[str]:
        """Every message, oldest first (a Maildir lists in no order: by its names' times)."""
        box = mailbox.Maildir(self.maildir, create=False)

        def delivered(key: str) -> tuple[int, int]:
            seconds, rest = key.split(".", 1)
            micro = re.search(r"M(\d+)", rest)
            return int(seconds), int(micro.group(1)) if micro else 0

        return [str(box[key]) for key in sorted(box.keys(), key=delivered)]

    def wait(self, mails: int, posts: int, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.mails()) >= mails and len(self.listener.posts()) >= posts:
                break
            time.sleep(0.5)
        time.sleep(2)  # and nothing more than that arrives
        assert (len(self.mails()), len(self.listener.posts())) == (mails, posts), (
            self.mails(),
            self.listener.posts(),
        )


def alert_data(sandbox) -> list[str]:
    address = gateway(sandbox, PROD)
    data = {
        "alert_email_to": ["ops@oca-france.test"],
        "alert_email_from": "odoo@oca-france.test",
        "alert_smtp_host": address,
        "alert_smtp_port": SMTP_PORT,
        "alert_smtp_tls": "off",  # the test's relay, on the sandbox's own link
        "alert_smtp_user": "alerts",
        "alert_webhook": True,
        "ping_urls": {"backup": f"http://{address}:{HTTP_PORT}/ping/backup"},
        "disk_watched_paths": ["/var/lib/postgresql", "/home/odoo", WATCHED],
    }
    return [arg for key, value in data.items() for arg in ("--data", f"{key}={json.dumps(value)}")]


@pytest.fixture(scope="module")
def alerts(sandbox, prod, tmp_path_factory):
    maildir = tmp_path_factory.mktemp("alerts") / "maildir"
    password, token = secrets.token_hex(8), f"token-{secrets.token_hex(8)}"
    addresses = [gateway(sandbox, name) for name in (RECETTE, PROD)]
    sink = subprocess.Popen(
        ["/usr/bin/python3", "-I", str(Path(__file__).with_name("smtp_sink.py")), str(maildir),
         str(SMTP_PORT), *addresses],
        env={"SINK_LOGIN": "alerts", "SINK_PASSWORD": password, "PATH": os.environ["PATH"]},
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    listener = Listener(addresses)
    channels = dataclasses.replace(
        sandbox,
        env={
            **sandbox.env,
            "ODOO_OCA_FRANCE_ALERT_SMTP_PASSWORD": password,
            "ODOO_OCA_FRANCE_ALERT_WEBHOOK_URL": f"http://{addresses[1]}:{HTTP_PORT}/{token}",
        },
    )
    try:
        assert sink.stdout.readline().strip() == "ready"
        prod.check_output(f"mkdir -p {WATCHED} && mount -t tmpfs -o size=20m tmpfs {WATCHED}")
        applied = channels.apply("--limit", PROD, *alert_data(sandbox))
        output = applied.stdout + applied.stderr
        assert applied.returncode == 0, output[-3000:]
        assert password not in output and token not in output
        assert "Will write /etc/oca-france/alerts-msmtprc (content not shown" in output
        for secret_file in ("alerts-msmtprc", "alerts-webhook"):
            found = prod.file(f"/etc/oca-france/{secret_file}")
            assert (found.user, found.mode) == ("root", 0o600)
        yield Alerts(maildir, listener, token, password)
    finally:
        restored = sandbox.apply("--limit", PROD)
        prod.run(f"umount {WATCHED}; rmdir {WATCHED}")
        listener.stop()
        sink.send_signal(signal.SIGTERM)
        sink.wait(timeout=30)
        assert restored.returncode == 0, restored.stdout[-3000:] + restored.stderr[-3000:]
    for secret_file in ("alerts-msmtprc", "alerts-webhook"):
        assert not prod.file(f"/etc/oca-france/{secret_file}").exists  # gone with its channel


def test_a_failed_backup_alerts_once_per_failure_with_its_reason(alerts, prod):
    listener = alerts.listener
    before = backup_dirs(prod)
    prod.check_output(f"chmod 500 {BACKUPS}")  # the backup cannot write: a real failure
    try:
        for failures in (1, 2):
            backup = unit_invocation(prod, "odoo-backup.service")
            prod.run("systemctl start odoo-backup.service")
            assert wait_unit_done(prod, "odoo-backup.service", backup) == "exit-code"
            alerts.wait(mails=failures, posts=failures)
    finally:
        prod.check_output(f"chmod 700 {BACKUPS} && systemctl reset-failed odoo-backup.service")
    mail = alerts.mails()[-1]
    assert f"[{PROD} (prod)] odoo-backup.service failed (exit-code)" in mail
    assert "Permission denied" in mail  # the journal line with the reason
    post = listener.posts()[-1]
    assert (post["host"], post["unit"]) == (PROD, "odoo-backup.service")
    assert "Permission denied" in post["text"]
    assert listener.pings()[-2:] == ["/ping/backup/start", "/ping/backup/fail"]
    assert backup_dirs(prod) == before
    journal = prod.check_output("journalctl -u 'oca-france-notify@*' -o cat --no-pager -n 50")
    assert "e-mail: sent" in journal and "webhook: sent" in journal
    assert alerts.token not in journal and alerts.password not in journal


def test_a_backup_pings_its_start_then_its_success(alerts, prod):
    pings = len(alerts.listener.pings())
    backup = unit_invocation(prod, "odoo-backup.service")
    prod.check_output("systemctl start odoo-backup.service")
    assert wait_unit_done(prod, "odoo-backup.service", backup) == "success"
    assert alerts.listener.pings()[pings:] == ["/ping/backup/start", "/ping/backup"]


def test_the_server_killed_in_a_loop_alerts_once(sandbox, alerts, prod):
    mails, posts = len(alerts.mails()), len(alerts.listener.posts())
    for _ in range(3):  # a crash: the server's main process killed
        pid = main_pid(prod)
        prod.check_output(f"systemctl kill --kill-whom=main -s KILL {SERVER}")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and (
            main_pid(prod) in ("0", pid) or not prod.service(SERVER).is_running
        ):
            time.sleep(0.5)  # restarted by systemd (Restart=on-failure)
    alerts.wait(mails=mails + 1, posts=posts + 1)
    assert f"{SERVER} failed (signal, KILL)" in alerts.mails()[-1]
    sandbox.wait_healthy(PROD, timeout=120)


def test_a_filesystem_past_its_threshold_alerts_once_and_once_when_it_recovers(alerts, prod):
    check = "odoo-check.service"

    def run_check() -> None:
        invocation = unit_invocation(prod, check)
        prod.check_output(f"systemctl start {check}")
        assert wait_unit_done(prod, check, invocation) == "success"

    run_check()  # the state before the fault
    baseline = len(alerts.mails())
    prod.check_output(f"fallocate -l 19M {WATCHED}/filling")
    try:
        run_check()
        run_check()  # still full: nothing more
    finally:
        prod.check_output(f"rm -f {WATCHED}/filling")
    alerts.wait(mails=baseline + 1, posts=len(alerts.listener.posts()))
    assert f"attention: disk {WATCHED}" in alerts.mails()[-1]
    assert "% full" in alerts.mails()[-1]
    run_check()
    alerts.wait(mails=baseline + 2, posts=len(alerts.listener.posts()))
    assert f"recovered: disk {WATCHED}" in alerts.mails()[-1]


def test_make_alert_test_reaches_every_channel_with_no_secret(sandbox, alerts):
    mails, posts = len(alerts.mails()), len(alerts.listener.posts())
    result = sandbox.without_secrets().make("alert-test", PYINFRA_ARGS=f"--limit {PROD}")
    assert result.returncode == 0, result.stdout + result.stderr
    alerts.wait(mails=mails + 1, posts=posts + 1)
    assert "test alert" in alerts.mails()[-1]


def test_make_status_shows_the_disks_and_the_last_alert(sandbox, alerts):
    result = sandbox.without_secrets().make("status", PYINFRA_ARGS=f"--limit {PROD}")
    out = result.stdout + result.stderr
    assert re.search(rf"\[{PROD}\]\s+disk:\s+{WATCHED}: \d+% used, ", out), out
    assert re.search(rf"\[{PROD}\]\s+last alert:\s+.*e-mail sent, webhook sent", out), out
    assert "Error: executed 0 commands" not in out and "No hosts remaining" not in out


def test_a_transfer_to_an_unreachable_recette_succeeds_on_a_retry(sandbox, alerts, prod):
    """recette's address blackholed in prod's network namespace (as a link down would): the
    first send fails; once the route is back, the retry (backup_transfer_retry_sec) sends it."""
    netns = f"ocasb-{PROD}"
    route = ["ip", "-n", netns, "route"]
    transfer = unit_invocation(prod, TRANSFER)
    subprocess.run([*route, "add", "blackhole", sandbox.addresses[RECETTE]], check=True)
    try:
        prod.check_output(f"systemctl start --no-block {TRANSFER}")
        deadline = time.monotonic() + 60
        journal = ""
        while "try 2 of" not in journal and time.monotonic() < deadline:
            journal = prod.check_output(f"journalctl -u {TRANSFER} -o cat --no-pager -n 5")
            time.sleep(0.5)
        assert "try 2 of" in journal, journal
    finally:
        subprocess.run([*route, "del", "blackhole", sandbox.addresses[RECETTE]], check=True)
    assert wait_unit_done(prod, TRANSFER, transfer, timeout=120) == "success"
