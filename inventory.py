"""The OCA France hosts (recette, prod, the off-site backup host), by SSH alias (resolved
through ~/.ssh/config, see README).

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
# The borg repository's passphrase: prod encrypts with it, the backup host prunes and checks.
BORG_PASSPHRASE = "ODOO_OCA_FRANCE_BORG_PASSPHRASE"
SECRETS = {
    "recette": {"odoo_admin_password": "ODOO_OCA_FRANCE_ADMIN_PASSWORD_RECETTE"},
    "prod": {
        "odoo_admin_password": "ODOO_OCA_FRANCE_ADMIN_PASSWORD_PROD",
        "offsite_passphrase": BORG_PASSPHRASE,
    },
    "backup": {"offsite_passphrase": BORG_PASSPHRASE},
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


class KeyPair:
    """A key pair made for one job, its private key's path in .env: the sending host gets the
    private key (a Secret), the receiving host the public key (the ".pub" beside it)."""

    def __init__(self, variable, comment, private_group, public_group, private_key, public_key):
        self.variable, self.comment = variable, comment
        self.groups = {private_group: private_key, public_group: public_key}
        self.private_group = private_group

    def howto(self) -> str:
        return (
            f"create it with `ssh-keygen -t ed25519 -N '' -C {self.comment}"
            f" -f ~/.ssh/{self.comment}` and set its path in .env (see .env.template)"
        )

    def data_for(self, group: str, targeted: set[str]) -> dict:
        """The group's half of the pair (none for another group); required when targeted."""
        if group not in self.groups:
            return {}
        path = os.environ.get(self.variable, "")
        private = group == self.private_group
        wanted = Path(path).expanduser() if private else Path(f"{path}.pub").expanduser()
        if not path or not wanted.is_file():
            if group not in targeted:
                return {}
            problem = f"{wanted} does not exist" if path else f"{self.variable} is not set"
            raise MissingSecret(
                f"Missing the {self.comment} key (needed for {group}): {problem}; {self.howto()}."
            )
        if private:
            return {self.groups[group]: Secret(self.variable, wanted.read_text())}
        return {self.groups[group]: wanted.read_text().strip()}


# prod sends its backups to recette with one (recette lets it deliver backups, nothing more),
# and pushes them to the backup host with another (which may only append to its repository).
_KEY_PAIRS = [
    KeyPair(
        "OCA_FRANCE_BACKUP_TRANSFER_KEY_FILE",
        "oca-france-backup-transfer",
        "prod",
        "recette",
        "backup_transfer_private_key",
        "backup_transfer_public_key",
    ),
    KeyPair(
        "OCA_FRANCE_OFFSITE_KEY_FILE",
        "oca-france-offsite",
        "prod",
        "backup",
        "offsite_private_key",
        "offsite_public_key",
    ),
]


def group_data(group: str, targeted: set[str]) -> dict:
    """A group's secrets and its halves of the key pairs."""
    data = secrets_for(group, targeted)
    for pair in _KEY_PAIRS:
        data.update(pair.data_for(group, targeted))
    return data


# Host names are SSH aliases. OCA_SSH_CONFIG points pyinfra at another SSH config (the local
# sandbox does so); real hosts use the user's ~/.ssh/config.
HOSTS = {"recette": "oca-france-recette", "prod": "oca-france-prod", "backup": "oca-france-backup"}
_connection = {}
if os.environ.get("OCA_SSH_CONFIG"):
    _connection = {
        "ssh_config_file": os.environ["OCA_SSH_CONFIG"],
        "ssh_known_hosts_file": os.environ.get("OCA_SSH_KNOWN_HOSTS", "~/.ssh/known_hosts"),
    }

_targeted = targeted_groups(sys.argv) if applies(sys.argv) else set()
recette = ([(HOSTS["recette"], dict(_connection))], group_data("recette", _targeted))
prod = ([(HOSTS["prod"], dict(_connection))], group_data("prod", _targeted))
backup = ([(HOSTS["backup"], dict(_connection))], group_data("backup", _targeted))
