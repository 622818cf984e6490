"""odoo-backup-verify: check a backup against its manifest before anyone trusts it.

    odoo-backup-verify BACKUP_DIR
    odoo-backup-verify DUMP         (a lone dump: only that this host's pg_restore reads it)

Checks the manifest's shape, the dump's size and sha256, that this host's pg_restore reads
the dump (a newer PostgreSQL's dump cannot be restored here), the sha256 of filestore.list,
and that filestore/ holds exactly the files it names, with their sizes. Exit 0 when all
match; 1 with one line saying what does not; 2 on a usage error.
"""

from __future__ import annotations

import sys
from pathlib import Path

from oca_france_host import backups


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    target = Path(argv[0])
    found = backups.problem(target)
    if found:
        print(f"{target}: {found}", file=sys.stderr)
        return 1
    print(f"{target}: verified")
    return 0
