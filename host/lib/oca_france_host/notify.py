"""odoo-notify: tells the operators, through every channel configured (e-mail through an SMTP
relay with msmtp, a webhook), and pings the jobs' dead man's switches.

    odoo-notify UNIT              UNIT failed (its OnFailure=: oca-france-notify@UNIT.service)
    odoo-notify --exited UNIT     UNIT stopped (ExecStopPost=, $SERVICE_RESULT): alert if it
                                  failed; a unit that restarts itself alerts once per
                                  alert_repeat_window_min, not once per restart
    odoo-notify --ping JOB start|success|fail
                                  the job's dead man's switch (ping_urls, healthchecks.io's
                                  convention: <url>/start, <url>, <url>/fail); never fails
    odoo-notify --test            a test alert through every channel

Run as root (the journal, the channels' secrets in root-only files). A channel that cannot
deliver says why in the journal; the notifier then exits 1, and its own unit has no
OnFailure=: it never alerts about itself, never loops. Every alert sent is recorded
(last-alert.json in alert_state_dir, shown by odoo-status).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import urllib.request
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

from oca_france_host import config, runner

JOURNAL_LINES = 20  # the failed run's last lines in each alert
TIMEOUT = 20  # seconds a channel may take


def log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} odoo-notify: {message}", flush=True)


def host_label(c: dict) -> str:
    return f"{socket.gethostname()} ({c.get('odoo_running_env') or 'no environment'})"


# --- Channels


def send_email(c: dict, subject: str, body: str) -> str | None:
    """Through the relay msmtp's config names (root-only: its password); None when sent."""
    message = EmailMessage()
    message["From"] = c["alert_email_from"]
    message["To"] = ", ".join(c["alert_email_to"])
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=True)
    # Readable as sent (no quoted-printable): lines kept under SMTP's 998.
    message.set_content("\n".join(line[:900] for line in body.splitlines()) + "\n", cte="8bit")
    try:
        runner.run(
            ["msmtp", "-C", c["alert_msmtp_config"], "-t"],
            input=message.as_string(),
            capture=True,
            timeout=TIMEOUT * 3,
        )
    except runner.Failed as failed:
        return f"msmtp exited {failed.status}: {failed.output.strip()[-300:]}"
    return None


def post_json(url: str, payload: dict) -> str | None:
    """POST payload as JSON; None when the receiver answered 2xx."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            response.read()
    except OSError as error:  # HTTPError, URLError, timeouts: all OSError
        return reason(error)
    return None


def reason(error: OSError) -> str:
    """Why a request failed, never its URL (it may hold a token)."""
    code = getattr(error, "code", None)
    if code is not None:
        return f"HTTP {code}"
    return type(error).__name__ + (f": {error.reason}" if hasattr(error, "reason") else "")


def send_webhook(c: dict, subject: str, body: str, fields: dict) -> str | None:
    try:
        url = Path(c["alert_webhook_file"]).read_text().strip()
    except OSError as error:
        return f"cannot read {c['alert_webhook_file']}: {error.strerror}"
    return post_json(url, {"text": f"{subject}\n\n{body}", "title": subject, **fields})


def channels(c: dict) -> list[str]:
    """The channels set on this host."""
    found = []
    if c["alert_msmtp_config"] and c["alert_email_to"]:
        found.append("e-mail")
    if c["alert_webhook_file"]:
        found.append("webhook")
    return found


def send(c: dict, subject: str, body: str, fields: dict) -> bool:
    """Through every channel set; said and recorded. True when all delivered."""
    results = {}
    for channel in channels(c):
        if channel == "e-mail":
            results[channel] = send_email(c, subject, body)
        else:
            results[channel] = send_webhook(c, subject, body, fields)
    if not results:
        log(f"no alert channel set (alert_email_to, alert_webhook): not sent: {subject}")
        return True
    for channel, failure in results.items():
        if failure:
            log(f"ERROR: {channel}: not delivered: {failure}")
        else:
            log(f"{channel}: sent: {subject}")
    delivered = ", ".join(f"{ch} {'failed' if fail else 'sent'}" for ch, fail in results.items())
    record(c, "last-alert.json", {"time": now(), "subject": subject, "delivered": delivered})
    return not any(results.values())


# --- State: what was sent, for the status and the repeat window


def now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def record(c: dict, name: str, value: dict) -> None:
    directory = Path(c["alert_state_dir"])
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    temporary = directory / f".{name}.new"
    temporary.write_text(json.dumps(value) + "\n")
    temporary.chmod(0o644)  # odoo-status reads it as odoo too (deploy --status)
    temporary.replace(directory / name)


def recorded(c: dict, name: str) -> dict:
    try:
        return json.loads((Path(c["alert_state_dir"]) / name).read_text())
    except (OSError, ValueError):
        return {}


# --- What failed


def unit_property(unit: str, name: str) -> str:
    return runner.run(
        ["systemctl", "show", "--property", name, "--value", unit], capture=True, check=False
    ).stdout.strip()


def journal_tail(unit: str) -> str:
    """The failed run's last lines: its invocation's, else the unit's."""
    invocation = unit_property(unit, "InvocationID")
    match = [f"_SYSTEMD_INVOCATION_ID={invocation}"] if invocation else ["--unit", unit]
    return runner.run(
        ["journalctl", "--no-pager", "-o", "short-iso", "-n", str(JOURNAL_LINES), *match],
        capture=True,
        check=False,
    ).stdout.rstrip()


