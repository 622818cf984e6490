"""The off-site copies' host programs with a fake borg at the runner's seam: prod's push
(odoo-offsite-push) and the backup host's guarded prune (odoo-offsite --prune)."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tasks.render import backup_host_config

from .conftest import BIN, PROD_DB, Host, moved_config, release_data, stamp, write_backup

# A fake borg: the repository is a JSON file of archives ({name, start}); what each call got
# (arguments, the passphrase command, the working directory) is logged beside it.
FAKE_BORG = r"""
import json, os, sys
from datetime import datetime
repo = os.environ["FAKE_REPO"]
archives = json.load(open(repo)) if os.path.exists(repo) else []
with open(repo + ".calls", "a") as log:
    log.write(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(),
                          "passcommand": os.environ.get("BORG_PASSCOMMAND"),
                          "repo": os.environ.get("BORG_REPO")}) + "\n")
fail = os.environ.get("FAKE_FAIL", "")
if fail and os.environ.get("FAKE_FAIL_ON", sys.argv[1]) == sys.argv[1]:
    print(fail, file=sys.stderr)
    sys.exit(2)
command = sys.argv[1]
def ident(name):  # an archive's id: 64 hex digits, one per name (REPLACED: another one)
    import hashlib
    replaced = name in os.environ.get("FAKE_REPLACED", "").split()
    return hashlib.sha256((name + ("-again" if replaced else "")).encode()).hexdigest()
if command == "list":
    print(json.dumps({"archives": [dict(a, id=ident(a["name"])) for a in archives]}))
elif command == "create":
    name = sys.argv[-2].removeprefix("::")
    archives.append({"name": name, "start": datetime.now().isoformat()})
    print(json.dumps({"archive": {"name": name, "stats": {"original_size": 3000,
                      "compressed_size": 2000, "deduplicated_size": 1000}}}))
elif command == "export-tar":  # the archive's files, from FAKE_EXTRACT_FROM/<name>/, a tar
    import tarfile
    name = sys.argv[-2].removeprefix("::")
    if os.environ.get("FAKE_KILLED_MIDWAY"):  # half a member, then the OOM killer
        import io, signal
        half = tarfile.TarInfo("dump.pgdump")
        half.size = 1 << 20
        sys.stdout.buffer.write(half.tobuf() + bytes(4096))
        sys.stdout.buffer.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    with tarfile.open(fileobj=sys.stdout.buffer, mode="w|") as tar:
        tar.add(os.path.join(os.environ["FAKE_EXTRACT_FROM"], name), arcname=".")
elif command == "prune":
    gone = set(os.environ.get("FAKE_PRUNES", "").split())
    for a in archives:
        if a["name"] in gone:
            print(f"Pruning archive (1/1): {a['name']}  Thu, 2026-12-03 [{ident(a['name'])}]",
                  file=sys.stderr)
    archives = [a for a in archives if a["name"] not in gone]
