"""Recette automation: redeploy when 18.0 moves (every minute), weekly production refresh."""

from pyinfra import host
from pyinfra.operations import files, systemd
from pyinfra.operations.util import any_changed

from tasks.util import template_path

data = host.data
common = {
    "odoo_user": data.odoo_user,
    "branch": data.oca_france_branch,
    "checkout": data.oca_france_dir,
    "dumps_dir": data.odoo_dumps_dir,
    "scripts_dir": data.odoo_scripts_dir,
}

files.template(
    name=f"Install the auto-deploy script ({data.odoo_scripts_dir}/odoo-auto-deploy)",
    src=template_path("odoo-auto-deploy.sh.j2"),
    dest=f"{data.odoo_scripts_dir}/odoo-auto-deploy",
    user="root",
    group="root",
    mode="755",
    **common,
)

units = []
for timer, calendar in (
    ("odoo-auto-deploy", data.auto_deploy_calendar),
    ("odoo-weekly-deploy", data.weekly_deploy_calendar),
):
    for kind in ("service", "timer"):
        units.append(
            files.template(
                name=f"Install {timer}.{kind}",
                src=template_path(f"{timer}.{kind}.j2"),
                dest=f"/etc/systemd/system/{timer}.{kind}",
                user="root",
                group="root",
                mode="644",
                calendar=calendar,
                **common,
            )
        )

systemd.daemon_reload(
    name="Reload systemd (a timer or its service changed)",
    _if=any_changed(*units),
)

for timer in ("odoo-auto-deploy.timer", "odoo-weekly-deploy.timer"):
    systemd.service(
        name=f"Enable and start {timer}",
        service=timer,
        running=True,
        enabled=True,
    )
