"""Re-applying: nothing changes on a converged host, a dry run shows without touching, and
no output ever shows a secret."""

from __future__ import annotations

import re
import subprocess

from .conftest import (
    BIN,
    GROUP_DATA,
    HOSTS,
    ODOO_CONF,
    RECETTE,
    SANDBOX_SCRIPT,
    STATE_DIR,
    changed_operations,
    head,
    main_pid,
    what_changed,
)

WATCHED = [ODOO_CONF, "/etc/oca-france/host.json", f"{BIN}/deploy"]


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


def test_dry_run_shows_the_diff_changes_nothing_and_hides_secrets(sandbox, recette):
    before = fingerprint(recette)
    result = sandbox.make(
        "diff-recette",
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
    assert fingerprint(recette) == before


def test_config_change_restarts_odoo_once_and_never_prints_the_secret(sandbox, recette):
    pid = main_pid(recette)
    changed = sandbox.apply("-vvv", "--limit", RECETTE, "--data", "odoo_workers=3")
    output = changed.stdout + changed.stderr
    assert changed.returncode == 0, output[-5000:]
    for secret in sandbox.secrets:
        assert secret not in output
    assert "workers = 3\n" in recette.file(ODOO_CONF).content_string
    assert main_pid(recette) != pid
    sandbox.wait_healthy(RECETTE)

    restored = sandbox.apply("--limit", RECETTE)
    assert changed_operations(restored.stdout + restored.stderr) > 0
    sandbox.wait_healthy(RECETTE)
    pid = main_pid(recette)
    again = sandbox.apply("--limit", RECETTE)
    assert changed_operations(again.stdout + again.stderr) == 0
    assert main_pid(recette) == pid
