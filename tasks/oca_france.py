"""The OCA France instance: checkout, venv, .odoorc, database, service and deploy script.

pyinfra creates the checkout once; moving it to another release is the deploy script's job.
"""

from pyinfra import host
from pyinfra.facts.files import Directory
from pyinfra.operations import files, systemd
from pyinfra.operations.util import any_changed

from tasks.render import odoo_command, rendered_files, template_path
from tasks.util import command_succeeds, database_exists, psql_value, run_unless, secret_template

data = host.data
odoo = data.odoo_user
as_odoo = {"_sudo": True, "_sudo_user": odoo}
checkout = data.oca_france_dir
if not data.odoo_db_name:
    raise ValueError("odoo_db_name must be set in the environment's group data")
templates = rendered_files(data)

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
        f"git clone --quiet --branch {data.oca_france_branch} {data.oca_france_repo_url} {checkout}"
    ),
    **as_odoo,
)

sync_command = odoo_command(data, data.odoo_sync_command)
run_unless(
    name="Sync the venv with uv.lock (uv sync --locked), when it differs",
    done=lambda: command_succeeds(f"cd {checkout} && {sync_command} --check --offline", odoo),
    command=f"cd {checkout} && {sync_command}",
    **as_odoo,
)

odoorc_path, odoorc_vars = templates["odoorc.j2"]
odoorc = secret_template(
    name=f"Write {odoorc_path} (owner {odoo}, mode 0640)",
    src=template_path("odoorc.j2"),
    dest=odoorc_path,
    user=odoo,
    group=odoo,
    mode="640",
    **odoorc_vars,
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

unit_path, unit_vars = templates["odoo-oca-france.service.j2"]
unit = files.template(
    name=f"Install the {data.oca_france_service} unit",
    src=template_path("odoo-oca-france.service.j2"),
    dest=unit_path,
    user="root",
    group="root",
    mode="644",
    **unit_vars,
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

deploy_path, deploy_vars = templates["deploy.sh.j2"]
files.template(
    name=f"Install the deploy script ({deploy_path})",
    src=template_path("deploy.sh.j2"),
    dest=deploy_path,
    user="root",
    group="root",
    mode="755",
    **deploy_vars,
)