json.dump(archives, open(repo, "w"))
"""


class Repository:
    def __init__(self, path: Path):
        self.path = path

    def set(self, *archives: tuple[str, datetime]) -> None:
        self.path.write_text(json.dumps([{"name": n, "start": t.isoformat()} for n, t in archives]))

    def names(self) -> list[str]:
        return [a["name"] for a in json.loads(self.path.read_text())]

    def calls(self) -> list[dict]:
        calls = self.path.with_name(self.path.name + ".calls")
        return [json.loads(line) for line in calls.read_text().splitlines()]

    def commands(self) -> list[str]:
        return [call["argv"][0] for call in self.calls()]


def with_fake_borg(host: Host) -> Repository:
    script = host.root / "fake_borg.py"
    script.write_text(FAKE_BORG)
    host.fake("borg", f'exec python3 {script} "$@"')
    return Repository(host.root / "repository.json")


@pytest.fixture
def backup_host(unit_inventory, tmp_path):
    data = release_data(unit_inventory, "oca-france-backup", "debian-13")
    root = tmp_path / "backup"
    root.mkdir()
    config = moved_config(backup_host_config(data), root)
    moved_keys = ("offsite_state_dir", "offsite_writes_lock", "offsite_compacting")
    for key in ("offsite_repository", *moved_keys):
        config[key] = f"{root}{config[key]}"
    for key in ("offsite_repository", "offsite_state_dir"):
        Path(config[key]).mkdir(parents=True)
    config["disk_watched_paths"] = [str(root)]
    # What borg init writes there: the guard keeps a copy of the key.
    Path(config["offsite_repository"], "config").write_text(
        "[repository]\nid = 0123abcd\nkey = a2V5IGJsb2I=\n"
    )
    host = Host(root, config)
    credentials = root / "credentials"
    credentials.mkdir()
    (credentials / config["offsite_credential"]).write_text("the-passphrase-7d1e\n")
    host.repository = with_fake_borg(host)
    host.offsite = lambda *args, **env: host.run(
        "odoo-offsite",
        *args,
        CREDENTIALS_DIRECTORY=str(credentials),
        FAKE_REPO=str(host.repository.path),
        **env,
    )
    return host


def days_ago(days: float) -> datetime:
    return datetime.now() - timedelta(days=days)


def test_prune_keeps_its_retention_and_records_what_it_left(backup_host):
    repo = backup_host.repository
    repo.set(("a1", days_ago(3)), ("a2", days_ago(2)), ("a3", days_ago(0.2)))
    result = backup_host.offsite("--prune", FAKE_PRUNES="a1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert repo.commands() == ["list", "prune", "list", "compact"]
    prune = repo.calls()[1]["argv"]
    assert prune == [
        "prune",
        "--lock-wait=600",
        "--list",
        "--keep-daily=14",
        "--keep-weekly=8",
        "--keep-monthly=12",
    ]
    # The passphrase: the unit's credential, read by borg, never in an argument.
    for call in repo.calls():
        assert call["passcommand"].startswith("cat ") and call["passcommand"].endswith(
            "/credentials/offsite-passphrase"
        )
        assert "the-passphrase-7d1e" not in json.dumps(call)
        assert call["repo"] == backup_host.config["offsite_repository"]
    state = Path(backup_host.config["offsite_state_dir"])
    assert list(json.loads((state / "seen.json").read_text())["archives"]) == ["a2", "a3"]
    last = json.loads((state / "last-prune.json").read_text())
    assert (last["result"], last["pruned"], last["archives"]) == ("success", ["a1"], 2)
    assert "pruned 1 archive(s) (a1), kept 2; compacted" in result.stdout
    # What it pruned itself does not trip the guard the next day.
    repo.set(("a2", days_ago(2)), ("a3", days_ago(1.2)), ("a4", days_ago(0.1)))
    assert backup_host.offsite("--prune").returncode == 0


def test_a_failed_compact_is_recorded_and_trips_nothing_the_next_day(backup_host):
    repo = backup_host.repository
    repo.set(("a1", days_ago(3)), ("a2", days_ago(2)), ("a3", days_ago(0.2)))
    failed = backup_host.offsite(
        "--prune", FAKE_PRUNES="a1", FAKE_FAIL_ON="compact", FAKE_FAIL="Connection reset"
    )
    assert failed.returncode == 1
    assert "borg compact failed" in failed.stderr
    state = Path(backup_host.config["offsite_state_dir"])
    last = json.loads((state / "last-prune.json").read_text())
    assert last["result"] == "failed" and "borg compact failed" in last["error"]
    backup_host.fake("systemctl", "exit 0")
    status = backup_host.run("odoo-status")
    assert status.returncode == 1 and "the last prune: borg compact failed" in status.stdout
    # Unfinished: prod's key kept out (its forced command) until the next prune finishes it.
    assert Path(backup_host.config["offsite_compacting"]).exists()
    # a1, pruned by this host before the compact failed, is not "gone" the next day.
    before = len(repo.commands())
    again = backup_host.offsite("--prune")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "the last compact did not finish (prod's key kept out since)" in again.stdout
    # The compact finished first, then the guard, the prune and its compact.
    assert repo.commands()[before:] == ["list", "compact", "list", "prune", "list", "compact"]
    assert not Path(backup_host.config["offsite_compacting"]).exists()


def test_an_unreadable_state_file_fails_the_prune_and_says_so(backup_host):
    backup_host.repository.set(("a1", days_ago(0.2)))
    state = Path(backup_host.config["offsite_state_dir"])
    (state / "seen.json").write_text("{ truncated")
    failed = backup_host.offsite("--prune")
    assert failed.returncode == 1
    last = json.loads((state / "last-prune.json").read_text())
    assert last["result"] == "failed", last
    assert "compact" not in backup_host.repository.commands()


def test_an_archive_gone_behind_its_back_trips_the_guard(backup_host):
    repo = backup_host.repository
    repo.set(("a1", days_ago(2)), ("a2", days_ago(1)), ("a3", days_ago(0.1)))
    assert backup_host.offsite("--prune").returncode == 0
    # Deleted through prod's key (a transaction only, in append-only): gone from the list.
    repo.set(("a1", days_ago(2)), ("a3", days_ago(0.1)), ("a4", days_ago(0.05)))
    calls_before = len(repo.calls())
    result = backup_host.offsite("--prune", FAKE_PRUNES="a1")
    assert result.returncode == 1
    assert "GUARD: 1 archive(s) gone or replaced that this host did not prune: a2" in result.stderr
    assert "nothing pruned nor compacted" in result.stderr
    assert [c["argv"][0] for c in repo.calls()[calls_before:]] == ["list"]
    assert repo.names() == ["a1", "a3", "a4"]
    state = Path(backup_host.config["offsite_state_dir"])
    assert json.loads((state / "last-prune.json").read_text())["result"] == "guard tripped"
    # It stays tripped: the next run says the same (an operator decides).
    assert backup_host.offsite("--prune").returncode == 1


def test_an_archive_replaced_under_its_name_trips_the_guard(backup_host):
    repo = backup_host.repository
    repo.set(("a1", days_ago(1)), ("a2", days_ago(0.1)))
    assert backup_host.offsite("--prune").returncode == 0
    # Deleted, then pushed again under the same name (another archive: another id).
    result = backup_host.offsite("--prune", FAKE_REPLACED="a1")
    assert result.returncode == 1
    assert "gone or replaced that this host did not prune: a1" in result.stderr
    assert repo.commands()[-1] == "list"


def test_a_backdated_or_future_archive_trips_the_guard(backup_host):
    """Archives pushed with --timestamp would take real ones' places in the retention."""
    repo = backup_host.repository
    repo.set(("a1", days_ago(3)), ("a2", days_ago(0.1)))
    assert backup_host.offsite("--prune").returncode == 0
    repo.set(("a1", days_ago(3)), ("a2", days_ago(0.1)), ("junk", days_ago(20)))
    result = backup_host.offsite("--prune")
    assert result.returncode == 1
    assert "dated before the last prune or in the future: junk" in result.stderr
    repo.set(("a1", days_ago(3)), ("a2", days_ago(0.1)), ("later", days_ago(-30)))
    result = backup_host.offsite("--prune")
    assert result.returncode == 1 and "in the future: later" in result.stderr
    # A push that started a little before the last prune and landed after: fine.
    repo.set(("a1", days_ago(3)), ("a2", days_ago(0.1)), ("a3", days_ago(0.2)))
    assert backup_host.offsite("--prune").returncode == 0


