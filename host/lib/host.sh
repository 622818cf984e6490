# shellcheck shell=bash
# Installed by infra-oca-france (pyinfra) in /opt/oca-france/lib: local changes are overwritten.
#
# Sourced by the host's bash programs: the host config (/etc/oca-france/host.json) as
# readonly HOST_<KEY> variables, and host_py, the way to the Python side (the backup format).

HOST_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly HOST_LIB_DIR

host_py() {
    PYTHONPATH="$HOST_LIB_DIR" python3 -B -m "oca_france_host.$1" "${@:2}"
}

host_settings=$(host_py config shell) || exit 2
eval "$host_settings"
unset host_settings
