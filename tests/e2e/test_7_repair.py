"""Deploys that heal: killed at a step (as the OOM killer or a power cut would), then
repaired by the next deploy, the periodic check and a container restart; a deploy whose
client is killed; --status and --dry-run; a refusal when the disk is short.

Tests run in file order, on recette, on the state the previous files left.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
import subprocess
import time

import pytest

from .conftest import (
    DB,
    DEPLOY,
    INCOMING,
    PROD,
    RECETTE,
    USERS_SSH_CONFIG,
    deploy,
    head,
    main_pid,
    neutralization,
    power_cut_and_boot,
    psql,
    run_backup,
    unit_invocation,
    wait_unit_done,
)
from .test_2_deploy import with_migration

STATE = "/home/odoo/.odoo_dumps/.deploy.state"
ACCEPT = "odoo-production-data-accept.service"
ACCEPT_PATH = "odoo-production-data-accept.path"
HISTORY = "/home/odoo/.odoo_dumps/deploy-history.jsonl"
MARKER = "Written before the killed deploy"


def history(host) -> list[dict]:
    return [json.loads(line) for line in host.check_output(f"cat {HISTORY}").splitlines()]


def company(host) -> str:
    return psql(host, DB[RECETTE], "SELECT name FROM res_company ORDER BY id LIMIT 1")


def slow_update(seconds: int, version: str, half_update: bool = True):
    """A release whose migration (a real post-migrate script) commits a first change, then
    takes `seconds`."""
    first = "cr.execute(\"UPDATE res_company SET name = name || ' (half-updated)'\")\ncr.commit()\n"
    return with_migration(version, (first if half_update else "") + f"time.sleep({seconds})")


def start_deploy(recette, unit: str, *args: str) -> None:
    """The deploy in a unit of its own: killing the unit kills it and all it runs."""
    recette.check_output(
        f"systemd-run --unit={unit} --uid=odoo --gid=odoo -E DEPLOY_BY=tests"
        f" {DEPLOY} {shlex.join(args)}"
    )


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")


def state_step(recette) -> str:
    return recette.check_output(f"sed -n 's/^step=//p' {STATE} 2>/dev/null || true")


def kill_at(recette, unit: str, step: str, condition=lambda: True) -> None:
    wait_for(lambda: state_step(recette) == step and condition(), 120, f"step {step}")
    recette.check_output(f"systemctl kill -s KILL {unit}.service")
    time.sleep(1)
    recette.run(f"systemctl reset-failed {unit}.service")
    assert recette.file(STATE).exists  # the deploy died: its state is left behind
    assert not recette.service("odoo-oca-france.service").is_running


@pytest.fixture
def no_periodic_repair(recette):
    """The periodic check would repair before the path under test does."""
    recette.check_output("systemctl stop odoo-deploy-repair.timer")
    yield
    recette.check_output("systemctl start odoo-deploy-repair.timer")


def killed_during_update(sandbox, recette, unit: str, version: str) -> str:
    psql(recette, DB[RECETTE], f"UPDATE res_company SET name = '{MARKER}'")
    previous = head(recette)
    sandbox.push_commit("slow/update", "Slow migration", slow_update(300, version))
    start_deploy(recette, unit, "origin/slow/update")
    kill_at(recette, unit, "updating", lambda: "(half-updated)" in company(recette))
    return previous


def assert_back_on(sandbox, recette, previous: str) -> None:
    sandbox.wait_healthy(RECETTE, timeout=60)
    assert head(recette) == previous
    assert company(recette) == MARKER  # the data from before the deploy, not half-updated
    assert not recette.file(STATE).exists


def test_killed_during_update_the_next_deploy_repairs(sandbox, recette, no_periodic_repair):
    previous = killed_during_update(sandbox, recette, "killed-deploy-1", "18.0.2.0.0")
    result = deploy(recette, previous)
    assert result.rc == 0, result.stdout + result.stderr
    assert "died at step 'updating'" in result.stdout and "repaired: rolled back" in result.stdout
    assert_back_on(sandbox, recette, previous)
    repair, redeploy = history(recette)[-2:]
    assert (repair["action"], repair["result"], repair["failed_step"]) == (
        "repair",
        "repaired",
        "updating",
    )
    assert repair["from"] == previous and repair["by"] == "root"  # sudo from root
    assert (redeploy["action"], redeploy["result"]) == ("deploy", "deployed")


def test_killed_during_update_the_periodic_check_repairs(sandbox, recette):
    recette.check_output("systemctl stop odoo-deploy-repair.timer")
    previous = killed_during_update(sandbox, recette, "killed-deploy-2", "18.0.2.1.0")
    recette.check_output("systemctl start odoo-deploy-repair.timer")
    wait_for(lambda: not recette.file(STATE).exists, 130, "the periodic repair")
    assert_back_on(sandbox, recette, previous)
    entry = history(recette)[-1]
    assert (entry["action"], entry["result"], entry["by"]) == (
        "repair",
        "repaired",
        "odoo-deploy-repair",
    )


STARTS = "/var/tmp/odoo-starts.log"
RECORDER = "/usr/local/sbin/record-odoo-start"
RECORDER_DROP_IN = "/etc/systemd/system/odoo-oca-france.service.d/zz-test-record-start.conf"


@pytest.fixture
def starts_recorded(recette):
    """Each start of the server that passes its guard, recorded with the data it starts on:
    the neutralization flag (the test's own ExecStartPre, after the guard's)."""
    recorder = f"""#!/bin/sh
