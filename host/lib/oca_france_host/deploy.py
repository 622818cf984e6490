"""deploy: deploys a git ref of the app to this host's database, as odoo.

While the site serves: fetch, checks (ref, Python, production data, free disk), the next
release prepared beside the running one. Then the downtime: stop, snapshot (database copied
inside PostgreSQL, filestore hard-linked), reset to the ref and sync the venv, [restore
production data, neutralize], update, start. A failure rolls back by renaming the snapshot
back: the site is up on the previous release. A deploy that died (kill -9, OOM, reboot) is
repaired by the next deploy, by odoo-deploy-repair.timer within a minute, and at boot before
the service starts. The steps live in deploy_steps.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import datetime
from pathlib import Path

from oca_france_host import backups, config, runner, state, status
from oca_france_host.deploy_steps import (
    EXIT_BACKUP,
    EXIT_BROKEN,
    EXIT_FETCH,
    EXIT_REFUSED,
    EXIT_ROLLED_BACK,
    EXIT_USAGE,
    LIB_DIR,
    OWN_STARTS,
    USAGE,
    Exit,
    StepFailed,
    Steps,
    mib,
    now,
    say,
    whoami,
)

FAILURES = (runner.Failed, StepFailed, OSError)
APPLY_HOLDER = "apply"  # how an apply's hold names itself in the lock


def notify_ready() -> None:
    """READY=1 to systemd (Type=notify): the apply's systemd-run returns once the lock is held."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as notify:
        notify.connect(address)
        notify.sendall(b"READY=1")


class Arguments:
    def __init__(self) -> None:
        self.mode = "deploy"
        self.boot = False
        self.restore = False
        self.recover = ""  # --recover: a backup directory (odoo-offsite-recover's extract)
        self.from_manifest = False  # the ref is the recovered backup's own commit
        self.ref = ""
        self.wait = 0  # --wait: seconds to wait for a running deploy, backup or repair
        self.while_pid = 0  # --apply-lock: released when this process (the apply's) is gone


def usage(settings: dict) -> str:
    return USAGE.format(
        prog=Path(sys.argv[0]).name,
        checkout=settings["oca_france_dir"],
        db=settings["odoo_db_name"],
        user=settings["odoo_user"],
        production_data=settings["production_data_dir"],
        history=settings["deploy_history_file"],
    )


