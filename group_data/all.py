"""Defaults shared by every host: every tunable lives here, with a one-line comment.

`group_data/recette.py` and `group_data/prod.py` override only what differs. Secrets are not
here: `inventory.py` reads them from `.env` and attaches them to the group they belong to.
"""

import os

# --- System (tasks/common.py)
apt_cache_valid_time = 24 * 3600  # seconds an apt update stays fresh: at most one update a day
base_packages = [  # tools every host needs; acl lets pyinfra sudo to the unprivileged odoo user
    "acl",
    "ca-certificates",
    "curl",
    "git",
    "locales",
    "python3",
    "python3-venv",
    "sudo",
    "tzdata",
]
system_locale = "fr_FR.UTF-8"  # generated locale, also the collation of PostgreSQL's template1
# The hosts' time zone: the timers' calendars (the backup's 01:15, Monday 04:00), the logs' and
# `make status`'s times. Odoo and its database keep storing UTC, whatever this says.
timezone = "Europe/Paris"
# Where pyinfra's uploads wait for sudo to copy them (never a shared /tmp): the login user's
# own directory (0711) in root's /var/lib, each upload in it 0600
apply_upload_dir = "/var/lib/oca-france-apply"

# What differs between the releases a host may run, by "<ID>-<VERSION_ID>" of /etc/os-release.
# An entry's keys override this file's for hosts of that release; a release not listed here
# stops the apply before any change. python, postgresql and systemd_version are the release's
# own (the end-to-end suite checks them on the sandbox's Debian hosts): the service unit uses
# systemd_version; PostgreSQL is the release's, whatever its major; the app picks its Python.
distributions = {
    "debian-12": {"python": "3.11", "postgresql": 15, "systemd_version": 252},
    "debian-13": {
        "python": "3.13",
        "postgresql": 17,
        "systemd_version": 257,
        "wkhtmltopdf_package": None,  # Debian 13 has none: set wkhtmltopdf_debs["debian-13"]
    },
    "ubuntu-24.04": {"python": "3.12", "postgresql": 16, "systemd_version": 255},
}

# --- PostgreSQL and the odoo account (tasks/odoo_base.py)
# The release's PostgreSQL (metapackage, any major). contrib (unaccent) is in the server package
# since PostgreSQL 10: "postgresql-contrib" is only virtual on Debian 13, never "installed".
postgresql_packages = ["postgresql"]
odoo_user = "odoo"  # system user running Odoo; also its PostgreSQL role (peer authentication)
odoo_home = "/home/odoo"  # home of odoo_user: checkout, scripts and dumps live below it
polkit_packages = ["polkitd"]  # lets odoo start/stop/restart its own units without sudo
uv_version = "0.13.9"  # uv pinned from PyPI (no snap in LXD containers)
uv_install_dir = "/opt/uv"  # venv holding uv; /usr/local/bin/uv links to it
# uv-managed Pythons (when no system Python matches the app's): outside uv's cache, so neither
# `uv cache clean` nor a uv upgrade takes the venv's interpreter away.
uv_python_install_dir = f"{odoo_home}/.local/share/uv/python"
uv_python_preference = "system"  # a matching system Python first; else uv installs one
wkhtmltopdf_package = "wkhtmltopdf"  # the release's package (None where the release has none)
# Patched-Qt builds (wkhtmltopdf/packaging releases) by release, preferred to the package:
# {"debian-13": {"url": "https://.../wkhtmltox_0.12.6.1-3.bookworm_amd64.deb", "sha256": "..."}}
wkhtmltopdf_debs = {}
odoo_system_packages = [  # libraries and headers Odoo's Python dependencies build against
    "build-essential",
    "python3-dev",
    "libpq-dev",
    "libxml2-dev",
    "libxslt1-dev",
    "libldap-dev",  # libldap2-dev is only a transitional name
    "libsasl2-dev",
    "libjpeg-dev",
    "zlib1g-dev",
    "libffi-dev",
    "fonts-dejavu-core",
    "nftables",  # odoo-front-gate: Odoo's ports shut to new connections before it stops
]

