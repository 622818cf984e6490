"""Every host program answers --help with its usage (and no code), and refuses a stray
argument; each finds the host config or says which file it could not read."""

from __future__ import annotations

import pytest

from .conftest import BIN

PROGRAMS = sorted(path.name for path in BIN.iterdir() if path.name != "oca-france")


@pytest.mark.parametrize("program", PROGRAMS)
def test_help_is_usage_not_code(make_host, program):
    host = make_host("oca-france-prod")
    result = host.run(program, "--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout + result.stderr
    assert "sage" in text or program in text  # Usage:/usage, or the program's own name
    for code in ("set -euo pipefail", "readonly ", "import ", "def "):
        assert code not in text, (program, text)


@pytest.mark.parametrize("program", [p for p in PROGRAMS if p != "odoo-backup-verify"])
def test_a_missing_config_is_named(make_host, program):
    """(odoo-backup-verify needs none: it checks the backup it is given.)"""
    host = make_host("oca-france-prod")
    host.config_file.unlink()
    result = host.run(program, *(["--status"] if program == "deploy" else []))
    assert result.returncode != 0
    assert str(host.config_file) in result.stderr, result.stderr
