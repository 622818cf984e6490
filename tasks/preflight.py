"""Checks run before any operation: a host of an unknown release, or data that cannot work
on it, stops the whole run before anything is changed, with a message saying what to set."""

from pyinfra.api.exceptions import DeployError

from tasks.render import rendered_files, wkhtmltopdf_source
from tasks.util import host_data

data = host_data()  # raises for a release group_data/all.py does not list
if not data.odoo_db_name:
    raise DeployError("odoo_db_name must be set in the environment's group data")
wkhtmltopdf_source(data)
rendered_files(data)  # every template's variables, addons paths checked among them
