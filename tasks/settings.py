"""A host's data, validated: the overrides of its release applied (ReleaseData) and the checks
that refuse group data which cannot work (time limits, time zone, calendars, addons paths,
wkhtmltopdf), each with a message saying what to set. Kept apart so the preflight, the tasks
and the templates' variables all validate the same way.

`data` is pyinfra's host.data (or anything with the same attributes).
"""

from __future__ import annotations

import ipaddress
import re
import zoneinfo
from datetime import date, datetime, time, timedelta
from pathlib import Path

from pyinfra.api.exceptions import DeployError


class ReleaseData:
    """A host's data with the overrides of its release (data.distributions[release]) applied."""

    def __init__(self, data, release: str):
        if release not in data.distributions:
            supported = ", ".join(sorted(data.distributions))
            raise DeployError(
                f"{release} is not a supported release (group_data/all.py distributions:"
                f" {supported}); add it there with what differs"
            )
        self.release = release
        self._data = data
        self._overrides = data.distributions[release]

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self._overrides:
            return self._overrides[name]
        return getattr(self._data, name)


def wkhtmltopdf_source(data) -> dict:
    """Where a host of this release gets wkhtmltopdf: {"deb": url, "sha256": ...} for the
    patched build where configured, else {"package": name}; an error when neither exists."""
    deb = data.wkhtmltopdf_debs.get(data.release)
    if deb:
        if not (deb.get("url") and deb.get("sha256")):
            raise DeployError(f"wkhtmltopdf_debs[{data.release!r}] needs both url and sha256")
        return {"deb": deb["url"], "sha256": deb["sha256"]}
    if data.wkhtmltopdf_package:
        return {"package": data.wkhtmltopdf_package}
    raise DeployError(
        f"{data.release} has no wkhtmltopdf package: set wkhtmltopdf_debs[{data.release!r}] ="
        ' {"url": ..., "sha256": ...} (the patched build, wkhtmltopdf/packaging releases)'
        " in group_data"
    )


