"""One authority over the instance, for real: while a deploy is unfinished nothing but its
repair acts. Runs last (after the privilege test)."""

from __future__ import annotations

import json
import subprocess
import threading
import time

from .conftest import (
    DB,
    PROD,
    RECETTE,
    backup_dirs,
    deploy,
    head,
    psql,
    unit_invocation,
    wait_unit_done,
)
from .test_7_repair import (
    STATE,
    history,
    kill_at,
    slow_update,
    start_deploy,
    state_step,
    wait_for,
)

SERVICE = "odoo-oca-france.service"
LOCK = "/home/odoo/.odoo_dumps/.deploy.lock"


def test_an_apply_or_a_start_during_a_deploys_downtime_does_not_start_odoo(sandbox, recette):
    commit = sandbox.push_commit("slow/apply", "Slow for an apply", slow_update(40, "18.0.6.0.0"))
    start_deploy(recette, "deploy-under-apply", "origin/slow/apply")
    try:
        wait_for(lambda: state_step(recette) == "updating", 120, "the update")
        applied = sandbox.apply("--limit", RECETTE)
        output = applied.stdout + applied.stderr
        assert applied.returncode != 0
        assert "a deploy, a backup or a repair is running" in output, output[-3000:]
        assert "Beginning operation run" not in output  # stopped before any change
        started = recette.run(f"systemctl start {SERVICE}")
        assert started.rc != 0  # the guard refuses: the deploy is in its downtime
        journal = recette.check_output(f"journalctl -u {SERVICE} -o cat --no-pager -n 20")
        assert "is at step 'updating'" in journal
        assert not recette.service(SERVICE).is_running
        wait_for(lambda: not recette.file(STATE).exists, 180, "the deploy's end")
    finally:
        recette.run("systemctl reset-failed deploy-under-apply.service")
    assert head(recette) == commit
    sandbox.wait_healthy(RECETTE, timeout=30)


def apply_holds_the_lock(recette) -> bool:
    """The holder the lock names (read as root: no wait, unlike deploy --activity's)."""
    return recette.check_output(f"cat {LOCK} 2>/dev/null || true").startswith("apply (pid ")


def test_a_deploy_during_an_apply_waits_for_it_or_is_refused(sandbox, recette):
    """The apply holds the instance's lock while it changes what a deploy also changes (the
    venv, the server config, the service): a deploy then is refused (exit 2, naming the
    apply) or, with --wait, waits for the apply's end; the apply leaves the lock free."""
    applied: dict = {}

    def apply() -> None:
        applied["result"] = sandbox.apply("--limit", RECETTE)
        applied["ended"] = time.monotonic()

    applying = threading.Thread(target=apply)
    applying.start()
    try:
        wait_for(lambda: apply_holds_the_lock(recette), 600, "the apply's hold")
        assert json.loads(deploy(recette, "--activity").stdout)["held_by_apply"] is True
        refused = deploy(recette, "origin/18.0")
        assert refused.rc == 2, refused.stdout + refused.stderr
        assert "a repair is running" in refused.stderr and ": apply (pid " in refused.stderr
        waited = deploy(recette, "--wait", "900", "--dry-run", "origin/18.0")
        waited_until = time.monotonic()
    finally:
        applying.join(timeout=900)
    result = applied["result"]
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert waited.rc == 0, waited.stdout + waited.stderr
    assert "is held (a deploy, a backup or a repair: apply (pid " in waited.stderr
    assert "dry run: nothing was changed" in waited.stdout
    assert waited_until >= applied["ended"] - 5  # it went on once the apply was done
    assert json.loads(deploy(recette, "--activity").stdout)["held_by"] is None
    holds = recette.check_output("systemctl list-units --no-legend 'oca-france-apply-lock-*'")
    assert holds == ""  # released at the apply's end


def tag_for_prod(sandbox, tag: str, change) -> str:
    commit = sandbox.push_commit(f"release/{tag}", f"Release {tag}", change)
    subprocess.run(["git", "-C", str(sandbox.origin), "tag", "-f", tag, commit], check=True)
    return commit


