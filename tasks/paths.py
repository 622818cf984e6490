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


def authorized_keys_dir(data) -> str:
    """The keys sshd accepts for a user beside their own, root's, in files they cannot change:
    recette's for odoo (prod's transfer key), the backup host's for borg (prod's push key)."""
    return f"{data.host_config_dir}/authorized_keys"


def authorized_keys_file(data, user: str) -> str:
    return f"{authorized_keys_dir(data)}/{user}"


def local_address(listen: str) -> str:
    """Where the host itself reaches a port listening on `listen` (0.0.0.0: loopback)."""
    return "127.0.0.1" if listen == "0.0.0.0" else listen


def odoo_url(data) -> str:
    """Where the host itself reaches the server."""
    return f"http://{local_address(data.odoo_http_interface)}:{data.odoo_http_port}"


def health_url(data) -> str:
    """The health page, with the database checked: what the deploy and odoo-status ask."""
    return f"{odoo_url(data)}/web/health?db_server_status=1"


def front_health_url(data) -> str:
    """The health page through the front door, as the host itself reaches it."""
    address = local_address(data.front_interface)
    return f"http://{address}:{data.front_port}/web/health?db_server_status=1"


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


def offsite_key_file(data) -> str:
    """prod: the private key it pushes to the backup host with, used for nothing else
    (root:odoo 0640)."""
    return f"{data.host_config_dir}/offsite-push"


def offsite_known_hosts_file(data) -> str:
    """prod: the backup host's pinned host key, the only one the push trusts."""
    return f"{data.host_config_dir}/offsite.known_hosts"


def offsite_passphrase_file(data) -> str:
    """The borg repository's passphrase: prod's is root:odoo 0640 (the push runs as odoo); the
    backup host's is root's alone (its units get it as a systemd credential)."""
    return f"{data.host_config_dir}/offsite-passphrase"


def offsite_push_state_file(data) -> str:
    """prod: the last push's result (what status shows and flags)."""
    return f"{data.odoo_dumps_dir}/.offsite-push.json"


def offsite_recovery_dir(data) -> str:
    """prod: where odoo-offsite-recover extracts the archive it recovers (odoo's)."""
    return f"{data.odoo_dumps_dir}/recovery"


def offsite_state_dir(data) -> str:
    """The backup host: the archives its guard last saw, the last prune's result."""
    return "/var/lib/oca-france/offsite"


def offsite_writes_lock(data) -> str:
    """The backup host: what prod's key takes shared (its forced command, flock) and the
    guarded prune exclusive, so that nothing prod commits lands between the guard and the
    compact."""
    return f"{offsite_state_dir(data)}/prods-writes.lock"


def offsite_compacting_marker(data) -> str:
    """The backup host: there while its compact runs (or died): prod's key is refused."""
    return f"{offsite_state_dir(data)}/compacting"


def offsite_repository_url(data) -> str:
    """prod's repository as prod reaches it (borg's ssh:// form, an absolute path)."""
    return f"ssh://{data.offsite_user}@{data.offsite_host}:{data.offsite_port}{data.offsite_repository}"
