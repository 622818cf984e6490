"""The backup host's guard and rollback on a real borg repository (Debian's borg): prod's
side reaches it through `borg serve --append-only`, as its forced command does, over a local
pipe instead of SSH."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import shlex
import signal
import subprocess
import tarfile
import time
from datetime import datetime
from pathlib import Path

import pytest
from oca_france_host import borg

from tasks.paths import offsite_compacting_marker, offsite_writes_lock
from tasks.render import backup_host_config, offsite_forced_command

from .conftest import (
    PROD_DB,
    Host,
    edit_manifest,
    fake_pg_restore,
    moved_config,
    release_data,
    stamp,
    write_backup,
)

PASSPHRASE = "real-borg-passphrase-3a9c"


@pytest.fixture
def real(unit_inventory, tmp_path, make_host):
    """The backup host's config and repository (created by odoo-offsite --init), and prod:
    a borg client whose "ssh" runs the forced command."""
    data = release_data(unit_inventory, "oca-france-backup", "debian-13")
    root = tmp_path / "backup"
    root.mkdir()
    config = moved_config(backup_host_config(data), root)
    moved_keys = ("offsite_state_dir", "offsite_writes_lock", "offsite_compacting")
    for key in ("offsite_repository", *moved_keys):
        config[key] = f"{root}{config[key]}"
    Path(config["offsite_state_dir"]).mkdir(parents=True)
    Path(config["offsite_repository"]).parent.mkdir(parents=True)
    host = Host(root, config)
    credentials = root / "credentials"
    credentials.mkdir()
    (credentials / config["offsite_credential"]).write_text(PASSPHRASE + "\n")
    home = root / "home"
    home.mkdir()

    def offsite(*args):
        return host.run(
            "odoo-offsite", *args, CREDENTIALS_DIRECTORY=str(credentials), HOME=str(home)
        )

    assert offsite("--init").returncode == 0
    offsite.host = host
    repository = config["offsite_repository"]
    serve = tmp_path / "forced-command"
    # The forced command as rendered, its paths moved here, waiting 2 s for the prune.
    moved = {
        data.offsite_repository: repository,
        offsite_writes_lock(data): config["offsite_writes_lock"],
        offsite_compacting_marker(data): config["offsite_compacting"],
        f"--wait={data.offsite_lock_wait_sec}": "--wait=2",
    }
    forced = []
    for arg in offsite_forced_command(data):
        for rendered, here in moved.items():
            arg = arg.replace(rendered, here)
        forced.append(arg)
    assert forced[-1].endswith(repository) and "--wait=2" in forced
    serve.write_text(f"#!/bin/sh\nexec env HOME={home} {shlex.join(forced)}\n")
    serve.chmod(0o755)
    prod_home = tmp_path / "prod"
    (prod_home / "data").mkdir(parents=True)

    def prod(*args, env=None):
        (prod_home / "pass").write_text(PASSPHRASE)
        return subprocess.run(
            ["borg", *args],
            cwd=prod_home / "data",
            capture_output=True,
            text=True,
            env={
                **os.environ,
                "HOME": str(prod_home),
                "BORG_RSH": str(serve),
                "BORG_REPO": f"ssh://borg@backup.test{repository}",
                "BORG_PASSCOMMAND": f"cat {prod_home / 'pass'}",
                **(env or {}),
            },
        )

    def push(name: str) -> None:
        (prod_home / "data" / name).write_text(f"backup {name}\n")
        done = prod("create", f"::{name}", ".")
        assert done.returncode == 0, done.stderr

    prod_config = make_host("oca-france-prod")
    prod_config.config["offsite_repository_url"] = f"ssh://borg@backup.test{repository}"
    prod_config.write_config()
    prod.data = prod_home / "data"
    prod.host, prod.home, prod.serve = prod_config, prod_home, serve
    prod.after_rollback = lambda: prod_config.run(
        "odoo-offsite-push", "--after-rollback", HOME=str(prod_home)
    )
    return offsite, prod, push, Path(config["offsite_state_dir"])


def test_a_delete_through_the_append_only_key_trips_the_guard_and_rolls_back(real):
    offsite, prod, push, state = real
    for name in ("day-1", "day-2"):
        push(name)
    first = offsite("--prune")
    assert first.returncode == 0, first.stdout + first.stderr
    seen = json.loads((state / "seen.json").read_text())
    # borg keeps the oldest too while it has fewer days than keep-daily: nothing pruned yet.
    assert list(seen["archives"]) == ["day-1", "day-2"]
    push("day-3")
    # Through prod's key: the archive is gone from the listing, the data only in the log.
    assert prod("delete", "::day-2").returncode == 0
    assert prod("list", "--short").stdout.split() == ["day-1", "day-3"]
    tripped = offsite("--prune")
    assert tripped.returncode == 1
    assert "gone or replaced that this host did not prune: day-2" in tripped.stderr
    # The transactions, the last this host made marked; back to the one before the delete:
    # day-3's push stays.
    listed = offsite("--transactions")
    assert listed.returncode == 0
    own = seen["transaction"]
    assert f"{own:>8}  " in listed.stdout and "<- the last this host made" in listed.stdout
    later = [int(line.split()[0]) for line in listed.stdout.splitlines()]
    push_of_day_3, delete = later[-2], later[-1]
    assert offsite("--rollback", str(own - 1)).returncode == 2  # never past its own
    rolled = offsite("--rollback", str(push_of_day_3))
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert f"undid {delete}" in rolled.stdout
    assert "3 archive(s): day-1, day-2, day-3" in rolled.stdout
    # prod's borg refuses a repository older than it saw, until its operator says so (README).
    refused = prod("list", "--short")
    assert refused.returncode != 0 and "newer than repository" in refused.stderr
    told = prod.after_rollback()
    assert told.returncode == 0 and "pushes resume" in told.stdout, told.stdout + told.stderr
    assert prod("list", "--short").stdout.split() == ["day-1", "day-2", "day-3"]
    again = offsite("--prune")
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_delete_right_after_a_prune_rolls_back_to_the_prune_and_keeps_every_archive(real):
    """The backup host's prune and compact are not in borg's transaction log (only append-only
    commits are), yet the compact moved live data past prod's last transaction: the rollback
    goes back to the compact's own transaction, never to prod's before it."""
    offsite, prod, push, state = real
    host = offsite.host
    host.config.update(offsite_keep_daily=2, offsite_keep_weekly=0, offsite_keep_monthly=0)
    host.write_config()
    for name in ("day-1", "day-2", "day-3"):
        push(name)
    # One day's newest, and the oldest while there are fewer days than kept: day-2 pruned.
    pruned = offsite("--prune")
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert "pruned 1 archive(s) (day-2)" in pruned.stdout
    assert prod("delete", "::day-3").returncode == 0
    assert offsite("--prune").returncode == 1  # the guard
    listed = offsite("--transactions").stdout.splitlines()
    own = next(line for line in listed if "<- the last this host made" in line)
    assert listed[-2] == own  # prod's delete is the only one after it
    rolled = offsite("--rollback", own.split()[0])
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert "2 archive(s): day-1, day-3" in rolled.stdout
    assert prod.after_rollback().returncode == 0
    for name in ("day-1", "day-3"):  # every chunk read back
        extracted = prod("extract", "--dry-run", f"::{name}")
        assert extracted.returncode == 0, extracted.stderr
    checked = prod("check", "--verify-data")
    assert checked.returncode == 0, checked.stdout + checked.stderr


# The backup host's borg, its compact dying once the segments are moved and the old ones
# deleted, before it writes the index (a power cut, an OOM kill at the worst moment).
COMPACT_DIES_BEFORE_ITS_INDEX = """#!/usr/bin/python3
import os, sys
from borg.archiver import main
from borg.repository import Repository