# Test only: the neutralization flag of the data each start of the server is on.
flag=$(psql -XAtq -d {DB[RECETTE]} -c "SELECT value FROM ir_config_parameter \\
    WHERE key = 'database.is_neutralized'" 2>/dev/null) || flag=unreadable
echo "$(date +%s) ${{flag:-missing}}" >> {STARTS}
"""
    recette.check_output(
        f"cat > {RECORDER} <<'EOF'\n{recorder}EOF\n"
        f"chmod 755 {RECORDER} && install -o odoo -g odoo -m 644 /dev/null {STARTS}"
        f" && mkdir -p {RECORDER_DROP_IN.rsplit('/', 1)[0]}"
        f" && printf '[Service]\\nExecStartPre={RECORDER}\\n' > {RECORDER_DROP_IN}"
        " && systemctl daemon-reload"
    )
    yield lambda: recette.check_output(f"cat {STARTS}").splitlines()
    recette.check_output(f"rm -f {RECORDER_DROP_IN} {RECORDER} {STARTS} && systemctl daemon-reload")


def test_killed_during_restore_a_container_restart_repairs(sandbox, recette, prod, starts_recorded):
    """A power cut during the restore of production data, with a delivery from prod waiting
    at boot (its acceptance runs while the boot repairs): Odoo never starts on production
    data that is not neutralized."""
    # Production data large enough for the restore to take a while.
    psql(
        prod,
        DB[PROD],
        "CREATE TABLE bench_payload AS SELECT g AS id, md5(random()::text) || md5(random()::text)"
        " AS payload FROM generate_series(1, 1500000) g",
    )
    try:
        assert run_backup(prod, recette).rc == 0
    finally:
        psql(prod, DB[PROD], "DROP TABLE bench_payload")
    assert neutralization(recette, DB[RECETTE])["flag"] == "true"
    recette.check_output("systemctl stop odoo-deploy-repair.timer")
    # The same backup delivered again, left waiting: its acceptance starts at boot.
    recette.check_output(f"systemctl stop {ACCEPT_PATH}")
    transfer = unit_invocation(prod, "odoo-backup-transfer.service")
    prod.check_output("sudo -u odoo systemctl start odoo-backup-transfer.service")
    assert wait_unit_done(prod, "odoo-backup-transfer.service", transfer) == "success"
    assert recette.file(f"{INCOMING}/manifest.json").exists
    psql(recette, DB[RECETTE], f"UPDATE res_company SET name = '{MARKER}'")
    previous = head(recette)
    start_deploy(recette, "killed-restore", "-R", previous)
    kill_at(recette, "killed-restore", "restoring")
    recette.check_output(f": > {STARTS}")
    # A power cut: the container goes down with the half-restored database, and boots.
    power_cut_and_boot(RECETTE)
    assert_back_on(sandbox, recette, previous)
    entry = history(recette)[-1]
    assert (entry["action"], entry["result"], entry["failed_step"], entry["by"]) == (
        "repair",
        "repaired",
        "restoring",
        "odoo-deploy-boot-repair",
    )
    # The repair ran before the service started.
    repaired = recette.check_output(
        "systemctl show -p ExecMainExitTimestampMonotonic --value odoo-deploy-boot-repair"
    )
    started = recette.check_output(
        "systemctl show -p ExecMainStartTimestampMonotonic --value odoo-oca-france.service"
    )
    assert 0 < int(repaired) <= int(started)
    # Every start since the power cut was on neutralized data.
    starts = starts_recorded()
    assert starts and all(line.split(" ", 1)[1] == "true" for line in starts), starts
    # The delivery waiting at boot was accepted too, once the repair was done.
    deadline = time.monotonic() + 120
    while recette.file(f"{INCOMING}/manifest.json").exists and time.monotonic() < deadline:
        time.sleep(1)
    assert wait_unit_done(recette, ACCEPT, "", timeout=120) == "success"
    assert recette.service("odoo-deploy-repair.timer").is_running  # enabled: back at boot
    assert recette.service(ACCEPT_PATH).is_running


def test_a_kill_after_a_healthy_start_is_recorded_as_deployed(sandbox, recette):
    recette.check_output("systemctl stop odoo-deploy-repair.timer")
    try:
        for attempt in range(3):
            commit = sandbox.push_commit(
                "quick/update", f"Quick {attempt}", slow_update(0, f"18.0.3.{attempt}.0", False)
            )
            # Freeze the deploy the moment it records the healthy start, then kill it.
            recette.check_output(
                "systemd-run --unit=kill-when-healthy sh -c 'while ! grep -qx step=healthy"
                f" {STATE} 2>/dev/null; do sleep 0.005; done;"
                " systemctl kill -s STOP killed-healthy.service;"
                " systemctl kill -s KILL killed-healthy.service'"
            )
            start_deploy(recette, "killed-healthy", "origin/quick/update")
            wait_for(
                lambda: not recette.service("killed-healthy.service").is_running,
                120,
                "the deploy to end",
            )
            recette.run("systemctl reset-failed killed-healthy.service kill-when-healthy.service")
            if recette.file(STATE).exists:
                break
            recette.run("systemctl stop kill-when-healthy.service")
        else:
            pytest.fail("the deploy finished before it could be killed, three times")
        repaired = recette.run(f"sudo -u odoo {DEPLOY} --repair")
        assert repaired.rc == 0, repaired.stdout + repaired.stderr
        assert "recorded as deployed" in repaired.stdout
        entry = history(recette)[-1]
        assert (entry["action"], entry["result"], entry["to"]) == ("repair", "deployed", commit)
        assert head(recette) == commit
        sandbox.wait_healthy(RECETTE, timeout=10)
        assert not recette.file(STATE).exists
    finally:
        recette.check_output("systemctl start odoo-deploy-repair.timer")


def test_ctrl_c_or_a_killed_client_leaves_the_deploy_going_to_a_clean_end(sandbox, recette):
    commit = sandbox.push_commit("slow/ten", "Ten seconds", slow_update(10, "18.0.4.0.0", False))
    before = len(history(recette))
    client = subprocess.Popen(
        ["ssh", "-tt", "-F", str(USERS_SSH_CONFIG), RECETTE]
        + [f"sudo -u odoo {DEPLOY} origin/slow/ten"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: state_step(recette) == "updating", 120, "the update")
        client.stdin.write(b"\x03")  # Ctrl-C in the operator's terminal
        client.stdin.flush()
        time.sleep(2)
        assert state_step(recette) == "updating"  # the update goes on
    finally:
        client.kill()  # then the operator's connection drops
        client.wait()
    wait_for(lambda: len(history(recette)) > before, 120, "the deploy's end")
    entry = history(recette)[-1]
    assert (entry["action"], entry["result"], entry["to"]) == ("deploy", "deployed", commit)
    assert head(recette) == commit
    sandbox.wait_healthy(RECETTE, timeout=10)
    log = recette.file(entry["log"]).content_string
    assert "Updating addons for their hash changed: oca_france_all." in log


def test_status_shows_release_health_history_snapshots_and_disk(recette):
    result = recette.run(f"sudo -u odoo {DEPLOY} --status")
    assert result.rc == 0, result.stderr
    out = result.stdout
    assert f"deployed:         (no tag) {head(recette)[:12]}" in out
    assert "service:          odoo-oca-france.service active, health ok" in out
    assert "last deploys" in out
    assert re.search(r"deploy origin/slow/ten by \S+: deployed \(\w{12} -> \w{12}, \d+ s", out)
    assert re.search(r" repair \S* by \S+: (repaired|deployed)", out)
    assert re.search(rf"  {DB[RECETTE]}-snap-\d{{8}}T\d{{6}}: \d+ MiB, \d+ files", out)
    assert re.search(r"free disk: \S+ on /var/lib/postgresql, \S+ on ", out)


def test_dry_run_lists_commits_and_changed_addons_and_changes_nothing(sandbox, recette):
    sandbox.push_commit("dry/run", "Dry run candidate", slow_update(0, "18.0.5.0.0", False))
    before = (head(recette), main_pid(recette), len(history(recette)))
    result = recette.run(f"sudo -u odoo {DEPLOY} --dry-run origin/dry/run")
    assert result.rc == 0, result.stdout + result.stderr
    assert "Dry run candidate" in result.stdout
    after = result.stdout.split("addons whose files changed:\n")[1].splitlines()
    assert list(itertools.takewhile(lambda line: line.startswith("  "), after)) == [
        "  oca_france_all"
    ]
    assert "click-odoo-update --list-only with origin/dry/run:" in result.stdout
    assert "Updating addons for their hash changed: oca_france_all." in result.stdout
    assert "List-only selected, update is not performed." in result.stdout
    assert not recette.file("/home/odoo/.odoo_dumps/prepared/" + head(recette)).exists
    assert "dry run: nothing was changed" in result.stdout
    assert (head(recette), main_pid(recette), len(history(recette))) == before


def test_a_short_disk_is_refused_before_anything_is_touched(sandbox, recette):
    margin = "deploy_disk_margin_mib=100000000"  # 95 TiB: more than any disk here
    applied = sandbox.apply("--limit", RECETTE, "--data", margin)
    assert applied.returncode == 0, applied.stdout[-3000:]
    try:
        before = (head(recette), main_pid(recette), len(history(recette)))
        snapshots = recette.check_output("ls /home/odoo/.odoo_dumps/snapshots")
        result = deploy(recette, "origin/dry/run")
        assert result.rc == 2, result.stdout + result.stderr
        assert "not enough free disk for the snapshot" in result.stderr
        assert "deploy_disk_margin_mib" in result.stderr
        assert (head(recette), main_pid(recette), len(history(recette))) == before
        assert recette.check_output("ls /home/odoo/.odoo_dumps/snapshots") == snapshots
    finally:
        restored = sandbox.apply("--limit", RECETTE)
        assert restored.returncode == 0
