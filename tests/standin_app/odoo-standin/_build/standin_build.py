"""In-tree PEP 517 build backend of the stand-in (this is NOT Odoo).

Used by both stand-in projects: the app (root addons, like the real oca-france-custom,
built by hatchling + hatch-odoo) and its dependency ``odoo-standin-server`` (the stand-in
for Odoo itself, installed from OCB's git in the real app). Neither can use hatchling: the
builds must run offline (no build requirement to download). Standard library only.

It lives in the server's tree, and the app points at it (``backend-path =
["odoo-standin/_build"]``): uv refuses a ``backend-path`` outside the project's own
directory (``../_build``, also through a symlink), as PEP 517 asks.

What goes in is set by ``[tool.standin-build]`` in the project's pyproject.toml:

- ``packages``: directories of the project copied into the wheel under the same path
  (``odoo`` and ``odoo/addons`` without ``__init__.py`` stay implicit namespace packages);
- ``addons-dirs``: directories whose subdirectories holding a ``__manifest__.py`` go into
  the wheel as ``odoo/addons/<name>/``, like hatch-odoo's ``addons_dirs``.

Editable install: a ``.pth`` putting the project directory on sys.path (for
``packages``) and one putting ``build/__editable_odoo_addons__`` on it, where the
relative symlinks ``build/__editable_odoo_addons__/odoo/addons/<name>`` ->
``../../../../<name>`` are written, like hatch-odoo.
"""

import ast
import base64
import hashlib
import io
import os
import re
import shutil
import tarfile
import tomllib
import zipfile
from pathlib import Path

MANIFEST = "__manifest__.py"
EDITABLE_DIR = Path("build") / "__editable_odoo_addons__"
# Fixed timestamp: the same sources give the same archive.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
SKIPPED_DIRS = {"__pycache__"}
SKIPPED_SUFFIXES = {".pyc", ".pyo"}


# --- project description ------------------------------------------------------------------


def _root() -> Path:
    # PEP 517: hooks run with the source tree as working directory.
    return Path.cwd()


def _pyproject() -> dict:
    with (_root() / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)


def _project() -> dict:
    return _pyproject()["project"]


def _settings() -> dict:
    return _pyproject().get("tool", {}).get("standin-build", {})


def _packages() -> list[Path]:
    """The ``packages`` directories, copied into the wheel under the same path."""
    return [_root() / name for name in _settings().get("packages", [])]


def _dist_name(project: dict) -> str:
    """Name as used in wheel file and .dist-info names (PEP 427 / PEP 503 normalized)."""
    return re.sub(r"[-_.]+", "_", project["name"]).lower()


def _dist_info(project: dict) -> str:
    return f"{_dist_name(project)}-{project['version']}.dist-info"


def _wheel_name(project: dict) -> str:
    return f"{_dist_name(project)}-{project['version']}-py3-none-any.whl"


def _metadata(project: dict) -> str:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {project['name']}",
        f"Version: {project['version']}",
    ]
    if "description" in project:
        lines.append(f"Summary: {project['description']}")
    if "requires-python" in project:
        lines.append(f"Requires-Python: {project['requires-python']}")
    lines += [f"Requires-Dist: {requirement}" for requirement in project.get("dependencies", [])]
    return "\n".join(lines) + "\n"


def _wheel_file() -> str:
    return (
        "Wheel-Version: 1.0\n"
        "Generator: standin_build (in-tree)\n"
        "Root-Is-Purelib: true\n"
        "Tag: py3-none-any\n"
    )


def _entry_points(project: dict) -> str | None:
    scripts = project.get("scripts", {})
    if not scripts:
        return None
    lines = ["[console_scripts]"] + [f"{name} = {target}" for name, target in scripts.items()]
    return "\n".join(lines) + "\n"


def _metadata_files(project: dict) -> dict[str, str]:
    files = {"METADATA": _metadata(project), "WHEEL": _wheel_file()}
    entry_points = _entry_points(project)
    if entry_points is not None:
        files["entry_points.txt"] = entry_points
    return files


def _addon_dirs(installable_only: bool = False) -> list[Path]:
    """The subdirectories of the ``addons-dirs`` holding a manifest, like hatch-odoo's
    ``addons_dirs`` (the app: ``["./"]``, its addons at the repository root)."""
    addons = []
    for top in _settings().get("addons-dirs", []):
        for path in sorted((_root() / top).iterdir()):
            if path.name.startswith(".") or not (path / MANIFEST).is_file():
                continue
            if installable_only and not _installable(path):
                continue
            addons.append(path)
    return addons