# --- The OCA France instance (tasks/oca_france.py)
oca_france_repo_url = os.environ.get(  # app repository; the sandbox points it at a local repo
    "OCA_FRANCE_APP_REPO", "https://github.com/oca-france/oca-france-custom"
)
oca_france_branch = "18.0"  # branch cloned by the first apply and followed by recette
oca_france_dir = f"{odoo_home}/oca-france"  # the checkout; its .venv is created by `uv sync`
oca_france_service = "odoo-oca-france.service"  # systemd unit running the server
odoo_data_dir = f"{odoo_home}/.local/share/Odoo"  # Odoo data_dir: filestore and sessions
# Root-owned, outside odoo's home: what root writes, odoo can neither change nor redirect.
host_programs_dir = "/opt/oca-france"  # the host programs (bin/) and their library (lib/)
host_config_dir = "/etc/oca-france"  # host.json, the server's config, the transfer's key files
odoo_config_path = f"{host_config_dir}/odoo.conf"  # the server's config (root:odoo 0640, secrets)
odoo_dumps_dir = f"{odoo_home}/.odoo_dumps"  # safety backups and production data for restores
odoo_scripts_dir = f"{odoo_home}/scripts"  # odoo's own: the deploy entry point (a link to bin/)
odoo_db_name = None  # database name: set per environment (oca-france-<environment>)
odoo_init_modules = ["oca_france_all"]  # modules installed when the database is created
# Extra addons paths, relative to the checkout; each must exist. None by default: the app's
# addons are installed into its venv and Odoo finds them in the odoo.addons namespace.
odoo_addons_subdirs = []
# Odoo on loopback only: everything else reaches it through the front door (front_port).
odoo_http_interface = "127.0.0.1"  # where Odoo's HTTP and websocket (gevent) ports listen
odoo_http_port = 18069  # its HTTP port (the front door holds front_port)
odoo_gevent_port = 8072  # its websocket port (prefork mode serves /websocket only there)
odoo_workers = 2  # prefork workers (0 = threaded mode)
odoo_max_cron_threads = 1  # cron workers
odoo_limit_memory_soft = 2 * 1024**3  # bytes: a worker is recycled above this
odoo_limit_memory_hard = int(2.5 * 1024**3)  # bytes: a worker is killed above this
odoo_limit_time_cpu = 600  # seconds of CPU per request
odoo_limit_time_real = 1200  # seconds of wall time per request
odoo_proxy_mode = True  # trust X-Forwarded-* (the front door sets them, on loopback)
odoo_server_wide_modules = ["base", "web", "module_change_auto_install"]  # loaded at startup
odoo_load_language = "fr_FR"  # language loaded into a new database
odoo_unaccent = True  # accent-insensitive search (the unaccent extension)
odoo_modules_auto_install_disabled = [  # kept from auto-install (module_change_auto_install)
    "partner_autocomplete",
    "iap",
    "mail_bot",
    "snailmail",
    "snailmail_account",
]
odoo_running_env = None  # server_environment's running_env: set per environment
odoo_server_env_parameters = {}  # ir.config_parameter values forced by the server environment
# The instance's public URL: when set, web.base.url is forced to it and frozen (server
# environment), so that no link the instance writes points elsewhere. None: Odoo's own.
odoo_public_url = None
odoo_start_timeout = 120  # seconds the deploy waits for the health page after a start
odoo_restart_sec = 10  # seconds between a crash and the service's restart
odoo_restart_steps = 5  # with systemd >= 254: then longer waits, in this many steps...
odoo_restart_max_delay_sec = 300  # ... up to this many seconds between restarts