def test_a_backup_waiting_on_a_killed_deploy_never_saves_its_half_state(sandbox, prod):
    """prod, a tag whose migration commits half its work, killed at 'updating' while the
    daily backup waits for the lock: the backup refuses, the good backups survive, and the
    repair puts prod back on the previous release within 2 minutes."""
    assert deploy(prod, "--status").rc == 0
    before = backup_dirs(prod)
    previous = head(prod)
    tag_for_prod(sandbox, "18.0-20261203", slow_update(300, "18.0.7.0.0"))
    prod.check_output("systemctl stop odoo-deploy-repair.timer")
    backup = unit_invocation(prod, "odoo-backup.service")
    try:
        start_deploy(prod, "killed-on-prod", "18.0-20261203")
        wait_for(lambda: state_step(prod) == "updating", 180, "the update on prod")
        prod.check_output("systemctl start --no-block odoo-backup.service")
        kill_at(prod, "killed-on-prod", "updating")
        assert wait_unit_done(prod, "odoo-backup.service", backup, timeout=120) == "exit-code"
        journal = prod.check_output("journalctl -u odoo-backup.service -o cat --no-pager -n 10")
        assert "no backup of a half-done database" in journal
        assert backup_dirs(prod) == before  # nothing new, nothing pruned
    finally:
        prod.check_output("systemctl start odoo-deploy-repair.timer")
        prod.run("systemctl reset-failed odoo-backup.service killed-on-prod.service")
    wait_for(lambda: not prod.file(STATE).exists, 120, "the periodic repair on prod")
    sandbox.wait_healthy(PROD, timeout=60)
    assert head(prod) == previous
    company = psql(prod, DB[PROD], "SELECT name FROM res_company ORDER BY id LIMIT 1")
    assert "(half-updated)" not in company  # the snapshot's data, not the half migration


SNAPSHOTS = "/home/odoo/.odoo_dumps/snapshots"
FAILING_START = "/etc/systemd/system/odoo-oca-france.service.d/zz-test-failing-start.conf"


def test_exit_4_only_when_the_previous_release_serves_again(sandbox, recette):
    """The snapshot fails (its directory made unwritable, in the test only): the previous
    release is started again, exit 4. When it does not start either (a failing
    ExecStartPre, test only), the deploy says the site is down: exit 6, its state kept for
    the repair, which puts the site back once the start works again."""
    previous = head(recette)
    sandbox.push_commit("exit4/target", "Exit 4", slow_update(1, "18.0.8.0.0", half_update=False))
    recette.check_output(
        f"mv {SNAPSHOTS} {SNAPSHOTS}.test-saved && install -d -o root -g root -m 755 {SNAPSHOTS}"
    )
    try:
        result = deploy(recette, "origin/exit4/target")
        assert result.rc == 4, result.stdout + result.stderr
        assert "the previous release is up again" in result.stdout
        sandbox.wait_healthy(RECETTE, timeout=10)
        assert head(recette) == previous
        assert not recette.file(STATE).exists
        assert history(recette)[-1]["result"] == "failed"

        recette.check_output(
            f"mkdir -p {FAILING_START.rsplit('/', 1)[0]}"
            f" && printf '[Service]\\nExecStartPre=/bin/false\\n' > {FAILING_START}"
            " && systemctl daemon-reload"
        )
        recette.check_output("systemctl stop odoo-deploy-repair.timer")
        result = deploy(recette, "origin/exit4/target")
        # (Restart= retries within RestartSec, its guard then repairs: look at once.)
        assert recette.file(STATE).exists  # for the repair
        assert result.rc == 6, result.stdout + result.stderr
        assert "the previous release did not start again: the site is down" in result.stderr
        assert history(recette)[-1]["result"] == "broken"
        assert not recette.service(SERVICE).is_running
    finally:
        recette.check_output(
            f"rm -rf {SNAPSHOTS} {FAILING_START} && mv {SNAPSHOTS}.test-saved {SNAPSHOTS}"
            " && systemctl daemon-reload && systemctl start odoo-deploy-repair.timer"
        )
    wait_for(lambda: not recette.file(STATE).exists, 150, "the repair")
    sandbox.wait_healthy(RECETTE, timeout=60)
    assert head(recette) == previous
    entry = history(recette)[-1]
    # Nothing to put back: the previous release had only to be started.
    assert (entry["action"], entry["result"], entry["failed_step"]) == (
        "repair",
        "repaired",
        "restarting",
    )
