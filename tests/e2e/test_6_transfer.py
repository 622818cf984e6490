"""The road from production's database to a neutralized recette: prod's backup, its transfer
with a key that can only deliver, recette's check, the weekly refresh; and `make status`.

Tests run in file order, on the backups test_5 left.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import subprocess
import time

from .conftest import (
    BACKUP_HOST,
    BACKUPS,
    BIN,
    DB,
    GROUP_DATA,
    INCOMING,
    NEUTRALIZED,
    PROD,
    PRODUCTION_DATA,
    PROJECT_DIR,
    RECETTE,
    backup_dirs,
    config_parameter,
    filestore,
    login_page_ok,
    main_pid,
    make_dump_from_the_future,
    neutralization,
    power_cut_and_boot,
    psql,
    run_backup,
    unit_invocation,
    wait_unit_done,
)

RECETTE_ADDRESS = "10.231.1.2"
# systemd's record of when the weekly refresh timer last fired (what Persistent= reads).
WEEKLY_STAMP = "/var/lib/systemd/timers/stamp-odoo-weekly-deploy.timer"
KEY = "/etc/oca-france/backup-transfer"
# prod's transfer key and pinned host key, as the transfer script uses them.
SSH = (
    f"ssh -i {KEY} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes"
    " -o UserKnownHostsFile=/etc/oca-france/backup-transfer.known_hosts"
)
ACCEPT = "odoo-production-data-accept.service"
TRANSFER = "odoo-backup-transfer.service"


def as_odoo(host, command: str):
    return host.run(f"cd / && sudo -u odoo sh -c {shlex.quote(command)}")


def attempt(prod, command: str) -> tuple[int, str]:
    """Run `command` on prod as odoo: its exit status and its output. (testinfra takes an
    exit status of 255, ssh's own failures, for a lost connection: keep it inside.)"""
    result = prod.run(f'cd / && sudo -u odoo sh -c {shlex.quote(command)} 2>&1; echo "exit=$?"')
    output, _, status = result.stdout.rstrip().rpartition("exit=")
    return int(status), output


def attach_random(prod, path: str, size_kib: int) -> None:
    """An incompressible attachment, as most of a real filestore is."""
    as_odoo(
        prod,
        f"mkdir -p {filestore(PROD)}/$(dirname {path}) && head -c {size_kib}K /dev/urandom"
        f" > {filestore(PROD)}/{path}",
    )


def sent_bytes(prod) -> int:
    """What the last transfer sent: files, then manifest (from its journal)."""
    journal = prod.check_output(f"journalctl -u {TRANSFER} -o cat --no-pager -n 20")
    files = re.findall(r"files sent: (\d+) bytes", journal)[-1]
    manifest = re.findall(r"manifest sent \((\d+) bytes\)", journal)[-1]
    return int(files) + int(manifest)


def test_refresh_from_production_end_to_end(sandbox, recette, prod):
    # Production's data: marker rows, an attachment, its own URL, mail and crons active.
    psql(prod, DB[PROD], "UPDATE res_company SET name = 'Refreshed from production SA'")
    psql(
        prod,
        DB[PROD],
        "INSERT INTO ir_config_parameter (key, value) VALUES"
        " ('web.base.url', 'https://www.oca-france.fr')"
        " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
    )
    as_odoo(
        prod, f"mkdir -p {filestore(PROD)}/ef && echo refresh-marker > {filestore(PROD)}/ef/ef01"
    )
    # Production's credentials: the outgoing mail server's password and SSL client key, an
    # incoming one's password, an OAuth app's client secret.
    psql(
        prod,
        DB[PROD],
        "UPDATE ir_mail_server SET smtp_user = 'oca', smtp_pass = 'smtp-pw',"
        " smtp_ssl_private_key = 'private-key'::bytea",
    )
    psql(
        prod,
        DB[PROD],
        "INSERT INTO ir_config_parameter (key, value)"
        " VALUES ('google_gmail_client_secret', 'gmail-app-secret')",
    )
    psql(
        prod,
        DB[PROD],
        "INSERT INTO fetchmail_server (name, server, server_type, state, password, active,"
        " priority, is_ssl, port) VALUES ('Members', 'imap.oca-france.invalid', 'imap', 'done',"
        " 'imap-pw', true, 5, true, 993)",
    )
    production = neutralization(prod, DB[PROD])
    assert production["active_crons"] > 0 and production["live_mail_servers"] > 0
    identity_and_credentials = {
        "uuid": "SELECT value FROM ir_config_parameter WHERE key = 'database.uuid'",
        "secret": "SELECT value FROM ir_config_parameter WHERE key = 'database.secret'",
        "smtp": "SELECT string_agg(coalesce(smtp_pass, '-'), ',') FROM ir_mail_server",
        "imap": "SELECT string_agg(coalesce(password, '-'), ',') FROM fetchmail_server",
        "ssl_keys": "SELECT count(smtp_ssl_private_key) FROM ir_mail_server",
        "app_secret": "SELECT count(*) FROM ir_config_parameter"
        " WHERE key = 'google_gmail_client_secret'",
    }
    in_production = {k: psql(prod, DB[PROD], q) for k, q in identity_and_credentials.items()}
    assert "smtp-pw" in in_production["smtp"] and in_production["imap"] == "imap-pw"
    assert int(in_production["ssl_keys"]) > 0 and in_production["app_secret"] == "1"
    prod_pid = main_pid(prod)

    assert run_backup(prod, recette).rc == 0
    newest = backup_dirs(prod)[-1]
    assert backup_dirs(recette, PRODUCTION_DATA)[-1] == newest  # verified and accepted
    assert not recette.file(f"{INCOMING}/manifest.json").exists  # consumed

    # Recette was off at Monday's slot: its timer last fired 8 days ago (systemd's own stamp),
    # and the container boots now. The refresh runs at boot (Persistent=true), not next week.
    refresh = "odoo-weekly-deploy.service"
    recette.check_output(
        f"systemctl stop odoo-weekly-deploy.timer && touch -d '8 days ago' {WEEKLY_STAMP}"
    )
    power_cut_and_boot(RECETTE)
    result = wait_unit_done(recette, refresh, "", timeout=600)
    assert result == "success", recette.check_output(
        f"journalctl -u {refresh} -o cat --no-pager -n 30"
    )
    # A new invocation since the boot (systemd forgets earlier ones), and the slot recorded.
    assert recette.check_output(f"find {WEEKLY_STAMP} -mmin -10")  # the missed slot is caught up
    assert login_page_ok(sandbox, RECETTE)
    company = "SELECT name FROM res_company ORDER BY id LIMIT 1"
    assert psql(recette, DB[RECETTE], company) == "Refreshed from production SA"
    # Real `odoo neutralize`: mail servers and crons off, the app's neutralize.sql ran, the
    # flag as Odoo writes it; then recette's own URL, frozen, and its ribbon.
    assert neutralization(recette, DB[RECETTE]) == NEUTRALIZED
    for key, value in {
        "web.base.url": "https://test.oca-france.fr",
        "web.base.url.freeze": "True",
        "ribbon.name": "RECETTE",
    }.items():
        assert config_parameter(recette, DB[RECETTE], key) == value, key
    everything = psql(
        recette, DB[RECETTE], "SELECT string_agg(value, ' ') FROM ir_config_parameter"
    )
    assert "www.oca-france.fr" not in everything
    # A copy in Odoo's sense: its own uuid and secret, none of production's passwords.
    in_recette = {k: psql(recette, DB[RECETTE], q) for k, q in identity_and_credentials.items()}
    assert len(in_recette["uuid"]) == len(in_recette["secret"]) == 36
    assert in_recette["uuid"] != in_production["uuid"]
    assert in_recette["secret"] != in_production["secret"]
    assert set(in_recette["smtp"].split(",")) == {"-"}, in_recette["smtp"]
    assert in_recette["imap"] == "-"
    assert in_recette["ssl_keys"] == in_recette["app_secret"] == "0"
    restored = f"{filestore(RECETTE)}/ef/ef01"
    assert recette.file(restored).content_string == "refresh-marker\n"
    assert recette.file("/home/odoo/.odoo_dumps/.production-data-in-use").content_string.startswith(
        newest + " "
    )

    # Production: unchanged, still serving, still sending mail and running crons.
    assert main_pid(prod) == prod_pid
    sandbox.wait_healthy(PROD, timeout=5)
    assert psql(prod, DB[PROD], company) == "Refreshed from production SA"
    assert neutralization(prod, DB[PROD]) == production
    assert config_parameter(prod, DB[PROD], "web.base.url") == "https://www.oca-france.fr"
    assert {k: psql(prod, DB[PROD], q) for k, q in identity_and_credentials.items()} == (
        in_production
    )


def test_a_day_sends_the_dump_and_the_new_attachments_only(recette, prod):
    attach_random(prod, "aa/new-day-1", 2048)
    assert run_backup(prod, recette).rc == 0
    newest = backup_dirs(prod)[-1]
    dump = int(prod.check_output(f"stat -c %s {BACKUPS}/{newest}/{DB[PROD]}.dump"))
    sent = sent_bytes(prod)
    assert 2048 * 1024 <= sent <= dump + 1.2 * 2048 * 1024 + 64 * 1024, sent

    # Nothing new: the dump (and small change) only.
    assert run_backup(prod, recette).rc == 0
    dump = int(prod.check_output(f"stat -c %s {BACKUPS}/{backup_dirs(prod)[-1]}/{DB[PROD]}.dump"))
    assert sent_bytes(prod) <= dump + 64 * 1024
    # recette's accepted backups share each file (hard links), and share none with the
    # incoming directory prod's key writes into (nothing written there changes them).
    [older, newer] = backup_dirs(recette, PRODUCTION_DATA)[-2:]
    inodes = recette.check_output(
        f"stat -c %i {PRODUCTION_DATA}/{older}/filestore/aa/new-day-1"
        f" {PRODUCTION_DATA}/{newer}/filestore/aa/new-day-1 {INCOMING}/filestore/aa/new-day-1"
    ).split()
    assert inodes[0] == inodes[1] != inodes[2]


def test_recette_keeps_the_newest_two(recette, prod):
    assert run_backup(prod, recette).rc == 0
    accepted = [
        name
        for name in backup_dirs(recette, PRODUCTION_DATA)
        if recette.file(f"{PRODUCTION_DATA}/{name}/manifest.json").exists
    ]
    assert len(accepted) == 2
    assert accepted[-1] == backup_dirs(prod)[-1]


def test_a_transfer_killed_halfway_leaves_the_previous_backup_in_use(recette, prod):
    before = backup_dirs(recette, PRODUCTION_DATA)
    attach_random(prod, "bb/large", 40 * 1024)
    # A backup taken by the script itself: the unit would start the transfer at once.
    assert as_odoo(prod, "/opt/oca-france/bin/odoo-backup").rc == 0
    # The same transfer, slowed down (2 MB/s) so that it can be killed in the middle.
    prod.check_output(
        "install -d /tmp/slow-rsync && printf '%s\\n' '#!/bin/bash'"
        " 'exec /usr/bin/rsync \"${@/--bwlimit=0/--bwlimit=2000}\"' > /tmp/slow-rsync/rsync"
        " && chmod 755 /tmp/slow-rsync/rsync"
    )
    accept = unit_invocation(recette, ACCEPT)
    prod.check_output(
        "systemd-run --unit=slow-transfer --uid=odoo --gid=odoo"
        " -E PATH=/tmp/slow-rsync:/usr/bin:/bin /opt/oca-france/bin/odoo-backup-transfer"
    )
    try:
        deadline = time.monotonic() + 30
        while (
            time.monotonic() < deadline
            and not recette.run(f"ls -A {INCOMING}/filestore/bb 2>/dev/null | grep -q .").succeeded
        ):
            time.sleep(0.2)
        time.sleep(2)  # part of the 40 MiB file is on its way
        assert prod.check_output("systemctl is-active slow-transfer.service || true") == "active"
    finally:
        prod.run(
            "systemctl kill -s KILL slow-transfer.service;"
            " systemctl reset-failed slow-transfer.service"
        )
    time.sleep(2)
    assert not recette.file(f"{INCOMING}/manifest.json").exists
    assert backup_dirs(recette, PRODUCTION_DATA) == before
    assert unit_invocation(recette, ACCEPT) == accept  # nothing to verify: nothing accepted
    # deploy --restore would take the previous complete backup.
    status = recette.check_output("sudo -u odoo /opt/oca-france/bin/odoo-status || true")
    assert f"newest received:  {before[-1]}" in status

    # The next transfer completes it.
    transfer = unit_invocation(prod, TRANSFER)
    prod.check_output(f"sudo -u odoo systemctl start {TRANSFER}")
    assert wait_unit_done(prod, TRANSFER, transfer) == "success"
    assert wait_unit_done(recette, ACCEPT, accept) == "success"
    assert backup_dirs(recette, PRODUCTION_DATA)[-1] == backup_dirs(prod)[-1]
    prod.check_output("rm -rf /tmp/slow-rsync")


def deliver_refused(sandbox, recette, prod, damage) -> None:
    """A backup of prod, `damage`d (given its directory), then sent: recette refuses it."""
    assert as_odoo(prod, "/opt/oca-france/bin/odoo-backup").rc == 0
    newest = f"{BACKUPS}/{backup_dirs(prod)[-1]}"
    damage(newest)
    accept = unit_invocation(recette, ACCEPT)
    transfer = unit_invocation(prod, TRANSFER)
    try:
        prod.check_output(f"sudo -u odoo systemctl start {TRANSFER}")
        assert wait_unit_done(prod, TRANSFER, transfer) == "success"
        assert wait_unit_done(recette, ACCEPT, accept) == "exit-code"
    finally:
        prod.check_output(f"rm -rf {newest}")


def test_a_corrupted_delivery_is_refused_and_recette_keeps_running(sandbox, recette, prod):
    before = backup_dirs(recette, PRODUCTION_DATA)
    pid = main_pid(recette)

    def damage(backup: str) -> None:  # cut off on its way
        prod.check_output(f"sudo -u odoo truncate -s -100 {backup}/{DB[PROD]}.dump")

    deliver_refused(sandbox, recette, prod, damage)
    assert recette.check_output(f"systemctl is-failed {ACCEPT} || true") == "failed"
    journal = recette.check_output(f"journalctl -u {ACCEPT} -o cat --no-pager -n 10")
    assert "production data refused, not used" in journal
    assert "bytes, the manifest says" in journal
    assert backup_dirs(recette, PRODUCTION_DATA) == before
    assert recette.file(f"{INCOMING}/manifest.json.refused").exists
    assert main_pid(recette) == pid
    sandbox.wait_healthy(RECETTE, timeout=5)
    recette.check_output(f"systemctl reset-failed {ACCEPT}")


def test_a_dump_recette_cannot_read_is_refused_on_delivery(sandbox, recette, prod):
    """A dump from a newer PostgreSQL than recette's: its checksums match, recette's own
    pg_restore cannot read it; refused at once, the reason in the journal and make status."""
    before = backup_dirs(recette, PRODUCTION_DATA)
    pid = main_pid(recette)
    try:
        deliver_refused(sandbox, recette, prod, lambda b: make_dump_from_the_future(prod, b))
        status = sandbox.make("status")
    finally:
        recette.run(f"systemctl reset-failed {ACCEPT}")
    journal = recette.check_output(f"journalctl -u {ACCEPT} -o cat --no-pager -n 10")
    assert "production data refused, not used" in journal
    assert "was made by PostgreSQL 99" in journal and "oca-france-recette has 17" in journal
    out = status.stdout + status.stderr
    assert status.returncode != 0, out
    assert re.search(
        rf"\[{RECETTE}\]\s+ATTENTION:\s+{ACCEPT} failed \(.*made by PostgreSQL 99", out
    )
    assert backup_dirs(recette, PRODUCTION_DATA) == before
    assert main_pid(recette) == pid


def test_the_transfer_key_can_only_deliver_backups(recette, prod):
    target = f"odoo@{RECETTE_ADDRESS}"
    odoorc = recette.check_output("sha256sum /etc/oca-france/odoo.conf")
    keys = recette.check_output("sha256sum /etc/oca-france/authorized_keys/odoo")

    status, output = attempt(prod, f"{SSH} {target} 'id; touch /tmp/key-ran-a-shell'")
    assert status != 0 and "uid=" not in output
    assert "SSH_ORIGINAL_COMMAND does not run rsync" in output
    assert not recette.file("/tmp/key-ran-a-shell").exists

    status, output = attempt(prod, f"{SSH} -tt {target} < /dev/null")
    assert status != 0 and "PTY allocation request failed" in output

    status, output = attempt(prod, f"{SSH} -W 127.0.0.1:5432 {target} < /dev/null")
    assert status != 0 and "administratively prohibited" in output
    status, output = attempt(
        prod, f"{SSH} -o ExitOnForwardFailure=yes -R 127.0.0.1:15000:127.0.0.1:22 {target} true"
    )
    assert status != 0 and "remote port forwarding failed" in output

    status, output = attempt(prod, f"rsync -e '{SSH}' {target}:filestore.list /tmp/read-attempt")
    assert status != 0 and "reading from write-only server is not allowed" in output
    assert not prod.file("/tmp/read-attempt").exists

    as_odoo(prod, "echo evil > /tmp/evil && ln -sfn /home/odoo /tmp/escape")
    status, output = attempt(prod, f"rsync -e '{SSH}' /tmp/evil {target}:../production-data/evil")
    assert status != 0 and "do not use .. in arg" in output
    # An absolute path is taken inside incoming/ (incoming/home/odoo/..., which does not exist).
    look = "ls -l --time-style=full-iso /home/odoo/.profile 2>&1; sha256sum /home/odoo/.profile"
    profile = recette.run(look).stdout
    status, output = attempt(prod, f"rsync -e '{SSH}' /tmp/evil {target}:/home/odoo/.profile")
    # (rsync's server's message can be lost when the server exits first.)
    assert status != 0 and (not output or f"{INCOMING}/home/odoo" in output), output
    assert recette.run(look).stdout == profile
    # A symlink out of incoming/, then a write through it.
    attempt(prod, f"rsync -a -e '{SSH}' /tmp/escape {target}:")
    status, output = attempt(prod, f"rsync -e '{SSH}' /tmp/evil {target}:escape/.odoorc")
    assert status != 0
    assert recette.check_output("sha256sum /etc/oca-france/odoo.conf") == odoorc
    assert recette.check_output("sha256sum /etc/oca-france/authorized_keys/odoo") == keys
    assert recette.check_output("find /home/odoo -name evil -not -path '*/incoming/*'") == ""
    prod.check_output("rm -f /tmp/evil /tmp/escape")


def test_writes_through_the_key_after_an_acceptance_change_nothing_accepted(recette, prod):
    """rrsync lets the key write in place (--inplace, --append) into incoming/: what recette
    accepted, and the live filestore restored from it, are other files."""
    target = f"odoo@{RECETTE_ADDRESS}"
    newest = backup_dirs(recette, PRODUCTION_DATA)[-1]
    accepted = f"{PRODUCTION_DATA}/{newest}/filestore/ef/ef01"
    live = f"{filestore(RECETTE)}/ef/ef01"
    before = recette.check_output(f"sha256sum {accepted} {live}")
    as_odoo(prod, "printf 'EVIL-WRITE-THROUGH-THE-KEY\\n' > /tmp/evil-inplace")
    written = []
    for flag in ("--inplace", "--append"):
        status, _ = attempt(
            prod, f"rsync {flag} -e '{SSH}' /tmp/evil-inplace {target}:filestore/ef/ef01"
        )
        written.append(status == 0)  # incoming/ is the key's to write: rrsync lets it
    if any(written):
        assert "EVIL" in recette.check_output(f"cat {INCOMING}/filestore/ef/ef01")
    assert recette.check_output(f"sha256sum {accepted} {live}") == before
    verify = recette.run(
        f"sudo -u odoo /opt/oca-france/bin/odoo-backup-verify {PRODUCTION_DATA}/{newest}"
    )
    assert verify.rc == 0, verify.stderr
    prod.check_output("rm -f /tmp/evil-inplace")


def test_a_manifest_naming_a_path_is_refused(recette, prod):
    """A manifest is trusted for nothing: a name or a dump that is a path, or carries a
    newline, is refused before anything is copied or read."""
    target = f"odoo@{RECETTE_ADDRESS}"
    before = backup_dirs(recette, PRODUCTION_DATA)
    good = json.loads(recette.check_output(f"cat {PRODUCTION_DATA}/{before[-1]}/manifest.json"))
    for key, value in (("name", "/etc/passwd"), ("name", "../x"), ("dump", "x.dump\n")):
        manifest = {**good, key: value}
        as_odoo(prod, f"cat > /tmp/manifest.json <<'EOF'\n{json.dumps(manifest)}\nEOF")
        accept = unit_invocation(recette, ACCEPT)
        status, output = attempt(
            prod, f"rsync -e '{SSH}' /tmp/manifest.json {target}:manifest.json"
        )
        assert status == 0, output
        assert wait_unit_done(recette, ACCEPT, accept) == "exit-code", (key, value)
        journal = recette.check_output(f"journalctl -u {ACCEPT} -o cat --no-pager -n 5")
        assert f"the manifest's {key}" in journal and "is not a plain name" in journal
        recette.check_output(f"systemctl reset-failed {ACCEPT}")
    assert backup_dirs(recette, PRODUCTION_DATA) == before
    assert (
        not recette.file("/x").exists
        and recette.check_output("ls -A /home/odoo/.odoo_dumps | grep -c '^x' || true") == "0"
    )
    prod.check_output("rm -f /tmp/manifest.json")


HOST_JSON = "/etc/oca-france/host.json"


@contextlib.contextmanager
def host_config_changed(host, **values):
    """The host config with `values` changed, as an apply of other group data would write
    it; the applied one put back after."""
    # Renamed into place, as the apply does: the timers' programs read it every minute.
    change = (
        f"import json; p = {HOST_JSON!r}; c = json.load(open(p)); c.update({values!r});"
        " json.dump(c, open(p + '.test-new', 'w'), indent=2)"
    )
    host.check_output(
        f"cp -p {HOST_JSON} {HOST_JSON}.test-saved && cp -p {HOST_JSON} {HOST_JSON}.test-new"
        f" && python3 -c {shlex.quote(change)} && mv {HOST_JSON}.test-new {HOST_JSON}"
    )
    try:
        yield
    finally:
        host.check_output(f"mv {HOST_JSON}.test-saved {HOST_JSON}")


def test_a_delivery_over_the_limit_is_refused_and_the_disk_given_back(recette, prod):
    before = backup_dirs(recette, PRODUCTION_DATA)
    assert as_odoo(prod, "/opt/oca-france/bin/odoo-backup").rc == 0
    newest = backup_dirs(prod)[-1]
    size_mib = int(prod.check_output(f"du -sm {BACKUPS}/{newest} | cut -f1"))
    assert size_mib >= 20  # the 40 MiB attachment of the killed transfer's test
    accept = unit_invocation(recette, ACCEPT)
    with host_config_changed(recette, production_data_incoming_limit_mib=size_mib // 2):
        transfer = unit_invocation(prod, TRANSFER)
        prod.run(f"sudo -u odoo systemctl start {TRANSFER}")
        assert wait_unit_done(prod, TRANSFER, transfer) == "exit-code"
    prod.check_output(f"systemctl reset-failed {TRANSFER}")
    journal = prod.check_output(f"journalctl -u {TRANSFER} -o cat --no-pager -n 10")
    assert "delivery refused" in journal, journal
    assert f"({size_mib // 2}.0 MiB, production_data_incoming_limit_mib on recette)" in journal, (
        journal
    )
    assert recette.check_output(f"ls -A {INCOMING}") == ""  # the disk given back
    assert backup_dirs(recette, PRODUCTION_DATA) == before
    assert unit_invocation(recette, ACCEPT) == accept  # no manifest sent: nothing to accept
    # Under the applied limit, the next transfer sends it all again, and it is accepted.
    transfer = unit_invocation(prod, TRANSFER)
    prod.check_output(f"sudo -u odoo systemctl start {TRANSFER}")
    assert wait_unit_done(prod, TRANSFER, transfer) == "success"
    assert wait_unit_done(recette, ACCEPT, accept) == "success"
    assert backup_dirs(recette, PRODUCTION_DATA)[-1] == newest
    assert sent_bytes(prod) > size_mib * 2**20 * 0.9


def journal_stamped(host, unit: str, since: str) -> list[tuple[float, str]]:
    out = host.check_output(f"journalctl -u {unit} -o short-unix --no-pager --since @{since}")
    lines = (line.split(" ", 1) for line in out.splitlines() if line[:1].isdigit())
    return [(float(stamp), text) for stamp, text in lines]


def first(lines: list[tuple[float, str]], text: str) -> float:
    return next(stamp for stamp, line in lines if text in line)


SLOW_COPY = "/run/systemd/system/odoo-production-data-accept.service.d/zz-test-slow-copy.conf"


def test_two_deliveries_in_a_row_are_both_accepted(recette, prod):
    """The second comes while recette still copies the first out of incoming/ (that copy
    slowed down, in the test only): its transfer waits for the copy; both are accepted."""
    recette.check_output(
        "install -d /run/slow-accept"
        " && printf '#!/bin/sh\\nsleep 30\\nexec /usr/bin/rsync \"$@\"\\n' > /run/slow-accept/rsync"
        f" && chmod 755 /run/slow-accept/rsync && mkdir -p {SLOW_COPY.rsplit('/', 1)[0]}"
        f" && printf '[Service]\\nEnvironment=PATH=/run/slow-accept:/usr/bin:/bin\\n' > {SLOW_COPY}"
        " && systemctl daemon-reload"
    )
    since = recette.check_output("date +%s")
    names = []
    try:
        for _ in range(2):
            assert as_odoo(prod, "/opt/oca-france/bin/odoo-backup").rc == 0
            names.append(backup_dirs(prod)[-1])
            transfer = unit_invocation(prod, TRANSFER)
            prod.check_output(f"sudo -u odoo systemctl start --no-block {TRANSFER}")
            assert wait_unit_done(prod, TRANSFER, transfer, timeout=180) == "success"
        deadline = time.monotonic() + 180
        while backup_dirs(recette, PRODUCTION_DATA)[-2:] != names:
            assert time.monotonic() < deadline, backup_dirs(recette, PRODUCTION_DATA)
            time.sleep(1)
        deadline = time.monotonic() + 60
        while recette.service(ACCEPT).is_running and time.monotonic() < deadline:
            time.sleep(1)
    finally:
        recette.check_output(f"rm -rf {SLOW_COPY} /run/slow-accept && systemctl daemon-reload")
    accepted = journal_stamped(recette, ACCEPT, since)
    assert not [line for _, line in accepted if "ERROR" in line], accepted
    for name in names:
        first(accepted, f"accepted {name}")
    for name in names:  # each verified from its own copy, against its own manifest
        recette.check_output(f"sudo -u odoo {BIN}/odoo-backup-verify {PRODUCTION_DATA}/{name}")
    # The second transfer began while the first delivery was still being copied out.
    transfers = journal_stamped(prod, TRANSFER, since)
    assert first(transfers, f"sending {names[1]}") < first(accepted, f"verifying {names[0]}")


def test_an_apply_without_the_key_material_stops_before_any_change(sandbox, prod):
    known_hosts = "/etc/oca-france/backup-transfer.known_hosts"
    before = prod.check_output(f"stat -c '%Y %s' {known_hosts}")

    env = {k: v for k, v in sandbox.run_env().items() if k != "OCA_FRANCE_BACKUP_TRANSFER_KEY_FILE"}
    no_key = subprocess_pyinfra(env, "--limit", "prod")
    assert no_key.returncode != 0
    output = no_key.stdout + no_key.stderr
    assert "Missing the oca-france-backup-transfer key (needed for prod)" in output
    assert "ssh-keygen -t ed25519" in output
    assert "Connecting" not in output

    no_host_key = sandbox.apply("--limit", "prod", "--data", "backup_transfer_host_key=")
    output = no_host_key.stdout + no_host_key.stderr
    assert no_host_key.returncode != 0
    assert "backup_transfer_host_key" in output and "ssh_host_ed25519_key.pub" in output
    assert "Beginning operation run" not in output
    assert prod.check_output(f"stat -c '%Y %s' {known_hosts}") == before


def test_the_transfer_key_is_private_and_never_shown(sandbox, prod, tmp_path):
    key = prod.file("/etc/oca-france/backup-transfer")
    assert (key.user, key.group, key.mode) == ("root", "odoo", 0o640)
    # A new key pair: the dry run says the key would change, and shows neither key.
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "new")], check=True
    )
    new_body = [
        line for line in (tmp_path / "new").read_text().splitlines() if not line.startswith("---")
    ]
    env = {**sandbox.run_env(), "OCA_FRANCE_BACKUP_TRANSFER_KEY_FILE": str(tmp_path / "new")}
    before = key.content_string
    dry = subprocess.run(
        ["pyinfra", "--dry", "--diff", "-vvv", "inventory.py", "deploy.py", *GROUP_DATA]
        + ["--limit", "prod"],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = dry.stdout + dry.stderr
    assert dry.returncode == 0, output[-3000:]
    assert "Will write /etc/oca-france/backup-transfer (content not shown" in output
    for secret in sandbox.secrets + new_body:
        assert secret not in output
    assert prod.file("/etc/oca-france/backup-transfer").content_string == before


def subprocess_pyinfra(env: dict[str, str], *args: str):
    return subprocess.run(
        ["pyinfra", "-y", "inventory.py", "deploy.py", *GROUP_DATA, *args],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_make_status_shows_each_host_and_flags_what_is_stale(sandbox, recette, prod):
    ok = sandbox.without_secrets().make("status")  # it reads the hosts: no secret needed
    out = ok.stdout + ok.stderr
    assert ok.returncode == 0, out
    newest = backup_dirs(prod)[-1]
    for host in (RECETTE, PROD):
        assert re.search(rf"\[{host}\]\s+deployed:\s+\S+", out)
        assert re.search(rf"\[{host}\]\s+service:\s+odoo-oca-france.service active, health ok", out)
    assert re.search(rf"\[{PROD}\]\s+last backup:\s+{newest}, 0\.\d h old", out)
    assert re.search(rf"\[{RECETTE}\]\s+production data:\s+{DB[PROD]}-\d{{8}}T\d{{6}}, taken", out)
    # prod's last push off-site, and the backup host's side of it.
    assert re.search(rf"\[{PROD}\]\s+last push:\s+{DB[PROD]}-\d{{8}}T\d{{6}} at ", out)
    assert re.search(rf"\[{BACKUP_HOST}\]\s+last push:\s+\S+ \S+ \(0\.\d h ago\)", out)
    assert re.search(rf"\[{BACKUP_HOST}\]\s+disk:\s+/srv/borg: \d+% used", out)
    assert re.search(rf"\[{BACKUP_HOST}\]\s+last prune:\s+", out)
    assert re.search(rf"\[{BACKUP_HOST}\]\s+last drill:\s+none yet", out)  # test_9b drills

    # Stale: a backup older than 36 h on prod, production data older than 8 days on recette.
    manifest = f"{BACKUPS}/{newest}/manifest.json"
    original = prod.file(manifest).content_string
    old = json.loads(original)
    old["time"] = prod.check_output("date -d '-37 hours' --iso-8601=seconds")
    in_use = "/home/odoo/.odoo_dumps/.production-data-in-use"
    in_use_before = recette.file(in_use).content_string
    try:
        prod.check_output(
            f"sudo -u odoo sh -c {shlex.quote(f'cat > {manifest}')} <<'EOF'\n{json.dumps(old)}\nEOF"
        )
        nine_days = recette.check_output("date -d '-9 days' --iso-8601=seconds")
        name = in_use_before.split()[0]
        recette.check_output(f"sudo -u odoo sh -c 'echo {name} {nine_days} > {in_use}'")
        stale = sandbox.make("status")
    finally:
        prod.check_output(
            f"sudo -u odoo sh -c {shlex.quote(f'cat > {manifest}')} <<'EOF'\n{original}EOF"
        )
        recette.check_output(f"sudo -u odoo sh -c 'echo {in_use_before.strip()} > {in_use}'")
    assert stale.returncode != 0
    out = stale.stdout + stale.stderr
    assert re.search(rf"\[{PROD}\]\s+ATTENTION:\s+the last backup is 37\.0 h old", out)
    assert re.search(
        rf"\[{RECETTE}\]\s+ATTENTION:\s+the production data in use is 9\.0 days old", out
    )
