"""The database commands: click-odoo-initdb, click-odoo-update and odoo neutralize."""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from . import addons, db
from .config import Config
from .errors import StandinError

# click-odoo-initdb's template cache: databases named PREFIX-YYYYmmddHHMM-SHA1, where the
# date is when the template was last used; its defaults for prefix, size and age.
CACHE_PREFIX = "cache"
CACHE_MAX_SIZE = 5
CACHE_MAX_AGE = timedelta(days=30)
HASH_SIZE = 40  # hex digits of a sha1


def _require_database(config: Config, dbname: str) -> None:
    if not db.database_exists(config, dbname):
        raise StandinError(f"database {dbname} does not exist")


def initdb(config: Config, dbname: str, modules: Sequence[str], cache: bool = True) -> None:
    """Create ``dbname`` with ``modules`` (and their dependencies) installed.

    With ``cache`` (click-odoo-initdb's default), like click-odoo-initdb: reuse a
    template database with the same modules (same files) if there is one, otherwise
    install into ``dbname`` then copy it into a new template, left behind for next time.
    """
    paths = addons.search_path(config.addons_path)
    if db.database_exists(config, dbname):
        raise StandinError(f"database {dbname} already exists")
    # Resolve before creating anything: an unknown module leaves no database behind.
    to_install = addons.resolve(paths, modules)
    if not cache:
        _create_with_modules(config, dbname, to_install)
        print(f"database {dbname} created")
        return
    hashsum = addons.cache_hash(to_install)
    template = _find_template(config, hashsum)
    if template is not None:
        db.create_database(config, dbname, template=template)
        _make_filestore(config, dbname)
        _touch_template(config, template, hashsum)
        print(f"database {dbname} created from cached template {template}")
    else:
        _create_with_modules(config, dbname, to_install)
        template = _template_name(datetime.now(UTC), hashsum)
        db.create_database(config, template, template=dbname)
        print(f"database {dbname} created, cached as template {template}")
    _trim_cache(config)


def _create_with_modules(config: Config, dbname: str, to_install: list[addons.Addon]) -> None:
    db.create_database(config, dbname)
    try:
        with db.transaction(config, dbname) as cr:
            db.ensure_schema(cr)
            for addon in to_install:
                addons.install(cr, addon)
        _make_filestore(config, dbname)
    except BaseException:
        # A half-made database would make every retry fail with "already exists".
        db.drop_database(config, dbname)
        raise
    for addon in to_install:
        print(f"installed {addon.name} {addon.version}")


def _make_filestore(config: Config, dbname: str) -> None:
    (config.data_dir / "filestore" / dbname).mkdir(parents=True, exist_ok=True)


def _template_name(when: datetime | None, hashsum: str | None) -> str:
    """A template name, or a LIKE pattern for the parts left out (None)."""
    date = when.strftime("%Y%m%d%H%M") if when else "_" * 12
    # 63 characters at most: PostgreSQL's limit on names.
    return f"{CACHE_PREFIX}-{date}-{hashsum or '_' * HASH_SIZE}"[:63]


def _find_template(config: Config, hashsum: str) -> str | None:
    found = db.databases_like(config, _template_name(None, hashsum))
    return found[0] if found else None  # most recently used first


def _touch_template(config: Config, template: str, hashsum: str) -> None:
    renamed = _template_name(datetime.now(UTC), hashsum)
    if renamed != template:
        db.rename_database(config, template, renamed)


def _trim_cache(config: Config) -> None:
    """Keep the CACHE_MAX_SIZE most recently used templates, none older than CACHE_MAX_AGE."""
    templates = db.databases_like(config, _template_name(None, None))  # most recent first
    oldest_kept = _template_name(datetime.now(UTC) - CACHE_MAX_AGE, "f" * HASH_SIZE)
    for position, template in enumerate(templates):
        if position >= CACHE_MAX_SIZE or template <= oldest_kept:
            db.drop_database(config, template)


def update(config: Config, dbname: str, list_only: bool = False) -> None:
    """Update changed modules and install missing dependencies, all in one transaction.

    ``list_only``, like click-odoo-update --list-only: print what would be updated or
    installed (the addons whose files' checksum differs from the database's), change nothing.
    """
    paths = addons.search_path(config.addons_path)
    _require_database(config, dbname)
    done = []  # printed only once committed: a rolled-back update changed nothing
    with db.transaction(config, dbname) as cr:
        db.ensure_schema(cr)
        stored = db.installed_modules(cr)
        for addon in addons.resolve(paths, addons.present(paths, stored)):
            record = stored.get(addon.name)
            if record is None:
                if not list_only:
                    addons.install(cr, addon)
                done.append(f"{'to install' if list_only else 'installed'} {addon.name}")
            elif addon.checksum() != record.checksum:
                if list_only:
                    versions = f"{record.latest_version} -> {addon.version}"
                    done.append(f"to update {addon.name} {versions}")
                    continue
                addons.run_sql(cr, addon, "update")
                db.record_module(cr, addon.name, addon.version, addon.checksum())
                done.append(f"updated {addon.name} {record.latest_version} -> {addon.version}")
        if list_only:
            cr.connection.rollback()
    print("\n".join(done) or "all modules up to date")


def neutralize(config: Config, dbname: str) -> None:
    """Run every installed module's neutralize.sql, then flag the database neutralized."""
    paths = addons.search_path(config.addons_path)
    _require_database(config, dbname)
    with db.transaction(config, dbname) as cr:
        db.ensure_schema(cr)
        stored = db.installed_modules(cr)
        done = [
            addon.name
            for addon in addons.installed_in_order(paths, stored)
            if addons.run_sql(cr, addon, "neutralize")
        ]
        db.set_param(cr, "database.is_neutralized", "True")
    print(f"database {dbname} neutralized ({', '.join(done) or 'no neutralize.sql'})")
