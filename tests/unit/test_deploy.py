"""The deploy (host/bin/deploy): its arguments and exit codes, its refusals before anything
is touched, and the repair table (what a repair does for each step a deploy died at), run
with a real git checkout and fake systemctl, psql, curl and uv."""

from __future__ import annotations

import fcntl
import threading
import time

import pytest

from .conftest import (
    DUMP,
    PROD_DB,
    died_at,
    dump_header,
    fake_pg_restore,
    fake_services,
    git,
    history,
    write_backup,
)

USAGE = [
    ((), "missing <git-ref>"),
    (("--bogus", "origin/18.0"), "unknown option"),
    (("origin/18.0", "extra"), "only one git ref"),
    (("--status", "--dry-run", "origin/18.0"), "do not go together"),
    (("--status", "origin/18.0"), "--status takes no ref"),
    (("--repair", "-R"), "--repair takes no ref nor -R"),
    (("--boot",), "--boot goes with --repair"),
]


@pytest.mark.parametrize(("args", "message"), USAGE)
def test_usage_errors_exit_1_and_say_why(make_host, args, message):
    host = make_host()
    result = host.run("deploy", *args)
    assert result.returncode == 1, result.stderr
    assert message in result.stderr
    assert host.logged() == []  # nothing ran: no git, no systemctl


def test_prod_takes_release_tags_only_and_never_restores(make_host):
    host = make_host("oca-france-prod")
    branch = host.run("deploy", "origin/18.0")
    assert branch.returncode == 1 and "does not match" in branch.stderr
    restore = host.run("deploy", "-R", "18.0-20260101")
    assert restore.returncode == 1 and "--restore is not allowed" in restore.stderr


def test_another_user_is_refused(make_host):
    host = make_host()
    host.config["odoo_user"] = "someone-else"
    host.write_config()
    result = host.run("deploy", "origin/18.0")
    assert result.returncode == 2
    assert "run me as someone-else" in result.stderr


