"""Timings of the sandbox and the suite, printed as a table (a benchmark, not a test).

    sudo make bench            # rootfs, applies per release, backups, whole suite warm and cold
    sudo make bench ARGS="--no-suite --no-backups --no-deploys"

The backup figures (tests/benchmark_backups.py) and the deploy figures
(tests/benchmark_deploys.py) run on the sandbox the applies configured.

Cold means an empty cache: rootfs tarballs, debootstrap's and apt's .debs (a temporary
cache, the real one is left alone). Replaces any running sandbox, tears it down at the end.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import benchmark_backups
import benchmark_deploys
from benchmark_backups import PROJECT_DIR, SANDBOX, STATE_DIR, sandbox_env

# pyinfra as the sandbox runs it (its group data), per host with --limit.
PYINFRA = ["pyinfra", "-y", "inventory.py", "deploy.py", "--group-data", f"{STATE_DIR}/group_data"]

# Sandbox host -> its release (tests/sandbox/sandbox.sh CONTAINERS).
HOSTS = {"recette": "Debian 13", "prod": "Debian 12", "backup": "Debian 13"}


def timed(label: str, command: list[str], env: dict[str, str] | None = None) -> tuple[str, float]:
    start = time.monotonic()
    result = subprocess.run(
        command, cwd=PROJECT_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    seconds = time.monotonic() - start
    if result.returncode != 0:
        sys.stderr.buffer.write(result.stdout[-5000:])
        sys.exit(f"{label}: failed (exit {result.returncode})")
    print(f"  {label:<44} {seconds:7.1f} s", file=sys.stderr, flush=True)
    return label, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-suite", action="store_true", help="skip the whole-suite timings")
    parser.add_argument("--no-backups", action="store_true", help="skip the backup figures")
    parser.add_argument("--no-deploys", action="store_true", help="skip the deploy figures")
    args = parser.parse_args()
    figures = []
    backup_rows = []
    deploy_rows = []

    subprocess.run([*SANDBOX, "down"], check=True, stderr=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory(dir="/var/tmp") as cold_cache:
        env = {**os.environ, "SANDBOX_CACHE_DIR": cold_cache}
        label = "rootfs build, cold (both releases at once)"
        figures.append(timed(label, [*SANDBOX, "rootfs"], env))
    try:
        figures.append(timed("sandbox up, cached rootfs", [*SANDBOX, "up"]))
        for group, release in HOSTS.items():
            limit = ["--limit", group]
            figures.append(
                timed(
                    f"first apply, {group} ({release})",
                    [*PYINFRA, *limit],
                    sandbox_env(),
                )
            )
        for group, release in HOSTS.items():
            limit = ["--limit", group]
            label = f"no-op re-apply, {group} ({release})"
            figures.append(timed(label, [*PYINFRA, *limit], sandbox_env()))
        figures.append(timed("no-op re-apply, all three hosts", PYINFRA, sandbox_env()))
        if not args.no_backups:
            backup_rows = benchmark_backups.run()
        if not args.no_deploys:
            deploy_rows = benchmark_deploys.run()
    finally:
        subprocess.run([*SANDBOX, "down"], check=True, stderr=subprocess.DEVNULL)
    if not args.no_suite:
        figures.append(timed("whole test suite (make test), warm cache", ["pytest", "-q"]))
        with tempfile.TemporaryDirectory(dir="/var/tmp") as cold_cache:
            env = {**os.environ, "SANDBOX_CACHE_DIR": cold_cache}
            label = "whole test suite (make test), cold cache"
            figures.append(timed(label, ["pytest", "-q"], env))

    print("| step | seconds |\n|------|---------|")
    for label, seconds in figures:
        print(f"| {label} | {seconds:.0f} |")
    if backup_rows:
        print()
        benchmark_backups.print_table(backup_rows)
    if deploy_rows:
        print()
        benchmark_deploys.print_table(deploy_rows)


if __name__ == "__main__":
    main()
