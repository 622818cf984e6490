"""One authority over the instance: while a deploy is unfinished, nothing but its repair acts
(the service's guard, the backup, the acceptance, an apply); every program takes the lock
the same way, with a bounded wait; exit codes tell the truth."""

from __future__ import annotations

import fcntl
import os
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

from tasks.commands import venv_sync_command
from tasks.util import InstanceActivity

from .conftest import died_at, edit_manifest, fake_services, git, history, write_backup


def hold_lock(host):
    lock = open(host.config["deploy_lock_file"], "w")  # noqa: SIM115 - held by the test
    fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


def test_the_guard_lets_the_service_start_when_no_deploy_is_unfinished(deployed):
    fake_services(deployed)
    assert deployed.run("deploy", "--guard").returncode == 0
    assert deployed.logged() == []


def test_the_guard_repairs_a_deploy_that_died_before_the_service_starts(deployed):
    fake_services(deployed)
    db = deployed.config["odoo_db_name"]
    snapshot = f"{db}-snap-20261202T100000"
    (deployed.dbs / snapshot).write_text("before the deploy\n")
    (deployed.dbs / db).write_text("restored, not neutralized\n")
    died_at(deployed, "neutralizing", snapshot=snapshot)
    result = deployed.run("deploy", "--guard")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "repairing it first" in result.stdout
    assert (deployed.dbs / db).read_text() == "before the deploy\n"
    assert not deployed.path("deploy_state_file").exists()
    # As at boot: systemd is starting the service, the guard does not start it again.
    assert not [call for call in deployed.logged() if call.startswith("systemctl start")]
    assert history(deployed)[-1]["result"] == "repaired"


def test_the_guard_refuses_a_start_during_a_deploys_downtime(deployed):
    fake_services(deployed)
    died_at(deployed, "restoring")
    with hold_lock(deployed):  # the deploy runs
        result = deployed.run("deploy", "--guard")
    assert result.returncode == 2
    assert "is at step 'restoring'" in result.stderr
    assert deployed.path("deploy_state_file").exists()


def test_the_guard_lets_the_deploy_start_its_own_release(deployed):
    fake_services(deployed)
    for step in ("starting", "restarting", "rolling-back"):
        died_at(deployed, step)
        with hold_lock(deployed):
            assert deployed.run("deploy", "--guard").returncode == 0, step


def test_a_repair_that_cannot_get_the_lock_does_not_report_success(deployed):
    fake_services(deployed)
    deployed.config["repair_lock_wait_sec"] = 1
    deployed.write_config()
    died_at(deployed, "updating")
    with hold_lock(deployed):
        result = deployed.run("deploy", "--repair")
    assert result.returncode == 2
    assert "not repaired" in result.stderr
    assert deployed.path("deploy_state_file").exists()


def test_a_hung_fetch_is_cut_short(deployed):
    deployed.config["git_fetch_timeout_sec"] = 1
    deployed.write_config()
    deployed.fake(
        "git", 'if [[ " $* " == *" fetch "* ]]; then sleep 30; fi; exec /usr/bin/git "$@"'
    )
    started = time.monotonic()
    result = deployed.run("deploy", "origin/18.0")
    assert result.returncode == 3
    assert "took more than 1s" in result.stderr
    assert time.monotonic() - started < 20


def test_a_hung_venv_sync_is_cut_short_and_refused_while_serving(deployed):
    (deployed.origin / "pyproject.toml").write_text('[project]\nname = "app"\nversion = "2"\n')
    git("add", "-A", cwd=deployed.origin)
    git("commit", "-qm", "two", cwd=deployed.origin)
    deployed.config["venv_sync_timeout_sec"] = 1
    deployed.write_config()
    fake_services(deployed)
    deployed.fake("uv", 'case "$1" in python) echo /usr/bin/python3 ;; sync) sleep 30 ;; esac')
    started = time.monotonic()
    result = deployed.run("deploy", "origin/18.0")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "could not prepare origin/18.0" in result.stderr
    assert time.monotonic() - started < 20
    assert not [call for call in deployed.logged() if call.startswith("systemctl stop")]
    log = next(deployed.path("deploy_log_dir").glob("*.log")).read_text()
    assert "uv sync --locked took more than 1s" in log


