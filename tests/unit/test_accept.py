"""odoo-production-data-accept (recette): a delivery from prod is used only once verified."""

from __future__ import annotations

import fcntl
import os

import pytest

from .conftest import PROD_DB, edit_manifest, fake_pg_restore, write_backup

NAME = f"{PROD_DB}-20261127T024107"
CLAIMED_NAME = ".manifest.json.accepting"


@pytest.fixture
def recette(make_host):
    """Recette, with a valid delivery from prod in its incoming directory."""
    host = make_host("oca-france-recette")
    fake_pg_restore(host)
    # rsync delivers into incoming/ itself: the backup's files, its manifest last.
    incoming = host.path("incoming_dir")
    incoming.rmdir()
    write_backup(incoming.parent, incoming.name, files={"ab/abcdef": "invoice\n"})
    edit_manifest(incoming, name=NAME)
    return host


def tree(directory) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def test_a_valid_delivery_is_copied_into_the_production_data(recette):
    result = recette.run("odoo-production-data-accept")
    assert result.returncode == 0, result.stdout + result.stderr
    incoming, accepted = recette.path("incoming_dir"), recette.path("production_data_dir") / NAME
    assert f"accepted {NAME}: {accepted} is the production data" in result.stdout
    assert not (incoming / "manifest.json").exists()  # consumed: not accepted twice
    assert (accepted / "manifest.json").is_file()
    for path in (f"{PROD_DB}.dump", "filestore/ab/abcdef", "filestore.list"):
        # New files: nothing written into incoming/ afterwards can change them.
        assert (accepted / path).stat().st_ino != (incoming / path).stat().st_ino
    assert tree(recette.path("production_data_dir")) == [
        NAME,
        *(f"{NAME}/{p}" for p in tree(accepted)),
    ]
    assert (
        f"pg_restore --list {recette.path('production_data_dir')}/.partial-{NAME}/{PROD_DB}.dump"
        in recette.logged()
    )


def test_only_the_newest_production_data_are_kept(recette):
    production_data = recette.path("production_data_dir")
    assert recette.config["production_data_kept"] == 2
    for day in (24, 25, 26):
        write_backup(production_data, f"{PROD_DB}-202611{day}T024107")
    result = recette.run("odoo-production-data-accept")
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in production_data.iterdir()) == [f"{PROD_DB}-20261126T024107", NAME]
    assert "removing older production data" in result.stdout


def refused(recette, before: list[str]) -> str:
    result = recette.run("odoo-production-data-accept")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "production data refused, not used" in result.stdout
    incoming = recette.path("incoming_dir")
    assert not (incoming / "manifest.json").exists()
    assert (incoming / "manifest.json.refused").is_file()
    assert tree(recette.path("production_data_dir")) == before  # unchanged, nothing partial
    return result.stdout


def test_a_corrupted_delivery_is_refused(recette):
    production_data = recette.path("production_data_dir")
    write_backup(production_data, f"{PROD_DB}-20261126T024107")
    before = tree(production_data)
    dump = recette.path("incoming_dir") / f"{PROD_DB}.dump"
    dump.write_bytes(dump.read_bytes()[:-100])  # cut off in transfer
    assert "bytes, the manifest says" in refused(recette, before)


@pytest.mark.parametrize("name", ["../x", "/etc/passwd"])
def test_a_delivery_named_as_a_path_is_refused(recette, name):
    edit_manifest(recette.path("incoming_dir"), name=name)
    assert f"the manifest's name {name!r} is not a plain name" in refused(recette, [])
    assert not (recette.path("production_data_dir").parent / "x").exists()


def test_no_manifest_nothing_to_accept(recette):
    (recette.path("incoming_dir") / "manifest.json").unlink()
    result = recette.run("odoo-production-data-accept")
    assert result.returncode == 0, result.stderr
    assert "nothing to accept" in result.stdout
    assert tree(recette.path("production_data_dir")) == []


