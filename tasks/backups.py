"""Daily backups (production): database, filestore snapshot and manifest, kept 7/4/3; each new
one sent to recette with a key used for nothing else, to recette's pinned host key."""

from pyinfra.operations import apt, files, systemd
from pyinfra.operations.util import any_changed

from tasks.util import enable_and_start, host_data, install_template

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
    _sudo=True,  # written as odoo: root writes nothing under odoo's home
    _sudo_user=data.odoo_user,
)

units = [
    install_template(name=f"Install odoo-backup.{kind}", template=f"odoo-backup.{kind}.j2")
    for kind in ("service", "timer")
]

if data.backup_transfer_enabled:
    # In the root-owned config directory: odoo reads the key (ssh accepts a key it does
    # not own at 0640), and can neither replace it nor the pinned host key.
    install_template(
        name="Install the backup transfer key (used for nothing else; root:odoo 0640)",
        template="backup-transfer.key.j2",
        mode="640",
        group=data.odoo_user,
        holds_secrets=True,
    )
    install_template(
        name=f"Pin recette's host key ({data.backup_transfer_host})",
        template="backup-transfer.known_hosts.j2",
        mode="644",
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

enable_and_start("odoo-backup.timer", "")
