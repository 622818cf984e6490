"""odoo-backup-prune: grandfather-father-son retention of prod's backups."""

from __future__ import annotations

from datetime import datetime, timedelta

from .conftest import PROD_DB, stamp, write_backup

NEWEST = datetime(2026, 11, 27, 2, 41, 7)  # a Friday


def a_year_of_backups(directory) -> None:
    """Daily backups for a year, a few minutes apart each night (no filestore: only their
    names and manifests matter here)."""
    for day in range(365):
        write_backup(
            directory, f"{PROD_DB}-{stamp(NEWEST - timedelta(days=day, minutes=day % 7))}", {}
        )


def kept(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if (p / "manifest.json").exists())


def test_backup_retention_keeps_7_daily_4_weekly_3_monthly(make_host):
    host = make_host("oca-france-prod")
    backups = host.root / "elsewhere"  # not the config's backup_dir: the argument is used
    a_year_of_backups(backups)
    partial = backups / f".partial-{PROD_DB}-20261128T024000"
    partial.mkdir()  # a backup still being written: not the prune's business
    unfinished = backups / f"{PROD_DB}-20261128T030000"
    unfinished.mkdir()  # no manifest: incomplete, left alone

    result = host.run("odoo-backup-prune", str(backups))
    assert result.returncode == 0, result.stderr
    reasons = [
        line.split("(")[1].split()[0] for line in result.stdout.splitlines() if "keep" in line
    ]
    assert sorted(reasons) == ["daily"] * 7 + ["monthly"] * 3 + ["weekly"] * 4
    assert len(kept(backups)) == 14
    days = [name.rsplit("-", 1)[1][:8] for name in kept(backups)]
    assert days[-7:] == [(NEWEST - timedelta(days=d)).strftime("%Y%m%d") for d in range(6, -1, -1)]
    assert f"{PROD_DB}-{stamp(NEWEST)}" in kept(backups)  # the newest, always
    # Weeks and months whose newest backup a daily already keeps do not count again.
    assert days[:7] == [
        "20260831",  # monthly: the last of August, September, October
        "20260930",
        "20261025",  # weekly: the last of ISO weeks 43 to 46
        "20261031",
        "20261101",
        "20261108",
        "20261115",
    ]
    assert partial.exists() and unfinished.exists()
    assert not list(host.path("backup_dir").iterdir())  # the config's directory untouched

    again = host.run("odoo-backup-prune", str(backups))
    assert again.returncode == 0 and "remove" not in again.stdout  # pruning is stable


def test_prune_takes_its_directory_and_counts_from_the_config(make_host):
    host = make_host("oca-france-prod")
    a_year_of_backups(host.path("backup_dir"))
    host.config.update(backup_keep_daily=2, backup_keep_weekly=1, backup_keep_monthly=1)
    host.write_config()

    dry = host.run("odoo-backup-prune", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("remove ") == 361 and len(kept(host.path("backup_dir"))) == 365

    result = host.run("odoo-backup-prune")
    assert result.returncode == 0, result.stderr
    assert [name.rsplit("-", 1)[1][:8] for name in kept(host.path("backup_dir"))] == [
        "20261031",  # monthly: the last of October
        "20261122",  # weekly: the last of ISO week 47
        "20261126",  # daily
        "20261127",
    ]
