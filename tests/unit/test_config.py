"""The host config (/etc/oca-france/host.json): rendered from group_data for each environment
and release, read by the Python programs as JSON and by the bash ones as HOST_* variables."""

from __future__ import annotations

import json
import os
import subprocess

from conftest import TEST_SECRETS

from tasks.render import host_config

from .conftest import HOST_DIR


def config_shell(config_file) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["python3", "-m", "oca_france_host.config", "shell"],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "PYTHONPATH": str(HOST_DIR / "lib"),
            "OCA_FRANCE_HOST_CONFIG": config_file,
        },
    )


def in_bash(config_file, script: str) -> str:
    """`script`'s output, run after eval "$(config shell)", as the bash programs do."""
    result = subprocess.run(
        ["bash", "-c", f'set -eu; eval "$(python3 -m oca_france_host.config shell)"; {script}'],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "PYTHONPATH": str(HOST_DIR / "lib"),
            "OCA_FRANCE_HOST_CONFIG": config_file,
        },
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_config_loads_in_bash_with_every_value(host_data, tmp_path):
    config = host_config(host_data)
    text = json.dumps(config)  # JSON-serialisable: host.json.j2 is `config | tojson`
    for secret in TEST_SECRETS.values():
        assert secret not in text
    config_file = tmp_path / "host.json"
    config_file.write_text(text)
    assert config_shell(str(config_file)).returncode == 0
    assert in_bash(str(config_file), 'echo "$HOST_DB_NAME"') == f"{host_data.odoo_db_name}\n"

    # Every key, as bash sees it: a scalar as one word, a list as an array (its length, then
    # its items), NUL-separated; compared with the JSON.
    script, expected = [], []
    for key, value in sorted(config.items()):
        name = f"HOST_{key.upper()}"
        if isinstance(value, list):
            script.append(f'printf "%s\\0" "${{#{name}[@]}}" "${{{name}[@]}}"')
            expected += [str(len(value)), *map(str, value)]
        else:
            script.append(f'printf "%s\\0" "${name}"')
            expected.append(str(value).lower() if isinstance(value, bool) else str(value))
    assert isinstance(config["sync_command"], list) and "\n" in config["environment_sql"]
    assert in_bash(str(config_file), "; ".join(script)).split("\0")[:-1] == expected
    # readonly: a program cannot change its config by accident
    assert "readonly HOST_DB_NAME=" in config_shell(str(config_file)).stdout


def test_a_missing_or_broken_config_stops_with_exit_2(tmp_path):
    missing = config_shell(str(tmp_path / "none.json"))
    assert missing.returncode == 2
    assert f"cannot read the host config {tmp_path / 'none.json'}" in missing.stderr
    (tmp_path / "bad.json").write_text('{"bad key": 1}')
    assert "is not a usable name" in config_shell(str(tmp_path / "bad.json")).stderr


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
    assert strays == RENDER_LITERALS
    assert {"oca_france_dir", "odoo_dumps_dir", "odoo_db_name"} <= set(recording._read)
