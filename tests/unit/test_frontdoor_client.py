"""The front door's test clients (tests/e2e/frontdoor_client.py) against tiny servers on
loopback: an HTTP server playing Odoo (answers, HTTP 500, JSON-RPC errors, slowness, then
gone) for Traffic, and a raw socket server playing /websocket for the websocket helpers."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from e2e.frontdoor_client import (
    Traffic,
    authenticate,
    websocket_connect,
    websocket_receive,
    websocket_send_text,
)

SESSION = "session-3f7c"
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class FakeOdoo:
    """Odoo's few routes Traffic uses; `mode` is "ok", "500", "rpc_error" or "slow"."""

    def __init__(self):
        self.mode = "ok"
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        odoo = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                odoo.requests.append((self.command, self.path, dict(self.headers), body))
                mode = odoo.mode
                if mode == "slow":
                    time.sleep(0.3)
                extra = {}
                if self.path == "/web/session/authenticate":
                    params = json.loads(body)["params"]
                    if params["password"] != "secret":
                        answer = {"jsonrpc": "2.0", "error": {"message": "Access Denied"}}
                    else:
                        answer = {"jsonrpc": "2.0", "result": {"uid": 2}}
                        extra["Set-Cookie"] = f"session_id={SESSION}; Path=/; HttpOnly"
                    status, payload = 200, json.dumps(answer).encode()
                elif mode == "500":
                    status, payload = 500, b"Internal Server Error: backend down"
                    extra["X-Backend"] = "none"
                elif self.path == "/web/login":
                    status, payload = 200, b"<html>login</html>"
                elif self.path == "/web/dataset/call_kw":
                    if mode == "rpc_error":
                        answer = {"jsonrpc": "2.0", "error": {"message": "boom"}}
                    else:
                        answer = {"jsonrpc": "2.0", "result": [{"id": 7, "name": "Partner"}]}
                    status, payload = 200, json.dumps(answer).encode()
                else:
                    status, payload = 404, b"not found"
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = answer

            def log_message(self, *_):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        self.closed = False

    def close(self):
        if not self.closed:
            self.closed = True
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(5)


@pytest.fixture
def odoo():
    server = FakeOdoo()
    try:
        yield server
    finally:
        server.close()


def wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def traffic(odoo, **options):
    return Traffic(odoo.url, "odoo", "admin", "secret", 7, **{"interval": 0.01, **options})


def test_traffic_requests_cookie_and_headers(odoo):
    extra = {"X-Forwarded-For": "198.51.100.9"}
    with traffic(odoo, headers=extra) as t:
        wait_for(lambda: t.count() >= 6)
    count = t.count()
    assert t.failures() == []
    assert t.statuses() == {200: count}
    assert [record.kind for record in t.records[:6]] == ["get", "read", "write"] * 2
    assert re.fullmatch(rf"{count} requests, 0 failed, longest \d+\.\d s", t.summary())

    (auth, *others) = odoo.requests
    assert auth[:2] == ("POST", "/web/session/authenticate")
    assert json.loads(auth[3])["params"] == {"db": "odoo", "login": "admin", "password": "secret"}
    assert len(others) == count
    for _method, _path, headers, _body in odoo.requests:
        assert headers["X-Forwarded-For"] == "198.51.100.9"
    for _method, _path, headers, _body in others:
        assert headers["Cookie"] == f"session_id={SESSION}"
    get, read, write = others[:3]
    assert get[:2] == ("GET", "/web/login")
    assert read[:2] == write[:2] == ("POST", "/web/dataset/call_kw")
    assert json.loads(read[3])["params"] == {
        "model": "res.partner",
        "method": "search_read",
        "args": [[["id", "=", 7]], ["name"]],
        "kwargs": {},
    }
    write_params = json.loads(write[3])["params"]
    assert write_params["method"] == "write"
    assert write_params["args"] == [[7], {"comment": "3"}]


def test_traffic_failures(odoo):
    with traffic(odoo, timeout=2) as t:
        wait_for(lambda: t.count() >= 3)
        assert t.failures() == []

        # a request may be in flight at each switch: wait past it
        odoo.mode = "500"
        seen = t.count()
        wait_for(lambda: t.count() >= seen + 3)
        odoo.mode = "rpc_error"
        seen = t.count()
        wait_for(lambda: t.count() >= seen + 4)
        odoo.close()
        seen = t.count()
        wait_for(lambda: t.count() >= seen + 2)
        assert t._thread.is_alive()

    failures = t.failures()
    http_500 = [record for record in failures if record.status == 500]
    assert http_500
    assert http_500[0].headers["X-Backend"] == "none"
    assert http_500[0].body == "Internal Server Error: backend down"
    rpc = [record for record in failures if record.status == 200]
    assert rpc and {record.error for record in rpc} == {"boom"}
    assert {record.kind for record in rpc} <= {"read", "write"}
    refused = [record for record in failures if record.status is None]
    # the request in flight at the stop may see a reset; the later ones find nobody there
    assert refused and "ConnectionRefusedError" in refused[-1].error
    assert t.statuses()[None] == len(refused)
    assert t.summary().startswith(f"{t.count()} requests, {len(failures)} failed, longest ")


