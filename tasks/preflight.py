"""Checks run before any operation: a host of an unknown release, or data that cannot work
on it, stops the whole run before anything is changed, with a message saying what to set."""

from tasks.render import checked_addons_subdirs, rendered_files, wkhtmltopdf_source
from tasks.util import host_data

data = host_data()  # raises for a release group_data/all.py does not list
wkhtmltopdf_source(data)
checked_addons_subdirs(data)
rendered_files(data)  # every template variable can be built for this host
if not data.odoo_db_name:
    raise ValueError("odoo_db_name must be set in the environment's group data")
