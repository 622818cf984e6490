"""odoo-production-data-accept: accept the production backup prod delivered, once verified.

    odoo-production-data-accept

Run by odoo-production-data-accept.service when a manifest arrives in the incoming directory
(prod sends it last):
  1. waits for the deploy lock: never while a deploy restores production data;
  2. claims the manifest it was started for (a delivery arriving meanwhile brings its own),
     then copies the delivery to a temporary name: new files, so that nothing written
     through prod's key afterwards (rsync --inplace, --append) changes what was accepted;
     a file the newest accepted backup already has is hard-linked to it, not copied again;
  3. verifies the copy against the claimed manifest (backups.py: the dump's size and
     sha256, that this host's pg_restore reads it, every file, its size and its sha256);
  4. renames it into the production data directory, where `deploy --restore` finds it;
  5. keeps the newest production_data_kept backups there.
A delivery that does not match its manifest is refused: its manifest is renamed
manifest.json.refused, nothing else changes, and the exit status is 1 (a failed unit).
The files stay in the incoming directory, so prod's next transfer sends only what changed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from oca_france_host import backups, config, lock


def log(message: str) -> None:
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    print(f"{stamp} odoo-production-data-accept: {message}", flush=True)


class Refused(Exception):
    """The delivery does not match its manifest."""


CLAIMED = f".{backups.MANIFEST}.accepting"


def accept(incoming: Path, production_data: Path, name: str) -> Path:
    final = production_data / name
    partial = production_data / f".partial-{name}"
    shutil.rmtree(partial, ignore_errors=True)
    previous = backups.newest(production_data)
    link = [f"--link-dest={previous}/"] if previous else []
    excluded = [f"--exclude=/{CLAIMED}", f"--exclude=/{backups.MANIFEST}*"]
    subprocess.run(["rsync", "-a", *link, *excluded, f"{incoming}/", f"{partial}/"], check=True)
    shutil.copy2(incoming / CLAIMED, partial / backups.MANIFEST)
    problem = backups.problem(partial)
    if problem:
        shutil.rmtree(partial, ignore_errors=True)
        raise Refused(problem)
    if final.exists():
        shutil.rmtree(final)
    partial.rename(final)
    return final


def prune(production_data: Path, kept: int) -> None:
    for old in backups.complete(production_data)[:-kept]:
        log(f"removing older production data {old.name} (keeping the newest {kept})")
        shutil.rmtree(old)


def main(argv: list[str]) -> int:
    if argv:
        print(__doc__.strip(), file=sys.stderr)
        return 0 if argv[0] in ("-h", "--help") else 2
    settings = config.load()
    incoming = Path(settings["incoming_dir"])
    production_data = Path(settings["production_data_dir"])
    manifest = incoming / backups.MANIFEST
    if not manifest.is_file():
        log(f"nothing to accept: no manifest in {incoming}")
        return 0
    production_data.mkdir(mode=0o700, exist_ok=True)
    try:
        held = lock.take_when_finished(
            settings["deploy_lock_file"],
            settings["deploy_state_file"],
            settings["backup_lock_wait_sec"],
        )
    except lock.LockBusy as busy:
        log(f"ERROR: {busy}")
        return 1
    claimed = incoming / CLAIMED
    try:
        manifest.rename(claimed)  # this delivery's: the path unit waits for the next one
        try:
            name = backups.read_manifest_file(claimed)["name"]
        except backups.BackupError as error:
            raise Refused(str(error)) from None
        log(f"verifying {name}, delivered by prod")
        final = accept(incoming, production_data, name)
        claimed.unlink()
        log(f"accepted {name}: {final} is the production data deploy --restore uses")
        prune(production_data, settings["production_data_kept"])
    except Refused as refusal:
        claimed.rename(incoming / f"{backups.MANIFEST}.refused")
        log(f"ERROR: production data refused, not used: {refusal}")
        return 1
    finally:
        held.close()
    return 0