def test_an_archive_gone_during_the_prune_stops_it_before_compacting(backup_host):
    """Deleted through prod's key between the guard's look and the prune: not counted as
    pruned, and nothing compacted (the log can still roll it back)."""
    repo = backup_host.repository
    repo.set(("a1", days_ago(2)), ("a2", days_ago(1)), ("a3", days_ago(0.1)))
    # The fake prune removes a2 without saying so (FAKE_PRUNES lists what it says it pruned):
    # as when another client deleted it meanwhile.
    script = backup_host.root / "fake_borg.py"
    script.write_text(
        script.read_text().replace(
            'elif command == "prune":',
            'elif command == "prune":\n    archives = [a for a in archives if a["name"] != "a2"]',
        )
    )
    result = backup_host.offsite("--prune")
    assert result.returncode == 1
    assert "gone during the prune, not by it: a2" in result.stderr
    assert "compact" not in repo.commands()


def test_no_fresh_archive_trips_the_guard(backup_host):
    backup_host.repository.set(("a1", days_ago(3)), ("a2", days_ago(2)))
    result = backup_host.offsite("--prune")
    assert result.returncode == 1
    assert "older than offsite_max_age_hours (36 h): pushes stopped" in result.stderr
    assert backup_host.repository.commands() == ["list"]
    backup_host.repository.set()
    result = backup_host.offsite("--prune")
    assert result.returncode == 1 and "holds no archive" in result.stderr


def test_borgs_failure_is_said_with_its_cause(backup_host):
    result = backup_host.offsite(
        "--prune", FAKE_FAIL="Failed to create/acquire the lock /srv/borg/x/lock (timeout)."
    )
    assert result.returncode == 1
    assert "borg list failed (the repository is locked" in result.stderr
    result = backup_host.offsite(
        "--prune",
        FAKE_FAIL="passphrase supplied in BORG_PASSPHRASE, "
        "by BORG_PASSCOMMAND or via BORG_PASSPHRASE_FD is incorrect.",
    )
    assert "borg list failed (wrong passphrase)" in result.stderr