if sys.argv[1] == "compact":
    Repository.write_index = lambda self: os._exit(9)
sys.exit(main())
"""


def test_a_compact_that_died_keeps_prods_key_out_until_the_next_prune_finishes_it(real, tmp_path):
    """What a compact moves lives only in its own commits until it is done: a rollback to the
    prune's transaction would delete it. Until a compact that died is finished, prod's key
    may write nothing (its forced command refuses) and no rollback runs; the next prune
    finishes it first, and its transaction is then the rollback's floor."""
    offsite, prod, push, state = real
    host = offsite.host
    host.config.update(
        offsite_keep_daily=2, offsite_keep_weekly=0, offsite_keep_monthly=0, offsite_lock_wait_sec=5
    )
    host.write_config()
    for name in ("day-1", "day-2", "day-3"):
        push(name)
    dying = tmp_path / "dying"
    dying.mkdir()
    (dying / "borg").write_text(COMPACT_DIES_BEFORE_ITS_INDEX)
    (dying / "borg").chmod(0o755)
    died = host.run(
        "odoo-offsite",
        "--prune",
        CREDENTIALS_DIRECTORY=str(host.root / "credentials"),
        HOME=str(host.root / "home"),
        PATH=f"{dying}:{os.environ['PATH']}",
    )
    assert died.returncode != 0 and "borg compact failed" in died.stderr, died.stderr
    assert Path(host.config["offsite_compacting"]).exists()
    (prod.data / "day-4").write_text("backup day-4\n")
    assert prod("create", "::day-4", ".").returncode != 0  # kept out
    own = json.loads((state / "seen.json").read_text())["transaction"]
    refused = offsite("--rollback", str(own))
    assert refused.returncode == 2 and "the last compact did not finish" in refused.stderr
    finished = offsite("--prune")
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "the last compact did not finish (prod's key kept out since)" in finished.stdout
    assert not Path(host.config["offsite_compacting"]).exists()
    push("day-4")
    assert prod("delete", "::day-3").returncode == 0
    assert offsite("--prune").returncode == 1  # the guard
    listed = offsite("--transactions").stdout.splitlines()
    assert "<- the last this host made" in listed[-3]  # the compact it finished, then prod's
    assert offsite("--rollback", str(own)).returncode == 2  # never before it
    rolled = offsite("--rollback", listed[-2].split()[0])  # day-4's push: the delete undone
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert "3 archive(s): day-1, day-3, day-4" in rolled.stdout
    assert prod.after_rollback().returncode == 0
    for name in ("day-1", "day-3", "day-4"):  # every chunk read back
        extracted = prod("extract", "--dry-run", f"::{name}")
        assert extracted.returncode == 0, extracted.stderr
    assert prod("check", "--verify-data").returncode == 0


