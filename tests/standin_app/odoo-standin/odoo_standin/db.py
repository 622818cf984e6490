"""PostgreSQL access: databases, the stand-in's own tables, transactions."""

from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import cursor as Cursor

from .config import Config

# Where CREATE/DROP DATABASE and server-level checks run.
MAINTENANCE_DB = "postgres"

SCHEMA = """
CREATE TABLE IF NOT EXISTS ir_module_module (
    name text PRIMARY KEY,
    state text NOT NULL,
    latest_version text,
    checksum text
);
CREATE TABLE IF NOT EXISTS ir_config_parameter (
    key text PRIMARY KEY,
    value text
);
"""


@dataclass(frozen=True)
class InstalledModule:
    name: str
    latest_version: str | None
    checksum: str | None


def connect(config: Config, dbname: str):
    return psycopg2.connect(dbname=dbname, **config.connect_kwargs())


@contextmanager
def transaction(config: Config, dbname: str) -> Iterator[Cursor]:
    """One transaction: committed if the block succeeds, rolled back otherwise."""
    with closing(connect(config, dbname)) as conn, conn, conn.cursor() as cr:
        yield cr


def _maintenance(config: Config, query: sql.Composable | str, params=()) -> list[tuple]:
    # CREATE/DROP DATABASE refuse to run inside a transaction block: use autocommit.
    with closing(connect(config, MAINTENANCE_DB)) as conn:
        conn.autocommit = True
        with conn.cursor() as cr:
            cr.execute(query, params)
            return cr.fetchall() if cr.description else []


def server_alive(config: Config) -> bool:
    try:
        return _maintenance(config, "SELECT 1") == [(1,)]
    except psycopg2.Error:
        return False


def database_exists(config: Config, dbname: str) -> bool:
    rows = _maintenance(config, "SELECT 1 FROM pg_database WHERE datname = %s", (dbname,))
    return bool(rows)


def create_database(config: Config, dbname: str, template: str = "template1") -> None:
    query = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
        sql.Identifier(dbname), sql.Identifier(template)
    )
    _maintenance(config, query)


def rename_database(config: Config, old: str, new: str) -> None:
    query = sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
        sql.Identifier(old), sql.Identifier(new)
    )
    _maintenance(config, query)


def databases_like(config: Config, pattern: str) -> list[str]:
    """Names matching the LIKE ``pattern``, greatest first."""
    rows = _maintenance(
        config,
        "SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY datname DESC",
        (pattern,),
    )
    return [row[0] for row in rows]


def drop_database(config: Config, dbname: str) -> None:
    _maintenance(config, sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(dbname)))


def ensure_schema(cr: Cursor) -> None:
    cr.execute(SCHEMA)


def table_exists(cr: Cursor, table: str) -> bool:
    cr.execute("SELECT to_regclass(%s) IS NOT NULL", (table,))
    return cr.fetchone()[0]


def installed_modules(cr: Cursor) -> dict[str, InstalledModule]:
    if not table_exists(cr, "ir_module_module"):
        return {}
    cr.execute(
        "SELECT name, latest_version, checksum FROM ir_module_module"
        " WHERE state = 'installed' ORDER BY name"
    )
    return {row[0]: InstalledModule(*row) for row in cr.fetchall()}


def record_module(cr: Cursor, name: str, version: str, checksum: str) -> None:
    cr.execute(
        "INSERT INTO ir_module_module (name, state, latest_version, checksum)"
        " VALUES (%s, 'installed', %s, %s)"
        " ON CONFLICT (name) DO UPDATE SET state = 'installed',"
        " latest_version = EXCLUDED.latest_version, checksum = EXCLUDED.checksum",
        (name, version, checksum),
    )


def set_param(cr: Cursor, key: str, value: str) -> None:
    cr.execute(
        "INSERT INTO ir_config_parameter (key, value) VALUES (%s, %s)"
        " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        (key, value),
    )


def error_line(exc: psycopg2.Error) -> str:
    """PostgreSQL's primary message: says what failed, on one line."""
    diag = getattr(exc, "diag", None)
    text = (diag and diag.message_primary) or str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
