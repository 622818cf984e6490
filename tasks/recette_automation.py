"""Recette automation: redeploy when 18.0 moves (every minute), weekly production refresh."""

from pyinfra import host
from pyinfra.operations import files, systemd
from pyinfra.operations.util import any_changed

from tasks.render import RECETTE_TIMERS, rendered_files, template_path

templates = rendered_files(host.data)

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
