"""The front door (HAProxy) in front of Odoo on both hosts, as the provider's proxy reaches
them (from the host side of each link, the sandbox's trusted proxy): /websocket works, the
guards hold, Odoo logs the real client, Odoo is reached through the front door only, a reload
drops nothing, and past the hold (prod's: 5 s in the sandbox) a deploy shows the maintenance
page. Deploys held without a failed request: test_2_deploy."""

from __future__ import annotations

import http.client
import json
import re
import shlex
import socket
import subprocess
import time
import uuid

import pytest

from .conftest import (
    ADMIN,
    ADMIN_PARTNER,
    CHECKOUT,
    DB,
    HOSTS,
    ODOO_CONF,
    PROD,
    RECETTE,
    deploy,
    head,
)
from .frontdoor_client import (
    Traffic,
    authenticate,
    websocket_connect,
    websocket_receive,
    websocket_send_text,
)

FRONT_PORT, ODOO_PORTS = 8069, (18069, 8072)


def raw_request(
    sandbox, name: str, request: str, headers: str = "", body: str = "", timeout: float = 60
):
    """One request as bytes on the wire (paths HTTP libraries would clean up), from the host
    (the trusted proxy): its status, headers and body."""
    length = f"Content-Length: {len(body.encode())}\r\n" if body else ""
    with socket.create_connection((sandbox.addresses[name], FRONT_PORT), timeout=timeout) as s:
        s.sendall(
            f"{request} HTTP/1.1\r\nHost: {sandbox.addresses[name]}:{FRONT_PORT}\r\n"
            f"{headers}{length}Connection: close\r\n\r\n{body}".encode()
        )
        # The answer by its length: the front door may keep the connection open after it.
        response = http.client.HTTPResponse(s)
        response.begin()
        content = response.read().decode("utf-8", "replace")
        return response.status, str(response.headers), content


def odoo_journal(host, since: str) -> str:
    return host.check_output(
        f"journalctl -u odoo-oca-france.service --since {shlex.quote(since)} -o cat --no-pager"
    )


def now(host) -> str:
    return host.check_output("date '+%Y-%m-%d %H:%M:%S'")


@pytest.mark.parametrize("name", HOSTS)
def test_websocket_completes_its_handshake_and_on_prod_gets_a_bus_message(sandbox, name):
    host = sandbox.host(name)
    base = sandbox.url(name, "")
    # Before the front door, the provider's proxy reached Odoo's HTTP port: 500 there.
    direct = host.run(
        f"curl -s -o /dev/null -w '%{{http_code}}' -H 'Connection: Upgrade' -H 'Upgrade: websocket'"
        " -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' -H 'Sec-WebSocket-Version: 13'"
        f" -H 'Origin: http://127.0.0.1:{ODOO_PORTS[0]}' http://127.0.0.1:{ODOO_PORTS[0]}/websocket"
    )
    assert direct.stdout == "500", direct.stdout + direct.stderr
    session = authenticate(base, DB[name], *ADMIN)
    status, headers, ws = websocket_connect(base, session, origin=base)
    assert status == 101, headers
    if name != PROD:  # a message through the tunnel: on HAProxy 2.6, the older (odoo shell is slow)
        ws.close()
        return
    try:
        websocket_send_text(
            ws, json.dumps({"event_name": "subscribe", "data": {"channels": [], "last": 0}})
        )
        probe = uuid.uuid4().hex
        script = (
            f"env['bus.bus']._sendone('broadcast', 'oca_france_probe', {{'probe': '{probe}'}})\n"
            "env.cr.commit()\n"
        )
        sandbox.ssh(
            name,
            f"cd / && sudo -u odoo {CHECKOUT}/.venv/bin/odoo shell -c {ODOO_CONF} --no-http"
            f" -d {DB[name]} --log-level=warn",
            stdin=script.encode(),
        )
        deadline = time.monotonic() + 30
        received = ""
        while probe not in received and time.monotonic() < deadline:
            received = websocket_receive(ws, timeout=deadline - time.monotonic()) or ""
        assert probe in received, "no bus message through the websocket"
    finally:
        ws.close()


@pytest.mark.parametrize("name", HOSTS)
def test_the_database_manager_is_refused_however_spelled(sandbox, name):
    for path in (
        "/web/database/manager",
        "/web/database/selector",
        "/web/%64atabase/manager",
        "//web//database/manager",
        "/xmlrpc/db",  # the same service over RPC
        "/xmlrpc/2/db",
    ):
        status, _, _ = raw_request(sandbox, name, f"GET {path}")
        assert status == 403, path
    assert raw_request(sandbox, name, "GET web/database/manager")[0] == 400  # werkzeug adds /
    assert raw_request(sandbox, name, "GET /web/login")[0] == 200


