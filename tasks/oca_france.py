"""The OCA France instance: checkout, venv, .odoorc, database, service and deploy script.

pyinfra creates the checkout once; moving it to another release is the deploy script's job.
"""

from pyinfra import host
from pyinfra.facts.files import Directory
from pyinfra.operations import files, systemd
from pyinfra.operations.util import any_changed

from tasks.render import (
    REPAIR_UNITS,
    REPAIR_UNITS_ENABLED,
    checked_addons_subdirs,
    deploy_log_dir,
    odoo_command,
    production_data_dir,
    snapshot_dir,
    uv_env,
    venv_check_command,
    venv_sync_command,
)
from tasks.util import (
    command_succeeds,
    database_exists,
    host_data,
    install_template,
    psql_value,
    run_unless,
)

data = host_data()
odoo = data.odoo_user
as_odoo = {"_sudo": True, "_sudo_user": odoo}
checkout = data.oca_france_dir

files.directory(
    name=f"Create {data.odoo_scripts_dir} (root-owned: odoo runs the scripts, cannot edit them)",
    path=data.odoo_scripts_dir,
    user="root",
    group="root",
    mode="755",
)

for path, mode in (
    (data.odoo_dumps_dir, "700"),
    (snapshot_dir(data), "700"),
    (deploy_log_dir(data), "700"),
    (production_data_dir(data), "700"),
    (data.odoo_data_dir, "700"),
):
    files.directory(
        name=f"Create {path}",
        path=path,
        user=odoo,
        group=odoo,
        mode=mode,
        **as_odoo,  # so that parents it creates under the home (~/.local/share) are odoo's too
    )

run_unless(
    name=f"Clone {data.oca_france_repo_url} ({data.oca_france_branch}), first apply only",
    done=lambda: bool(host.get_fact(Directory, path=f"{checkout}/.git")),
    command=(
        f"git clone --quiet --branch {data.oca_france_branch} {data.oca_france_repo_url} {checkout}"
    ),
    **as_odoo,
)

# uv picks the Python the app asks for (.python-version, requires-python): a matching system
# one, else one it installs under uv_python_install_dir.
in_checkout = f"cd {checkout} && export {uv_env(data)} &&"
run_unless(
    name="Sync the venv with uv.lock (uv sync --locked), when it differs",
    done=lambda: command_succeeds(f"{in_checkout} {venv_check_command(data)}", odoo),
    command=f"{in_checkout} {venv_sync_command(data)}",
    **as_odoo,
)

addons_subdirs = checked_addons_subdirs(data)
if addons_subdirs:
    missing = " ".join(f"{checkout}/{sub}" for sub in addons_subdirs)
    run_unless(
        name=f"Check the extra addons paths exist ({', '.join(addons_subdirs)})",
        done=lambda: all(
            host.get_fact(Directory, path=f"{checkout}/{sub}") for sub in addons_subdirs
        ),
        # Only runs when one is missing: fail, naming it, before .odoorc points Odoo at it.
        command=(
            f"for dir in {missing}; do [ -d $dir ] || echo addons path does not exist: $dir"
            " '(odoo_addons_subdirs)' >&2; done; exit 1"
        ),
    )

odoorc = install_template(
    name=f"Write {data.odoo_config_path} (owner {odoo}, mode 0640)",
    template="odoorc.j2",
    mode="640",
    user=odoo,
    group=odoo,
    holds_secrets=True,
)

run_unless(
    name=f"Create the {data.odoo_db_name} database with {', '.join(data.odoo_init_modules)}",
    done=lambda: database_exists(data.odoo_db_name),
    command=f"cd {checkout} && {odoo_command(data, data.odoo_initdb_command)}",
    **as_odoo,
)

if data.odoo_unaccent:
    run_unless(
        name=f"Enable the unaccent extension in {data.odoo_db_name}",
        done=lambda: (
            psql_value(
                "SELECT 1 FROM pg_extension WHERE extname = 'unaccent'", database=data.odoo_db_name
            )
            == "1"
        ),
        # unaccent is a trusted extension: the database owner creates it, and owns it.
        command=f"psql -X -d '{data.odoo_db_name}' -c 'CREATE EXTENSION IF NOT EXISTS unaccent'",
        **as_odoo,
    )

unit = install_template(
    name=f"Install the {data.oca_france_service} unit",
    template="odoo-oca-france.service.j2",
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

install_template(
    name=f"Install the deploy script ({data.odoo_scripts_dir}/deploy)",
    template="deploy.sh.j2",
    mode="755",
)

install_template(
    name=f"Install the deploy's steps ({data.odoo_scripts_dir}/deploy-lib.sh)",
    template="deploy-lib.sh.j2",
    mode="644",
)

repair_units = [
    install_template(name=f"Install {unit}", template=f"{unit}.j2") for unit in REPAIR_UNITS
]

systemd.daemon_reload(
    name="Reload systemd (the repair units changed)",
    _if=any_changed(*repair_units),
)

for unit in REPAIR_UNITS_ENABLED:
    systemd.service(
        name=f"Enable {unit} (repairs a deploy that died: every minute, and at boot)",
        service=unit,
        running=unit.endswith(".timer"),
        enabled=True,
    )

install_template(
    name=f"Install the backup checker ({data.odoo_scripts_dir}/odoo-backup-verify)",
    template="odoo-backup-verify.py.j2",
    mode="755",
)

install_template(
    name=f"Install the status report ({data.odoo_scripts_dir}/odoo-status, make status)",
    template="odoo-status.py.j2",
    mode="755",
)
