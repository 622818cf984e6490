"""Off-site copies, for real: prod (Debian 12, borg 1.2) pushes each backup into an
encrypted borg repository on the backup host (Debian 13), through a key that may only append;
the backup host's guarded prune, and its way back. Runs last (9b: after test_9).
"""

from __future__ import annotations

import json
import shlex

from .conftest import (
    BACKUP_HOST,
    BACKUPS,
    BIN,
    PROD,
    backup_dirs,
    filestore,
    run_backup,
    unit_invocation,
    wait_unit_done,
)

REPOSITORY = "/srv/borg/oca-france-prod"
PASSPHRASE = "/etc/oca-france/offsite-passphrase"
WRITES_LOCK = "/var/lib/oca-france/offsite/prods-writes.lock"
COMPACTING = "/var/lib/oca-france/offsite/compacting"
PUSH = "odoo-offsite-push.service"
PRUNE = "odoo-offsite-prune.service"
MARKER = "offsite-plaintext-marker-5c2f"


def borg_here(backup, command: str) -> str:
    """borg on the backup host, as its owner, with the passphrase (a test's own way in)."""
    return backup.check_output(
        f'BORG_PASSPHRASE="$(cat {PASSPHRASE})" runuser -u borg -- env HOME=/srv/borg'
        f" borg {command}"
    )


def archives(backup) -> list[str]:
    listed = json.loads(borg_here(backup, f"list --json {REPOSITORY}"))
    return [archive["name"] for archive in listed["archives"]]


# Root on prod with prod's key: a copy of its own (ssh refuses a key its owner shares with a
# group; odoo, the push's user, only reads it).
KEY_COPY = "/root/offsite-push-copy"
SSH = (
    f"ssh -i {KEY_COPY} -o IdentitiesOnly=yes -o BatchMode=yes"
    " -o UserKnownHostsFile=/etc/oca-france/offsite.known_hosts"
)


def with_prods_key(prod, backup_address: str, command: str, confirmed: bool = False):
    """borg on prod, as root, with everything the push has: its key, the pinned host key,
    the passphrase (confirmed: borg's "are you sure" answered yes)."""
    ssh = SSH
    sure = "BORG_DELETE_I_KNOW_WHAT_I_AM_DOING=YES " if confirmed else ""
    return prod.run(
        f"{sure}BORG_RSH={shlex.quote(ssh)} BORG_PASSCOMMAND='cat {PASSPHRASE}'"
        f" BORG_REPO=ssh://borg@{backup_address}:22{REPOSITORY} borg {command}"
    )


def push_after_backup(prod, recette) -> str:
    before = unit_invocation(prod, PUSH)
    assert run_backup(prod, recette).rc == 0
    assert wait_unit_done(prod, PUSH, before, timeout=300) == "success", prod.check_output(
        f"journalctl -u {PUSH} -o cat --no-pager -n 20"
    )
    return backup_dirs(prod)[-1]


def test_the_backup_host_is_converged(sandbox):
    backup = sandbox.host(BACKUP_HOST)
    assert backup.package("borgbackup").is_installed
    passphrase = backup.file(PASSPHRASE)
    assert (passphrase.user, passphrase.group, passphrase.mode) == ("root", "root", 0o600)
    config = backup.file(f"{REPOSITORY}/config")
    assert config.exists and config.user == "borg"
    assert "append_only = 0" in config.content_string  # full access here; prod's key appends
    key = backup.file("/etc/oca-france/authorized_keys/borg").content_string.splitlines()[-1]
    assert key.startswith(
        f"restrict,command=\"flock --shared --wait=600 {WRITES_LOCK} sh -c 'test ! -e"
        f" {COMPACTING} || {{ echo refused: a compact on the backup host did not finish, its"
        " next prune finishes it >&2; exit 1; }; exec borg serve --append-only"
        f" --restrict-to-repository {REPOSITORY}'\" "
    )
    assert backup.service("odoo-offsite-prune.timer").is_enabled
    assert backup.service("odoo-offsite-drill.timer").is_enabled
    drill_dir = backup.file("/var/lib/oca-france/drill")
    assert (drill_dir.user, drill_dir.mode) == ("borg", 0o700)
    result = backup.run(
        "systemd-analyze verify /etc/systemd/system/odoo-*.service /etc/systemd/system/odoo-*.timer"
    )
    assert result.rc == 0 and result.stderr.strip() == "", result.stderr


