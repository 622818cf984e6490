"""fail2ban on sshd: bans addresses that keep failing SSH logins."""

from pyinfra.operations import apt, systemd

from tasks.util import install_template

apt.packages(
    name="Install fail2ban",
    packages=["fail2ban"],
)

jail = install_template(
    name="Configure the sshd jail",
    template="fail2ban-sshd.local.j2",
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