# How the deploy talks to Odoo: commands of the checkout's venv, run from the checkout, as
# argument lists. {venv} {config} {db} {modules} are filled in by tasks/commands.py:odoo_command.
odoo_sync_command = ["uv", "sync", "--locked"]  # .venv from uv.lock, with the app's Python
odoo_initdb_command = [  # --no-cache: no cache-<date>-<hash> template database left behind
    "{venv}/bin/click-odoo-initdb", "-c", "{config}", "-n", "{db}", "-m", "{modules}",
    "--no-demo", "--no-cache",
]  # fmt: skip
odoo_update_command = [
    "{venv}/bin/click-odoo-update", "-c", "{config}", "-d", "{db}", "--i18n-overwrite"
]  # fmt: skip
# deploy --dry-run: what the update would do, with the target's code, changing nothing.
odoo_list_updates_command = [
    "{venv}/bin/click-odoo-update", "-c", "{config}", "-d", "{db}", "--list-only"
]  # fmt: skip
odoo_neutralize_command = ["{venv}/bin/odoo", "neutralize", "-c", "{config}", "-d", "{db}"]
odoo_server_command = ["{venv}/bin/odoo", "-c", "{config}"]

# --- The deploy (host/bin/deploy: oca_france_host/deploy.py, its steps in deploy_steps.py)
deploy_snapshots_kept = 2  # snapshots (database copy + filestore links) kept after a success
deploy_disk_margin_mib = 1024  # MiB that must stay free beside a snapshot, or the deploy refuses
deploy_logs_kept = 30  # per-deploy logs kept (Odoo's and uv's output)
deploy_repair_calendar = "*-*-* *:*:00"  # how often a deploy that died is looked for and repaired
postgresql_data_root = "/var/lib/postgresql"  # where PostgreSQL keeps its data (free disk check)
deploy_restore_allowed = False  # whether `deploy -R` may replace the data with production's
git_fetch_timeout_sec = 300  # a fetch that takes longer fails (exit 3): it holds the lock
venv_sync_timeout_sec = 1200  # a venv sync too (serving: refused; stopped: rollback; apply: fails)
repair_lock_wait_sec = 20  # the repair waits this long for the lock (a short hold passes)
apply_lock_wait_sec = 120  # an apply waits this long for the lock a deploy or backup holds
apply_lock_max_sec = 3600  # the most an apply's hold lasts (it ends with the apply's session)
deploy_ref_pattern = ""  # regex every deployed ref must match ("" = any ref)

# --- The front door (tasks/front_door.py): HAProxy in each container, on the port the
# provider's reverse proxy reaches; /websocket to Odoo's gevent port, the rest to its HTTP port
front_door_packages = ["haproxy"]  # 2.6 on Debian 12, 3.0 on Debian 13
front_interface = "0.0.0.0"  # where the front door listens (the bridge)
front_port = 8069  # the port the provider's proxy reaches (unchanged for it)
# The provider proxy's source address(es) or networks, as this host sees them: required (set
# per environment); its X-Forwarded-For is believed, nobody else's
front_trusted_proxies = []
front_public_proto = "https"  # X-Forwarded-Proto for the trusted proxy's requests without one
# While Odoo is stopped (a deploy), a request is held and retried about once a second for
# this long, then answered with the maintenance page (503): keep it below the provider
# proxy's own timeout (often 60 s)
front_hold_sec = 30
front_retry_after_sec = 30  # the maintenance page's Retry-After
front_max_body_mib = 128  # larger request bodies refused (413): Odoo's own upload limit
front_login_per_minute = 10  # login POSTs per client (IPv4 address, IPv6 /64) a minute, then 429
front_websocket_idle_sec = 600  # an idle websocket closed after this (Odoo pings within 60 s)
front_keepalive_sec = 75  # an idle keep-alive connection from the proxy kept this long
# Odoo stopping: new connections refused (held by the front door) and up to this long for
# Odoo to take those already queued (odoo-front-gate)
front_gate_drain_sec = 10

