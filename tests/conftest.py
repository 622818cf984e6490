"""Shared test helpers: the project's own data, loaded the way pyinfra loads it."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

# Throwaway values for tests that load the inventory without a sandbox: the secrets, and a
# transfer key pair (not a real key: only rendered, never used).
TEST_KEY_DIR = Path(tempfile.mkdtemp(prefix="oca-france-test-key-"))
(TEST_KEY_DIR / "transfer").write_text(
    "-----BEGIN KEY-----\ntest-private-key-9d3e\n-----END KEY-----\n"
)
(TEST_KEY_DIR / "transfer.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAtest transfer\n")
(TEST_KEY_DIR / "offsite").write_text(
    "-----BEGIN KEY-----\ntest-offsite-private-key-51ab\n-----END KEY-----\n"
)
(TEST_KEY_DIR / "offsite.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAtest offsite\n")
TEST_SECRETS = {
    "ODOO_OCA_FRANCE_ADMIN_PASSWORD_RECETTE": "test-secret-recette-4f9a",
    "ODOO_OCA_FRANCE_ADMIN_PASSWORD_PROD": "test-secret-prod-7c21",
    "OCA_FRANCE_BACKUP_TRANSFER_KEY_FILE": str(TEST_KEY_DIR / "transfer"),
    "OCA_FRANCE_OFFSITE_KEY_FILE": str(TEST_KEY_DIR / "offsite"),
    "ODOO_OCA_FRANCE_BORG_PASSPHRASE": "test-borg-passphrase-e20c",
}
# What group_data/prod.py must say about recette before a transfer can be configured.
TEST_TRANSFER_DATA = {
    "backup_transfer_host": "recette.test",
    "backup_transfer_host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAhostkey",
    # ... and about the backup host, before the push can be.
    "offsite_host": "backup.test",
    "offsite_host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAbackuphostkey",
    # ... and about the provider's reverse proxy, before the front door can be.
    "front_trusted_proxies": ["10.0.3.1"],
}

# Every alert channel set (group_data and the optional secrets of .env).
TEST_ALERT_SECRETS = {
    "ODOO_OCA_FRANCE_ALERT_SMTP_PASSWORD": 'test-smtp-"pass\\word-91d3',
    "ODOO_OCA_FRANCE_ALERT_WEBHOOK_URL": "https://hooks.test/token-5e8b",
}
TEST_ALERT_DATA = {
    "alert_email_to": ["ops@test", "cto@test"],
    "alert_smtp_host": "relay.test",
    "alert_smtp_user": "alerts@test",
    "alert_webhook": True,
    "ping_urls": {"backup": "https://hc.test/ping/b", "transfer": None, "refresh": None},
}


def load_inventory(environ: dict[str, str], override_data: dict | None = None):
    """The project's inventory and group data, through pyinfra's own loader."""
    from pyinfra.api import State
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory

    saved = dict(os.environ)
    os.environ.update(environ)
    try:
        with ctx_state.use(State()):
            return make_inventory(
                str(PROJECT_DIR / "inventory.py"), override_data=override_data, cwd=str(PROJECT_DIR)
            )
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def inventory():
    return load_inventory(TEST_SECRETS, TEST_TRANSFER_DATA)


RELEASES = ["debian-12", "debian-13", "ubuntu-24.04"]


def release_data(inventory, host: str, release: str):
    """A host's data as the tasks read it on a host of `release` (its overrides applied)."""
    from tasks.settings import ReleaseData

    return ReleaseData(inventory.get_host(host).data, release)


@pytest.fixture(scope="session", params=["oca-france-recette", "oca-france-prod"])
def host_name(request):
    return request.param


@pytest.fixture(scope="session", params=RELEASES)
def host_data(request, inventory, host_name):
    """Each environment's data on each supported release (wkhtmltopdf aside, see test_static)."""
    return release_data(inventory, host_name, request.param)
