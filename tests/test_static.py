"""Fast checks, no sandbox: templates rendered with each environment's data, the inventory,
scripts (bash -n, shellcheck), the polkit rule (node), lint."""

from __future__ import annotations

import ast
import base64
import configparser
import contextlib
import grp
import hashlib
import io
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import (
    PROJECT_DIR,
    RELEASES,
    TEST_ALERT_DATA,
    TEST_ALERT_SECRETS,
    TEST_SECRETS,
    TEST_TRANSFER_DATA,
    load_inventory,
    release_data,
)
from pyinfra.api.exceptions import DeployError
from pyinfra.api.util import get_template

from tasks.odoo_password import admin_password_hash
from tasks.render import host_config, rendered_files, template_path
from tasks.settings import (
    RETENTION_MINIMUMS,
    ReleaseData,
    checked_calendar_times,
    checked_recovering,
    checked_timezone,
    wkhtmltopdf_source,
)
from tasks.util import (
    STARTED_BEFORE,
    TreeManifest,
    local_manifest,
    name_patterns,
    renamed_into_place,
    secret_template,
    sudo_unless_root,
    tree_as_wanted,
)

HOST_DIR = PROJECT_DIR / "host"
PROJECT_SCRIPTS = ["tests/sandbox/sandbox.sh", "tests/system-deps.sh", ".ci/run"]


class With:
    """Data with some values replaced, as `pyinfra --data key=value` would."""

    def __init__(self, data, **values):
        self._data, self._values = data, values

    def __getattr__(self, name: str):
        return self._values[name] if name in self._values else getattr(self._data, name)


def render(data, name: str) -> str:
    _, variables = rendered_files(data)[name]
    return get_template(template_path(name)).render(**variables)


def bash_scripts() -> list[Path]:
    """The project's bash scripts (the hosts run none: see the test below)."""
    return [PROJECT_DIR / script for script in PROJECT_SCRIPTS]


def test_every_host_program_is_the_one_python_launcher():
    """host/ is one Python program: each bin/ entry is the same isolated launcher (python3 -I),
    which runs the module its name maps to; no bash, no library sourced."""
    launcher = (HOST_DIR / "bin" / "oca-france").read_bytes()
    assert launcher.startswith(b"#!/usr/bin/python3 -I\n")
    programs = sorted(path.name for path in (HOST_DIR / "bin").iterdir())
    assert {"deploy", "odoo-backup", "odoo-backup-transfer", "odoo-auto-deploy"} <= set(programs)
    for name in programs:
        assert (HOST_DIR / "bin" / name).read_bytes() == launcher, name
    assert not list(HOST_DIR.rglob("*.sh"))


def test_no_host_program_is_a_template():
    """The programs are plain files of host/; templates are config files, units, keys."""
    assert not list((PROJECT_DIR / "templates").glob("*.sh.j2"))
    assert not list((PROJECT_DIR / "templates").glob("*.py.j2"))
    for path in HOST_DIR.rglob("*"):
        if path.is_file() and not path.is_symlink() and "__pycache__" not in path.parts:
            assert "{{" not in path.read_text(), path


def test_environment_parameters_sql_quotes_values():
    from tasks.commands import config_parameters_sql

    sql = config_parameters_sql({"web.base.url": "https://x.test/it's"})
    assert "SET value = 'https://x.test/it''s' WHERE key = 'web.base.url';" in sql
    assert "WHERE NOT EXISTS (SELECT 1 FROM ir_config_parameter WHERE key = 'web.base.url')" in sql


def test_recette_forces_its_own_url_frozen_and_prod_keeps_its_own(inventory):
    recette = rendered_files(release_data(inventory, "oca-france-recette", "debian-13"))
    params = recette["odoorc.j2"][1]["server_env_parameters"]
    assert params["web.base.url"] == "https://test.oca-france.fr"
    assert params["web.base.url.freeze"] == "True"
    assert params["ribbon.name"] == "RECETTE"
    assert "web.base.url" in recette["host.json.j2"][1]["config"]["environment_sql"]
    prod = rendered_files(release_data(inventory, "oca-france-prod", "debian-12"))
    assert "web.base.url" not in prod["odoorc.j2"][1]["server_env_parameters"]


