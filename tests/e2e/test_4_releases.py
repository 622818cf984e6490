"""The app picks its Python; data a host cannot satisfy stops the apply before any change.

Runs last: it moves recette to a commit that requires Python 3.13.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from conftest import PROJECT_DIR

from .conftest import BIN, CHECKOUT, ODOO_CONF, PROD, RECETTE, deploy, head, main_pid

SNAPSHOTS = "/home/odoo/.odoo_dumps/snapshots"
PY313_TAG = "18.0-20261127"


def requires_python_313(work: Path) -> None:
    """The real app's requirement: Python 3.13 only; uv.lock follows."""
    pyproject = work / "pyproject.toml"
    requirement = 'requires-python = "==3.13.*"'
    text = re.sub(r'^requires-python = ".*"$', requirement, pyproject.read_text(), flags=re.M)
    pyproject.write_text(text)
    (work / ".python-version").write_text("3.13\n")
    uv = shutil.which("uv") or str(PROJECT_DIR / ".tools" / "bin" / "uv")
    subprocess.run([uv, "lock", "--quiet", "--directory", str(work)], check=True, timeout=300)


def state(host) -> dict:
    return {
        "head": head(host),
        "pid": main_pid(host),
        "snapshots": host.check_output(f"ls {SNAPSHOTS}"),
        "python": host.check_output(f"readlink -f {CHECKOUT}/.venv/bin/python"),
    }


def test_app_requiring_python_313_is_refused_on_debian_12_with_the_version_named(sandbox, prod):
    """Debian 12 has 3.11 and no route to Python downloads: refused, nothing touched."""
    commit = sandbox.push_commit("python/3.13", "Require Python 3.13", requires_python_313)
    subprocess.run(
        ["git", "-C", str(sandbox.origin), "tag", "-f", PY313_TAG, commit],
        check=True,
        capture_output=True,
    )
    before = state(prod)
    result = deploy(prod, PY313_TAG)
    assert result.rc == 2, result.stdout + result.stderr
    assert "needs Python ==3.13.*" in result.stderr, result.stderr
    assert state(prod) == before
    sandbox.wait_healthy(PROD)


def test_app_requiring_python_313_deploys_on_debian_13_with_its_system_python(sandbox, recette):
    result = deploy(recette, PY313_TAG)
    assert result.rc == 0, result.stdout + result.stderr
    assert head(recette) == recette.check_output(
        f"sudo -u odoo git -C {CHECKOUT} rev-parse {PY313_TAG}^{{commit}}"
    )
    assert recette.check_output(f"readlink -f {CHECKOUT}/.venv/bin/python") == (
        "/usr/bin/python3.13"
    )
    assert "Python for 18.0-20261127 (==3.13.* (.python-version: 3.13))" in result.stdout
    sandbox.wait_healthy(RECETTE)


def fingerprint(host) -> tuple[str, str]:
    odoo_files = f"{ODOO_CONF} /etc/oca-france/host.json {BIN}/* /etc/systemd/system/odoo-*"
    return host.check_output(f"sha256sum {odoo_files}"), main_pid(host)


def test_a_missing_extra_addons_path_stops_the_apply(sandbox, prod):
    before = fingerprint(prod)
    result = sandbox.apply("--limit", PROD, "--data", 'odoo_addons_subdirs=["vendor/addons"]')
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "addons path does not exist: /home/odoo/oca-france/vendor/addons" in output
    assert fingerprint(prod) == before  # .odoorc never pointed at it, Odoo never restarted


def test_a_release_without_wkhtmltopdf_source_stops_before_any_change(sandbox, recette):
    before = fingerprint(recette)
    # Without the sandbox's .deb for Debian 13, recette has neither a package nor a build.
    result = sandbox.apply("--limit", RECETTE, "--data", "wkhtmltopdf_debs={}")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "debian-13 has no wkhtmltopdf package" in output
    assert "wkhtmltopdf_debs['debian-13']" in output
    assert "Grand total" not in output  # stopped while planning: no operation ran
    assert fingerprint(recette) == before
