"""The OCA France instance: checkout, venv, .odoorc, database, service and deploy script.

pyinfra creates the checkout once; moving it to another release is the deploy script's job.
"""

import shlex

from pyinfra import host
from pyinfra.facts.files import Directory
from pyinfra.operations import files, systemd
from pyinfra.operations.util import any_changed

from tasks.commands import odoo_command, uv_env, venv_check_command, venv_sync_command
from tasks.host_programs import install_host_programs
from tasks.paths import (
    deploy_log_dir,
    host_program,
    production_data_dir,
    snapshot_dir,
)
from tasks.render import REPAIR_UNITS, REPAIR_UNITS_ENABLED
from tasks.settings import checked_addons_subdirs
from tasks.util import (
    catch_up,
    command_succeeds,
    database_exists,
    enable_and_start,
    hold_instance_lock,
    host_data,
    install_template,
    psql_value,
    run_unless,
)

data = host_data()
odoo = data.odoo_user
as_odoo = {"_sudo": True, "_sudo_user": odoo}
checkout = data.oca_france_dir
LEGACY_FILES = [
    f"{data.odoo_home}/.odoorc",
    f"{data.odoo_home}/.ssh/authorized_keys",
    f"{data.odoo_home}/.ssh/backup-transfer",
    f"{data.odoo_home}/.ssh/backup-transfer.known_hosts",
]

# The layout before the root-owned one: root wrote odoo's ~/scripts (a root-owned directory
# odoo could move aside), ~/.odoorc and ~/.ssh's keys. Gone, each removed as its owner.
run_unless(
    name=f"Remove the former root-owned {data.odoo_scripts_dir} (programs now in bin/)",
    done=lambda: (
        not command_succeeds(
            f"test -d {data.odoo_scripts_dir} -a ! -L {data.odoo_scripts_dir}"
            f' -a "$(stat -c %U {data.odoo_scripts_dir})" = root',
            "root",
        )
    ),
    command=f"rm -rf {data.odoo_scripts_dir}",
)
run_unless(
    name="Remove the former root-written files of odoo's home (.odoorc, ~/.ssh's keys)",
    done=lambda: (
        not command_succeeds(
            f"for f in {' '.join(LEGACY_FILES)}; do [ -e $f -o -L $f ] && exit 0; done; exit 1",
            odoo,
        )
    ),
    command=f"rm -f {' '.join(LEGACY_FILES)}",
    **as_odoo,
)

files.directory(
    name=f"Create {data.odoo_scripts_dir} (odoo's own: the deploy entry point)",
    path=data.odoo_scripts_dir,
    user=odoo,
    group=odoo,
    mode="755",
    **as_odoo,
)

files.link(
    name=f"Link {data.odoo_scripts_dir}/deploy to {host_program(data, 'deploy')}",
    path=f"{data.odoo_scripts_dir}/deploy",
    target=host_program(data, "deploy"),
    user=odoo,
    group=odoo,
    **as_odoo,
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

# After the checks above: a refused apply changes neither the programs nor their config.
install_host_programs(data)

# From here on, the apply changes what a deploy also changes (the venv, the server config, the
# service): it holds the instance's lock as a deploy would, until the end (deploy.py).
hold_instance_lock(
    name="Hold the instance's lock for this apply (no deploy, backup or repair beside it)",
    program=host_program(data, "deploy"),
    user=odoo,
    wait=data.apply_lock_wait_sec,
    max_sec=data.apply_lock_max_sec,
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

odoorc = install_template(
    name=f"Write {data.odoo_config_path} (root:{odoo} 0640: odoo reads it, cannot change it)",
    template="odoorc.j2",
    mode="640",
    group=odoo,
    holds_secrets=True,
)

run_unless(
    name=f"Create the {data.odoo_db_name} database with {', '.join(data.odoo_init_modules)}",
    done=lambda: database_exists(data.odoo_db_name),
    command=f"cd {checkout} && {shlex.join(odoo_command(data, data.odoo_initdb_command))}",
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
    running=None,  # restarted if it runs; never started here (enable_and_start's rule)
    restarted=True,
    _if=any_changed(odoorc, unit),
)

catch_up(
    name=f"Restart {data.oca_france_service} if it runs an older config or unit (an apply died"
    " before its restart)",
    unit=data.oca_france_service,
    written={"odoorc.j2": odoorc, "odoo-oca-france.service.j2": unit},
    command=f"systemctl daemon-reload && systemctl restart {data.oca_france_service}",
)

enable_and_start(data.oca_france_service, "")

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
