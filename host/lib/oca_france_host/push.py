"""odoo-offsite-push: pushes the newest complete backup into prod's BorgBackup repository on
the backup host, as odoo (odoo-offsite-push.service, started once a backup succeeded, after
the transfer to recette). Encrypted here (repokey-blake2: the backup host stores what it
cannot read) and deduplicated (the second day stores the dump's changed chunks and the new
attachments). Over SSH with a key used for nothing else, which the backup host lets append
only; trusting only the backup host's pinned host key. The archive is named after the backup:
one already there is not pushed again. A failed push is tried again, offsite_push_retries
times, offsite_push_retry_sec apart; each attempt's result goes to offsite_push_state_file.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import sys
import time
from pathlib import Path

from oca_france_host import backups, borg, config, programs, runner


class Failed(Exception):
    """The push failed: said once, the unit failed."""


def log(message: str, error: bool = False) -> None:
    line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} odoo-offsite-push: {message}"
    print(line, file=sys.stderr if error else sys.stdout, flush=True)


def usage(settings: dict) -> str:
    return (
        "Usage: odoo-offsite-push [-h|--help|--after-rollback]\n"
        f"Pushes the newest complete backup in {settings['backup_dir']} to\n"
        f"{settings['offsite_repository_url']} (borg, encrypted here). Run by"
        " odoo-offsite-push.service\nafter each successful backup. --after-rollback: once the"
        " backup host rolled the\nrepository back, lets borg here accept it (README)."
    )


def ssh_command(settings: dict) -> list[str]:
    """Only this key, only the backup host's pinned host key."""
    return [
        "ssh",
        "-i", settings["offsite_key_file"],
        "-o", "IdentitiesOnly=yes",
        "-o", "IdentityAgent=none",
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={settings['offsite_known_hosts_file']}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "ConnectTimeout=30",
        "-o", "ServerAliveInterval=30",
    ]  # fmt: skip


def environment(settings: dict) -> dict:
    return borg.environment(
        settings["offsite_passphrase_file"],
        settings["offsite_repository_url"],
        settings["offsite_lock_wait_sec"],
        ssh_command(settings),
    )


CHECKPOINT_NEVER_SEC = 7 * 86400  # longer than any push


def push(settings: dict) -> dict:
    """One attempt; what it pushed (or found there already)."""
    backup_dir = Path(settings["backup_dir"])
    backup = backups.newest(backup_dir, settings["odoo_db_name"])
    if backup is None:
        raise Failed(f"no complete backup in {backup_dir}")
    env = environment(settings)
    if backup.name in {archive["name"] for archive in borg.archives(env)}:
        log(f"{backup.name} is already on the backup host: nothing to push")
        return {"archive": backup.name, "already_there": True}
    log(f"pushing {backup.name} to {settings['offsite_repository_url']}")
    started = time.monotonic()
    output = borg.run(
        [
            "create",
            "--json",
            "--compression", settings["offsite_compression"],
            # One commit per push, never a checkpoint: the backup host's guard counts them.
            "--checkpoint-interval", str(CHECKPOINT_NEVER_SEC),
            f"::{backup.name}",
            ".",
        ],
        env,
        cwd=str(backup),
    ).stdout  # fmt: skip
    stats = json.loads(output)["archive"]["stats"]
    result = {
        "archive": backup.name,
        "seconds": round(time.monotonic() - started, 1),
        "original_bytes": stats["original_size"],
        "stored_bytes": stats["deduplicated_size"],  # new to the repository, compressed
    }
    log(
        f"pushed {backup.name}: {stats['original_size']} bytes, {stats['deduplicated_size']}"
        f" new to the repository, in {result['seconds']} s"
    )
    return result


PUSHED_KEPT = 400  # more than the backup host keeps (14 + 8 + 12 by default)


def pushed_here(settings: dict) -> list[str]:
    """The archives this host pushed itself (none on a host that never pushed)."""
    try:
        found = json.loads(Path(settings["offsite_push_state_file"]).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [name for name in found.get("pushed", []) if isinstance(name, str)]


def record(settings: dict, result: dict) -> None:
    """The last attempt's result and the last success's time, replaced by a rename (status
    reads it: a push older than offsite_max_age_hours is flagged)."""
    path = Path(settings["offsite_push_state_file"])
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        previous = {}
    success = result["time"] if result["result"] == "success" else previous.get("last_success")
    # The archives this host pushed: a host rebuilt from bare recovers none of its own (its
    # first backups are of the fresh database: odoo-offsite-recover).
    pushed = list(previous.get("pushed", []))
    if result["result"] == "success" and result["archive"] not in pushed:
        pushed = [*pushed, result["archive"]][-PUSHED_KEPT:]
    staged = path.with_name(f".{path.name}.new")
    record = {**result, "last_success": success, "pushed": pushed}
    staged.write_text(json.dumps(record) + "\n", encoding="utf-8")
    staged.replace(path)


def after_rollback(settings: dict) -> int:
    """Once the backup host rolled its repository back (a delete through this key undone):
    borg here remembers the newer manifest it saw and refuses the repository as an attack.
    Told by the operator, it forgets that manifest (its timestamp, its cache); the nonce it
    used stays, never reused."""
    user = settings["odoo_user"]
    if pwd.getpwuid(os.geteuid()).pw_name != user:  # another's borg memory: nothing to forget
        log(
            f"ERROR: run it as {user}, whose borg pushes: cd / && sudo -u {user} -H"
            " /opt/oca-france/bin/odoo-offsite-push --after-rollback",
            error=True,
        )
        return 2
    home = Path(os.path.expanduser("~"))  # borg's own rule (its unit: odoo's home)
    security, cache = home / ".config" / "borg" / "security", home / ".cache" / "borg"
    url = settings["offsite_repository_url"]
    for location in security.glob("*/location"):
        if location.read_text(encoding="utf-8").strip() == url:
            (location.parent / "manifest-timestamp").unlink(missing_ok=True)
            shutil.rmtree(cache / location.parent.name, ignore_errors=True)
            log(f"forgot the manifest {url} had before its rollback: pushes resume")
            return 0
    log(f"borg here has never reached {url}: nothing to forget")
    return 0


def main(argv: list[str]) -> int:
    settings = config.load()
    if argv == ["--after-rollback"]:
        return after_rollback(settings)
    refused = programs.refused_arguments(argv, usage(settings))
    if refused is not None:
        return refused
    os.chdir("/")
    retries = int(settings["offsite_push_retries"])
    for attempt in range(retries + 1):
        when = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        try:
            result = push(settings)
            record(settings, {"time": when, "result": "success", **result})
            return 0
        except (Failed, borg.BorgError, runner.Failed, OSError, ValueError) as error:
            log(f"ERROR: {error}", error=True)
            record(settings, {"time": when, "result": "failed", "error": str(error)})
        if attempt < retries:  # the backup host away, a network cut: tried again, bounded
            wait = int(settings["offsite_push_retry_sec"])
            log(f"try {attempt + 2} of {retries + 1} in {wait} s (offsite_push_retry_sec)")
            time.sleep(wait)
    return 1
