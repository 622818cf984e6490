"""The backup format, in one place: what odoo-backup writes, the transfer sends, recette
accepts and deploy --restore reads.

A backup is a directory <database>-<YYYYMMDDTHHMMSS> holding <database>.dump
(pg_dump --format=custom), filestore/ (the attachments), filestore.list ("<path> <size>
<sha256>" per file, sorted; backups of the former format have no sha256) and manifest.json,
written last: a directory without a valid manifest is
incomplete, and nothing lists it.

    python3 -m oca_france_host.backups newest DIR [DATABASE]   the newest complete backup
    python3 -m oca_france_host.backups restorable DIR        the newest deploy -R may use
    python3 -m oca_france_host.backups manifest DIR --database DB --commit SHA
                                          write filestore.list and manifest.json (last)
    python3 -m oca_france_host.backups field DIR KEY         one field of a valid manifest
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import socket
import subprocess
import sys
from datetime import datetime
from pathlib import Path

# A name becomes a directory here: a plain name, never a path (fullmatch: no newline either).
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
STAMP = re.compile(r"-(\d{8}T\d{6})$")
MANIFEST = "manifest.json"
DUMP_SUFFIX = ".dump"
FILE_LIST = "filestore.list"
FILESTORE = "filestore"
# A backup (or an accepted copy) being written: never listed (a name with a dot first), and
# removed by the next run of whoever writes them when its writer died.
PARTIAL = ".partial-"
INTEGERS = ("dump_bytes", "filestore_files", "filestore_bytes")


class BackupError(Exception):
    """A backup that is not what its manifest says (or has no usable manifest)."""


def is_safe_name(name) -> bool:
    return isinstance(name, str) and SAFE_NAME.fullmatch(name) is not None


def stamp_of(path: Path) -> datetime | None:
    """The time a backup's name ends with (a dump file's, before its .dump)."""
    match = STAMP.search(path.name.removesuffix(DUMP_SUFFIX))
    return datetime.strptime(match.group(1), "%Y%m%dT%H%M%S") if match else None


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(backup: Path) -> dict:
    """The manifest, checked for shape: plain names, the dump inside the backup, sizes."""
    return read_manifest_file(backup / MANIFEST)


def read_manifest_file(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise BackupError(f"unreadable manifest: {error}") from None
    if not isinstance(manifest, dict):
        raise BackupError("the manifest is not a JSON object")
    for key in ("name", "dump"):
        if not is_safe_name(manifest.get(key)):
            raise BackupError(f"the manifest's {key} {manifest.get(key)!r} is not a plain name")
    if not manifest["dump"].endswith(".dump"):
        raise BackupError(f"the manifest's dump {manifest['dump']!r} is not a .dump file")
    for key in INTEGERS:
        if type(manifest.get(key)) is not int or manifest[key] < 0:  # JSON true is no size
            raise BackupError(f"the manifest's {key} {manifest.get(key)!r} is not a size")
    for key in ("dump_sha256", "filestore_list_sha256"):
        if not re.fullmatch(r"[0-9a-f]{64}", str(manifest.get(key))):
            raise BackupError(f"the manifest's {key} is not a sha256")
    return manifest


def complete(directory: Path, database: str | None = None) -> list[Path]:
    """The complete backups of `directory` (of `database`), oldest first."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        if not (is_safe_name(path.name) and stamp_of(path) and path.is_dir()):
            continue
        if database and not path.name.startswith(f"{database}-"):
            continue
        if (path / MANIFEST).is_file():
            found.append(path)
    return sorted(found, key=lambda p: (stamp_of(p), p.name))


def newest(directory: Path, database: str | None = None) -> Path | None:
    found = complete(directory, database)
    return found[-1] if found else None


def restorable(directory: Path) -> list[Path]:
    """What deploy --restore may use, oldest first, by the time its name ends with (never a
    locale's sort): complete backups, and <name>-<stamp>.dump files (with their
    <name>-<stamp>.filestore.tar.gz beside them, if any). A partial or claimed copy (its name
    starts with a dot) or a name without a time never."""
    found = complete(directory)
    if directory.is_dir():
        found += [
            path
            for path in directory.glob(f"*{DUMP_SUFFIX}")
            if is_safe_name(path.name) and stamp_of(path) and path.is_file()
        ]
    return sorted(found, key=lambda p: (stamp_of(p), p.name))


