"""The deploy's steps (deploy.py chains them): its output and log, its state, the service,
the code and venv, snapshots, rollback and repair. Each step records itself in the state file
(state.py) before it runs, so that a deploy killed at any point can be repaired (repair)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from oca_france_host import runner, state

# Exit codes: what failed, and what state it left.
EXIT_USAGE = 1  # bad arguments: nothing touched
EXIT_REFUSED = 2  # refused before touching anything (user, lock, ref, Python, data, disk)
EXIT_FETCH = 3  # git fetch failed: nothing touched
EXIT_BACKUP = 4  # stop or snapshot failed: previous release started again
EXIT_ROLLED_BACK = 5  # new release failed: previous release and data restored, site up
EXIT_BROKEN = 6  # rollback failed too: the site may be down, act now

# The steps a repair puts back by starting the previous release again (nothing changed yet).
BEFORE_THE_RELEASE = ("preflight", "stopping", "snapshot", "restarting")
# The steps during which the service's guard lets a start pass: the deploy's own starts.
OWN_STARTS = ("starting", "restarting", "rolling-back", "healthy")
LIB_DIR = Path(__file__).resolve().parent
# git never starts its background maintenance here: it would outlive the deploy.
GIT = ["git", "-c", "maintenance.auto=false", "-c", "gc.auto=0"]

USAGE = """\
Usage: {prog} [-R|--restore] [--wait <seconds>] <git-ref>
       {prog} --recover <backup-dir> [<git-ref>]
       {prog} --dry-run <git-ref> | --status | --repair [--boot] | --guard | -h|--help
       {prog} --activity | --apply-lock <seconds> [--while-pid <pid>]

Deploy <git-ref> (a tag such as 18.0-20260110, a branch of origin such as 18.0, or a commit)
of {checkout} to the {db} database, as {user}.

  -R, --restore  replace the database and filestore with the latest production data from
                 {production_data}, neutralized (recette only)
  --recover <dir>  replace the database and filestore with this backup as it is (production
                 rebuilt from the backup host: odoo-offsite-recover), at the commit its
                 manifest names unless <git-ref> is given
  --wait <s>     wait up to <s> seconds for a running deploy, backup or repair (the weekly
                 refresh); without it, the deploy is refused while one runs (exit 2)
  --dry-run      show the commits between the running release and <git-ref>, and the addons
                 whose files changed; changes nothing
  --status       the running release, the service and its health, the last deploys, the
                 snapshots and free disk
  --activity     what holds the instance now, as JSON (what the apply asks before it starts)
  --apply-lock <s>  hold the lock for an apply, waiting up to <s> seconds for it, until
                 stopped or process <pid> (the apply's SSH session) ends (the apply runs it
                 as oca-france-apply-lock-*.service)
  --guard        what the service runs before it starts: repairs a deploy that died first,
                 refuses while a deploy is in its downtime (ExecStartPre)
  --repair       repair a deploy that died (run by odoo-deploy-repair.timer; --boot: at boot,
                 before the service starts)
  -h, --help     show this help

Once the deploy has stopped the site, Ctrl-C and a lost connection no longer interrupt it:
it goes on to the new release or back to the previous one. Its whole output is in the log
whose path it prints first. History: {history}

