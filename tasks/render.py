"""Template variables, built from a host's data: the tasks and the tests render the same way.
Here: the templates' directory, each template's variables (among them host_config, the host
programs' config), the systemd units installed together, and `rendered_files`, every
template a host gets with its destination.

`data` is pyinfra's host.data (or anything with the same attributes).
"""

from __future__ import annotations

import shlex
from pathlib import Path

from pyinfra.api.exceptions import DeployError

from tasks.commands import (
    config_parameters_sql,
    odoo_command,
    server_env_parameters,
    venv_check_argv,
)
from tasks.odoo_password import admin_password_hash
from tasks.paths import (
    alert_msmtp_config,
    alert_webhook_file,
    authorized_keys_dir,
    authorized_keys_file,
    auto_deploy_state_file,
    deploy_history_file,
    deploy_lock_file,
    deploy_log_dir,
    deploy_state_file,
    front_health_url,
    health_url,
    host_bin_dir,
    host_config_file,
    host_program,
    incoming_dir,
    incoming_lock_file,
    odoo_url,
    offsite_compacting_marker,
    offsite_key_file,
    offsite_known_hosts_file,
    offsite_passphrase_file,
    offsite_push_state_file,
    offsite_recovery_dir,
    offsite_repository_url,
    offsite_state_dir,
    offsite_writes_lock,
    prepared_dir,
    production_data_dir,
    production_data_in_use_file,
    snapshot_dir,
    transfer_key_file,
    transfer_known_hosts_file,
)
from tasks.settings import (
    checked_addons_subdirs,
    checked_front_door,
    checked_repository_path,
    checked_retention,
    checked_seconds,
    checked_whole,
)

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"


def template_path(name: str) -> str:
    return str(TEMPLATES_DIR / name)


def odoorc_vars(data) -> dict:
    return {
        "admin_password_hash": admin_password_hash(
            data.odoo_admin_password.value, data.odoo_db_name
        ),
        "odoo_user": data.odoo_user,
        "db_name": data.odoo_db_name,
        "running_env": data.odoo_running_env,
        "data_dir": data.odoo_data_dir,
        "addons_path": [f"{data.oca_france_dir}/{sub}" for sub in checked_addons_subdirs(data)],
        "http_interface": data.odoo_http_interface,
        "http_port": data.odoo_http_port,
        "gevent_port": data.odoo_gevent_port,
        "proxy_mode": data.odoo_proxy_mode,
        "workers": data.odoo_workers,
        "max_cron_threads": data.odoo_max_cron_threads,
        "limit_memory_soft": data.odoo_limit_memory_soft,
        "limit_memory_hard": data.odoo_limit_memory_hard,
        "limit_time_cpu": data.odoo_limit_time_cpu,
        "limit_time_real": data.odoo_limit_time_real,
        "server_wide_modules": data.odoo_server_wide_modules,
        "load_language": data.odoo_load_language,
        "unaccent": data.odoo_unaccent,
        "modules_auto_install_disabled": data.odoo_modules_auto_install_disabled,
        "server_env_parameters": server_env_parameters(data),
    }


def service_vars(data) -> dict:
    return {
        "db_name": data.odoo_db_name,
        "odoo_user": data.odoo_user,
        "checkout": data.oca_france_dir,
        "server_command": shlex.join(odoo_command(data, data.odoo_server_command)),
        "guard_command": f"{host_program(data, 'deploy')} --guard",
        "gate_command": host_program(data, "odoo-front-gate"),
        "notify_command": host_program(data, "odoo-notify"),
        "restart_sec": data.odoo_restart_sec,
        # RestartSteps and RestartMaxDelaySec appeared in systemd 254.
        "restart_steps": data.odoo_restart_steps if data.systemd_version >= 254 else None,
        "restart_max_delay_sec": data.odoo_restart_max_delay_sec,
    }


# HAProxy's own directory: the page it answers with past the hold (read with its config).
MAINTENANCE_PAGE = "/etc/haproxy/errors/oca-france-maintenance.html"