def test_an_unfinished_segment_after_the_last_commit_trips_nothing(real):
    """A push cut by a power cut may leave an empty or half-written segment after the last
    commit: borg ignores it, and so does the guard; one a commit follows is damage."""
    offsite, prod, push, state = real
    push("day-1")
    assert offsite("--prune").returncode == 0
    push("day-2")
    data = Path(offsite.host.config["offsite_repository"], "data", "0")
    last = max(int(p.name) for p in data.iterdir())
    (data / str(last + 1)).write_bytes(b"")
    passed = offsite("--prune")
    assert passed.returncode == 0, passed.stdout + passed.stderr


def test_an_archive_pushed_then_deleted_between_two_prunes_trips_the_guard(real):
    """Never seen by the guard, yet gone: prod's log says a transaction added no archive."""
    offsite, prod, push, state = real
    push("day-1")
    assert offsite("--prune").returncode == 0
    push("day-2")
    assert prod("delete", "::day-2").returncode == 0
    tripped = offsite("--prune")
    assert tripped.returncode == 1
    assert "prod committed 2 transaction(s) since the last run" in tripped.stderr
    assert "and added 0 archive(s)" in tripped.stderr
    # Back to the backup host's own last transaction: day-2 is there again.
    own = next(
        line.split()[0]
        for line in offsite("--transactions").stdout.splitlines()
        if "<- the last this host made" in line
    )
    rolled = offsite("--rollback", own)
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert "1 archive(s): day-1" in rolled.stdout  # both undone: the push, then the delete
    assert prod.after_rollback().returncode == 0
    push("day-2")  # pushed again, as the next push would
    again = offsite("--prune")
    assert again.returncode == 0, again.stdout + again.stderr


