"""odoo-status: what runs on this host, and what needs attention.

    odoo-status

Shows the deployed commit (and its tag), the service and its health; where backups are
taken, the newest one (time, size); where production data is restored, the one in use, its
age, the incoming directory against its limit and the last refresh. Flags a service that is
not active or healthy, a backup older than status_backup_max_age_hours, production data
older than status_production_data_max_age_days, a watched filesystem fuller than
disk_alert_percent, an incoming directory over 80% of its limit,
a last refresh from production that did not deploy, an unfinished deploy, and any odoo-*
unit that failed, with when and why. Exit 0 when nothing is flagged, 1 otherwise. Run it as
root (make status) or as odoo (deploy --status: without the journal's lines).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from oca_france_host import backups, config, drill, offsite, programs, receive, state

INCOMING_FULL = 0.8  # incoming/ this full: a production that grows will soon be refused


def run(*command: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else ""


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def human_age(age: timedelta) -> str:
    hours = age.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


def disk_usage(path: Path) -> int:
    """Bytes this backup adds: hard links to files counted once (du does)."""
    out = run("du", "-sb", str(path))
    return int(out.split()[0]) if out else 0


def newest(directory: str, database: str | None = None) -> tuple[Path, dict] | None:
    """The newest complete backup in `directory` (of `database`), with its manifest ({} if it
    is invalid): backups.py's one rule, as the backup and the transfer ask it."""
    found = backups.newest(Path(directory), database)
    if found is None:
        return None
    try:
        return found, backups.read_manifest(found)
    except backups.BackupError:
        return found, {}


def git(c: dict, *args: str) -> str:
    """git in the app's checkout, as its owner: root (make status, odoo-check every 15
    minutes) never runs git on a repository odoo controls, whose config can name programs."""
    owner = ["runuser", "-u", c["odoo_user"], "--"] if os.getuid() == 0 else []
    return run(*owner, "git", "-C", c["oca_france_dir"], *args)


def error_line(unit: str) -> str:
    """The last line of the unit's last run that says error (else its last line); "" when
    the journal is not readable (not root)."""
    invocation = run("systemctl", "show", "-p", "InvocationID", "--value", unit)
    if not invocation:
        return ""
    out = run("journalctl", "--no-pager", "-q", "-o", "cat", f"_SYSTEMD_INVOCATION_ID={invocation}")
    lines = [line for line in out.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or [""])[-1].strip()


def failed_units() -> list[str]:
    """Each failed odoo-* unit: when it failed, and why."""
    out = run("systemctl", "list-units", "--all", "--state=failed", "--plain", "--no-legend")
    out = "\n".join(line for line in out.splitlines() if line.startswith("odoo-"))
    found = []
    for unit in (line.split()[0] for line in out.splitlines() if line.strip()):
        when = run("systemctl", "show", "-p", "StateChangeTimestamp", "--value", unit)
        why = error_line(unit) or f"see journalctl -u {unit} (as root)"
        found.append(f"{unit} failed ({when or 'time unknown'}): {why}")
    return found


def last_refresh(history_file: str) -> dict | None:
    """The newest deploy that restored production data (the deploy history)."""
    for entry in reversed(state.history(history_file)):
        if entry.get("action") == "deploy" and entry.get("restore") is True:
            return entry
    return None