def front_door_vars(data) -> dict:
    """The front door (HAProxy): where it listens, whom it believes, how long it holds."""
    return {
        "db_name": data.odoo_db_name,
        **checked_front_door(data),
        "hold_sec": checked_seconds(data, "front_hold_sec"),
        "retry_after_sec": checked_seconds(data, "front_retry_after_sec"),
        "max_body_bytes": checked_whole(data, "front_max_body_mib") * 1048576,
        "login_per_minute": checked_whole(data, "front_login_per_minute"),
        "websocket_idle_sec": checked_seconds(data, "front_websocket_idle_sec"),
        "keepalive_sec": checked_seconds(data, "front_keepalive_sec"),
        # Above Odoo's own limit: Odoo ends a long request first, with its own answer.
        "timeout_sec": checked_seconds(data, "odoo_limit_time_real") + 60,
        "maintenance_page": MAINTENANCE_PAGE,
    }


def host_config(data) -> dict:
    """/etc/oca-france/host.json: every value the host programs use, from the host's data
    (the programs themselves are plain files, see host/). No secret goes in here."""
    url = odoo_url(data)
    config = {
        "odoo_user": data.odoo_user,
        "odoo_db_name": data.odoo_db_name,
        "odoo_running_env": data.odoo_running_env,
        "oca_france_dir": data.oca_france_dir,
        "oca_france_branch": data.oca_france_branch,
        "oca_france_service": data.oca_france_service,
        "filestore_root": f"{data.odoo_data_dir}/filestore",
        "health_url": health_url(data),
        "front_health_url": front_health_url(data),
        "odoo_ports": [data.odoo_http_port, data.odoo_gevent_port],
        "front_gate_drain_sec": checked_seconds(data, "front_gate_drain_sec"),
        "login_url": f"{url}/web/login",
        "odoo_start_timeout": data.odoo_start_timeout,
        "uv_python_install_dir": data.uv_python_install_dir,
        "uv_python_preference": data.uv_python_preference,
        "odoo_sync_command": data.odoo_sync_command,
        "sync_check_command": venv_check_argv(data),
        "odoo_addons_subdirs": checked_addons_subdirs(data),
        "neutralize_command": odoo_command(data, data.odoo_neutralize_command),
        "update_command": odoo_command(data, data.odoo_update_command),
        # Run from the prepared release, with its venv.
        "list_updates_command": odoo_command(data, data.odoo_list_updates_command, venv=".venv"),
        "environment_sql": config_parameters_sql(server_env_parameters(data)),
        "deploy_command": host_program(data, "deploy"),
        "deploy_lock_file": deploy_lock_file(data),
        "deploy_state_file": deploy_state_file(data),
        "deploy_history_file": deploy_history_file(data),
        "deploy_log_dir": deploy_log_dir(data),
        "deploy_logs_kept": data.deploy_logs_kept,
        "prepared_dir": prepared_dir(data),
        "snapshot_dir": snapshot_dir(data),
        "deploy_snapshots_kept": data.deploy_snapshots_kept,
        "deploy_disk_margin_mib": data.deploy_disk_margin_mib,
        "postgresql_data_root": data.postgresql_data_root,
        "git_fetch_timeout_sec": checked_seconds(data, "git_fetch_timeout_sec"),
        "venv_sync_timeout_sec": checked_seconds(data, "venv_sync_timeout_sec"),
        "repair_lock_wait_sec": data.repair_lock_wait_sec,
        "deploy_restore_allowed": data.deploy_restore_allowed,
        "deploy_ref_pattern": data.deploy_ref_pattern,
        "production_data_dir": production_data_dir(data),
        "production_data_in_use_file": production_data_in_use_file(data),
        "production_data_kept": data.production_data_kept,
        "incoming_dir": incoming_dir(data),
        "incoming_lock_file": incoming_lock_file(data),
        "production_data_incoming_lock_wait_sec": data.production_data_incoming_lock_wait_sec,
        "production_data_incoming_limit_mib": data.production_data_incoming_limit_mib,
        "receive_command": [*data.production_data_receive_command, incoming_dir(data)],
        "auto_deploy_state_file": auto_deploy_state_file(data),
        "backup_enabled": data.backup_enabled,
        "backup_dir": data.backup_dir,
        "backup_lock_wait_sec": data.backup_lock_wait_sec,
        "backup_keep_daily": data.backup_keep_daily,
        "backup_keep_weekly": data.backup_keep_weekly,
        "backup_keep_monthly": data.backup_keep_monthly,
        "backup_counted_tables": list(data.backup_counted_tables),
        "status_backup_max_age_hours": data.status_backup_max_age_hours,
        "status_production_data_max_age_days": data.status_production_data_max_age_days,
        "disk_alert_percent": data.disk_alert_percent,
        "disk_watched_paths": list(data.disk_watched_paths),
        "check_settle_sec": checked_seconds(data, "check_settle_sec"),
        **alert_config(data),
    }
    if data.backup_enabled and data.backup_transfer_enabled:
        transfer = transfer_vars(data)
        config.update(
            backup_transfer_user=transfer["target_user"],
            backup_transfer_host=transfer["target_host"],
            backup_transfer_port=transfer["target_port"],
            backup_transfer_key_file=transfer["key_file"],
            backup_transfer_known_hosts_file=transfer["known_hosts_file"],
            backup_transfer_bwlimit_kbps=transfer["bwlimit_kbps"],
            backup_transfer_retries=data.backup_transfer_retries,
            backup_transfer_retry_sec=data.backup_transfer_retry_sec,
        )
    if data.backup_enabled and data.offsite_enabled:
        offsite = offsite_vars(data)
        config.update(
            offsite_repository_url=offsite["repository_url"],
            offsite_key_file=offsite["key_file"],
            offsite_known_hosts_file=offsite["known_hosts_file"],
            offsite_passphrase_file=offsite_passphrase_file(data),
            offsite_compression=data.offsite_compression,
            offsite_push_state_file=offsite_push_state_file(data),
            offsite_push_retries=data.offsite_push_retries,
            offsite_push_retry_sec=data.offsite_push_retry_sec,
            offsite_lock_wait_sec=data.offsite_lock_wait_sec,
            offsite_max_age_hours=data.offsite_max_age_hours,
            offsite_recovery_dir=offsite_recovery_dir(data),
        )
    return config