def newest_restorable(directory: Path) -> Path | None:
    found = restorable(directory)
    return found[-1] if found else None


def write_file_list(backup: Path) -> tuple[int, int]:
    """filestore.list from filestore/, a checksum per file: (files, bytes)."""
    root = backup / FILESTORE
    entries = sorted(
        (str(p.relative_to(root)), p.stat().st_size, sha256(p))
        for p in root.rglob("*")
        if p.is_file()
    )
    (backup / FILE_LIST).write_text(
        "".join(f"{n} {size} {digest}\n" for n, size, digest in entries)
    )
    return len(entries), sum(size for _, size, _ in entries)


def restore_command(database: str, dump: Path) -> list[str]:
    """pg_restore of a backup's dump into an empty database, as the deploy and the drill run
    it: no owner nor privileges of the source (the restoring role owns it), stop at an error."""
    return [
        "pg_restore", "--no-owner", "--no-privileges", "--no-comments", "--exit-on-error",
        "-d", database, str(dump),
    ]  # fmt: skip


def count_rows_sql(tables: list[str]) -> str:
    """One statement counting each table's rows: one line of JSON, {"table": count}, the
    tables that do not exist left out (an addon not installed). What the backup records in the
    manifest and the drill compares, counted the same way."""
    names = ",".join("'" + name.replace("'", "''") + "'" for name in tables)
    return (
        "SELECT json_object_agg(t, (xpath('/row/c/text()', query_to_xml("
        "format('SELECT count(*) AS c FROM %I', t), false, true, '')))[1]::text::bigint)"
        f" FROM unnest(ARRAY[{names}]::text[]) t WHERE to_regclass(t) IS NOT NULL;"
    )


def write_manifest(
    backup: Path,
    database: str,
    commit: str,
    name: str | None = None,
    row_counts: dict[str, int] | None = None,
) -> dict:
    """Write filestore.list, then manifest.json (last: it makes the backup complete).
    row_counts: a few tables' rows as the dump holds them (what a restore must show)."""
    dump = backup / f"{database}.dump"
    files, total = write_file_list(backup)
    manifest = {
        "name": name or backup.name,
        "database": database,
        "commit": commit,
        "time": datetime.now().astimezone().isoformat(timespec="seconds"),
        "dump": dump.name,
        "dump_bytes": dump.stat().st_size,
        "dump_sha256": sha256(dump),
        "filestore_files": files,
        "filestore_bytes": total,
        "filestore_list_sha256": sha256(backup / FILE_LIST),
    }
    if row_counts is not None:
        manifest["row_counts"] = row_counts
    if not is_safe_name(manifest["name"]):
        raise BackupError(f"{manifest['name']!r} is not a plain name")
    partial = backup / f".{MANIFEST}.partial"
    partial.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    partial.rename(backup / MANIFEST)
    return manifest


def dump_versions(dump: Path) -> tuple[str, str] | None:
    """(server, pg_dump) versions in a custom-format dump's header, None if unreadable.

    The header: "PGDMP", version (3 bytes), int size, offset size, format, compression
    (a byte since archive 1.15, an int before), 7 ints of creation time, then 3 strings:
    database name, server version, pg_dump version. An int is a sign byte and `int size`
    little-endian bytes; a string, its length (an int) then its bytes.
    """
    try:
        with dump.open("rb") as handle:
            data = handle.read(4096)
        if data[:5] != b"PGDMP":
            return None
        major, minor, int_size = data[5], data[6], data[8]
        pos = 11 + (1 if (major, minor) >= (1, 15) else 1 + int_size)

        def read_int() -> int:
            nonlocal pos
            sign, value = data[pos], int.from_bytes(data[pos + 1 : pos + 1 + int_size], "little")
            pos += 1 + int_size
            return -value if sign else value

        def read_str() -> str:
            nonlocal pos
            length = max(read_int(), 0)
            text = data[pos : pos + length].decode("utf-8", "replace")
            pos += length
            return text

        for _ in range(7):
            read_int()
        read_str()  # database name
        return read_str(), read_str()
    except (OSError, IndexError):
        return None


def major(version: str) -> int:
    match = re.match(r"\d+", version.strip())
    return int(match.group()) if match else 0