def health(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return "ok" if json.load(response).get("db_server_status") is True else "failing"
    except (OSError, ValueError):
        return "failing"


def disk_lines(c: dict) -> tuple[list[str], list[tuple[str, str]]]:
    """Each watched filesystem's use (PostgreSQL's data, odoo's home...), flagged over
    disk_alert_percent."""
    lines, flags = [], []
    threshold = c["disk_alert_percent"]
    seen = set()
    for path in c["disk_watched_paths"]:
        try:
            usage = shutil.disk_usage(path)
            device = os.stat(path).st_dev
        except OSError:
            continue
        if device in seen:
            continue  # one filesystem, said once
        seen.add(device)
        percent = 100 * usage.used / max(usage.used + usage.free, 1)  # df's Use%
        lines.append(f"{path}: {percent:.0f}% used, {human_size(usage.free)} free")
        if percent >= threshold:
            flags.append(
                (
                    f"disk {path}",
                    f"{path} is {percent:.0f}% full ({human_size(usage.free)} free), over"
                    f" {threshold}% (disk_alert_percent)",
                )
            )
    return lines, flags


def last_alert(c: dict) -> str:
    """The last alert this host sent (notify.py records it), or "none"."""
    try:
        sent = json.loads((Path(c["alert_state_dir"]) / "last-alert.json").read_text())
    except (OSError, ValueError):
        return "none"
    return f"{sent.get('time')}: {sent.get('subject')} ({sent.get('delivered')})"


def read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def push_lines(c: dict, now: datetime) -> tuple[list[str], list[tuple[str, str]]]:
    """prod: the last push to the backup host, flagged when none succeeded recently."""
    lines, flags = [], []
    pushed = read_json(Path(c["offsite_push_state_file"]))
    limit = timedelta(hours=c["offsite_max_age_hours"])
    if pushed is None:
        lines.append("last push:        none")
        flags.append(("push age", "no backup pushed to the backup host yet"))
        return lines, flags
    if pushed.get("result") == "success":
        lines.append(f"last push:        {pushed.get('archive')} at {pushed.get('time')}")
    else:
        lines.append(f"last push:        failed at {pushed.get('time')}: {pushed.get('error')}")
    success = pushed.get("last_success")
    age = now - datetime.strptime(success, "%Y-%m-%dT%H:%M:%S%z") if success else None
    if age is None or age > limit:
        since = f"the last one {human_age(age)} ago" if age else "none ever succeeded"
        flags.append(("push age", f"no push to the backup host succeeded recently ({since})"))
    return lines, flags


def drill_report(c: dict, now: datetime) -> tuple[list[str], list[tuple[str, str]]]:
    """The last drill: flagged when it failed, or is older than offsite_drill_max_age_days
    (none at all: once the repository is that old)."""
    limit = timedelta(days=c["offsite_drill_max_age_days"])
    last = read_json(Path(c["offsite_state_dir"]) / drill.LAST_DRILL)
    if last is None:
        created = Path(c["offsite_repository"], "config")
        born = datetime.fromtimestamp(created.stat().st_mtime) if created.exists() else None
        old = born is not None and now - born.astimezone() > limit
        flags = [("drill age", "no drill has run (odoo-offsite-drill.timer)")] if old else []
        return ["last drill:       none yet"], flags
    when = datetime.fromisoformat(last.get("time", "1970-01-01T00:00:00")).astimezone()
    line = (
        f"last drill:       {when:%Y-%m-%d %H:%M}: {last.get('result')}, {last.get('archive')}"
        f" in {last.get('seconds', '?')} s (data verified {last.get('verify_data_time', 'never')})"
    )
    flags = []
    if last.get("result") != "success":
        flags.append(("drill", f"the last drill failed: {last.get('error')}"))
    if now - when > limit:
        flags.append(("drill age", f"the last drill is {human_age(now - when)} old"))
    return [line], flags


def offsite_report(c: dict, units: bool = True) -> tuple[list[str], list[tuple[str, str]]]:
    """The backup host: prod's last push (borg's transaction log holds what append-only clients
    commit, never this host's own prune), the last guarded prune, the last drill, its disk;
    read from files (no passphrase needed)."""
    now = datetime.now().astimezone()
    lines: list[str] = []
    flags: list[tuple[str, str]] = []
    repository = Path(c["offsite_repository"])
    pushes = offsite.transactions(c)
    if not pushes:
        lines.append(f"last push:        none yet ({repository} has received nothing)")
        flags.append(("push age", f"{repository} has received nothing"))
    else:
        pushed = datetime.fromisoformat(pushes[-1][1]).replace(tzinfo=UTC).astimezone()
        age = now - pushed
        lines.append(f"last push:        {pushed:%Y-%m-%d %H:%M} ({human_age(age)} ago)")
        if age > timedelta(hours=c["offsite_max_age_hours"]):
            flags.append(("push age", f"no push to {repository} for {human_age(age)}"))
    pruned = read_json(Path(c["offsite_state_dir"]) / offsite.LAST_PRUNE)
    if pruned is None:
        lines.append("last prune:       none yet")
    else:
        lines.append(
            f"last prune:       {pruned.get('time')}: {pruned.get('result')}"
            f" ({pruned.get('archives', '?')} archives kept)"
        )
        if pruned.get("result") != "success":
            flags.append(("prune", f"the last prune: {pruned.get('error')}"))
    drill_lines, drill_flags = drill_report(c, now)
    lines.extend(drill_lines)
    flags.extend(drill_flags)
    disks, disk_flags = disk_lines(c)
    lines.extend(f"disk:             {line}" for line in disks)
    flags.extend(disk_flags)
    lines.append(f"last alert:       {last_alert(c)}")
    if units:
        flags.extend((f"unit {found.split()[0]}", found) for found in failed_units())
    return lines, flags


def service_state(c: dict) -> tuple[list[str], list[tuple[str, str]]]:
    """The service's and the front door's lines, and their flags: the service not active or
    its health failing; HAProxy not active, or not passing Odoo's health on while it is ok."""
    service = c["oca_france_service"]
    active = run("systemctl", "is-active", service) or "inactive"
    healthy = health(c["health_url"])
    flags = []
    if active != "active" or healthy != "ok":
        flags.append(("service", f"{service} is {active}, health {healthy}"))
    door = run("systemctl", "is-active", "haproxy.service") or "inactive"
    # Through the door only when Odoo answers: else the door holds the request (a deploy).
    through = health(c["front_health_url"]) if door == "active" and healthy == "ok" else "-"
    if door != "active":
        flags.append(("front door", f"haproxy is {door}: nothing reaches Odoo from outside"))
    elif through == "failing":
        flags.append(("front door", "haproxy is active, but Odoo's health fails through it"))
    return [
        f"service:          {service} {active}, health {healthy}",
        f"front door:       haproxy {door}, health through it {through}",
    ], flags


def units_off(c: dict) -> list[tuple[str, str]]:
    """The service and the timers acting on its data, each flagged unless enabled: an apply
    for a recovery (RECOVERING=1) leaves them off until its closing apply."""
    units = [c["oca_france_service"], "odoo-check.timer"]
    if c["backup_enabled"]:
        units.append("odoo-backup.timer")
    flags = []
    for unit in units:
        # Its state is said on stdout even when it is not enabled (exit 1).
        state = subprocess.run(
            ["systemctl", "is-enabled", unit], capture_output=True, text=True
        ).stdout.strip()
        if state != "enabled":
            flags.append(
                (f"{unit} off", f"{unit} is {state or 'unknown'}, not enabled: an apply enables it")
            )
    return flags


def unfinished_deploy(c: dict) -> list[tuple[str, str]]:
    found = state.unfinished(c["deploy_state_file"])
    if found is None:
        return []
    return [
        (
            "unfinished deploy",
            f"a deploy of {found.get('ref', '?')} is unfinished (step"
            f" {found.get('step', '?')}): odoo-deploy-repair.timer repairs it",
        )
    ]


# The flags a moment can explain (a restart, a deploy): odoo-check looks at them again alone.
MOMENTARY = ("service", "front door", "unfinished deploy")


def momentary_flags(c: dict) -> dict[str, str]:
    """The MOMENTARY flags alone, as report() raises them."""
    return dict(service_state(c)[1] + unfinished_deploy(c))


def report(c: dict, units: bool = True) -> tuple[list[str], list[tuple[str, str]]]:
    """What status says, and what it flags: (key, text) pairs, the key stable while the
    condition lasts (odoo-check alerts once when a key appears, once when it goes)."""
    if "offsite_repository" in c:  # the backup host
        return offsite_report(c, units)
    now = datetime.now().astimezone()
    lines: list[str] = []
    flags: list[tuple[str, str]] = []
    commit = git(c, "rev-parse", "HEAD")
    tag = git(c, "describe", "--tags", "--exact-match", "HEAD")
    lines.append(f"deployed:         {tag or '(no tag)'} {commit[:12] or '(no checkout)'}")
    service_lines, flag = service_state(c)
    lines.extend(service_lines)
    flags.extend(flag)
    flags.extend(units_off(c))
    if c["backup_enabled"]:
        found = newest(c["backup_dir"], c["odoo_db_name"])
        if found is None:
            lines.append("last backup:      none")
            flags.append(("backup age", f"no backup in {c['backup_dir']}"))
        else:
            path, manifest = found
            taken = datetime.fromisoformat(manifest.get("time", "1970-01-01T00:00:00+00:00"))
            age = now - taken
            size = manifest.get("dump_bytes", 0) + manifest.get("filestore_bytes", 0)
            lines.append(
                f"last backup:      {path.name}, {human_age(age)} old, {human_size(size)}"
                f" ({human_size(disk_usage(path))} on disk)"
            )
            if age > timedelta(hours=c["status_backup_max_age_hours"]):
                flags.append(("backup age", f"the last backup is {human_age(age)} old"))
        if "offsite_push_state_file" in c:
            push, push_flags = push_lines(c, now)
            lines.extend(push)
            flags.extend(push_flags)
    if c["deploy_restore_allowed"]:
        try:  # "<name> <time the backup was taken>", written by deploy --restore
            name, taken = Path(c["production_data_in_use_file"]).read_text().split()
        except (OSError, ValueError):
            lines.append("production data:  none restored yet")
            flags.append(("production data age", "no production data restored yet"))
        else:
            age = now - datetime.fromisoformat(taken)
            lines.append(f"production data:  {name}, taken {human_age(age)} ago")
            if age > timedelta(days=c["status_production_data_max_age_days"]):
                flags.append(
                    ("production data age", f"the production data in use is {human_age(age)} old")
                )
        found = newest(c["production_data_dir"])
        lines.append(f"newest received:  {found[0].name if found else 'none'}")
        # incoming/ keeps the last delivery (the next one's rsync base): measured as the
        # receive measures it against its limit.
        used, limit = receive.usage(Path(c["incoming_dir"])), receive.incoming_limit(c)
        lines.append(f"incoming:         {human_size(used)} of its {human_size(limit)} limit")
        if used > limit * INCOMING_FULL:
            flags.append(
                (
                    "incoming",
                    f"{c['incoming_dir']} holds {human_size(used)}, over {INCOMING_FULL:.0%} of"
                    " its limit (production_data_incoming_limit_mib): the next delivery may be"
                    " refused",
                )
            )
        refresh = last_refresh(c["deploy_history_file"])
        if refresh is not None:
            outcome = refresh.get("result")
            lines.append(
                f"last refresh:     {refresh.get('time')} by {refresh.get('by')}: {outcome}"
            )
            if outcome != "deployed":
                step = refresh.get("failed_step") or "?"
                flags.append(
                    (
                        "refresh",
                        f"the last refresh from production ({refresh.get('time')}, by"
                        f" {refresh.get('by')}) {outcome} at step {step}:"
                        f" {refresh.get('error') or 'see its log ' + str(refresh.get('log'))}",
                    )
                )
    disks, disk_flags = disk_lines(c)
    for line in disks:
        lines.append(f"disk:             {line}")
    flags.extend(disk_flags)
    lines.append(f"last alert:       {last_alert(c)}")
    flags.extend(unfinished_deploy(c))
    if units:
        flags.extend((f"unit {found.split()[0]}", found) for found in failed_units())
    return lines, flags


def main(argv: list[str]) -> int:
    refused = programs.refused_arguments(argv, __doc__)
    if refused is not None:
        return refused
    lines, flags = report(config.load())
    for line in lines:
        print(line)
    for _, flag in flags:
        print(f"ATTENTION:        {flag}")
    if not flags:
        print("status:           OK")
    return 1 if flags else 0
