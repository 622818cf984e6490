"""odoo-production-data-accept: accept the production backup prod delivered, once verified.

    odoo-production-data-accept

Run by odoo-production-data-accept.service when a manifest arrives in the incoming directory
(prod sends it last):
  1. takes the incoming lock (prod's transfer sessions take it too, odoo-production-data-
     receive), then claims the manifest it was started for (a delivery arriving later brings
     its own and waits) and copies that delivery out, to a temporary name: new files, so
     that nothing written through prod's key afterwards (rsync --inplace, --append) changes
     what was accepted; a file the newest accepted backup already has is hard-linked to it,
     not copied again; the incoming lock is then released: the next delivery may come;
  2. verifies the copy against the claimed manifest (backups.py: the dump's size and
     sha256, that this host's pg_restore reads it, every file, its size and its sha256);
  3. waits for the deploy lock (never while a deploy restores production data, nor while
     a deploy is unfinished: its repair comes first), then renames the copy into the
     production data directory, where `deploy --restore` finds it;
  4. keeps the newest production_data_kept backups there.
A delivery that does not match its manifest is refused: its manifest is left as
incoming/manifest.json.refused, nothing else changes. That, or any other failure (the
copy, a deploy lock held too long), is said once, with the reason, and fails the unit
(exit 1): the delivery's manifest is consumed, so nothing retries it; prod's next
transfer brings the next one, and sends only what changed.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import datetime
from pathlib import Path

from oca_france_host import backups, config, programs, state


def log(message: str) -> None:
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    print(f"{stamp} odoo-production-data-accept: {message}", flush=True)


class Refused(Exception):
    """The delivery does not match its manifest."""


class Failed(Exception):
    """The delivery could not be accepted, for a reason other than itself."""


CLAIMED = f".{backups.MANIFEST}.accepting"


def claim(incoming: Path, production_data: Path) -> Path | None:
    """The delivery the acceptance was started for, copied out of the incoming directory
    (under the incoming lock): its copy, or None when its manifest is gone."""
    manifest, claimed = incoming / backups.MANIFEST, incoming / CLAIMED
    if not manifest.is_file():
        return None
    manifest.rename(claimed)  # this delivery's: the path unit waits for the next one
    try:
        name = backups.read_manifest_file(claimed)["name"]
    except backups.BackupError as error:
        claimed.rename(incoming / f"{backups.MANIFEST}.refused")
        raise Refused(str(error)) from None
    partial = production_data / f"{backups.PARTIAL}{name}"
    previous = backups.newest(production_data)
    link = [f"--link-dest={previous}/"] if previous else []
    excluded = [f"--exclude=/{CLAIMED}", f"--exclude=/{backups.MANIFEST}*"]
    try:
        subprocess.run(
            ["rsync", "-a", *link, *excluded, f"{incoming}/", f"{partial}/"],
            check=True,
            capture_output=True,
            text=True,
        )
        shutil.copy2(claimed, partial / backups.MANIFEST)
    except subprocess.CalledProcessError as error:
        shutil.rmtree(partial, ignore_errors=True)
        claimed.unlink()
        reason = (error.stderr.strip().splitlines() or [f"status {error.returncode}"])[-1]
        raise Failed(f"copying {name} out of {incoming} failed: {reason}") from None
    claimed.unlink()
    return partial


def verify(incoming: Path, partial: Path) -> None:
    problem = backups.problem(partial)
    if problem:
        shutil.copy2(partial / backups.MANIFEST, incoming / f"{backups.MANIFEST}.refused")
        shutil.rmtree(partial, ignore_errors=True)
        raise Refused(problem)


def put_in_place(partial: Path, settings: dict) -> Path:
    """Under the deploy lock: the verified copy becomes production data; the oldest go."""
    production_data = partial.parent
    final = production_data / partial.name.removeprefix(backups.PARTIAL)
    try:
        held = state.take_when_finished(
            settings["deploy_lock_file"],
            settings["deploy_state_file"],
            settings["backup_lock_wait_sec"],
        )
    except state.LockBusy as busy:
        shutil.rmtree(partial, ignore_errors=True)
        raise Failed(f"{final.name} is verified, but not accepted: {busy}") from None
    with held:
        if final.exists():
            shutil.rmtree(final)
        partial.rename(final)
        log(f"accepted {final.name}: {final} is the production data deploy --restore uses")
        prune(production_data, settings["production_data_kept"])
    return final


def prune(production_data: Path, kept: int) -> None:
    for old in backups.complete(production_data)[:-kept]:
        log(f"removing older production data {old.name} (keeping the newest {kept})")
        shutil.rmtree(old)


def main(argv: list[str]) -> int:
    refused = programs.refused_arguments(argv, __doc__)
    if refused is not None:
        return refused
    settings = config.load()
    incoming = Path(settings["incoming_dir"])
    production_data = Path(settings["production_data_dir"])
    if not (incoming / backups.MANIFEST).is_file():
        log(f"nothing to accept: no manifest in {incoming}")
        return 0
    production_data.mkdir(mode=0o700, exist_ok=True)
    for stale in production_data.glob(f"{backups.PARTIAL}*"):  # an acceptance that was killed
        shutil.rmtree(stale, ignore_errors=True)
    try:
        try:
            held = state.take(
                settings["incoming_lock_file"], settings["production_data_incoming_lock_wait_sec"]
            )
        except state.LockBusy as busy:
            raise Failed(f"a transfer from prod is still writing: {busy}") from None
        with held:
            partial = claim(incoming, production_data)
        if partial is None:
            log(f"nothing to accept: the manifest left {incoming} (a new transfer began)")
            return 0
        name = partial.name.removeprefix(backups.PARTIAL)
        log(f"verifying {name}, delivered by prod (a copy: the next delivery may come)")
        verify(incoming, partial)
        put_in_place(partial, settings)
    except Refused as refusal:
        log(f"ERROR: production data refused, not used: {refusal}")
        return 1
    except Failed as failure:
        log(f"ERROR: production data not accepted: {failure}")
        return 1
    return 0
