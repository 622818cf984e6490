"""The backup host: prod's BorgBackup repository, which prod's key may only append to; its
retention (prune and compact) behind a guard, run here, where prod cannot reach; the weekly
drill that restores the newest archive into a scratch PostgreSQL database."""

from pyinfra.operations import apt, files, postgres, server, systemd
from pyinfra.operations.util import any_changed

from tasks.host_programs import install_host_programs
from tasks.paths import authorized_keys_dir, offsite_state_dir
from tasks.render import BACKUP_HOST_UNITS
from tasks.util import command_succeeds, host_data, install_template, run_unless

data = host_data()
borg = data.offsite_user

apt.packages(name="Install BorgBackup", packages=["borgbackup"])

# A shell only to run the forced command sshd gives prod's key (borg serve): no password.
server.user(
    name=f"Create {borg}, the repositories' owner (no password: keys only)",
    user=borg,
    system=True,
    home=data.offsite_home,
    shell="/bin/sh",
    create_home=False,
)
for path, holds in (
    (data.offsite_home, "the repositories"),
    (offsite_state_dir(data), "what the guard saw, the last prune and drill"),
    (data.offsite_drill_dir, "the drill's scratch: each archive it restores"),
):
    files.directory(
        name=f"Create {path} ({borg}'s alone: {holds})",
        path=path,
        user=borg,
        group=borg,
        mode="700",
    )

# The drill restores each week's newest dump into a scratch database, as prod's backups are
# restored: the release's own PostgreSQL, a role for the repositories' owner (its own
# databases only).
apt.packages(
    name="Install PostgreSQL (the drill's scratch database)", packages=data.postgresql_packages
)
postgres.role(
    name=f"Create the {borg} PostgreSQL role (login, createdb: the drill's scratch database)",
    role=borg,
    login=True,
    createdb=True,
    superuser=False,
    _sudo=True,
    _sudo_user="postgres",
)

install_host_programs(data)

install_template(
    name="Write the repository's passphrase (root's alone: its units get it as a credential)",
    template="offsite-passphrase.j2",
    mode="600",
    holds_secrets=True,
)

files.directory(
    name=f"Create {authorized_keys_dir(data)} (root-owned: sshd reads it for {borg})",
    path=authorized_keys_dir(data),
    user="root",
    group="root",
    mode="755",
)
install_template(
    name="Let prod's push key append to its repository, and nothing else (authorized_keys)",
    template="offsite-authorized_keys.j2",
    mode="644",
)
sshd_config = install_template(
    name=f"Let sshd read the keys root holds for {borg} (sshd_config.d)",
    template="sshd-authorized-keys.conf.j2",
)
server.shell(
    name="Check sshd's configuration, then reload it (its AuthorizedKeysFile changed)",
    commands=["sshd -t", "systemctl reload ssh"],
    _if=sshd_config.did_change,
)

units = [
    install_template(name=f"Install {unit}", template=f"{unit}.j2") for unit in BACKUP_HOST_UNITS
]
systemd.daemon_reload(
    name="Reload systemd (the backup host's units changed)", _if=any_changed(*units)
)

run_unless(
    name=f"Create prod's repository {data.offsite_repository} (repokey-blake2), first apply only",
    command="systemctl start odoo-offsite-init.service",
    done=lambda: command_succeeds(f"test -f {data.offsite_repository}/config", "root"),
)

systemd.service(
    name="Enable and start odoo-offsite-prune.timer (the guarded prune, daily)",
    service="odoo-offsite-prune.timer",
    running=True,
    enabled=True,
)
systemd.service(
    name="Enable and start odoo-offsite-drill.timer (the restore drill, weekly)",
    service="odoo-offsite-drill.timer",
    running=True,
    enabled=True,
)
