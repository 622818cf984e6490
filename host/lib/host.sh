# shellcheck shell=bash
# Installed by infra-oca-france (pyinfra) in /opt/oca-france/lib: local changes are overwritten.
#
# Sourced by the host's bash programs: the host config (/etc/oca-france/host.json) as
# readonly HOST_<KEY> variables, and host_py, the way to the Python side (the backup format).

HOST_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly HOST_LIB_DIR

# Isolated (-I): neither the caller's directory (python3 -m would put it first on sys.path:
# a json.py planted where root runs a program) nor its PYTHON* variables; the library alone.
host_py() {
    python3 -I -B -c 'import runpy, sys
sys.path.insert(0, sys.argv.pop(1))
runpy.run_module(sys.argv.pop(1), run_name="__main__", alter_sys=True)' \
        "$HOST_LIB_DIR" "oca_france_host.$1" "${@:2}"
}

host_settings=$(host_py config shell) || exit 2
eval "$host_settings"
unset host_settings

# The deploy lock, taken the same way by every program that touches the database, the
# filestore or the service: on fd 9, waiting up to $1 seconds (0: not at all), saying so.
# Fails (status 1) when still held; closing fd 9 (or exiting) releases it.
host_lock() {
    local wait=$1
    exec 9>>"$HOST_DEPLOY_LOCK_FILE"
    flock -n 9 && return 0
    ((wait > 0)) || return 1
    printf '%s %s: %s is held (a deploy, a backup or a repair): waiting up to %ss\n' \
        "$(date '+%Y-%m-%d %H:%M:%S')" "$(basename "$0")" "$HOST_DEPLOY_LOCK_FILE" "$wait" >&2
    flock -w "$wait" 9
}

# A deploy is unfinished while its state file is there (it died, or it runs): nothing but
# its repair may act on the data. Prints "<ref> <step>" when one is (lock.py reads it).
host_unfinished_deploy() {
    host_py lock unfinished "$HOST_DEPLOY_STATE_FILE"
}
