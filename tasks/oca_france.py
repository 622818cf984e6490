"""The OCA France instance: checkout, venv, .odoorc, database, service and deploy script.

pyinfra creates the checkout once; moving it to another release is the deploy script's job.
"""

from pyinfra import host
from pyinfra.facts.files import Directory, File
from pyinfra.operations import files, systemd
from pyinfra.operations.util import any_changed

from tasks.util import (
    command_succeeds,
    database_exists,
    odoo_command,
    psql_value,
    run_unless,
    secret_template,
    template_path,
)

data = host.data
odoo = data.odoo_user
as_odoo = {"_sudo": True, "_sudo_user": odoo}
checkout = data.oca_france_dir
if not data.odoo_db_name:
    raise ValueError("odoo_db_name must be set in the environment's group data")

files.directory(
    name=f"Create {data.odoo_scripts_dir} (root-owned: odoo runs the scripts, cannot edit them)",
    path=data.odoo_scripts_dir,
    user="root",
    group="root",
    mode="755",
)

for path, mode in (
    (data.odoo_dumps_dir, "700"),
    (f"{data.odoo_dumps_dir}/before-deploy", "700"),
    (f"{data.odoo_dumps_dir}/production-data", "700"),
    (data.odoo_data_dir, "700"),
):
    files.directory(
        name=f"Create {path}",
        path=path,
        user=odoo,
        group=odoo,
        mode=mode,
    )

run_unless(
    name=f"Clone {data.oca_france_repo_url} ({data.oca_france_branch}), first apply only",
    done=lambda: bool(host.get_fact(Directory, path=f"{checkout}/.git")),
    command=(
        f"git clone --quiet --branch {data.oca_france_branch} "
        f"{data.oca_france_repo_url} {checkout}"
    ),
    **as_odoo,
)

sync_command = odoo_command(data.odoo_sync_command)
run_unless(
    name="Sync the venv with uv.lock (uv sync --locked), when it differs",
    done=lambda: command_succeeds(f"cd {checkout} && {sync_command} --check --offline", odoo),
    command=f"cd {checkout} && {sync_command}",
    **as_odoo,
)

odoorc = secret_template(
    name=f"Write {data.odoo_config_path} (owner {odoo}, mode 0640)",
    src=template_path("odoorc.j2"),
    dest=data.odoo_config_path,
    user=odoo,
    group=odoo,
    mode="640",
    admin_password=data.odoo_admin_password,
    odoo_user=odoo,
    db_name=data.odoo_db_name,
    running_env=data.odoo_running_env,
    data_dir=data.odoo_data_dir,
    addons_path=[f"{checkout}/{subdir}" for subdir in data.odoo_addons_subdirs],
    http_interface=data.odoo_http_interface,
    http_port=data.odoo_http_port,
    proxy_mode=data.odoo_proxy_mode,
    workers=data.odoo_workers,
    max_cron_threads=data.odoo_max_cron_threads,
    limit_memory_soft=data.odoo_limit_memory_soft,
    limit_memory_hard=data.odoo_limit_memory_hard,
    limit_time_cpu=data.odoo_limit_time_cpu,
    limit_time_real=data.odoo_limit_time_real,
    server_wide_modules=data.odoo_server_wide_modules,
    load_language=data.odoo_load_language,
    unaccent=data.odoo_unaccent,
    modules_auto_install_disabled=data.odoo_modules_auto_install_disabled,
    server_env_parameters=data.odoo_server_env_parameters,
)

run_unless(
    name=f"Create the {data.odoo_db_name} database with {', '.join(data.odoo_init_modules)}",
    done=lambda: database_exists(data.odoo_db_name),
    command=f"cd {checkout} && {odoo_command(data.odoo_initdb_command)}",
    **as_odoo,
)

if data.odoo_unaccent:
    run_unless(
        name=f"Enable the unaccent extension in {data.odoo_db_name}",
        done=lambda: psql_value(
            "SELECT 1 FROM pg_extension WHERE extname = 'unaccent'", database=data.odoo_db_name
        ) == "1",
        # unaccent is a trusted extension: the database owner creates it, and owns it.
        command=f"psql -X -d '{data.odoo_db_name}' -c 'CREATE EXTENSION IF NOT EXISTS unaccent'",
        **as_odoo,
    )

unit = files.template(
    name=f"Install the {data.oca_france_service} unit",
    src=template_path("odoo-oca-france.service.j2"),
    dest=f"/etc/systemd/system/{data.oca_france_service}",
    user="root",
    group="root",
    mode="644",
    db_name=data.odoo_db_name,
    odoo_user=odoo,
    checkout=checkout,
    server_command=odoo_command(data.odoo_server_command),
)

systemd.daemon_reload(
    name="Reload systemd (the unit changed)",
    _if=unit.did_change,
)

systemd.service(
    name=f"Restart {data.oca_france_service} (its config or unit changed)",
    service=data.oca_france_service,
    restarted=True,
    _if=any_changed(odoorc, unit),
)

systemd.service(
    name=f"Enable and start {data.oca_france_service}",
    service=data.oca_france_service,
    running=True,
    enabled=True,
)

health_host = "127.0.0.1" if data.odoo_http_interface == "0.0.0.0" else data.odoo_http_interface
odoo_url = f"http://{health_host}:{data.odoo_http_port}"
files.template(
    name=f"Install the deploy script ({data.odoo_scripts_dir}/deploy)",
    src=template_path("deploy.sh.j2"),
    dest=f"{data.odoo_scripts_dir}/deploy",
    user="root",
    group="root",
    mode="755",
    repo_name=data.oca_france_repo_url.rstrip("/").rsplit("/", 1)[-1],
    db_name=data.odoo_db_name,
    running_env=data.odoo_running_env,
    odoo_user=odoo,
    checkout=checkout,
    service=data.oca_france_service,
    data_dir=data.odoo_data_dir,
    dumps_dir=data.odoo_dumps_dir,
    backups_kept=data.deploy_backups_kept,
    restore_allowed=data.deploy_restore_allowed,
    ref_pattern=data.deploy_ref_pattern,
    health_url=f"{odoo_url}/web/health?db_server_status=1",
    login_url=f"{odoo_url}/web/login",
    start_timeout=data.odoo_start_timeout,
    sync_command=sync_command,
    neutralize_command=odoo_command(data.odoo_neutralize_command),
    update_command=odoo_command(data.odoo_update_command),
)