class Deploy(Steps):
    def __init__(self, settings: dict, args: Arguments):
        super().__init__(settings)
        self.args = args
        self.ref = args.ref
        self.commit = ""
        self.previous = ""
        self.production_data: Path | None = None
        self.snapshot = ""
        self.started = 0
        self.stopped_at = 0

    # --- Arguments

    def usage_error(self, message: str):
        try:
            print(usage(self.c), file=self.terminal_err, end="")
        except OSError:
            pass
        self.die(EXIT_USAGE, message)

    def check_user(self) -> None:
        user = self.c["odoo_user"]
        if whoami() != user:
            self.die(EXIT_REFUSED, f"run me as {user}: sudo -u {user} {' '.join(sys.argv)}")

    # --- While the site serves: nothing touched yet

    def fetch(self) -> None:
        self.log("fetching origin")
        # Bounded: a hung fetch must not hold the lock (and every other program) for ever.
        seconds = int(self.c["git_fetch_timeout_sec"])
        try:
            self.git("fetch", "--quiet", "--prune", "--tags", "--force", "origin", timeout=seconds)
        except runner.Failed:
            self.die(EXIT_FETCH, f"git fetch failed (or took more than {seconds}s)")

    def resolve_ref(self) -> None:
        """A tag first, then a branch of origin (so '18.0' is origin's, not a stale local
        branch), then anything git can resolve (origin/18.0, a commit)."""
        self.previous = self.git_output("rev-parse", "HEAD")
        for candidate in (f"refs/tags/{self.ref}", f"refs/remotes/origin/{self.ref}", self.ref):
            found = runner.run(
                [
                    "git",
                    "-C",
                    self.checkout,
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    candidate + "^{commit}",
                ],
                capture=True,
                check=False,
            )
            if found.returncode == 0:
                self.commit = found.stdout.strip()
                return
        self.die(EXIT_REFUSED, f"unknown git ref '{self.ref}' (after fetching origin)")

    def check_addons_paths(self) -> None:
        """Extra addons paths (odoo_addons_subdirs) must exist in the commit: Odoo would skip
        them."""
        for sub in self.c["odoo_addons_subdirs"]:
            kind = runner.run(
                ["git", "-C", self.checkout, "cat-file", "-t", f"{self.commit}:{sub}"],
                capture=True,
                check=False,
            ).stdout.strip()
            if kind != "tree":
                self.die(
                    EXIT_REFUSED,
                    f"addons path {sub} (odoo_addons_subdirs) does not exist in {self.ref}",
                )

    def check_python(self) -> None:
        """The commit's app picks its Python (.python-version, else requires-python): find it
        on this host, or have uv install it, while the site still runs the previous release."""
        with tempfile.TemporaryDirectory() as project:
            shown = runner.run(
                ["git", "-C", self.checkout, "show", f"{self.commit}:pyproject.toml"],
                capture=True,
                check=False,
            )
            if shown.returncode != 0:
                self.die(EXIT_REFUSED, f"{self.ref} has no pyproject.toml: not a uv project")
            Path(project, "pyproject.toml").write_text(shown.stdout)
            found = re.search(r'^requires-python *= *"(.*)"', shown.stdout, re.MULTILINE)
            wanted = found.group(1) if found else ""
            pinned = runner.run(
                ["git", "-C", self.checkout, "show", f"{self.commit}:.python-version"],
                capture=True,
                check=False,
            )
            if pinned.returncode == 0:
                Path(project, ".python-version").write_text(pinned.stdout)
                first = (pinned.stdout.splitlines() or [""])[0]
                wanted = f"{wanted or 'any'} (.python-version: {first})"
            python = runner.run(["uv", "python", "find"], cwd=project, capture=True, check=False)
            if python.returncode == 0:
                self.log(f"Python for {self.ref} ({wanted}): {python.stdout.strip()}")
                return
            self.log(f"no Python {wanted} on this host: asking uv to install it")
            installed = runner.run(
                ["uv", "python", "install"],
                cwd=project,
                capture=True,
                check=False,
                stderr=subprocess.STDOUT,
            )
            if installed.returncode != 0:
                lines = installed.stdout.splitlines()
                errors = [line for line in lines if "error" in line.lower()]
                reason = (errors or lines or [""])[0 if errors else -1]
                self.die(
                    EXIT_REFUSED,
                    f"{self.ref} needs Python {wanted}: none on this host and uv could not"
                    f" install it ({reason})",
                )
            self.log(f"installed Python {wanted} with uv")

    def check_production_data(self) -> None:
        """A backup directory is restored only once its dump and files match its manifest."""
        if self.args.recover:
            self.production_data = Path(self.args.recover)
            problem = backups.problem(self.production_data)
            if problem:
                self.die(EXIT_REFUSED, f"backup refused, not recovered: {problem}")
            self.log(f"backup to recover, as it is (no neutralization): {self.production_data}")
            return
        if not self.args.restore:
            return
        directory = Path(self.c["production_data_dir"])
        try:
            self.production_data = backups.newest_restorable(directory)
        except OSError:
            self.die(EXIT_REFUSED, f"--restore: could not list the production data in {directory}")
        if self.production_data is None:
            self.die(
                EXIT_REFUSED,
                "--restore: no production data (a backup, or a"
                f" <name>-YYYYMMDDTHHMMSS.dump) in {directory}",
            )
        # A backup directory against its manifest; either form: this host's pg_restore reads it.
        problem = backups.problem(self.production_data)
        if problem:
            self.die(EXIT_REFUSED, f"production data refused, not restored: {problem}")
        self.log(f"production data to restore: {self.production_data}")

    def check_disk(self) -> None:
        """The snapshot needs about the database's size on PostgreSQL's disk, plus a margin."""
        margin = int(self.c["deploy_disk_margin_mib"])
        try:
            db_bytes = int(self.psql_admin(f"SELECT pg_database_size('{self.db}')") or 0)
        except (runner.Failed, ValueError) as error:
            self.note_error(error)
            db_bytes = 0
        pg_root = self.c["postgresql_data_root"]
        avail = shutil.disk_usage(pg_root).free
        if avail < db_bytes + margin * 1048576:
            self.die(
                EXIT_REFUSED,
                f"not enough free disk for the snapshot of {self.db}: {mib(db_bytes)} MiB plus a"
                f" margin of {margin} MiB (deploy_disk_margin_mib) needed on {pg_root},"
                f" {mib(avail)} MiB free",
            )
        avail = shutil.disk_usage(self.filestore_root).free
        if avail < margin * 1048576:
            self.die(
                EXIT_REFUSED,
                f"not enough free disk on {self.filestore_root}: {mib(avail)} MiB free,"
                f" {margin} MiB (deploy_disk_margin_mib) needed",
            )

    # --- The downtime's own steps

    def restore_data(self) -> None:
        """The database and filestore replaced with a backup directory or a dump + archive."""
        data = self.production_data
        dump, files = data, None
        archive = Path(str(data).removesuffix(".dump") + ".filestore.tar.gz")
        if data.is_dir():
            # The dump its manifest names (verified before the stop), never whatever lies there.
            dump = data / backups.read_manifest(data)["dump"]
            files = data / backups.FILESTORE
        self.run(["dropdb", "--if-exists", self.db])
        self.run(["createdb", self.db])
        self.run(backups.restore_command(self.db, dump))
        live = self.filestore_root / self.db
        shutil.rmtree(live, ignore_errors=True)
        live.mkdir(parents=True)
        if files is not None:
            self.copy_contents(files, live)
        elif archive.is_file():
            self.run(["tar", "-xzf", str(archive), "-C", str(live), "--strip-components=1"])
        else:
            self.log(f"no filestore archive beside {dump}: empty filestore")

    def neutralize(self) -> None:
        self.run(self.c["neutralize_command"], cwd=self.checkout)
        # Production data must never start here unless Odoo says it is neutralized. Odoo reads
        # the flag with str2bool: its own neutralize.sql stores "true"; "True", "1"... count.
        flag = runner.output(
            [
                "psql",
                "-XAtq",
                "-d",
                self.db,
                "-c",
                "SELECT value FROM ir_config_parameter WHERE key = 'database.is_neutralized'",
            ]
        )
        if flag.lower() not in ("true", "t", "1", "yes", "y", "on"):
            self.log(
                f"ERROR: {self.db} is not flagged neutralized after neutralize"
                f" (database.is_neutralized: '{flag}')"
            )
            raise StepFailed("neutralize")

    def make_it_a_copy(self) -> None:
        """A copy in Odoo's sense, before it ever starts: its own uuid and secret, and none of
        production's credentials (mail servers' passwords, payment providers' keys...)."""
        self.run(
            [
                "psql",
                "-XAq",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                self.db,
                "-f",
                str(LIB_DIR / "production_copy.sql"),
            ]
        )

    def set_environment_parameters(self) -> None:
        """This instance's own server-environment values (web.base.url frozen, ribbon...)
        written into the restored database: nothing in it points at production any more."""
        self.run(
            ["psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", self.db],
            input=self.c["environment_sql"],
        )

    def record_production_data_in_use(self) -> None:
        """Which production data recette now runs on, and when production took it."""
        data = self.production_data
        if data.is_dir():
            taken = backups.read_manifest(data)["time"]
        else:
            taken = datetime.fromtimestamp(data.stat().st_mtime).astimezone()
            taken = taken.isoformat(timespec="seconds")
        Path(self.c["production_data_in_use_file"]).write_text(f"{data.name} {taken}\n")

    def detach_from_session(self) -> None:
        """From here on, the operator's session cannot stop the deploy half-way: Ctrl-C and a
        lost connection (SIGHUP, a closed pipe) are ignored, by this and what it runs."""
        for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(signum, signal.SIG_IGN)
        self.log("from now on, Ctrl-C or a lost connection do not interrupt the deploy")

    def record_deploy(self, result: str, failed_step: str = "", error: str = "") -> None:
        self.record(
            action="deploy",
            by=self.by,
            **{"from": self.previous},
            to=self.commit,
            ref=self.ref,
            restore=self.args.restore,
            **({"recovered_from": self.args.recover} if self.args.recover else {}),
            result=result,
            failed_step=failed_step,
            error=error,
            duration_s=int(now()) - self.started,
            downtime_s=int(now()) - self.stopped_at if self.stopped_at else None,
            log=str(self.log_file or ""),
        )

    # --- The deploy

    def deploy(self) -> None:
        self.started = int(now())
        self.fetch()
        self.resolve_ref()
        self.log(f"deploying {self.ref} ({self.commit}), replacing {self.previous}")
        self.check_addons_paths()
        self.check_python()
        self.check_production_data()
        self.check_disk()
        self.log(
            "preparing the release while the site serves: worktree and venv in"
            f" {self.c['prepared_dir']}"
        )
        try:
            self.prepare_release(self.commit)
        except FAILURES:
            self.discard_prepared()
            self.die(
                EXIT_REFUSED,
                f"could not prepare {self.ref} (its venv did not sync): see {self.log_file}",
            )
        # UTC: snapshot names sort by time all year.
        self.snapshot = f"{self.db}-snap-{datetime.utcnow():%Y%m%dT%H%M%S}"
        # Stopped before a recovery: a host held for it (kept_stopped).
        keep_stopped = bool(self.args.recover) and not runner.succeeds(
            ["systemctl", "is-active", "--quiet", self.service]
        )
        if keep_stopped:
            self.log(f"{self.service} is stopped: it starts only once the recovered data runs")
        self.set_state(
            step="preflight",
            started=self.started,
            by=self.by,
            ref=self.ref,
            **{"from": self.previous},
            to=self.commit,
            restore=str(self.args.restore or bool(self.args.recover)).lower(),
            snapshot=self.snapshot,
            keep_stopped=str(keep_stopped).lower(),
            log=self.log_file,
            pid=os.getpid(),
        )
        self.detach_from_session()
        self.in_downtime = True
        try:
            self.step("stopping", f"stopping {self.service}")
            self.stopped_at = int(now())
            self.run(["systemctl", "stop", self.service])
            self.step("snapshot", f"snapshot of {self.db} and its filestore: {self.snapshot}")
            self.take_snapshot(self.snapshot)
        except Exception as error:  # noqa: BLE001 - whatever failed, the previous release back
            self.stop_failed(error)
        try:
            self.release()
        except Exception as error:  # noqa: BLE001 - whatever failed, rolled back
            self.release_failed(error)
        self.log(
            f"deployed {self.ref} ({self.commit}): the site was down"
            f" {int(now()) - self.stopped_at} s"
        )
        if self.args.restore:
            try:
                self.record_production_data_in_use()
            except (OSError, KeyError, ValueError, backups.BackupError):
                self.warn("WARNING: could not record the production data in use")
        try:
            self.prune_snapshots()
        except FAILURES as error:
            self.note_error(error)
            self.warn("WARNING: could not prune old snapshots")
        self.discard_prepared()
        self.resync_checkout()
        self.record_deploy("deployed")
        self.clear_state()

    def release(self) -> None:
        self.step("switching", f"resetting {self.checkout} to {self.commit} and syncing the venv")
        self.checkout_code(self.commit)
        if self.args.restore or self.args.recover:
            self.step("restoring", f"restoring {self.production_data} into {self.db}")
            self.restore_data()
        if self.args.restore:
            self.step(
                "neutralizing",
                f"neutralizing {self.db}, making it a copy (its own uuid and secret, no"
                " production credential) and setting its own parameters (web.base.url...)",
            )
            self.neutralize()
            self.make_it_a_copy()
            self.set_environment_parameters()
        self.step("updating", "updating modules")
        self.run(self.c["update_command"], cwd=self.checkout)
        self.step("starting", f"starting {self.service}")
        if not self.start_service():
            raise StepFailed("start")
        self.set_state(step="healthy")

    def failure_noted(self, error: Exception) -> tuple[str, str]:
        """The failed step and its error line; an error of ours (not a command's) is logged."""
        self.note_error(error)
        self.discard_prepared()
        return self.state.get("step", ""), self.failed_step_error()

    def stop_failed(self, error: Exception):
        failed_step, reason = self.failure_noted(error)
        self.show_failed_step()
        self.warn("ERROR: stop or snapshot failed; starting the previous release again")
        try:
            self.drop_snapshot(self.snapshot)
        except FAILURES as error:
            self.note_error(error)  # a snapshot half made: dropped by the next prune
        # The previous release, untouched, started again (the guard lets it pass; a repair
        # knows there is nothing to put back).
        self.set_state(step="restarting")
        if not self.start_again():
            # Exit 4 says the previous release runs: here it does not.
            self.record_deploy("broken", failed_step, reason)
            self.warn(
                "ERROR: the previous release did not start again: the site is down (state kept"
                f" in {self.state_file})"
            )
            raise Exit(EXIT_BROKEN)
        self.record_deploy("failed", failed_step, reason)
        self.log(
            "the previous release is in place, stopped as before the recovery"
            if self.kept_stopped()
            else "the previous release is up again"
        )
        self.clear_state()
        raise Exit(EXIT_BACKUP)

    def release_failed(self, error: Exception):
        failed_step, reason = self.failure_noted(error)
        self.show_failed_step()
        status = error.status if isinstance(error, runner.Failed) else 1
        self.warn(f"ERROR: the release failed at step '{failed_step}' (status {status})")
        self.log(f"ROLLBACK: putting back {self.previous} and the snapshot {self.snapshot}")
        try:
            self.rollback_to(self.previous, self.snapshot)
        except Exception as rollback_error:  # noqa: BLE001 - said, then exit 6
            self.note_error(rollback_error)
            self.show_failed_step()
            self.record_deploy("broken", failed_step, reason)
            self.warn(
                f"ERROR: ROLLBACK FAILED: the site may be down; state kept in {self.state_file}"
            )
            raise Exit(EXIT_BROKEN) from None
        self.record_deploy("rolled back", failed_step, reason)
        self.log(
            f"rolled back to {self.previous}: "
            + (
                f"{self.service} stays stopped, as before the recovery"
                if self.kept_stopped()
                else "the site is up on the previous release"
            )
        )
        self.clear_state()
        raise Exit(EXIT_ROLLED_BACK)

    # --- The other modes

    def dry_run(self) -> None:
        self.fetch()
        self.resolve_ref()
        self.log(f"running: {self.previous}; {self.ref} is {self.commit}")
        if self.previous == self.commit:
            self.log(f"nothing to deploy: {self.ref} is the running release")
            return
        out = self.terminal_out
        span = f"{self.previous}..{self.commit}"
        print(f"commits to deploy ({span}):", file=out)
        print(indented(self.git_output("log", "--oneline", "--no-decorate", span)), file=out)
        if not runner.succeeds(
            ["git", "-C", self.checkout, "merge-base", "--is-ancestor", self.previous, self.commit]
        ):
            print(f"commits of the running release that {self.ref} does not have:", file=out)
            back = f"{self.commit}..{self.previous}"
            print(indented(self.git_output("log", "--oneline", "--no-decorate", back)), file=out)
        # The addons whose files changed, in the repository.
        names = self.git_output("diff", "--name-only", self.previous, self.commit).splitlines()
        print("addons whose files changed:", file=out)
        for addon in sorted({name.split("/", 1)[0] for name in names if name}):
            if any(
                runner.succeeds(
                    [
                        "git",
                        "-C",
                        self.checkout,
                        "cat-file",
                        "-e",
                        f"{commit}:{addon}/__manifest__.py",
                    ]
                )
                for commit in (self.commit, self.previous)
            ):
                print(f"  {addon}", file=out)
        # And what the update would do to this database, with the target's code and venv
        # (click-odoo-update --list-only: the addons whose checksum differs, changing nothing).
        self.log(f"preparing {self.ref} beside the running release to ask click-odoo-update")
        try:
            self.prepare_release_quietly()
        except FAILURES:
            self.warn(
                f"WARNING: could not prepare {self.ref} (its venv did not sync): no list from"
                " click-odoo-update"
            )
        else:
            print(f"click-odoo-update --list-only with {self.ref}:", file=out, flush=True)
            listed = runner.run(
                self.c["list_updates_command"],
                cwd=self.prepared,
                capture=True,
                check=False,
                stderr=subprocess.STDOUT,
            )
            print(indented(listed.stdout.rstrip("\n")), file=out)
        self.discard_prepared()
        self.resync_checkout()
        self.log("dry run: nothing was changed")

    def prepare_release_quietly(self) -> None:
        with open(os.devnull, "w") as devnull:
            self.log_handle, saved = devnull, self.log_handle
            try:
                self.prepare_release(self.commit)
            finally:
                self.log_handle = saved

    def status(self) -> None:
        out = self.terminal_out
        try:
            status.main([])
        except Exception as error:  # noqa: BLE001 - the rest of the status still says its part
            print(f"odoo-status: {type(error).__name__}: {error}", file=out)
        print(f"last deploys ({self.history_file}):", file=out)
        entries = state.history(self.history_file)[-5:]
        for e in entries:
            down = "" if e.get("downtime_s") is None else f", down {e['downtime_s']} s"
            step = f" at {e['failed_step']}" if e.get("failed_step") else ""
            change = f"{(e.get('from') or '?')[:12]} -> {(e.get('to') or '?')[:12]}"
            print(
                f"  {e.get('time')} {e.get('action')} {e.get('ref') or ''} by {e.get('by')}:"
                f" {e.get('result')}{step} ({change}, {e.get('duration_s')} s{down})",
                file=out,
            )
        if not entries:
            print("  none yet", file=out)
        print("snapshots (newest last; database size, filestore files):", file=out)
        try:
            names = self.snapshots()
        except runner.Failed:
            names = []
        for name in names:
            try:
                size = self.psql_admin(f"SELECT pg_database_size('{name}')")
            except runner.Failed:
                size = "0"
            files = self.snapshot_dir / name / "filestore"
            count = sum(len(found) for _, _, found in os.walk(files))
            print(f"  {name}: {mib(int(size or 0))} MiB, {count} files", file=out)
        pg_root = self.c["postgresql_data_root"]
        print(
            f"free disk: {human(shutil.disk_usage(pg_root).free)} on {pg_root},"
            f" {human(shutil.disk_usage(self.filestore_root).free)} on {self.filestore_root}",
            file=out,
        )
        found = state.unfinished(self.state_file)
        if found is not None:
            print(
                f"UNFINISHED: a deploy of {found.get('ref', '?')} stopped at step"
                f" {found.get('step', '?')} (repaired within a minute by"
                " odoo-deploy-repair.timer)",
                file=out,
            )

    def activity(self) -> None:
        """What holds the instance now, for the apply: the unfinished deploy, and who holds
        the lock (a short hold, odoo-auto-deploy's fetch each minute, is waited for)."""
        held = state.is_held(self.lock_file)
        deadline = time.monotonic() + 10
        while held and time.monotonic() < deadline:  # a short hold passes; an apply's not
            if state.holder(self.lock_file).startswith(APPLY_HOLDER):
                break
            time.sleep(0.5)
            held = state.is_held(self.lock_file)
        found = state.unfinished(self.state_file)  # after the wait: a deploy may have ended
        holder = state.holder(self.lock_file) or "a holder that did not name itself"
        activity = {
            "unfinished": (
                None if found is None else {"ref": found.get("ref"), "step": found.get("step")}
            ),
            "held_by": holder if held else None,
            "held_by_apply": held and holder.startswith(APPLY_HOLDER),
        }
        print(json.dumps(activity), file=self.terminal_out)

    def apply_lock(self) -> None:
        """The lock, held for an apply while it changes what a deploy also changes (the venv,
        the server config, the service): taken as the others take it (waiting up to --wait,
        never on an unfinished deploy), said ready to systemd, held until stopped."""
        try:
            self.held = state.take(self.lock_file, self.args.wait, who=APPLY_HOLDER)
        except state.LockBusy:
            self.die(
                EXIT_REFUSED,
                f"a deploy, a backup or a repair still holds {self.lock_file} after"
                f" {self.args.wait}s ({state.holder(self.lock_file)}): not applied",
            )
        found = state.unfinished(self.state_file)
        if found is not None:
            self.die(
                EXIT_REFUSED,
                f"a deploy of {found.get('ref', '?')} is unfinished (step"
                f" {found.get('step', '?')}): its repair comes first; not applied",
            )
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        notify_ready()
        watched = self.args.while_pid
        self.log(
            f"{self.lock_file} held for an apply, until it is done"
            + (f" or its session (pid {watched}) ends" if watched else "")
        )
        while not watched or state.alive(watched):
            time.sleep(1)
        self.log(f"the apply's session (pid {watched}) ended: {self.lock_file} released")

    def repair_command(self) -> None:
        """The periodic check and the boot: repair a deploy that died, if none is running."""
        if state.unfinished(self.state_file) is None:
            return
        # A short hold (odoo-auto-deploy's fetch, each minute too) passes; a running deploy
        # not: then nothing was repaired, and the exit status says so.
        try:
            self.held = state.take(
                self.lock_file, int(self.c["repair_lock_wait_sec"]), who="deploy --repair"
            )
        except state.LockBusy:
            self.die(EXIT_REFUSED, f"a deploy or backup holds {self.lock_file}: not repaired (yet)")
        self.open_log()
        for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(signum, signal.SIG_IGN)
        if not self.repair(boot=self.args.boot):
            raise Exit(EXIT_BROKEN)

    def guard_command(self) -> None:
        """ExecStartPre of the service: it never starts on the data of an unfinished deploy. A
        deploy that died is repaired first (as at boot: its data put back, the start left to
        systemd); while a deploy runs, only its own start passes; else refused."""
        if state.unfinished(self.state_file) is None:
            return
        try:
            # 2 s: past a look at the lock (deploy --activity), not past a running deploy.
            self.held = state.take(self.lock_file, 2, say=False, who="deploy --guard")
        except state.LockBusy:
            found = state.unfinished(self.state_file) or {}
            if found.get("step", "") in OWN_STARTS or not found:
                return
            self.die(
                EXIT_REFUSED,
                f"a deploy of {found.get('ref', '?')} is at step '{found.get('step', '?')}':"
                f" {self.service} starts when that deploy starts it",
            )
        self.open_log()
        self.log(
            f"{self.service} is starting on the data of a deploy that died: repairing it first"
        )
        if not self.repair(boot=True):
            self.die(
                EXIT_BROKEN,
                f"the repair failed: {self.service} does not start (see {self.log_file})",
            )

    def main(self) -> None:
        os.chdir("/")  # sudo keeps the caller's directory, which odoo may not be allowed to read
        self.check_user()
        mode = self.args.mode
        if mode == "status":
            return self.status()
        if mode == "activity":
            return self.activity()
        if mode == "repair":
            return self.repair_command()
        if mode == "guard":
            return self.guard_command()
        if mode == "apply-lock":
            return self.apply_lock()
        self.held = self.take_lock(self.args.wait)
        if mode == "dry-run":  # its fetch and worktree: one at a time
            return self.dry_run()
        self.open_log()
        if state.unfinished(self.state_file) is not None:
            for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
                signal.signal(signum, signal.SIG_IGN)
            if not self.repair():
                self.die(
                    EXIT_BROKEN,
                    f"the unfinished deploy could not be repaired: see {self.log_file}",
                )
            for signum in (signal.SIGINT, signal.SIGHUP):
                signal.signal(
                    signum,
                    signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL,
                )
        self.deploy()


