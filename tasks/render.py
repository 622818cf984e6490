"""Template variables, built from a host's data: the tasks and the tests render the same way.

`data` is pyinfra's host.data (or anything with the same attributes).
"""

from __future__ import annotations

import re
import shlex
import zoneinfo
from datetime import date, datetime, time, timedelta
from pathlib import Path

from pyinfra.api.exceptions import DeployError

from tasks.odoo_password import admin_password_hash

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"


def template_path(name: str) -> str:
    return str(TEMPLATES_DIR / name)


class ReleaseData:
    """A host's data with the overrides of its release (data.distributions[release]) applied."""

    def __init__(self, data, release: str):
        if release not in data.distributions:
            supported = ", ".join(sorted(data.distributions))
            raise DeployError(
                f"{release} is not a supported release (group_data/all.py distributions:"
                f" {supported}); add it there with what differs"
            )
        self.release = release
        self._data = data
        self._overrides = data.distributions[release]

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self._overrides:
            return self._overrides[name]
        return getattr(self._data, name)


def wkhtmltopdf_source(data) -> dict:
    """Where a host of this release gets wkhtmltopdf: {"deb": url, "sha256": ...} for the
    patched build where configured, else {"package": name}; an error when neither exists."""
    deb = data.wkhtmltopdf_debs.get(data.release)
    if deb:
        if not (deb.get("url") and deb.get("sha256")):
            raise DeployError(f"wkhtmltopdf_debs[{data.release!r}] needs both url and sha256")
        return {"deb": deb["url"], "sha256": deb["sha256"]}
    if data.wkhtmltopdf_package:
        return {"package": data.wkhtmltopdf_package}
    raise DeployError(
        f"{data.release} has no wkhtmltopdf package: set wkhtmltopdf_debs[{data.release!r}] ="
        ' {"url": ..., "sha256": ...} (the patched build, wkhtmltopdf/packaging releases)'
        " in group_data"
    )


def checked_seconds(data, key: str) -> int:
    """A time limit of the group data, refused unless a whole number of seconds above 0
    (`timeout 0` would mean no limit at all; a word would fail every deploy)."""
    value = getattr(data, key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise DeployError(f"{key} must be a whole number of seconds above 0, not {value!r}")
    return value


ZONE_NAME = r"[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*"  # a tz database name: nothing a shell reads


def checked_timezone(data) -> str:
    """The hosts' time zone, refused unless a zone of the tz database (Europe/Paris...)."""
    zone = data.timezone
    try:
        if not isinstance(zone, str) or not re.fullmatch(ZONE_NAME, zone):
            raise ValueError(zone)
        zoneinfo.ZoneInfo(zone)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        raise DeployError(
            f"timezone must be a zone of the tz database, such as 'Europe/Paris', not {zone!r}"
        ) from None
    return zone


DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # systemd's, never the locale's
WEEKDAYS = rf"({'|'.join(DAY_NAMES)})(,({'|'.join(DAY_NAMES)}))*"
# The daily calendars at a fixed time of day, with the random delay each may add.
FIXED_TIME_CALENDARS = {
    "backup_calendar": "backup_randomized_delay_sec",
    "weekly_deploy_calendar": None,
}


def checked_calendar_times(data) -> None:
    """A calendar at a fixed time of day (plus its random delay) must fall on a time that
    exists once every day in the hosts' zone: systemd never fires a timer in the hour a change
    to summer time skips (the backup would be missed that day), and one it repeats is lived
    twice."""
    zone = zoneinfo.ZoneInfo(checked_timezone(data))
    today = date.today()
    for key, delay_key in FIXED_TIME_CALENDARS.items():
        when = re.fullmatch(r"(?:(\S+) )?\S+ (\d{1,2}):(\d{2})(?::(\d{2}))?", getattr(data, key))
        if not when:
            continue  # every minute, hour...: nothing to miss
        weekdays, *clock = when.groups()
        hours, minutes, seconds = (int(part or 0) for part in clock)
        # "Mon" or "Sat,Sun": only those days can miss it; anything else, every day.
        days = weekdays.split(",") if weekdays and re.fullmatch(WEEKDAYS, weekdays) else None
        start = timedelta(hours=hours, minutes=minutes, seconds=seconds)
        end = start + timedelta(seconds=getattr(data, delay_key) if delay_key else 0)
        for day in (today + timedelta(days=n) for n in range(366)):
            if days and DAY_NAMES[day.weekday()] not in days:
                continue
            midnight = datetime.combine(day, time(), zone)
            if midnight.utcoffset() == (midnight + timedelta(days=1)).utcoffset():
                continue  # no change of time that day
            moment = start
            while moment <= end:
                local = datetime.combine(day, time()) + moment
                if (
                    local.replace(tzinfo=zone, fold=0).utcoffset()
                    != local.replace(tzinfo=zone, fold=1).utcoffset()
                ):
                    raise DeployError(
                        f"{key} ({getattr(data, key)}, plus up to {end - start}) falls at"
                        f" {local:%H:%M}, a time {data.timezone} skips or repeats on"
                        f" {day:%Y-%m-%d}: choose a time outside that hour"
                    )
                moment += timedelta(minutes=1)


def checked_addons_subdirs(data) -> list[str]:
    """The extra addons paths, relative to the checkout, refused when they would leave it."""
    for sub in data.odoo_addons_subdirs:
        if not sub or sub.startswith("/") or ".." in Path(sub).parts:
            raise DeployError(f"odoo_addons_subdirs: {sub!r} must be a path inside the checkout")
    return list(data.odoo_addons_subdirs)


def odoo_command(data, template: list[str], venv: str | None = None) -> list[str]:
    """One of the data's commands (odoo_*_command, argument lists) with this host's values
    filled in (the checkout's venv, or `venv`)."""
    values = {
        "venv": venv or f"{data.oca_france_dir}/.venv",
        "config": data.odoo_config_path,
        "db": data.odoo_db_name,
        "modules": ",".join(data.odoo_init_modules),
    }
    return [argument.format(**values) for argument in template]


def uv_env(data) -> str:
    """uv's settings for the odoo user's uv commands, as shell assignments."""
    return (
        f"UV_PYTHON_INSTALL_DIR={shlex.quote(data.uv_python_install_dir)}"
        f" UV_PYTHON_PREFERENCE={shlex.quote(data.uv_python_preference)}"
    )


def venv_check_argv(data) -> list[str]:
    """Succeeds when the venv already matches uv.lock (changes nothing)."""
    return [*data.odoo_sync_command, "--check", "--offline"]


def venv_check_command(data) -> str:
    return shlex.join(venv_check_argv(data))


def venv_sync_command(data) -> str:
    """Sync the venv until uv finds it up to date. The first sync of a fresh clone installs
    __manifest__.py files into .venv that the app's cache-keys glob matches, newer than what
    uv recorded: uv then finds the venv outdated until a second sync records them."""
    # Bounded as the deploy's is (venv_sync_timeout_sec): a hung download fails the apply.
    sync = shlex.join(
        [
            "timeout",
            "--kill-after=30",
            str(checked_seconds(data, "venv_sync_timeout_sec")),
            *data.odoo_sync_command,
        ]
    )
    return f"{sync} && {{ {venv_check_command(data)} >/dev/null 2>&1 || {sync}; }}"


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


def status_command(data) -> str:
    """What runs on each host for `make status` and `deploy --status`."""
    return host_program(data, "odoo-status")


def verify_command(data) -> str:
    """Checks a backup directory against its manifest (deploy --restore, the accept on recette)."""
    return host_program(data, "odoo-backup-verify")


def deploy_lock_file(data) -> str:
    """One deploy at a time: the deploy and auto-deploy scripts both take this lock."""
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


def server_env_parameters(data) -> dict[str, str]:
    """ir.config_parameter values the server environment forces: the data's, plus the public
    URL, frozen (web.base.url.freeze), where one is set."""
    parameters = {key: str(value) for key, value in data.odoo_server_env_parameters.items()}
    if data.odoo_public_url:
        parameters["web.base.url"] = data.odoo_public_url.rstrip("/")
        parameters["web.base.url.freeze"] = "True"
    return parameters


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def config_parameters_sql(parameters: dict[str, str]) -> str:
    """SQL that writes these ir.config_parameter values (update, else insert)."""
    statements = []
    for key, value in sorted(parameters.items()):
        k, v = sql_literal(key), sql_literal(value)
        statements.append(f"UPDATE ir_config_parameter SET value = {v} WHERE key = {k};")
        statements.append(
            f"INSERT INTO ir_config_parameter (key, value) SELECT {k}, {v}"
            f" WHERE NOT EXISTS (SELECT 1 FROM ir_config_parameter WHERE key = {k});"
        )
    return "\n".join(statements)


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
        "restart_sec": data.odoo_restart_sec,
        # RestartSteps and RestartMaxDelaySec appeared in systemd 254.
        "restart_steps": data.odoo_restart_steps if data.systemd_version >= 254 else None,
        "restart_max_delay_sec": data.odoo_restart_max_delay_sec,
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
        "status_command": status_command(data),
        "verify_command": verify_command(data),
        "prune_command": host_program(data, "odoo-backup-prune"),
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
        "status_backup_max_age_hours": data.status_backup_max_age_hours,
        "status_production_data_max_age_days": data.status_production_data_max_age_days,
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
        )
    return config


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
    }


