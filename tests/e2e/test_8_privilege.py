"""Root writes nothing odoo can redirect: every path of odoo's home that an apply touches,
replaced by odoo with a symlink to a root-owned canary, then applied. A sudo login's uploads
pass where no other user reaches them. Runs last."""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
import shlex

import pytest

from .conftest import (
    HOSTS,
    ODOO_CONF,
    PROD,
    RECETTE,
    USERS_SSH_CONFIG,
    admin_password_accepted,
)

CANARY = "/root-canary"
CANARY_DIR = "/root-canary.d"
HOME = "/home/odoo"
# What the former layout had root write in odoo's home, and what the apply writes there now
# (as odoo): each becomes a link to the canary.
TIMERS = "odoo-auto-deploy.timer odoo-deploy-repair.timer"  # nothing may deploy meanwhile
PLANTED = {
    RECETTE: [
        f"{HOME}/.odoorc",
        f"{HOME}/.ssh/authorized_keys",
        f"{HOME}/scripts/deploy",
    ],
    PROD: [
        f"{HOME}/.odoorc",
        f"{HOME}/.ssh/backup-transfer",
        f"{HOME}/.ssh/backup-transfer.known_hosts",
        f"{HOME}/scripts/deploy",
    ],
}
# Directories an apply writes into, replaced by a link to a root-owned directory.
PLANTED_DIRS = {RECETTE: [f"{HOME}/.odoo_dumps/incoming"], PROD: [f"{HOME}/.odoo_dumps/backups"]}


def as_odoo(host, command: str) -> None:
    host.check_output(f"cd / && sudo -u odoo sh -c {shlex.quote(command)}")


def canaries(host) -> str:
    return host.check_output(
        f"stat -c '%U:%G %a %s %Y' {CANARY} {CANARY_DIR}; ls -A {CANARY_DIR}; sha256sum {CANARY}"
    )


@pytest.fixture
def planted(sandbox):
    hosts = {name: sandbox.host(name) for name in HOSTS}
    hosts[RECETTE].check_output(f"systemctl stop {TIMERS}")
    for name, host in hosts.items():
        host.check_output(
            f"echo canary > {CANARY} && chmod 644 {CANARY} && install -d -m 755 {CANARY_DIR}"
        )
        links = [
            f"mkdir -p $(dirname {p}) && rm -rf {p} && ln -s {CANARY} {p}" for p in PLANTED[name]
        ]
        links += [f"rm -rf {p} && ln -s {CANARY_DIR} {p}" for p in PLANTED_DIRS[name]]
        as_odoo(host, " && ".join(links))
    yield hosts
    for name, host in hosts.items():
        as_odoo(host, f"rm -f {' '.join(PLANTED[name] + PLANTED_DIRS[name])}")
        host.check_output(f"rm -rf {CANARY} {CANARY_DIR}")
    restored = sandbox.apply()
    hosts[RECETTE].check_output(f"systemctl start {TIMERS}")
    assert restored.returncode == 0, restored.stdout[-3000:] + restored.stderr[-3000:]


def test_an_apply_never_writes_through_links_odoo_planted(sandbox, planted):
    before = {name: canaries(host) for name, host in planted.items()}
    result = sandbox.apply()
    output = result.stdout + result.stderr
    for name, host in planted.items():
        assert canaries(host) == before[name], (name, output[-3000:])
        assert host.check_output(f"cat {CANARY}") == "canary"
        assert host.check_output(f"stat -c %U:%G {CANARY}") == "root:root"
    if result.returncode == 0:
        # Repaired: the legacy files are gone, the entry point is a link to the program again.
        for host in planted.values():
            assert (
                host.check_output(f"readlink {HOME}/scripts/deploy") == "/opt/oca-france/bin/deploy"
            )
            assert not host.file(f"{HOME}/.odoorc").exists
    else:
        refusals = ("Operation not permitted", "Permission denied", "exists and is not")
        assert any(refusal in output for refusal in refusals), output[-3000:]