@pytest.mark.parametrize("name", HOSTS)
def test_odoo_is_reached_through_the_front_door_only(sandbox, name):
    host = sandbox.host(name)
    for port in ODOO_PORTS:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((sandbox.addresses[name], port), timeout=5).close()
        listening = host.check_output(f"ss -Hltn 'sport = :{port}'")
        assert listening and all(
            re.search(r"\s(127\.0\.0\.1|\[::1\]):\d+\s", line) for line in listening.splitlines()
        ), listening
    front = host.check_output(f"ss -Hltnp 'sport = :{FRONT_PORT}'")
    assert '"haproxy"' in front and "0.0.0.0:8069" in front


def test_odoo_logs_the_real_client_never_a_forged_one(sandbox, recette):
    address = sandbox.addresses[RECETTE]
    since = now(recette)
    body = json.dumps(
        {"jsonrpc": "2.0", "method": "call",
         "params": {"db": DB[RECETTE], "login": "forged-xff", "password": "wrong"}}
    )  # fmt: skip
    # From the container itself: not the trusted proxy, its X-Forwarded-For is not believed.
    recette.check_output(
        f"curl -s -o /dev/null -H 'X-Forwarded-For: 203.0.113.66' -H 'Content-Type:"
        f" application/json' -d {shlex.quote(body)} http://{address}:{FRONT_PORT}/web/session/authenticate"
    )
    # From the trusted proxy (the host side of the link): its word on the client is.
    raw_request(
        sandbox,
        RECETTE,
        "POST /web/session/authenticate",
        "X-Forwarded-For: 198.51.100.23\r\nContent-Type: application/json\r\n",
        body.replace("forged-xff", "trusted-xff"),
    )
    journal = odoo_journal(recette, since)
    assert f"login:forged-xff from {address}" in journal, journal[-2000:]
    assert "203.0.113.66" not in journal
    assert "login:trusted-xff from 198.51.100.23" in journal, journal[-2000:]
    # The front door's own log (the journal) names the real client too.
    access = recette.check_output("journalctl -u haproxy -o cat --no-pager -n 50")
    assert "198.51.100.23:" in access and "/web/session/authenticate" in access


def test_the_eleventh_login_attempt_in_a_minute_gets_429(sandbox, recette):
    def attempt(client: str, path: str = "/web/login") -> int:
        return raw_request(
            sandbox,
            RECETTE,
            f"POST {path}",
            f"X-Forwarded-For: {client}\r\nContent-Type: application/x-www-form-urlencoded\r\n",
            "login=a&password=wrong",
        )[0]

    # However spelled (Odoo decodes the path): counted as the same login form.
    paths = ["/web/login", "/web/%6Cogin", "//web/login/"]
    statuses = [attempt("198.51.100.7", paths[n % 3]) for n in range(11)]
    assert 429 not in statuses[:10] and statuses[10] == 429, statuses
    assert attempt("198.51.100.8") != 429  # another client address: unaffected
    # IPv6 (through the proxy): counted per /64, the subnet one host has to rotate through.
    statuses = [attempt(f"2001:db8:5:0::{n + 1:x}") for n in range(11)]
    assert 429 not in statuses[:10] and statuses[10] == 429, statuses
    assert attempt("2001:db8:5:1::1") != 429  # another /64: unaffected


def test_a_body_over_the_cap_is_refused_before_it_is_sent(sandbox, recette):
    cap = 128 * 1024 * 1024
    status, _, _ = raw_request(
        sandbox,
        RECETTE,
        "POST /web/binary/upload_attachment",
        f"Content-Type: application/octet-stream\r\nContent-Length: {cap + 1}\r\n",
        timeout=10,
    )
    assert status == 413


def test_a_reload_of_the_front_door_drops_no_request(sandbox, recette):
    with Traffic(sandbox.url(RECETTE, ""), DB[RECETTE], *ADMIN, ADMIN_PARTNER) as traffic:
        for _ in range(3):
            time.sleep(1)
            recette.check_output("systemctl reload haproxy")
        time.sleep(1)
    assert traffic.count() > 20 and not traffic.failures(), traffic.summary()


def test_past_the_hold_a_deploy_shows_the_maintenance_page_then_serves(sandbox, prod):
    """prod's hold is 5 s in the sandbox: a deploy's downtime is longer."""
    tag = "18.0-20261204"
    subprocess.run(["git", "-C", str(sandbox.origin), "tag", "-f", tag, head(prod)], check=True)
    with Traffic(sandbox.url(PROD, ""), DB[PROD], *ADMIN, ADMIN_PARTNER) as traffic:
        result = deploy(prod, tag)
        assert result.rc == 0, result.stdout + result.stderr
        sandbox.wait_healthy(PROD)
        time.sleep(1)
    maintenance = [record for record in traffic.failures() if record.status == 503]
    assert maintenance, traffic.summary()
    assert all(record.status == 503 for record in traffic.failures()), traffic.summary()
    page = maintenance[0]
    headers = {key.lower(): value for key, value in page.headers.items()}
    assert headers["retry-after"] == "30" and headers["content-type"].startswith("text/html")
    assert "maintenance en cours" in page.body and DB[PROD] in page.body
    assert "Traceback" not in page.body and "HAProxy" not in page.body
    assert traffic.records[-1].status == 200  # then normal service