def test_each_backup_reaches_the_backup_host_encrypted_and_deduplicated(sandbox, prod, recette):
    backup = sandbox.host(BACKUP_HOST)
    first = push_after_backup(prod, recette)
    assert first in archives(backup)
    # Day 2: 2 MiB of new attachments (with a marker the repository must not show in clear).
    prod.check_output(
        f"sudo -u odoo sh -c 'mkdir -p {filestore(PROD)}/5c &&"
        f" (head -c 2097152 /dev/urandom; yes {MARKER} | head -c 65536)"
        f" > {filestore(PROD)}/5c/5c2f'"
    )
    second = push_after_backup(prod, recette)
    assert second != first and second in archives(backup)
    info = json.loads(borg_here(backup, f"info --json {REPOSITORY}::{second}"))
    stored = info["archives"][0]["stats"]["deduplicated_size"]
    manifest = json.loads(prod.check_output(f"cat {BACKUPS}/{second}/manifest.json"))
    # About what changed: the dump (compressed by pg_dump: new chunks) and the new attachment.
    assert stored <= manifest["dump_bytes"] + 1.2 * (2 * 1024 * 1024 + 65536) + 512 * 1024, (
        stored,
        manifest["dump_bytes"],
    )
    # Encrypted on prod: nothing of the attachment in clear on the backup host.
    assert backup.run(f"grep -rqs {MARKER} {REPOSITORY}").rc == 1
    pushed = json.loads(prod.check_output("cat /home/odoo/.odoo_dumps/.offsite-push.json"))
    assert (pushed["result"], pushed["archive"]) == ("success", second)


def test_prods_key_can_only_append_and_the_guard_sees_a_delete(sandbox, prod):
    backup = sandbox.host(BACKUP_HOST)
    address = sandbox.addresses[BACKUP_HOST]
    # The guard's first run: it records what it saw.
    prune = unit_invocation(backup, PRUNE)
    backup.check_output(f"systemctl start {PRUNE}")
    assert wait_unit_done(backup, PRUNE, prune) == "success"
    before = archives(backup)
    assert before  # one a day kept: today's pushes are one archive now
    prod.check_output(f"install -m 600 /etc/oca-france/offsite-push {KEY_COPY}")
    # No shell, no other command: the key runs borg serve, whatever is asked.
    shell = prod.check_output(f"{SSH} borg@{address} id </dev/null 2>&1; true")
    assert "uid=" not in shell, shell
    # Another repository: refused, nothing created.
    elsewhere = prod.run(
        f"BORG_RSH={shlex.quote(SSH)}"
        f" borg init --encryption=none ssh://borg@{address}:22/srv/borg/elsewhere"
    )
    assert elsewhere.rc != 0 and "not allowed" in elsewhere.stderr + elsewhere.stdout
    assert backup.run("test -e /srv/borg/elsewhere").rc != 0
    # Deleting the repository: refused; compacting: nothing changes.
    destroy = with_prods_key(prod, address, "delete", confirmed=True)
    assert destroy.rc != 0 and "append-only" in destroy.stderr, destroy.stderr
    assert backup.file(f"{REPOSITORY}/config").exists
    with_prods_key(prod, address, "compact")
    assert archives(backup) == before
    # Deleting an archive through it: a logged transaction, which the guard trips on.
    victim = before[0]
    deleted = with_prods_key(prod, address, f"delete ::{victim}")
    assert deleted.rc == 0, deleted.stderr  # accepted: a transaction in the log
    prune = unit_invocation(backup, PRUNE)
    backup.run(f"systemctl start {PRUNE}")
    assert wait_unit_done(backup, PRUNE, prune) == "exit-code"
    log = backup.check_output(f"journalctl -u {PRUNE} -o cat --no-pager -n 20")
    assert f"archive(s) gone or replaced that this host did not prune: {victim}" in log
    assert "nothing pruned nor compacted" in log
    last = json.loads(backup.check_output("cat /var/lib/oca-france/offsite/last-prune.json"))
    assert last["result"] == "guard tripped"
    # And status says so.
    status = backup.run(f"{BIN}/odoo-status")
    assert status.rc == 1 and "the last prune:" in status.stdout, status.stdout
    prod.check_output(f"rm -rf {KEY_COPY} /root/.cache/borg /root/.config/borg")

    # Without lasting effect: the operator rolls back to the backup host's own last
    # transaction (README): what prod's key did since (the compact, the delete) is undone.
    listed = backup.check_output(f"cd / && sudo -u borg {BIN}/odoo-offsite --transactions")
    lines = listed.splitlines()
    own = next(i for i, line in enumerate(lines) if "<- the last this host made" in line)
    undone = [line.split()[0] for line in lines[own + 1 :]]
    assert len(undone) == 2, listed  # the compact and the delete, through prod's key
    rolled = backup.run(f"{BIN}/odoo-offsite --rollback {lines[own].split()[0]}")
    assert rolled.rc == 0, rolled.stdout + rolled.stderr
    assert f"undid {', '.join(undone)}" in rolled.stdout
    assert archives(backup) == before
    # The delete came from root's borg: odoo's, the push's, never saw the undone state, and
    # pushes on (one whose borg did is told once: odoo-offsite-push --after-rollback, tested
    # on a real repository in tests/unit/test_offsite_borg.py).
    push = unit_invocation(prod, PUSH)
    prod.run(f"sudo -u odoo systemctl start {PUSH}")
    assert wait_unit_done(prod, PUSH, push, timeout=120) == "success"
    prune = unit_invocation(backup, PRUNE)
    backup.run(f"systemctl start {PRUNE}")
    assert wait_unit_done(backup, PRUNE, prune) == "success"
    assert backup.run(f"{BIN}/odoo-status").rc == 0


