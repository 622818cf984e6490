"""The state deploy.py leaves after one apply from bare containers: recette on Debian 13,
prod on Debian 12."""

from __future__ import annotations

import re
import shlex

import pytest
from conftest import TEST_SECRETS, load_inventory, release_data

from .conftest import (
    CHECKOUT,
    DB,
    ODOO_CONF,
    RECETTE,
    RELEASE,
    admin_password_accepted,
    changed_operations,
    login_page_ok,
    main_pid,
    psql,
    what_changed,
)


@pytest.fixture(scope="module")
def data_of():
    """Each host's data as the tasks read it on its release."""
    inventory = load_inventory(TEST_SECRETS)
    return {name: release_data(inventory, name, release) for name, release in RELEASE.items()}


def test_second_apply_right_after_the_first_changes_nothing(sandbox):
    """From the second apply on, nothing changes: the venv of a fresh clone included."""
    result = sandbox.apply()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert changed_operations(output) == 0, what_changed(output)


def test_root_of_each_container_is_0755_root(any_host):
    _, host = any_host
    root = host.file("/")
    assert (root.mode, root.user, root.group) == (0o755, "root", "root")


def test_release_facts_match_the_data(any_host, data_of):
    """group_data's distributions table says what each release has: checked on the real ones."""
    name, host = any_host
    data = data_of[name]
    os_release = host.check_output(". /etc/os-release && echo $ID-$VERSION_ID")
    assert os_release == RELEASE[name] == data.release
    assert host.check_output("python3 --version").split()[1].startswith(data.python + ".")
    server = host.check_output("ls /usr/lib/postgresql").split()
    assert server == [str(data.postgresql)]
    systemd = host.check_output("systemctl --version").split()[1]
    assert int(systemd) == data.systemd_version


def test_every_listed_package_is_a_real_installed_package(any_host, data_of):
    """A virtual package is never "installed": listing one would make every apply change."""
    name, host = any_host
    data = data_of[name]
    packages = [
        *data.base_packages,
        *data.postgresql_packages,
        *data.polkit_packages,
        *data.odoo_system_packages,
        "fail2ban",
    ]
    for package in packages:
        status = host.run(f"dpkg-query -W -f='${{Status}}' {package}")
        assert status.stdout == "install ok installed", (package, status.stdout, status.stderr)


def test_wkhtmltopdf_from_the_source_each_release_has(recette, prod):
    # Debian 12: its package. Debian 13 has none: the .deb configured for it (in the sandbox,
    # a test package standing in for the patched build, downloaded and sha256-checked).
    assert prod.package("wkhtmltopdf").is_installed
    assert recette.package("wkhtmltox").is_installed
    assert not recette.package("wkhtmltopdf").is_installed
    assert "sandbox test package" in recette.check_output("wkhtmltopdf --version")
    assert prod.check_output("wkhtmltopdf --version").startswith("wkhtmltopdf 0.12")


def test_restart_back_off_where_systemd_has_it(recette, prod):
    unit = "/etc/systemd/system/odoo-oca-france.service"
    assert "RestartSteps=5\n" in recette.file(unit).content_string  # systemd 257
    assert recette.check_output(
        "systemctl show -p RestartSteps -p RestartMaxDelayUSec odoo-oca-france.service"
    ).split() == ["RestartSteps=5", "RestartMaxDelayUSec=5min"]
    assert "RestartSteps" not in prod.file(unit).content_string  # systemd 252


def test_app_addons_come_from_the_venv_not_an_addons_dir(any_host):
    _, host = any_host
    assert not host.file(f"{CHECKOUT}/addons").exists
    assert "addons_path" not in host.file(ODOO_CONF).content_string
    imported = host.run(
        f"sudo -u odoo {CHECKOUT}/.venv/bin/python -c"
        " 'import odoo.addons.oca_france_all as m; print(m.__file__)'"
    )
    assert imported.rc == 0, imported.stderr
    journal = host.check_output("journalctl -u odoo-oca-france.service --no-pager -o cat")
    # The journal holds the server's log: real Odoo 18, prefork workers and its gevent port.
    assert "odoo: Odoo version 18.0-" in journal
    # On loopback only: the front door (HAProxy) holds the port the provider's proxy reaches.
    assert "HTTP service (werkzeug) running on 127.0.0.1:18069" in journal
    assert "Evented Service (longpolling) running on 127.0.0.1:8072" in journal
    assert "addons path does not exist" not in journal
    assert "Failed to load server-wide module" not in journal