def test_traffic_longest_wait(odoo):
    odoo.mode = "slow"
    with traffic(odoo) as t:
        wait_for(lambda: t.count() >= 2)
    assert t.failures() == []
    assert 0.3 <= t.longest() < 3


def test_authenticate(odoo):
    assert authenticate(odoo.url, "odoo", "admin", "secret") == SESSION
    with pytest.raises(RuntimeError, match="Access Denied"):
        authenticate(odoo.url, "odoo", "admin", "wrong")


class RawServer:
    """One connection on a loopback socket, served by `serve(conn)` in a thread; what it
    raised is re-raised by close()."""

    def __init__(self, serve):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(5)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.serve = serve
        self.error: BaseException | None = None
        self.conn: socket.socket | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            self.conn, _ = self.listener.accept()
            self.conn.settimeout(5)
            self.serve(self.conn)
        except BaseException as error:
            self.error = error

    def close(self):
        self.thread.join(5)
        self.listener.close()
        if self.conn is not None:
            self.conn.close()
        assert not self.thread.is_alive(), "the server did not finish"
        if self.error is not None:
            raise self.error


def read_request(conn) -> dict[str, str]:
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        chunk = conn.recv(1)
        assert chunk, "EOF in the request"
        head += chunk
    request_line, *lines = head.decode().split("\r\n")
    assert request_line == "GET /websocket HTTP/1.1"
    return {n.lower(): v.strip() for n, _, v in (line.partition(":") for line in lines if line)}


def recv_exact(conn, size):
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        assert chunk, "EOF in a frame"
        data += chunk
    return data


def read_client_frame(conn) -> tuple[int, bytes]:
    first, second = recv_exact(conn, 2)
    assert first & 0x80, "client frames here are not fragmented"
    assert second & 0x80, "a client frame must be masked"
    size = second & 0x7F
    if size == 126:
        size = struct.unpack("!H", recv_exact(conn, 2))[0]
    elif size == 127:
        size = struct.unpack("!Q", recv_exact(conn, 8))[0]
    key = recv_exact(conn, 4)
    payload = recv_exact(conn, size)
    return first & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def server_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    assert len(payload) < 126
    return bytes([(0x80 if fin else 0) | opcode, len(payload)]) + payload


def accept_for(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def test_websocket_exchange():
    seen: dict = {}

    def serve(conn):
        seen["request"] = request = read_request(conn)
        conn.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {accept_for(request['sec-websocket-key'])}\r\n\r\n".encode()
        )
        seen["frames"] = [read_client_frame(conn) for _ in range(3)]
        conn.sendall(
            server_frame(0x9, b"ping-1")
            + server_frame(0x1, b'{"event": ', fin=False)
            + server_frame(0x0, b'"hello"}')
        )
        seen["pong"] = read_client_frame(conn)
        conn.sendall(server_frame(0x8, struct.pack("!H", 1000) + b"bye"))

    server = RawServer(serve)
    sock = None
    try:
        status, headers, sock = websocket_connect(
            server.url, SESSION, "https://erp.example.org", headers={"X-Forwarded-For": "t"}
        )
        assert status == 101
        assert headers["upgrade"] == "websocket"
        started = time.monotonic()
        assert websocket_receive(sock, 0.2) is None  # the server waits for our frames
        assert 0.15 < time.monotonic() - started < 2
        texts = ["hello", "é" * 100, "y" * 70000]  # the three payload length encodings
        for text in texts:
            websocket_send_text(sock, text)
        assert websocket_receive(sock, 5) == '{"event": "hello"}'
        with pytest.raises(ConnectionError, match="1000 'bye'"):
            websocket_receive(sock, 5)
    finally:
        if sock is not None:
            sock.close()
        server.close()

    request = seen["request"]
    assert request["upgrade"] == "websocket"
    assert request["connection"] == "Upgrade"
    assert request["sec-websocket-version"] == "13"
    assert len(base64.b64decode(request["sec-websocket-key"])) == 16
    assert request["origin"] == "https://erp.example.org"
    assert request["cookie"] == f"session_id={SESSION}"
    assert request["host"] == server.url.removeprefix("http://")
    assert request["x-forwarded-for"] == "t"
    assert seen["frames"] == [(0x1, text.encode()) for text in texts]
    assert seen["pong"] == (0xA, b"ping-1")


def test_websocket_wrong_accept():
    def serve(conn):
        read_request(conn)
        conn.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {accept_for('not-the-key')}\r\n\r\n".encode()
        )

    server = RawServer(serve)
    try:
        with pytest.raises(AssertionError, match="Sec-WebSocket-Accept"):
            websocket_connect(server.url, SESSION, "https://erp.example.org")
    finally:
        server.close()


def test_websocket_refused():
    seen: dict = {}

    def serve(conn):
        seen["request"] = read_request(conn)
        conn.sendall(
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\nX-Test: 1\r\n\r\nerror"
        )
        conn.recv(1)  # until the client closes: it must not wait for more

    server = RawServer(serve)
    try:
        status, headers, sock = websocket_connect(server.url, None, "https://erp.example.org")
    finally:
        server.close()
    assert (status, sock) == (500, None)
    assert headers["x-test"] == "1"
    assert headers["content-length"] == "5"
    assert "cookie" not in seen["request"]  # no session given