def test_a_hung_venv_sync_during_the_downtime_rolls_back(deployed):
    """The checkout's sync hangs once the site is stopped (the release's own sync, while
    serving, passed): cut short, the previous release and its data put back, exit 5."""
    (deployed.origin / "pyproject.toml").write_text('[project]\nname = "app"\nversion = "2"\n')
    git("add", "-A", cwd=deployed.origin)
    git("commit", "-qm", "two", cwd=deployed.origin)
    previous = git("rev-parse", "HEAD", cwd=deployed.path("oca_france_dir"))
    deployed.config["venv_sync_timeout_sec"] = 1
    deployed.write_config()
    fake_services(deployed)
    hung = deployed.root / "hung-once"
    checkout = deployed.path("oca_france_dir")
    deployed.fake(
        "uv",
        f'case "$1" in python) echo /usr/bin/python3 ;;'
        f' sync) [[ "$PWD" != "{checkout}" || -e "{hung}" ]] || {{ touch "{hung}"; sleep 30; }} ;;'
        " esac; exit 0",
    )
    started = time.monotonic()
    result = deployed.run("deploy", "origin/18.0")
    assert result.returncode == 5, result.stdout + result.stderr
    assert time.monotonic() - started < 20
    assert "uv sync --locked took more than 1s" in result.stderr  # the failed step's lines
    assert git("rev-parse", "HEAD", cwd=checkout) == previous
    assert (deployed.dbs / deployed.config["odoo_db_name"]).read_text() == "live\n"
    assert history(deployed)[-1]["result"] == "rolled back"
    assert history(deployed)[-1]["failed_step"] == "switching"


def test_the_applys_venv_sync_is_cut_short_too(tmp_path):
    """The apply's own sync (tasks/oca_france.py) is bounded by the same setting."""
    (tmp_path / "uv").write_text("#!/bin/sh\nsleep 30\n")
    (tmp_path / "uv").chmod(0o755)
    data = SimpleNamespace(odoo_sync_command=["uv", "sync", "--locked"], venv_sync_timeout_sec=1)
    started = time.monotonic()
    result = subprocess.run(
        ["sh", "-c", venv_sync_command(data)],
        env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"},
        timeout=60,
    )
    assert result.returncode == 124  # timeout's own status: the apply's operation fails
    assert time.monotonic() - started < 20


def test_exit_4_only_when_the_previous_release_runs_again(deployed):
    """Stop fails: the previous release is started again (exit 4); when it does not start
    either, the deploy says the site is down (exit 6) and keeps its state."""
    (deployed.origin / "pyproject.toml").write_text('[project]\nname = "app"\nversion = "1"\n')
    git("add", "-A", cwd=deployed.origin)
    git("commit", "-qm", "three", cwd=deployed.origin)
    fake_services(deployed)
    deployed.fake("uv", 'case "$1" in python) echo /usr/bin/python3 ;; esac; exit 0')
    deployed.fake("systemctl", 'case "$1" in stop) exit 1 ;; is-active) exit 0 ;; esac; exit 0')
    result = deployed.run("deploy", "origin/18.0")
    assert result.returncode == 4, result.stdout + result.stderr
    assert "the previous release is up again" in result.stdout
    deployed.fake("systemctl", 'case "$1" in stop) exit 1 ;; is-active) exit 3 ;; esac; exit 0')
    result = deployed.run("deploy", "origin/18.0")
    assert result.returncode == 6, result.stdout + result.stderr
    assert "did not start again" in result.stderr
    assert history(deployed)[-1]["result"] == "broken"
    assert deployed.path("deploy_state_file").exists()


def test_a_backup_never_dumps_the_data_of_an_unfinished_deploy(make_host):
    host = make_host("oca-france-prod")
    host.fake("pg_dump", "exit 0")
    host.path("deploy_state_file").write_text("step=updating\nref=18.0-20261202\n")
    result = host.run("odoo-backup")
    assert result.returncode == 1
    assert "a deploy of 18.0-20261202 is unfinished (step updating)" in result.stderr
    assert not [call for call in host.logged() if call.startswith("pg_dump")]
    assert list(host.path("backup_dir").iterdir()) == []


def delivered(host, name: str) -> None:
    """A delivery from prod in recette's incoming directory (rsync writes into it)."""
    incoming = host.path("incoming_dir")
    incoming.rmdir()
    write_backup(incoming.parent, incoming.name)
    edit_manifest(incoming, name=name)


def test_the_acceptance_waits_for_the_repair_of_an_unfinished_deploy(make_host):
    host = make_host()
    host.fake("pg_restore", "exit 0")
    delivered(host, "oca-france-production-20261202T023000")
    state = host.path("deploy_state_file")
    state.write_text("step=restoring\nref=origin/18.0\n")
    host.config["backup_lock_wait_sec"] = 20
    host.write_config()
    threading.Timer(3, state.unlink).start()  # the repair, a moment later
    started = time.monotonic()
    result = host.run("odoo-production-data-accept")
    assert result.returncode == 0, result.stdout + result.stderr
    assert time.monotonic() - started >= 3
    assert (
        "a deploy of origin/18.0 is unfinished (step restoring): waiting up to 20s for its repair"
        in result.stderr
    )
    assert (host.path("production_data_dir") / "oca-france-production-20261202T023000").is_dir()