# A client of its own on prod (borg's code, as an attacker holding prod's key would run it):
# today's push, with one object of an older archive deleted in the same transaction, so that
# prod's commits and the archives they added still tally.
RAW_DELETE_IN_A_PUSH = """#!/usr/bin/python3
import os, sys
from borg import remote
from borg.archiver import main

commit = remote.RemoteRepository.commit


def commit_with_a_delete(self, *args, **kwargs):
    self.delete(bytes.fromhex(os.environ["VICTIM_CHUNK"]))
    return commit(self, *args, **kwargs)


remote.RemoteRepository.commit = commit_with_a_delete
sys.exit(main())
"""


def test_a_raw_delete_of_archive_data_through_prods_key_trips_the_guard(real, tmp_path):
    """borg serve --append-only takes a raw delete of one object: every archive stays listed
    while its data would go at the next compact. The guard reads prod's committed deletes in
    the segments, whatever the transaction also added."""
    offsite, prod, push, state = real
    push("day-1")
    assert offsite("--prune").returncode == 0
    dumped = prod.home / "day-1.json"
    assert prod("debug", "dump-archive", "::day-1", str(dumped)).returncode == 0
    items = json.loads(dumped.read_text())["_items"]
    chunk = next(item["chunks"][0][0] for item in items if item.get("chunks")).lstrip("\x7f")
    attacker = tmp_path / "attacker"
    attacker.mkdir()
    (attacker / "borg").write_text(RAW_DELETE_IN_A_PUSH)
    (attacker / "borg").chmod(0o755)
    (prod.data / "day-2").write_text("backup day-2\n")
    pushed = prod(
        "create",
        "::day-2",
        ".",
        env={"PATH": f"{attacker}:{os.environ['PATH']}", "VICTIM_CHUNK": chunk},
    )
    assert pushed.returncode == 0, pushed.stderr
    assert prod("list", "--short").stdout.split() == ["day-1", "day-2"]  # still listed
    assert prod("extract", "--dry-run", "::day-1").returncode != 0  # its data gone
    tripped = offsite("--prune")
    assert tripped.returncode == 1
    assert "prod's key deleted or overwrote 1 object(s) of the repository" in tripped.stderr
    assert "nothing pruned nor compacted" in tripped.stderr
    # Back to the backup host's own transaction: day-1 reads whole again.
    own = json.loads((state / "seen.json").read_text())["transaction"]
    rolled = offsite("--rollback", str(own))
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert prod.after_rollback().returncode == 0
    assert prod("extract", "--dry-run", "::day-1").returncode == 0
    push("day-2")
    again = offsite("--prune")
    assert again.returncode == 0, again.stdout + again.stderr


@contextlib.contextmanager
def held(lock: str, how: int):
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, how)
        yield
    finally:
        os.close(fd)


def test_prods_key_waits_while_the_prune_runs_and_the_prune_for_a_running_push(real):
    """Nothing prod commits may land between the guard and the compact: its forced command
    takes the prune's lock shared (flock), the prune takes it exclusive."""
    offsite, prod, push, state = real
    push("day-1")
    lock = offsite.host.config["offsite_writes_lock"]
    with held(lock, fcntl.LOCK_EX):  # as the prune holds it
        (prod.data / "day-2").write_text("backup day-2\n")
        waited = prod("create", "::day-2", ".")
        assert waited.returncode != 0
        assert "guarded prune held the repository" in borg.cause(waited.stderr)
    push("day-2")  # the prune done: pushes go on
    offsite.host.config["offsite_lock_wait_sec"] = 1
    offsite.host.write_config()
    with held(lock, fcntl.LOCK_SH):  # as a push's borg serve holds it
        busy = offsite("--prune")
        assert busy.returncode != 0
        assert "prod's key kept the repository busy" in busy.stderr
        last = json.loads((state / "last-prune.json").read_text())
        assert last["result"] == "failed" and "kept the repository busy" in last["error"]
    assert prod("list", "--short").stdout.split() == ["day-1", "day-2"]
    done = offsite("--prune")
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_key_replaced_through_prods_key_trips_the_guard_and_the_copy_puts_it_back(real):
    """borg serve lets an append-only client rewrite the repository's key: every archive would
    read with the attacker's passphrase only. The backup host keeps the key as --init made it."""
    offsite, prod, push, state = real
    push("day-1")
    assert offsite("--prune").returncode == 0
    changed = prod("key", "change-passphrase", env={"BORG_NEW_PASSPHRASE": "attacker"})
    assert changed.returncode == 0, changed.stderr  # borg serve --append-only lets it through
    tripped = offsite("--prune")
    assert tripped.returncode == 1
    copy = state / "repository-key"
    assert "the repository's key was replaced" in tripped.stderr
    repository = offsite.host.config["offsite_repository"]
    assert f"borg key import {repository} {copy}" in tripped.stderr
    assert oct(copy.stat().st_mode & 0o777) == "0o600"
    put_back = subprocess.run(
        ["borg", "key", "import", repository, str(copy)],
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": str(offsite.host.root / "home")},  # the backup host's
    )
    assert put_back.returncode == 0, put_back.stderr
    again = offsite("--prune")
    assert again.returncode == 0, again.stdout + again.stderr