DRILL = "odoo-offsite-drill.service"


def drill(backup) -> tuple[str, str]:
    """The drill, run by its unit: its result and its journal."""
    before = unit_invocation(backup, DRILL)
    backup.check_output(f"systemctl start --no-block {DRILL}")
    result = wait_unit_done(backup, DRILL, before, timeout=600)
    invocation = unit_invocation(backup, DRILL)
    log = backup.check_output(f"journalctl -o cat --no-pager _SYSTEMD_INVOCATION_ID={invocation}")
    return result, log


def test_the_drill_restores_real_odoo_and_fails_loudly_on_a_corrupted_segment(sandbox, prod):
    backup = sandbox.host(BACKUP_HOST)
    newest = archives(backup)[-1]
    result, log = drill(backup)
    assert result == "success", log
    last = json.loads(backup.check_output("cat /var/lib/oca-france/offsite/last-drill.json"))
    assert (last["result"], last["archive"]) == ("success", newest)
    # The row counts prod recorded in the dump's own snapshot, found again in the restore.
    manifest = json.loads(prod.check_output(f"cat {BACKUPS}/{newest}/manifest.json"))
    assert last["row_counts"] == manifest["row_counts"] and manifest["row_counts"]["res_partner"]
    assert "borg check --verify-data" in log  # the first drill reads every chunk
    assert backup.check_output("ls -A /var/lib/oca-france/drill") == ""  # scratch removed
    assert "oca_france_drill" not in backup.check_output("sudo -u postgres psql -XAtl")
    status = backup.run(f"{BIN}/odoo-status")
    assert status.rc == 0 and f"success, {newest}" in status.stdout, status.stdout

    # A segment of the archives' data corrupted on the backup host's disk.
    segment = backup.check_output(
        f"find {REPOSITORY}/data -type f -name '[0-9]*' -printf '%s %p\\n' | sort -n | tail -1"
    ).split()[1]
    backup.check_output(f"cp -p {segment} /root/segment.orig")
    try:
        backup.check_output(
            f"size=$(stat -c %s {segment}); head -c 64 /dev/urandom"
            f" | dd of={segment} bs=1 seek=$((size / 2)) conv=notrunc status=none"
        )
        result, log = drill(backup)
        assert result == "exit-code", log
        assert "DRILL FAILED" in log, log
        status = backup.run(f"{BIN}/odoo-status")
        assert status.rc == 1 and "the last drill failed" in status.stdout, status.stdout
    finally:
        backup.check_output(f"cp -p /root/segment.orig {segment} && rm /root/segment.orig")
    result, log = drill(backup)
    assert result == "success", log
