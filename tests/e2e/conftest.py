"""The end-to-end suite's sandbox: two booted containers, recette on Debian 13 and prod on
Debian 12, configured by deploy.py.

One sandbox for the whole session, started from scratch and torn down at the end, even when
a test or the setup fails. Needs root (containers, network namespaces, nftables).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import testinfra
from conftest import PROJECT_DIR

SANDBOX_SCRIPT = PROJECT_DIR / "tests" / "sandbox" / "sandbox.sh"
STATE_DIR = Path(os.environ.get("SANDBOX_STATE_DIR", "/var/lib/oca-france-sandbox"))
# pyinfra and make reach the hosts as a user's SSH config says (prod: a non-root sudo user);
# the tests check the hosts' state through root logins of their own.
USERS_SSH_CONFIG = STATE_DIR / "ssh_config"
ROOT_SSH_CONFIG = STATE_DIR / "ssh_config.root"
RECETTE, PROD = "oca-france-recette", "oca-france-prod"
BACKUP_HOST = "oca-france-backup"  # the off-site backup host: no Odoo
HOSTS = [RECETTE, PROD]
RELEASE = {RECETTE: "debian-13", PROD: "debian-12"}
# Sandbox-only group data, on top of the project's (the Debian 13 host's wkhtmltopdf .deb).
GROUP_DATA = ["--group-data", str(STATE_DIR / "group_data")]
DB = {RECETTE: "oca-france-recette", PROD: "oca-france-production"}
DEPLOY = "/home/odoo/scripts/deploy"  # odoo's entry point: a link to BIN/deploy
BIN = "/opt/oca-france/bin"  # the host programs, root-owned
ODOO_CONF = "/etc/oca-france/odoo.conf"  # the server's config: root:odoo 0640
CHECKOUT = "/home/odoo/oca-france"
ADMIN = ("admin", "admin")  # base's admin user (login, password), as Odoo creates a database
ADMIN_PARTNER = 3  # its partner (base.partner_admin)


def read_env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs}


def changed_operations(output: str) -> int:
    """The 'Success' (= changed) column of pyinfra's Grand total row."""
    match = re.search(r"Grand total\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", output)
    assert match, f"no summary in pyinfra's output:\n{output[-3000:]}"
    changed, errors = match.group(2), match.group(3)
    assert errors == "-", f"pyinfra reported errors:\n{output[-3000:]}"
    return 0 if changed == "-" else int(changed)


def what_changed(output: str) -> str:
    """The operations pyinfra reports as changed, and on which host (for assert messages)."""
    changed, operation = [], None
    for line in output.splitlines():
        if line.startswith("--> Starting operation: "):
            operation = line.removeprefix("--> Starting operation: ").strip()
        elif line.strip().endswith("] Success") or "] Will " in line:
            changed.append(f"{operation}: {line.strip()}")
    return "changed:\n" + "\n".join(changed)