def test_transfer_needs_recettes_address_and_pinned_host_key(inventory):
    prod = release_data(inventory, "oca-france-prod", "debian-12")
    files = rendered_files(prod)
    known_hosts = render(prod, "backup-transfer.known_hosts.j2")
    assert "\nrecette.test ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAhostkey\n" in known_hosts
    assert "OnSuccess=odoo-backup-transfer.service" in render(prod, "odoo-backup.service.j2")
    config = files["host.json.j2"][1]["config"]
    assert (
        config["backup_transfer_known_hosts_file"] == "/etc/oca-france/backup-transfer.known_hosts"
    )
    transfer = HOST_DIR / "lib" / "oca_france_host" / "transfer.py"
    assert '"StrictHostKeyChecking=yes"' in transfer.read_text()
    assert "authorized_keys.j2" not in files  # prod accepts no delivery
    for missing in ("backup_transfer_host", "backup_transfer_host_key"):
        with pytest.raises(DeployError, match="ssh_host_ed25519_key.pub"):
            rendered_files(With(prod, **{missing: None}))
    with pytest.raises(DeployError, match="<type> <base64 key>"):
        rendered_files(With(prod, backup_transfer_host_key="AAAA-no-type"))
    other_port = render(With(prod, backup_transfer_port=2222), "backup-transfer.known_hosts.j2")
    assert "\n[recette.test]:2222 ssh-ed25519 " in other_port


def test_recettes_key_line_restricts_to_rrsync_write_only(inventory):
    recette = release_data(inventory, "oca-france-recette", "debian-12")
    line = render(recette, "authorized_keys.j2").splitlines()[-1]
    assert line == (
        'restrict,command="/opt/oca-france/bin/odoo-production-data-receive"'
        " ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAtest transfer"
    )
    # What that program runs, under the incoming directory's size limit.
    config = host_config(recette)
    assert config["receive_command"] == [
        "/usr/bin/rrsync",
        "-wo",
        "-munge",
        "/home/odoo/.odoo_dumps/incoming",
    ]
    assert config["production_data_incoming_limit_mib"] == 20480
    assert "backup-transfer.key.j2" not in rendered_files(recette)  # recette sends nothing


def test_the_daily_backup_and_the_weekly_refresh_catch_up_after_a_host_was_off(inventory):
    recette = release_data(inventory, "oca-france-recette", "debian-13")
    prod = release_data(inventory, "oca-france-prod", "debian-12")
    assert "\nPersistent=true\n" in render(recette, "odoo-weekly-deploy.timer.j2")
    assert "\nPersistent=true\n" in render(prod, "odoo-backup.timer.j2")


@pytest.fixture(scope="module")
def alerting():
    """The inventory with every alert channel set."""
    return load_inventory(
        {**TEST_SECRETS, **TEST_ALERT_SECRETS}, {**TEST_TRANSFER_DATA, **TEST_ALERT_DATA}
    )


def test_every_template_is_used(inventory, alerting):
    used = set(rendered_files(release_data(inventory, "oca-france-recette", "debian-12")))
    used |= set(rendered_files(release_data(alerting, "oca-france-prod", "debian-12")))
    used |= set(rendered_files(release_data(inventory, "oca-france-backup", "debian-13")))
    on_disk = {path.name for path in (PROJECT_DIR / "templates").glob("*.j2")}
    assert on_disk == used


def verifies(password: str, stored: str) -> bool:
    """passlib's pbkdf2_sha512 check, as Odoo's verify_admin_password makes it, written here
    from the format alone: $pbkdf2-sha512$<rounds>$<salt>$<checksum>, adapted base64."""
    scheme, rounds, salt, checksum = stored.split("$")[1:]
    unab64 = lambda text: base64.b64decode(text.replace(".", "+") + "=" * (-len(text) % 4))  # noqa: E731
    derived = hashlib.pbkdf2_hmac("sha512", password.encode(), unab64(salt), int(rounds))
    return scheme == "pbkdf2-sha512" and int(rounds) >= 600_000 and derived == unab64(checksum)


def test_admin_password_hash_is_reproducible_and_verifies_only_its_password():
    first = admin_password_hash("correct horse", "db")
    assert first == admin_password_hash("correct horse", "db")  # a re-apply changes nothing
    assert verifies("correct horse", first)
    assert not verifies("correct horsf", first)
    assert admin_password_hash("correct horse", "other-db") != first  # its own salt


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
    assert verifies(host_data.odoo_admin_password.value, options["admin_passwd"])
    assert host_data.odoo_admin_password.value not in render(host_data, "odoorc.j2")
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
    assert service["ExecStart"] == (
        "/home/odoo/oca-france/.venv/bin/odoo -c /etc/oca-france/odoo.conf"
    )
    assert service["Restart"] == "on-failure"
    # Before a start: only the guard (never a module update).
    assert service["ExecStartPre"] == "/opt/oca-france/bin/deploy --guard"
    assert "postgresql.service" in unit["Unit"]["After"]
    # Exponential back-off where systemd has it (>= 254), a fixed one elsewhere.
    if host_data.systemd_version >= 254:
        assert (service["RestartSteps"], service["RestartMaxDelaySec"]) == ("5", "300s")
    else:
        assert "RestartSteps" not in service and "RestartMaxDelaySec" not in service
    assert service["RestartSec"] == "10s"