def alert_config(data) -> dict:
    """The alerts' part of the host config, on every host (odoo-notify reads only these)."""
    return {
        # The channels' secrets live in root-only files, named here when set.
        "alert_email_to": list(data.alert_email_to),
        "alert_email_from": data.alert_email_from,
        "alert_msmtp_config": alert_msmtp_config(data) if data.alert_email_to else None,
        "alert_webhook_file": alert_webhook_file(data) if data.alert_webhook else None,
        "alert_repeat_window_min": data.alert_repeat_window_min,
        "alert_state_dir": data.alert_state_dir,
        "ping_urls": {job: url for job, url in data.ping_urls.items() if url},
        "ping_units": PING_UNITS,
    }


# The systemd credential the backup host's units get the repository's passphrase as.
OFFSITE_CREDENTIAL = "offsite-passphrase"


def backup_host_config(data) -> dict:
    """The backup host's /etc/oca-france/host.json: its repository, retention and guard."""
    return {
        "offsite_user": data.offsite_user,
        "offsite_repository": checked_repository_path(data),
        "offsite_credential": OFFSITE_CREDENTIAL,
        "offsite_passphrase_file": offsite_passphrase_file(data),
        "offsite_state_dir": offsite_state_dir(data),
        "offsite_writes_lock": offsite_writes_lock(data),
        "offsite_compacting": offsite_compacting_marker(data),
        **checked_retention(data),
        "offsite_max_age_hours": data.offsite_max_age_hours,
        "offsite_lock_wait_sec": data.offsite_lock_wait_sec,
        "offsite_drill_dir": data.offsite_drill_dir,
        "offsite_drill_verify_data_days": data.offsite_drill_verify_data_days,
        "offsite_drill_max_age_days": data.offsite_drill_max_age_days,
        "disk_alert_percent": data.disk_alert_percent,
        "disk_watched_paths": [data.offsite_home, data.offsite_drill_dir],
        **alert_config(data),
    }


