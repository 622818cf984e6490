"""The host config (/etc/oca-france/host.json): rendered from group_data for each environment
and release, read by the host programs as JSON, each setting under its group_data name."""

from __future__ import annotations

import json
import os
import subprocess

from conftest import TEST_SECRETS

from tasks.render import PING_UNITS, host_config

from .conftest import HOST_DIR


def config_get(config_file, key: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            "python3",
            "-I",
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]);"
            " from oca_france_host import config; sys.exit(config.main(sys.argv[2:]))",
            str(HOST_DIR / "lib"),
            "get",
            key,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OCA_FRANCE_HOST_CONFIG": config_file},
    )


def test_the_config_holds_every_value_under_group_datas_names(host_data, tmp_path):
    config = host_config(host_data)
    text = json.dumps(config)  # JSON-serialisable: host.json.j2 is `config | tojson`
    for secret in TEST_SECRETS.values():
        assert secret not in text
    config_file = tmp_path / "host.json"
    config_file.write_text(text)
    # One name from group_data to the host: a setting keeps its group_data name.
    for key in ("odoo_db_name", "oca_france_dir", "oca_france_service", "odoo_running_env"):
        assert config[key] == getattr(host_data, key)
        assert config_get(str(config_file), key).stdout == f"{getattr(host_data, key)}\n"
    assert config["odoo_sync_command"] == host_data.odoo_sync_command
    assert "db_name" not in config and "checkout" not in config
    listed = config_get(str(config_file), "odoo_sync_command")
    assert json.loads(listed.stdout) == config["odoo_sync_command"]
    assert "\n" in config["environment_sql"]


def test_a_missing_or_broken_config_stops_with_exit_2(tmp_path):
    missing = config_get(str(tmp_path / "none.json"), "odoo_db_name")
    assert missing.returncode == 2
    assert f"cannot read the host config {tmp_path / 'none.json'}" in missing.stderr
    (tmp_path / "list.json").write_text("[1]")
    assert "not a JSON object" in config_get(str(tmp_path / "list.json"), "x").stderr
    (tmp_path / "ok.json").write_text("{}")
    absent = config_get(str(tmp_path / "ok.json"), "odoo_db_name")
    assert absent.returncode == 2 and "has no 'odoo_db_name'" in absent.stderr


class Recording:
    """Host data that records every attribute read, with its value."""

    def __init__(self, data):
        self._data, self._read = data, {}

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        value = getattr(self._data, name)
        self._read[name] = value
        return value


def leaves(value):
    """The scalars inside a value: list items, dict keys and values."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(key)
            yield from leaves(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from leaves(item)
    else:
        yield value


# What render.py adds itself, on purpose: the flags of the venv check (venv_check_argv) and
# the prepared release's own venv, relative to it (list_updates_command).
RENDER_LITERALS = {"--check", "--offline", ".venv/bin/click-odoo-update"}


def test_every_config_value_comes_from_group_data(host_data):
    recording = Recording(host_data)
    config = host_config(recording)
    read = {(type(value), value) for value in leaves(list(recording._read.values()))}
    texts = [value for kind, value in read if kind is str and len(value) >= 5]
    # An int's digits in a string: the port of the health and login URLs.
    texts += [str(value) for kind, value in read if kind is int and value > 1000]

    def from_data(value) -> bool:
        if (type(value), value) in read:
            return True
        return isinstance(value, str) and any(text in value for text in texts)

    strays = {value for value in leaves(list(config.values())) if not from_data(value)}
    # And the jobs that ping (their units, their names): render.py's own table.
    strays -= set(PING_UNITS) | set(PING_UNITS.values())
    assert strays == RENDER_LITERALS
    assert {"oca_france_dir", "odoo_dumps_dir", "odoo_db_name"} <= set(recording._read)
