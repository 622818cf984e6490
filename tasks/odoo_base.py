"""What any Odoo host needs: PostgreSQL, the odoo account, polkit, uv, wkhtmltopdf, libraries."""

import shlex

from pyinfra.operations import apt, files, pip, postgres, server

from tasks.settings import wkhtmltopdf_source
from tasks.util import command_succeeds, host_data, install_template, psql_value, run_unless

data = host_data()

# --- PostgreSQL
apt.packages(
    name="Install PostgreSQL",
    packages=data.postgresql_packages,
)


def template1_is_utf8_in_locale() -> bool:
    row = psql_value(
        "SELECT pg_encoding_to_char(encoding) || ' ' || datcollate || ' ' || datctype"
        " FROM pg_database WHERE datname = 'template1'"
    )
    return row == f"UTF8 {data.system_locale} {data.system_locale}"


# A cluster created before the locale existed has an SQL_ASCII or C template1; every
# database Odoo creates copies template1, so it must be UTF8 and sort the French way.
run_unless(
    name=f"Re-create template1 in UTF8 with the {data.system_locale} collation",
    done=template1_is_utf8_in_locale,
    command=(
        "psql -X -v ON_ERROR_STOP=1 -d postgres"
        " -c \"UPDATE pg_database SET datistemplate = false WHERE datname = 'template1'\""
        " -c 'DROP DATABASE template1'"
        " -c \"CREATE DATABASE template1 WITH TEMPLATE template0 ENCODING 'UTF8'"
        f" LC_COLLATE '{data.system_locale}' LC_CTYPE '{data.system_locale}'\""
        " -c \"UPDATE pg_database SET datistemplate = true WHERE datname = 'template1'\""
    ),
    _sudo=True,
    _sudo_user="postgres",
)

# --- The odoo account
server.user(
    name=f"Create the {data.odoo_user} system user",
    user=data.odoo_user,
    home=data.odoo_home,
    shell="/bin/bash",
    system=True,
    ensure_home=True,
    create_home=True,
)

postgres.role(
    name=f"Create the {data.odoo_user} PostgreSQL role (login, createdb, not superuser)",
    role=data.odoo_user,
    login=True,
    createdb=True,
    superuser=False,
    _sudo=True,
    _sudo_user="postgres",
)

# The cluster's default time zone is the host's (initdb reads it): Odoo's sessions stay in UTC,
# so that SQL's now() and dates agree with what Odoo writes (it runs in UTC itself).
role_in_utc = (
    "SELECT 1 FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole"
    f" WHERE r.rolname = '{data.odoo_user}' AND s.setdatabase = 0"
    " AND 'TimeZone=UTC' = ANY (s.setconfig)"
)
run_unless(
    name=f"Keep the {data.odoo_user} role's sessions in UTC, whatever the host's time zone",
    done=lambda: psql_value(role_in_utc) == "1",
    command=shlex.join(
        ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-c"]
        + [f"ALTER ROLE \"{data.odoo_user}\" SET timezone = 'UTC'"]
    ),
    _sudo=True,
    _sudo_user="postgres",
)

# --- polkit: odoo manages its own units, nothing else
apt.packages(
    name="Install polkit",
    packages=data.polkit_packages,
)

install_template(
    name="Let odoo start, stop and restart its own units (polkit rule)",
    template="polkit-odoo.rules.j2",
)

# --- uv, pinned, from PyPI
pip.venv(
    name=f"Create the venv that holds uv ({data.uv_install_dir})",
    path=data.uv_install_dir,
    python="python3",
)

pip.packages(
    name=f"Install uv {data.uv_version}",
    packages=[f"uv=={data.uv_version}"],
    pip=f"{data.uv_install_dir}/bin/pip",
)

files.link(
    name="Put uv on the PATH (/usr/local/bin/uv)",
    path="/usr/local/bin/uv",
    target=f"{data.uv_install_dir}/bin/uv",
)

# --- wkhtmltopdf (PDF reports) and the libraries Odoo's Python dependencies build against
wkhtmltopdf = wkhtmltopdf_source(data)
if "deb" in wkhtmltopdf:
    wkhtmltopdf_deb = "/var/cache/wkhtmltopdf.deb"
    files.download(
        name="Download the patched wkhtmltopdf build (checked against its sha256)",
        src=wkhtmltopdf["deb"],
        dest=wkhtmltopdf_deb,
        sha256sum=wkhtmltopdf["sha256"],
    )
    apt.deb(
        name="Install the patched wkhtmltopdf build",
        src=wkhtmltopdf_deb,
    )
else:
    apt.packages(
        name=f"Install wkhtmltopdf ({data.release} package {wkhtmltopdf['package']})",
        packages=[wkhtmltopdf["package"]],
    )

apt.packages(
    name="Install the system libraries Odoo's Python dependencies need, and nftables",
    packages=data.odoo_system_packages,
)

# The service's stop shuts Odoo's ports with an nftables rule (odoo-front-gate): a container
# without CAP_NET_ADMIN in its network namespace cannot, and would drop requests at each stop.
run_unless(
    name="Check nftables works here (odoo-front-gate; a container needs CAP_NET_ADMIN)",
    done=lambda: command_succeeds("nft list tables", "root"),
    command=(
        "nft list tables >&2 || { echo 'nftables does not work on this host (a container"
        " needs CAP_NET_ADMIN in its network namespace): odoo-front-gate cannot shut"
        " Odoo'''s ports during a stop' >&2; exit 1; }"
    ),
)