def automation_vars(data, calendar: str | None = None) -> dict:
    return {
        "odoo_user": data.odoo_user,
        "branch": data.oca_france_branch,
        "checkout": data.oca_france_dir,
        "bin_dir": host_bin_dir(data),
        "calendar": calendar,
        "refresh_lock_wait_sec": data.weekly_deploy_lock_wait_sec,
    }


def backup_vars(data) -> dict:
    return {
        "db_name": data.odoo_db_name,
        "odoo_user": data.odoo_user,
        "data_dir": data.odoo_data_dir,
        "checkout": data.oca_france_dir,
        "bin_dir": host_bin_dir(data),
        "calendar": data.backup_calendar,
        "randomized_delay_sec": data.backup_randomized_delay_sec,
        "transfer": data.backup_transfer_enabled,  # the service then starts the transfer
        "offsite": data.offsite_enabled,  # ... and the push to the backup host
    }


def known_hosts_line(data, prefix: str, peer: str) -> str:
    """The known_hosts line pinning a peer's host key, from <prefix>_host, _port, _host_key;
    refuses a missing or malformed key before any change."""
    host, port = getattr(data, f"{prefix}_host"), getattr(data, f"{prefix}_port")
    host_key = getattr(data, f"{prefix}_host_key")
    if not host or not host_key:
        raise DeployError(
            f"{prefix}_enabled needs {prefix}_host ({peer}'s address as prod reaches it) and"
            f" {prefix}_host_key ({peer}'s host key, the line of its"
            f" /etc/ssh/ssh_host_ed25519_key.pub: `ssh oca-france-{peer} cat"
            " /etc/ssh/ssh_host_ed25519_key.pub`) in group_data/prod.py"
        )
    key_type, key, *_ = host_key.split() + ["", ""]
    if not key_type.startswith(("ssh-", "ecdsa-")) or not key:
        raise DeployError(f"{prefix}_host_key must be '<type> <base64 key>', got {key_type!r}")
    known_as = host if port == 22 else f"[{host}]:{port}"
    return f"{known_as} {key_type} {key}"


def offsite_vars(data) -> dict:
    """prod: where and how odoo-offsite-push pushes each new backup (borg over SSH)."""
    return {
        "db_name": data.odoo_db_name,
        "odoo_user": data.odoo_user,
        "repository_url": offsite_repository_url(data),
        "key_file": offsite_key_file(data),
        "known_hosts_file": offsite_known_hosts_file(data),
        "known_hosts_line": known_hosts_line(data, "offsite", "backup"),
        "bin_dir": host_bin_dir(data),
    }


def offsite_forced_command(data) -> list[str]:
    """What prod's key runs on the backup host, whatever it asks: borg serve, appending only,
    to prod's repository only, waiting while the guarded prune runs (it holds the lock
    exclusive; past offsite_lock_wait_sec the connection closes, and the push tries again),
    refused while a compact is unfinished (one that died: the next prune finishes it)."""
    repository = checked_repository_path(data)
    serve = ["borg", "serve", "--append-only", "--restrict-to-repository", repository]
    # No quote inside: the whole line sits in authorized_keys' command="...".
    unless_compacting = (
        f"test ! -e {offsite_compacting_marker(data)}"
        " || { echo refused: a compact on the backup host did not finish, its next prune"
        " finishes it >&2; exit 1; }; "
        f"exec {shlex.join(serve)}"
    )
    return [
        "flock",
        "--shared",
        f"--wait={data.offsite_lock_wait_sec}",
        offsite_writes_lock(data),
        "sh",
        "-c",
        unless_compacting,
    ]


