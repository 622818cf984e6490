"""odoo-check: what odoo-status flags (a filesystem over disk_alert_percent, the newest
backup or production data too old, the service down, an unfinished deploy...), watched by
odoo-check.timer: one alert when a condition appears, one when it is gone, nothing while it
lasts. (A failed unit alerts on its own: OnFailure=.)

    odoo-check          compare with the last check (check.json in alert_state_dir), alert
"""

from __future__ import annotations

import os
import time

from oca_france_host import config, notify, programs, state, status

STATE = "check.json"
SETTLE_POLL_SEC = 5


def flags_that_last(c: dict, before: dict) -> dict[str, str]:
    """What status flags now, minus what a moment explains: the server down while systemd
    restarts it after a crash (which alerts on its own, once per incident) or a deploy
    unfinished, looked at again until it goes or has lasted check_settle_sec; and both while a
    deploy runs (its own end says how it went)."""
    now = dict(status.report(c, units=False)[1])
    if "offsite_repository" in c:  # the backup host: no service, no deploy
        return now
    settle = c["check_settle_sec"]
    deadline = time.monotonic() + settle
    poll = min(SETTLE_POLL_SEC, settle / 6)
    while True:
        passing = [key for key in status.MOMENTARY if key in now and key not in before]
        if not passing:
            return now
        running = state.deploying(c["deploy_lock_file"])
        if running:
            notify.log(f"not alerted while {running} runs: {', '.join(passing)}")
            return {key: text for key, text in now.items() if key not in passing}
        if time.monotonic() >= deadline:
            return now
        notify.log(f"looking again in {poll:g} s: {', '.join(passing)}")
        time.sleep(poll)
        now = {key: text for key, text in now.items() if key not in status.MOMENTARY}
        now.update(status.momentary_flags(c))


def main(argv: list[str]) -> int:
    c = config.load()
    refused = programs.refused_arguments(argv, __doc__)
    if refused is not None:
        return refused
    os.chdir("/")
    before = notify.recorded(c, STATE).get("flags", {})
    now = flags_that_last(c, before)
    appeared = {key: text for key, text in now.items() if key not in before}
    gone = {key: text for key, text in before.items() if key not in now}
    delivered = True
    host = notify.host_label(c)
    for key, text in appeared.items():
        notify.log(f"attention: {text}")
        body = f"host: {host}\ntime: {notify.now()}\n\n{text}\n"
        delivered &= notify.send(c, f"[{host}] attention: {key}", body, {"flag": key})
    for key, text in gone.items():
        notify.log(f"recovered: {text}")
        body = f"host: {host}\ntime: {notify.now()}\n\nno longer so: {text}\n"
        delivered &= notify.send(c, f"[{host}] recovered: {key}", body, {"recovered": key})
    # Recorded only once said: a condition whose alert was not delivered is alerted again.
    if delivered:
        notify.record(c, STATE, {"time": notify.now(), "flags": now})
    return 0 if delivered else 1