def test_the_acceptance_gives_up_on_a_deploy_left_unfinished(make_host):
    host = make_host()
    host.fake("pg_restore", "exit 0")
    delivered(host, "oca-france-production-20261202T023000")
    host.path("deploy_state_file").write_text("step=restoring\nref=origin/18.0\n")
    host.config["backup_lock_wait_sec"] = 2
    host.write_config()
    result = host.run("odoo-production-data-accept")
    assert result.returncode == 1
    assert "not accepted: a deploy of origin/18.0 is still unfinished (step restoring)" in (
        result.stdout
    )
    # Said once: the manifest is consumed, the path unit does not retry it every 2 s.
    assert not (host.path("incoming_dir") / "manifest.json").exists()
    assert list(host.path("production_data_dir").iterdir()) == []


def test_an_apply_sees_an_unfinished_or_running_deploy(deployed):
    """The preflight's fact asks deploy --activity: an apply stops before any change on a
    deploy that is unfinished or a lock held (an earlier apply's hold is replaced instead)."""
    fact = InstanceActivity()

    def activity() -> dict:
        result = deployed.run("deploy", "--activity")
        assert result.returncode == 0, result.stderr
        return fact.process(result.stdout.splitlines())

    assert activity() == {"unfinished": None, "held_by": None, "held_by_apply": False}
    died_at(deployed, "updating")
    assert activity()["unfinished"] == {"ref": "origin/18.0", "step": "updating"}
    deployed.path("deploy_state_file").unlink()
    with hold_lock(deployed):
        Path(deployed.config["deploy_lock_file"]).write_text("odoo-backup (pid 1) since x\n")
        found = activity()
    assert found["held_by"].startswith("odoo-backup") and not found["held_by_apply"]
    # The bash deploy of before (the first apply of this one): its own lock decides.
    before = ["Usage: deploy [-R] <git-ref>", "... deploy: ERROR: unknown option: --activity"]
    assert fact.process([*before, "FAILED"]) is None
    # A program that fails otherwise: the apply is told, and stops.
    crashed = fact.process(["odoo-status: ConfigError: /etc/oca-france/host.json", "FAILED"])
    assert crashed == {"error": "odoo-status: ConfigError: /etc/oca-france/host.json"}


def test_a_refused_auto_deploy_backs_off(deployed):
    """Exit 2 (refused: no production data yet, a deploy running...) is tried again later,
    twice as late each time, not every minute; a deploy that ran ends the retries."""
    fake = deployed.fakes / "fake-deploy"
    fake.write_text(f'#!/bin/sh\necho "deploy $*" >> {deployed.calls}\nexit "$(cat {fake}.rc)"\n')
    fake.chmod(0o755)
    (deployed.fakes / "fake-deploy.rc").write_text("2\n")
    deployed.config["deploy_command"] = str(fake)
    deployed.write_config()
    state = deployed.path("auto_deploy_state_file")
    state.write_text(git("rev-parse", "HEAD", cwd=deployed.path("oca_france_dir")) + "\n")
    retry = state.with_name(state.name + ".retry")

    def deploys() -> int:
        return sum(call.startswith("deploy --restore") for call in deployed.logged())

    assert deployed.run("odoo-auto-deploy").returncode == 2
    assert retry.read_text().split()[1] == "1" and deploys() == 1
    skipped = deployed.run("odoo-auto-deploy")
    assert skipped.returncode == 0 and "next try at" in skipped.stdout
    assert deploys() == 1  # not again a minute later
    commit, _, _ = retry.read_text().split()
    retry.write_text(f"{commit} 1 0\n")  # the wait is over
    assert deployed.run("odoo-auto-deploy").returncode == 2
    refusals, next_try = retry.read_text().split()[1:]
    assert refusals == "2" and int(next_try) - time.time() > 100  # 2 minutes, then 4...
    retry.write_text(f"{commit} 2 0\n")
    (deployed.fakes / "fake-deploy.rc").write_text("0\n")
    assert deployed.run("odoo-auto-deploy").returncode == 0
    assert state.read_text().strip() == commit and not retry.exists()


def test_every_run_prunes_the_deploy_logs(deployed):
    fake_services(deployed)
    logs = deployed.path("deploy_log_dir")
    for day in range(40):
        (logs / f"deploy-202611{day % 30 + 1:02d}T{day:06d}-1.log").write_text("old\n")
    died_at(deployed, "preflight")
    assert deployed.run("deploy", "--repair").returncode == 0
    assert len(list(logs.glob("deploy-*.log"))) == deployed.config["deploy_logs_kept"]
