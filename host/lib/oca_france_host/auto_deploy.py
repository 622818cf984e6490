"""odoo-auto-deploy: run every minute by odoo-auto-deploy.timer on recette. When
origin/<branch> has moved since the last run, deploy it with fresh production data
(deploy --restore origin/<branch>). "Moved" is measured against the last commit this saw, not
against HEAD, so a manual deploy of another ref on recette is not undone a minute later.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from oca_france_host import config, programs, runner, state

EXIT_REFUSED = 2  # the deploy's: refused, nothing touched (try again later)


def log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} odoo-auto-deploy: {message}", flush=True)


def usage(settings: dict) -> str:
    branch = settings["oca_france_branch"]
    return (
        "Usage: odoo-auto-deploy [-h|--help]\n"
        f"When origin/{branch} moved since the last commit this saw"
        f" ({settings['auto_deploy_state_file']}), deploy it with\nfresh production data:"
        f" {settings['deploy_command']} --restore origin/{branch}. Run every minute by\n"
        "odoo-auto-deploy.timer; a deploy or backup holding the lock is waited for at the next"
        " run."
    )


def latest_and_last(settings: dict) -> tuple[str, str] | None:
    """origin's newest commit of the branch and the last one seen; None while the lock is held
    (a deploy is running: look again at the next run). The fetch shares the deploy's lock:
    two git fetches at once can fail on ref locks."""
    checkout, branch = settings["oca_france_dir"], settings["oca_france_branch"]
    try:
        # 2 s: past an apply's or a status's look at the lock (deploy --activity), not more.
        held = state.take(settings["deploy_lock_file"], 2, say=False, who="odoo-auto-deploy")
    except state.LockBusy:
        return None
    with held:
        fetch = ["git", "-C", checkout, "fetch", "--quiet", "origin", branch]
        runner.run(fetch, timeout=int(settings["git_fetch_timeout_sec"]))
        latest = runner.output(
            ["git", "-C", checkout, "rev-parse", f"refs/remotes/origin/{branch}"]
        )
        # pyinfra records the clone's commit at the first apply; HEAD is only a fallback.
        seen = Path(settings["auto_deploy_state_file"])
        if seen.is_file():
            last = seen.read_text().strip()
        else:
            last = runner.output(["git", "-C", checkout, "rev-parse", "HEAD"])
    return latest, last


def retry_file(settings: dict) -> Path:
    return Path(f"{settings['auto_deploy_state_file']}.retry")


def read_retry(settings: dict) -> tuple[str, int, int] | None:
    """ "<commit> <refusals> <epoch of the next try>": the back-off of a refused commit."""
    try:
        commit, refusals, next_try = retry_file(settings).read_text().split()[:3]
        return commit, int(refusals), int(next_try)
    except (OSError, ValueError):
        return None


def waiting_to_retry(settings: dict, commit: str) -> bool:
    retry = read_retry(settings)
    if retry is None or retry[0] != commit or time.time() >= retry[2]:
        return False
    next_at = time.strftime("%H:%M", time.localtime(retry[2]))
    log(f"{commit} was refused {retry[1]} time(s): next try at {next_at}")
    return True


def schedule_retry(settings: dict, commit: str) -> None:
    """Waiting twice as long after each refusal, up to an hour."""
    retry = read_retry(settings)
    refusals = (retry[1] if retry and retry[0] == commit else 0) + 1
    delay = 60 * (1 << min(refusals - 1, 6))
    retry_file(settings).write_text(f"{commit} {refusals} {int(time.time()) + delay}\n")
    log(f"refused: next try in {delay // 60} min")


def main(argv: list[str]) -> int:
    settings = config.load()
    refused = programs.refused_arguments(argv, usage(settings))
    if refused is not None:
        return refused
    os.chdir("/")  # sudo keeps the caller's directory, which odoo may not be allowed to read
    branch = settings["oca_france_branch"]
    try:
        found = latest_and_last(settings)
    except runner.Failed as failed:
        log(f"ERROR: {failed}")
        return 1
    if found is None:
        return 0
    latest, last = found
    if latest == last or waiting_to_retry(settings, latest):
        return 0
    log(f"origin/{branch} moved from {last} to {latest}: deploying it with production data")
    status = runner.run(
        [settings["deploy_command"], "--restore", f"origin/{branch}"], check=False
    ).returncode
    # Refused (2: another deploy running, no production data): tried again later. Otherwise
    # the commit is done with, deployed or rolled back.
    if status == EXIT_REFUSED:
        schedule_retry(settings, latest)
    else:
        Path(settings["auto_deploy_state_file"]).write_text(f"{latest}\n")
        retry_file(settings).unlink(missing_ok=True)
    return status