def _installable(addon: Path) -> bool:
    try:
        manifest = ast.literal_eval((addon / MANIFEST).read_text(encoding="utf-8"))
    except (ValueError, SyntaxError):
        return True  # broken manifests are the stand-in's business, not the build's
    return not isinstance(manifest, dict) or manifest.get("installable", True) is not False


def _tree(top: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
        for filename in sorted(filenames):
            path = Path(dirpath) / filename
            if path.suffix not in SKIPPED_SUFFIXES:
                files.append(path)
    return files


# --- wheel writing ----------------------------------------------------------------------


class _Wheel:
    def __init__(self, path: Path, project: dict):
        self.project = project
        self.dist_info = _dist_info(project)
        self.zip = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED)
        self.records: list[str] = []

    def add(self, arcname: str, data: bytes, mode: int = 0o644) -> None:
        info = zipfile.ZipInfo(arcname, date_time=ZIP_DATE)
        info.external_attr = (0o100000 | mode) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        self.zip.writestr(info, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        self.records.append(f"{arcname},sha256={digest},{len(data)}")

    def add_tree(self, top: Path, prefix: str) -> None:
        for path in _tree(top):
            self.add(f"{prefix}/{path.relative_to(top).as_posix()}", path.read_bytes())

    def close(self) -> None:
        for name, text in _metadata_files(self.project).items():
            self.add(f"{self.dist_info}/{name}", text.encode())
        record = f"{self.dist_info}/RECORD"
        self.records.append(f"{record},,")
        info = zipfile.ZipInfo(record, date_time=ZIP_DATE)
        info.external_attr = 0o100644 << 16
        self.zip.writestr(info, "\n".join(self.records) + "\n")
        self.zip.close()


# --- PEP 517 / PEP 660 hooks ------------------------------------------------------------


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def _prepare_metadata(metadata_directory: str) -> str:
    project = _project()
    dist_info = Path(metadata_directory) / _dist_info(project)
    dist_info.mkdir(parents=True, exist_ok=True)
    for name, text in _metadata_files(project).items():
        (dist_info / name).write_text(text, encoding="utf-8")
    return dist_info.name


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    return _prepare_metadata(metadata_directory)


def prepare_metadata_for_build_editable(metadata_directory, config_settings=None):
    return _prepare_metadata(metadata_directory)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    project = _project()
    name = _wheel_name(project)
    wheel = _Wheel(Path(wheel_directory) / name, project)
    for package in _packages():
        wheel.add_tree(package, package.relative_to(_root()).as_posix())
    for addon in _addon_dirs():
        wheel.add_tree(addon, f"odoo/addons/{addon.name}")
    wheel.close()
    return name


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    project = _project()
    root = _root()
    # Like hatch-odoo: rebuild the symlink farm from scratch (removed addons disappear).
    editable = root / EDITABLE_DIR
    if editable.is_dir():
        shutil.rmtree(editable)
    addons_dir = editable / "odoo" / "addons"
    addons = _addon_dirs(installable_only=True)
    name = _wheel_name(project)
    wheel = _Wheel(Path(wheel_directory) / name, project)
    if _packages():
        wheel.add(f"_{_dist_name(project)}.pth", f"{root}\n".encode())
    if addons:
        addons_dir.mkdir(parents=True)
        for addon in addons:
            link = addons_dir / addon.name
            link.symlink_to(os.path.relpath(addon, addons_dir), target_is_directory=True)
        pth = f"{_dist_name(project)}_editable_odoo_addons.pth"
        wheel.add(pth, f"{editable}\n".encode())
    wheel.close()
    return name


def build_sdist(sdist_directory, config_settings=None):
    project = _project()
    root = _root()
    base = f"{_dist_name(project)}-{project['version']}"
    name = f"{base}.tar.gz"
    members = [root / "pyproject.toml"]
    members += [root / extra for extra in ("README.md", ".python-version", "uv.lock")]
    files = [path for path in members if path.is_file()]
    backend = [root / path for path in _pyproject()["build-system"].get("backend-path", [])]
    for top in [*backend, *_packages(), *_addon_dirs()]:
        files += _tree(top)
    with tarfile.open(Path(sdist_directory) / name, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for path in files:
            data = path.read_bytes()
            _add_to_tar(tar, f"{base}/{path.relative_to(root).as_posix()}", data)
        _add_to_tar(tar, f"{base}/PKG-INFO", _metadata(project).encode())
    return name


def _add_to_tar(tar: tarfile.TarFile, arcname: str, data: bytes) -> None:
    info = tarfile.TarInfo(arcname)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))
