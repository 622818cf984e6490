"""The unit layer: the host programs (host/), run as plain files against a host config and
a directory tree in tmp_path, with fake system commands where they would touch the system
(systemctl, psql, pg_dump, curl, uv...). No root, no container: seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PROJECT_DIR, TEST_SECRETS, TEST_TRANSFER_DATA, load_inventory, release_data

from tasks.render import host_config

HOST_DIR = PROJECT_DIR / "host"
BIN = HOST_DIR / "bin"
sys.path.insert(0, str(HOST_DIR / "lib"))
from oca_france_host import backups  # noqa: E402  (the host's library, as the programs use it)


@pytest.fixture(scope="session")
def unit_inventory():
    return load_inventory(TEST_SECRETS, TEST_TRANSFER_DATA)


class Host:
    """A host's tree under `root`: its config (host.json, paths moved under root), fake
    commands first on PATH (bin/), each call logged in calls.log."""

    def __init__(self, root: Path, config: dict):
        self.root = root
        self.fakes = root / "fakes"
        self.fakes.mkdir()
        self.calls = root / "calls.log"
        self.config = config
        self.config_file = root / "etc" / "host.json"
        self.config_file.parent.mkdir(parents=True)
        self.write_config()

    def write_config(self) -> None:
        self.config_file.write_text(json.dumps(self.config, indent=2))

    def path(self, key: str) -> Path:
        return Path(self.config[key])

    def fake(self, name: str, script: str) -> None:
        """A fake `name`: bash, logs "name args" to calls.log, then runs `script`."""
        fake = self.fakes / name
        fake.write_text(
            f'#!/usr/bin/env bash\nprintf "%s\\n" "{name} $*" >> {self.calls}\n' + script + "\n"
        )
        fake.chmod(0o755)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "PATH": f"{self.fakes}:{os.environ['PATH']}",
            "OCA_FRANCE_HOST_CONFIG": str(self.config_file),
            **extra,
        }

    def run(self, program: str, *args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / program), *args],
            capture_output=True,
            text=True,
            env=self.env(**env),
            timeout=60,
            cwd=self.root,
        )

    def logged(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []


def moved_config(config: dict, root: Path) -> dict:
    """The config with every absolute path of the host moved under `root` (the programs
    stay where they are in the repository)."""
    text = json.dumps(config)
    text = text.replace('"/opt/oca-france/bin/', f'"{BIN}/')
    for prefix in ("/home/odoo", "/etc/oca-france", "/var/lib/postgresql"):
        text = text.replace(f'"{prefix}', f'"{root}{prefix}')
    moved = json.loads(text)
    moved["odoo_user"] = (
        os.environ.get("USER") or subprocess.check_output(["id", "-un"], text=True).strip()
    )
    return moved


@pytest.fixture
def make_host(unit_inventory, tmp_path):
    """make_host("oca-france-recette" | "oca-france-prod", release="debian-12")."""

    def make(name: str = "oca-france-recette", release: str = "debian-12") -> Host:
        data = release_data(unit_inventory, name, release)
        root = tmp_path / name
        root.mkdir()
        host = Host(root, moved_config(host_config(data), root))
        for key in (
            "oca_france_dir",
            "deploy_log_dir",
            "snapshot_dir",
            "prepared_dir",
            "production_data_dir",
            "incoming_dir",
            "backup_dir",
            "filestore_root",
            "postgresql_data_root",
        ):
            host.path(key).mkdir(parents=True, exist_ok=True)
        return host

    return make


# --- Backups, as odoo-backup writes them (the tests build them without PostgreSQL).

PROD_DB = "oca-france-production"


def stamp(when) -> str:
    """A backup's name stamp, as odoo-backup writes it."""
    return f"{when:%Y%m%dT%H%M%S}"


def dump_header(major: int, minor: int, server: str) -> bytes:
    """The start of a custom-format dump as pg_dump writes it (pg_backup_archiver.c)."""

    def integer(value: int) -> bytes:
        return b"\x00" + value.to_bytes(4, "little")

    def string(text: str) -> bytes:
        return integer(len(text.encode())) + text.encode()

    compression = b"\x00" if (major, minor) >= (1, 15) else integer(0)
    created = b"".join(integer(v) for v in (0, 30, 2, 27, 10, 126, 0))
    return (
        b"PGDMP"
        + bytes([major, minor, 0, 4, 8, 1])
        + compression
        + created
        + string(PROD_DB)
        + string(server)
        + string(server)
    )


