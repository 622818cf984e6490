"""Downtime and rollback of a deploy, the previous deploy script and today's, in one run on
the sandbox's recette (a benchmark, not a test).

    sudo make sandbox && sudo .venv/bin/python tests/benchmark_deploys.py   # or: make bench

For a database of about 100 MB, then about 1 GB, each with 2 GB of incompressible
attachments: a deploy without migration (downtime: from the site going down to healthy
again, seen from outside by polling /web/health every 0.1 s), and a deploy whose update
fails (rollback: from the failure, as the deploy logs it, to healthy again). Measured in the
same run: the host programs of commit PREVIOUS_PROGRAMS (the last in bash), installed beside
today's with that commit's host config, and the ratio of today's to them; and the deploy
script of commit PREVIOUS_DEPLOY (pg_dump + tar of the filestore while stopped, pg_restore +
untar to roll back), rendered with the same data.
Leaves the generated data in place: tear the sandbox down afterwards (make sandbox-down).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import benchmark_backups
from benchmark_backups import add_attachments, as_odoo, note, ssh

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))
STATE_DIR = Path("/var/lib/oca-france-sandbox")
RECETTE = "oca-france-recette"
DB = "oca-france-recette"
HOME = "/home/odoo"
PREVIOUS_DEPLOY = "50889e2"  # the last commit whose deploy dumped and archived while stopped
PREVIOUS_PROGRAMS = "cccbbb7"  # the last commit whose host programs were bash
PREVIOUS_DIR = "/opt/oca-france-previous"  # where they are installed, beside today's
PREVIOUS_CONFIG = "/etc/oca-france/host-previous.json"  # and their host config
FRONT = "http://10.231.1.2:8069"  # recette's front door, as the provider's proxy reaches it
HEALTH = f"{FRONT}/web/health?db_server_status=1"
SIZES = {"100 MB": 800_000, "1 GB": 8_000_000}  # rows of three md5s: about 130 bytes each


class Downtime(threading.Thread):
    """Polls the health page; the longest stretch without a healthy answer."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.longest = 0.0

    def run(self) -> None:
        down_since = None
        while not self.stop.is_set():
            try:
                with urllib.request.urlopen(HEALTH, timeout=1) as response:
                    healthy = b'"db_server_status": true' in response.read()
            except OSError:
                healthy = False
            now = time.monotonic()
            if not healthy and down_since is None:
                down_since = now
            elif healthy and down_since is not None:
                self.longest = max(self.longest, now - down_since)
                down_since = None
            time.sleep(0.1)


# Rendered in a process of its own: pyinfra's import patches threads (gevent), which would
# stop the health poller of this one.
RENDER_PREVIOUS = """
import subprocess, sys
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]
import conftest as project
from pyinfra.api.util import get_template
import shlex
from tasks.commands import uv_env, venv_sync_command
from tasks.render import host_config
source = subprocess.run(["git", "-C", sys.argv[1], "show", sys.argv[2] + ":templates/deploy.sh.j2"],
                        capture_output=True, text=True, check=True).stdout
inventory = project.load_inventory(project.TEST_SECRETS, project.TEST_TRANSFER_DATA)
data = project.release_data(inventory, sys.argv[3], "debian-13")
# What that script had and today's data no longer names: its dumps' directory and count.
old = {"backup_dir": data.odoo_dumps_dir + "/before-deploy", "backups_kept": 10}
# Its variables, from today's host config (its commands were strings of shell).
c = host_config(data)
variables = {
    "checkout": c["oca_france_dir"], "data_dir": data.odoo_data_dir, "db_name": c["odoo_db_name"],
    "environment_sql": c["environment_sql"], "health_url": c["health_url"],
    "in_use_file": c["production_data_in_use_file"], "lock_file": c["deploy_lock_file"],
    "login_url": c["login_url"], "odoo_user": c["odoo_user"],
    "production_data_dir": c["production_data_dir"], "ref_pattern": c["deploy_ref_pattern"],
    "repo_name": "oca-france-custom", "running_env": c["odoo_running_env"],
    "service": c["oca_france_service"],
    "start_timeout": c["odoo_start_timeout"], "sync_command": venv_sync_command(data),
    "neutralize_command": shlex.join(c["neutralize_command"]),
    "update_command": shlex.join(c["update_command"]), "uv_env": uv_env(data),
    "verify_command": "/opt/oca-france/bin/odoo-backup-verify",
    "addons_subdirs": c["odoo_addons_subdirs"],
    "restore_allowed": c["deploy_restore_allowed"],
}
with open("/tmp/deploy-previous.j2", "w") as template:
    template.write(source)
print(get_template("/tmp/deploy-previous.j2").render(**variables, **old), end="")
"""