def test_venv_uses_the_system_python_the_app_accepts(any_host, data_of):
    name, host = any_host
    python = host.check_output(f"readlink -f {CHECKOUT}/.venv/bin/python")
    assert python == f"/usr/bin/python{data_of[name].python}"


def test_initdb_leaves_no_cache_database(any_host):
    _, host = any_host
    cached = host.check_output(
        'sudo -u postgres psql -XAtq -c "SELECT datname FROM pg_database'
        " WHERE datname LIKE 'cache-%'\""
    )
    assert cached == ""


@pytest.mark.parametrize("package", ["acl", "locales", "postgresql", "polkitd", "git", "fail2ban"])
def test_packages(any_host, package):
    _, host = any_host
    assert host.package(package).is_installed


def test_uv_is_the_pinned_version(any_host, sandbox):
    _, host = any_host
    assert host.check_output("uv --version").split()[1] == "0.13.9"


def test_french_locale_is_generated(any_host):
    _, host = any_host
    assert "fr_FR.utf8" in host.check_output("locale -a").split()


def test_template1_is_utf8_with_french_collation(any_host):
    _, host = any_host
    row = host.check_output(
        'sudo -u postgres psql -XAtq -c "SELECT pg_encoding_to_char(encoding), datcollate,'
        " datctype FROM pg_database WHERE datname = 'template1'\""
    )
    assert row == "UTF8|fr_FR.UTF-8|fr_FR.UTF-8"


def test_odoo_user_and_postgresql_role(any_host):
    _, host = any_host
    user = host.user("odoo")
    assert user.exists and user.home == "/home/odoo"
    role = host.check_output(
        'sudo -u postgres psql -XAtq -c "SELECT rolsuper, rolcreatedb, rolcanlogin'
        " FROM pg_roles WHERE rolname = 'odoo'\""
    )
    assert role == "f|t|t"


def test_polkit_lets_odoo_restart_its_service_and_nothing_else(any_host, sandbox):
    name, host = any_host
    before = main_pid(host)
    restart = host.run("sudo -u odoo systemctl restart odoo-oca-france.service")
    assert restart.rc == 0, restart.stderr
    assert main_pid(host) not in ("0", before)
    sandbox.wait_healthy(name)

    for unit in ("ssh.service", "postgresql.service"):
        refused = host.run(f"sudo -u odoo systemctl restart {unit}")
        assert refused.rc != 0
        assert "authentication required" in refused.stderr.lower(), refused.stderr
    assert host.service("postgresql").is_running


def test_odoorc_is_private_and_complete(any_host, sandbox):
    name, host = any_host
    odoorc = host.file(ODOO_CONF)
    assert (odoorc.user, odoorc.group, odoorc.mode) == ("root", "odoo", 0o640)
    content = odoorc.content_string
    env = "RECETTE" if name == RECETTE else "PROD"
    password = sandbox.env[f"ODOO_OCA_FRANCE_ADMIN_PASSWORD_{env}"]
    assert password not in content  # whoever reads the config does not learn it
    assert "admin_passwd = $pbkdf2-sha512$600000$" in content
    assert f"db_name = {DB[name]}\n" in content
    assert f"dbfilter = ^{DB[name]}$\n" in content
    assert "list_db = False\n" in content


def test_odoo_accepts_the_master_password_against_its_hash(any_host, sandbox):
    name, _ = any_host
    env = "RECETTE" if name == RECETTE else "PROD"
    password = sandbox.env[f"ODOO_OCA_FRANCE_ADMIN_PASSWORD_{env}"]
    assert admin_password_accepted(sandbox, name, password)
    assert not admin_password_accepted(sandbox, name, password + "x")