def parse(argv: list[str], settings: dict, fail) -> Arguments:
    """The arguments, or fail(message) (a usage error, exit 1)."""
    args = Arguments()

    def set_mode(mode: str) -> None:
        if args.mode not in ("deploy", mode):
            fail(f"--{args.mode} and --{mode} do not go together", True)
        args.mode = mode

    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        if arg in ("-R", "--restore"):
            args.restore = True
        elif arg in ("--dry-run", "--status", "--repair", "--guard", "--activity"):
            set_mode(arg[2:])
        elif arg == "--apply-lock":
            set_mode("apply-lock")
            if not rest or not re.fullmatch(r"[0-9]+", rest[0]):
                fail("--apply-lock takes a number of seconds", False)
            args.wait = int(rest.pop(0))
        elif arg == "--while-pid":
            if not rest or not re.fullmatch(r"[0-9]+", rest[0]):
                fail("--while-pid takes a process id", False)
            args.while_pid = int(rest.pop(0))
        elif arg == "--recover":
            if not rest:
                fail("--recover takes a backup directory", False)
            args.recover = rest.pop(0)
        elif arg == "--boot":
            args.boot = True
        elif arg == "--wait":
            if not rest or not re.fullmatch(r"[0-9]+", rest[0]):
                fail("--wait takes a number of seconds", False)
            args.wait = int(rest.pop(0))
        elif arg in ("-h", "--help"):
            print(usage(settings), end="")
            raise Exit(0)
        elif arg.startswith("-"):
            fail(f"unknown option: {arg}", True)
        else:
            if args.ref:
                fail(f"only one git ref, got '{args.ref}' and '{arg}'", True)
            args.ref = arg
    if args.while_pid and args.mode != "apply-lock":
        fail("--while-pid goes with --apply-lock", False)
    if args.boot and args.mode != "repair":
        fail("--boot goes with --repair", False)
    if args.mode in ("status", "repair", "guard", "activity", "apply-lock"):
        if args.ref or args.restore or args.recover:
            fail(f"--{args.mode} takes no ref nor -R nor --recover", False)
        return args
    if args.recover:
        recovering(args, settings, fail)
    if not args.ref:
        fail("missing <git-ref>", True)
    pattern = settings["deploy_ref_pattern"]
    if pattern and not args.from_manifest and not re.search(pattern, args.ref):
        fail(f"'{args.ref}' does not match {pattern} (deploy a release tag here)", False)
    if args.restore and settings["deploy_restore_allowed"] is not True:
        fail(
            f"--restore is not allowed on {settings['odoo_db_name']}: it would replace its data",
            False,
        )
    return args


