"""Fast checks, no sandbox: templates rendered with each environment's data, the inventory,
scripts (bash -n, shellcheck), the polkit rule (node), lint."""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import PROJECT_DIR, TEST_SECRETS
from pyinfra.api.util import get_template

from tasks.render import rendered_files, template_path

SCRIPTS = ["deploy.sh.j2", "odoo-auto-deploy.sh.j2"]
PROJECT_SCRIPTS = ["tests/sandbox/sandbox.sh", ".ci/run"]


def render(data, name: str) -> str:
    _, variables = rendered_files(data)[name]
    return get_template(template_path(name)).render(**variables)


def rendered_scripts(inventory, tmp_path: Path) -> list[Path]:
    """Every host script, rendered for both environments, plus the project's own scripts."""
    paths = [PROJECT_DIR / script for script in PROJECT_SCRIPTS]
    for host in ("oca-france-recette", "oca-france-prod"):
        data = inventory.get_host(host).data
        for name in SCRIPTS:
            if name in rendered_files(data):
                path = tmp_path / f"{host}-{name.removesuffix('.j2')}"
                path.write_text(render(data, name))
                paths.append(path)
    return paths


def test_every_template_is_used(inventory):
    used = set(rendered_files(inventory.get_host("oca-france-recette").data))
    on_disk = {path.name for path in (PROJECT_DIR / "templates").glob("*.j2")}
    assert on_disk == used


def test_odoorc_parses_with_the_environment_values(host_data):
    config = configparser.ConfigParser(interpolation=None)
    config.read_string(render(host_data, "odoorc.j2"))
    options = config["options"]
    db = host_data.odoo_db_name
    assert (
        db
        == {"recette": "oca-france-recette", "prod": "oca-france-production"}[
            host_data.odoo_running_env
        ]
    )
    assert options["db_name"] == db
    assert options["dbfilter"] == f"^{db}$"
    assert options["list_db"] == "False"
    assert options["data_dir"] == host_data.odoo_data_dir
    assert options["load_language"] == "fr_FR"
    assert options["unaccent"] == "True"
    assert options["running_env"] == host_data.odoo_running_env
    assert options["admin_passwd"] == host_data.odoo_admin_password.value
    assert "module_change_auto_install" in options["server_wide_modules"].split(",")
    ribbon = config["ir.config_parameter"]["ribbon.name"]
    assert ribbon == {"recette": "RECETTE", "prod": "False"}[host_data.odoo_running_env]


def test_odoorc_is_written_without_showing_the_secret(inventory):
    # The .odoorc goes through secret_template (no diff): install_template(holds_secrets=True).
    source = (PROJECT_DIR / "tasks" / "oca_france.py").read_text()
    call = source[source.index("odoorc = ") :].split("\n)\n", 1)[0]
    assert "holds_secrets=True" in call and 'mode="640"' in call


def test_unit_runs_the_server_from_the_venv(host_data):
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.read_string(render(host_data, "odoo-oca-france.service.j2"))
    service = unit["Service"]
    assert service["User"] == "odoo"
    assert service["ExecStart"] == ("/home/odoo/oca-france/.venv/bin/odoo -c /home/odoo/.odoorc")
    assert service["Restart"] == "on-failure"
    assert "ExecStartPre" not in service
    assert "postgresql.service" in unit["Unit"]["After"]


def test_only_recette_gets_the_deploy_timers(inventory):
    recette = rendered_files(inventory.get_host("oca-france-recette").data)
    prod = rendered_files(inventory.get_host("oca-france-prod").data)
    timers = {"odoo-auto-deploy.timer.j2", "odoo-weekly-deploy.timer.j2"}
    assert timers <= set(recette)
    assert not timers & set(prod)
    weekly = get_template(template_path("odoo-weekly-deploy.timer.j2")).render(
        **recette["odoo-weekly-deploy.timer.j2"][1]
    )
    assert "OnCalendar=Mon *-*-* 04:00:00" in weekly


def test_scripts_bash_syntax(inventory, tmp_path):
    for path in rendered_scripts(inventory, tmp_path):
        result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, f"{path.name}: {result.stderr}"


