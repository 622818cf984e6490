"""Addons: finding them like Odoo 18 does, ordering them, running their SQL, importing them."""

import ast
import hashlib
import importlib
import logging
import os
import re
import sys
import types
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath

import psycopg2
from psycopg2.extensions import cursor as Cursor

from . import db
from .errors import StandinError

_logger = logging.getLogger(__name__)

MANIFEST = "__manifest__.py"
# Addons are installed (by the build backend) and imported under this namespace, like Odoo's.
NAMESPACE = "odoo.addons"
# A module name is also a directory name and a Python identifier: nothing else is allowed.
VALID_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# What click-odoo-initdb leaves out of its cache hash.
HASH_EXCLUDED_SUFFIXES = (".pyc", ".pyo")


def search_path(addons_path: Sequence[Path]) -> list[Path]:
    """The directories addons are looked up in, in order, like Odoo 18's
    ``odoo.addons.__path__``: the ``odoo.addons`` namespace as installed in the venv,
    then the configured ``addons_path`` entries (appended, as Odoo's
    ``initialize_sys_path`` does). Each missing entry is logged and skipped, with
    the warning of Odoo's ``get_modules``."""
    package = _namespace()
    entries = [str(entry) for entry in package.__path__]
    entries += [str(entry) for entry in addons_path if str(entry) not in entries]
    # A plain list from now on: `import odoo.addons.NAME` also looks in addons_path.
    package.__path__ = entries
    found = []
    for entry in entries:
        if not os.path.exists(entry):
            _logger.warning("addons path does not exist: %s", entry)
            continue
        found.append(Path(entry))
    return found


def _namespace() -> types.ModuleType:
    try:
        return importlib.import_module(NAMESPACE)
    except ModuleNotFoundError:
        pass
    # Nothing installed in the namespace (no addon at the project root): an empty one.
    parent = None
    for name in ("odoo", NAMESPACE):
        module = sys.modules.get(name)
        if module is None:
            module = types.ModuleType(name)
            module.__path__ = []
            sys.modules[name] = module
            if parent is not None:
                parent.addons = module
        parent = module
    return sys.modules[NAMESPACE]


@dataclass(frozen=True)
class Addon:
    name: str
    path: Path

    @cached_property
    def manifest(self) -> dict:
        source = (self.path / MANIFEST).read_text(encoding="utf-8")
        try:
            manifest = ast.literal_eval(source)
        except (ValueError, SyntaxError) as exc:
            raise StandinError(f"module {self.name}: invalid {MANIFEST}: {exc}") from None
        if not isinstance(manifest, dict):
            raise StandinError(f"module {self.name}: {MANIFEST} is not a dict")
        return manifest

    @property
    def version(self) -> str:
        return str(self.manifest.get("version", "18.0.1.0.0"))

    @property
    def depends(self) -> list[str]:
        return list(self.manifest.get("depends", []))

    def data_file(self, kind: str) -> Path | None:
        """``data/<kind>.sql`` (kind: install, update, neutralize), if the addon has one."""
        path = self.path / "data" / f"{kind}.sql"
        return path if path.is_file() else None

    def checksum(self) -> str:
        """sha256 over the addon's files (relative path and content), in path order.

        Symlinks are followed: through the editable install's symlink, this is the
        checksum of the checkout's files."""
        digest = hashlib.sha256()
        for relative, file in sorted(_walk(self.path), key=lambda item: PurePosixPath(item[0])):
            if "__pycache__" in PurePosixPath(relative).parts or relative.endswith(".pyc"):
                continue  # compiled files change without the source changing
            digest.update(relative.encode() + b"\0")
            digest.update(file.read_bytes() + b"\0")
        return digest.hexdigest()


def _walk(top: Path) -> Iterator[tuple[str, Path]]:
    """(relative posix path, path) of every file under ``top``, following symlinks."""
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        dirnames.sort()
        for filename in sorted(filenames):
            file = Path(dirpath) / filename
            yield file.relative_to(top).as_posix(), file


def cache_hash(addons: Iterable[Addon], with_demo: bool = False) -> str:
    """click-odoo-initdb's ``addons_hash``: sha1 over the demo flag, then each module
    (name order) with its files' relative paths and contents."""
    digest = hashlib.sha1()
    digest.update(f"!demo={int(bool(with_demo))}!".encode())
    for addon in sorted(addons, key=lambda addon: addon.name):
        digest.update(addon.name.encode())
        for relative, file in _walk(addon.path):
            if not relative.endswith(HASH_EXCLUDED_SUFFIXES):
                digest.update(relative.encode())
                digest.update(file.read_bytes())
    return digest.hexdigest()


def find(paths: Sequence[Path], name: str) -> Addon | None:
    """The addon called ``name`` in the first search path entry that has it."""
    if not VALID_NAME.match(name):
        return None
    for directory in paths:
        if (directory / name / MANIFEST).is_file():
            return Addon(name, directory / name)
    return None


def resolve(paths: Sequence[Path], names: Iterable[str]) -> list[Addon]:
    """The addons ``names`` and all their dependencies, dependencies first."""
    ordered: dict[str, Addon] = {}
    visiting: set[str] = set()

    def visit(name: str, wanted_by: str | None) -> None:
        if name in ordered:
            return
        if name in visiting:
            raise StandinError(f"circular dependency involving module {name}")
        addon = find(paths, name)
        if addon is None:
            needed = f" (needed by {wanted_by})" if wanted_by else ""
            raise StandinError(f"unknown module {name}{needed}: not found in the addons paths")
        visiting.add(name)
        for dependency in addon.depends:
            visit(dependency, name)
        visiting.discard(name)
        ordered[name] = addon

    for name in names:
        visit(name, None)
    return list(ordered.values())


def present(paths: Sequence[Path], names: Iterable[str]) -> list[str]:
    """The modules of ``names`` still found; Odoo likewise skips vanished ones."""
    found = []
    for name in names:
        if find(paths, name) is None:
            _logger.warning("module %s is installed but not found: skipped", name)
        else:
            found.append(name)
    return found


def installed_in_order(paths: Sequence[Path], installed: Iterable[str]) -> list[Addon]:
    """The installed modules found, dependencies first."""
    installed = set(installed)
    ordered = resolve(paths, present(paths, sorted(installed)))
    return [addon for addon in ordered if addon.name in installed]


def run_sql(cr: Cursor, addon: Addon, kind: str) -> bool:
    """Run the addon's ``data/<kind>.sql`` if it has one; say whether it did."""
    path = addon.data_file(kind)
    if path is None:
        return False
    script = path.read_text(encoding="utf-8")
    if not script.strip():
        return False  # psycopg2 refuses an empty query
    try:
        # No parameters: psycopg2 sends the script as is, several statements included.
        cr.execute(script)
    except psycopg2.Error as exc:
        raise StandinError(f"module {addon.name}: {kind}.sql failed: {db.error_line(exc)}") from exc
    return True


def install(cr: Cursor, addon: Addon) -> None:
    run_sql(cr, addon, "install")
    db.record_module(cr, addon.name, addon.version, addon.checksum())


def import_all(addons: Iterable[Addon]) -> None:
    """Import each addon as ``odoo.addons.NAME``, as Odoo does when it loads a registry.

    Call :func:`search_path` first: it sets the namespace's ``__path__``."""
    for addon in addons:
        try:
            importlib.import_module(f"{NAMESPACE}.{addon.name}")
        except Exception as exc:  # SyntaxError included: any broken addon stops the start
            raise StandinError(f"module {addon.name}: import failed: {exc!r}") from exc