def test_odoorc_addons_path_only_where_configured(host_data):
    def options(data):
        config = configparser.ConfigParser(interpolation=None)
        config.read_string(render(data, "odoorc.j2"))
        return config["options"]

    assert "addons_path" not in options(host_data)  # the app's addons are in the venv
    extra = With(host_data, odoo_addons_subdirs=["vendor/addons", "local"])
    assert options(extra)["addons_path"] == (
        "/home/odoo/oca-france/vendor/addons,/home/odoo/oca-france/local"
    )
    for outside in ("../elsewhere", "/srv/addons", ""):
        with pytest.raises(DeployError, match="must be a path inside the checkout"):
            render(With(host_data, odoo_addons_subdirs=[outside]), "odoorc.j2")


def test_time_limits_are_whole_seconds_above_0(host_data):
    for key in ("git_fetch_timeout_sec", "venv_sync_timeout_sec"):
        for bad in (0, -5, "abc", 1.5, True):
            with pytest.raises(DeployError, match=f"{key} must be a whole number of seconds"):
                render(With(host_data, **{key: bad}), "host.json.j2")


def test_the_off_site_retention_keeps_at_least_7_daily_4_weekly_3_monthly(inventory):
    data = release_data(inventory, "oca-france-backup", "debian-13")
    config = json.loads(render(data, "host.json.j2"))
    assert [config[key] for key in RETENTION_MINIMUMS] == [14, 8, 12]  # group_data's defaults
    for key, least in RETENTION_MINIMUMS.items():
        render(With(data, **{key: least}), "host.json.j2")
        for bad in (least - 1, 0, "7", None, True):
            with pytest.raises(DeployError, match=f"{key} must be a whole number of at least"):
                render(With(data, **{key: bad}), "host.json.j2")


def test_the_off_site_repository_path_is_plain(inventory):
    """It goes into prod's key's forced command: inside authorized_keys' quotes, read by sh."""
    data = release_data(inventory, "oca-france-backup", "debian-13")
    for bad in ('/srv/borg/a"b', "/srv/borg/a b", "srv/borg", "/srv/borg/../etc", "/srv/$(id)"):
        with pytest.raises(DeployError, match="offsite_repository must be an absolute path"):
            render(With(data, offsite_repository=bad), "host.json.j2")


def test_an_apply_for_a_recovery_only_where_a_backup_host_holds_the_data(inventory):
    """RECOVERING=1 (make apply-prod) holds the service for make recover-prod: prod only."""
    prod = release_data(inventory, "oca-france-prod", "debian-12")
    assert checked_recovering(prod) is False  # group_data's default
    assert checked_recovering(With(prod, recovering=True)) is True
    for name, release in (("oca-france-recette", "debian-12"), ("oca-france-backup", "debian-13")):
        with pytest.raises(DeployError, match="only on a host that pushes to one"):
            checked_recovering(With(release_data(inventory, name, release), recovering=True))
    with pytest.raises(DeployError, match="recovering must be true or false"):
        checked_recovering(With(prod, recovering="yes"))


def test_the_front_door_holds_the_public_port_and_odoo_stays_on_loopback(inventory):
    prod = release_data(inventory, "oca-france-prod", "debian-12")
    config = render(prod, "haproxy.cfg.j2")
    assert "    bind 0.0.0.0:8069\n" in config
    assert "server odoo 127.0.0.1:18069\n" in config  # no health check: held, not failed
    assert "server odoo_gevent 127.0.0.1:8072\n" in config
    assert "    retries 30\n    retry-on conn-failure\n" in config  # front_hold_sec
    assert "hdr Retry-After 30" in config and "/etc/haproxy/errors/oca-france-maintenance" in config
    assert "set-var(txn.edge) bool(1) if { src 10.0.3.1 }" in config  # the test data's proxy
    odoorc = render(prod, "odoorc.j2")
    assert "http_interface = 127.0.0.1\nhttp_port = 18069\ngevent_port = 8072\n" in odoorc
    trusted = render(With(prod, front_trusted_proxies=["10.0.3.1", "fd42::/64"]), "haproxy.cfg.j2")
    assert "set-var(txn.edge) bool(1) if { src 10.0.3.1 fd42::/64 }" in trusted
    page = render(prod, "oca-france-maintenance.html.j2")
    assert "maintenance en cours" in page and "oca-france-production" in page


