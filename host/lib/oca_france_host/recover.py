"""odoo-offsite-recover: rebuilds production's data from the backup host, as odoo (README,
Recovery from bare: `make apply-prod` on the new host first, then this).

    odoo-offsite-recover --list        the archives on the backup host, oldest first
    odoo-offsite-recover [ARCHIVE]     recover ARCHIVE (default: the newest)

  1. lists the backup host's archives through prod's key (it may read and append): an
     archive that is not there is refused, nothing touched;
  2. extracts it into offsite_recovery_dir (emptied first), and checks it against its
     manifest (the dump's and every attachment's sha256);
  3. hands it to the deploy (`deploy --recover DIR`): under the instance's lock, the service
     stopped, a snapshot taken, the checkout at the commit the backup was taken with, the
     database and filestore replaced (as they are: no neutralization), the modules updated,
     the service started and its health checked; rolled back to the snapshot on failure;
  4. removes the extract once the deploy succeeded (kept for a look when it failed).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from oca_france_host import backups, borg, config, deploy, push, runner
from oca_france_host.deploy_steps import whoami

USAGE = """Usage: odoo-offsite-recover [--list | ARCHIVE]
Rebuilds this host's database and filestore from an archive of the backup host (default: the
newest), through the deploy (--recover): the service starts once the data is in place and
Odoo answers. --list: the archives there."""


class Refused(Exception):
    """Nothing was touched."""


def log(message: str, error: bool = False) -> None:
    line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} odoo-offsite-recover: {message}"
    print(line, file=sys.stderr if error else sys.stdout, flush=True)


def chosen(archives: list[dict], wanted: str | None, own: list[str]) -> dict:
    """The archive to recover: the named one, or the newest this host did not push itself (a
    host rebuilt from bare backs up its fresh database once its timer fires: never that one
    by default)."""
    if not archives:
        raise Refused("the backup host holds no archive")
    if wanted is None:
        skipped = [archive["name"] for archive in archives if archive["name"] in own]
        if skipped:
            log(f"not by default: {', '.join(skipped)} (pushed by this host itself)")
        newest = borg.newest(archives, excluding=own)
        if newest is None:
            raise Refused(
                "every archive there was pushed by this host itself: name the one to recover"
                " (odoo-offsite-recover --list)"
            )
        return newest
    for archive in archives:
        if archive["name"] == wanted:
            return archive
    raise Refused(
        f"no archive {wanted!r} on the backup host (odoo-offsite-recover --list: the"
        f" {len(archives)} there)"
    )


def recover(settings: dict, wanted: str | None) -> int:
    env = push.environment(settings)
    archive = chosen(borg.archives(env), wanted, push.pushed_here(settings))
    name = archive["name"]
    if not backups.is_safe_name(name):
        raise Refused(f"{name!r} is not a plain name")
    target = Path(settings["offsite_recovery_dir"]) / name
    log(f"recovering {name}, taken {archive['start']}: extracting it into {target}")
    shutil.rmtree(target.parent, ignore_errors=True)  # an earlier attempt's extract
    borg.extract(env, name, target)
    problem = backups.problem(target)
    if problem:
        raise Refused(f"{name} does not match its manifest: {problem}")
    log(f"{name} matches its manifest: handing it to the deploy (--recover)")
    status = deploy.main(["--recover", str(target)])
    if status == 0:
        shutil.rmtree(target.parent, ignore_errors=True)
        log(f"recovered {name}: the service runs on it")
    else:
        log(f"the deploy exited {status}: the extract stays in {target}", error=True)
    return status


def main(argv: list[str]) -> int:
    settings = config.load()
    if argv in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if len(argv) > 1 or (argv and argv[0].startswith("-") and argv != ["--list"]):
        print(USAGE, file=sys.stderr)
        return 1
    user = settings["odoo_user"]
    if whoami() != user:  # never root: the extract goes into odoo's home
        log(f"ERROR: run me as {user}: sudo -u {user} -H {' '.join(sys.argv)}", error=True)
        return 2
    if "offsite_repository_url" not in settings:
        log("ERROR: no backup host here (offsite_enabled is off in this host's group data)", True)
        return 2
    os.chdir("/")
    try:
        if argv == ["--list"]:
            for archive in borg.archives(push.environment(settings)):
                print(f"{archive['name']}  {archive['start']}")
            return 0
        return recover(settings, argv[0] if argv else None)
    except Refused as refused:
        log(f"ERROR: {refused}; nothing touched", error=True)
        return 2
    except (borg.BorgError, runner.Failed, OSError) as error:
        log(f"ERROR: {error}; the service and its data are as they were", error=True)
        return 2