# --- Backups (tasks/backups.py): daily, while the site serves, kept grandfather-father-son
backup_enabled = False  # the odoo-backup timer (production)
backup_dir = f"{odoo_dumps_dir}/backups"  # one directory per backup: dump, filestore, manifest
# when the daily backup runs (local time; never 02:00-03:00 in a zone with summer time: that
# hour is skipped in March, and timers do not fire in it)...
backup_calendar = "*-*-* 01:15:00"
backup_randomized_delay_sec = 1800  # ... plus up to this many seconds
backup_lock_wait_sec = 3600  # how long a backup waits for a running deploy before failing
backup_keep_daily = 7  # newest backup of each of the last N days that have one
backup_keep_weekly = 4  # then of each of the N weeks before
backup_keep_monthly = 3  # then of each of the N months before
# Tables whose row counts each backup records (as its dump holds them): the drill compares
backup_counted_tables = [
    "res_partner", "res_users", "ir_attachment", "account_move", "account_move_line",
    "mail_message",
]  # fmt: skip

# --- Production data for recette: prod sends each new backup (tasks/backups.py), recette
# verifies it, then lets `deploy --restore` use it (tasks/production_data.py, where
# deploy_restore_allowed). The dedicated key pair: OCA_FRANCE_BACKUP_TRANSFER_KEY_FILE in .env.
backup_transfer_enabled = False  # send each new backup to recette (prod)
backup_transfer_host = None  # recette's address as prod reaches it: required for the transfer
backup_transfer_port = 22  # recette's SSH port
# recette's SSH host key, pinned on prod ("ssh-ed25519 AAAA...", from recette's
# /etc/ssh/ssh_host_ed25519_key.pub): prod trusts no other key, and never on first use.
backup_transfer_host_key = None
backup_transfer_bwlimit_kbps = 0  # rsync --bwlimit for the transfer, in KiB/s (0: no limit)
backup_transfer_retry_sec = 1200  # a failed transfer is tried again this much later...
backup_transfer_retries = 4  # ... at most this many times (then its unit fails, and alerts)
production_data_kept = 2  # verified production backups recette keeps, newest first
# recette: what prod's key may store in incoming/ (one delivery: the dump and the
# filestore); a delivery over it is refused, and incoming/ emptied
production_data_incoming_limit_mib = 20480
production_data_incoming_lock_wait_sec = 900  # a transfer waits this long for an acceptance's copy
# What prod's key runs there, incoming/ appended: rrsync -wo writes into it and nowhere else
# (-munge: symlinks sent are made harmless)
production_data_receive_command = ["/usr/bin/rrsync", "-wo", "-munge"]