def failed(c: dict, unit: str, result: str) -> int:
    job = c["ping_units"].get(unit)
    if job:
        ping(c, job, "fail")
    restarts = unit_property(unit, "Restart") not in ("", "no")
    if restarts and channels(c):  # an incident begins with an alert actually sent
        window = int(c["alert_repeat_window_min"]) * 60
        last = recorded(c, f"unit-{unit}.json").get("epoch", 0)
        if time.time() - last < window:
            log(
                f"{unit} failed again ({result}): already alerted at"
                f" {time.strftime('%H:%M', time.localtime(last))} for this incident (it restarts"
                f" itself): not sent again within alert_repeat_window_min"
            )
            return 0
        record(c, f"unit-{unit}.json", {"epoch": time.time(), "time": now()})
    host = host_label(c)
    subject = f"[{host}] {unit} failed ({result})"
    body = (
        f"host: {host}\nunit: {unit}\nresult: {result}\ntime: {now()}\n"
        + (
            "(it restarts itself: the next failures within the hour are not sent)\n"
            if restarts
            else ""
        )
        + f"\nits journal (the failed run's last lines):\n{journal_tail(unit)}\n"
    )
    fields = {"host": socket.gethostname(), "unit": unit, "result": result}
    return 0 if send(c, subject, body, fields) else 1


def ping(c: dict, job: str, kind: str) -> int:
    url = c["ping_urls"].get(job)
    if not url:
        return 0
    suffix = {"start": "/start", "success": "", "fail": "/fail"}[kind]
    try:
        with urllib.request.urlopen(url.rstrip("/") + suffix, timeout=10) as response:
            response.read()
    except OSError as error:
        log(f"ERROR: the {job} job's {kind} ping was not delivered: {reason(error)}")
    return 0  # a ping never fails the job


def main(argv: list[str]) -> int:
    c = config.load()
    os.chdir("/")
    if argv[:1] in (["-h"], ["--help"]) or not argv:
        print(__doc__.strip(), file=sys.stderr if not argv else sys.stdout)
        return 0 if argv else 2
    if argv == ["--test"]:
        host = host_label(c)
        subject = f"[{host}] test alert"
        body = f"host: {host}\ntime: {now()}\nA test: the channels deliver.\n"
        return 0 if send(c, subject, body, {"host": socket.gethostname(), "test": True}) else 1
    if len(argv) == 3 and argv[0] == "--ping" and argv[2] in ("start", "success", "fail"):
        return ping(c, argv[1], argv[2])
    if len(argv) == 2 and argv[0] == "--exited":
        result = os.environ.get("SERVICE_RESULT", "success")
        if result == "success":
            return 0
        status = os.environ.get("EXIT_STATUS", "")
        return failed(c, argv[1], f"{result}{', ' + status if status else ''}")
    if len(argv) == 1 and not argv[0].startswith("-"):
        return failed(c, argv[0], unit_property(argv[0], "Result") or "failed")
    print(__doc__.strip(), file=sys.stderr)
    return 2
