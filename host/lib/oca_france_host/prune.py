"""odoo-backup-prune: remove the backups grandfather-father-son retention does not keep.

    odoo-backup-prune [--dry-run] [--daily N] [--weekly N] [--monthly N] [BACKUP_DIR]

BACKUP_DIR and the counts default to the host config (backup_dir, backup_keep_*). Only
complete backups count (backups.py). Rules, applied in this order, each counting only
backups no earlier rule kept: the newest backup of each of the last N days, then of each of
the N weeks (ISO) before, then of each of the N months before. The newest backup is always
kept. Prints one line per backup: keep (and why) or remove.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from oca_france_host import backups, config

PERIODS = {
    "daily": lambda d: d.strftime("%Y-%m-%d"),
    "weekly": lambda d: "{}-W{:02d}".format(*d.isocalendar()[:2]),
    "monthly": lambda d: d.strftime("%Y-%m"),
}


def to_keep(found: list[Path], counts: dict[str, int]) -> dict[Path, str]:
    """The backups to keep, and why; `found` oldest first, as backups.complete lists them."""
    newest_first = sorted(((backups.stamp_of(p), p) for p in found), reverse=True)
    kept: dict[Path, str] = {}
    if newest_first:
        kept[newest_first[0][1]] = "newest"
    for rule, count in counts.items():
        period_of, last, taken = PERIODS[rule], None, 0
        for date, path in newest_first:
            if taken >= count:
                break
            period = period_of(date)
            if period == last:
                continue
            last = period
            if path not in kept or kept[path] == "newest":
                kept[path] = f"{rule} {period}"
                taken += 1
    return kept


def main(argv: list[str]) -> int:
    settings = config.load()
    parser = argparse.ArgumentParser(prog="odoo-backup-prune", description=__doc__)
    parser.add_argument("backup_dir", type=Path, nargs="?", default=Path(settings["backup_dir"]))
    parser.add_argument("--daily", type=int, default=settings["backup_keep_daily"])
    parser.add_argument("--weekly", type=int, default=settings["backup_keep_weekly"])
    parser.add_argument("--monthly", type=int, default=settings["backup_keep_monthly"])
    parser.add_argument("--dry-run", action="store_true", help="say, remove nothing")
    args = parser.parse_args(argv)
    counts = {"daily": args.daily, "weekly": args.weekly, "monthly": args.monthly}
    found = backups.complete(args.backup_dir)
    kept = to_keep(found, counts)
    for path in reversed(found):
        if path in kept:
            print(f"keep {path.name} ({kept[path]})")
        else:
            print(f"remove {path.name}")
            if not args.dry_run:
                shutil.rmtree(path)
    return 0
