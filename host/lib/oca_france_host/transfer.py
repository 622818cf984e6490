"""odoo-backup-transfer: sends the newest complete backup of this host's database to recette,
as odoo (odoo-backup-transfer.service, started by odoo-backup.service once a backup succeeded):
  1. everything but the manifest, into recette's incoming directory, after deleting the
     manifest there: rsync sends only what recette lacks (the dump, the new attachments);
  2. the manifest, last: recette then verifies the whole backup against it and only then lets
     `deploy --restore` use it. A transfer cut short leaves no manifest: nothing used.
Over SSH with a key used for nothing else, trusting only recette's pinned host key. On
recette that key can only write into the incoming directory (rrsync -wo), under its size
limit (odoo-production-data-receive). A failed send is tried again, backup_transfer_retries
times, backup_transfer_retry_sec apart.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from oca_france_host import backups, config, programs, runner


class Failed(Exception):
    """The transfer failed: said once, the unit failed."""


def log(message: str, error: bool = False) -> None:
    line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} odoo-backup-transfer: {message}"
    print(line, file=sys.stderr if error else sys.stdout, flush=True)


def target(settings: dict) -> str:
    user, host = settings.get("backup_transfer_user"), settings.get("backup_transfer_host")
    return f"{user or '?'}@{host or '(no backup_transfer_host)'}"


def usage(settings: dict) -> str:
    return (
        "Usage: odoo-backup-transfer [-h|--help]\n"
        f"Sends the newest complete backup in {settings['backup_dir']} to"
        f" {target(settings)}: the files\nrecette lacks first (rsync), then the manifest, which"
        " triggers recette's check. Run by\nodoo-backup-transfer.service after each successful"
        " backup."
    )


def ssh_command(settings: dict) -> str:
    """Only this key, only recette's pinned host key (rsync's -e takes one string)."""
    return shlex.join(
        [
            "ssh",
            "-p", str(settings["backup_transfer_port"]),
            "-i", settings["backup_transfer_key_file"],
            "-o", "IdentitiesOnly=yes",
            "-o", "IdentityAgent=none",
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={settings['backup_transfer_known_hosts_file']}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "ConnectTimeout=30",
            "-o", "ServerAliveInterval=30",
        ]
    )  # fmt: skip


def send(settings: dict, *args: str) -> str:
    """rsync into recette's incoming directory (the root rrsync gives the key); the bytes it
    sent. On failure, recette's own reason first (odoo-production-data-receive's limit...)."""
    argv = [
        "rsync",
        "--archive",
        "--stats",
        f"--bwlimit={settings['backup_transfer_bwlimit_kbps']}",
        "-e",
        ssh_command(settings),
        *args,
    ]
    done = runner.run(argv, capture=True, check=False, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        lines = done.stdout.splitlines()
        theirs = [line for line in lines if "odoo-production-data-receive:" in line][:1]
        raise Failed(f"rsync to {target(settings)} failed: {' '.join(theirs + lines[-2:])} ")
    found = re.search(r"^Total bytes sent: ([0-9,.]*)", done.stdout, re.MULTILINE)
    return re.sub(r"[,.]", "", found.group(1)) if found else "0"


def transfer(settings: dict) -> None:
    backup_dir = Path(settings["backup_dir"])
    backup = backups.newest(backup_dir, settings["odoo_db_name"])
    if backup is None:
        raise Failed(f"no complete backup in {backup_dir}")
    to = target(settings)
    log(f"sending {backup.name} to {to} (files recette lacks; its manifest first removed)")
    sent = send(
        settings,
        "--delete-before",
        "--delete-excluded",
        f"--exclude=/{backups.MANIFEST}",
        f"{backup}/",
        f"{to}:",
    )
    log(f"files sent: {sent} bytes")
    sent = send(settings, str(backup / backups.MANIFEST), f"{to}:{backups.MANIFEST}")
    log(f"manifest sent ({sent} bytes): recette verifies the backup, then uses it")
    log(f"transfer of {backup.name} complete")


def main(argv: list[str]) -> int:
    settings = config.load()
    refused = programs.refused_arguments(argv, usage(settings))
    if refused is not None:
        return refused
    os.chdir("/")
    retries = int(settings["backup_transfer_retries"])
    for attempt in range(retries + 1):
        try:
            transfer(settings)
            return 0
        except (Failed, runner.Failed, OSError) as error:
            log(f"ERROR: {error}", error=True)
        if attempt < retries:  # recette away, a network cut: tried again, bounded
            wait = int(settings["backup_transfer_retry_sec"])
            log(f"try {attempt + 2} of {retries + 1} in {wait} s (backup_transfer_retry_sec)")
            time.sleep(wait)
    return 1
