"""The state deploy.py leaves on both containers after one apply from bare Debian 12."""

from __future__ import annotations

import pytest

from .conftest import DB, PROD, RECETTE, main_pid, psql


@pytest.mark.parametrize(
    "package", ["acl", "locales", "postgresql", "polkitd", "wkhtmltopdf", "git", "fail2ban"]
)
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
    odoorc = host.file("/home/odoo/.odoorc")
    assert (odoorc.user, odoorc.group, odoorc.mode) == ("odoo", "odoo", 0o640)
    content = odoorc.content_string
    env = "RECETTE" if name == RECETTE else "PROD"
    assert f"admin_passwd = {sandbox.env[f'ODOO_OCA_FRANCE_ADMIN_PASSWORD_{env}']}\n" in content
    assert f"db_name = {DB[name]}\n" in content
    assert f"dbfilter = ^{DB[name]}$\n" in content
    assert "list_db = False\n" in content


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
    status, page = sandbox.get(name, "/web/login")
    assert status == 200 and DB[name] in page


def test_units_pass_systemd_analyze_verify(any_host):
    _, host = any_host
    result = host.run(
        "systemd-analyze verify /etc/systemd/system/odoo-*.service"
        " $(ls /etc/systemd/system/odoo-*.timer 2>/dev/null)"
    )
    assert result.rc == 0 and result.stderr.strip() == "", result.stderr


def test_recette_has_both_timers_and_prod_none(recette, prod):
    for timer in ("odoo-auto-deploy.timer", "odoo-weekly-deploy.timer"):
        assert recette.service(timer).is_enabled and recette.service(timer).is_running
    weekly = recette.check_output(
        "systemctl show -p TimersCalendar --value odoo-weekly-deploy.timer"
    )
    assert "OnCalendar=Mon *-*-* 04:00:00" in weekly
    prod_units = prod.check_output("ls /etc/systemd/system/").split()
    assert [unit for unit in prod_units if unit.startswith("odoo-")] == ["odoo-oca-france.service"]


def test_fail2ban_guards_sshd(any_host):
    _, host = any_host
    assert host.service("fail2ban").is_running
    assert "sshd" in host.check_output("fail2ban-client status")


def test_ribbon_comes_from_the_server_environment(sandbox):
    _, recette_page = sandbox.get(RECETTE, "/web/login")
    _, prod_page = sandbox.get(PROD, "/web/login")
    assert "ribbon.name = RECETTE" in recette_page
    assert "ribbon.name = RECETTE" not in prod_page