def backup_host_vars(data) -> dict:
    """The backup host: prod's key, which may only append to prod's repository."""
    public_key = getattr(data, "offsite_public_key", "") or ""
    if not public_key.startswith(("ssh-", "ecdsa-")):
        raise DeployError(
            "the backup host needs the off-site push public key (the .pub beside"
            " OCA_FRANCE_OFFSITE_KEY_FILE, see .env.template)"
        )
    serve = shlex.join(offsite_forced_command(data))
    return {
        "offsite_user": data.offsite_user,
        "repository": data.offsite_repository,
        "bin_dir": host_bin_dir(data),
        "credential": OFFSITE_CREDENTIAL,
        "passphrase_file": offsite_passphrase_file(data),
        "calendar": data.offsite_prune_calendar,
        "drill_calendar": data.offsite_drill_calendar,
        # restrict: no shell, pty, forwarding or agent; the command: borg serve, appending only,
        # to prod's repository only, never while the guarded prune runs.
        "authorized_key": f'restrict,command="{serve}" {public_key}',
    }


def transfer_vars(data) -> dict:
    """prod: where and how odoo-backup-transfer sends each new backup to recette."""
    host, port = data.backup_transfer_host, data.backup_transfer_port
    return {
        "db_name": data.odoo_db_name,
        "odoo_user": data.odoo_user,
        "target_host": host,
        "target_port": port,
        "target_user": data.odoo_user,
        "key_file": transfer_key_file(data),
        "known_hosts_file": transfer_known_hosts_file(data),
        "known_hosts_line": known_hosts_line(data, "backup_transfer", "recette"),
        "bwlimit_kbps": data.backup_transfer_bwlimit_kbps,
        "bin_dir": host_bin_dir(data),
    }


def receive_vars(data) -> dict:
    """recette: the key that may only deliver backups, and how they are accepted."""
    public_key = getattr(data, "backup_transfer_public_key", "") or ""
    if not public_key.startswith(("ssh-", "ecdsa-")):
        raise DeployError(
            "recette needs the backup transfer public key (the .pub beside"
            " OCA_FRANCE_BACKUP_TRANSFER_KEY_FILE, see .env.template)"
        )
    receive_program = host_program(data, "odoo-production-data-receive")
    return {
        "db_name": data.odoo_db_name,
        "odoo_user": data.odoo_user,
        "incoming_dir": incoming_dir(data),
        "incoming_limit_mib": data.production_data_incoming_limit_mib,
        "bin_dir": host_bin_dir(data),
        # restrict: no shell, pty, forwarding or agent; the command: rrsync -wo into
        # incoming/, under its size limit (receive_command in the host config).
        "authorized_key": f'restrict,command="{receive_program}" {public_key}',
    }


# The repair of a deploy that died, on every host: its units, and those enabled (the timer
# every minute, the boot service before Odoo starts).
REPAIR_UNITS = (
    "odoo-deploy-repair.service",
    "odoo-deploy-repair.timer",
    "odoo-deploy-boot-repair.service",
)
REPAIR_UNITS_ENABLED = ("odoo-deploy-repair.timer", "odoo-deploy-boot-repair.service")

# Recette's timers: unit base name -> the data key of its calendar.
RECETTE_TIMERS = {
    "odoo-auto-deploy": "auto_deploy_calendar",
    "odoo-weekly-deploy": "weekly_deploy_calendar",
}


# The jobs that ping a dead man's switch (ping_urls), by their unit: on a failure the
# notifier pings the job's /fail.
PING_UNITS = {
    "odoo-backup.service": "backup",
    "odoo-backup-transfer.service": "transfer",
    "odoo-weekly-deploy.service": "refresh",
    "odoo-offsite-push.service": "offsite",
}
SMTP_TLS = ("starttls", "tls", "off")


