"""The backup format (oca_france_host.backups): the manifest, which backups count as
complete, and odoo-backup-verify, which checks a backup against its manifest."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time

import pytest

from .conftest import (
    BIN,
    DUMP,
    HOST_DIR,
    PROD_DB,
    backups,
    dump_header,
    edit_manifest,
    fake_pg_restore,
    git,
    write_backup,
)

NAME = f"{PROD_DB}-20261127T024107"


def test_the_production_data_to_restore_is_the_newest_by_its_time_never_a_partial(tmp_path):
    """One rule, by the time a name ends with: not by name (a hand-made dump's name may sort
    anywhere), never a copy the acceptance is still making (.partial-*, its manifest there)."""
    older = write_backup(tmp_path, f"{PROD_DB}-20261201T023000")
    partial = write_backup(tmp_path, f"{PROD_DB}-20261204T023000")
    partial.rename(tmp_path / f".partial-{partial.name}")  # being copied out of incoming/
    dump = tmp_path / "copy-by-hand-20261202T090000.dump"
    dump.write_bytes(DUMP)  # a name that sorts before the backups'
    (tmp_path / "undated.dump").write_bytes(DUMP)
    (tmp_path / ".hidden-20261205T000000.dump").write_bytes(DUMP)
    assert backups.restorable(tmp_path) == [older, dump]
    assert backups.newest_restorable(tmp_path) == dump
    assert backups.newest_restorable(tmp_path / "none") is None
    newest = write_backup(tmp_path, f"{PROD_DB}-20261203T023000")
    assert backups.newest_restorable(tmp_path) == newest


def test_a_manifest_reads_back_what_was_written(tmp_path):
    files = {"ab/abcdef": "invoice\n", "cd/cdef01": "a scan, longer\n"}
    backup = write_backup(tmp_path, NAME, files=files)
    manifest = backups.read_manifest(backup)
    assert manifest["name"] == NAME and manifest["database"] == PROD_DB
    assert manifest["commit"] == "0123456789abcdef"
    assert (manifest["dump"], manifest["dump_bytes"]) == (f"{PROD_DB}.dump", len(DUMP))
    assert manifest["dump_sha256"] == hashlib.sha256(DUMP).hexdigest()
    assert (manifest["filestore_files"], manifest["filestore_bytes"]) == (2, 8 + 15)
    listing = (backup / "filestore.list").read_text()
    sha = {name: hashlib.sha256(text.encode()).hexdigest() for name, text in files.items()}
    assert listing == f"ab/abcdef 8 {sha['ab/abcdef']}\ncd/cdef01 15 {sha['cd/cdef01']}\n"
    assert manifest["filestore_list_sha256"] == hashlib.sha256(listing.encode()).hexdigest()
    assert sorted(p.name for p in backup.iterdir()) == [
        "filestore",
        "filestore.list",
        "manifest.json",
        f"{PROD_DB}.dump",
    ]  # no partial manifest left behind


def test_only_complete_backups_with_plain_names_are_listed(tmp_path):
    older = write_backup(tmp_path, f"{PROD_DB}-20261126T024000")
    newer = write_backup(tmp_path, NAME)
    write_backup(tmp_path, "oca-france-recette-20261128T024000")
    (tmp_path / f".partial-{PROD_DB}-20261128T024000").mkdir()  # being written
    (tmp_path / f"{PROD_DB}-20261128T030000").mkdir()  # no manifest: incomplete
    odd = write_backup(tmp_path, f"{PROD_DB}-20261128T040000")
    odd.rename(tmp_path / f"{odd.name}\n")  # not a plain name
    (tmp_path / f"{PROD_DB}-20261129T020000").write_text("a file, not a backup")
    assert backups.complete(tmp_path, PROD_DB) == [older, newer]
    assert backups.newest(tmp_path, PROD_DB) == newer
    assert backups.newest(tmp_path) == tmp_path / "oca-france-recette-20261128T024000"
    assert backups.newest(tmp_path / "none") is None

    result = subprocess.run(
        ["python3", "-m", "oca_france_host.backups", "newest", str(tmp_path), PROD_DB],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(HOST_DIR / "lib")},
    )
    assert (result.returncode, result.stdout) == (0, f"{newer}\n")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("name", "/etc/passwd"),
        ("name", "../x"),
        ("name", "x\n"),
        ("name", None),
        ("dump", "/etc/passwd"),
        ("dump", "../x.dump"),
        ("dump", "x.dump\n"),
        ("dump", f"{PROD_DB}.sql"),
        ("dump_bytes", -1),
        ("dump_bytes", "1200"),
        ("filestore_files", 1.5),
        ("filestore_bytes", True),
        ("filestore_bytes", None),
        ("dump_sha256", "0" * 63),
    ],
)
def test_a_manifest_of_the_wrong_shape_is_refused(tmp_path, key, value):
    backup = write_backup(tmp_path, NAME)
    edit_manifest(backup, **{key: value})
    with pytest.raises(backups.BackupError, match=f"the manifest's {key}"):
        backups.read_manifest(backup)
    assert backups.problem(backup).startswith(f"the manifest's {key}")


def test_an_unreadable_manifest_is_refused(tmp_path):
    backup = write_backup(tmp_path, NAME)
    (backup / "manifest.json").write_text("[1, 2]")
    with pytest.raises(backups.BackupError, match="not a JSON object"):
        backups.read_manifest(backup)
    (backup / "manifest.json").write_text("{")
    with pytest.raises(backups.BackupError, match="unreadable manifest"):
        backups.read_manifest(backup)


def test_backup_verify_refuses_what_does_not_match_the_manifest(make_host):
    host = make_host("oca-france-recette", "debian-13")
    fake_pg_restore(host)
    backup = write_backup(host.root, NAME)
    dump_file = backup / f"{PROD_DB}.dump"
    dump = dump_file.read_bytes()

    def check() -> subprocess.CompletedProcess:
        return host.run("odoo-backup-verify", str(backup))

    assert check().returncode == 0, check().stderr
    assert check().stdout == f"{backup}: verified\n"
    dump_file.write_bytes(dump[:-100])  # cut off in transfer
    assert "bytes, the manifest says" in check().stderr
    dump_file.write_bytes(dump[:-1] + b"X")  # same size, altered
    assert "does not match its sha256" in check().stderr
    dump_file.write_bytes(dump)
    (backup / "filestore" / "ab" / "abcdef").unlink()
    assert "filestore/ab/abcdef is missing" in check().stderr
    (backup / "filestore" / "ab" / "abcdef").write_text("invoice\n")
    (backup / "filestore" / "ab" / "stray").write_text("?")
    assert "filestore/ab/stray is not in filestore.list" in check().stderr
    assert check().returncode == 1
    (backup / "filestore" / "ab" / "stray").unlink()
    assert check().returncode == 0
    # A dump made by a newer PostgreSQL: its checksums match, this host's pg_restore (15)
    # cannot read it; the header says who made it.
    dump_file.write_bytes(dump_header(1, 16, "17.6 (Debian 17.6-0+deb13u1)") * 40)
    backups.write_manifest(backup, PROD_DB, "0123456789abcdef", name=NAME)
    assert check().returncode == 1
    assert "was made by PostgreSQL 17 (17.6 (Debian 17.6-0+deb13u1))" in check().stderr
    assert " has 15 (15.18): its pg_restore cannot read it" in check().stderr
    assert "unsupported version (1.16) in file header" in check().stderr
    assert f"pg_restore --list {dump_file}" in host.logged()


def backing_up(make_host, pg_dump: str = ""):
    """prod, ready for odoo-backup: a checkout (its commit goes in the manifest), a
    filestore, pg_dump writing a dump (after `pg_dump`, a script), pg_restore reading it."""
    host = make_host("oca-france-prod")
    checkout = host.path("oca_france_dir")
    git("init", "-q", "-b", "18.0", cwd=checkout)
    git("commit", "-q", "--allow-empty", "-m", "release", cwd=checkout)
    attachment = host.path("filestore_root") / PROD_DB / "ab" / "abcdef"
    attachment.parent.mkdir(parents=True)
    attachment.write_text("invoice\n")
    dump = host.root / "dump"
    dump.write_bytes(DUMP)
    writes = f'for arg; do [[ $arg != --file=* ]] || cp "{dump}" "${{arg#--file=}}"; done'
    fake_pg_restore(host)
    # psql: the database's size (-c), or the session holding the dump's snapshot open (alive
    # while pg_dump runs, or the snapshot would be gone: the fake pg_dump checks).
    session = host.root / "psql-session"
    host.fake("pg_dump", f"[[ -f {session} ]] || exit 9\n{pg_dump}\n{writes}")
    host.fake(
        "psql",
        "for arg; do [[ $arg != -c ]] || { echo 1000; exit 0; }; done\n"
        f"touch {session}; trap 'rm -f {session}' EXIT\n"
        "while IFS= read -r line; do case $line in\n"
        "    *pg_export_snapshot*) echo 00000003-0000001B-1 ;;\n"
        '    *json_object_agg*) echo \'{ "res_partner" : 42, "ir_attachment" : 1 }\' ;;\n'
        "esac; done",
    )
    return host


def partials(host) -> list[str]:
    return [p.name for p in host.path("backup_dir").iterdir() if p.name.startswith(".partial-")]


def test_a_backup_killed_outright_leaves_nothing_after_the_next(make_host):
    host = backing_up(make_host)
    stale = host.path("backup_dir") / f".partial-{PROD_DB}-20261202T023000"
    (stale / "filestore").mkdir(parents=True)
    (stale / f"{PROD_DB}.dump").write_bytes(DUMP)  # what SIGKILL or a power cut left
    result = host.run("odoo-backup")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"removing {stale}, left by a backup that died" in result.stdout
    assert partials(host) == []
    assert len(backups.complete(host.path("backup_dir"))) == 1


def test_the_manifest_records_row_counts_from_the_dumps_own_snapshot(make_host):
    """The counts and the dump read one snapshot (exported by a transaction psql keeps open
    until pg_dump is done): the drill compares what it restores with them."""
    host = backing_up(make_host)
    result = host.run("odoo-backup")
    assert result.returncode == 0, result.stdout + result.stderr
    [made] = backups.complete(host.path("backup_dir"))
    assert backups.read_manifest(made)["row_counts"] == {"res_partner": 42, "ir_attachment": 1}
    [dump] = [call for call in host.logged() if call.startswith("pg_dump")]
    assert "--snapshot=00000003-0000001B-1" in dump


def test_a_stopped_backup_removes_its_partial_directory(make_host):
    """systemctl stop (or the shutdown) sends SIGTERM to the unit's processes: the dump is cut
    short, and the backup removes what it had written before it exits."""
    host = backing_up(make_host, pg_dump="sleep 30")
    backup = subprocess.Popen(
        [str(BIN / "odoo-backup")],
        env=host.env(),
        cwd=host.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while not any(call.startswith("pg_dump") for call in host.logged()):
        assert time.monotonic() < deadline and backup.poll() is None, backup.stdout.read()
        time.sleep(0.1)
    assert partials(host) != []  # the dump is being written in its partial directory
    os.killpg(backup.pid, signal.SIGTERM)  # as systemd does, to every process of the unit
    output = backup.communicate(timeout=30)[0]
    assert backup.returncode != 0
    assert "removing" in output and partials(host) == [], output


def test_a_backup_without_room_for_its_dump_writes_nothing(make_host):
    """Checked before the dump starts: the database's size plus the margin, on the backups'
    filesystem."""
    host = backing_up(make_host)
    host.fake("psql", "echo 999999999999999")  # a database bigger than any disk here
    result = host.run("odoo-backup")
    assert result.returncode == 1
    assert "not enough free disk for a backup of" in result.stderr
    assert "deploy_disk_margin_mib" in result.stderr
    assert not any(call.startswith("pg_dump") for call in host.logged())
    assert list(host.path("backup_dir").iterdir()) == []
