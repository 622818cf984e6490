"""Checks run before any operation: a host of an unknown release, or data that cannot work
on it, stops the whole run before anything is changed, with a message saying what to set."""

from pyinfra import host
from pyinfra.api.exceptions import DeployError

from tasks.paths import deploy_lock_file, host_program
from tasks.render import rendered_files
from tasks.settings import (
    checked_calendar_times,
    checked_recovering,
    checked_timezone,
    wkhtmltopdf_source,
)
from tasks.util import InstanceActivity, host_data

data = host_data()  # raises for a release group_data/all.py does not list
if not data.backup_host and not data.odoo_db_name:
    raise DeployError("odoo_db_name must be set in the environment's group data")
if not data.backup_host:
    wkhtmltopdf_source(data)
checked_timezone(data)
checked_calendar_times(data)  # in that zone: never at a time a change of time skips
checked_recovering(data)
rendered_files(data)  # every template's variables, addons paths checked among them

if not data.backup_host:  # the backup host runs no instance
    # One authority over the instance: an apply restarts Odoo and syncs its venv, so it never
    # runs beside a deploy, a backup or a repair, nor on a deploy that died before its repair.
    # The host program says (deploy --activity); the apply then holds the lock itself (oca_france).
    activity = host.get_fact(
        InstanceActivity, program=host_program(data, "deploy"), user=data.odoo_user
    )
    activity = activity or {}
    if "error" in activity:  # it could not say: nothing is known to be safe
        raise DeployError(
            f"{host.name}: could not ask the host what runs (deploy --activity):"
            f" {activity['error']}"
        )
    if activity.get("held_by_apply"):
        raise DeployError(
            f"{host.name}: another apply is running (it holds {deploy_lock_file(data)}:"
            f" {activity['held_by']}); its hold ends with it (or with its SSH session)"
        )
    if activity.get("held_by"):  # running (a running deploy has its state file too)
        raise DeployError(
            f"{host.name}: a deploy, a backup or a repair is running (it holds"
            f" {deploy_lock_file(data)}: {activity['held_by']}): apply again when it is done"
        )
    unfinished = activity.get("unfinished")
    if unfinished:  # and nobody holds the lock: it died
        raise DeployError(
            f"{host.name}: a deploy of {unfinished.get('ref')} is unfinished (step"
            f" {unfinished.get('step')}): its repair (odoo-deploy-repair.timer, within a minute)"
            " comes first; apply again after it (sudo -u odoo ~odoo/scripts/deploy --status says"
            " when it is done)"
        )