Exit codes: 0 deployed; 1 usage error; 2 refused (unknown ref, no Python the commit asks for,
no production data, not enough disk...), nothing touched; 3 fetch failed, nothing touched;
4 stop or snapshot failed, previous release running; 5 release failed, rolled back, site up;
6 rollback failed, the site may be down.
"""


class Exit(Exception):
    """Leave with this status (its message already said)."""

    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


class StepFailed(Exception):
    """A step failed; its reason is in the log."""


def say(message: str, terminal, log_handle=None) -> None:
    """A line of the deploy: in its log (once open) and on the terminal, which may be gone."""
    line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} deploy: {message}"
    if log_handle is not None:
        log_handle.write(line + "\n")
        log_handle.flush()
    try:
        print(line, file=terminal, flush=True)
    except OSError:
        pass  # the terminal may be gone: go on


def mib(size: int) -> int:
    return size // 1048576


def now() -> float:
    return time.time()


class Steps:
    def __init__(self, settings: dict):
        self.c = settings
        self.checkout = settings["oca_france_dir"]
        self.db = settings["odoo_db_name"]
        self.service = settings["oca_france_service"]
        self.filestore_root = Path(settings["filestore_root"])
        self.snapshot_dir = Path(settings["snapshot_dir"])
        self.state_file = settings["deploy_state_file"]
        self.lock_file = settings["deploy_lock_file"]
        self.history_file = settings["deploy_history_file"]
        self.by = os.environ.get("DEPLOY_BY") or os.environ.get("SUDO_USER") or whoami()
        self.terminal_out, self.terminal_err = sys.stdout, sys.stderr
        self.log_file: Path | None = None
        self.log_handle = None
        self.step_offset = 0  # where the running step's output begins in the log
        self.state: dict[str, str] = {}
        self.prepared: Path | None = None
        self.held: state.Held | None = None  # the lock, once taken
        self.in_downtime = False  # from the stop on: what it runs inherits the lock
        # Where uv keeps the Pythons it installs, and which it prefers (group_data/all.py).
        os.environ["UV_PYTHON_INSTALL_DIR"] = settings["uv_python_install_dir"]
        os.environ["UV_PYTHON_PREFERENCE"] = settings["uv_python_preference"]

    # --- Output: step lines on the terminal and in the log; commands' output in the log only.

    def log(self, message: str) -> None:
        say(message, self.terminal_out, self.log_handle)

    def warn(self, message: str) -> None:
        say(message, self.terminal_err, self.log_handle)

    def die(self, status: int, message: str):
        self.warn(f"ERROR: {message}")
        raise Exit(status)

    def run(self, argv, **options) -> subprocess.CompletedProcess:
        """A command whose output goes to the log (to ours before the log is open). During
        the downtime it inherits the lock: a deploy killed alone (kill -9, the OOM killer)
        leaves the lock held while what it ran (the update) still runs, so no repair starts
        beside it."""
        if self.log_handle is not None and not options.get("capture"):
            options.setdefault("stdout", self.log_handle)
            options.setdefault("stderr", subprocess.STDOUT)
        if self.in_downtime and self.held is not None:
            options.setdefault("pass_fds", (self.held.fd,))
        return runner.run(argv, **options)

    def git(self, *args: str, **options) -> subprocess.CompletedProcess:
        return self.run([*GIT, "-C", self.checkout, *args], **options)

    def git_output(self, *args: str) -> str:
        return runner.output([*GIT, "-C", self.checkout, *args])

    def open_log(self) -> None:
        log_dir = Path(self.c["deploy_log_dir"])
        log_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.utcnow().strftime("%Y%m%dT%H%M%S")
        self.log_file = log_dir / f"deploy-{stamp}-{os.getpid()}.log"
        self.log_handle = open(self.log_file, "a", encoding="utf-8")  # noqa: SIM115
        self.log(f"log of this deploy (Odoo's and uv's output): {self.log_file}")
        # Every run keeps the newest deploy_logs_kept, refusals and repairs included.
        logs = sorted(log_dir.glob("deploy-*.log"), reverse=True)
        for old in logs[int(self.c["deploy_logs_kept"]) :]:
            old.unlink(missing_ok=True)

    def note(self, text: str) -> None:
        """Lines for the log only."""
        if self.log_handle is not None and text.strip():
            self.log_handle.write(text.rstrip("\n") + "\n")
            self.log_handle.flush()

    def note_error(self, error: BaseException) -> None:
        """Why a step failed, in the log: a captured command's own output (PostgreSQL's
        reason...), an error of ours as one line (a command's output is already there)."""
        if isinstance(error, runner.Failed):
            self.note(error.output)
        elif not isinstance(error, StepFailed):
            self.log(f"ERROR: {type(error).__name__}: {error}")

    def begin_step(self, step: str) -> None:
        if self.log_handle is not None:
            self.log_handle.flush()
            self.step_offset = self.log_file.stat().st_size
        self.set_state(step=step)

    def step(self, step: str, message: str) -> None:
        self.begin_step(step)
        self.log(message)

    def step_lines(self) -> list[str]:
        if self.log_file is None:
            return []
        self.log_handle.flush()
        with open(self.log_file, encoding="utf-8", errors="replace") as log:
            log.seek(self.step_offset)
            return log.read().splitlines()

    def show_failed_step(self) -> None:
        if self.log_file is None:
            return
        self.warn(f"last lines of the failed step (whole log: {self.log_file}):")
        try:
            for line in self.step_lines()[-20:]:
                print(f"    {line}", file=self.terminal_err, flush=True)
        except OSError:
            pass

    def failed_step_error(self) -> str:
        """The failed step's error in one line, for the history (and so odoo-status): its last
        line that says error, else its last line."""
        lines = [line for line in self.step_lines() if line.strip()]
        errors = [line for line in lines if re.search("error|exception", line, re.IGNORECASE)]
        found = errors or lines
        return found[-1][:300] if found else ""

    # --- The state file and the history (state.py's one format)

    def set_state(self, **fields: str) -> None:
        self.state.update({key: str(value) for key, value in fields.items()})
        state.write(self.state_file, self.state)

    def clear_state(self) -> None:
        state.clear(self.state_file)
        self.state = {}

    def record(self, **fields) -> None:
        try:
            state.record(self.history_file, **fields)
        except OSError:
            self.warn(f"WARNING: could not write {self.history_file}")

    def take_lock(self, wait: int) -> state.Held:
        try:
            return state.take(self.lock_file, wait, who=f"deploy by {self.by}")
        except state.LockBusy:
            still = f", still after {wait}s" if wait else ""
            self.die(
                EXIT_REFUSED,
                f"another deploy, a backup or a repair is running (lock {self.lock_file}{still}):"
                f" {state.holder(self.lock_file) or 'holder unknown'}",
            )

    # --- PostgreSQL

    def psql_admin(self, sql: str) -> str:
        argv = ["psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-c", sql]
        return runner.output(argv)

    def drop_live_database(self) -> None:
        """The live database dropped, its sessions ended (the service is stopped: leftovers).
        Tried again: PostgreSQL refuses FORCE while an autovacuum worker, which the odoo role
        may not end, still works on it; a plain DROP would wait for that worker only 5 s."""
        for attempt in range(10):
            try:
                self.psql_admin(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
                return
            except runner.Failed as refused:
                if attempt == 9:
                    raise
                self.note_error(refused)
                time.sleep(1)

    def database_exists(self, name: str) -> bool:
        return self.psql_admin(f"SELECT 1 FROM pg_database WHERE datname = '{name}'") == "1"

    def snapshots(self) -> list[str]:
        found = self.psql_admin(
            f"SELECT datname FROM pg_database WHERE datname LIKE '{self.db}-snap-%' ORDER BY 1"
        )
        return [name for name in found.splitlines() if name]

    # --- The service

    def start_service(self) -> bool:
        try:
            self.run(["systemctl", "start", self.service])
        except runner.Failed:
            return False
        return self.wait_until_healthy()

    def kept_stopped(self) -> bool:
        """A recovery onto a host held for it (make apply-prod RECOVERING=1: the service never
        started there): a failure leaves the service stopped, never serving the fresh database
        the recovery was to replace."""
        return self.state.get("keep_stopped") == "true"

    def start_again(self) -> bool:
        """After a failure, the release that ran started again (unless kept_stopped)."""
        if self.kept_stopped():
            self.log(f"{self.service} stays stopped, as it was before the recovery")
            return True
        self.log(f"starting {self.service}")
        return self.start_service()

    def wait_until_healthy(self) -> bool:
        deadline = time.monotonic() + int(self.c["odoo_start_timeout"])
        errors = 0
        while time.monotonic() < deadline:
            # Not active means it crashed (and is waiting to be restarted): fail now.
            if not runner.succeeds(["systemctl", "is-active", "--quiet", self.service]):
                self.log(f"{self.service} is not running")
                return False
            health = runner.run(
                ["curl", "-fsS", "--max-time", "5", self.c["health_url"]],
                capture=True,
                check=False,
            )
            if health.returncode == 0 and re.search(r'"db_server_status": *true', health.stdout):
                login = runner.run(
                    [
                        "curl",
                        "-sS",
                        "--max-time",
                        "10",
                        "-o",
                        "/dev/null",
                        "-w",
                        "%{http_code}",
                        self.c["login_url"],
                    ],
                    capture=True,
                    check=False,
                ).stdout.strip()
                if login == "200":
                    self.log(f"{self.service} is up: health and login pages answer")
                    return True
                # The server runs but its login page fails (a template, the registry): no wait
                # makes that pass.
                if login == "500":
                    errors += 1
                    if errors >= 3:
                        self.log(
                            f"ERROR: {self.c['login_url']} answers 500: the release cannot"
                            " serve its login page"
                        )
                        return False
                else:
                    errors = 0
            time.sleep(0.5)
        self.log(
            f"{self.service} did not answer {self.c['login_url']} within"
            f" {self.c['odoo_start_timeout']}s"
        )
        return False

    # --- Code

    def sync_venv(self, directory: str | Path) -> None:
        """uv sync until uv finds the venv up to date: the first sync of a fresh clone installs
        __manifest__.py files that the app's cache-keys glob matches (see group_data/all.py).
        Bounded: a hung download must not hold the lock for ever."""
        self.sync_bounded(directory)
        if not runner.succeeds(self.c["sync_check_command"], cwd=directory):
            self.sync_bounded(directory)

    def sync_bounded(self, directory: str | Path) -> None:
        seconds = int(self.c["venv_sync_timeout_sec"])
        try:
            self.run(self.c["odoo_sync_command"], cwd=directory, timeout=seconds)
        except runner.Failed as failed:
            if failed.timed_out:
                self.log(
                    f"ERROR: {' '.join(self.c['odoo_sync_command'])} took more than {seconds}s"
                )
            raise

    def checkout_code(self, commit: str) -> None:
        self.git("reset", "--quiet", "--hard", commit)
        self.sync_venv(self.checkout)

    def prepare_release(self, commit: str) -> None:
        """The next release built beside the running one, while the site serves: a worktree
        of the commit and its venv. The downloads and builds happen now, into uv's cache, so
        that the sync of the checkout during the downtime only links what is already there."""
        self.prepared = Path(self.c["prepared_dir"]) / commit
        self.discard_prepared()
        self.prepared.parent.mkdir(parents=True, exist_ok=True)
        self.git("worktree", "add", "--quiet", "--detach", str(self.prepared), commit)
        self.sync_venv(self.prepared)

    def discard_prepared(self) -> None:
        if self.prepared is None:
            return
        shutil.rmtree(self.prepared, ignore_errors=True)
        self.git("worktree", "prune", check=False)

    def resync_checkout(self) -> None:
        """uv takes the checkout's venv for outdated once the app was synced in the worktree
        (the editable app's build is shared between the two): sync it again, links only."""
        try:
            self.sync_venv(self.checkout)
        except runner.Failed:
            self.warn(f"WARNING: could not sync {self.checkout}'s venv after the release")

    # --- Snapshots: the database copied inside PostgreSQL (CREATE DATABASE ... TEMPLATE, while
    # Odoo is stopped) and the filestore as hard links (Odoo writes each file once and never
    # rewrites it). A rollback renames them back: no dump to restore, no archive to unpack.

    def take_snapshot(self, name: str) -> None:
        self.run(["createdb", f"--template={self.db}", "--strategy=FILE_COPY", name])
        target = self.snapshot_dir / name
        target.mkdir(parents=True, exist_ok=True)
        (self.filestore_root / self.db).mkdir(parents=True, exist_ok=True)
        self.copy_tree(self.filestore_root / self.db, target / "filestore")
        (target / "complete").touch()

    def copy_tree(self, source: Path, target: Path) -> None:
        """Hard links (Odoo never rewrites a filestore file: sharing them is safe and
        instant); on another filesystem, a real copy, slower but as safe."""
        if self.run(["cp", "-al", str(source), str(target)], check=False).returncode == 0:
            return
        shutil.rmtree(target, ignore_errors=True)
        self.run(["cp", "-a", str(source), str(target)])

    def copy_contents(self, source: Path, target: Path) -> None:
        if self.run(["cp", "-al", f"{source}/.", f"{target}/"], check=False).returncode == 0:
            return
        self.run(["cp", "-a", f"{source}/.", f"{target}/"])

    def drop_snapshot(self, name: str) -> None:
        if not name:
            return
        self.run(["dropdb", "--if-exists", name])
        shutil.rmtree(self.snapshot_dir / name, ignore_errors=True)

    def restore_snapshot(self, name: str) -> None:
        """The snapshot back in place of the live database and filestore. Safe to run again
        after being interrupted: each half is skipped once done."""
        if self.database_exists(name):
            self.drop_live_database()
            self.psql_admin(f'ALTER DATABASE "{name}" RENAME TO "{self.db}"')
        elif not self.database_exists(self.db):
            self.log(f"ERROR: neither {self.db} nor its snapshot {name} exists")
            raise StepFailed(name)
        files = self.snapshot_dir / name / "filestore"
        if files.is_dir():
            live = self.filestore_root / self.db
            replaced = self.filestore_root / f".{self.db}.replaced-{time.strftime('%Y%m%dT%H%M%S')}"
            if live.is_dir():
                live.rename(replaced)
            files.rename(live)
            shutil.rmtree(replaced, ignore_errors=True)
        shutil.rmtree(self.snapshot_dir / name, ignore_errors=True)

    def prune_snapshots(self) -> None:
        """The newest deploy_snapshots_kept, once a deploy succeeded; no directory without its
        database."""
        kept = int(self.c["deploy_snapshots_kept"])
        names = self.snapshots()
        for name in names[: max(len(names) - kept, 0)]:
            self.log(f"removing old snapshot {name}")
            self.drop_snapshot(name)
        if self.snapshot_dir.is_dir():
            for directory in self.snapshot_dir.iterdir():
                if directory.is_dir() and not self.database_exists(directory.name):
                    shutil.rmtree(directory, ignore_errors=True)

    # --- Rollback and repair

    def rollback_to(self, previous: str, snapshot: str, boot: bool = False) -> None:
        """The previous release, its venv, and the snapshot's data; then started (at boot:
        systemd starts the service itself)."""
        self.begin_step("rolling-back")
        if not boot:
            self.run(["systemctl", "stop", self.service], check=False)
        self.log(f"putting back the code of {previous} and its venv")
        self.checkout_code(previous)
        self.log(f"putting back the data of snapshot {snapshot}")
        self.restore_snapshot(snapshot)
        if boot:
            return
        if not self.start_again():
            raise StepFailed("start")

    def repair(self, boot: bool = False) -> bool:
        """A deploy died (kill -9, OOM, power loss) and left its state file behind. Before the
        stop nothing changed; during the snapshot, only a partial snapshot; after it, the
        previous release and its data go back; after a healthy start, it is recorded as done."""
        found = state.unfinished(self.state_file)
        if found is None:
            return True
        self.state = found
        s = self.state
        died_at = s.get("died_at") or s.get("step", "")
        self.set_state(died_at=died_at)  # a repair that dies too keeps where the deploy died
        its_log = f" (its log: {s['log']})" if s.get("log") else ""
        self.log(
            f"a deploy of {s.get('ref', '?')} ({s.get('to', '?')}) by {s.get('by', '?')} died at"
            f" step '{died_at}'{its_log}: repairing"
        )
        step = s.get("step", "")
        result = "repaired"
        try:
            if step in BEFORE_THE_RELEASE:
                self.drop_snapshot(s.get("snapshot", ""))
                what = "the previous release was still in place"
                self.set_state(step="restarting")  # the service's guard lets this start pass
                if not boot and not self.start_again():
                    result = "broken"
            elif step == "healthy":
                what = "the new release had started healthy: recorded as deployed"
                result = "deployed"
                if not boot and not runner.succeeds(
                    ["systemctl", "is-active", "--quiet", self.service]
                ):
                    self.set_state(step="starting")
                    if not self.start_service():
                        result = "broken"
            else:
                what = (
                    f"rolled back to {s.get('from', '?')} and the data of {s.get('snapshot', '?')}"
                )
                self.rollback_to(s.get("from", ""), s.get("snapshot", ""), boot)
        except (runner.Failed, StepFailed, OSError) as error:
            self.note_error(error)
            self.log(f"ERROR: {error}")
            result = "broken"
        started = int(s.get("started") or 0)
        self.record(
            action="repair",
            by=self.by,
            **{"from": s.get("from", "")},
            to=s.get("to", ""),
            ref=s.get("ref", ""),
            result=result,
            failed_step=died_at,
            duration_s=int(now()) - started,
            log=str(self.log_file or ""),
        )
        if result == "broken":
            self.warn(
                f"ERROR: repair failed: the site may be down (state kept in {self.state_file})"
            )
            return False
        self.clear_state()
        self.log(f"repaired: {what}")
        return True


def whoami() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name
