"""Where things live on a host: the host programs and their config, the deploy's files below
odoo_dumps_dir, recette's incoming directory, the transfer's keys, and the URLs the host
reaches Odoo at. One name for each, shared by the tasks, the host config and the tests.

`data` is pyinfra's host.data (or anything with the same attributes).
"""

from __future__ import annotations


def host_bin_dir(data) -> str:
    """Where the host programs are installed: root-owned, outside odoo's home."""
    return f"{data.host_programs_dir}/bin"


def host_program(data, name: str) -> str:
    return f"{host_bin_dir(data)}/{name}"


def host_config_file(data) -> str:
    """The one config every host program reads (no secret in it)."""
    return f"{data.host_config_dir}/host.json"


def authorized_keys_file(data) -> str:
    """recette: the keys sshd accepts for odoo beside its own, in a file odoo cannot change."""
    return f"{data.host_config_dir}/authorized_keys/{data.odoo_user}"


def odoo_url(data) -> str:
    """Where the host itself reaches the server."""
    listen = data.odoo_http_interface
    return f"http://{'127.0.0.1' if listen == '0.0.0.0' else listen}:{data.odoo_http_port}"


def health_url(data) -> str:
    """The health page, with the database checked: what the deploy and odoo-status ask."""
    return f"{odoo_url(data)}/web/health?db_server_status=1"


# Below odoo_dumps_dir: what the deploy script, the auto-deploy script and the tasks share.
def snapshot_dir(data) -> str:
    """The deploy's filestore snapshots (their databases are <db>-snap-<stamp> in PostgreSQL)."""
    return f"{data.odoo_dumps_dir}/snapshots"


def deploy_log_dir(data) -> str:
    """One log per deploy: Odoo's and uv's output, which the terminal does not get."""
    return f"{data.odoo_dumps_dir}/deploy-logs"


def prepared_dir(data) -> str:
    """Where the deploy builds the next release (worktree and venv) while the site serves."""
    return f"{data.odoo_dumps_dir}/prepared"


def deploy_state_file(data) -> str:
    """What a running deploy is doing; left behind by a deploy that died, for its repair."""
    return f"{data.odoo_dumps_dir}/.deploy.state"


def deploy_history_file(data) -> str:
    """One JSON line per deploy, rollback and repair."""
    return f"{data.odoo_dumps_dir}/deploy-history.jsonl"


def production_data_dir(data) -> str:
    """Production dumps that `deploy --restore` loads (recette)."""
    return f"{data.odoo_dumps_dir}/production-data"


def production_data_in_use_file(data) -> str:
    """recette: which production backup deploy --restore loaded last, and when it was taken."""
    return f"{data.odoo_dumps_dir}/.production-data-in-use"


def deploy_lock_file(data) -> str:
    """The instance's lock: every host program that touches the data, the venv or the service
    takes it (oca_france_host/state.py), an apply too."""
    return f"{data.odoo_dumps_dir}/.deploy.lock"


def auto_deploy_state_file(data) -> str:
    """Where odoo-auto-deploy keeps the last origin commit it saw."""
    return f"{data.odoo_dumps_dir}/.auto-deploy-last-commit"


def incoming_dir(data) -> str:
    """recette: the only directory prod's transfer key may write into (rrsync -wo)."""
    return f"{data.odoo_dumps_dir}/incoming"


def incoming_lock_file(data) -> str:
    """recette: a transfer session and the acceptance's copy of a delivery, one at a time
    (beside incoming/, where the key cannot reach it)."""
    return f"{data.odoo_dumps_dir}/.incoming.lock"


def transfer_key_file(data) -> str:
    """prod: the private key of the backup transfer, used for nothing else (root:odoo 0640:
    odoo reads it, cannot replace it)."""
    return f"{data.host_config_dir}/backup-transfer"


def transfer_known_hosts_file(data) -> str:
    """prod: recette's pinned host key, the only one the transfer trusts."""
    return f"{data.host_config_dir}/backup-transfer.known_hosts"


def alert_msmtp_config(data) -> str:
    """msmtp's config for the alerts' relay, its password in it (root's alone: 0600)."""
    return f"{data.host_config_dir}/alerts-msmtprc"


def alert_webhook_file(data) -> str:
    """The alerts' webhook URL, a secret (a token in it): root's alone."""
    return f"{data.host_config_dir}/alerts-webhook"
