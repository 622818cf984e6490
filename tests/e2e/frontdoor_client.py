"""Clients for the front door's end-to-end tests: steady Odoo traffic (a page, a JSON-RPC read
and a JSON-RPC write, in a loop, each one timed and its failure kept) to show a reload or a
restart behind HAProxy loses no request, and a bare websocket client for Odoo 18's
/websocket (handshake, text frames, ping/pong). Standard library only: no HTTP or websocket
library is in uv.lock, and the sandbox's tests should not add one."""

from __future__ import annotations

import base64
import collections
import hashlib
import http.client
import json
import os
import socket
import struct
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
KINDS = ("get", "read", "write")


def _split_url(base_url: str) -> tuple[str, int, str]:
    """(host, port, path prefix without trailing slash) of an http:// base URL."""
    url = urllib.parse.urlsplit(base_url)
    if url.scheme != "http" or not url.hostname:
        raise ValueError(f"expected an http:// URL, got {base_url!r}")
    return url.hostname, url.port or 80, url.path.rstrip("/")


def _request(
    base_url: str,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
    timeout: float,
) -> tuple[int, list[tuple[str, str]], bytes]:
    """One request on a fresh connection: (status, header list, whole body)."""
    host, port, prefix = _split_url(base_url)
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request(method, prefix + path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        connection.close()


def _session_cookie(header_list: list[tuple[str, str]]) -> str | None:
    for name, value in header_list:
        if name.lower() == "set-cookie":
            cookie = value.split(";", 1)[0].strip()
            key, _, session_id = cookie.partition("=")
            if key.strip() == "session_id" and session_id:
                return session_id
    return None


def _json_rpc(params: dict) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "method": "call", "params": params}).encode()


def _rpc_error(answer: object) -> str | None:
    """The message of a JSON-RPC answer's error, None when it has none."""
    if isinstance(answer, dict) and "error" in answer:
        error = answer["error"]
        if not isinstance(error, dict):
            return str(error)
        # Odoo's message is generic ("Odoo Server Error"); data.message says what went wrong.
        message = str(error.get("message") or error)
        data = error.get("data")
        if isinstance(data, dict) and data.get("message") and data["message"] != message:
            message += f": {data['message']}"
        return message
    return None


def authenticate(
    base_url: str,
    db: str,
    login: str,
    password: str,
    headers: dict[str, str] | None = None,
    timeout: float = 60,
) -> str:
    """Log in through /web/session/authenticate; the new session's id (its cookie)."""
    status, header_list, body = _request(
        base_url,
        "POST",
        "/web/session/authenticate",
        _json_rpc({"db": db, "login": login, "password": password}),
        {**(headers or {}), "Content-Type": "application/json"},
        timeout,
    )
    text = body.decode("utf-8", "replace")[:2000]
    if status != 200:
        raise RuntimeError(f"authenticate on {base_url}: HTTP {status}: {text}")
    error = _rpc_error(json.loads(body))
    if error is not None:
        raise RuntimeError(f"authenticate on {base_url}: {error}")
    session_id = _session_cookie(header_list)
    if session_id is None:
        raise RuntimeError(f"authenticate on {base_url}: no session_id cookie in the answer")
    return session_id


@dataclass
class Record:
    """One request of Traffic: `start` is time.monotonic(), `duration` in seconds."""

    kind: str
    start: float
    duration: float
    status: int | None
    error: str | None = None
    headers: dict[str, str] = field(default_factory=dict)  # non-200 answers only
    body: str | None = None  # non-200 answers only: the first 2000 characters

    @property
    def failed(self) -> bool:
        return self.error is not None or self.status != 200