def drill_host(offsite) -> Path:
    """The backup host's drill with PostgreSQL's tools faked; the file its psql answers the
    restored row counts from."""
    host = offsite.host
    host.config["offsite_drill_dir"] = str(host.root / "drill")
    host.write_config()
    for tool in ("createdb", "dropdb"):
        host.fake(tool, "exit 0")
    fake_pg_restore(host)
    restored = host.root / "restored.json"
    restored.write_text('{ "res_partner" : 3 }')
    host.fake("psql", f"cat {restored}")
    return restored


def corrupt_largest_segment(repository: str) -> None:
    segments = sorted(
        (p for p in Path(repository, "data").rglob("[0-9]*") if p.is_file()),
        key=lambda p: p.stat().st_size,
    )
    corrupted = segments[-1]
    content = bytearray(corrupted.read_bytes())
    middle = len(content) // 2
    content[middle : middle + 16] = bytes(16)
    corrupted.write_bytes(bytes(content))


def test_the_drill_restores_the_newest_archive_and_fails_loudly_when_corrupted(real):
    """Real borg extracts and checks; PostgreSQL's tools are faked (the end-to-end drill
    restores real Odoo): the restore's row counts against the manifest's."""
    offsite, prod, push, state = real
    host = offsite.host
    restored = drill_host(offsite)
    push("day-1")  # an older archive: the drill takes the newest
    (prod.data / "day-1").unlink()
    write_backup(prod.data.parent, "data", files={"ab/abcdef": "invoice\n", "cd/cdef": "x\n"})
    edit_manifest(prod.data, row_counts={"res_partner": 3})
    assert prod("create", "::day-2", ".").returncode == 0

    first = offsite("--drill")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "drill: 2 attachments match their sha256" in first.stdout
    assert "drill: borg check --verify-data" in first.stdout  # never done yet: due
    drilled = json.loads((state / "last-drill.json").read_text())
    assert (drilled["result"], drilled["archive"]) == ("success", "day-2")
    assert drilled["row_counts"] == {"res_partner": 3}
    assert drilled["verify_data_time"] == drilled["time"]
    assert not (host.root / "drill" / "archive").exists()  # the scratch is removed
    logged = host.logged()
    assert any(c.startswith("pg_restore --no-owner") and "-d oca_france_drill" in c for c in logged)
    assert any(c.startswith("psql") and "-d oca_france_drill" in c for c in logged)
    second = offsite("--drill")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "drill: borg check\n" in second.stdout  # data verified a moment ago: not due

    restored.write_text('{ "res_partner" : 2 }')  # a restore that lost a row
    short = offsite("--drill")
    assert short.returncode == 1
    assert "res_partner: 2 restored, 3 recorded" in short.stderr
    restored.write_text('{ "res_partner" : 3 }')

    corrupt_largest_segment(host.config["offsite_repository"])  # the archives' data
    failed = offsite("--drill")
    assert failed.returncode == 1
    assert "DRILL FAILED" in failed.stderr
    last = json.loads((state / "last-drill.json").read_text())
    assert last["result"] == "failed" and last["error"]
    host.fake("systemctl", "exit 0")
    status = host.run("odoo-status")
    assert status.returncode == 1 and "the last drill failed" in status.stdout