def test_the_front_door_refuses_what_would_open_a_way_around_it(inventory):
    prod = release_data(inventory, "oca-france-prod", "debian-12")
    for bad, message in (
        ({"odoo_http_interface": "0.0.0.0"}, "odoo_http_interface must be loopback"),
        ({"odoo_http_port": 8069}, "must differ"),
        ({"odoo_gevent_port": 70000}, "odoo_gevent_port must be a TCP port"),
        ({"front_trusted_proxies": ["10.0.3.1 || always_true"]}, "is no IP address or network"),
        ({"front_trusted_proxies": "10.0.3.1"}, "must be a list"),
        ({"front_trusted_proxies": []}, "front_trusted_proxies must name the provider's"),
        ({"front_public_proto": "ftp"}, "front_public_proto must be http or https"),
        ({"front_interface": "eth0"}, "front_interface must be an IPv4 address"),
        ({"front_hold_sec": 0}, "front_hold_sec must be a whole number of seconds"),
        ({"front_max_body_mib": "128"}, "front_max_body_mib must be a whole number above 0"),
    ):
        with pytest.raises(DeployError, match=message):
            render(With(prod, **bad), "haproxy.cfg.j2")


def test_the_time_zone_is_one_the_tz_database_knows(host_data):
    assert checked_timezone(host_data) == "Europe/Paris"
    for bad in ("Europe/Pariss", "Paris", "../../etc/passwd", "Europe/Paris; reboot", "", None):
        with pytest.raises(DeployError, match="timezone must be a zone of the tz database"):
            checked_timezone(With(host_data, timezone=bad))


def test_no_daily_timer_falls_in_an_hour_a_change_of_time_skips_or_repeats(host_data):
    checked_calendar_times(host_data)  # the defaults: 01:15 plus up to 30 min, Monday 04:00
    for calendar in ("*-*-* 02:30:00", "*-*-* 01:45:00"):  # 02:00-03:00, once a year
        with pytest.raises(DeployError, match="Europe/Paris skips or repeats"):
            checked_calendar_times(With(host_data, backup_calendar=calendar))
    with pytest.raises(DeployError, match="weekly_deploy_calendar"):
        checked_calendar_times(With(host_data, weekly_deploy_calendar="Sun *-*-* 02:10"))
    checked_calendar_times(With(host_data, weekly_deploy_calendar="Mon *-*-* 02:10"))  # Sundays
    checked_calendar_times(With(host_data, timezone="UTC", backup_calendar="*-*-* 02:30:00"))


@pytest.mark.parametrize(
    ("release", "expected"),
    [
        ("debian-12", {"package": "wkhtmltopdf"}),
        ("ubuntu-24.04", {"package": "wkhtmltopdf"}),
        ("debian-13", None),  # no package: an error until a patched .deb is configured
    ],
)
def test_wkhtmltopdf_comes_from_what_the_release_has(inventory, release, expected):
    data = release_data(inventory, "oca-france-prod", release)
    if expected is None:
        with pytest.raises(DeployError, match=r"debian-13 has no wkhtmltopdf package.*wkhtml"):
            wkhtmltopdf_source(data)
    else:
        assert wkhtmltopdf_source(data) == expected
    deb = {"url": "https://example.invalid/wkhtmltox.deb", "sha256": "ab" * 32}
    configured = With(data, wkhtmltopdf_debs={release: deb})
    assert wkhtmltopdf_source(ReleaseData(configured, release)) == {
        "deb": deb["url"],
        "sha256": deb["sha256"],
    }
    without_sha = With(data, wkhtmltopdf_debs={release: {"url": deb["url"]}})
    with pytest.raises(DeployError, match="needs both url and sha256"):
        wkhtmltopdf_source(ReleaseData(without_sha, release))


def test_ubuntu_2404_choices(inventory):
    """Ubuntu 24.04 cannot boot here: its differences are data, rendered and checked."""
    data = release_data(inventory, "oca-france-prod", "ubuntu-24.04")
    assert (data.python, data.postgresql, data.systemd_version) == ("3.12", 16, 255)
    assert wkhtmltopdf_source(data) == {"package": "wkhtmltopdf"}
    unit = render(data, "odoo-oca-france.service.j2")
    assert "RestartSteps=5\n" in unit and "RestartMaxDelaySec=300s\n" in unit
    packages = data.base_packages + data.postgresql_packages + data.odoo_system_packages
    # Names that are only virtual or transitional there: apt would "install" them every run.
    assert not {"postgresql-contrib", "libldap2-dev"} & set(packages)
    assert data.postgresql_packages == ["postgresql"]  # the release's major, whatever it is
    # The app, not the host, picks Python: nothing in the data names an interpreter.
    assert "python" not in data.odoo_sync_command


def test_every_release_renders(inventory):
    for release in RELEASES:
        for host in ("oca-france-recette", "oca-france-prod"):
            data = release_data(inventory, host, release)
            for name in rendered_files(data):
                assert render(data, name)


def test_an_unknown_release_is_refused(inventory):
    with pytest.raises(DeployError, match="debian-11 is not a supported release.*debian-12"):
        release_data(inventory, "oca-france-prod", "debian-11")