def test_without_its_credential_it_refuses_or_as_root_runs_as_the_owner(backup_host):
    """Root (an operator) runs it as the repository's owner, the passphrase handed over as
    its units do; anyone else, without the credential, is refused."""
    backup_host.fake("systemd-run", "exit 0")
    result = backup_host.run("odoo-offsite", "--prune", FAKE_REPO=str(backup_host.repository.path))
    if os.geteuid() == 0:
        assert result.returncode == 0, result.stderr
        (call,) = [line for line in backup_host.logged() if line.startswith("systemd-run ")]
        assert call == (
            "systemd-run --quiet --wait --pipe --collect -p User=borg -p LoadCredential="
            f"offsite-passphrase:{backup_host.config['offsite_passphrase_file']}"
            f" {BIN / 'odoo-offsite'} --prune"
        )
    else:
        assert result.returncode == 2
        assert "no passphrase: run through its unit" in result.stderr
    assert backup_host.run("odoo-offsite", "--nothing").returncode == 2


# --- prod's push


@pytest.fixture
def prod_host(make_host):
    host = make_host("oca-france-prod")
    host.config["offsite_push_retry_sec"] = 0
    host.config["offsite_push_retries"] = 1
    host.write_config()
    host.repository = with_fake_borg(host)
    host.push = lambda **env: host.run(
        "odoo-offsite-push", FAKE_REPO=str(host.repository.path), **env
    )
    return host


def test_the_push_sends_the_newest_backup_once(prod_host):
    older = f"{PROD_DB}-{stamp(days_ago(1))}"
    newest = f"{PROD_DB}-{stamp(datetime.now())}"
    backups = prod_host.path("backup_dir")
    write_backup(backups, older)
    write_backup(backups, newest)
    result = prod_host.push()
    assert result.returncode == 0, result.stdout + result.stderr
    create = prod_host.repository.calls()[-1]
    assert create["argv"] == [
        "create",
        "--lock-wait=600",
        "--json",
        "--compression",
        "zstd,3",
        "--checkpoint-interval",
        "604800",
        f"::{newest}",
        ".",
    ]
    assert create["cwd"] == str(backups / newest)
    assert create["repo"] == "ssh://borg@backup.test:22/srv/borg/oca-france-prod"
    assert create["passcommand"] == f"cat {prod_host.config['offsite_passphrase_file']}"
    assert f"pushed {newest}: 3000 bytes, 1000 new to the repository" in result.stdout
    pushed = json.loads(prod_host.path("offsite_push_state_file").read_text())
    assert (pushed["result"], pushed["archive"]) == ("success", newest)
    assert pushed["pushed"] == [newest]  # what this host pushed itself (recover skips them)
    # Already there: not pushed again.
    result = prod_host.push()
    assert result.returncode == 0
    assert "already on the backup host" in result.stdout
    assert prod_host.repository.commands()[-1] == "list"


def test_a_failed_push_is_retried_then_fails_with_its_cause(prod_host):
    write_backup(prod_host.path("backup_dir"), f"{PROD_DB}-{stamp(datetime.now())}")
    state = prod_host.path("offsite_push_state_file")
    state.write_text(json.dumps({"result": "success", "last_success": "2026-12-01T01:00:00+0100"}))
    result = prod_host.push(
        FAKE_FAIL="ssh: connect to host backup.test port 22: Connection refused"
    )
    assert result.returncode == 1
    assert result.stderr.count("the backup host refused the connection") == 2  # tried twice
    assert "try 2 of 2 in 0 s" in result.stdout
    pushed = json.loads(state.read_text())
    assert pushed["result"] == "failed" and "refused the connection" in pushed["error"]
    assert pushed["last_success"] == "2026-12-01T01:00:00+0100"  # kept for status