DUMP = dump_header(1, 14, "15.8") * 40  # what PostgreSQL 15 writes, and pg_restore 15 reads


def write_backup(
    directory: Path, name: str, files: dict[str, str] | None = None, dump: bytes = DUMP
) -> Path:
    """A complete backup directory/name of prod's database: its dump, filestore/ (`files`,
    path -> content), then filestore.list and manifest.json, written by backups.py."""
    backup = directory / name
    (backup / backups.FILESTORE).mkdir(parents=True)
    for path, content in (files if files is not None else {"ab/abcdef": "invoice\n"}).items():
        (backup / backups.FILESTORE / path).parent.mkdir(parents=True, exist_ok=True)
        (backup / backups.FILESTORE / path).write_text(content)
    (backup / f"{PROD_DB}.dump").write_bytes(dump)
    backups.write_manifest(backup, PROD_DB, "0123456789abcdef", name=name)
    return backup


def edit_manifest(backup: Path, **changes) -> None:
    manifest = backup / backups.MANIFEST
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), **changes}))


def fake_pg_restore(host: Host) -> None:
    """A pg_restore 15: reads archives up to 1.14, as the real one does."""
    host.fake(
        "pg_restore",
        "if [[ $1 == --version ]]; then\n"
        '    echo "pg_restore (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"; exit 0\n'
        "fi\n"
        'read -r major minor < <(od -An -tu1 -j5 -N2 "${*: -1}")\n'
        "if ((major > 1 || minor > 14)); then\n"
        '    echo "pg_restore: error: unsupported version ($major.$minor) in file header" >&2\n'
        "    exit 1\n"
        "fi",
    )


def git(*args: str, cwd) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture
def deployed(make_host, tmp_path):
    """A recette host whose checkout is a clone of a local origin with two commits."""
    host = make_host()
    origin = tmp_path / "origin"
    origin.mkdir()
    git("init", "-q", "-b", "18.0", cwd=origin)
    (origin / "README").write_text("one\n")
    git("add", "-A", cwd=origin)
    git("commit", "-qm", "one", cwd=origin)
    checkout = host.path("oca_france_dir")
    checkout.rmdir()
    git("clone", "-q", str(origin), str(checkout), cwd=tmp_path)
    (origin / "README").write_text("two\n")
    git("commit", "-qam", "two", cwd=origin)
    host.origin = origin
    return host


def fake_services(host) -> None:
    """systemctl, curl, PostgreSQL's commands and uv, on a fake database registry (one file
    per database in dbs/)."""
    dbs = host.root / "dbs"
    dbs.mkdir()
    (dbs / host.config["odoo_db_name"]).write_text("live\n")
    host.fake("systemctl", 'case "$1" in is-active) exit 0 ;; esac; exit 0')
    host.fake(
        "curl",
        'case "$*" in *health*) echo \'{"status": "pass", "db_server_status": true}\' ;;'
        " *) printf 200 ;; esac",
    )
    host.fake("uv", "exit 0")
    host.fake("dropdb", f'rm -f "{dbs}/${{@: -1}}"')
    host.fake("createdb", f'cp "{dbs}/${{1#--template=}}" "{dbs}/${{@: -1}}"')
    host.fake(
        "psql",
        f"""sql="${{@: -1}}"
case "$sql" in
    *"FROM pg_database WHERE datname = '"*)
        name=${{sql#*datname = \\'}}; name=${{name%%\\'*}}
        [[ -f "{dbs}/$name" ]] && echo 1 ;;
    "DROP DATABASE IF EXISTS"*)
        name=${{sql#*\\"}}; rm -f "{dbs}/${{name%%\\"*}}" ;;
    "ALTER DATABASE"*)
        from=${{sql#*\\"}}; from=${{from%%\\"*}}; to=${{sql%\\"}}; to=${{to##*\\"}}
        mv "{dbs}/$from" "{dbs}/$to" ;;
esac
exit 0""",
    )
    host.dbs = dbs


def died_at(host, step: str, **state: str) -> None:
    head = git("rev-parse", "HEAD", cwd=host.path("oca_france_dir"))
    fields = {"step": step, "ref": "origin/18.0", "from": head, "to": "0" * 40, **state}
    fields.setdefault("snapshot", f"{host.config['odoo_db_name']}-snap-20261202T100000")
    host.path("deploy_state_file").write_text("".join(f"{k}={v}\n" for k, v in fields.items()))


def history(host) -> list[dict]:
    path = host.path("deploy_history_file")
    return [json.loads(line) for line in path.read_text().splitlines()]
