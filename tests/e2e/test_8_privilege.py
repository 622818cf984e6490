"""Root writes nothing odoo can redirect: every path of odoo's home that an apply touches,
replaced by odoo with a symlink to a root-owned canary, then applied. Runs last."""

from __future__ import annotations

import shlex

import pytest

from .conftest import HOSTS, PROD, RECETTE

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