def alert_vars(data) -> dict:
    """The alerts' units and channels; refuses a channel set half-way, before any change."""
    if data.alert_email_to and not data.alert_smtp_host:
        raise DeployError("alert_email_to needs alert_smtp_host (the SMTP relay) in group_data")
    if data.alert_smtp_tls not in SMTP_TLS:
        raise DeployError(f"alert_smtp_tls must be one of {', '.join(SMTP_TLS)}")
    password = getattr(data, "alert_smtp_password", None)
    if data.alert_email_to and data.alert_smtp_user and not (password and password.value):
        raise DeployError(
            "alert_smtp_user needs its password: ODOO_OCA_FRANCE_ALERT_SMTP_PASSWORD in .env"
        )
    webhook = getattr(data, "alert_webhook_url", None)
    if data.alert_webhook and not (webhook and webhook.value):
        raise DeployError("alert_webhook needs ODOO_OCA_FRANCE_ALERT_WEBHOOK_URL in .env")
    unknown = set(data.ping_urls) - set(PING_UNITS.values())
    if unknown:
        raise DeployError(f"ping_urls: unknown job(s) {', '.join(sorted(unknown))}")
    return {
        "bin_dir": host_bin_dir(data),
        "calendar": data.check_calendar,
        # odoo-check's own work takes seconds; looking again at a momentary flag, up to this.
        "check_timeout_sec": 120 + checked_seconds(data, "check_settle_sec"),
        "smtp": {  # relay_*: "host" and "user" are the template operations' own words
            "relay_host": data.alert_smtp_host,
            "relay_port": data.alert_smtp_port,
            "relay_tls": data.alert_smtp_tls,
            "relay_from": data.alert_email_from,
            "relay_user": data.alert_smtp_user,
        },
    }


def rendered_files(data) -> dict[str, tuple[str, dict]]:
    """Every template a host of this data gets: template name -> (destination, variables)."""
    if data.backup_host:
        return {**backup_host_files(data), **shared_files(data, odoo=False)}
    front = front_door_vars(data)  # the config and its page: one set of checked values
    files = {
        "polkit-odoo.rules.j2": (
            "/etc/polkit-1/rules.d/60-odoo-units.rules",
            {"odoo_user": data.odoo_user},
        ),
        "odoorc.j2": (data.odoo_config_path, odoorc_vars(data)),
        "odoo-oca-france.service.j2": (
            f"/etc/systemd/system/{data.oca_france_service}",
            service_vars(data),
        ),
        "host.json.j2": (host_config_file(data), {"config": host_config(data)}),
        "haproxy.cfg.j2": ("/etc/haproxy/haproxy.cfg", front),
        "oca-france-maintenance.html.j2": (MAINTENANCE_PAGE, front),
    }
    repair = {
        **automation_vars(data, data.deploy_repair_calendar),
        "service": data.oca_france_service,
    }
    for unit in REPAIR_UNITS:
        files[f"{unit}.j2"] = (f"/etc/systemd/system/{unit}", repair)
    if data.recette_automation:
        for timer, calendar_key in RECETTE_TIMERS.items():
            calendar = getattr(data, calendar_key)
            for kind in ("service", "timer"):
                files[f"{timer}.{kind}.j2"] = (
                    f"/etc/systemd/system/{timer}.{kind}",
                    automation_vars(data, calendar),
                )
    if data.backup_enabled:
        variables = backup_vars(data)
        for kind in ("service", "timer"):
            files[f"odoo-backup.{kind}.j2"] = (f"/etc/systemd/system/odoo-backup.{kind}", variables)
    if data.backup_enabled and data.backup_transfer_enabled:
        transfer = transfer_vars(data)
        files["odoo-backup-transfer.service.j2"] = (
            "/etc/systemd/system/odoo-backup-transfer.service",
            transfer,
        )
        # The key's own template is the only one given the key.
        key = {"private_key": getattr(data, "backup_transfer_private_key", None)}
        files["backup-transfer.key.j2"] = (transfer_key_file(data), key)
        files["backup-transfer.known_hosts.j2"] = (transfer_known_hosts_file(data), transfer)
    if data.deploy_restore_allowed:
        receive = receive_vars(data)
        for kind in ("service", "path"):
            files[f"odoo-production-data-accept.{kind}.j2"] = (
                f"/etc/systemd/system/odoo-production-data-accept.{kind}",
                receive,
            )
        files["authorized_keys.j2"] = (authorized_keys_file(data, data.odoo_user), receive)
        files["sshd-authorized-keys.conf.j2"] = (
            "/etc/ssh/sshd_config.d/oca-france-authorized-keys.conf",
            {"authorized_keys_dir": authorized_keys_dir(data)},
        )
    if data.backup_enabled and data.offsite_enabled:
        offsite = offsite_vars(data)
        files["odoo-offsite-push.service.j2"] = (
            "/etc/systemd/system/odoo-offsite-push.service",
            offsite,
        )
        key = {"private_key": getattr(data, "offsite_private_key", None)}
        files["offsite-push.key.j2"] = (offsite_key_file(data), key)
        files["offsite.known_hosts.j2"] = (offsite_known_hosts_file(data), offsite)
        files["offsite-passphrase.j2"] = (offsite_passphrase_file(data), passphrase_vars(data))
    files.update(shared_files(data, odoo=True))
    return files


