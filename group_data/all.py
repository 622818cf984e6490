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
]
system_locale = "fr_FR.UTF-8"  # generated locale, also the collation of PostgreSQL's template1

# --- PostgreSQL and the odoo account (tasks/odoo_base.py)
postgresql_packages = ["postgresql", "postgresql-contrib"]  # distro PostgreSQL (15 on Debian 12)
odoo_user = "odoo"  # system user running Odoo; also its PostgreSQL role (peer authentication)
odoo_home = "/home/odoo"  # home of odoo_user: checkout, scripts and dumps live below it
polkit_packages = ["polkitd"]  # lets odoo start/stop/restart its own units without sudo
uv_version = "0.13.9"  # uv pinned from PyPI (no snap in LXD containers)
uv_install_dir = "/opt/uv"  # venv holding uv; /usr/local/bin/uv links to it
wkhtmltopdf_package = "wkhtmltopdf"  # distro build, used when no patched-build URL is set
wkhtmltopdf_deb_url = None  # URL of the patched-Qt .deb (wkhtmltopdf/packaging releases)
wkhtmltopdf_deb_sha256 = None  # sha256 of that .deb; required with the URL
odoo_system_packages = [  # libraries and headers Odoo's Python dependencies build against
    "build-essential",
    "python3-dev",
    "libpq-dev",
    "libxml2-dev",
    "libxslt1-dev",
    "libldap2-dev",
    "libsasl2-dev",
    "libjpeg-dev",
    "zlib1g-dev",
    "libffi-dev",
    "fonts-dejavu-core",
]

# --- The OCA France instance (tasks/oca_france.py)
oca_france_repo_url = os.environ.get(  # app repository; the sandbox points it at a local repo
    "OCA_FRANCE_APP_REPO", "https://github.com/oca-france/oca-france-custom"
)
oca_france_branch = "18.0"  # branch cloned by the first apply and followed by recette
oca_france_dir = f"{odoo_home}/oca-france"  # the checkout; its .venv is created by `uv sync`
oca_france_python = "/usr/bin/python3"  # interpreter uv builds the venv with (no downloads)
oca_france_service = "odoo-oca-france.service"  # systemd unit running the server
odoo_data_dir = f"{odoo_home}/.local/share/Odoo"  # Odoo data_dir: filestore and sessions
odoo_config_path = f"{odoo_home}/.odoorc"  # the server's config file (mode 0640, holds secrets)
odoo_dumps_dir = f"{odoo_home}/.odoo_dumps"  # safety backups and production data for restores
odoo_scripts_dir = f"{odoo_home}/scripts"  # deploy and helper scripts
odoo_db_name = None  # database name: set per environment (oca-france-<environment>)
odoo_init_modules = ["oca_france_all"]  # modules installed when the database is created
odoo_addons_subdirs = ["addons"]  # addons paths, relative to the checkout
odoo_http_interface = "0.0.0.0"  # the LXD host's reverse proxy reaches it over the bridge
odoo_http_port = 8069  # HTTP port of the server
odoo_workers = 2  # prefork workers (0 = threaded mode)
odoo_max_cron_threads = 1  # cron workers
odoo_limit_memory_soft = 2 * 1024**3  # bytes: a worker is recycled above this
odoo_limit_memory_hard = int(2.5 * 1024**3)  # bytes: a worker is killed above this
odoo_limit_time_cpu = 600  # seconds of CPU per request
odoo_limit_time_real = 1200  # seconds of wall time per request
odoo_proxy_mode = True  # trust X-Forwarded-* from the reverse proxy
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
odoo_start_timeout = 120  # seconds the deploy waits for the health page after a start

# How the deploy talks to Odoo: commands of the checkout's venv, run from the checkout.
# {venv} {config} {db} {modules} {python} are filled in by tasks/util.py:odoo_command.
odoo_sync_command = "uv sync --locked --python {python}"  # builds .venv from uv.lock
odoo_initdb_command = "{venv}/bin/click-odoo-initdb -c {config} -n {db} -m {modules} --no-demo"
odoo_update_command = "{venv}/bin/click-odoo-update -c {config} -d {db} --i18n-overwrite"
odoo_neutralize_command = "{venv}/bin/odoo neutralize -c {config} -d {db}"
odoo_server_command = "{venv}/bin/odoo -c {config}"

# --- The deploy script (templates/deploy.sh.j2)
deploy_backups_kept = 10  # safety backups kept in before-deploy/ (older ones are removed)
deploy_restore_allowed = False  # whether `deploy -R` may replace the data with production's
deploy_ref_pattern = ""  # regex every deployed ref must match ("" = any ref)

# --- Automation
recette_automation = False  # auto-deploy on branch moves and weekly production refresh
fail2ban_enabled = True  # fail2ban on sshd
auto_deploy_calendar = "*-*-* *:*:00"  # when the recette checks whether the branch moved
weekly_deploy_calendar = "Mon *-*-* 04:00:00"  # weekly refresh from production data