def test_status_on_the_backup_host(backup_host):
    backup_host.fake("systemctl", "exit 0")  # no failed unit
    repository = Path(backup_host.config["offsite_repository"])
    result = backup_host.run("odoo-status")
    assert result.returncode == 1
    assert "has received nothing" in result.stdout
    # borg's log of what append-only clients committed: a push two days ago, then one now.
    old = datetime.now(UTC) - timedelta(days=2)
    (repository / "transactions").write_text(
        f"transaction 7, UTC time {old:%Y-%m-%dT%H:%M:%S.%f}\n"
    )
    result = backup_host.run("odoo-status")
    assert result.returncode == 1
    assert "ATTENTION:        no push to" in result.stdout
    with (repository / "transactions").open("a") as log:
        log.write(f"transaction 12, UTC time {datetime.now(UTC):%Y-%m-%dT%H:%M:%S.%f}\n")
    (repository / "index.15").write_text("")  # a prune since: not a push
    result = backup_host.run("odoo-status")
    assert result.returncode == 0, result.stdout
    assert re.search(r"last push: +\S+ \S+ \(0\.0 h ago\)", result.stdout), result.stdout
    assert "last prune:       none yet" in result.stdout
    assert f"disk:             {backup_host.root}: " in result.stdout
    state = Path(backup_host.config["offsite_state_dir"])
    (state / "last-prune.json").write_text(
        json.dumps({"time": "2026-12-03T11:00:00", "result": "guard tripped", "error": "a2 gone"})
    )
    result = backup_host.run("odoo-status")
    assert result.returncode == 1
    assert "ATTENTION:        the last prune: a2 gone" in result.stdout


def test_recover_refuses_an_archive_not_there_or_not_as_its_manifest_says(prod_host, tmp_path):
    """odoo-offsite-recover's checks, before the deploy (deploy --recover: test_kill_points)
    touches anything."""
    pushed = tmp_path / "pushed"
    good = write_backup(pushed, f"{PROD_DB}-20261202T011500")
    bad = write_backup(pushed, f"{PROD_DB}-20261203T011500")
    (bad / "filestore" / "ab" / "abcdef").write_text("bit rot\n")
    prod_host.repository.set((good.name, days_ago(2)), (bad.name, days_ago(1)))

    def recover(*args):
        return prod_host.run(
            "odoo-offsite-recover",
            *args,
            FAKE_REPO=str(prod_host.repository.path),
            FAKE_EXTRACT_FROM=str(pushed),
        )

    listed = recover("--list")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == [good.name, bad.name]
    missing = recover(f"{PROD_DB}-20261130T011500")
    assert missing.returncode == 2
    assert f"no archive '{PROD_DB}-20261130T011500' on the backup host" in missing.stderr
    assert "nothing touched" in missing.stderr
    newest = recover()  # the newest by default: here, one that does not match its manifest
    assert newest.returncode == 2
    assert f"{bad.name} does not match its manifest: filestore/ab/abcdef" in newest.stderr
    assert prod_host.repository.calls()[-1]["argv"][-2] == f"::{bad.name}"
    assert not [call for call in prod_host.logged() if call.startswith(("systemctl", "git"))]
    assert recover("--bogus").returncode == 1
    killed = prod_host.run(
        "odoo-offsite-recover",
        good.name,
        FAKE_REPO=str(prod_host.repository.path),
        FAKE_EXTRACT_FROM=str(pushed),
        FAKE_KILLED_MIDWAY="1",
    )
    assert killed.returncode != 0 and "Traceback" not in killed.stderr, killed.stderr
    assert "borg export-tar failed" in killed.stderr and "killed by signal 9" in killed.stderr
    assert "the service and its data are as they were" in killed.stderr
    # A host rebuilt from bare whose timer already pushed its fresh database: never that one
    # by default.
    prod_host.path("offsite_push_state_file").write_text(json.dumps({"pushed": [bad.name]}))
    own = recover()
    assert f"not by default: {bad.name} (pushed by this host itself)" in own.stdout
    assert f"recovering {good.name}, taken " in own.stdout
    assert prod_host.repository.calls()[-1]["argv"][-2] == f"::{good.name}"


def test_the_newest_archive_is_by_time_and_a_tie_goes_to_the_later_made():
    from oca_france_host import borg

    def made(name, start):
        return {"name": name, "start": start, "id": name}

    listed = [
        made("a", "2026-12-01T01:00:00.000000"),
        made("c", "2026-12-03T01:00:00.000000"),
        made("b", "2026-12-02T01:00:00.000000"),
        made("d", "2026-12-03T01:00:00.000000"),  # the same second as c, made after it
    ]
    assert borg.newest(listed)["name"] == "d"
    assert borg.newest(listed, excluding=["d"])["name"] == "c"
    assert borg.newest(listed, excluding=["a", "b", "c", "d"]) is None
    assert borg.newest([]) is None


def test_after_rollback_as_another_user_than_the_pushs_is_refused(prod_host):
    prod_host.config["odoo_user"] = "nobody"  # the push's user; this test runs as another
    prod_host.write_config()
    result = prod_host.run("odoo-offsite-push", "--after-rollback")
    assert result.returncode == 2
    assert "run it as nobody, whose borg pushes" in result.stderr
