"""odoo-offsite: the backup host's side of prod's off-site repository, as its owner (borg),
the passphrase handed to the unit as a systemd credential (root's file, never in odoo's nor
prod's reach).

    odoo-offsite --init    create the repository (repokey-blake2), once (odoo-offsite-init)
    odoo-offsite --prune   the guard, then prune and compact (odoo-offsite-prune.timer)

The guard: prod's key can only append (borg serve --append-only), so an archive deleted
through it is only a transaction in the repository's log until a client with full access
commits it; this prune is that client. Before it prunes, every archive it saw at its last run
must still be there unless it pruned it itself, and the newest must be fresh
(offsite_max_age_hours). A guard that trips prunes and compacts nothing, fails its unit, and
says which archives went missing: the log's transactions can still be rolled back (README).
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

from oca_france_host import borg, config

SEEN = "seen.json"  # the archives the last run left, and when
LAST_PRUNE = "last-prune.json"  # the last run's result (status shows it)


class GuardTripped(Exception):
    """Archives went missing, or none is fresh: nothing is pruned."""


def log(message: str, error: bool = False) -> None:
    line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} odoo-offsite: {message}"
    print(line, file=sys.stderr if error else sys.stdout, flush=True)


USAGE = """Usage: odoo-offsite --init | --prune
  --init    create prod's repository (repokey-blake2), once
  --prune   check the guard (no archive gone that this host did not prune, the newest
            fresh), then prune (keep daily/weekly/monthly) and compact"""


def environment(settings: dict) -> dict:
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if not credentials:
        raise config.ConfigError(
            "no passphrase: run through its unit (odoo-offsite-init or odoo-offsite-prune),"
            " which hands it over as a credential"
        )
    passphrase = f"{credentials}/{settings['offsite_credential']}"
    return borg.environment(passphrase, settings["offsite_repository"])


def state_file(settings: dict, name: str) -> Path:
    return Path(settings["offsite_state_dir"]) / name


def write_json(path: Path, value) -> None:
    staged = path.with_name(f".{path.name}.new")
    staged.write_text(json.dumps(value, indent=1) + "\n", encoding="utf-8")
    staged.replace(path)


def read_json(path: Path, default):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default


def init(settings: dict) -> int:
    repository = settings["offsite_repository"]
    if Path(repository, "config").exists():
        log(f"{repository} exists: nothing to do")
        return 0
    borg.run(["init", "--encryption=repokey-blake2", repository], environment(settings))
    log(f"created {repository} (repokey-blake2); export its key: README, Off-site copies")
    return 0


def guard(settings: dict, archives: list[dict], now: datetime) -> None:
    """Raises GuardTripped when an archive seen last time is gone, or none is fresh."""
    seen = read_json(state_file(settings, SEEN), {"archives": []})
    names = {archive["name"] for archive in archives}
    missing = sorted(set(seen["archives"]) - names)
    if missing:
        raise GuardTripped(
            f"{len(missing)} archive(s) gone that this host did not prune: {', '.join(missing)}"
            " (deleted through prod's key? the repository's log can still roll it back)"
        )
    if not archives:
        raise GuardTripped("the repository holds no archive (no push ever arrived)")
    newest = max(datetime.fromisoformat(archive["start"]) for archive in archives)
    limit = timedelta(hours=int(settings["offsite_max_age_hours"]))
    if now - newest > limit:
        raise GuardTripped(
            f"the newest archive is from {newest:%Y-%m-%d %H:%M}, older than"
            f" offsite_max_age_hours ({settings['offsite_max_age_hours']} h): pushes stopped"
        )


def prune(settings: dict) -> int:
    env = environment(settings)
    started = time.monotonic()
    when = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    last = state_file(settings, LAST_PRUNE)
    try:
        archives = borg.archives(env)
        guard(settings, archives, datetime.now())
    except GuardTripped as error:
        log(f"GUARD: {error}; nothing pruned nor compacted", error=True)
        write_json(last, {"time": when, "result": "guard tripped", "error": str(error)})
        return 1
    output = borg.run(
        [
            "prune",
            "--list",
            f"--keep-daily={settings['offsite_keep_daily']}",
            f"--keep-weekly={settings['offsite_keep_weekly']}",
            f"--keep-monthly={settings['offsite_keep_monthly']}",
        ],
        env,
    )
    del output  # borg prune --list logs on stderr; what is left is listed below
    kept = borg.archives(env)
    pruned = sorted({a["name"] for a in archives} - {a["name"] for a in kept})
    # What this run left: the next run's guard compares with it.
    write_json(state_file(settings, SEEN), {"time": when, "archives": [a["name"] for a in kept]})
    borg.run(["compact"], env)
    result = {
        "time": when,
        "result": "success",
        "archives": len(kept),
        "pruned": pruned,
        "newest": kept[-1]["name"] if kept else None,
        "seconds": round(time.monotonic() - started, 1),
    }
    write_json(last, result)
    log(
        f"pruned {len(pruned)} archive(s) ({', '.join(pruned) or 'none'}), kept {len(kept)};"
        " compacted"
    )
    return 0


def main(argv: list[str]) -> int:
    settings = config.load()
    if argv in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    os.chdir("/")
    try:
        if argv == ["--init"]:
            return init(settings)
        if argv == ["--prune"]:
            return prune(settings)
    except borg.BorgError as error:
        log(f"ERROR: {error}", error=True)
        return 1
    print(USAGE, file=sys.stderr)
    return 2
