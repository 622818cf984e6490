"""Odoo's master password as Odoo stores it: a passlib pbkdf2-sha512 hash, never the password.

Odoo accepts `admin_passwd = $pbkdf2-sha512$...` in its config and verifies against it
(odoo.tools.config.verify_admin_password). The hash is derived reproducibly, so that the same
.env renders the same config and a re-apply changes nothing: its salt comes from the password
through the same slow function (a guess costs as much through the salt as through the hash).
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

ROUNDS = 600_000  # Odoo 18's crypt_context (odoo/tools/config.py): never less than Odoo asks
SALT_BYTES = 16  # passlib's pbkdf2_sha512 default


def ab64(raw: bytes) -> str:
    """passlib's "adapted base64": '.' for '+', no padding."""
    return base64.b64encode(raw).decode().rstrip("=").replace("+", ".")


@lru_cache
def admin_password_hash(password: str, instance: str) -> str:
    """The hash of `password` for the config of `instance` (its database name)."""
    salt_input = f"infra-oca-france admin_passwd salt: {instance}".encode()
    salt = hashlib.pbkdf2_hmac("sha512", password.encode(), salt_input, ROUNDS)[:SALT_BYTES]
    checksum = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, ROUNDS)
    return f"$pbkdf2-sha512${ROUNDS}${ab64(salt)}${ab64(checksum)}"
