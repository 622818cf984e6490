"""odoo-check: what odoo-status flags (a filesystem over disk_alert_percent, the newest
backup or production data too old, the service down, an unfinished deploy...), watched by
odoo-check.timer: one alert when a condition appears, one when it is gone, nothing while it
lasts. (A failed unit alerts on its own: OnFailure=.)

    odoo-check          compare with the last check (check.json in alert_state_dir), alert
"""

from __future__ import annotations

import os

from oca_france_host import config, notify, programs, status

STATE = "check.json"


def main(argv: list[str]) -> int:
    c = config.load()
    refused = programs.refused_arguments(argv, __doc__)
    if refused is not None:
        return refused
    os.chdir("/")
    _, flags = status.report(c, units=False)
    now = dict(flags)
    before = notify.recorded(c, STATE).get("flags", {})
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