# --- Off-site copies: prod pushes each new backup into a BorgBackup repository on the backup
# host (tasks/offsite.py), encrypted on prod (repokey-blake2), through a key that can only
# append (borg serve --append-only); the backup host prunes it (tasks/backup_host.py). The key
# pair: OCA_FRANCE_OFFSITE_KEY_FILE in .env; the passphrase: ODOO_OCA_FRANCE_BORG_PASSPHRASE.
offsite_enabled = False  # push each new backup to the backup host (prod)
offsite_host = None  # the backup host's address as prod reaches it: required for the push
offsite_port = 22  # its SSH port
# its SSH host key, pinned on prod ("ssh-ed25519 AAAA...", from the backup host's
# /etc/ssh/ssh_host_ed25519_key.pub): prod trusts no other key, and never on first use.
offsite_host_key = None
offsite_user = "borg"  # the backup host's account owning the repositories (no other use)
offsite_home = "/srv/borg"  # its home: the repositories, nothing else
offsite_repository = f"{offsite_home}/oca-france-prod"  # prod's repository there
offsite_compression = "zstd,3"  # borg create --compression (the dump compresses well)
offsite_lock_wait_sec = 600  # borg waits this long for the repository's lock (a prune, a drill)
offsite_push_retry_sec = 1200  # a failed push is tried again this much later...
offsite_push_retries = 4  # ... at most this many times (then its unit fails, and alerts)
offsite_prune_calendar = "*-*-* 11:00:00"  # the backup host's guarded prune and compact
offsite_keep_daily = 14  # kept by the backup host (at least 7 / 4 / 3): a day each for N days...
offsite_keep_weekly = 8  # ... then per week...
offsite_keep_monthly = 12  # ... then per month (dedup makes more cheap)
offsite_max_age_hours = 36  # the newest archive older than this: flagged, and prune refuses
# The drill: the newest archive restored into scratch (a database, a directory), checked
# against its manifest (sha256s, pg_restore, row counts), then borg check
offsite_drill_calendar = "Sun *-*-* 13:00:00"  # weekly, after that day's prune
offsite_drill_dir = "/var/lib/oca-france/drill"  # the scratch directory (a backup's size free)
offsite_drill_verify_data_days = 28  # borg check --verify-data (reads every chunk) this often
offsite_drill_max_age_days = 8  # make status flags a drill older than this (or failed)
# An apply for a recovery from the backup host (make apply-prod RECOVERING=1, on a bare host,
# before make recover-prod): never set here. It installs everything but leaves the service and
# the backup and check timers as they are (off on a bare host) until the recovered data runs.
recovering = False

# --- Alerts (tasks/alerts.py): a failed unit, a full disk, an old backup, told to the
# operators through each channel set here (none by default: the journal only)
alert_email_to = []  # recipients of the alerts ([] = no e-mail)
alert_email_from = "odoo-alerts@localhost"  # the alerts' sender
alert_smtp_host = None  # the SMTP relay the alerts go through (required with alert_email_to)
alert_smtp_port = 587  # its port
alert_smtp_tls = "starttls"  # "starttls", "tls" (implicit, port 465) or "off" (trusted network)
# its login (None: none); its password: ODOO_OCA_FRANCE_ALERT_SMTP_PASSWORD in .env
alert_smtp_user = None
alert_webhook = False  # POST each alert as JSON to ODOO_OCA_FRANCE_ALERT_WEBHOOK_URL (.env)
alert_repeat_window_min = 60  # a unit that restarts itself (the server) alerts once per window
alert_state_dir = "/var/lib/oca-france/alerts"  # what was sent (odoo-status shows the last)
check_calendar = "*:0/15"  # when odoo-check looks at the disks and the backups' ages
disk_alert_percent = 85  # a watched filesystem this full is flagged, and alerted once
disk_watched_paths = [postgresql_data_root, odoo_home]  # ... the filesystems holding these
# A server down or a deploy unfinished for less than this is a moment (systemd restarting it
# after a crash, which alerts on its own; a deploy's downtime): odoo-check looks again before
# alerting.
check_settle_sec = 180
# Dead man's switch per job (healthchecks.io's convention: <url>/start, <url>, <url>/fail):
# the service expecting the pings notices a job that never runs. None: no ping.
ping_urls = {"backup": None, "transfer": None, "refresh": None, "offsite": None}

# --- Status (make status): what gets flagged
status_backup_max_age_hours = 36  # prod: newest backup older than this
status_production_data_max_age_days = 8  # recette: production data in use older than this

# --- Automation
backup_host = False  # the off-site backup host (group_data/backup.py): borg, no Odoo
recette_automation = False  # auto-deploy on branch moves and weekly production refresh
fail2ban_enabled = True  # fail2ban on sshd
auto_deploy_calendar = "*-*-* *:*:00"  # when the recette checks whether the branch moved
weekly_deploy_calendar = "Mon *-*-* 04:00:00"  # weekly refresh from production data
weekly_deploy_lock_wait_sec = 900  # ... waiting this long for a running deploy or acceptance