def test_no_postgresql_major_is_hard_coded():
    """PostgreSQL is the release's (15, 16, 17): no task, template or data names a major."""
    import re

    pattern = re.compile(r"postgresql[-/ ]?1\d|/1\d/main|pg_ctlcluster 1\d|postgresql@1\d")
    sources = [*PROJECT_DIR.glob("tasks/*.py"), *PROJECT_DIR.glob("templates/*.j2")]
    sources += [*PROJECT_DIR.glob("group_data/*.py")]
    found = [
        f"{path.name}: {line.strip()}"
        for path in sources
        for line in path.read_text().splitlines()
        if pattern.search(line.lower()) and not line.lstrip().startswith(("#", ";"))
    ]
    assert not found


def test_only_recette_gets_the_deploy_timers(inventory):
    recette = rendered_files(release_data(inventory, "oca-france-recette", "debian-12"))
    prod = rendered_files(release_data(inventory, "oca-france-prod", "debian-12"))
    timers = {"odoo-auto-deploy.timer.j2", "odoo-weekly-deploy.timer.j2"}
    assert timers <= set(recette)
    assert not timers & set(prod)
    weekly = get_template(template_path("odoo-weekly-deploy.timer.j2")).render(
        **recette["odoo-weekly-deploy.timer.j2"][1]
    )
    assert "OnCalendar=Mon *-*-* 04:00:00" in weekly


def test_scripts_bash_syntax():
    assert len(bash_scripts()) >= 3
    for path in bash_scripts():
        result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, f"{path.name}: {result.stderr}"


def test_scripts_shellcheck():
    assert shutil.which("shellcheck"), "shellcheck is not installed (.ci/run installs it)"
    paths = [str(path) for path in bash_scripts()]
    result = subprocess.run(
        ["shellcheck", "-x", "-s", "bash", *paths], capture_output=True, text=True, cwd=HOST_DIR
    )
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
    rule.write_text(
        render(release_data(inventory, "oca-france-prod", "debian-12"), "polkit-odoo.rules.j2")
    )
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


@pytest.mark.parametrize("deploy_file", ["deploy.py", "tasks/oca_france.py"])
def test_missing_secret_stops_before_connecting(tmp_path, deploy_file):
    result = pyinfra_in_copy(tmp_path, {}, "-y", "inventory.py", deploy_file, "--limit", "recette")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "ODOO_OCA_FRANCE_ADMIN_PASSWORD_RECETTE" in output
    assert ".env.template" in output
    assert "Connecting" not in output


def test_a_run_that_applies_nothing_needs_no_secret(tmp_path):
    """make status reads the hosts: it runs with an empty .env."""
    result = pyinfra_in_copy(tmp_path, {}, "inventory.py", "debug-inventory")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Missing" not in output and '"odoo_db_name": "oca-france-production"' in output