class Traffic:
    """Requests to an Odoo from one background thread, every `interval` seconds (start to
    start), cycling through a GET of the login page, a JSON-RPC read of a partner and a
    JSON-RPC write of its comment, all in the session opened by start()."""

    def __init__(
        self,
        base_url: str,
        db: str,
        login: str,
        password: str,
        partner_id: int,
        interval: float = 0.1,
        timeout: float = 120,
        headers: dict[str, str] | None = None,
    ):
        _split_url(base_url)  # a wrong URL fails here, not in every request
        self.base_url = base_url
        self.db = db
        self.login = login
        self.password = password
        self.partner_id = partner_id
        self.interval = interval
        self.timeout = timeout
        self.headers = dict(headers or {})
        self.session_id: str | None = None
        self.records: list[Record] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Traffic:
        """Authenticate (raising if that fails), then start the requests' thread."""
        self.session_id = authenticate(
            self.base_url, self.db, self.login, self.password, self.headers, self.timeout
        )
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="frontdoor-traffic", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> Traffic:
        """Stop after the request in flight (at most `timeout` seconds) and join the thread."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        return self

    def __enter__(self) -> Traffic:
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()

    def _run(self) -> None:
        counter = 0
        while not self._stopping.is_set():
            started = time.monotonic()
            counter += 1
            try:
                record = self._one(KINDS[(counter - 1) % len(KINDS)], counter)
            except Exception as error:  # a bug here must not end the traffic silently
                record = Record("?", started, time.monotonic() - started, None, repr(error))
            with self._lock:
                self.records.append(record)
            self._stopping.wait(max(0.0, started + self.interval - time.monotonic()))

    def _one(self, kind: str, counter: int) -> Record:
        headers = {**self.headers, "Cookie": f"session_id={self.session_id}"}
        if kind == "get":
            method, path, body = "GET", "/web/login", None
        else:
            method, path = "POST", "/web/dataset/call_kw"
            headers["Content-Type"] = "application/json"
            if kind == "read":
                args = [[["id", "=", self.partner_id]], ["name"]]
                call = "search_read"
            else:
                args = [[self.partner_id], {"comment": str(counter)}]
                call = "write"
            body = _json_rpc({"model": "res.partner", "method": call, "args": args, "kwargs": {}})
        start = time.monotonic()
        try:
            status, header_list, answer = _request(
                self.base_url, method, path, body, headers, self.timeout
            )
        except Exception as error:
            return Record(kind, start, time.monotonic() - start, None, repr(error))
        duration = time.monotonic() - start
        # Odoo may rotate the session (a new cookie): follow it, as a browser would.
        self.session_id = _session_cookie(header_list) or self.session_id
        if status != 200:
            text = answer.decode("utf-8", "replace")[:2000]
            return Record(kind, start, duration, status, None, dict(header_list), text)
        error = None
        if kind != "get":
            try:
                error = _rpc_error(json.loads(answer))
            except ValueError as bad_json:
                error = repr(bad_json)
        return Record(kind, start, duration, status, error)

    def _snapshot(self) -> list[Record]:
        with self._lock:
            return list(self.records)

    def count(self) -> int:
        return len(self._snapshot())

    def failures(self) -> list[Record]:
        return [record for record in self._snapshot() if record.failed]

    def longest(self) -> float:
        return max((record.duration for record in self._snapshot()), default=0.0)

    def statuses(self) -> collections.Counter:
        return collections.Counter(record.status for record in self._snapshot())

    def summary(self) -> str:
        records = self._snapshot()
        failed = [record for record in records if record.failed]
        longest = max((record.duration for record in records), default=0.0)
        line = f"{len(records)} requests, {len(failed)} failed, longest {longest:.1f} s"
        if failed:
            statuses = collections.Counter(record.status for record in records)
            line += f", statuses {dict(statuses)}, first failure {failed[0]!r}"[:1000]
        return line


# The websocket side: a raw socket, the handshake and frames of RFC 6455 by hand.


def _accept_for(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode()).digest()).decode()


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("websocket: connection closed by the server (EOF)")
        data += chunk
    return data


def _mask(key: bytes, payload: bytes) -> bytes:
    # XOR as one big integer: the masking of a large frame without a Python loop per byte
    size = len(payload)
    keys = (key * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(keys, "big")).to_bytes(size, "big")


def _send_frame(sock: socket.socket, opcode: int, payload: bytes) -> None:
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    key = os.urandom(4)  # client frames are always masked (RFC 6455, 5.3)
    sock.sendall(header + key + _mask(key, payload))


def websocket_connect(
    base_url: str,
    session_id: str | None,
    origin: str,
    timeout: float = 10,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], socket.socket | None]:
    """Open base_url's /websocket: (status, response headers with lower-case names, socket).
    The socket is None unless the status is 101; a wrong Sec-WebSocket-Accept raises
    AssertionError. No Cookie header when session_id is None."""
    host, port, prefix = _split_url(base_url)
    key = base64.b64encode(os.urandom(16)).decode()
    request_headers = {
        "Host": host if port == 80 else f"{host}:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13",
        "Origin": origin,
    }
    if session_id is not None:
        request_headers["Cookie"] = f"session_id={session_id}"
    request_headers.update(headers or {})
    request = f"GET {prefix}/websocket HTTP/1.1\r\n"
    request += "".join(f"{name}: {value}\r\n" for name, value in request_headers.items())
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.sendall((request + "\r\n").encode("latin-1"))
        # One byte at a time: frames may follow the 101 at once, and must stay in the socket.
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += _recv_exact(sock, 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ConnectionError(f"websocket: not an HTTP answer: {status_line!r}")
        status = int(parts[1])
        response_headers: dict[str, str] = {}
        for line in lines:
            if ":" in line:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                value = value.strip()
                previous = response_headers.get(name)
                response_headers[name] = value if previous is None else f"{previous}, {value}"
        if status != 101:
            _drain_body(sock, response_headers)
            sock.close()
            return status, response_headers, None
        accept = response_headers.get("sec-websocket-accept")
        if accept != _accept_for(key):
            raise AssertionError(
                f"websocket: Sec-WebSocket-Accept {accept!r}, expected {_accept_for(key)!r}"
            )
        return status, response_headers, sock
    except BaseException:
        sock.close()
        raise


def _drain_body(sock: socket.socket, response_headers: dict[str, str]) -> None:
    """Read a refusal's body (by its Content-Length, else to EOF) before closing."""
    length = response_headers.get("content-length")
    try:
        if length is not None and length.isdigit():
            _recv_exact(sock, int(length))
        else:
            while sock.recv(65536):
                pass
    except OSError:
        pass  # the status is the answer; a body cut short changes nothing