# The README's way in: a non-root login with passwordless sudo (the sandbox reaches prod so).
SUDO_LOGIN = "ops"
UPLOADS = "/var/lib/oca-france-apply"  # group_data's apply_upload_dir
# What prod's apply uploads that holds secrets (written through sudo, as root or as odoo).
SECRET_FILES = [ODOO_CONF, "/etc/oca-france/backup-transfer"]
INTRUDER = "mallory"  # another local user, who knows pyinfra's default temporary names


def default_temp_names(paths: list[str]) -> list[str]:
    """Where pyinfra puts an upload through sudo by default: /tmp/pyinfra-<sha1 of the path>."""
    names = []
    for path in paths:
        for dest in (path, path + ".pyinfra-new"):
            names.append(f"/tmp/pyinfra-{hashlib.sha1(dest.encode()).hexdigest()}")
    return names


def test_prod_is_configured_through_a_sudo_login_whose_uploads_no_one_else_reaches(sandbox, prod):
    entry = USERS_SSH_CONFIG.read_text().split(f"Host {PROD}\n", 1)[1].split("\nHost ", 1)[0]
    assert f"User {SUDO_LOGIN}\n" in entry  # pyinfra logs in as the sudo user, not root
    uploads = prod.file(UPLOADS)
    assert (uploads.user, uploads.mode) == (SUDO_LOGIN, 0o711)
    assert prod.check_output(f"ls -A {UPLOADS}") == ""  # nothing left behind

    # Another user plants files, writable by anyone, at pyinfra's default temporary names.
    traps = default_temp_names(SECRET_FILES)
    prod.check_output(f"id {INTRUDER} || useradd --system {INTRUDER}")
    prod.check_output(
        f"cd / && sudo -u {INTRUDER} sh -c "
        + shlex.quote(" && ".join(f"install -m 666 /dev/null {trap}" for trap in traps))
    )
    password = "rotated-" + secrets.token_hex(8)
    rotated = dataclasses.replace(
        sandbox, env={**sandbox.env, "ODOO_OCA_FRANCE_ADMIN_PASSWORD_PROD": password}
    )
    before = prod.check_output(f"stat -c %i {ODOO_CONF}")
    try:
        result = rotated.apply("--limit", PROD)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-3000:]
        assert password not in output
        assert prod.check_output(f"stat -c %i {ODOO_CONF}") != before  # rewritten, via sudo
        odoorc = prod.file(ODOO_CONF)
        assert (odoorc.user, odoorc.group, odoorc.mode) == ("root", "odoo", 0o640)
        assert admin_password_accepted(sandbox, PROD, password)
        # The secret went through the login's own directory, never through /tmp.
        sizes = prod.check_output(f"stat -c '%U %s' {' '.join(traps)}").splitlines()
        assert sizes == [f"{INTRUDER} 0"] * len(traps)
        assert prod.check_output(f"ls -A {UPLOADS}") == ""
    finally:
        prod.check_output(f"rm -f {' '.join(traps)} && userdel {INTRUDER}")
        restored = sandbox.apply("--limit", PROD)
        assert restored.returncode == 0, restored.stdout[-3000:] + restored.stderr[-3000:]
    assert admin_password_accepted(
        sandbox, PROD, sandbox.env["ODOO_OCA_FRANCE_ADMIN_PASSWORD_PROD"]
    )


def test_root_running_a_program_from_odoos_home_runs_nothing_planted_there(recette):
    """Root runs deploy --status or odoo-status from ~odoo (or the app's checkout, which
    whoever pushes to 18.0 controls): modules planted there are never imported."""
    marker = "/tmp/planted-module-ran"  # whoever ran it could write there
    planted = f"import pathlib\npathlib.Path({marker!r}).write_text('ran as root')\n"
    recette.check_output(f"rm -f {marker}")
    for module in ("json.py", "argparse.py"):
        as_odoo(recette, f"printf %s {shlex.quote(planted)} > {HOME}/{module}")
    try:
        for program in ("deploy --status", "odoo-status", "odoo-backup-verify --help"):
            recette.run(f"cd {HOME} && /opt/oca-france/bin/{program}")
            assert not recette.file(marker).exists, program
    finally:
        as_odoo(recette, f"rm -f {HOME}/json.py {HOME}/argparse.py")
