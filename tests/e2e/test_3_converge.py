"""Re-applying: nothing changes on a converged host, a dry run shows without touching, and
no output ever shows a secret."""

from __future__ import annotations

import re
import subprocess

import pytest

from tasks.util import STAGED_SUFFIX

from .conftest import (
    BIN,
    GROUP_DATA,
    HOSTS,
    ODOO_CONF,
    PROD,
    RECETTE,
    SANDBOX_SCRIPT,
    STATE_DIR,
    changed_operations,
    head,
    main_pid,
    what_changed,
)

HOST_CONFIG = "/etc/oca-france/host.json"
WATCHED = [ODOO_CONF, HOST_CONFIG, f"{BIN}/deploy"]


def fingerprint(host) -> tuple[str, str]:
    return host.check_output(f"sha256sum {' '.join(WATCHED)}"), main_pid(host)


def test_second_apply_changes_nothing(sandbox, recette):
    deployed = head(recette)  # the deploy script moved it: pyinfra must leave it there
    result = sandbox.apply()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert changed_operations(output) == 0, what_changed(output)
    assert head(recette) == deployed


def test_sandbox_up_on_a_running_sandbox_keeps_it(sandbox):
    pids = {name: (STATE_DIR / f"{name}.pid").read_text() for name in HOSTS}
    subprocess.run(["bash", str(SANDBOX_SCRIPT), "up"], check=True, timeout=300)
    assert {name: (STATE_DIR / f"{name}.pid").read_text() for name in HOSTS} == pids
    for name in HOSTS:
        sandbox.wait_healthy(name)


@pytest.mark.parametrize(
    ("name", "target"),
    [(RECETTE, "diff-recette"), (PROD, "diff-prod")],  # as root, through the sudo login
)
def test_dry_run_shows_the_diff_changes_nothing_and_hides_secrets(sandbox, name, target):
    host = sandbox.host(name)
    before = fingerprint(host)
    result = sandbox.make(
        target,
        PYINFRA_ARGS=" ".join(
            [*GROUP_DATA, "-vvv", "--data odoo_start_timeout=121 --data odoo_workers=3"]
        ),
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    # The host programs' config shows its diff (it holds no secret).
    assert re.search(r'\+\s+"odoo_start_timeout": 121,', output), output[-5000:]
    assert re.search(r'-\s+"odoo_start_timeout": 120,', output)
    assert "Will write /etc/oca-france/odoo.conf (content not shown" in output
    for secret in sandbox.secrets:
        assert secret not in output
    assert fingerprint(host) == before


def inodes(host) -> list[str]:
    return host.check_output(f"stat -c %i {ODOO_CONF} {HOST_CONFIG}").split()


def haproxy_worker(host) -> str:
    master = host.check_output("systemctl show -p MainPID --value haproxy.service")
    return host.check_output(f"cat /proc/{master}/task/*/children")


def test_a_restart_an_apply_died_before_is_done_by_the_next_apply(sandbox, recette):
    """An apply killed between writing a config and the restart (or reload) it gated on the
    change: the next one sees no change in the file, yet the process runs the older one."""
    odoo, worker = main_pid(recette), haproxy_worker(recette)
    # What that apply left: each file as the apply writes it, newer than its process.
    recette.check_output(f"touch {ODOO_CONF} /etc/haproxy/haproxy.cfg")
    caught_up = sandbox.apply("--limit", RECETTE)
    output = caught_up.stdout + caught_up.stderr
    assert caught_up.returncode == 0, output[-5000:]
    assert changed_operations(output) == 2, what_changed(output)
    assert main_pid(recette) != odoo and haproxy_worker(recette) != worker
    sandbox.wait_healthy(RECETTE)


def test_config_change_restarts_odoo_once_and_never_prints_the_secret(sandbox, recette):
    pid = main_pid(recette)
    before = inodes(recette)
    changed = sandbox.apply(
        "-vvv", "--limit", RECETTE, "--data", "odoo_workers=3", "--data", "odoo_start_timeout=121"
    )
    output = changed.stdout + changed.stderr
    assert changed.returncode == 0, output[-5000:]
    for secret in sandbox.secrets:
        assert secret not in output
    assert "workers = 3\n" in recette.file(ODOO_CONF).content_string
    assert '"odoo_start_timeout": 121' in recette.file(HOST_CONFIG).content_string
    # Each file replaced by a rename, never rewritten in place: a timer's program reading
    # host.json at that moment sees the old file or the new one, not half of one.
    after = inodes(recette)
    assert after[0] != before[0] and after[1] != before[1], (before, after)
    assert recette.file(ODOO_CONF).mode == 0o640 and recette.file(ODOO_CONF).group == "odoo"
    staged = f"find /etc/oca-france /etc/systemd/system {BIN} -name '*{STAGED_SUFFIX}'"
    assert recette.check_output(staged) == ""
    assert main_pid(recette) != pid
    sandbox.wait_healthy(RECETTE)

    restored = sandbox.apply("--limit", RECETTE)
    assert changed_operations(restored.stdout + restored.stderr) > 0
    sandbox.wait_healthy(RECETTE)
    pid = main_pid(recette)
    again = sandbox.apply("--limit", RECETTE)
    assert changed_operations(again.stdout + again.stderr) == 0
    assert main_pid(recette) == pid
