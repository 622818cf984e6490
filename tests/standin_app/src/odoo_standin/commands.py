"""The database commands: click-odoo-initdb, click-odoo-update and odoo neutralize."""

from collections.abc import Sequence

from . import addons, db
from .config import Config
from .errors import StandinError


def _require_database(config: Config, dbname: str) -> None:
    if not db.database_exists(config, dbname):
        raise StandinError(f"database {dbname} does not exist")


def initdb(config: Config, dbname: str, modules: Sequence[str]) -> None:
    """Create ``dbname`` with ``modules`` (and their dependencies) installed."""
    if db.database_exists(config, dbname):
        raise StandinError(f"database {dbname} already exists")
    # Resolve before creating anything: an unknown module leaves no database behind.
    to_install = addons.resolve(config.addons_path, modules)
    db.create_database(config, dbname)
    try:
        with db.transaction(config, dbname) as cr:
            db.ensure_schema(cr)
            for addon in to_install:
                addons.install(cr, addon)
        (config.data_dir / "filestore" / dbname).mkdir(parents=True, exist_ok=True)
    except BaseException:
        # A half-made database would make every retry fail with "already exists".
        db.drop_database(config, dbname)
        raise
    for addon in to_install:
        print(f"installed {addon.name} {addon.version}")
    print(f"database {dbname} created")


def update(config: Config, dbname: str) -> None:
    """Update changed modules and install missing dependencies, all in one transaction."""
    _require_database(config, dbname)
    done = []  # printed only once committed: a rolled-back update changed nothing
    with db.transaction(config, dbname) as cr:
        db.ensure_schema(cr)
        stored = db.installed_modules(cr)
        for addon in addons.resolve(config.addons_path, addons.present(config.addons_path, stored)):
            record = stored.get(addon.name)
            if record is None:
                addons.install(cr, addon)
                done.append(f"installed {addon.name} {addon.version}")
            elif addon.checksum() != record.checksum:
                addons.run_sql(cr, addon, "update")
                db.record_module(cr, addon.name, addon.version, addon.checksum())
                done.append(f"updated {addon.name} {record.latest_version} -> {addon.version}")
    print("\n".join(done) or "all modules up to date")


def neutralize(config: Config, dbname: str) -> None:
    """Run every installed module's neutralize.sql, then flag the database neutralized."""
    _require_database(config, dbname)
    with db.transaction(config, dbname) as cr:
        db.ensure_schema(cr)
        stored = db.installed_modules(cr)
        done = [
            addon.name
            for addon in addons.installed_in_order(config.addons_path, stored)
            if addons.run_sql(cr, addon, "neutralize")
        ]
        db.set_param(cr, "database.is_neutralized", "True")
    print(f"database {dbname} neutralized ({', '.join(done) or 'no neutralize.sql'})")
