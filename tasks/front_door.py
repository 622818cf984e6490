"""The front door: HAProxy on the port the provider's proxy reaches, Odoo behind it on
loopback (tasks/oca_france.py moved it there first). /websocket goes to Odoo's gevent port,
the rest to its HTTP port; a request is held while a deploy has Odoo stopped, then answered
with the maintenance page; the database manager is refused, login attempts are limited per
client address, request bodies capped."""

from pyinfra.operations import apt, systemd
from pyinfra.operations.util import any_changed

from tasks.util import catch_up, command_succeeds, host_data, install_template, run_unless

data = host_data()

apt.packages(name="Install HAProxy (the front door)", packages=data.front_door_packages)

page = install_template(
    name="Install the maintenance page (503 once a request was held front_hold_sec)",
    template="oca-france-maintenance.html.j2",
)
config = install_template(
    name="Write /etc/haproxy/haproxy.cfg (haproxy -c passes it first)",
    template="haproxy.cfg.j2",
    check="haproxy -c -q -f {}",
)

# A reload hands the listening socket over: no connection refused, none dropped.
systemd.service(
    name="Reload HAProxy (its config or page changed)",
    service="haproxy.service",
    reloaded=True,
    _if=any_changed(page, config),
)
catch_up(
    name="Reload HAProxy if it runs an older config (an apply died before its reload)",
    unit="haproxy.service",
    written={"haproxy.cfg.j2": config, "oca-france-maintenance.html.j2": page},
    command="systemctl reload haproxy.service",
    newest_child=True,
)
systemd.service(
    name="Enable and start HAProxy",
    service="haproxy.service",
    running=True,
    enabled=True,
)

# A reload whose new process cannot bind leaves the old one running, and says nothing. (A
# first reload binds within a moment: waited for.)
listening = f"ss -Hltnp 'sport = :{data.front_port}' | grep -q '\"haproxy\"'"
run_unless(
    name=f"Check HAProxy listens on port {data.front_port}",
    done=lambda: command_succeeds(listening, "root"),
    command=(
        f"for _ in $(seq 20); do {listening} && exit 0; sleep 0.5; done;"
        f" echo 'HAProxy does not listen on port {data.front_port}:' >&2;"
        f" ss -Hltnp 'sport = :{data.front_port}' >&2;"
        " journalctl -u haproxy -n 20 --no-pager >&2; exit 1"
    ),
)
