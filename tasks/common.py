"""Base system: the apply's upload directory, apt cache and upgrades, base packages, the
fr_FR.UTF-8 locale, the time zone."""

from pyinfra import host
from pyinfra.operations import apt, files, server

from tasks.settings import checked_timezone
from tasks.util import STAGED_SUFFIX, CommandSucceeds, host_data, login_user, run_unless

data = host_data()

# Before any upload: others can pass through it to the one file sudo hands them (pyinfra
# grants that file to the operation's user), but neither list it nor put anything in it.
files.directory(
    name=f"Create {data.apply_upload_dir}, private to the login user, for the apply's uploads",
    path=data.apply_upload_dir,
    user=login_user(),
    mode="711",
)

apt_update = apt.update(
    name="Refresh the apt cache (at most once a day)",
    cache_time=data.apt_cache_valid_time,
)

apt.upgrade(
    name="Upgrade packages (only after a cache refresh)",
    _if=apt_update.did_change,
)

apt.packages(
    name="Install base packages",
    packages=data.base_packages,
)

server.locale(
    name=f"Generate the {data.system_locale} locale",
    locale=data.system_locale,
)

zone = checked_timezone(data)
zone_file = f"/usr/share/zoneinfo/{zone}"
staged_link = f"/etc/localtime{STAGED_SUFFIX}"
staged_name = f"/etc/timezone{STAGED_SUFFIX}"
run_unless(
    name=f"Set the time zone to {zone} (timers, logs; the database stays in UTC)",
    # One rename: no moment without /etc/localtime (a program reading it then would say UTC).
    # /etc/timezone, where the release still has it (Debian 12), says the same name.
    command=(
        f"test -f {zone_file} && ln -sfn {zone_file} {staged_link}"
        f" && mv -Tf {staged_link} /etc/localtime"
        f" && if [ -f /etc/timezone ]; then echo {zone} > {staged_name}"
        f" && chmod 644 {staged_name} && mv -f {staged_name} /etc/timezone; fi"
    ),
    done=lambda: host.get_fact(
        CommandSucceeds,
        command=f'[ "$(readlink /etc/localtime)" = {zone_file} ]'
        f' && {{ [ ! -f /etc/timezone ] || [ "$(cat /etc/timezone)" = {zone} ]; }}',
    ),
)