def test_an_archive_made_to_write_outside_its_extract_fails_the_drill_and_writes_nothing(
    real, tmp_path
):
    """An archive is what prod's key wrote: one crafted (a symlink to outside, then a file
    below it) made `borg extract` write through the link (CVE-2026-62268: on the backup
    host, as the repository's owner). The drill unpacks borg's tar stream itself."""
    offsite, prod, push, state = real
    drill_host(offsite)
    push("day-1")
    outside = tmp_path / "outside"  # stands for the repository, ~borg/.ssh...
    outside.mkdir()
    crafted = prod.home / "crafted.tar"
    with tarfile.open(crafted, "w") as tar:
        link = tarfile.TarInfo("filestore")
        link.type, link.linkname = tarfile.SYMTYPE, str(outside)
        tar.addfile(link)
        planted = tarfile.TarInfo("filestore/planted")
        planted.size = 8
        tar.addfile(planted, io.BytesIO(b"planted\n"))
    assert prod("import-tar", "::day-2", str(crafted)).returncode == 0
    failed = offsite("--drill")
    assert failed.returncode == 1
    assert "DRILL FAILED" in failed.stderr
    assert "'filestore': a symbolic link" in failed.stderr
    assert list(outside.iterdir()) == []


def test_damage_in_an_older_archive_fails_the_drill_at_borg_check(real):
    """The newest archive restores fine; an older one's data is damaged: borg check says so
    (its exit status 1), and the drill fails on it."""
    offsite, prod, push, state = real
    drill_host(offsite)
    (prod.data / "scan.pdf").write_bytes(os.urandom(1 << 20))  # day-1's own segment
    push("day-1")
    (prod.data / "scan.pdf").unlink()
    (prod.data / "day-1").unlink()
    write_backup(prod.data.parent, "data", files={"ab/abcdef": "invoice\n"})
    edit_manifest(prod.data, row_counts={"res_partner": 3})
    assert prod("create", "::day-2", ".").returncode == 0
    first = offsite("--drill")
    assert first.returncode == 0, first.stdout + first.stderr
    corrupt_largest_segment(offsite.host.config["offsite_repository"])
    failed = offsite("--drill")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "drill: 1 attachments match their sha256" in failed.stdout  # day-2 restored
    assert "borg check found damage" in failed.stderr, failed.stderr
    assert json.loads((state / "last-drill.json").read_text())["result"] == "failed"


def test_a_backup_that_recorded_no_row_counts_fails_the_drill(real):
    """Nothing to compare is not a pass: none of backup_counted_tables existed on prod."""
    offsite, prod, push, state = real
    drill_host(offsite)
    (prod.data.parent / "data").rmdir()
    write_backup(prod.data.parent, "data", files={"ab/abcdef": "invoice\n"})
    edit_manifest(prod.data, row_counts={})
    assert prod("create", "::day-1", ".").returncode == 0
    failed = offsite("--drill")
    assert failed.returncode == 1
    assert "manifest holds no row counts to compare" in failed.stderr, failed.stderr


# --- prod's push on the real repository: each cause named, nothing lost


@pytest.fixture
def pushing(real):
    """odoo-offsite-push as prod runs it, once (no retry), its ssh the forced command; a
    complete backup to push."""
    offsite, prod, _, _ = real
    host = prod.host
    host.config.update(offsite_push_retries=0, offsite_lock_wait_sec=1)
    host.write_config()
    passphrase = host.path("offsite_passphrase_file")
    passphrase.parent.mkdir(parents=True, exist_ok=True)
    passphrase.write_text(PASSPHRASE + "\n")
    host.path("offsite_push_state_file").parent.mkdir(parents=True, exist_ok=True)
    host.fake("ssh", f"exec {prod.serve}")
    backup = write_backup(host.path("backup_dir"), f"{PROD_DB}-{stamp(datetime.now())}")

    def run():
        done = host.run("odoo-offsite-push", HOME=str(prod.home))
        state = json.loads(host.path("offsite_push_state_file").read_text())
        return done, state

    run.host, run.backup, run.passphrase = host, backup, passphrase
    run.repository = Path(offsite.host.config["offsite_repository"])
    return run