def unreadable_here(dump: Path) -> str | None:
    """Why this host's pg_restore cannot read the dump (None when it can)."""
    result = subprocess.run(["pg_restore", "--list", str(dump)], capture_output=True, text=True)
    if result.returncode == 0:
        return None
    error = (result.stderr.strip().splitlines() or ["no output"])[-1]
    version = subprocess.run(["pg_restore", "--version"], capture_output=True, text=True).stdout
    found = re.search(r"\(PostgreSQL\) (\S+)", version)
    here = found.group(1) if found else "?"
    versions = dump_versions(dump)
    if versions and major(versions[0]) > major(here):
        return (
            f"{dump.name} was made by PostgreSQL {major(versions[0])} ({versions[0]}),"
            f" {socket.gethostname()} has {major(here)} ({here}): its pg_restore cannot read it"
            f" ({error}); run the same PostgreSQL major on both hosts, or a newer one here"
        )
    return f"{dump.name} is not readable by this host's pg_restore {here}: {error}"


def problem(backup: Path, digests_required: bool = False) -> str | None:
    """What does not match the manifest (None when everything does); for a lone dump file,
    only whether this host's pg_restore reads it. digests_required: every attachment must
    have its sha256 listed (the drill's proof; older backups listed sizes only)."""
    if backup.is_file():
        return unreadable_here(backup)
    try:
        manifest = read_manifest(backup)
        dump = backup / manifest["dump"]
        if not dump.is_file():
            return f"{dump.name} is missing"
        size, recorded = dump.stat().st_size, manifest["dump_bytes"]
        if size != recorded:
            return f"{dump.name} is {size} bytes, the manifest says {recorded}"
        if sha256(dump) != manifest["dump_sha256"]:
            return f"{dump.name} does not match its sha256 in the manifest"
        unreadable = unreadable_here(dump)
        if unreadable:
            return unreadable
        listing = backup / FILE_LIST
        if sha256(listing) != manifest["filestore_list_sha256"]:
            return f"{FILE_LIST} does not match its sha256 in the manifest"
        expected, digests = {}, {}
        for line in listing.read_text().splitlines():
            fields = line.rsplit(" ", 2)
            if len(fields) == 3 and re.fullmatch(r"[0-9a-f]{64}", fields[2]):
                name, size_text, digests[fields[0]] = fields
            elif digests_required:
                return f"{FILE_LIST} lists no sha256 for {line.rsplit(' ', 1)[0]}"
            else:  # the former format: "<path> <size>"
                name, size_text = line.rsplit(" ", 1)
            expected[name] = int(size_text)
    except BackupError as error:
        return str(error)
    except (OSError, ValueError) as error:
        return f"unreadable manifest or backup: {error}"
    root = backup / FILESTORE
    found = {}
    if root.is_dir():
        for path in root.rglob("*"):
            if path.is_file():
                found[str(path.relative_to(root))] = path.stat().st_size
    for name, size in sorted(expected.items()):
        if name not in found:
            return f"{FILESTORE}/{name} is missing"
        if found[name] != size:
            return f"{FILESTORE}/{name} is {found[name]} bytes, the list says {size}"
    extra = sorted(set(found) - set(expected))
    if extra:
        return f"{FILESTORE}/{extra[0]} is not in {FILE_LIST}"
    for name, digest in sorted(digests.items()):
        if sha256(root / name) != digest:
            return f"{FILESTORE}/{name} does not match its sha256 in {FILE_LIST}"
    return None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="oca_france_host.backups", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    newest_parser = commands.add_parser("newest")
    newest_parser.add_argument("directory", type=Path)
    newest_parser.add_argument("database", nargs="?")
    commands.add_parser("restorable").add_argument("directory", type=Path)
    write = commands.add_parser("manifest")
    write.add_argument("backup", type=Path)
    write.add_argument("--database", required=True)
    write.add_argument("--commit", required=True)
    write.add_argument("--name")
    field = commands.add_parser("field")
    field.add_argument("backup", type=Path)
    field.add_argument("key")
    args = parser.parse_args(argv)
    try:
        if args.command == "newest":
            found = newest(args.directory, args.database)
            if found:
                print(found)
            return 0
        if args.command == "restorable":
            found = newest_restorable(args.directory)
            if found:
                print(found)
            return 0
        if args.command == "manifest":
            write_manifest(args.backup, args.database, args.commit, args.name)
            return 0
        print(read_manifest(args.backup)[args.key])
        return 0
    except (BackupError, KeyError, OSError) as error:
        print(f"oca_france_host.backups: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
