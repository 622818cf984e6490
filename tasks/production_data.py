"""Production data for recette: prod's key may only deliver backups into an incoming
directory (rrsync -wo); each delivery is verified against its manifest before
`deploy --restore` may use it."""

from pyinfra.operations import apt, files, server, systemd
from pyinfra.operations.util import any_changed

from tasks.paths import incoming_dir
from tasks.util import host_data, install_template

data = host_data()

apt.packages(
    name="Install rsync (rrsync restricts prod's key to delivering backups)",
    packages=["rsync"],
)

# production-data/ itself: tasks/oca_france.py (every host's deploy looks there).
files.directory(
    name=f"Create {incoming_dir(data)}",
    path=incoming_dir(data),
    user=data.odoo_user,
    group=data.odoo_user,
    mode="700",
    _sudo=True,  # written as odoo: root writes nothing under odoo's home
    _sudo_user=data.odoo_user,
)

files.directory(
    name=f"Create {data.host_config_dir}/authorized_keys (root-owned: sshd reads it for odoo)",
    path=f"{data.host_config_dir}/authorized_keys",
    user="root",
    group="root",
    mode="755",
)

keys = install_template(
    name="Let prod's transfer key deliver backups, and nothing else (authorized_keys)",
    template="authorized_keys.j2",
    mode="644",
)

sshd_config = install_template(
    name="Let sshd read the keys root holds for odoo (sshd_config.d)",
    template="sshd-authorized-keys.conf.j2",
)

server.shell(
    name="Check sshd's configuration, then reload it (its AuthorizedKeysFile changed)",
    commands=["sshd -t", "systemctl reload ssh"],
    _if=sshd_config.did_change,
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