def test_recette_needs_only_recette_secrets(tmp_path):
    recette_only = {
        "ODOO_OCA_FRANCE_ADMIN_PASSWORD_RECETTE": TEST_SECRETS[
            "ODOO_OCA_FRANCE_ADMIN_PASSWORD_RECETTE"
        ],
        # recette reads only the public half (the .pub beside the private key).
        "OCA_FRANCE_BACKUP_TRANSFER_KEY_FILE": TEST_SECRETS["OCA_FRANCE_BACKUP_TRANSFER_KEY_FILE"],
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
    assert "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAtest transfer" in output
    assert "test-private-key" not in output


@pytest.mark.parametrize("limit", ["recette", "prod"])
def test_missing_transfer_key_stops_before_connecting(tmp_path, limit):
    secrets = {k: v for k, v in TEST_SECRETS.items() if k.startswith("ODOO_OCA_FRANCE_")}
    result = pyinfra_in_copy(tmp_path, secrets, "-y", "inventory.py", "deploy.py", "--limit", limit)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"Missing the oca-france-backup-transfer key (needed for {limit})" in output
    assert "OCA_FRANCE_BACKUP_TRANSFER_KEY_FILE is not set" in output
    assert "ssh-keygen -t ed25519" in output
    assert "Connecting" not in output


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
    key_file = TEST_SECRETS["OCA_FRANCE_BACKUP_TRANSFER_KEY_FILE"]
    dotenv.write_text(
        f"ODOO_OCA_FRANCE_ADMIN_PASSWORD_RECETTE={secret}\n"
        f"OCA_FRANCE_BACKUP_TRANSFER_KEY_FILE={key_file}\n"
    )
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


SANDBOX_SCRIPT = PROJECT_DIR / "tests" / "sandbox" / "sandbox.sh"
DEPS_SCRIPT = PROJECT_DIR / "tests" / "system-deps.sh"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own a directory as root")
def test_sandbox_refuses_a_rootfs_whose_root_is_not_0755_root(tmp_path):
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    rootfs.chmod(0o700)  # what mktemp -d gives: every user but root locked out
    check = ["bash", str(SANDBOX_SCRIPT), "check-rootfs", str(rootfs)]
    refused = subprocess.run(check, capture_output=True, text=True)
    assert refused.returncode == 1
    assert "its / is 700 root:root, must be 755 root:root" in refused.stderr
    rootfs.chmod(0o755)
    assert subprocess.run(check, capture_output=True, text=True).returncode == 0
    os.chown(rootfs, 65534, 65534)
    assert subprocess.run(check, capture_output=True, text=True).returncode == 1


def test_each_make_target_names_the_system_packages_it_needs():
    def listed(target: str) -> set[str]:
        result = subprocess.run(
            ["bash", str(DEPS_SCRIPT), "--list", target], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        return set(result.stdout.split())

    assert {"shellcheck", "nodejs", "python3-venv"} <= listed("lint")
    assert {"debootstrap", "systemd-container", "nftables", "openssh-client"} <= listed("sandbox")
    assert (
        listed("lint") | listed("sandbox") | {"python3-aiosmtpd"}
        == listed("test")
        == listed("bench")
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the script as another user")
def test_a_missing_tool_stops_a_non_root_user_with_the_command_to_run():
    # A PATH with what the script itself uses, but no shellcheck, node nor rsync; readable by
    # nobody (pytest's tmp_path is not), with the system's tools (root's pyenv is not). The
    # script is copied there too: the checkout may sit where nobody cannot enter (/root).
    with tempfile.TemporaryDirectory() as tmp:
        bin_dir = Path(tmp)
        bin_dir.chmod(0o755)
        for tool in ("bash", "date", "sed", "cut", "make", "git", "python3"):
            (bin_dir / tool).symlink_to(shutil.which(tool, path="/usr/bin:/bin"))
        script = bin_dir / DEPS_SCRIPT.name
        shutil.copy(DEPS_SCRIPT, script)
        script.chmod(0o644)
        result = nobody_runs(bin_dir, str(script), "lint")
    assert result.returncode == 1, result.stderr
    assert "make lint needs: shellcheck nodejs rsync" in result.stderr
    assert "Run: sudo apt-get install -y shellcheck nodejs rsync" in result.stderr


def nobody_runs(bin_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            shutil.which("setpriv"),
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            str(bin_dir / "bash"),
            *args,
        ],
        capture_output=True,
        text=True,
        env={"PATH": str(bin_dir)},
    )


UPLOADS = "/var/lib/oca-france-apply"  # group_data's apply_upload_dir


@pytest.fixture
def logged_in():
    """A fresh inventory's prod host, in a pyinfra state, logged in as the given user (the
    facts pyinfra would read from it faked: the login user, no file there yet)."""
    from pyinfra.api import Config, State
    from pyinfra.context import ctx_host, ctx_state

    def log_in(user: str):
        inventory = load_inventory(TEST_SECRETS, TEST_TRANSFER_DATA)
        state = State(inventory=inventory, config=Config())
        host = inventory.get_host("oca-france-prod")
        host.get_fact = lambda fact, *args, **kwargs: user if fact is Command else None
        stack.enter_context(ctx_state.use(state))
        stack.enter_context(ctx_host.use(host))
        sudo_unless_root()
        return state, host

    from pyinfra.facts.server import Command

    with contextlib.ExitStack() as stack:
        yield log_in


def commands_without_sudo(commands) -> list[str]:
    return [
        str(command.get_raw_value()) if hasattr(command, "get_raw_value") else repr(command)
        for command in commands
        if command.connector_arguments.get("_sudo") is False
    ]


@pytest.mark.parametrize("user, sudo", [("ops", True), ("root", False)])
def test_no_operation_needs_a_root_login(logged_in, user, sudo):
    """Logged in as another user, every operation and fact runs through sudo by default
    (pyinfra's own resolution of its arguments); logged in as root, none asks for it. Either
    way uploads wait in the login's own directory, and the only commands run without sudo are
    the login's own on its own temporary files there."""
    from pyinfra.api import FileUploadCommand
    from pyinfra.api.arguments import pop_global_arguments

    state, host = logged_in(user)
    arguments, _ = pop_global_arguments(state, host, {})
    assert arguments["_sudo"] is sudo
    assert arguments["_temp_dir"] == UPLOADS

    upload = FileUploadCommand(io.StringIO("x"), "/etc/oca-france/host.json", "/tmp/pyinfra-x")
    commands = list(renamed_into_place([upload]))
    secret = list(
        secret_template._inner(
            src=template_path("odoorc.j2"),
            dest="/etc/oca-france/odoo.conf",
            user="root",
            group="odoo",
            mode="640",
            **rendered_files(ReleaseData(host.data, "debian-12"))["odoorc.j2"][1],
        )
    )
    for written in (commands, secret):
        uploads = [c for c in written if isinstance(c, FileUploadCommand)]
        assert len(uploads) == 1
        assert uploads[0].remote_temp_filename.startswith(UPLOADS + "/pyinfra-")
        own = commands_without_sudo(written)
        assert own and all(f" {uploads[0].remote_temp_filename}" in command for command in own), own
        assert [c.split()[0] for c in own] == ["install", "rm"]


def test_every_command_run_without_sudo_is_one_of_the_uploads_own():
    """Only util.py runs anything without sudo (as the login user): asking who it is, and
    its own temporary upload files."""
    without_sudo = []
    for path in sorted((PROJECT_DIR / "tasks").glob("*.py")) + [PROJECT_DIR / "deploy.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and any(
                k.arg == "_sudo" and isinstance(k.value, ast.Constant) and k.value.value is False
                for k in node.keywords
            ):
                without_sudo.append((path.name, ast.unparse(node)))
    assert without_sudo and all(name == "util.py" for name, _ in without_sudo), without_sudo
    own = [call for _, call in without_sudo if "temp" not in call]
    assert own == ["host.get_fact(Command, 'id -un', _sudo=False)"], without_sudo


def test_every_unit_alerts_when_it_fails_and_the_notifier_never_about_itself(alerting):
    recette = release_data(alerting, "oca-france-recette", "debian-13")
    prod = release_data(alerting, "oca-france-prod", "debian-12")
    for data in (recette, prod):
        for name in rendered_files(data):
            if name.startswith("odoo-") and name.endswith(".service.j2"):
                text = render(data, name)
                if name == "odoo-oca-france.service.j2":  # it restarts itself: once per window
                    assert "\nExecStopPost=+/opt/oca-france/bin/odoo-notify --exited %n\n" in text
                else:
                    assert "\nOnFailure=oca-france-notify@%n.service\n" in text, name
    assert "\nOnFailure=" not in render(prod, "oca-france-notify@.service.j2")
    assert "OnFailure=oca-france-notify@%n.service" in render(prod, "postgresql-alerts.conf.j2")
    backup = render(prod, "odoo-backup.service.j2")
    assert "ExecStartPre=-/opt/oca-france/bin/odoo-notify --ping backup start" in backup
    assert "ExecStartPost=-/opt/oca-france/bin/odoo-notify --ping backup success" in backup


def test_the_alerts_secrets_go_to_root_only_files_and_nowhere_else(alerting):
    prod = release_data(alerting, "oca-france-prod", "debian-12")
    files = rendered_files(prod)
    msmtprc = render(prod, "alerts-msmtprc.j2")
    # Quoted as msmtp reads it: a backslash and a double quote escaped.
    assert 'password "test-smtp-\\"pass\\\\word-91d3"' in msmtprc
    assert "\ntls on\n" in msmtprc and "\ntls_starttls on\n" in msmtprc
    assert "\nhost relay.test\n" in msmtprc and '\nuser "alerts@test"\n' in msmtprc
    assert "\nauth on\n" in msmtprc  # TLS: the relay's best method
    assert render(prod, "alerts-webhook.j2") == "https://hooks.test/token-5e8b\n"
    config = files["host.json.j2"][1]["config"]
    assert config["alert_msmtp_config"] == "/etc/oca-france/alerts-msmtprc"
    assert config["alert_email_to"] == ["ops@test", "cto@test"]
    assert config["ping_urls"] == {"backup": "https://hc.test/ping/b"}
    for name, (_, variables) in files.items():
        if name in ("alerts-msmtprc.j2", "alerts-webhook.j2"):
            continue
        text = render(prod, name) + repr(variables)
        for secret in TEST_ALERT_SECRETS.values():
            assert secret not in text, name


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"alert_email_to": ["ops@test"]}, "alert_email_to needs alert_smtp_host"),
        (
            {"alert_email_to": ["ops@test"], "alert_smtp_host": "r", "alert_smtp_user": "u"},
            "ODOO_OCA_FRANCE_ALERT_SMTP_PASSWORD",
        ),
        ({"alert_webhook": True}, "ODOO_OCA_FRANCE_ALERT_WEBHOOK_URL"),
        ({"alert_smtp_tls": "maybe"}, "alert_smtp_tls must be one of"),
        ({"ping_urls": {"backups": "https://x"}}, "unknown job(s) backups"),
    ],
)
def test_an_alert_channel_set_half_way_is_refused_before_any_change(data, message):
    inventory = load_inventory(TEST_SECRETS, {**TEST_TRANSFER_DATA, **data})
    with pytest.raises(DeployError, match=re.escape(message)):
        rendered_files(release_data(inventory, "oca-france-prod", "debian-12"))


