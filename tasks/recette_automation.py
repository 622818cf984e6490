"""Recette automation: redeploy when 18.0 moves (every minute), weekly production refresh."""

from pyinfra import host
from pyinfra.facts.files import File
from pyinfra.operations import systemd
from pyinfra.operations.util import any_changed

from tasks.paths import auto_deploy_state_file
from tasks.render import RECETTE_TIMERS
from tasks.util import host_data, install_template, run_unless

data = host_data()
auto_deploy_state = auto_deploy_state_file(data)

run_unless(
    name="Record the checkout's commit as the last one odoo-auto-deploy saw (first apply)",
    done=lambda: bool(host.get_fact(File, path=auto_deploy_state)),
    command=f"git -C {data.oca_france_dir} rev-parse HEAD > {auto_deploy_state}",
    _sudo=True,
    _sudo_user=data.odoo_user,
)

units = [
    install_template(name=f"Install {timer}.{kind}", template=f"{timer}.{kind}.j2")
    for timer in RECETTE_TIMERS
    for kind in ("service", "timer")
]

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
