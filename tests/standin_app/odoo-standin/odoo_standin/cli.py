"""Console scripts: ``odoo``, ``click-odoo-initdb`` and ``click-odoo-update``.

Only the arguments our deploy passes exist; each command exits 0 on success and
1 with a one-line ``PROG: error: ...`` message on stderr on failure.
"""

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import psycopg2

from . import commands, config, db, server
from .errors import StandinError

LOG_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


def _setup_logging(logfile: Path | None) -> None:
    if logfile is not None:
        logfile.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(logfile, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


def _run(prog: str, action: Callable[[], None]) -> int:
    """Run ``action``; turn the failures we expect into one line on stderr and exit 1."""
    try:
        action()
    except StandinError as exc:
        message = str(exc)
    except psycopg2.Error as exc:
        message = db.error_line(exc)
    except OSError as exc:
        message = f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc)
    else:
        return 0
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 1


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("-c", "--config", required=True, help="Odoo-style configuration file")
    return parser


def _load(prog: str, path: str) -> config.Config:
    try:
        loaded = config.load(path)
    except StandinError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    _setup_logging(loaded.logfile)
    return loaded


def _database(prog: str, given: str | None, loaded: config.Config) -> str:
    dbname = given or loaded.db_name
    if not dbname:
        print(f"{prog}: error: no database: pass -d or set db_name", file=sys.stderr)
        raise SystemExit(1)
    return dbname


def odoo_main(argv: Sequence[str] | None = None) -> int:
    """``odoo [server] -c CONFIG [-d DB]`` and ``odoo neutralize -c CONFIG -d DB``."""
    args = list(sys.argv[1:] if argv is None else argv)
    subcommand = args.pop(0) if args and args[0] in ("server", "neutralize") else "server"
    prog = "odoo" if subcommand == "server" else f"odoo {subcommand}"
    parser = _parser(prog, "Stand-in for Odoo's command line, used by the tests (not Odoo).")
    parser.add_argument("-d", "--database", help="database (default: db_name of the config)")
    options = parser.parse_args(args)
    loaded = _load(prog, options.config)
    if subcommand == "neutralize":
        dbname = _database(prog, options.database, loaded)
        return _run(prog, lambda: commands.neutralize(loaded, dbname))
    return _run(prog, lambda: server.serve(loaded, options.database or loaded.db_name))


def initdb_main(argv: Sequence[str] | None = None) -> int:
    """``click-odoo-initdb -c CONFIG -n DB -m MOD1,MOD2 --no-demo [--cache|--no-cache]``."""
    prog = "click-odoo-initdb"
    parser = _parser(prog, "Stand-in for click-odoo-initdb, used by the tests.")
    parser.add_argument("-n", "--new-database", required=True, help="database to create")
    parser.add_argument("-m", "--modules", required=True, help="comma-separated modules")
    # Demo data does not exist here: the flag is accepted because the deploy passes it.
    parser.add_argument("--no-demo", action="store_true", help="accepted; there is no demo data")
    parser.add_argument(
        "--cache",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="use (and fill) the cache of template databases, like click-odoo-initdb"
        " (default: --cache)",
    )
    options = parser.parse_args(argv)
    loaded = _load(prog, options.config)
    modules = [name.strip() for name in options.modules.split(",") if name.strip()]
    return _run(prog, lambda: commands.initdb(loaded, options.new_database, modules, options.cache))


def update_main(argv: Sequence[str] | None = None) -> int:
    """``click-odoo-update -c CONFIG -d DB [--i18n-overwrite] [--list-only]``."""
    prog = "click-odoo-update"
    parser = _parser(prog, "Stand-in for click-odoo-update, used by the tests.")
    parser.add_argument("-d", "--database", help="database (default: db_name of the config)")
    # There are no translations here: the flag is accepted because the deploy passes it.
    parser.add_argument("--i18n-overwrite", action="store_true", help="accepted; no effect")
    parser.add_argument(
        "--list-only", action="store_true", help="list the addons to update, change nothing"
    )
    options = parser.parse_args(argv)
    loaded = _load(prog, options.config)
    dbname = _database(prog, options.database, loaded)
    return _run(prog, lambda: commands.update(loaded, dbname, options.list_only))