def transfer_vars(data) -> dict:
    """prod: where and how odoo-backup-transfer sends each new backup to recette."""
    if not data.backup_transfer_host or not data.backup_transfer_host_key:
        raise DeployError(
            "backup_transfer_enabled needs backup_transfer_host (recette's address as prod"
            " reaches it) and backup_transfer_host_key (recette's host key, the line of its"
            " /etc/ssh/ssh_host_ed25519_key.pub: `ssh oca-france-recette cat"
            " /etc/ssh/ssh_host_ed25519_key.pub`) in group_data/prod.py"
        )
    key_type, key, *_ = data.backup_transfer_host_key.split() + ["", ""]
    if not key_type.startswith(("ssh-", "ecdsa-")) or not key:
        raise DeployError(
            f"backup_transfer_host_key must be '<type> <base64 key>', got {key_type!r}"
        )
    host, port = data.backup_transfer_host, data.backup_transfer_port
    known_as = host if port == 22 else f"[{host}]:{port}"
    return {
        "db_name": data.odoo_db_name,
        "odoo_user": data.odoo_user,
        "target_host": host,
        "target_port": port,
        "target_user": data.odoo_user,
        "key_file": transfer_key_file(data),
        "known_hosts_file": transfer_known_hosts_file(data),
        "known_hosts_line": f"{known_as} {key_type} {key}",
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


def rendered_files(data) -> dict[str, tuple[str, dict]]:
    """Every template a host of this data gets: template name -> (destination, variables)."""
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
        files["authorized_keys.j2"] = (authorized_keys_file(data), receive)
        files["sshd-authorized-keys.conf.j2"] = (
            "/etc/ssh/sshd_config.d/oca-france-authorized-keys.conf",
            {"authorized_keys_dir": f"{data.host_config_dir}/authorized_keys"},
        )
    if data.fail2ban_enabled:
        files["fail2ban-sshd.local.j2"] = ("/etc/fail2ban/jail.d/sshd.local", {})
    return files
