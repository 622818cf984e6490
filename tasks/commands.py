"""Commands and SQL built from a host's data: Odoo's commands with this host's values filled
in, uv's settings, the venv's sync and check, and the ir.config_parameter values the server
environment forces, with the SQL that writes them.

`data` is pyinfra's host.data (or anything with the same attributes).
"""

from __future__ import annotations

import shlex

from tasks.settings import checked_seconds


def odoo_command(data, template: list[str], venv: str | None = None) -> list[str]:
    """One of the data's commands (odoo_*_command, argument lists) with this host's values
    filled in (the checkout's venv, or `venv`)."""
    values = {
        "venv": venv or f"{data.oca_france_dir}/.venv",
        "config": data.odoo_config_path,
        "db": data.odoo_db_name,
        "modules": ",".join(data.odoo_init_modules),
    }
    return [argument.format(**values) for argument in template]


def uv_env(data) -> str:
    """uv's settings for the odoo user's uv commands, as shell assignments."""
    return (
        f"UV_PYTHON_INSTALL_DIR={shlex.quote(data.uv_python_install_dir)}"
        f" UV_PYTHON_PREFERENCE={shlex.quote(data.uv_python_preference)}"
    )


def venv_check_argv(data) -> list[str]:
    """Succeeds when the venv already matches uv.lock (changes nothing)."""
    return [*data.odoo_sync_command, "--check", "--offline"]


def venv_check_command(data) -> str:
    return shlex.join(venv_check_argv(data))


def venv_sync_command(data) -> str:
    """Sync the venv until uv finds it up to date. The first sync of a fresh clone installs
    __manifest__.py files into .venv that the app's cache-keys glob matches, newer than what
    uv recorded: uv then finds the venv outdated until a second sync records them."""
    # Bounded as the deploy's is (venv_sync_timeout_sec): a hung download fails the apply.
    sync = shlex.join(
        [
            "timeout",
            "--kill-after=30",
            str(checked_seconds(data, "venv_sync_timeout_sec")),
            *data.odoo_sync_command,
        ]
    )
    return f"{sync} && {{ {venv_check_command(data)} >/dev/null 2>&1 || {sync}; }}"


def server_env_parameters(data) -> dict[str, str]:
    """ir.config_parameter values the server environment forces: the data's, plus the public
    URL, frozen (web.base.url.freeze), where one is set."""
    parameters = {key: str(value) for key, value in data.odoo_server_env_parameters.items()}
    if data.odoo_public_url:
        parameters["web.base.url"] = data.odoo_public_url.rstrip("/")
        parameters["web.base.url.freeze"] = "True"
    return parameters


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def config_parameters_sql(parameters: dict[str, str]) -> str:
    """SQL that writes these ir.config_parameter values (update, else insert)."""
    statements = []
    for key, value in sorted(parameters.items()):
        k, v = sql_literal(key), sql_literal(value)
        statements.append(f"UPDATE ir_config_parameter SET value = {v} WHERE key = {k};")
        statements.append(
            f"INSERT INTO ir_config_parameter (key, value) SELECT {k}, {v}"
            f" WHERE NOT EXISTS (SELECT 1 FROM ir_config_parameter WHERE key = {k});"
        )
    return "\n".join(statements)
