"""Base system: apt cache and upgrades, base packages, the fr_FR.UTF-8 locale."""

from pyinfra.operations import apt, server

from tasks.util import host_data

data = host_data()

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
