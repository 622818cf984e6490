"""Every host program answers --help with its usage (and no code), and refuses a stray
argument; each finds the host config or says which file it could not read."""

from __future__ import annotations

import subprocess

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


# What a module planted in the caller's directory would do if a program imported it.
PLANTED = "import pathlib\npathlib.Path(__file__).with_name('PLANTED-RAN').write_text('ran')\n"


@pytest.mark.parametrize("program", PROGRAMS)
def test_nothing_planted_in_the_callers_directory_runs(make_host, program):
    """Root may run a program from ~odoo or the app's checkout: modules planted there (json,
    the library's own name) are never imported, nor is PYTHONPATH followed."""
    host = make_host("oca-france-prod")
    planted = host.root / "planted"
    (planted / "oca_france_host").mkdir(parents=True)
    for module in ("json.py", "argparse.py", "oca_france_host/__init__.py"):
        (planted / module).write_text(PLANTED)
    result = subprocess.run(
        [str(BIN / program), *(["--status"] if program == "deploy" else ["--help"])],
        capture_output=True,
        text=True,
        env=host.env(PYTHONPATH=str(planted)),
        cwd=planted,
        timeout=60,
    )
    assert not (planted / "PLANTED-RAN").exists(), result.stdout + result.stderr
    assert not (planted / "oca_france_host" / "PLANTED-RAN").exists()


def test_the_front_gate_shuts_odoos_ports_then_waits_for_its_queue(make_host, tmp_path):
    """odoo-front-gate close: the nftables rule refusing new connections to Odoo's ports, then
    a wait until the connections queued for them are taken; open: the rule gone."""
    host = make_host("oca-france-prod")
    queue = tmp_path / "queue"
    queue.write_text("2\n")  # two connections queued, taken one by one
    host.fake(
        "ss",
        f'n=$(cat {queue}); echo "LISTEN $n 16 127.0.0.1:18069 0.0.0.0:*";'
        f' [ "$n" -gt 0 ] && echo $((n - 1)) > {queue}; exit 0',
    )
    ruleset = tmp_path / "ruleset"
    table = tmp_path / "table"  # the nftables table, while it exists
    host.fake(
        "nft",
        f'case "$1" in -f) cat > {ruleset}; touch {table} ;; list) [ -e {table} ] ;;'
        f" delete) rm {table} ;; esac",
    )
    closed = host.run("odoo-front-gate", "close")
    assert closed.returncode == 0, closed.stdout + closed.stderr
    rules = ruleset.read_text()
    assert 'oifname "lo" tcp dport { 18069, 8072 }' in rules
    assert "== syn reject with tcp reset" in rules
    calls = host.logged()
    assert calls[:2] == ["nft list table inet oca_france_gate", "nft -f -"]
    assert [call for call in calls if call.startswith("ss ")][-1].startswith("ss -Hltn")
    assert queue.read_text() == "0\n"  # waited until the queue was empty
    before = len(host.logged())
    assert host.run("odoo-front-gate", "close").returncode == 0  # again: never two copies
    assert host.logged()[before : before + 3] == [
        "nft list table inet oca_france_gate",
        "nft delete table inet oca_france_gate",
        "nft -f -",
    ]
    opened = host.run("odoo-front-gate", "open")
    assert opened.returncode == 0, opened.stdout + opened.stderr
    assert host.logged()[-1] == "nft delete table inet oca_france_gate" and not table.exists()
    assert host.run("odoo-front-gate", "open").returncode == 0  # already open: fine
    assert host.run("odoo-front-gate", "ajar").returncode == 2