def test_each_host_keeps_the_configured_time_zone_and_odoo_utc(any_host, data_of):
    name, host = any_host
    zone = data_of[name].timezone
    assert zone == "Europe/Paris"
    assert host.check_output("timedatectl show -p Timezone --value") == zone
    if host.file("/etc/timezone").exists:  # Debian 12 still has it: the same name
        assert host.file("/etc/timezone").content_string == f"{zone}\n"
    # Odoo's sessions in UTC, what Odoo stores, whatever the cluster's default became.
    assert psql(host, DB[name], "SHOW timezone") == "UTC"


def test_the_weekly_refresh_runs_monday_at_four_in_the_zone(recette):
    # systemctl prints the next elapse in the host's zone: 04:00 there, CET or CEST.
    elapse = recette.check_output(
        "systemctl show -p NextElapseUSecRealtime --value odoo-weekly-deploy.timer"
    )
    assert re.fullmatch(r"Mon \d{4}-\d\d-\d\d 04:00:00 CES?T", elapse), elapse
    utc = recette.check_output(
        f"TZ=UTC date -d {shlex.quote(elapse.replace('CEST', '+0200').replace('CET', '+0100'))}"
        " +%H:%M"
    )
    assert utc in ("02:00", "03:00")


def test_database_exists_with_unaccent(any_host):
    name, host = any_host
    assert psql(host, DB[name], "SELECT extname FROM pg_extension WHERE extname = 'unaccent'")
    modules = psql(host, DB[name], "SELECT name FROM ir_module_module WHERE state = 'installed'")
    assert "oca_france_all" in modules.split()


def test_service_enabled_running_and_healthy_from_the_host(any_host, sandbox):
    name, host = any_host
    service = host.service("odoo-oca-france.service")
    assert service.is_enabled and service.is_running
    assert sandbox.health(name) == {
        "http_status": 200,
        "status": "pass",
        "db_server_status": True,
    }
    assert login_page_ok(sandbox, name)


def test_units_pass_systemd_analyze_verify(any_host):
    _, host = any_host
    result = host.run(  # --man=no: Debian's haproxy.service names a man page, not installed
        "systemd-analyze verify --man=no /etc/systemd/system/odoo-*.service"
        " $(ls /etc/systemd/system/odoo-*.timer /etc/systemd/system/odoo-*.path 2>/dev/null)"
        " haproxy.service"  # with the alerts' drop-in
    )
    assert result.rc == 0 and result.stderr.strip() == "", result.stderr


def test_recette_has_the_deploy_timers_and_prod_the_backup_only(recette, prod):
    for timer in ("odoo-auto-deploy.timer", "odoo-weekly-deploy.timer"):
        assert recette.service(timer).is_enabled and recette.service(timer).is_running
    weekly = recette.check_output(
        "systemctl show -p TimersCalendar --value odoo-weekly-deploy.timer"
    )
    assert "OnCalendar=Mon *-*-* 04:00:00" in weekly
    prod_units = prod.check_output("ls /etc/systemd/system/").split()
    assert [unit for unit in prod_units if unit.startswith("odoo-")] == [
        "odoo-backup-transfer.service",
        "odoo-backup.service",
        "odoo-backup.timer",
        "odoo-check.service",
        "odoo-check.timer",
        "odoo-deploy-boot-repair.service",
        "odoo-deploy-repair.service",
        "odoo-deploy-repair.timer",
        "odoo-oca-france.service",
        "odoo-offsite-push.service",
    ]


def test_fail2ban_guards_sshd(any_host):
    _, host = any_host
    assert host.service("fail2ban").is_running
    assert "sshd" in host.check_output("fail2ban-client status")


def test_ribbon_comes_from_the_server_environment(recette, prod):
    """Recette's server-environment values, in .odoorc for the real app's server_environment
    (the deploy also writes them into a restored database, see test_6)."""
    section = "[ir.config_parameter]\n"
    recette_rc = recette.file(ODOO_CONF).content_string
    prod_rc = prod.file(ODOO_CONF).content_string
    assert "ribbon.name = RECETTE\n" in recette_rc.split(section)[1]
    assert "web.base.url.freeze = True\n" in recette_rc.split(section)[1]
    assert "ribbon.name = False\n" in prod_rc.split(section)[1]