def holding_the_lock(repository: Path) -> subprocess.Popen:
    """A borg on the backup host holding the repository's lock (a prune, a drill)."""
    holder = subprocess.Popen(
        ["borg", "with-lock", str(repository), "sleep", "120"], start_new_session=True
    )
    for _ in range(100):
        if (repository / "lock.exclusive").exists():
            return holder
        time.sleep(0.1)
    os.killpg(holder.pid, signal.SIGKILL)
    raise AssertionError("borg with-lock never took the lock")


def test_each_failed_push_names_its_cause_and_keeps_the_backup(pushing):
    backup = pushing.backup
    pushing.passphrase.write_text("not-the-passphrase\n")
    done, state = pushing()
    assert done.returncode == 1
    assert "wrong passphrase" in done.stderr and "not-the-passphrase" not in done.stderr
    assert state["result"] == "failed" and "wrong passphrase" in state["error"]
    pushing.passphrase.write_text(PASSPHRASE + "\n")

    holder = holding_the_lock(pushing.repository)
    try:
        done, state = pushing()
        assert done.returncode == 1
        assert "the repository is locked" in done.stderr, done.stderr
        # The borg holding it killed: its lock stays in the repository, a dead process's, which
        # borg on the same host breaks (its pid is gone): the push goes through.
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
        assert (pushing.repository / "lock.exclusive").exists()
        done, state = pushing()
        assert done.returncode == 0, done.stdout + done.stderr
        assert (state["result"], state["archive"]) == ("success", backup.name)
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)

    # A backup host that does not answer: real ssh to a closed port.
    pushing.host.fakes.joinpath("ssh").unlink()
    url = pushing.host.config["offsite_repository_url"]
    pushing.host.config["offsite_repository_url"] = f"ssh://borg@127.0.0.1:1{pushing.repository}"
    pushing.host.write_config()
    done, state = pushing()
    assert done.returncode == 1
    assert "the backup host refused the connection" in done.stderr, done.stderr
    assert state["last_success"]  # the earlier push still counts for status
    pushing.host.config["offsite_repository_url"] = url
    assert (backup / f"{PROD_DB}.dump").exists()  # a failed push never touches the backup


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs as the backup host's disk")
def test_a_full_backup_disk_fails_the_push_clearly_and_the_repository_takes_the_next(pushing):
    repository = pushing.repository
    # The repository moved onto a 16 MiB disk; the backup holds 24 MiB that do not compress.
    moved = repository.with_name("on-disk")
    moved.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(moved)], check=True)
    try:
        subprocess.run(["cp", "-a", f"{repository}/.", str(moved)], check=True)
        subprocess.run(["mount", "--bind", str(moved), str(repository)], check=True)
        try:
            filestore = pushing.backup / "filestore" / "ef"
            filestore.mkdir()
            (filestore / "scan.pdf").write_bytes(os.urandom(24 << 20))
            done, state = pushing()
            assert done.returncode == 1
            assert "disk is full" in done.stderr, done.stderr
            assert state["result"] == "failed"
            assert (pushing.backup / f"{PROD_DB}.dump").exists()
            # Space given back: the next push stores it whole, the failed one left no damage.
            subprocess.run(["mount", "-o", "remount,size=96m", str(moved)], check=True)
            done, state = pushing()
            assert done.returncode == 0, done.stdout + done.stderr
            listed = subprocess.run(
                ["borg", "check", "--repository-only", str(repository)],
                capture_output=True,
                text=True,
            )
            assert listed.returncode == 0, listed.stderr
        finally:
            subprocess.run(["umount", str(repository)], check=False)
    finally:
        subprocess.run(["umount", str(moved)], check=False)
