#!/usr/bin/env bash
# The system packages a make target needs on this machine (Debian/Ubuntu). Installs the
# missing ones when run as root; otherwise stops, naming the command to run.
#
#   tests/system-deps.sh setup|lint|sandbox|test|bench
#   tests/system-deps.sh --list TARGET   print the packages TARGET needs, one a line
set -euo pipefail

log() {
    printf '%s system-deps: %s\n' "$(date '+%H:%M:%S')" "$*" >&2
}

die() {
    log "ERROR: $*"
    exit 1
}

usage() {
    sed -n '2,7p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

# package:probe, the probe being a shell test that succeeds when the tool is usable (a tool
# may come from elsewhere than apt: pyenv's python3, a node of nodesource).
readonly SETUP=(
    "make:command -v make"
    "git:command -v git"
    "python3:command -v python3"
    "python3-venv:python3 -c 'import ensurepip, venv'"
)
readonly LINT=(
    "shellcheck:command -v shellcheck"
    "nodejs:command -v node" # the polkit rule is JavaScript: the static tests run it in node
    "rsync:command -v rsync" # the unit tests run recette's acceptance, which copies with it
    "borgbackup:command -v borg" # ... and the backup host's guard and rollback, on a real repository
)
readonly SANDBOX=(
    "debootstrap:command -v debootstrap"
    "systemd-container:command -v systemd-nspawn"
    "nftables:command -v nft"
    "iproute2:command -v ip"
    "openssh-client:command -v ssh"
    "xz-utils:command -v xz" # the Odoo source tarball
)
readonly E2E=(
    # the alerts' SMTP sink the end-to-end tests start (Debian's, run by the system python3)
    "python3-aiosmtpd:/usr/bin/python3 -c 'import aiosmtpd'"
)

entries_for() {
    case "$1" in
        setup) printf '%s\n' "${SETUP[@]}" ;;
        lint) printf '%s\n' "${SETUP[@]}" "${LINT[@]}" ;;
        sandbox) printf '%s\n' "${SETUP[@]}" "${SANDBOX[@]}" ;;
        test | bench) printf '%s\n' "${SETUP[@]}" "${LINT[@]}" "${SANDBOX[@]}" "${E2E[@]}" ;;
        *) usage >&2; exit 2 ;;
    esac
}

missing_packages() {
    local entry package probe
    while IFS= read -r entry; do
        package=${entry%%:*}
        probe=${entry#*:}
        bash -c "$probe" >/dev/null 2>&1 || echo "$package"
    done < <(entries_for "$1")
}

install() {
    local target=$1 missing
    mapfile -t missing < <(missing_packages "$target")
    ((${#missing[@]})) || return 0
    if [[ $EUID -ne 0 ]]; then
        die "make $target needs: ${missing[*]}. Run: sudo apt-get install -y ${missing[*]}"
    fi
    command -v apt-get >/dev/null || die "no apt-get: install ${missing[*]} by hand"
    log "installing ${missing[*]} (make $target needs them)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    mapfile -t missing < <(missing_packages "$target")
    ((${#missing[@]} == 0)) || die "still missing after apt-get install: ${missing[*]}"
}

case "${1:-}" in
    --list) entries_for "${2:-}" | cut -d: -f1 ;;
    -h | --help) usage ;;
    *) install "${1:-}" ;;
esac
