"""odoo-production-data-receive (recette): prod's key writes into incoming/ under its size
limit, one session at a time with the acceptance's copy. rrsync is a fake here that writes
what a session would; the real one is tried through the key in tests/e2e/test_6_transfer.py."""

from __future__ import annotations

import fcntl
import threading
import time

import pytest

MIB = 2**20


@pytest.fixture
def recette(make_host):
    host = make_host("oca-france-recette")
    host.config["production_data_incoming_limit_mib"] = 4
    host.config["receive_command"] = ["rrsync", "-wo", "-munge", str(host.path("incoming_dir"))]
    host.write_config()
    return host


def session(host, script: str, **env: str):
    """A transfer session whose rsync runs `script` in the incoming directory (as rsync, it
    exits 11 when a write fails)."""
    host.fake("rrsync", f'cd "${{@: -1}}"\n{script}')
    return host.run("odoo-production-data-receive", SSH_ORIGINAL_COMMAND="rsync --server", **env)


def sizes(directory) -> dict[str, int]:
    return {str(p.relative_to(directory)): p.stat().st_size for p in directory.rglob("*")}


def test_a_delivery_within_the_limit_is_written_as_rsync_asked(recette):
    result = session(
        recette,
        'echo "$SSH_ORIGINAL_COMMAND" > asked\nhead -c 1000000 /dev/urandom > big.dump || exit 11',
    )
    assert result.returncode == 0, result.stderr
    incoming = recette.path("incoming_dir")
    assert (incoming / "asked").read_text() == "rsync --server\n"
    assert sizes(incoming)["big.dump"] == 1000000
    assert "rrsync -wo -munge " + str(incoming) in recette.logged()


def test_rsyncs_own_failure_is_passed_on(recette):
    result = session(recette, "exit 23")
    assert result.returncode == 23
    assert "refused" not in result.stderr


def test_a_file_larger_than_the_room_left_is_cut_by_the_kernel_and_refused(recette):
    incoming = recette.path("incoming_dir")
    (incoming / "yesterday.dump").write_bytes(b"x" * MIB)  # the room left: under 3 MiB
    result = session(recette, "head -c 8000000 /dev/zero > big.dump || exit 11")
    assert result.returncode == 1
    assert "delivery refused" in result.stderr
    assert "(4.0 MiB, production_data_incoming_limit_mib on recette)" in result.stderr
    assert list(incoming.iterdir()) == []  # emptied: the disk is given back


def test_many_files_that_add_up_past_the_limit_stop_the_session(recette):
    """Each file under the room left, together over it: stopped within a second or so."""
    finished = recette.root / "finished"
    result = session(
        recette,
        "for i in $(seq 1 40); do head -c 500000 /dev/urandom > f$i; sleep 0.1; done\n"
        f"touch {finished}",
    )
    assert result.returncode == 1
    assert "delivery refused" in result.stderr
    assert list(recette.path("incoming_dir").iterdir()) == []
    assert not finished.exists()  # stopped, not let run to its end


def test_space_freed_elsewhere_meanwhile_does_not_hide_the_growth(recette):
    """Another writer on the filesystem (PostgreSQL's vacuum, a prune) frees more than the
    session writes: the filesystem's count goes down, the directory is walked all the same."""
    elsewhere = recette.root / "vacuumed"
    elsewhere.mkdir()
    for i in range(1, 41):
        (elsewhere / str(i)).write_bytes(b"x" * 2 * MIB)
    finished = recette.root / "finished"
    result = session(
        recette,
        "for i in $(seq 1 40); do\n"
        f"    rm {elsewhere}/$i; head -c 500000 /dev/urandom > f$i; sync; sleep 0.1\n"
        f"done\ntouch {finished}",
    )
    assert result.returncode == 1
    assert "delivery refused" in result.stderr
    assert not finished.exists()


def test_many_empty_files_count_too(recette):
    """Each file takes a block at least: an inode flood is bounded by the same limit."""
    result = session(recette, "mkdir d && cd d && touch $(seq 1 2000)")
    assert result.returncode == 1
    assert "delivery refused" in result.stderr


def test_a_directory_over_a_lowered_limit_is_emptied_first(recette):
    incoming = recette.path("incoming_dir")
    (incoming / "old.dump").write_bytes(b"x" * 5 * MIB)
    result = session(recette, "echo new > new.dump")
    assert result.returncode == 0, result.stderr
    assert "over its 4.0 MiB: emptied first" in result.stderr
    assert sorted(p.name for p in incoming.iterdir()) == ["new.dump"]


def test_a_session_waits_for_the_acceptances_copy_then_writes(recette):
    lock_file = recette.config["incoming_lock_file"]
    held = open(lock_file, "a")  # noqa: SIM115
    fcntl.flock(held, fcntl.LOCK_EX)
    threading.Timer(2, held.close).start()  # the acceptance's copy is done
    started = time.monotonic()
    result = session(recette, "touch written")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started >= 2
    assert "is held (a deploy, a backup or a repair): waiting up to 900s" in result.stderr
    assert (recette.path("incoming_dir") / "written").exists()


def test_a_session_holds_the_lock_the_acceptance_takes(recette):
    lock_file = recette.config["incoming_lock_file"]
    result = session(recette, f"flock -n {lock_file} true && touch unlocked\ntrue")
    assert result.returncode == 0, result.stderr
    assert not (recette.path("incoming_dir") / "unlocked").exists()


def test_a_session_that_cannot_get_the_lock_says_why(recette):
    recette.config["production_data_incoming_lock_wait_sec"] = 1
    recette.write_config()
    with open(recette.config["incoming_lock_file"], "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = session(recette, "touch written")
    assert result.returncode == 1
    assert "recette is still accepting the previous delivery" in result.stderr
    assert not (recette.path("incoming_dir") / "written").exists()
