"""Recette automation: redeploy when 18.0 moves (every minute), weekly production refresh."""

from pyinfra import host
from pyinfra.facts.files import File
from pyinfra.operations import files, systemd
from pyinfra.operations.util import any_changed

from tasks.render import RECETTE_TIMERS, auto_deploy_state_file, rendered_files, template_path
from tasks.util import run_unless

data = host.data
templates = rendered_files(data)
auto_deploy_state = auto_deploy_state_file(data)

run_unless(
    name="Record the checkout's commit as the last one odoo-auto-deploy saw (first apply)",
    done=lambda: bool(host.get_fact(File, path=auto_deploy_state)),
    command=f"git -C {data.oca_france_dir} rev-parse HEAD > {auto_deploy_state}",
    _sudo=True,
    _sudo_user=data.odoo_user,
)

script_path, script_vars = templates["odoo-auto-deploy.sh.j2"]
files.template(
    name=f"Install the auto-deploy script ({script_path})",
    src=template_path("odoo-auto-deploy.sh.j2"),
    dest=script_path,
    user="root",
    group="root",
    mode="755",
    **script_vars,
)

units = []
for timer in RECETTE_TIMERS:
    for kind in ("service", "timer"):
        unit_path, unit_vars = templates[f"{timer}.{kind}.j2"]
        units.append(
            files.template(
                name=f"Install {timer}.{kind}",
                src=template_path(f"{timer}.{kind}.j2"),
                dest=unit_path,
                user="root",
                group="root",
                mode="644",
                **unit_vars,
            )
        )

systemd.daemon_reload(
    name="Reload systemd (a timer or its service changed)",
    _if=any_changed(*units),
)

for timer in RECETTE_TIMERS:
    systemd.service(
        name=f"Enable and start {timer}.timer",
        service=f"{timer}.timer",
        running=True,
        enabled=True,
    )