def websocket_send_text(sock: socket.socket, text: str) -> None:
    """Send `text` as one masked text frame."""
    _send_frame(sock, 0x1, text.encode("utf-8"))


def websocket_receive(sock: socket.socket, timeout: float) -> str | None:
    """The next text message, None when none begins within `timeout` seconds. Answers pings,
    skips pongs and binary messages, joins continuation frames; ConnectionError on a close
    frame or EOF. Once a frame has begun, each read waits up to `timeout` again (a timeout
    there raises TimeoutError: the stream is cut mid-frame)."""
    deadline = time.monotonic() + timeout
    message: list[bytes] | None = None  # fragments of the message in progress
    message_opcode = 0
    while True:
        remaining = deadline - time.monotonic()
        if message is None and remaining <= 0:
            return None
        sock.settimeout(max(remaining, 0.001) if message is None else timeout)
        try:
            first = _recv_exact(sock, 1)[0]
        except TimeoutError:
            if message is None:
                return None  # between messages: nothing lost
            raise
        sock.settimeout(timeout)
        second = _recv_exact(sock, 1)[0]
        fin, opcode = first & 0x80, first & 0x0F
        size = second & 0x7F
        if size == 126:
            size = struct.unpack("!H", _recv_exact(sock, 2))[0]
        elif size == 127:
            size = struct.unpack("!Q", _recv_exact(sock, 8))[0]
        key = _recv_exact(sock, 4) if second & 0x80 else None
        payload = _recv_exact(sock, size)
        if key is not None:
            payload = _mask(key, payload)
        if opcode == 0x8:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            reason = payload[2:].decode("utf-8", "replace")
            raise ConnectionError(f"websocket: close frame from the server: {code} {reason!r}")
        if opcode == 0x9:
            _send_frame(sock, 0xA, payload)
            continue
        if opcode == 0xA:
            continue
        if opcode in (0x1, 0x2):
            message, message_opcode = [payload], opcode
        elif opcode == 0x0 and message is not None:
            message.append(payload)
        else:
            raise ConnectionError(f"websocket: unexpected frame, opcode {opcode:#x}")
        if fin:
            data, message = b"".join(message), None
            if message_opcode == 0x1:
                return data.decode("utf-8")