@dataclass
class Sandbox:
    env: dict[str, str]
    addresses: dict[str, str] = field(default_factory=dict)

    @property
    def secrets(self) -> list[str]:
        """The admin passwords, and each line of the transfer key's private body."""
        passwords = [
            v for k, v in self.env.items() if k.startswith("ODOO_OCA_FRANCE_ADMIN_PASSWORD")
        ]
        key = Path(self.env["OCA_FRANCE_BACKUP_TRANSFER_KEY_FILE"]).read_text()
        return passwords + [line for line in key.splitlines() if not line.startswith("-----")]

    def without_secrets(self) -> Sandbox:
        """The same sandbox for a run with an empty .env: no admin password, no passphrase, no
        key pair."""
        secret = (
            "ODOO_OCA_FRANCE_ADMIN_PASSWORD",
            "ODOO_OCA_FRANCE_BORG_PASSPHRASE",
            "OCA_FRANCE_BACKUP_TRANSFER_KEY_FILE",
            "OCA_FRANCE_OFFSITE_KEY_FILE",
        )
        env = {k: v for k, v in self.env.items() if not k.startswith(secret)}
        return dataclasses.replace(self, env=env)

    def run_env(self) -> dict[str, str]:
        secret = (
            "ODOO_OCA_FRANCE_",
            "OCA_FRANCE_BACKUP_TRANSFER_KEY_FILE",
            "OCA_FRANCE_OFFSITE_KEY_FILE",
        )
        clean = {k: v for k, v in os.environ.items() if not k.startswith(secret)}
        return {**clean, **self.env}

    def pyinfra(self, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
        """pyinfra on the project's own inventory, as `make apply-*` runs it."""
        return subprocess.run(
            ["pyinfra", *args],
            cwd=PROJECT_DIR,
            env=self.run_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def apply(self, *args: str) -> subprocess.CompletedProcess:
        return self.pyinfra("-y", "inventory.py", "deploy.py", *GROUP_DATA, *args)

    def make(self, target: str, **variables: str) -> subprocess.CompletedProcess:
        assignments = [f"{key}={value}" for key, value in variables.items()]
        return subprocess.run(
            ["make", "--no-print-directory", target, *assignments],
            cwd=PROJECT_DIR,
            env=self.run_env(),
            capture_output=True,
            text=True,
            timeout=600,
        )

    def host(self, name: str):
        return testinfra.get_host(f"ssh://{name}", ssh_config=str(ROOT_SSH_CONFIG))

    def ssh(self, name: str, command: str, stdin: bytes | None = None) -> bytes:
        result = subprocess.run(
            ["ssh", "-F", str(ROOT_SSH_CONFIG), name, command],
            input=stdin,
            capture_output=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr.decode()
        return result.stdout

    def url(self, name: str, path: str) -> str:
        return f"http://{self.addresses[name]}:8069{path}"

    def get(self, name: str, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url(name, path), timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def health(self, name: str) -> dict:
        status, body = self.get(name, "/web/health?db_server_status=1")
        return {"http_status": status, **json.loads(body)}

    def wait_healthy(self, name: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.health(name).get("db_server_status") is True:
                    return
            except (OSError, ValueError):
                pass
            time.sleep(1)
        pytest.fail(f"{name}: /web/health did not pass within {timeout}s")

    @property
    def origin(self) -> Path:
        """The app's origin repository (the hosts see it as file:///srv/app-origin.git)."""
        return STATE_DIR / "app-origin.git"

    def push_commit(self, branch: str, message: str, change) -> str:
        """Commit `change(worktree)` on top of origin's 18.0, push it to `branch`."""
        origin = self.origin
        with tempfile.TemporaryDirectory() as work:
            git = ["git", "-C", work, "-c", "user.name=tests", "-c", "user.email=tests@localhost"]
            subprocess.run(["git", "clone", "-q", "-b", "18.0", str(origin), work], check=True)
            change(Path(work))
            subprocess.run([*git, "add", "-A"], check=True)
            subprocess.run([*git, "commit", "-q", "-m", message], check=True)
            subprocess.run([*git, "push", "-q", "--force", "origin", f"HEAD:{branch}"], check=True)
            return subprocess.run(
                [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
            ).stdout.strip()


def sandbox_command(action: str) -> None:
    subprocess.run(["bash", str(SANDBOX_SCRIPT), action], check=True, timeout=1200)


@pytest.fixture(scope="session")
def sandbox():
    if os.geteuid() != 0:
        pytest.fail("the end-to-end suite boots containers: run it as root (sudo make test)")
    sandbox_command("down")  # a sandbox left running by `make sandbox` is replaced
    try:
        sandbox_command("up")
        env = read_env_file(STATE_DIR / "env")
        config = USERS_SSH_CONFIG.read_text()
        addresses = dict(re.findall(r"Host (\S+)\n\s+HostName (\S+)", config))
        box = Sandbox(env=env, addresses=addresses)
        first = box.apply()
        assert first.returncode == 0, first.stdout[-5000:] + first.stderr[-5000:]
        assert changed_operations(first.stdout + first.stderr) > 0
        yield box
    finally:
        subprocess.run(["bash", str(SANDBOX_SCRIPT), "down"], timeout=300)


@pytest.fixture(scope="session")
def recette(sandbox):
    return sandbox.host(RECETTE)


@pytest.fixture(scope="session")
def prod(sandbox):
    return sandbox.host(PROD)


@pytest.fixture(params=HOSTS)
def any_host(request, sandbox):
    return request.param, sandbox.host(request.param)


def deploy(host, *args: str):
    return host.run(f"sudo -u odoo {DEPLOY} {shlex.join(args)}")


def head(host) -> str:
    return host.check_output(f"sudo -u odoo git -C {CHECKOUT} rev-parse HEAD")


def main_pid(host) -> str:
    return host.check_output("systemctl show -p MainPID --value odoo-oca-france.service")


def psql(host, db: str, query: str) -> str:
    return host.check_output(f"sudo -u odoo psql -XAtq -d {db} -c {shlex.quote(query)}")


def config_parameter(host, db: str, key: str) -> str:
    return psql(host, db, f"SELECT value FROM ir_config_parameter WHERE key = '{key}'")


def admin_password_accepted(sandbox, name: str, password: str) -> bool:
    """Odoo's own check of the master password against its config: odoo shell reads the
    script on its stdin, so the password is on no command line."""
    script = f"print('ACCEPTED' if odoo.tools.config.verify_admin_password({password!r}) else 'NO')"
    output = sandbox.ssh(
        name,
        f"cd / && sudo -u odoo {CHECKOUT}/.venv/bin/odoo shell -c {ODOO_CONF} --no-http"
        " --log-level=warn",
        stdin=script.encode() + b"\n",
    )
    return output.decode().strip().splitlines()[-1] == "ACCEPTED"


def installed_version(host, db: str, addon: str) -> str:
    """The addon's version as Odoo recorded it (18.0.x.y.z), "" when not installed."""
    return psql(
        host,
        db,
        f"SELECT latest_version FROM ir_module_module WHERE name = '{addon}'"
        " AND state = 'installed'",
    )


# Odoo's base neutralize.sql keeps the autovacuum cron, and adds a mail server that sends
# nowhere (host 'invalid') so that no fallback server is used.
AUTOVACUUM = "(SELECT res_id FROM ir_model_data WHERE module = 'base' AND name = 'autovacuum_job')"


def neutralization(host, db: str) -> dict:
    """What `odoo neutralize` changes: the flag, live mail servers, crons, and the app's
    secret that its own neutralize.sql (oca_france_all) removes."""
    count = lambda sql: int(psql(host, db, sql))  # noqa: E731
    return {
        "flag": config_parameter(host, db, "database.is_neutralized"),
        "live_mail_servers": count(
            "SELECT count(*) FROM ir_mail_server WHERE active AND smtp_host <> 'invalid'"
        ),
        "active_crons": count(
            f"SELECT count(*) FROM ir_cron WHERE active AND id NOT IN {AUTOVACUUM}"
        ),
        "app_secret": count(
            "SELECT count(*) FROM ir_config_parameter WHERE key = 'oca_france.partner_api_token'"
        ),
    }


NEUTRALIZED = {"flag": "true", "live_mail_servers": 0, "active_crons": 0, "app_secret": 0}


def login_page_ok(sandbox, name: str) -> bool:
    """Odoo's real login page: 200, with its login form."""
    status, page = sandbox.get(name, "/web/login")
    return status == 200 and 'name="login"' in page


# A custom-format dump as a newer PostgreSQL (99) writes it: archive version 1.99 (its header
# laid out as since 1.15: compression in one byte, not an int) and the server and pg_dump
# versions it records; the manifest follows, so that only pg_restore can tell.
FUTURE_DUMP = r"""
import hashlib, json, pathlib, re, sys
backup = pathlib.Path(sys.argv[1])
manifest = json.loads((backup / "manifest.json").read_text())
dump = backup / manifest["dump"]
data = bytearray(dump.read_bytes())
if data[6] < 15:
    data[11 : 12 + data[8]] = b"\x00"
data[6] = 99
head = re.sub(rb"\d\d\.", b"99.", bytes(data[:512]))
data[:512] = head
dump.unlink()
dump.write_bytes(data)
manifest["dump_sha256"] = hashlib.sha256(data).hexdigest()
manifest["dump_bytes"] = len(data)
(backup / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
"""


def make_dump_from_the_future(host, backup: str) -> None:
    host.check_output(
        f"cd / && sudo -u odoo python3 -c {shlex.quote(FUTURE_DUMP)} {shlex.quote(backup)}"
    )


BACKUPS = "/home/odoo/.odoo_dumps/backups"
PRODUCTION_DATA = "/home/odoo/.odoo_dumps/production-data"
INCOMING = "/home/odoo/.odoo_dumps/incoming"


def filestore(name: str) -> str:
    return f"/home/odoo/.local/share/Odoo/filestore/{DB[name]}"


def unit_invocation(host, unit: str) -> str:
    return host.check_output(f"systemctl show -p InvocationID --value {unit}")


def wait_unit_done(host, unit: str, previous_invocation: str, timeout: float = 120) -> str:
    """Wait until `unit` ran again (a new invocation) and finished; its result."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        show = host.check_output(f"systemctl show -p InvocationID,ActiveState,Result {unit}")
        state = dict(line.split("=", 1) for line in show.splitlines())
        if state["InvocationID"] not in ("", previous_invocation) and state["ActiveState"] in (
            "inactive",
            "failed",
        ):
            return state["Result"]
        time.sleep(0.5)
    pytest.fail(f"{unit} did not run within {timeout}s")


def power_cut_and_boot(name: str) -> None:
    """Every process of the container killed at once, as a power cut would; then booted."""
    subprocess.run(["bash", str(SANDBOX_SCRIPT), "power-cut", name], check=True, timeout=120)
    subprocess.run(["bash", str(SANDBOX_SCRIPT), "up"], check=True, timeout=300)


def run_backup(prod, recette=None):
    """Start odoo-backup.service as odoo (polkit lets it start its own units) and wait; then
    for the transfer it triggers, and recette's acceptance when `recette` is given."""
    transfer = unit_invocation(prod, "odoo-backup-transfer.service")
    accept = unit_invocation(recette, "odoo-production-data-accept.service") if recette else ""
    result = prod.run("sudo -u odoo systemctl start odoo-backup.service")
    if result.rc == 0:
        assert wait_unit_done(prod, "odoo-backup-transfer.service", transfer) == "success"
        if recette is not None:
            wait_unit_done(recette, "odoo-production-data-accept.service", accept)
    return result


def backup_dirs(host, directory: str = BACKUPS) -> list[str]:
    return host.check_output(f"ls -A {directory}").split()
