"""What the task modules share: facts, a guarded command, template installs (secret-safe).

Facts here are read when an operation runs (pyinfra 3 re-evaluates operations at execution),
so a check on something an earlier operation installs sees the real state.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import time
from collections.abc import Callable
from fnmatch import fnmatch
from io import StringIO

from pyinfra import host
from pyinfra.api import FactBase, FileUploadCommand, StringCommand, operation
from pyinfra.api.exceptions import OperationError
from pyinfra.api.util import get_template
from pyinfra.facts.files import File, Sha1File
from pyinfra.facts.server import Command, LinuxDistribution
from pyinfra.operations import files, systemd
from pyinfra.operations.util import any_changed
from pyinfra.operations.util import files as file_utils

from tasks.render import rendered_files, template_path
from tasks.settings import ReleaseData


def host_release() -> str:
    """The host's release as group_data's distributions names it: "<ID>-<VERSION_ID>"."""
    meta = host.get_fact(LinuxDistribution)["release_meta"]
    return f"{meta.get('ID', 'unknown')}-{meta.get('VERSION_ID', 'unknown')}"


def login_user() -> str:
    """The user pyinfra logged in as (the SSH config's `User`), asked without sudo."""
    return host.get_fact(Command, "id -un", _sudo=False)


def sudo_unless_root() -> None:
    """Reached as a non-root user (the README's passwordless sudo), every operation and fact
    runs through sudo; reached as root, none needs it. Either way, what pyinfra uploads passes
    through apply_upload_dir, the login user's own, never a shared /tmp (upload_temp_file)."""
    if login_user() != "root":
        host.data._sudo = True
    host.data._temp_dir = host.data.apply_upload_dir


def upload_temp_file(dest: str) -> str:
    """Where an upload to `dest` waits for sudo to copy it: in apply_upload_dir."""
    return host.get_temp_filename(dest, temp_directory=host.data.apply_upload_dir)


def host_data() -> ReleaseData:
    """host.data with the overrides of the host's release applied: what the tasks read."""
    return ReleaseData(host.data, host_release())


class PsqlValue(FactBase):
    """First field of the first row a query returns ('' for no row), None without psql.

    Run it as the postgres user: host.get_fact(PsqlValue, ..., _sudo=True, _sudo_user="postgres").
    """

    def requires_command(self, *args, **kwargs) -> str:
        return "psql"

    def command(self, query: str, database: str = "postgres") -> str:
        # A missing database reads as no row, so "does it exist yet?" checks stay simple. The
        # search_path is PostgreSQL's own: never one the database's owner set on it.
        return (
            f"PGOPTIONS='-c search_path=pg_catalog' psql -XAtq -d {shlex.quote(database)}"
            f" -c {shlex.quote(query)} 2>/dev/null || true"
        )

    def process(self, output: list[str]) -> str:
        return output[0].strip() if output else ""


class CommandSucceeds(FactBase):
    """Whether a shell command exits 0 (its output is thrown away)."""

    def command(self, command: str) -> str:
        return f"({command}) >/dev/null 2>&1 && echo yes || echo no"

    def process(self, output: list[str]) -> bool:
        return bool(output) and output[-1].strip() == "yes"


class InstanceActivity(FactBase):
    """What holds the instance now, as the host program says it (deploy --activity, as
    odoo): {"unfinished": {"ref", "step"} or None, "held_by": who holds the lock or None,
    "held_by_apply": whether that is an apply's hold}. None before the programs are installed
    or from the bash programs before them (nothing to ask: the apply's own lock decides);
    {"error": what it said} when the program failed."""

    def command(self, program: str, user: str) -> str:
        program, user = shlex.quote(program), shlex.quote(user)
        return (
            f"if [ -x {program} ] && id -u {user} >/dev/null 2>&1; then"
            f" runuser -u {user} -- {program} --activity 2>&1 || echo FAILED; fi"
        )

    @staticmethod
    def default():
        return None

    def process(self, output: list[str]):
        text = "\n".join(output)
        if "unknown option: --activity" in text:
            return None  # the programs of before this one: their lock decides
        try:
            found = json.loads(text)
        except ValueError:
            return {"error": text.removesuffix("FAILED").strip()[-500:] or "no output"}
        return found if isinstance(found, dict) else {"error": text[-500:]}


# This apply's own (a name per apply: the previous one's unit may still be unloading).
APPLY_LOCK_UNIT = f"oca-france-apply-lock-{int(time.time())}-{os.getpid()}.service"
# The SSH session this apply's commands run in (sshd's per-connection process, found up the
# command's parents): the hold ends with it, so an apply that dies leaves no lock behind.
SSH_SESSION_PID = (
    'pid=$$; session=; while [ "$pid" -gt 1 ]; do'
    ' case "$(cat /proc/$pid/comm)" in sshd|sshd-session) session=$pid; break ;; esac;'
    " pid=$(sed 's/.*) //' /proc/$pid/stat | cut -d' ' -f2); done"
)


def as_login_sudo() -> dict:
    """How a raw command of an operation runs: through sudo when the login is not root."""
    return {"_sudo": getattr(host.data, "_sudo", False)}


def enable_and_start(service: str, what: str) -> None:
    """Enable and start a unit that serves or acts on the instance's data (the service, the
    backup and check timers). An apply for a recovery (make apply-prod RECOVERING=1) leaves
    them as they are, off on a bare host: make recover-prod starts the service once the
    recovered data runs, and its closing apply (without RECOVERING) turns them on."""
    if host_data().recovering:
        systemd.service(
            name=f"Leave {service} as it is until the recovery is done (RECOVERING)",
            service=service,
            running=None,
            enabled=None,
        )
        return
    systemd.service(
        name=f"Enable and start {service}{f' ({what})' if what else ''}",
        service=service,
        running=True,
        enabled=True,
    )


@operation()
def hold_instance_lock(program: str, user: str, wait: int, max_sec: int):
    """The instance's lock, held for the rest of the apply (a transient unit, as `user`, runs
    `deploy --apply-lock`): a deploy, a backup or a repair never runs beside what the apply
    changes. Held until the apply releases it or its SSH session ends (at most `max_sec`):
    another apply meanwhile is refused at its preflight.
    Taken when the apply executes (never in a dry run); not a change of the host."""
    if host.state.is_executing:
        unit = APPLY_LOCK_UNIT
        command = (
            f"{SSH_SESSION_PID};"
            f" systemd-run --quiet --collect --unit={unit} --uid={user} --gid={user}"
            f" -p Type=notify -p TimeoutStartSec={wait + 60} -p RuntimeMaxSec={max_sec}"
            f" {shlex.quote(program)} --apply-lock {wait} ${{session:+--while-pid $session}}"
            f" || {{ sleep 1; journalctl -q -o cat -n 3 -u {unit} >&2; exit 1; }}"
        )
        ok, output = host.run_shell_command(StringCommand(command), **as_login_sudo())
        if not ok:
            said = " ".join(line.strip() for line in output.stderr_lines[-4:])
            raise OperationError(f"the instance's lock was not taken for this apply: {said}")
    host.noop(f"the instance's lock is held for this apply ({APPLY_LOCK_UNIT})")
    return
    yield  # an operation: a generator


@operation()
def release_instance_lock():
    """The apply's hold released: deploys, backups and repairs may run again."""
    if host.state.is_executing:
        unit = APPLY_LOCK_UNIT
        ok, _ = host.run_shell_command(
            StringCommand(f"systemctl is-active --quiet {unit} && systemctl stop {unit}"),
            **as_login_sudo(),
        )
        if not ok:  # ended before the apply did (apply_lock_max_sec): say so
            host.log(f"the instance's lock had already been released ({unit} was not running)")
    host.noop(f"the instance's lock is released ({APPLY_LOCK_UNIT} stopped)")
    return
    yield


def command_succeeds(command: str, user: str) -> bool:
    return host.get_fact(CommandSucceeds, command=command, _sudo=True, _sudo_user=user)


def psql_value(query: str, database: str = "postgres") -> str | None:
    return host.get_fact(
        PsqlValue, query=query, database=database, _sudo=True, _sudo_user="postgres"
    )


def database_exists(name: str) -> bool:
    query = f"SELECT 1 FROM pg_database WHERE datname = '{name}'"
    return psql_value(query) == "1"


@operation()
def run_unless(command: str, done: Callable[[], bool]):
    """Run `command` unless `done()` says its effect is already there.

    `done` is asked both when pyinfra plans (dry run) and when it executes, so a converged host
    reports no change and a dry run reports only what would really run.
    """
    if done():
        host.noop("already done")
        return
    yield StringCommand(command)


# Whether a process (argv[1], or with argv[2] "child" its youngest child) started before one
# of the files argv[3:] was last written, to within a second (an apply writes seconds before
# its restart): exits 2 then, and only then (a process gone meanwhile, a file dated in the
# future: not older). Its start from boot on CLOCK_BOOTTIME, /proc/<pid>/stat's clock (lxcfs
# rewrites a container's /proc/uptime); /proc, no procps.
STARTED_BEFORE = """
import glob, os, sys, time
pid, which, paths = sys.argv[1], sys.argv[2], sys.argv[3:]


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:  # gone meanwhile
        return ""


procs = [pid]
if which == "child":
    procs = [c for f in glob.glob(f"/proc/{pid}/task/*/children") for c in read(f).split()]
stats = [read(f"/proc/{p}/stat") for p in procs]
ticks = [int(stat.rsplit(") ", 1)[1].split()[19]) for stat in stats if stat]
if ticks:
    now = time.time()
    age = time.clock_gettime(time.CLOCK_BOOTTIME) - max(ticks) / os.sysconf("SC_CLK_TCK")
    written = max([m for m in (os.stat(path).st_mtime for path in paths) if m <= now], default=0)
    sys.exit(2 if now - age + 1 < written else 0)
"""


def catch_up(name: str, unit: str, written: dict, command: str, newest_child=False):
    """Run `command` (a restart, a reload) when `unit` runs a process started before one of
    the files `written` ({template: the install_template operation}) was last written: the
    restart an apply gates on their change is lost if it dies between the write and the
    restart, and the next apply sees no change. Not when one changed now: that restart is
    this apply's own. The process is the unit's main one, or with newest_child its youngest
    child (HAProxy's worker: a reload starts a new one, the master stays)."""
    paths = [rendered_files(host_data())[template][0] for template in written]
    which = "child" if newest_child else "main"
    runs_them = (
        f"pid=$(systemctl show -p MainPID --value {unit});"
        ' [ "${pid:-0}" = 0 ] ||'
        f' python3 -I -c {shlex.quote(STARTED_BEFORE)} "$pid" {which} {shlex.join(paths)};'
        " [ $? -ne 2 ]"
    )
    run_unless(
        name=name,
        done=lambda: command_succeeds(runs_them, "root"),
        command=command,
        _if=lambda: not any_changed(*written.values())(),
    )


STAGED_SUFFIX = ".pyinfra-new"


def renamed_into_place(commands, check: str | None = None):
    """An operation's commands, each file upload going to a staged name beside its
    destination and then renamed over it. pyinfra writes an upload into the file itself: a
    reader at that moment (a timer's program reading host.json, a program starting while its
    files are rewritten) would see half a file. A rename gives it the old file or the new.

    Through sudo, pyinfra uploads to a temporary file first: it is made 0600 by the login user
    before any byte goes in (pyinfra then lets the operation's sudo user, if any, read it), and
    removed after.

    check: a command run on the staged file first ({} is its path): when it fails, the
    operation fails and the file in place stays as it was."""
    for command in commands:
        if not isinstance(command, FileUploadCommand):
            yield command
            continue
        dest = shlex.quote(command.dest)
        staged = shlex.quote(command.dest + STAGED_SUFFIX)
        temp = upload_temp_file(command.dest)
        yield StringCommand("install", "-m", "600", "/dev/null", temp, _sudo=False)
        yield FileUploadCommand(
            command.src,
            command.dest + STAGED_SUFFIX,
            remote_temp_filename=temp,
            **command.connector_arguments,
        )
        if check:
            yield StringCommand(check.format(staged))
        # The old file's owner and mode until the operation sets the wanted ones: no moment
        # where a program is not executable, or a file more readable than it was.
        yield StringCommand(
            f"if [ -e {dest} ]; then chown --reference={dest} {staged}"
            f" && chmod --reference={dest} {staged}; fi && mv -f {staged} {dest}"
        )
        yield StringCommand("rm", "-f", temp, _sudo=False)


@operation()
def atomic_template(check: str | None = None, **arguments):
    """files.template, the file replaced in one rename (renamed_into_place), once `check`
    passed on it."""
    yield from renamed_into_place(files.template._inner(**arguments), check)


class TreeManifest(FactBase):
    """Each directory and file under a directory but the excluded ones (find -name patterns,
    files and directories apart): its type, mode, owner and path, then each file's sha1, in
    one round trip. None without the directory."""

    @staticmethod
    def default():
        return None

    def command(self, path: str, exclude: list[str], exclude_dir: list[str]) -> str:
        def named(patterns: list[str]) -> str:
            return " -o ".join(f"-name {shlex.quote(pattern)}" for pattern in patterns) or "-false"

        walk = (
            f"find . -type d \\( {named(exclude_dir)} \\) -prune"
            f" -o -type f \\( {named(exclude)} \\) -o"
        )
        return (
            f"if cd {shlex.quote(path)} 2>/dev/null; then"
            f" {walk} -printf '%y %m %u:%g %p\\n' | LC_ALL=C sort &&"
            f" {walk} -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha1sum; fi"
        )

    def process(self, output: list[str]) -> str | None:
        return "\n".join(output) or None


def local_manifest(
    src: str, exclude: list[str], exclude_dir: list[str], mode: str, dir_mode: str, owner: str
) -> str:
    """TreeManifest's text for `src` as a sync with these modes and owner installs it."""
    entries, sums = [f"d {dir_mode} {owner} ."], []
    for root, dirs, names in os.walk(src):
        dirs[:] = [d for d in dirs if not any(fnmatch(d, pattern) for pattern in exclude_dir)]
        relative = os.path.relpath(root, src)
        for name in dirs:
            entries.append(f"d {dir_mode} {owner} ./{os.path.normpath(f'{relative}/{name}')}")
        for name in names:
            if any(fnmatch(name, pattern) for pattern in exclude):
                continue
            path = os.path.normpath(f"{relative}/{name}")
            entries.append(f"f {mode} {owner} ./{path}")
            with open(os.path.join(src, path), "rb") as content:
                sums.append((f"./{path}", hashlib.sha1(content.read()).hexdigest()))
    return "\n".join(sorted(entries) + [f"{sha1}  {path}" for path, sha1 in sorted(sums)])


def tree_as_wanted(found: str | None, wanted: str) -> bool:
    """The same files, modes, owners and contents; directories the same or more (files.sync
    deletes files it no longer has, never directories: one left behind is no change)."""
    if found is None:
        return False
    found_lines, wanted_lines = found.splitlines(), wanted.splitlines()
    dirs = {line for line in wanted_lines if line.startswith("d ")}
    return dirs <= set(found_lines) and [
        line for line in found_lines if not line.startswith("d ")
    ] == [line for line in wanted_lines if not line.startswith("d ")]


def name_patterns(patterns) -> list[str]:
    """files.sync's exclude or exclude_dir (a pattern or a list) as names to match: a
    directory's "*/name" (its path relative to src) is any "name"."""
    patterns = [patterns] if isinstance(patterns, str) else list(patterns or [])
    if any("/" in pattern.removeprefix("*/") for pattern in patterns):
        raise OperationError(f"atomic_sync matches names: {patterns!r}")
    return sorted({pattern.removeprefix("*/") for pattern in patterns})


@operation()
def atomic_sync(**arguments):
    """files.sync, each file replaced in one rename (renamed_into_place). When one fact finds
    the whole tree as wanted, it stops there: files.sync asks two facts of every file."""
    exclude = name_patterns(arguments.get("exclude"))
    exclude_dir = name_patterns(arguments.get("exclude_dir"))
    owner = f"{arguments['user']}:{arguments['group']}"
    wanted = local_manifest(
        arguments["src"], exclude, exclude_dir, arguments["mode"], arguments["dir_mode"], owner
    )
    found = host.get_fact(
        TreeManifest, path=arguments["dest"], exclude=exclude, exclude_dir=exclude_dir
    )
    if tree_as_wanted(found, wanted):
        host.noop(f"{arguments['dest']} is as wanted")
        return
    yield from renamed_into_place(files.sync._inner(**arguments))


@operation()
def secret_template(src: str, dest: str, user: str, group: str, mode: str, **data):
    """files.template for files that hold secrets: it converges the same way, but neither
    --diff nor any log shows the content (only that the file would change)."""
    content = get_template(src).render(host=host, **data)
    wanted_sha1 = hashlib.sha1(content.encode()).hexdigest()
    remote = host.get_fact(File, path=dest)

    if not remote or host.get_fact(Sha1File, path=dest) != wanted_sha1:
        host.log(f"Will write {dest} (content not shown: it holds secrets)")
        # Never world-readable on its way: the upload's temporary file is made 0600 by the
        # connecting user before any byte goes in, and the staged file beside the destination
        # gets its owner and mode first (writing into an existing file keeps them). Then one
        # rename: a reader sees the old file or the new one.
        temp = upload_temp_file(dest)
        staged = dest + STAGED_SUFFIX
        yield StringCommand("install", "-m", "600", "/dev/null", temp, _sudo=False)
        yield StringCommand("rm", "-f", staged)
        yield StringCommand("install", "-m", mode, "/dev/null", staged)
        yield file_utils.chown(staged, user, group)
        yield FileUploadCommand(StringIO(content), staged, remote_temp_filename=temp)
        yield StringCommand("mv", "-f", staged, dest)
        yield StringCommand("rm", "-f", temp, _sudo=False)
        return

    if (remote["user"], remote["group"]) != (user, group):
        yield file_utils.chown(dest, user, group)
    if str(remote["mode"]) != str(mode).lstrip("0"):
        yield file_utils.chmod(dest, mode)


def install_template(
    name: str,
    template: str,
    mode: str = "644",
    user: str = "root",
    group: str = "root",
    holds_secrets: bool = False,
    check: str | None = None,
):
    """Install one of the host's templates where tasks/render.py says, with its variables.

    holds_secrets: write it with secret_template, so no diff or log ever shows its content.
    check: a command that must pass on the new file before it replaces the old one ({}: its
    path), e.g. the program's own config check.
    """
    dest, variables = rendered_files(host_data())[template]
    if holds_secrets:
        write, checked = secret_template, {}
    else:
        write, checked = atomic_template, {"check": check}
    return write(
        name=name,
        src=template_path(template),
        dest=dest,
        user=user,
        group=group,
        mode=mode,
        **checked,
        **variables,
    )