# That commit's host config, rendered by that commit's own code (its settings' names).
RENDER_PREVIOUS_CONFIG = """
import json, sys
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]
import conftest as project
from tasks.render import host_config
inventory = project.load_inventory(project.TEST_SECRETS, project.TEST_TRANSFER_DATA)
print(json.dumps(host_config(project.release_data(inventory, sys.argv[2], "debian-13"))))
"""


def install_previous_programs() -> None:
    """The host programs of PREVIOUS_PROGRAMS in PREVIOUS_DIR (root-owned, as today's), with
    their host config in PREVIOUS_CONFIG."""
    with tempfile.TemporaryDirectory() as tree:
        archive = subprocess.run(
            ["git", "-C", str(PROJECT_DIR), "archive", PREVIOUS_PROGRAMS],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
        config = subprocess.run(
            [sys.executable, "-c", RENDER_PREVIOUS_CONFIG, tree, RECETTE],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        programs = subprocess.run(
            ["tar", "-C", f"{tree}/host", "-cf", "-", "bin", "lib"], capture_output=True, check=True
        ).stdout
    root_ssh = ["ssh", "-F", str(STATE_DIR / "ssh_config.root"), RECETTE]
    subprocess.run(
        [
            *root_ssh,
            f"rm -rf {PREVIOUS_DIR} && mkdir -p {PREVIOUS_DIR} && tar -C {PREVIOUS_DIR}"
            f" --no-same-owner -xf - && chmod -R go-w {PREVIOUS_DIR}",
        ],
        input=programs,
        check=True,
    )
    subprocess.run(
        [*root_ssh, f"cat > {PREVIOUS_CONFIG} && chmod 644 {PREVIOUS_CONFIG}"],
        input=config.encode(),
        check=True,
    )


def install_previous_deploy() -> None:
    """The deploy of PREVIOUS_DEPLOY, rendered with recette's data, as deploy-previous."""
    script = subprocess.run(
        [sys.executable, "-c", RENDER_PREVIOUS, str(PROJECT_DIR), PREVIOUS_DEPLOY, RECETTE],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    subprocess.run(
        [
            "ssh",
            "-F",
            str(STATE_DIR / "ssh_config.root"),
            RECETTE,
            f"cat > {HOME}/scripts/deploy-previous && chmod 755 {HOME}/scripts/deploy-previous",
        ],
        input=script,
        text=True,
        check=True,
    )


def push_commit(message: str, migration: str | None) -> str:
    """A new commit of the app on origin's branch bench/<n>: a version bump (no migration),
    or one whose post-migrate script runs `migration` (Python; e.g. one that fails)."""
    from e2e.conftest import Sandbox
    from e2e.test_2_deploy import set_version, with_migration

    version = f"18.0.9.{int(time.time()) % 100000}.0"
    change = with_migration(version, migration) if migration else set_version(version)
    branch = f"bench/{int(time.time() * 1000)}"
    Sandbox(env={}).push_commit(branch, message, change)
    return f"origin/{branch}"


# How each column's deploy is run on recette, as odoo.
DEPLOYS = {
    "now": f"{HOME}/scripts/deploy",
    "bash": f"env OCA_FRANCE_HOST_CONFIG={PREVIOUS_CONFIG} {PREVIOUS_DIR}/bin/deploy",
    "pg_dump": f"{HOME}/scripts/deploy-previous",
}


def timed_deploy(script: str, ref: str, traffic=None) -> tuple[float, str, int]:
    """The deploy's downtime seen from outside (through the front door, a held request counts
    as down after 1 s), its log and exit status; `traffic` (a Traffic) runs through it."""
    poller = Downtime()
    poller.start()
    if traffic is not None:
        traffic.start()
    result = subprocess.run(
        [
            "ssh",
            "-F",
            str(STATE_DIR / "ssh_config.root"),
            RECETTE,
            f"cd / && sudo -u odoo {DEPLOYS[script]} {ref} 2>&1",
        ],
        capture_output=True,
        text=True,
    )
    time.sleep(1)
    poller.stop.set()
    poller.join()
    if traffic is not None:
        traffic.stop()
    return poller.longest, result.stdout, result.returncode


def stamp(log: str, pattern: str) -> float:
    for line in log.splitlines():
        if re.search(pattern, line):
            return time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S"))
    sys.exit(f"no line matching {pattern!r} in:\n{log[-3000:]}")


def clients(script: str) -> tuple:
    """Today's deploy: a client reading and writing through the front door every 0.1 s, one
    for the deploy and one for the rollback."""
    if script != "now":
        return None, None
    from e2e.conftest import ADMIN, ADMIN_PARTNER
    from e2e.frontdoor_client import Traffic

    return tuple(Traffic(FRONT, DB, *ADMIN, ADMIN_PARTNER) for _ in range(2))


def measure(script: str) -> tuple:
    """(downtime, rollback time, the deploy's client, the rollback's client)."""
    through_deploy, through_rollback = clients(script)
    downtime, log, code = timed_deploy(
        script, push_commit("bench: no migration", None), through_deploy
    )
    if code != 0:
        sys.exit(f"{script}: deploy failed ({code}):\n{log[-3000:]}")
    ref = push_commit("bench: failing update", "cr.execute('UPDATE no_such_table SET x = 1')")
    _, log, code = timed_deploy(script, ref, through_rollback)
    if code != 5:
        sys.exit(f"{script}: expected a rollback (5), got {code}:\n{log[-3000:]}")
    failed = stamp(log, r"ERROR: the release failed")
    back = stamp(log, r"rolled back to")
    return downtime, back - failed, through_deploy, through_rollback


def requests_row(label: str, client) -> tuple[str, ...]:
    failed = len(client.failures())
    return (
        f"{label}: requests through the front door (failed of all, longest wait)",
        f"{failed} of {client.count()}, {client.longest():.1f} s",
        "-",
        "-",
        "-",
    )


def generate(rows: int) -> None:
    as_odoo(
        RECETTE,
        f"psql -Xq -d {DB} -c 'DROP TABLE IF EXISTS bench_payload' -c 'CREATE TABLE"
        " bench_payload AS SELECT g AS id, md5(random()::text) || md5(random()::text)"
        f" || md5(random()::text) AS payload FROM generate_series(1, {rows}) g'",
    )


def run() -> list[tuple[str, ...]]:
    install_previous_deploy()
    install_previous_programs()
    note("generating 2 GiB of attachments on recette")
    filestore = f"{HOME}/.local/share/Odoo/filestore/{DB}"
    as_odoo(RECETTE, f"mkdir -p {filestore}")
    add_attachments(2048, "bench", host=RECETTE, filestore=filestore)
    # recette's minute timers (the auto-deploy's fetch, the repair's look) take the lock for
    # a moment: the previous deploy script refuses a held lock instead of waiting.
    ssh(RECETTE, f"systemctl stop {' '.join(MINUTE_TIMERS)}")
    try:
        return measure_sizes()
    finally:
        ssh(RECETTE, f"systemctl start {' '.join(MINUTE_TIMERS)}", check=False)
        ssh(RECETTE, f"rm -rf {HOME}/scripts/deploy-previous {PREVIOUS_DIR} {PREVIOUS_CONFIG}")


MINUTE_TIMERS = ("odoo-auto-deploy.timer", "odoo-deploy-repair.timer")


def measure_sizes() -> list[tuple[str, ...]]:
    rows = []
    for label, count in SIZES.items():
        note(f"database of about {label}")
        generate(count)
        size = as_odoo(
            RECETTE, f"psql -XAt -d {DB} -c \"SELECT pg_size_pretty(pg_database_size('{DB}'))\""
        )
        before = measure("pg_dump")
        bash = measure("bash")
        now = measure("now")
        rows.append(
            (
                f"{label} database ({size}) + 2 GiB filestore: downtime, deploy without migration",
                f"{now[0]:.1f} s",
                f"{bash[0]:.1f} s",
                f"{now[0] / bash[0]:.2f}",
                f"{before[0]:.1f} s",
            )
        )
        rows.append(
            (
                f"{label} database ({size}) + 2 GiB filestore: rollback, failure to healthy",
                f"{now[1]:.0f} s",
                f"{bash[1]:.0f} s",
                f"{now[1] / max(bash[1], 1):.2f}",
                f"{before[1]:.0f} s",
            )
        )
        rows.append(requests_row(f"{label} database: deploy", now[2]))
        rows.append(requests_row(f"{label} database: rollback", now[3]))
        for row in rows[-4:]:  # as measured: a later failure keeps them
            note(" | ".join(row))
    return rows


HEADERS = (
    "measure",
    "deploy (now)",
    f"deploy, bash programs ({PREVIOUS_PROGRAMS})",
    "ratio now / bash",
    "deploy before (pg_dump + tar)",
)


def print_table(rows: list[tuple[str, ...]]) -> None:
    benchmark_backups.print_table(rows, HEADERS)


if __name__ == "__main__":
    print_table(run())
