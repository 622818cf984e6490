"""The deploy's state machine, end to end with fakes at the runner's seam: a whole deploy goes
through every step in order; a deploy killed (SIGKILL, by the tool it was running) at each
step is then repaired to a release that runs, on data that matches it; the lock is never
inherited by what a holder starts; the apply's hold is taken and released like the others."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import BIN, fake_services, git, history

# The steps in the order a deploy records them (its state file), and the tool it runs there.
STEPS = ["preflight", "stopping", "snapshot", "switching", "updating", "starting", "healthy"]


def deployable(host) -> str:
    """A release that can be deployed with the fakes: a uv project, a real commit of origin,
    an update command and a service that answer; returns the commit."""
    (host.origin / "pyproject.toml").write_text('[project]\nname = "app"\nversion = "2"\n')
    git("add", "-A", cwd=host.origin)
    git("commit", "-qm", "app", cwd=host.origin)
    fake_services(host)
    host.fake("uv", 'case "$1" in python) echo /usr/bin/python3 ;; esac; exit 0')
    host.fake("click-odoo-update", 'echo "updated $*"')
    host.config["update_command"] = [str(host.fakes / "click-odoo-update"), "-d", "db"]
    host.config["odoo_start_timeout"] = 5
    host.write_config()
    filestore = host.path("filestore_root") / host.config["odoo_db_name"]
    (filestore / "ab").mkdir(parents=True)
    (filestore / "ab" / "abcdef").write_text("invoice\n")
    return git("rev-parse", "HEAD", cwd=host.origin)


def test_a_deploy_goes_through_every_step_and_records_itself(deployed):
    commit = deployable(deployed)
    result = deployed.run("deploy", "origin/18.0")
    assert result.returncode == 0, result.stdout + result.stderr
    head = git("rev-parse", "HEAD", cwd=deployed.path("oca_france_dir"))
    assert head == commit
    calls = deployed.logged()
    service = deployed.config["oca_france_service"]
    order = [
        f"systemctl stop {service}",
        f"createdb --template={deployed.config['odoo_db_name']} --strategy=FILE_COPY",
        "click-odoo-update -d db",
        f"systemctl start {service}",
    ]
    positions = [next(i for i, c in enumerate(calls) if c.startswith(o)) for o in order]
    assert positions == sorted(positions), calls
    entry = history(deployed)[-1]
    assert (entry["action"], entry["result"], entry["to"], entry["restore"]) == (
        "deploy",
        "deployed",
        commit,
        False,
    )
    assert isinstance(entry["downtime_s"], int) and isinstance(entry["duration_s"], int)
    assert not deployed.path("deploy_state_file").exists()
    assert "updated -d db" in next(deployed.path("deploy_log_dir").glob("*.log")).read_text()
    assert "updated -d db" not in result.stdout  # the tools' output goes to the log only


def kill_the_deploy(host, tool: str, condition: str) -> str:
    """The fake `tool` kills the deploy (the pid its state file names) with SIGKILL once it
    has done its work, when `condition` holds: a power cut at that point. Returns the fake as
    it was."""
    fake = host.fakes / tool
    original = fake.read_text()
    lines = original.splitlines()
    state = host.path("deploy_state_file")
    killer = f"trap 'if {condition}; then kill -9 \"$(sed -n s/^pid=//p {state})\"; fi' EXIT"
    fake.write_text("\n".join([*lines[:2], killer, *lines[2:]]) + "\n")
    return original


# Where each step is killed: (the step its state file says, the tool, when).
KILL_POINTS = [
    ("stopping", "systemctl", '[[ "$1" == stop ]]'),
    ("snapshot", "createdb", '[[ "$1" == --template=* ]]'),
    ("switching", "uv", '[[ "$1" == sync && "$PWD" == */oca-france ]]'),
    ("updating", "click-odoo-update", "true"),
    ("starting", "curl", '[[ "$*" == *health* ]]'),
    ("healthy", "psql", '[[ "$*" == *LIKE* ]]'),
]


@pytest.mark.parametrize(
    ("step", "tool", "condition"), KILL_POINTS, ids=[k[0] for k in KILL_POINTS]
)
def test_a_deploy_killed_at_each_step_is_repaired(deployed, step, tool, condition):
    commit = deployable(deployed)
    checkout = deployed.path("oca_france_dir")
    assert checkout.name == "oca-france"
    previous = git("rev-parse", "HEAD", cwd=checkout)
    db = deployed.config["odoo_db_name"]
    # The release's migration writes its work (half of it, when killed).
    deployed.fake("click-odoo-update", f'echo migrated > "{deployed.dbs}/{db}"')
    original = kill_the_deploy(deployed, tool, condition)
    killed = deployed.run("deploy", "origin/18.0")
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    left = deployed.path("deploy_state_file").read_text().splitlines()
    assert f"step={step}" in left
    # The repair, as odoo-deploy-repair.timer runs it (the tool no longer kills anything).
    (deployed.fakes / tool).write_text(original)
    repaired = deployed.run("deploy", "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert not deployed.path("deploy_state_file").exists()
    entry = history(deployed)[-1]
    assert (entry["action"], entry["failed_step"]) == ("repair", step)
    head = git("rev-parse", "HEAD", cwd=checkout)
    if step == "healthy":  # the new release had started healthy: kept
        assert (entry["result"], head) == ("deployed", commit)
        assert (deployed.dbs / db).read_text() == "migrated\n"
    else:  # the previous release, on the data it had
        assert (entry["result"], head) == ("repaired", previous)
        assert (deployed.dbs / db).read_text() == "live\n"
        assert not [p for p in deployed.dbs.iterdir() if "-snap-" in p.name]
    filestore = deployed.path("filestore_root") / db / "ab" / "abcdef"
    assert filestore.read_text() == "invoice\n"
    starts = [c for c in deployed.logged() if c.startswith("systemctl start")]
    assert starts, "the repair leaves the site running"


def test_the_lock_is_not_inherited_by_what_a_holder_starts(deployed):
    """git's background maintenance after a fetch, say: it outlives the deploy, and must not
    keep the lock (bash's fd 9 did: every program after it was refused)."""
    real_git = shutil.which("git")
    deployed.fake("git", f'(sleep 30 </dev/null >/dev/null 2>&1 &)\nexec {real_git} "$@"')
    result = deployed.run("deploy", "--dry-run", "origin/18.0")
    assert result.returncode == 0, result.stdout + result.stderr
    # The sleeps git left behind still run: the lock is free all the same.
    after = deployed.run("deploy", "--activity")
    assert json.loads(after.stdout)["held_by"] is None


def apply_hold(host, *args: str) -> tuple[subprocess.Popen, dict]:
    """deploy --apply-lock started as the apply starts it, once it holds the lock; and what
    deploy --activity then says."""
    holder = subprocess.Popen(
        [str(BIN / "deploy"), "--apply-lock", "5", *args],
        env=host.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while True:
        found = json.loads(host.run("deploy", "--activity").stdout)
        if found["held_by"]:
            return holder, found
        if time.monotonic() > deadline:
            holder.kill()
            pytest.fail("the hold was never taken")
        time.sleep(0.2)


def test_the_applys_hold_is_taken_like_the_others_and_released_when_stopped(deployed):
    holder, found = apply_hold(deployed)
    try:
        assert found["held_by_apply"] and found["held_by"].startswith("apply (pid ")
        refused = deployed.run("deploy", "origin/18.0")
        assert refused.returncode == 2
        assert "a repair is running" in refused.stderr and ": apply (pid " in refused.stderr
    finally:
        holder.send_signal(signal.SIGTERM)
        out, err = holder.communicate(timeout=20)
    assert holder.returncode == 0, out + err
    assert json.loads(deployed.run("deploy", "--activity").stdout)["held_by"] is None


def test_the_applys_hold_refuses_an_unfinished_deploy(deployed):
    state = deployed.path("deploy_state_file")
    state.write_text("step=updating\nref=origin/18.0\n")
    result = deployed.run("deploy", "--apply-lock", "1")
    assert result.returncode == 2
    assert "is unfinished (step updating): its repair comes first" in result.stderr
    assert os.path.exists(state)


def test_a_rollback_waits_for_an_autovacuum_worker_that_blocks_the_drop(deployed):
    """PostgreSQL refuses DROP DATABASE ... WITH (FORCE) to the odoo role while an autovacuum
    worker works on the database: the rollback tries again, and says why in the log."""
    deployable(deployed)
    deployed.fake("click-odoo-update", "exit 1")  # the release fails: rolled back
    refusals = deployed.root / "refusals"
    refusals.write_text("2\n")
    psql = (deployed.fakes / "psql").read_text().splitlines()
    refuse = (
        f'if [[ "${{@: -1}}" == "DROP DATABASE"* ]] && (( $(cat {refusals}) > 0 )); then\n'
        f"    echo $(( $(cat {refusals}) - 1 )) > {refusals}\n"
        '    echo "ERROR:  permission denied to terminate process" >&2; exit 1\n'
        "fi"
    )
    (deployed.fakes / "psql").write_text("\n".join([*psql[:2], refuse, *psql[2:]]) + "\n")
    result = deployed.run("deploy", "origin/18.0")
    assert result.returncode == 5, result.stdout + result.stderr
    assert "rolled back to" in result.stdout
    assert (deployed.dbs / deployed.config["odoo_db_name"]).read_text() == "live\n"
    log = next(deployed.path("deploy_log_dir").glob("*.log")).read_text()
    assert "permission denied to terminate process" in log


def test_the_lock_names_its_holder_only_while_held(deployed):
    lock_file = deployed.config["deploy_lock_file"]
    sys.path.insert(0, str(BIN.parent / "lib"))
    from oca_france_host import state

    with state.take(lock_file, 0, who="odoo-backup"):
        assert state.holder(lock_file).startswith(f"odoo-backup (pid {os.getpid()}) since ")
    assert state.holder(lock_file) == ""  # released: nobody named
    # A holder that died (SIGKILL: no release) is not named by the next waiter.
    Path(lock_file).write_text("deploy by alice (pid 999999999) since then\n")
    assert state.holder(lock_file) == ""


def test_the_applys_hold_ends_with_the_applys_session(deployed):
    """An apply that dies (its SSH session gone) leaves no lock: the hold watches it."""
    session = subprocess.Popen(["sleep", "60"])
    holder, _ = apply_hold(deployed, "--while-pid", str(session.pid))
    try:
        session.kill()
        session.wait()
        out, err = holder.communicate(timeout=20)
    finally:
        session.kill()
        holder.kill()
    assert holder.returncode == 0, out + err
    assert f"the apply's session (pid {session.pid}) ended" in out
    assert json.loads(deployed.run("deploy", "--activity").stdout)["held_by"] is None


def test_recover_restores_a_backup_as_it_is_at_its_own_commit(deployed, tmp_path):
    """deploy --recover (odoo-offsite-recover's last step): the backup's data, at the commit
    its manifest names, not neutralized; a backup that does not match its manifest is refused
    before anything is touched."""
    from .conftest import edit_manifest, fake_pg_restore, write_backup

    commit = deployable(deployed)  # what the backup was taken with
    (deployed.origin / "README").write_text("newer\n")
    git("commit", "-qam", "newer", cwd=deployed.origin)
    fake_pg_restore(deployed)
    dbs = deployed.dbs  # createdb: a copy of a template (the snapshot), or an empty database
    deployed.fake(
        "createdb",
        f'if [[ $1 == --template=* ]]; then cp "{dbs}/${{1#--template=}}" "{dbs}/${{@: -1}}";'
        f' else : > "{dbs}/${{@: -1}}"; fi',
    )
    backup = write_backup(tmp_path, "oca-france-production-20261203T011500", {"cd/cdef": "x\n"})
    edit_manifest(backup, commit=commit)
    # Where -R restores neutralized copies (recette), production's data as it is: never.
    recette = deployed.run("deploy", "--recover", str(backup))
    assert recette.returncode == 1 and "--recover is not allowed on" in recette.stderr
    deployed.config.update(
        deploy_restore_allowed=False, offsite_repository_url="ssh://borg@backup.test/srv/borg/p"
    )
    deployed.write_config()
    both = deployed.run("deploy", "-R", "--recover", str(backup))
    assert both.returncode == 1 and "-R and --recover do not go together" in both.stderr
    (backup / "filestore" / "cd" / "cdef").write_text("tampered\n")
    refused = deployed.run("deploy", "--recover", str(backup))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "backup refused, not recovered: filestore/cd/cdef" in refused.stderr
    assert not any(call.startswith("systemctl stop") for call in deployed.logged())

    (backup / "filestore" / "cd" / "cdef").write_text("x\n")
    result = deployed.run("deploy", "--recover", str(backup))
    assert result.returncode == 0, result.stdout + result.stderr
    assert git("rev-parse", "HEAD", cwd=deployed.path("oca_france_dir")) == commit
    calls = deployed.logged()
    assert any(c.startswith("pg_restore --no-owner") and c.endswith(".dump") for c in calls)
    assert not any("neutralize" in call for call in calls)
    live = deployed.path("filestore_root") / deployed.config["odoo_db_name"]
    assert [p.name for p in live.rglob("*") if p.is_file()] == ["cdef"]
    entry = history(deployed)[-1]
    assert (entry["result"], entry["to"]) == ("deployed", commit)
    assert entry["recovered_from"] == str(backup)


def recovery_that_fails(deployed, tmp_path, commit: str) -> Path:
    """prod's deploy set for a recovery (no restore from recette, a backup host) whose update
    fails: createdb makes "recovered" databases (or copies a template), pg_restore is faked;
    the backup to recover, of `commit`."""
    from .conftest import edit_manifest, fake_pg_restore, write_backup

    fake_pg_restore(deployed)
    dbs = deployed.dbs
    deployed.fake(
        "createdb",
        f'if [[ $1 == --template=* ]]; then cp "{dbs}/${{1#--template=}}" "{dbs}/${{@: -1}}";'
        f' else echo recovered > "{dbs}/${{@: -1}}"; fi',
    )
    deployed.fake("click-odoo-update", 'echo "a module fails to load" >&2; exit 1')
    deployed.config.update(
        deploy_restore_allowed=False, offsite_repository_url="ssh://borg@backup.test/srv/borg/p"
    )
    deployed.write_config()
    backup = write_backup(tmp_path, "oca-france-production-20261203T011500")
    edit_manifest(backup, commit=commit)
    return backup


def test_a_recovery_that_fails_after_the_stop_rolls_back_to_what_ran(deployed, tmp_path):
    """The update fails on the recovered data: the snapshot (the fresh database) and the
    release that ran are back, the site up, exit 5 (odoo-offsite-recover keeps its extract)."""
    commit = deployable(deployed)
    before = git("rev-parse", "HEAD", cwd=deployed.path("oca_france_dir"))
    backup = recovery_that_fails(deployed, tmp_path, commit)
    dbs = deployed.dbs
    result = deployed.run("deploy", "--recover", str(backup))
    assert result.returncode == 5, result.stdout + result.stderr
    assert "rolled back to" in result.stdout
    assert git("rev-parse", "HEAD", cwd=deployed.path("oca_france_dir")) == before
    assert (dbs / deployed.config["odoo_db_name"]).read_text() == "live\n"  # the snapshot's
    assert history(deployed)[-1]["result"] != "deployed"


def test_a_recovery_onto_a_held_host_that_fails_leaves_the_service_stopped(deployed, tmp_path):
    """make apply-prod RECOVERING=1 left the service stopped on the bare host: a recovery
    that fails puts the fresh database back and leaves it stopped (never serving the database
    the recovery was to replace); one that succeeds starts it."""
    backup = recovery_that_fails(deployed, tmp_path, deployable(deployed))
    dbs = deployed.dbs
    active = tmp_path / "active"  # the service's state, as systemctl keeps it
    deployed.fake(
        "systemctl",
        f'case "$1" in is-active) [[ -e {active} ]] ;; start) touch {active} ;;'
        f" stop) rm -f {active} ;; esac",
    )

    failed = deployed.run("deploy", "--recover", str(backup))
    assert failed.returncode == 5, failed.stdout + failed.stderr
    assert "odoo-oca-france.service stays stopped, as before the recovery" in failed.stdout
    assert not active.exists()
    assert not any(call.startswith("systemctl start") for call in deployed.logged())
    assert (dbs / deployed.config["odoo_db_name"]).read_text() == "live\n"  # the fresh one

    deployed.fake("click-odoo-update", "exit 0")
    result = deployed.run("deploy", "--recover", str(backup))
    assert result.returncode == 0, result.stdout + result.stderr
    assert active.exists()
    assert (dbs / deployed.config["odoo_db_name"]).read_text() == "recovered\n"
