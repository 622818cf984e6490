"""Recovery from bare, for real: prod's container (Debian 12) destroyed with its disk, a bare
one in its place on Debian 13 (a host rebuilt on the newer release), `make apply-prod`, then
`make recover-prod`: Odoo serves the rows and attachments of the backup host's archive, and
the new prod's pushes (borg 1.4) go on into the repository prod on Debian 12 (borg 1.2) made.
Runs last of all (9c): prod is a new host afterwards.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
import urllib.request

from .conftest import (
    BACKUP_HOST,
    BACKUPS,
    DB,
    GROUP_DATA,
    PROD,
    SANDBOX_SCRIPT,
    changed_operations,
    config_parameter,
    filestore,
    head,
    psql,
    unit_invocation,
    wait_unit_done,
)
from .test_9b_offsite import PRUNE, archives, drill, push_after_backup

SERVICE = "odoo-oca-france.service"
MARKER = b"recovered from the backup host, byte for byte\n"


def public_attachment(prod) -> int:
    """A public attachment, its file in the filestore as Odoo stores it: Odoo serves it to
    anyone at /web/content/<id>."""
    checksum = hashlib.sha1(MARKER).hexdigest()
    path = f"{filestore(PROD)}/{checksum[:2]}/{checksum}"
    prod.check_output(
        f"sudo -u odoo sh -c 'mkdir -p {filestore(PROD)}/{checksum[:2]} && cat > {path}'"
        f" <<'EOF'\n{MARKER.decode()}EOF"
    )
    inserted = psql(
        prod,
        DB[PROD],
        "INSERT INTO ir_attachment (name, type, store_fname, file_size, checksum, mimetype,"
        " public, create_date, write_date) VALUES ('recovery-marker.txt', 'binary',"
        f" '{checksum[:2]}/{checksum}', {len(MARKER)}, '{checksum}', 'text/plain', true,"
        " now(), now()) RETURNING id",
    )
    return int(inserted.split()[0])


def served(sandbox, attachment: int) -> bytes:
    with urllib.request.urlopen(sandbox.url(PROD, f"/web/content/{attachment}"), timeout=10) as r:
        return r.read()


def test_prod_rebuilt_from_bare_serves_the_backup_hosts_archive(sandbox, prod, recette):
    attachment = public_attachment(prod)
    assert served(sandbox, attachment) == MARKER
    archive = push_after_backup(prod, recette)
    manifest = json.loads(prod.check_output(f"cat {BACKUPS}/{archive}/manifest.json"))
    partners = psql(prod, DB[PROD], "SELECT count(*) FROM res_partner")

    started = time.monotonic()
    subprocess.run(
        ["bash", str(SANDBOX_SCRIPT), "rebuild", PROD, "trixie"], check=True, timeout=600
    )
    assert not prod.file(BACKUPS).exists  # a bare host: nothing of the old one
    group_data = " ".join(GROUP_DATA)
    applied = sandbox.make("apply-prod", YES="1", RECOVERING="1", PYINFRA_ARGS=group_data)
    assert applied.returncode == 0, applied.stdout[-5000:] + applied.stderr[-5000:]
    assert changed_operations(applied.stdout + applied.stderr) > 0
    # Installed, but nothing serves or acts on the fresh database until the data is in place.
    held = [SERVICE, "odoo-backup.timer", "odoo-check.timer"]
    for unit in held:
        assert not prod.service(unit).is_running and not prod.service(unit).is_enabled, unit
    # A name the backup host does not have: refused, nothing touched, and make stops before
    # its closing apply (which would turn the service on over the bare host's database).
    missing = sandbox.make(
        "recover-prod", YES="1", ARCHIVE=f"{DB[PROD]}-20200101T000000", PYINFRA_ARGS=group_data
    )
    assert missing.returncode != 0
    assert f"no archive '{DB[PROD]}-20200101T000000' on the backup host" in (
        missing.stdout + missing.stderr
    )
    assert "the closing apply" not in missing.stdout + missing.stderr
    for unit in held:
        assert not prod.service(unit).is_running and not prod.service(unit).is_enabled, unit
    recovered = sandbox.make("recover-prod", YES="1", PYINFRA_ARGS=group_data)  # the newest
    took = time.monotonic() - started
    assert recovered.returncode == 0, recovered.stdout[-5000:] + recovered.stderr[-5000:]
    assert f"recovered {archive}" in recovered.stdout + recovered.stderr
    print(f"recovery from bare: {took:.0f} s (rebuild, apply, recover, closing apply)")
    # The closing apply turned on what the apply for the recovery left off.
    for unit in held:
        assert prod.service(unit).is_running and prod.service(unit).is_enabled, unit

    sandbox.wait_healthy(PROD)
    assert served(sandbox, attachment) == MARKER
    assert psql(prod, DB[PROD], "SELECT count(*) FROM res_partner") == partners
    assert head(prod) == manifest["commit"]
    # Production, as it was: not neutralized.
    assert config_parameter(prod, DB[PROD], "database.is_neutralized") in ("", "false", "False")
    assert prod.check_output("ls -A /home/odoo/.odoo_dumps/recovery 2>/dev/null || true") == ""


def test_prod_rebuilt_on_debian_13_pushes_on_into_the_same_repository(sandbox, prod, recette):
    """Prod on Debian 13 (borg 1.4) pushes into the repository borg 1.2 made; the backup
    host's guard counts its transaction, and the drill restores its archive."""
    assert prod.check_output("borg --version").startswith("borg 1.4"), "not Debian 13's borg"
    backup = sandbox.host(BACKUP_HOST)
    before = archives(backup)
    pushed = push_after_backup(prod, recette)
    assert pushed in archives(backup) and pushed not in before
    prune = unit_invocation(backup, PRUNE)
    backup.check_output(f"systemctl start {PRUNE}")
    assert wait_unit_done(backup, PRUNE, prune) == "success", backup.check_output(
        f"journalctl -u {PRUNE} -o cat --no-pager -n 20"
    )
    result, log = drill(backup)
    assert result == "success", log
    last = json.loads(backup.check_output("cat /var/lib/oca-france/offsite/last-drill.json"))
    assert last["archive"] == pushed