def test_no_templates_variable_shadows_the_install_operations_own_arguments(alerting):
    """install_template passes a template's variables beside its own keywords (and pyinfra's
    `host`): a variable of the same name would break the apply."""
    own = {"host", "name", "src", "dest", "user", "group", "mode", "template", "holds_secrets"}
    for name, data in (
        ("oca-france-recette", release_data(alerting, "oca-france-recette", "debian-13")),
        ("oca-france-prod", release_data(alerting, "oca-france-prod", "debian-12")),
    ):
        for template, (_, variables) in rendered_files(data).items():
            assert not own & set(variables), (name, template, own & set(variables))


def test_the_benchmarks_import():
    """make bench is not part of the suite: at least its modules load (names they import)."""
    for name in ("benchmark", "benchmark_backups", "benchmark_deploys"):
        imported = [sys.executable, "-c", f"import {name}"]
        subprocess.run(imported, cwd=PROJECT_DIR / "tests", check=True)


def test_the_catch_up_check_tells_a_process_older_than_its_files(tmp_path):
    """tasks/util.py's STARTED_BEFORE on real processes: a process started before a file was
    last written runs an older one (exit 2); with "child", its youngest child is the one
    (HAProxy's worker, which a reload replaces while the master stays)."""
    config = tmp_path / "config"
    config.write_text("old")
    os.utime(config, (time.time() - 60, time.time() - 60))
    # sh, its child `sleep 3`, then a new child `sleep 30` (as a reload starts a new worker)
    parent = subprocess.Popen(["sh", "-c", "sleep 3; sleep 30; true"], start_new_session=True)
    began = time.monotonic()

    def older(which: str) -> bool:
        check = ["python3", "-I", "-c", STARTED_BEFORE, str(parent.pid), which, str(config)]
        return {0: False, 2: True}[subprocess.run(check).returncode]

    try:
        time.sleep(0.3)
        assert not older("main") and not older("child")
        time.sleep(max(0, 1.5 - (time.monotonic() - began)))  # past the second of tolerance
        config.write_text("new")  # what an apply killed before its restart leaves
        assert older("main") and older("child")
        time.sleep(max(0, 3.5 - (time.monotonic() - began)))  # the child started after it
        assert older("main") and not older("child")
        # Dated in the future (a clock stepped back): not older, or every apply would restart.
        os.utime(config, (time.time() + 3600, time.time() + 3600))
        assert not older("main")
    finally:
        os.killpg(parent.pid, signal.SIGKILL)  # sh and its sleep
        parent.wait()