def test_a_delivery_waits_for_the_deploy_lock_then_fails_once_with_the_reason(recette):
    recette.config["backup_lock_wait_sec"] = 1
    recette.write_config()
    lock_file = recette.config["deploy_lock_file"]
    with open(lock_file, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = recette.run("odoo-production-data-accept")
    assert result.returncode == 1
    assert f"{NAME} is verified, but not accepted: {lock_file} still held after 1s" in result.stdout
    # Consumed: the path unit does not start it again at once; prod's next delivery comes.
    assert not (recette.path("incoming_dir") / "manifest.json").exists()
    assert tree(recette.path("production_data_dir")) == []  # nothing partial left


def test_a_transfer_session_holds_the_acceptance_off_the_delivery(recette):
    """odoo-production-data-receive holds the incoming lock while prod's rsync writes."""
    recette.config["production_data_incoming_lock_wait_sec"] = 1
    recette.write_config()
    lock_file = recette.config["incoming_lock_file"]
    with open(lock_file, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = recette.run("odoo-production-data-accept")
    assert result.returncode == 1
    assert f"a transfer from prod is still writing: {lock_file} still held" in result.stdout
    assert (recette.path("incoming_dir") / "manifest.json").is_file()  # not claimed
    assert tree(recette.path("production_data_dir")) == []


def test_a_file_already_accepted_is_linked_not_copied_again(recette):
    production_data = recette.path("production_data_dir")
    older = write_backup(production_data, f"{PROD_DB}-20261126T024107")
    incoming = recette.path("incoming_dir")
    same = incoming / "filestore/ab/abcdef"
    # rsync -a keeps the mtime: the same file, as the day before.
    os.utime(same, ns=((older / "filestore/ab/abcdef").stat().st_atime_ns,) * 2)
    os.utime(older / "filestore/ab/abcdef", ns=(same.stat().st_mtime_ns,) * 2)
    assert recette.run("odoo-production-data-accept").returncode == 0
    accepted = production_data / NAME / "filestore/ab/abcdef"
    assert accepted.stat().st_ino == (older / "filestore/ab/abcdef").stat().st_ino
    assert accepted.stat().st_ino != same.stat().st_ino


def test_writes_through_the_key_after_acceptance_change_nothing_accepted(recette):
    """rsync --inplace or --append through prod's key rewrites incoming/'s files in place."""
    assert recette.run("odoo-production-data-accept").returncode == 0
    incoming, accepted = recette.path("incoming_dir"), recette.path("production_data_dir") / NAME
    with open(incoming / "filestore/ab/abcdef", "r+b") as file:
        file.write(b"EVIL!!!!")  # same size, in place
    with open(incoming / f"{PROD_DB}.dump", "ab") as file:
        file.write(b"appended")
    assert (accepted / "filestore/ab/abcdef").read_text() == "invoice\n"
    verify = recette.run("odoo-backup-verify", str(accepted))
    assert verify.returncode == 0, verify.stderr


def test_a_file_altered_at_the_same_size_is_refused(recette):
    before = tree(recette.path("production_data_dir"))
    (recette.path("incoming_dir") / "filestore/ab/abcdef").write_text("INVOICE\n")
    assert "filestore/ab/abcdef does not match its sha256" in refused(recette, before)


def test_a_delivery_arriving_during_the_acceptance_keeps_its_own_manifest(recette):
    """The manifest the acceptance was started for is claimed first: the next delivery's
    manifest, arriving meanwhile, is left for the next run."""
    incoming = recette.path("incoming_dir")
    claimed = incoming / ".manifest.json.accepting"
    recette.fake(
        "rsync",
        f"cp {incoming}/{CLAIMED_NAME} {incoming}/manifest.json 2>/dev/null;"
        ' exec /usr/bin/rsync "$@"',
    )
    assert recette.run("odoo-production-data-accept").returncode == 0
    assert (incoming / "manifest.json").exists()  # the next delivery's, for the next run
    assert not claimed.exists()
