"""fail2ban on sshd: bans addresses that keep failing SSH logins."""

from pyinfra.operations import apt, files, systemd

from tasks.util import template_path

apt.packages(
    name="Install fail2ban",
    packages=["fail2ban"],
)

jail = files.template(
    name="Configure the sshd jail",
    src=template_path("fail2ban-sshd.local.j2"),
    dest="/etc/fail2ban/jail.d/sshd.local",
    user="root",
    group="root",
    mode="644",
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