def test_scripts_shellcheck(inventory, tmp_path):
    assert shutil.which("shellcheck"), "shellcheck is not installed (.ci/run installs it)"
    paths = [str(path) for path in rendered_scripts(inventory, tmp_path)]
    result = subprocess.run(["shellcheck", "-s", "bash", *paths], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


POLKIT_HARNESS = """
let rule;
global.polkit = {Result: {YES: "yes", NOT_HANDLED: null}, addRule: (f) => { rule = f; }};
require(process.argv[2]);
const action = (unit, verb) => ({id: "org.freedesktop.systemd1.manage-units",
                                 lookup: (key) => ({unit, verb})[key]});
const cases = JSON.parse(process.argv[3]);
console.log(JSON.stringify(cases.map(([user, unit, verb]) =>
    rule(action(unit, verb), {user}))));
"""


def test_polkit_rule_parses_and_allows_only_odoo_units(inventory, tmp_path):
    assert shutil.which("node"), "node is not installed (.ci/run installs it)"
    rule = tmp_path / "rule.js"
    rule.write_text(render(inventory.get_host("oca-france-prod").data, "polkit-odoo.rules.j2"))
    check = subprocess.run(["node", "--check", str(rule)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr

    cases = [
        ["odoo", "odoo-oca-france.service", "restart"],
        ["odoo", "odoo-auto-deploy.service", "start"],
        ["odoo", "odoo-oca-france.service", "stop"],
        ["odoo", "ssh.service", "restart"],
        ["odoo", "postgresql.service", "stop"],
        ["odoo", "odoo-oca-france.service", "enable"],
        ["odoo", "odoo-x.service.d/../../ssh.service", "restart"],
        ["www-data", "odoo-oca-france.service", "restart"],
    ]
    harness = tmp_path / "harness.js"
    harness.write_text(POLKIT_HARNESS)
    result = subprocess.run(
        ["node", str(harness), str(rule), json.dumps(cases)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(result.stdout) == ["yes", "yes", "yes", None, None, None, None, None]


def test_inventory_groups_and_data(inventory):
    assert [h.name for h in inventory.get_group("recette")] == ["oca-france-recette"]
    assert [h.name for h in inventory.get_group("prod")] == ["oca-france-prod"]
    recette = inventory.get_host("oca-france-recette").data
    prod = inventory.get_host("oca-france-prod").data
    assert recette.odoo_db_name == "oca-france-recette"
    assert prod.odoo_db_name == "oca-france-production"
    assert recette.oca_france_repo_url == "https://github.com/oca-france/oca-france-custom"
    assert recette.odoo_init_modules == ["oca_france_all"]
    assert recette.recette_automation and not prod.recette_automation
    assert recette.deploy_restore_allowed and not prod.deploy_restore_allowed
    assert repr(recette.odoo_admin_password) == ("<secret ODOO_OCA_FRANCE_ADMIN_PASSWORD_RECETTE>")


def pyinfra_in_copy(tmp_path: Path, env: dict[str, str], *args: str):
    """Run pyinfra on a copy of the project without any .env, so only `env` holds secrets."""
    for name in ("inventory.py", "deploy.py", "group_data", "tasks", "templates"):
        source = PROJECT_DIR / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, dirs_exist_ok=True)
        else:
            shutil.copy(source, tmp_path / name)
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("ODOO_OCA_FRANCE_")}
    pyinfra = shutil.which("pyinfra")
    return subprocess.run(
        [pyinfra, *args],
        cwd=tmp_path,
        env={**clean_env, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_missing_secret_stops_before_connecting(tmp_path):
    result = pyinfra_in_copy(tmp_path, {}, "-y", "inventory.py", "deploy.py", "--limit", "recette")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "ODOO_OCA_FRANCE_ADMIN_PASSWORD_RECETTE" in output
    assert ".env.template" in output
    assert "Connecting" not in output


def test_recette_needs_only_recette_secrets(tmp_path):
    recette_only = {
        "ODOO_OCA_FRANCE_ADMIN_PASSWORD_RECETTE": TEST_SECRETS[
            "ODOO_OCA_FRANCE_ADMIN_PASSWORD_RECETTE"
        ]
    }
    result = pyinfra_in_copy(
        tmp_path, recette_only, "inventory.py", "debug-inventory", "--limit", "recette"
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert '"odoo_db_name": "oca-france-recette"' in output
    # debug-inventory shows which secret, never its value
    assert "<secret ODOO_OCA_FRANCE_ADMIN_PASSWORD_RECETTE>" in output
    assert recette_only["ODOO_OCA_FRANCE_ADMIN_PASSWORD_RECETTE"] not in output


def test_env_template_lists_every_secret(monkeypatch):
    for variable, value in TEST_SECRETS.items():
        monkeypatch.setenv(variable, value)
    import inventory as project_inventory

    template = (PROJECT_DIR / ".env.template").read_text()
    for secrets in project_inventory.SECRETS.values():
        for variable in secrets.values():
            assert f"\n{variable}=" in template


def test_dotenv_is_ignored_by_git():
    result = subprocess.run(
        ["git", "check-ignore", "-q", ".env"], cwd=PROJECT_DIR, capture_output=True
    )
    assert result.returncode == 0, ".env must be git-ignored"


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]])
def test_ruff(command):
    result = subprocess.run(
        [shutil.which("ruff"), *command], cwd=PROJECT_DIR, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dotenv_is_read_and_a_readable_one_is_flagged(tmp_path):
    secret = TEST_SECRETS["ODOO_OCA_FRANCE_ADMIN_PASSWORD_RECETTE"]
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"ODOO_OCA_FRANCE_ADMIN_PASSWORD_RECETTE={secret}\n")
    dotenv.chmod(0o644)
    result = pyinfra_in_copy(tmp_path, {}, "inventory.py", "debug-inventory", "--limit", "recette")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "others can read it: chmod 600 .env" in output
    assert secret not in output

    dotenv.chmod(0o600)
    result = pyinfra_in_copy(tmp_path, {}, "inventory.py", "debug-inventory", "--limit", "recette")
    assert result.returncode == 0
    assert "others can read it" not in result.stdout + result.stderr
