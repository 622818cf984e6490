"""The host programs (host/: bin/ and lib/) and their one config, on every host."""

from pathlib import Path

from pyinfra.operations import files

from tasks.paths import host_config_file
from tasks.util import atomic_sync, install_template

HOST_DIR = Path(__file__).resolve().parent.parent / "host"


def install_host_programs(data) -> None:
    """Root-owned all the way up, outside odoo's home, so that nothing root writes can be
    redirected by odoo (pyinfra follows links). Called after a task's checks: a refused apply
    changes neither, and never leaves new programs with an old config."""
    for path in (data.host_programs_dir, data.host_config_dir):
        files.directory(
            name=f"Create {path} (root-owned)", path=path, user="root", group="root", mode="755"
        )
    for part, mode in (("bin", "755"), ("lib", "644")):
        # One rename a file: a program starting then reads the old file or the new one.
        atomic_sync(
            name=f"Install the host programs' {part}/ ({data.host_programs_dir}/{part})",
            src=str(HOST_DIR / part),
            dest=f"{data.host_programs_dir}/{part}",
            user="root",
            group="root",
            mode=mode,
            dir_mode="755",
            delete=True,
            exclude=["*.pyc"],
            exclude_dir=["__pycache__", "*/__pycache__"],  # a path relative to src
        )
    install_template(
        name=f"Write the host programs' config ({host_config_file(data)})",
        template="host.json.j2",
    )
