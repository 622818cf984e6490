"""Off-site copies (production): each new backup pushed into prod's BorgBackup repository on
the backup host, encrypted here, through a key the backup host lets only append, to its pinned
host key (the backup host's side: tasks/backup_host.py)."""

from pyinfra.operations import apt, systemd

from tasks.util import host_data, install_template

data = host_data()

apt.packages(name="Install BorgBackup (the off-site push)", packages=["borgbackup"])

# In the root-owned config directory: odoo reads them (the push runs as odoo), and can
# replace none of them.
install_template(
    name="Install the off-site push key (used for nothing else; root:odoo 0640)",
    template="offsite-push.key.j2",
    mode="640",
    group=data.odoo_user,
    holds_secrets=True,
)
install_template(
    name="Write the off-site repository's passphrase (root:odoo 0640)",
    template="offsite-passphrase.j2",
    mode="640",
    group=data.odoo_user,
    holds_secrets=True,
)
install_template(
    name=f"Pin the backup host's host key ({data.offsite_host})",
    template="offsite.known_hosts.j2",
    mode="644",
)
unit = install_template(
    name="Install odoo-offsite-push.service",
    template="odoo-offsite-push.service.j2",
)

systemd.daemon_reload(name="Reload systemd (the push unit changed)", _if=unit.did_change)