def tree_fact(path: Path) -> str | None:
    """TreeManifest as pyinfra gets it for the host programs, its command run by sh here."""
    fact = TreeManifest()
    command = fact.command(str(path), ["*.pyc"], ["__pycache__"])
    run = subprocess.run(["sh", "-c", command], capture_output=True)
    return fact.process(run.stdout.decode().splitlines())


def test_the_host_programs_tree_fact_matches_only_a_tree_installed_as_wanted(tmp_path):
    """atomic_sync skips files.sync's per-file facts when TreeManifest (run on a real tree)
    matches local_manifest: for host/ installed as the sync installs it (a directory left
    behind included), and not once a byte, a mode or a file differs."""
    owner = f"{pwd.getpwuid(os.getuid()).pw_name}:{grp.getgrgid(os.getgid()).gr_name}"
    assert name_patterns("*.pyc") == ["*.pyc"]  # files.sync takes a string too
    exclude, exclude_dir = name_patterns(["*.pyc"]), name_patterns(["__pycache__", "*/__pycache__"])
    assert exclude_dir == ["__pycache__"]
    for part, mode in (("bin", "755"), ("lib", "644")):
        source, dest = PROJECT_DIR / "host" / part, tmp_path / part
        shutil.copytree(source, dest, ignore=shutil.ignore_patterns("*.pyc", "__pycache__"))
        (dest / "__pycache__").mkdir()  # what Python leaves there: not the sync's business
        (dest / "__pycache__" / "x.cpython-313.pyc").write_text("")
        (dest / "gone").mkdir()  # a directory host/ no longer has: files.sync leaves it
        for path in [dest, *dest.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else int(mode, 8))
        wanted = local_manifest(str(source), exclude, exclude_dir, mode, "755", owner)
        assert tree_as_wanted(tree_fact(dest), wanted), part
        a_file = next(p for p in sorted(dest.rglob("*")) if p.is_file() and p.suffix != ".pyc")
        a_file.chmod(0o700)
        assert not tree_as_wanted(tree_fact(dest), wanted)
        a_file.chmod(int(mode, 8))
        with a_file.open("a") as changed:
            changed.write("#")
        assert not tree_as_wanted(tree_fact(dest), wanted)
        a_file.unlink()
        assert not tree_as_wanted(tree_fact(dest), wanted)
    assert tree_fact(tmp_path / "none") is None
    assert not tree_as_wanted(None, wanted)
