"""Addons: finding them on addons_path, ordering them, running their SQL, importing them."""

import ast
import hashlib
import importlib
import logging
import re
import sys
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import psycopg2
from psycopg2.extensions import cursor as Cursor

from . import db
from .errors import StandinError

_logger = logging.getLogger(__name__)

MANIFEST = "__manifest__.py"
# Installed addons are imported under this package, whose __path__ is addons_path.
IMPORT_PACKAGE = "odoo_standin_addons"
# A module name is also a directory name and a Python identifier: nothing else is allowed.
VALID_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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
        """sha256 over the addon's files (relative path and content), in path order."""
        digest = hashlib.sha256()
        for file in sorted(_source_files(self.path), key=lambda f: f.relative_to(self.path)):
            digest.update(file.relative_to(self.path).as_posix().encode() + b"\0")
            digest.update(file.read_bytes() + b"\0")
        return digest.hexdigest()


def _source_files(root: Path) -> Iterable[Path]:
    # Compiled files change without the source changing: they must not alter the checksum.
    for file in root.rglob("*"):
        if file.is_file() and "__pycache__" not in file.parts and file.suffix != ".pyc":
            yield file


def find(addons_path: Sequence[Path], name: str) -> Addon | None:
    """The addon called ``name`` in the first addons_path entry that has it."""
    if not VALID_NAME.match(name):
        return None
    for directory in addons_path:
        if (directory / name / MANIFEST).is_file():
            return Addon(name, directory / name)
    return None


def resolve(addons_path: Sequence[Path], names: Iterable[str]) -> list[Addon]:
    """The addons ``names`` and all their dependencies, dependencies first."""
    ordered: dict[str, Addon] = {}
    visiting: set[str] = set()

    def visit(name: str, wanted_by: str | None) -> None:
        if name in ordered:
            return
        if name in visiting:
            raise StandinError(f"circular dependency involving module {name}")
        addon = find(addons_path, name)
        if addon is None:
            needed = f" (needed by {wanted_by})" if wanted_by else ""
            raise StandinError(f"unknown module {name}{needed}: not found in addons_path")
        visiting.add(name)
        for dependency in addon.depends:
            visit(dependency, name)
        visiting.discard(name)
        ordered[name] = addon

    for name in names:
        visit(name, None)
    return list(ordered.values())


def present(addons_path: Sequence[Path], names: Iterable[str]) -> list[str]:
    """The modules of ``names`` still on addons_path; Odoo likewise skips vanished ones."""
    found = []
    for name in names:
        if find(addons_path, name) is None:
            _logger.warning("module %s is installed but not found in addons_path: skipped", name)
        else:
            found.append(name)
    return found


def installed_in_order(addons_path: Sequence[Path], installed: Iterable[str]) -> list[Addon]:
    """The installed modules found on addons_path, dependencies first."""
    installed = set(installed)
    ordered = resolve(addons_path, present(addons_path, sorted(installed)))
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


def import_all(addons_path: Sequence[Path], addons: Iterable[Addon]) -> None:
    """Import each addon's Python package, as Odoo does when it loads a registry."""
    if IMPORT_PACKAGE not in sys.modules:
        package = types.ModuleType(IMPORT_PACKAGE)
        package.__path__ = [str(path) for path in addons_path]
        sys.modules[IMPORT_PACKAGE] = package
    for addon in addons:
        try:
            importlib.import_module(f"{IMPORT_PACKAGE}.{addon.name}")
        except Exception as exc:  # SyntaxError included: any broken addon stops the start
            raise StandinError(f"module {addon.name}: import failed: {exc!r}") from exc
