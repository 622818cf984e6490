"""The HTTP server started by ``odoo -c CONFIG``: health checks and a login page."""

import html
import json
import logging
import signal
import socketserver
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg2

from . import addons, db
from .config import Config
from .errors import StandinError

_logger = logging.getLogger(__name__)


class _Stop(Exception):
    """Raised by the SIGTERM/SIGINT handler to leave serve_forever()."""


def serve(config: Config, dbname: str | None) -> None:
    """Prepare the database, load the installed addons, then serve until SIGTERM."""
    paths = addons.search_path(config.addons_path)
    if not dbname:
        _logger.warning("no db_name configured: /web/login answers 503")
    elif db.database_exists(config, dbname):
        _prepare(config, dbname, paths)
    else:
        _logger.warning("database %s does not exist yet: /web/login answers 503", dbname)
    server = StandinServer((config.http_interface, config.http_port), config, dbname)
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    _logger.info("HTTP service running on %s:%s", config.http_interface, config.http_port)
    try:
        server.serve_forever()
    except _Stop:
        _logger.info("stopping: signal received")
    finally:
        server.server_close()


def _raise_stop(signum, frame) -> None:
    raise _Stop()


def _prepare(config: Config, dbname: str, paths: list[Path]) -> None:
    with db.transaction(config, dbname) as cr:
        db.ensure_schema(cr)
        # [ir.config_parameter] of the config file wins over the database at each start.
        for key, value in config.config_parameters.items():
            db.set_param(cr, key, value)
        installed = list(db.installed_modules(cr))
    to_load = addons.installed_in_order(paths, installed)
    try:
        addons.import_all(to_load)
    except StandinError:
        _logger.exception("cannot load the installed addons")
        raise
    _logger.info("loaded %d installed modules of database %s", len(to_load), dbname)


class StandinServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], config: Config, dbname: str | None):
        super().__init__(address, Handler)
        self.config = config
        self.dbname = dbname

    def server_bind(self) -> None:
        # HTTPServer.server_bind() resolves the host name (getfqdn), which can hang for
        # seconds in a container without DNS: bind and record the address as given.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class Handler(BaseHTTPRequestHandler):
    server: StandinServer

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/web/health":
            self._health("db_server_status" in parse_qs(url.query))
        elif url.path == "/web/login":
            self._login()
        else:
            self._send(HTTPStatus.NOT_FOUND, "text/plain", "404 Not Found\n")

    def _health(self, check_db: bool) -> None:
        if not check_db:
            self._json(HTTPStatus.OK, {"status": "pass"})
        elif db.server_alive(self.server.config):
            self._json(HTTPStatus.OK, {"status": "pass", "db_server_status": True})
        else:
            self._json(
                HTTPStatus.INTERNAL_SERVER_ERROR, {"status": "fail", "db_server_status": False}
            )

    def _login(self) -> None:
        dbname = self.server.dbname
        try:
            if not dbname or not db.database_exists(self.server.config, dbname):
                self._send(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain", f"no database {dbname}\n")
                return
            page = render_login(dbname, read_snapshot(self.server.config, dbname))
        except psycopg2.Error as exc:
            _logger.warning("login page: database error: %s", db.error_line(exc))
            message = f"database error: {db.error_line(exc)}\n"
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain", message)
            return
        self._send(HTTPStatus.OK, "text/html; charset=utf-8", page)

    def _json(self, status: HTTPStatus, payload: dict) -> None:
        self._send(status, "application/json", json.dumps(payload))

    def _send(self, status: HTTPStatus, content_type: str, body: str) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:
        # One line per request, into the configured log instead of raw stderr.
        _logger.info("%s %s", self.address_string(), format % args)


@dataclass
class Snapshot:
    """What the login page shows, read from the database at each request."""

    companies: list[str] = field(default_factory=list)
    modules: list[tuple[str, str]] = field(default_factory=list)
    params: list[tuple[str, str]] = field(default_factory=list)
    active_crons: int = 0
    active_mail_servers: int = 0


def read_snapshot(config: Config, dbname: str) -> Snapshot:
    snapshot = Snapshot()
    with db.transaction(config, dbname) as cr:
        # Each table may be missing: the addon that creates it may not be installed.
        if db.table_exists(cr, "res_company"):
            cr.execute("SELECT name FROM res_company ORDER BY id")
            snapshot.companies = [row[0] for row in cr.fetchall()]
        snapshot.modules = [
            (module.name, module.latest_version or "")
            for module in db.installed_modules(cr).values()
        ]
        if db.table_exists(cr, "ir_config_parameter"):
            cr.execute("SELECT key, value FROM ir_config_parameter ORDER BY key")
            snapshot.params = [(key, value or "") for key, value in cr.fetchall()]
        snapshot.active_crons = _count_active(cr, "ir_cron")
        snapshot.active_mail_servers = _count_active(cr, "ir_mail_server")
    return snapshot


def _count_active(cr, table: str) -> int:
    if not db.table_exists(cr, table):
        return 0
    cr.execute(f"SELECT count(*) FROM {table} WHERE active")  # table: one of two constants
    return cr.fetchone()[0]


def render_login(dbname: str, snapshot: Snapshot) -> str:
    e = html.escape
    companies = "".join(f'<li class="company">{e(name)}</li>\n' for name in snapshot.companies)
    modules = "".join(
        f'<li class="module">{e(name)} {e(version)}</li>\n' for name, version in snapshot.modules
    )
    params = "".join(
        f'<li class="param">{e(key)} = {e(value)}</li>\n' for key, value in snapshot.params
    )
    return f"""<!DOCTYPE html>
<html>
<head><meta charset="utf-8"><title>Login | Odoo stand-in (test double)</title></head>
<body>
<h1>Odoo stand-in (test double)</h1>
<p>Database: <span id="database">{e(dbname)}</span></p>
<h2>Companies</h2>
<ul>
{companies}</ul>
<h2>Installed modules</h2>
<ul>
{modules}</ul>
<h2>System parameters</h2>
<ul>
{params}</ul>
<p>Active crons: <span id="active-crons">{snapshot.active_crons}</span></p>
<p>Active mail servers: <span id="active-mail-servers">{snapshot.active_mail_servers}</span></p>
</body>
</html>
"""
