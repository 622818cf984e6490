"""Production data for recette: prod's key may only deliver backups into an incoming
directory (rrsync -wo); each delivery is verified against its manifest before
`deploy --restore` may use it."""

from pyinfra.operations import apt, files, systemd
from pyinfra.operations.util import any_changed

from tasks.render import incoming_dir, odoo_ssh_dir
from tasks.util import host_data, install_template

data = host_data()

apt.packages(
    name="Install rsync (rrsync restricts prod's key to delivering backups)",
    packages=["rsync"],
)

# production-data/ itself: tasks/oca_france.py (every host's deploy looks there).
for path in (odoo_ssh_dir(data), incoming_dir(data)):
    files.directory(
        name=f"Create {path}",
        path=path,
        user=data.odoo_user,
        group=data.odoo_user,
        mode="700",
    )

install_template(
    name="Let prod's transfer key deliver backups, and nothing else (authorized_keys)",
    template="authorized_keys.j2",
    mode="600",
    user=data.odoo_user,
    group=data.odoo_user,
)

install_template(
    name=f"Install the acceptance ({data.odoo_scripts_dir}/odoo-production-data-accept)",
    template="odoo-production-data-accept.py.j2",
    mode="755",
)

units = [
    install_template(
        name=f"Install odoo-production-data-accept.{kind}",
        template=f"odoo-production-data-accept.{kind}.j2",
    )
    for kind in ("service", "path")
]

systemd.daemon_reload(
    name="Reload systemd (the acceptance units changed)",
    _if=any_changed(*units),
)

systemd.service(
    name="Enable and start odoo-production-data-accept.path",
    service="odoo-production-data-accept.path",
    running=True,
    enabled=True,
)
