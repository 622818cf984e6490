"""The two OCA France hosts, by SSH alias (resolved through ~/.ssh/config, see README).

Secrets are read here, from the environment or the git-ignored `.env`, and attached to the
group that needs them. A run that applies deploy.py to one environment (`--limit recette`)
needs only that environment's secrets, a missing one stopping the run before any connection;
a run that only reads the hosts (`make status`) needs none.
"""

import os
import sys
from pathlib import Path

from dotenv import load_dotenv

PROJECT_DIR = Path(__file__).resolve().parent
DOTENV = PROJECT_DIR / ".env"
if DOTENV.exists() and DOTENV.stat().st_mode & 0o077:
    print(
        f"WARNING: {DOTENV} holds secrets and others can read it: chmod 600 .env", file=sys.stderr
    )
load_dotenv(DOTENV)

# Secrets each environment needs: group data key -> environment variable.
SECRETS = {
    "recette": {"odoo_admin_password": "ODOO_OCA_FRANCE_ADMIN_PASSWORD_RECETTE"},
    "prod": {"odoo_admin_password": "ODOO_OCA_FRANCE_ADMIN_PASSWORD_PROD"},
}


# Secrets of optional channels, shared by every environment: set when the channel is used
# (tasks/render.py:alert_vars refuses a channel set without its secret).
OPTIONAL_SECRETS = {
    "alert_smtp_password": "ODOO_OCA_FRANCE_ALERT_SMTP_PASSWORD",
    "alert_webhook_url": "ODOO_OCA_FRANCE_ALERT_WEBHOOK_URL",
}


class MissingSecret(SystemExit):
    """Stops pyinfra before it connects, with a message naming what to set."""


class Secret:
    """A value that never shows itself in logs, reprs or `debug-inventory` output."""

    def __init__(self, name: str, value: str):
        self.name = name
        self.value = value

    def __repr__(self) -> str:
        return f"<secret {self.name}>"

    __str__ = __repr__

    def to_json(self) -> str:  # what pyinfra's debug-inventory prints
        return repr(self)


def applies(argv: list[str]) -> bool:
    """Whether this run applies a deploy file (deploy.py, or one of tasks/ run alone), or
    dry-runs it: only such a run needs secrets. `make status` (exec) and other commands that
    read the hosts need none."""
    return any(arg.endswith(".py") and Path(arg).name != "inventory.py" for arg in argv)


def targeted_groups(argv: list[str]) -> set[str]:
    """Environments this pyinfra run targets: those named by --limit, else all of them."""
    limits = []
    for i, arg in enumerate(argv):
        if arg == "--limit" and i + 1 < len(argv):
            limits.append(argv[i + 1])
        elif arg.startswith("--limit="):
            limits.append(arg.split("=", 1)[1])
    named = {name for limit in limits for name in limit.split(",")}
    chosen = {group for group in SECRETS if group in named or HOSTS[group] in named}
    return chosen if limits else set(SECRETS)


def secrets_for(group: str, targeted: set[str]) -> dict:
    """The group's secrets as `Secret`s; only required when the group is targeted."""
    data = {}
    for key, variable in SECRETS[group].items():
        value = os.environ.get(variable, "")
        if not value and group in targeted:
            raise MissingSecret(
                f"Missing secret {variable} (needed for {group}): set it in .env "
                f"(see .env.template) or in the environment."
            )
        data[key] = Secret(variable, value)
    for key, variable in OPTIONAL_SECRETS.items():
        data[key] = Secret(variable, os.environ.get(variable, ""))
    return data


# The key pair prod sends its backups to recette with, used for nothing else: prod gets the
# private key, recette lets its public key (the ".pub" beside it) deliver backups, nothing more.
TRANSFER_KEY_VARIABLE = "OCA_FRANCE_BACKUP_TRANSFER_KEY_FILE"
TRANSFER_KEY_HOWTO = (
    "create it with `ssh-keygen -t ed25519 -N '' -C oca-france-backup-transfer"
    " -f ~/.ssh/oca-france-backup-transfer` and set its path in .env (see .env.template)"
)


def transfer_key_for(group: str, targeted: set[str]) -> dict:
    """prod: the private key (a Secret); recette: the public key. Required when targeted."""
    path = os.environ.get(TRANSFER_KEY_VARIABLE, "")
    wanted = Path(path).expanduser() if group == "prod" else Path(f"{path}.pub").expanduser()
    if not path or not wanted.is_file():
        if group not in targeted:
            return {}
        problem = f"{wanted} does not exist" if path else f"{TRANSFER_KEY_VARIABLE} is not set"
        raise MissingSecret(
            f"Missing the backup transfer key (needed for {group}): {problem};"
            f" {TRANSFER_KEY_HOWTO}."
        )
    if group == "prod":
        return {"backup_transfer_private_key": Secret(TRANSFER_KEY_VARIABLE, wanted.read_text())}
    return {"backup_transfer_public_key": wanted.read_text().strip()}


# Host names are SSH aliases. OCA_SSH_CONFIG points pyinfra at another SSH config (the local
# sandbox does so); real hosts use the user's ~/.ssh/config.
HOSTS = {"recette": "oca-france-recette", "prod": "oca-france-prod"}
_connection = {}
if os.environ.get("OCA_SSH_CONFIG"):
    _connection = {
        "ssh_config_file": os.environ["OCA_SSH_CONFIG"],
        "ssh_known_hosts_file": os.environ.get("OCA_SSH_KNOWN_HOSTS", "~/.ssh/known_hosts"),
    }

_targeted = targeted_groups(sys.argv) if applies(sys.argv) else set()
recette = (
    [(HOSTS["recette"], dict(_connection))],
    {**secrets_for("recette", _targeted), **transfer_key_for("recette", _targeted)},
)
prod = (
    [(HOSTS["prod"], dict(_connection))],
    {**secrets_for("prod", _targeted), **transfer_key_for("prod", _targeted)},
)
