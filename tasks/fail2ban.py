"""fail2ban on sshd: bans addresses that keep failing SSH logins."""

from pyinfra import host
from pyinfra.operations import apt, files, systemd

from tasks.render import rendered_files, template_path

apt.packages(
    name="Install fail2ban",
    packages=["fail2ban"],
)

jail_path, jail_vars = rendered_files(host.data)["fail2ban-sshd.local.j2"]
jail = files.template(
    name="Configure the sshd jail",
    src=template_path("fail2ban-sshd.local.j2"),
    dest=jail_path,
    user="root",
    group="root",
    mode="644",
    **jail_vars,
)

systemd.service(
    name="Restart fail2ban (its jail changed)",
    service="fail2ban.service",
    restarted=True,
    _if=jail.did_change,
)

systemd.service(
    name="Enable and start fail2ban",
    service="fail2ban.service",
    running=True,
    enabled=True,
)