def passphrase_vars(data) -> dict:
    """The repository's passphrase: given to its own template only."""
    passphrase = getattr(data, "offsite_passphrase", None)
    if not (passphrase and passphrase.value):
        raise DeployError(
            "the off-site copies need the borg repository's passphrase:"
            " ODOO_OCA_FRANCE_BORG_PASSPHRASE in .env"
        )
    return {"passphrase": passphrase}


def backup_host_files(data) -> dict[str, tuple[str, dict]]:
    """The backup host's templates: its config, prod's append-only key, the guarded prune."""
    variables = backup_host_vars(data)
    files = {
        "host.json.j2": (host_config_file(data), {"config": backup_host_config(data)}),
        "offsite-authorized_keys.j2": (
            authorized_keys_file(data, data.offsite_user),
            variables,
        ),
        "sshd-authorized-keys.conf.j2": (
            "/etc/ssh/sshd_config.d/oca-france-authorized-keys.conf",
            {"authorized_keys_dir": authorized_keys_dir(data)},
        ),
        "offsite-passphrase.j2": (offsite_passphrase_file(data), passphrase_vars(data)),
    }
    for unit in BACKUP_HOST_UNITS:
        files[f"{unit}.j2"] = (f"/etc/systemd/system/{unit}", variables)
    return files


# The backup host's units: the repository's creation, its guarded prune, its weekly drill.
BACKUP_HOST_UNITS = (
    "odoo-offsite-init.service",
    "odoo-offsite-prune.service",
    "odoo-offsite-prune.timer",
    "odoo-offsite-drill.service",
    "odoo-offsite-drill.timer",
)


def shared_files(data, odoo: bool) -> dict[str, tuple[str, dict]]:
    """What every host gets: fail2ban's jail, the alerts' notifier, the periodic check; on
    Odoo's hosts, PostgreSQL's and the front door's drop-ins too."""
    files = {}
    if data.fail2ban_enabled:
        files["fail2ban-sshd.local.j2"] = ("/etc/fail2ban/jail.d/sshd.local", {})
    alerts = alert_vars(data)
    files["oca-france-notify@.service.j2"] = (
        "/etc/systemd/system/oca-france-notify@.service",
        alerts,
    )
    for kind in ("service", "timer"):
        files[f"odoo-check.{kind}.j2"] = (f"/etc/systemd/system/odoo-check.{kind}", alerts)
    if odoo:
        files["postgresql-alerts.conf.j2"] = (
            "/etc/systemd/system/postgresql@.service.d/oca-france-alerts.conf",
            alerts,
        )
        files["haproxy-alerts.conf.j2"] = (
            "/etc/systemd/system/haproxy.service.d/oca-france-alerts.conf",
            alerts,
        )
    if data.alert_email_to:
        # The password's own template is the only one given it.
        password = getattr(data, "alert_smtp_password", None)
        files["alerts-msmtprc.j2"] = (
            alert_msmtp_config(data),
            {**alerts["smtp"], "relay_password": password.value if password else None},
        )
    if data.alert_webhook:
        files["alerts-webhook.j2"] = (
            alert_webhook_file(data),
            {"url": data.alert_webhook_url.value},
        )
    return files
