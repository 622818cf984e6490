"""Daily backups (production): database, filestore snapshot and manifest, kept 7/4/3; each new
one sent to recette with a key used for nothing else, to recette's pinned host key."""

from pyinfra.operations import apt, files, systemd
from pyinfra.operations.util import any_changed

from tasks.render import odoo_ssh_dir
from tasks.util import host_data, install_template

data = host_data()

apt.packages(
    name="Install rsync (filestore snapshots hard-link unchanged files)",
    packages=["rsync"],
)

files.directory(
    name=f"Create {data.backup_dir}",
    path=data.backup_dir,
    user=data.odoo_user,
    group=data.odoo_user,
    mode="700",
)

install_template(
    name=f"Install the backup script ({data.odoo_scripts_dir}/odoo-backup)",
    template="odoo-backup.sh.j2",
    mode="755",
)

install_template(
    name=f"Install the retention program ({data.odoo_scripts_dir}/odoo-backup-prune)",
    template="odoo-backup-prune.py.j2",
    mode="755",
)

units = [
    install_template(name=f"Install odoo-backup.{kind}", template=f"odoo-backup.{kind}.j2")
    for kind in ("service", "timer")
]

if data.backup_transfer_enabled:
    files.directory(
        name=f"Create {odoo_ssh_dir(data)} (the transfer key and recette's pinned host key)",
        path=odoo_ssh_dir(data),
        user=data.odoo_user,
        group=data.odoo_user,
        mode="700",
    )
    install_template(
        name="Install the backup transfer key (used for nothing else)",
        template="backup-transfer.key.j2",
        mode="600",
        user=data.odoo_user,
        group=data.odoo_user,
        holds_secrets=True,
    )
    install_template(
        name=f"Pin recette's host key ({data.backup_transfer_host})",
        template="backup-transfer.known_hosts.j2",
        mode="644",
        user=data.odoo_user,
        group=data.odoo_user,
    )
    install_template(
        name=f"Install the transfer script ({data.odoo_scripts_dir}/odoo-backup-transfer)",
        template="odoo-backup-transfer.sh.j2",
        mode="755",
    )
    units.append(
        install_template(
            name="Install odoo-backup-transfer.service",
            template="odoo-backup-transfer.service.j2",
        )
    )

systemd.daemon_reload(
    name="Reload systemd (the backup units changed)",
    _if=any_changed(*units),
)

systemd.service(
    name="Enable and start odoo-backup.timer",
    service="odoo-backup.timer",
    running=True,
    enabled=True,
)
