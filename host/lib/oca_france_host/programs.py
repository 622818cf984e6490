"""The host's Python programs, by the name they are run as (bin/<name> links to bin/oca-france)."""

from __future__ import annotations

import importlib
import os
import sys

from oca_france_host.config import ConfigError

PROGRAMS = {
    "deploy": "deploy",
    "odoo-backup": "backup",
    "odoo-backup-transfer": "transfer",
    "odoo-auto-deploy": "auto_deploy",
    "odoo-backup-verify": "verify",
    "odoo-backup-prune": "prune",
    "odoo-production-data-accept": "accept",
    "odoo-production-data-receive": "receive",
    "odoo-status": "status",
    "odoo-notify": "notify",
    "odoo-check": "check",
    "odoo-offsite-push": "push",
    "odoo-offsite": "offsite",
    "odoo-offsite-recover": "recover",
    "odoo-front-gate": "gate",
}


def refused_arguments(argv: list[str], usage: str) -> int | None:
    """For a program that takes none: None when there are none (go on); else its exit status,
    its usage said (asked with -h/--help: on stdout, 0; anything else: on stderr, 2)."""
    if not argv:
        return None
    asked = argv[0] in ("-h", "--help")
    print(usage.strip(), file=sys.stdout if asked else sys.stderr)
    return 0 if asked else 2


def run(name: str, argv: list[str]) -> int:
    module = PROGRAMS.get(name)
    if module is None:
        print(
            f"oca-france: unknown program {name!r} (one of {', '.join(PROGRAMS)})", file=sys.stderr
        )
        return 2
    os.umask(0o077)  # what a host program writes (backups, logs, state) is its user's alone
    try:
        return importlib.import_module(f"oca_france_host.{module}").main(argv)
    except ConfigError as error:
        print(f"{name}: {error}", file=sys.stderr)
        return 2