def test_a_running_deploy_is_refused(deployed):
    with open(deployed.config["deploy_lock_file"], "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = deployed.run("deploy", "origin/18.0")
    assert result.returncode == 2
    assert "another deploy, a backup or a repair is running" in result.stderr


def test_with_wait_a_deploy_waits_for_the_lock_then_goes_on(deployed):
    """The weekly refresh (--wait): a short hold, odoo-auto-deploy's fetch, does not make it
    skip a week; a long one is refused once the wait is over."""
    lock = open(deployed.config["deploy_lock_file"], "w")  # noqa: SIM115 - held by the test
    fcntl.flock(lock, fcntl.LOCK_EX)
    threading.Timer(2, lock.close).start()
    started = time.monotonic()
    result = deployed.run("deploy", "--wait", "30", "--dry-run", "origin/18.0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert time.monotonic() - started >= 2
    assert "waiting up to 30s" in result.stderr
    with open(deployed.config["deploy_lock_file"], "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = deployed.run("deploy", "--wait", "1", "origin/18.0")
    assert result.returncode == 2
    assert "a repair is running (lock " in result.stderr and "still after 1s" in result.stderr


@pytest.mark.parametrize("wait", ["", "soon", "-1"])
def test_wait_takes_seconds(deployed, wait):
    result = deployed.run("deploy", "--wait", *([wait] if wait else []), "origin/18.0")
    assert result.returncode == 1
    assert "--wait takes a number of seconds" in result.stderr


def test_an_unknown_ref_is_refused_after_the_fetch(deployed):
    result = deployed.run("deploy", "no-such-ref")
    assert result.returncode == 2
    assert "unknown git ref 'no-such-ref'" in result.stderr
    assert not any(call.startswith("systemctl") for call in deployed.logged())


def test_a_failed_fetch_exits_3(deployed):
    git(
        "remote",
        "set-url",
        "origin",
        "/nonexistent/origin.git",
        cwd=deployed.path("oca_france_dir"),
    )
    result = deployed.run("deploy", "origin/18.0")
    assert result.returncode == 3
    assert "git fetch failed" in result.stderr


@pytest.mark.parametrize("step", ["preflight", "stopping", "snapshot", "restarting"])
def test_a_deploy_that_died_before_the_release_is_repaired_by_starting_it_again(deployed, step):
    fake_services(deployed)
    died_at(deployed, step)
    (deployed.dbs / f"{deployed.config['odoo_db_name']}-snap-20261202T100000").write_text(
        "partial\n"
    )
    result = deployed.run("deploy", "--repair")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "repaired: the previous release was still in place" in result.stdout
    assert f"systemctl start {deployed.config['oca_france_service']}" in deployed.logged()
    assert not (deployed.dbs / f"{deployed.config['odoo_db_name']}-snap-20261202T100000").exists()
    assert (history(deployed)[-1]["result"], history(deployed)[-1]["failed_step"]) == (
        "repaired",
        step,
    )
    assert not deployed.path("deploy_state_file").exists()


def test_a_deploy_that_died_after_a_healthy_start_is_recorded_as_deployed(deployed):
    fake_services(deployed)
    died_at(deployed, "healthy")
    result = deployed.run("deploy", "--repair")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "recorded as deployed" in result.stdout
    assert history(deployed)[-1]["result"] == "deployed"


@pytest.mark.parametrize("step", ["switching", "restoring", "neutralizing", "updating", "starting"])
def test_a_deploy_that_died_during_the_release_is_rolled_back(deployed, step):
    fake_services(deployed)
    db = deployed.config["odoo_db_name"]
    snapshot = f"{db}-snap-20261202T100000"
    (deployed.dbs / snapshot).write_text("before the deploy\n")
    (deployed.dbs / db).write_text("half-migrated\n")
    died_at(deployed, step, snapshot=snapshot)
    result = deployed.run("deploy", "--repair")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (deployed.dbs / db).read_text() == "before the deploy\n"  # the snapshot, renamed
    assert not (deployed.dbs / snapshot).exists()
    assert history(deployed)[-1]["result"] == "repaired"
    assert not deployed.path("deploy_state_file").exists()


def test_a_repair_that_cannot_start_the_service_keeps_the_state_and_exits_6(deployed):
    fake_services(deployed)
    deployed.fake("systemctl", 'case "$1" in is-active) exit 3 ;; esac; exit 0')
    died_at(deployed, "preflight")
    result = deployed.run("deploy", "--repair")
    assert result.returncode == 6
    assert "repair failed" in result.stderr
    assert deployed.path("deploy_state_file").exists()
    assert history(deployed)[-1]["result"] == "broken"


def test_nothing_to_repair_changes_nothing(deployed):
    fake_services(deployed)
    result = deployed.run("deploy", "--repair")
    assert result.returncode == 0
    assert deployed.logged() == []


def test_restore_takes_the_newest_production_data_by_time_never_a_partial_copy(deployed):
    """The deploy asks backups.py's one rule (by the time a name ends with, whatever the
    locale sorts): here the newest sorts first by name, and a copy still being made last."""
    host = deployed
    (host.origin / "pyproject.toml").write_text('[project]\nname = "app"\nversion = "2"\n')
    git("add", "-A", cwd=host.origin)
    git("commit", "-qm", "app", cwd=host.origin)
    fake_services(host)
    fake_pg_restore(host)
    # The release cannot be prepared: refused (exit 2) once the data is chosen, nothing touched.
    host.fake("uv", 'case "$1" in python) echo /usr/bin/python3 ;; *) exit 1 ;; esac')
    data = host.path("production_data_dir")
    write_backup(data, f"{PROD_DB}-20261201T023000")
    newest = write_backup(data, f"a-copy-by-hand-{PROD_DB}-20261202T023000")
    partial = write_backup(data, f"{PROD_DB}-20261203T023000")
    partial.rename(data / f".partial-{partial.name}")
    result = host.run("deploy", "-R", "origin/18.0", LC_ALL="C.UTF-8")
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"production data to restore: {newest}\n" in result.stdout


def test_restore_takes_a_lone_dump_checked_by_this_hosts_pg_restore(deployed):
    """The other form of production data: <name>-<stamp>.dump, no manifest; it is restored
    once this host's pg_restore reads it."""
    host = deployed
    (host.origin / "pyproject.toml").write_text('[project]\nname = "app"\nversion = "2"\n')
    git("add", "-A", cwd=host.origin)
    git("commit", "-qm", "app", cwd=host.origin)
    fake_services(host)
    fake_pg_restore(host)
    host.fake("uv", 'case "$1" in python) echo /usr/bin/python3 ;; *) exit 1 ;; esac')
    dump = host.path("production_data_dir") / f"{PROD_DB}-20260101T030000.dump"
    dump.write_bytes(DUMP)
    result = host.run("deploy", "-R", "origin/18.0")
    assert result.returncode == 2, result.stdout + result.stderr  # its venv: not prepared
    assert f"production data to restore: {dump}\n" in result.stdout
    dump.write_bytes(dump_header(1, 16, "17.6") * 40)  # from a newer PostgreSQL
    refused = host.run("deploy", "-R", "origin/18.0")
    assert refused.returncode == 2
    assert "production data refused, not restored" in refused.stderr
    assert "was made by PostgreSQL 17" in refused.stderr