def checked_whole(data, key: str, unit: str = "") -> int:
    """A count, size or time limit of the group data, refused unless a whole number above 0
    (`timeout 0` would mean no limit at all; a word would fail every deploy)."""
    value = getattr(data, key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        what = f"whole number of {unit}" if unit else "whole number"
        raise DeployError(f"{key} must be a {what} above 0, not {value!r}")
    return value


def checked_seconds(data, key: str) -> int:
    """A time limit of the group data: a whole number of seconds above 0."""
    return checked_whole(data, key, "seconds")


def checked_front_door(data) -> dict:
    """The front door's addresses: Odoo on loopback behind it (nothing reaches Odoo around
    it), ports apart, the trusted proxies plain addresses or networks (they go into
    haproxy.cfg), the public scheme http or https."""
    if data.odoo_http_interface not in ("127.0.0.1", "::1"):
        raise DeployError(
            "odoo_http_interface must be loopback (127.0.0.1 or ::1): the front door"
            f" (front_port {data.front_port}) is the only way to Odoo, not"
            f" {data.odoo_http_interface!r}"
        )
    try:
        if ipaddress.ip_address(str(data.front_interface)).version != 4:
            raise ValueError
    except ValueError:
        raise DeployError(
            f"front_interface must be an IPv4 address (0.0.0.0: all), not {data.front_interface!r}"
        ) from None
    ports = {
        key: getattr(data, key) for key in ("front_port", "odoo_http_port", "odoo_gevent_port")
    }
    for key, port in ports.items():
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise DeployError(f"{key} must be a TCP port (1-65535), not {port!r}")
    if len(set(ports.values())) < len(ports):
        raise DeployError(f"front_port, odoo_http_port and odoo_gevent_port must differ: {ports}")
    trusted = data.front_trusted_proxies
    if not isinstance(trusted, (list, tuple)):
        raise DeployError(f"front_trusted_proxies must be a list, not {trusted!r}")
    if not trusted:
        raise DeployError(
            "front_trusted_proxies must name the provider's reverse proxy: its source"
            " address(es) as this host sees them, in group_data/<environment>.py (without it,"
            " Odoo would take every client for the proxy, in plain http)"
        )
    for source in trusted:
        try:
            ipaddress.ip_network(str(source), strict=False)
        except ValueError:
            raise DeployError(
                f"front_trusted_proxies: {source!r} is no IP address or network"
            ) from None
    if data.front_public_proto not in ("http", "https"):
        raise DeployError(
            f"front_public_proto must be http or https, not {data.front_public_proto!r}"
        )
    return {
        "interface": data.front_interface,
        "port": data.front_port,
        "trusted_proxies": [str(source) for source in trusted],
        "public_proto": data.front_public_proto,
        "odoo_interface": data.odoo_http_interface,
        "odoo_http_port": data.odoo_http_port,
        "odoo_gevent_port": data.odoo_gevent_port,
    }


# The off-site retention's floor (odoo.sh keeps 14 backups; the minimum): a lower
# value would let the backup host's own prune thin the history below what a recovery needs.
RETENTION_MINIMUMS = {"offsite_keep_daily": 7, "offsite_keep_weekly": 4, "offsite_keep_monthly": 3}


def checked_retention(data) -> dict[str, int]:
    """The backup host's retention, refused below its floor (more is cheap: deduplicated)."""
    kept = {}
    for key, least in RETENTION_MINIMUMS.items():
        value = getattr(data, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise DeployError(f"{key} must be a whole number of at least {least}, not {value!r}")
        kept[key] = value
    return kept


def checked_repository_path(data) -> str:
    """The off-site repository's path, refused unless plain (it is written into prod's key's
    forced command, inside authorized_keys' quotes, and read by a shell)."""
    path = data.offsite_repository
    if not isinstance(path, str) or not re.fullmatch(r"/[A-Za-z0-9._/-]+", path) or ".." in path:
        raise DeployError(
            f"offsite_repository must be an absolute path of letters, digits, '.', '_', '-'"
            f" and '/', not {path!r}"
        )
    return path


def checked_recovering(data) -> bool:
    """An apply for a recovery (RECOVERING=1) only where a backup host holds the data."""
    if data.recovering not in (True, False):
        raise DeployError(f"recovering must be true or false, not {data.recovering!r}")
    if data.recovering and (data.backup_host or not data.offsite_enabled):
        raise DeployError(
            "RECOVERING=1 holds the service for a recovery from the backup host: only on a"
            " host that pushes to one (offsite_enabled, prod); nothing done"
        )
    return data.recovering


ZONE_NAME = r"[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*"  # a tz database name: nothing a shell reads


def checked_timezone(data) -> str:
    """The hosts' time zone, refused unless a zone of the tz database (Europe/Paris...)."""
    zone = data.timezone
    try:
        if not isinstance(zone, str) or not re.fullmatch(ZONE_NAME, zone):
            raise ValueError(zone)
        zoneinfo.ZoneInfo(zone)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        raise DeployError(
            f"timezone must be a zone of the tz database, such as 'Europe/Paris', not {zone!r}"
        ) from None
    return zone


DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # systemd's, never the locale's
WEEKDAYS = rf"({'|'.join(DAY_NAMES)})(,({'|'.join(DAY_NAMES)}))*"
# The daily calendars at a fixed time of day, with the random delay each may add.
FIXED_TIME_CALENDARS = {
    "backup_calendar": "backup_randomized_delay_sec",
    "weekly_deploy_calendar": None,
    "offsite_prune_calendar": None,
}


def checked_calendar_times(data) -> None:
    """A calendar at a fixed time of day (plus its random delay) must fall on a time that
    exists once every day in the hosts' zone: systemd never fires a timer in the hour a change
    to summer time skips (the backup would be missed that day), and one it repeats is lived
    twice."""
    zone = zoneinfo.ZoneInfo(checked_timezone(data))
    today = date.today()
    for key, delay_key in FIXED_TIME_CALENDARS.items():
        when = re.fullmatch(r"(?:(\S+) )?\S+ (\d{1,2}):(\d{2})(?::(\d{2}))?", getattr(data, key))
        if not when:
            continue  # every minute, hour...: nothing to miss
        weekdays, *clock = when.groups()
        hours, minutes, seconds = (int(part or 0) for part in clock)
        # "Mon" or "Sat,Sun": only those days can miss it; anything else, every day.
        days = weekdays.split(",") if weekdays and re.fullmatch(WEEKDAYS, weekdays) else None
        start = timedelta(hours=hours, minutes=minutes, seconds=seconds)
        end = start + timedelta(seconds=getattr(data, delay_key) if delay_key else 0)
        for day in (today + timedelta(days=n) for n in range(366)):
            if days and DAY_NAMES[day.weekday()] not in days:
                continue
            midnight = datetime.combine(day, time(), zone)
            if midnight.utcoffset() == (midnight + timedelta(days=1)).utcoffset():
                continue  # no change of time that day
            moment = start
            while moment <= end:
                local = datetime.combine(day, time()) + moment
                if (
                    local.replace(tzinfo=zone, fold=0).utcoffset()
                    != local.replace(tzinfo=zone, fold=1).utcoffset()
                ):
                    raise DeployError(
                        f"{key} ({getattr(data, key)}, plus up to {end - start}) falls at"
                        f" {local:%H:%M}, a time {data.timezone} skips or repeats on"
                        f" {day:%Y-%m-%d}: choose a time outside that hour"
                    )
                moment += timedelta(minutes=1)


def checked_addons_subdirs(data) -> list[str]:
    """The extra addons paths, relative to the checkout, refused when they would leave it."""
    for sub in data.odoo_addons_subdirs:
        if not sub or sub.startswith("/") or ".." in Path(sub).parts:
            raise DeployError(f"odoo_addons_subdirs: {sub!r} must be a path inside the checkout")
    return list(data.odoo_addons_subdirs)