def recovering(args: Arguments, settings: dict, fail) -> None:
    """--recover: production's own data, as it is, on the host that pushes it off-site (never
    where -R restores neutralized copies); at the commit its manifest names unless a ref is
    given (a ref then follows this host's rule, like any deploy's)."""
    if args.restore:
        fail("-R and --recover do not go together", False)
    if settings["deploy_restore_allowed"] or "offsite_repository_url" not in settings:
        fail(
            f"--recover is not allowed on {settings['odoo_db_name']}: production's data, not"
            " neutralized, is recovered on production alone (offsite_enabled)",
            False,
        )
    args.recover = os.path.abspath(args.recover)  # read again once the deploy is in /
    try:
        commit = str(backups.read_manifest(Path(args.recover)).get("commit"))
    except (backups.BackupError, OSError) as error:
        fail(f"--recover: {args.recover} is no backup ({error})", False)
    if not args.ref:
        if not re.fullmatch(r"[0-9a-f]{40}", commit):
            fail(
                f"--recover: the manifest's commit {commit!r} is no commit: give a <git-ref>", False
            )
        args.ref = commit
        args.from_manifest = True


def main(argv: list[str]) -> int:
    settings = config.load()
    deploy = None
    try:

        def fail(message: str, show_usage: bool):
            if show_usage:
                print(usage(settings), file=sys.stderr, end="")
            say(f"ERROR: {message}", sys.stderr)
            raise Exit(EXIT_USAGE)

        args = parse(argv, settings, fail)
        deploy = Deploy(settings, args)
        deploy.main()
        return 0
    except Exit as leaving:
        return leaving.status
    except KeyboardInterrupt:  # Ctrl-C before the stop (after it, it is ignored)
        if deploy is not None:
            deploy.discard_prepared()
            deploy.warn("interrupted before the site was stopped: nothing touched")
        return 130
    except Exception:  # a defect of ours: its traceback in the log, and a status that says
        if deploy is None:
            raise
        deploy.note(traceback.format_exc())
        deploy.warn(f"ERROR: unexpected error, see {deploy.log_file or 'the traceback above'}")
        if deploy.log_file is None:
            traceback.print_exc()
        unfinished = state.unfinished(deploy.state_file) is not None
        return EXIT_BROKEN if unfinished else EXIT_REFUSED
    finally:
        if deploy is not None:
            if deploy.held is not None:
                deploy.held.close()  # released, and nobody named in it
            if deploy.log_handle is not None:
                deploy.log_handle.close()


def indented(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


def human(size: int) -> str:
    """df -h's way: 1024-based, one decimal under 10."""
    for unit in ("", "K", "M", "G", "T"):
        if size < 1024 or unit == "T":
            return f"{size:.1f}{unit}" if size < 10 and unit else f"{size:.0f}{unit}"
        size /= 1024
    return str(size)
