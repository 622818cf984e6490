"""Shared test helpers: the project's own data, loaded the way pyinfra loads it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

# Throwaway values for tests that load the inventory without a sandbox.
TEST_SECRETS = {
    "ODOO_OCA_FRANCE_ADMIN_PASSWORD_RECETTE": "test-secret-recette-4f9a",
    "ODOO_OCA_FRANCE_ADMIN_PASSWORD_PROD": "test-secret-prod-7c21",
}


def load_inventory(environ: dict[str, str]):
    """The project's inventory and group data, through pyinfra's own loader."""
    from pyinfra.api import State
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory

    saved = dict(os.environ)
    os.environ.update(environ)
    try:
        with ctx_state.use(State()):
            return make_inventory(str(PROJECT_DIR / "inventory.py"), cwd=str(PROJECT_DIR))
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def inventory():
    return load_inventory(TEST_SECRETS)


RELEASES = ["debian-12", "debian-13", "ubuntu-24.04"]


def release_data(inventory, host: str, release: str):
    """A host's data as the tasks read it on a host of `release` (its overrides applied)."""
    from tasks.render import ReleaseData

    return ReleaseData(inventory.get_host(host).data, release)


@pytest.fixture(scope="session", params=["oca-france-recette", "oca-france-prod"])
def host_name(request):
    return request.param


@pytest.fixture(scope="session", params=RELEASES)
def host_data(request, inventory, host_name):
    """Each environment's data on each supported release (wkhtmltopdf aside, see test_static)."""
    return release_data(inventory, host_name, request.param)
