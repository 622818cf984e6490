#!/usr/bin/env bash
# Local stand-ins for the LXD containers, booted by systemd-nspawn (systemd as PID 1):
# recette on Debian 13, prod on Debian 12, the backup host on Debian 13, each in its own
# network namespace, reachable over SSH with a throwaway key.
#
#   sandbox.sh up                build (cached) and boot the containers; idempotent
#   sandbox.sh rootfs            only build the rootfs tarballs (if missing)
#   sandbox.sh check-rootfs DIR  refuse a rootfs whose / is not 0755 root:root
#   sandbox.sh info              how to reach each Odoo and each container
#   sandbox.sh power-cut NAME    kill every process of a container at once (up boots it again)
#   sandbox.sh rebuild NAME [SUITE]
#                                destroy a container (its disk too) and boot a bare one in its
#                                place: same name and address, a new host key, its own Debian
#                                suite or SUITE (bookworm, trixie: a host rebuilt on a newer one)
#   sandbox.sh down              stop the containers, remove namespaces, veths, nftables table
#
# Containers reach only the package registries (apt, PyPI), through an nftables masquerade
# restricted to those addresses on ports 80/443, and each other's SSH (prod sends its backups
# to recette, and pushes them to the backup host). Needs root.
set -euo pipefail

PROJECT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly PROJECT_DIR
readonly STATE_DIR="${SANDBOX_STATE_DIR:-/var/lib/oca-france-sandbox}"
readonly CACHE_DIR="${SANDBOX_CACHE_DIR:-/var/cache/oca-france-sandbox}"
readonly DEBIAN_MIRROR="http://deb.debian.org/debian"
readonly NFT_TABLE="oca_france_sandbox"
readonly SUBNET="10.231.0.0/16"
readonly APP_SOURCE="$PROJECT_DIR/tests/app"
readonly APP_ORIGIN="$STATE_DIR/app-origin.git"
readonly APP_ORIGIN_IN_CONTAINER="/srv/app-origin.git"
readonly REGISTRY_HOSTS="deb.debian.org pypi.org files.pythonhosted.org"
readonly ODOO_PORT=8069
# The non-root user with passwordless sudo every container has (only prod's SSH config uses it).
readonly SUDO_LOGIN="ops"
# Where Odoo comes from (one setting): the trimmed Odoo 18.0 source tarball beside the
# checkout by default (../shared/odoo), or a git URL such as
# git+https://github.com/OCA/OCB@18.0 on a machine that reaches it.
readonly ODOO_TARBALL_NAME="shared/odoo/odoo-18.0-trimmed.tar.xz"
# The Odoo wheel built from a tarball, kept per tarball; the containers see it at the same
# path (read-only), so the app's uv.lock, made here, holds there too.
readonly ODOO_WHEELS_DIR="$CACHE_DIR/odoo-wheels"
UV_BIN="${UV:-$(command -v uv || echo "$PROJECT_DIR/.tools/bin/uv")}"
readonly UV_BIN

# name  index (10.231.<index>.0/30: .1 host side, .2 container)  Debian suite  login user
# pyinfra logs in as the README says users do: prod as a non-root user with passwordless sudo
# (as real servers are reached), recette as root (the other way the project supports).
# The backup host (Debian 13, as a new host at another provider would be) is reached through the
# sudo login too.
readonly CONTAINERS=(
    "oca-france-recette 1 trixie root"
    "oca-france-prod 2 bookworm $SUDO_LOGIN"
    "oca-france-backup 3 trixie $SUDO_LOGIN"
)
# Sandbox-only group data (pyinfra --group-data): what the sandbox's hosts need and real
# hosts get elsewhere. Today: the wkhtmltopdf .deb for Debian 13, which has no package.
readonly GROUP_DATA_DIR="$STATE_DIR/group_data"
readonly DEBS_DIR="$STATE_DIR/debs"
readonly DEBS_IN_CONTAINER="/srv/sandbox-debs"
readonly WKHTMLTOX_TEST_DEB="wkhtmltox_0.12.6.1-3~sandbox_all.deb"

log() {
    printf '%s sandbox: %s\n' "$(date '+%H:%M:%S')" "$*" >&2
}

die() {
    log "ERROR: $*"
    exit 1
}

usage() {
    sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

container_ip() { echo "10.231.$1.2"; }
host_ip() { echo "10.231.$1.1"; }
netns_of() { echo "ocasb-$1"; }
# veth names are limited to 15 characters
veth_of() { echo "vocasb$1"; }
rootfs_of() { echo "$STATE_DIR/rootfs/$1"; }
tarball_of() { echo "$CACHE_DIR/debian-$1-rootfs.tar.gz"; }
pidfile_of() { echo "$STATE_DIR/$1.pid"; }

is_running() {
    local pid
    pid=$(cat "$(pidfile_of "$1")" 2>/dev/null) || return 1
    kill -0 "$pid" 2>/dev/null && grep -q systemd-nspawn "/proc/$pid/cmdline" 2>/dev/null
}

install_host_packages() {
    bash "$PROJECT_DIR/tests/system-deps.sh" sandbox
}

# Debian minbase plus what a fresh LXD image has: systemd, dbus, sshd, sudo. polkitd is left
# out (debootstrap cannot resolve its logind dependency): the deploy installs it. The .debs
# are kept (--cache-dir), the rootfs itself is built from nothing.
build_rootfs_tarball() {
    local suite=$1 tarball tmp
    tarball=$(tarball_of "$suite")
    [[ -s "$tarball" ]] && return 0
    log "building the Debian $suite rootfs (debootstrap, cached in $tarball)"
    mkdir -p "$CACHE_DIR/debootstrap-debs/$suite"
    tmp=$(mktemp -d "$CACHE_DIR/rootfs-$suite.XXXXXX")
    # mktemp makes it 0700: as the container's /, it would keep every user but root out.
    chmod 755 "$tmp"
    debootstrap --variant=minbase --cache-dir="$CACHE_DIR/debootstrap-debs/$suite" \
        --include=systemd-sysv,dbus,openssh-server,ca-certificates,iproute2,sudo \
        "$suite" "$tmp" "$DEBIAN_MIRROR" >"$CACHE_DIR/debootstrap-$suite.log" 2>&1 \
        || { rm -rf "$tmp"; die "debootstrap $suite failed, see $CACHE_DIR/debootstrap-$suite.log"; }
    check_rootfs "$tmp" || { rm -rf "$tmp"; exit 1; }
    rm -f "$tmp"/etc/ssh/ssh_host_*
    tar -C "$tmp" -czf "$tarball.partial" .
    mv "$tarball.partial" "$tarball"
    rm -rf "$tmp"
}

# Both suites at once: debootstrap mostly waits on downloads and dpkg.
build_rootfs_tarballs() {
    local entry name index suite pids=() pid status=0
    for suite in $(for entry in "${CONTAINERS[@]}"; do read -r _ _ release _ <<<"$entry"; echo "$release"; done | sort -u); do
        build_rootfs_tarball "$suite" &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do
        wait "$pid" || status=1
    done
    ((status == 0)) || die "could not build the rootfs tarballs"
}

# A / that is not 0755 root:root lets no user but root run anything (sudo -u fails at once).
check_rootfs() {
    local dir=$1 owner
    owner=$(stat -c '%a %U:%G' "$dir") || die "$dir: no such rootfs"
    [[ "$owner" == "755 root:root" ]] \
        || die "$dir: its / is $owner, must be 755 root:root; rebuild it (make sandbox-down; rm $CACHE_DIR/debian-*-rootfs.tar.gz)"
}

# ODOO_SOURCE, else the shared tarball beside this checkout, or beside the repository it was
# cloned from (a clone elsewhere, as CI makes).
odoo_source() {
    local origin candidate
    if [[ "${ODOO_SOURCE:-}" == git+* ]]; then
        echo "$ODOO_SOURCE"
        return 0
    elif [[ -n "${ODOO_SOURCE:-}" ]]; then
        realpath -e "$ODOO_SOURCE" || die "ODOO_SOURCE=$ODOO_SOURCE: no such file"
        return 0
    fi
    origin=$(git -C "$PROJECT_DIR" config --get remote.origin.url 2>/dev/null || true)
    for candidate in "$PROJECT_DIR/../$ODOO_TARBALL_NAME" ${origin:+"$origin/../$ODOO_TARBALL_NAME"}; do
        if [[ -f "$candidate" ]]; then
            realpath "$candidate"
            return 0
        fi
    done
    die "no Odoo source: $PROJECT_DIR/../$ODOO_TARBALL_NAME is missing; set ODOO_SOURCE" \
        "to an Odoo 18.0 source tarball or to git+https://github.com/OCA/OCB@18.0"
}

# The app's [tool.uv.sources] entry for odoo: a wheel built once per tarball (here, where
# uv's cache and PyPI are), or the git repository itself.
odoo_uv_source() {
    local source=$1 url branch
    if [[ "$source" =~ ^git\+(.*)@([^@/]+)$ ]]; then
        url=${BASH_REMATCH[1]}
        branch=${BASH_REMATCH[2]}
        printf 'odoo = { git = "%s", branch = "%s" }\n' "$url" "$branch"
        return 0
    fi
    [[ -f "$source" ]] || die "ODOO_SOURCE=$source: no such tarball (nor a git+URL@branch)"
    printf 'odoo = { path = "%s" }\n' "$(odoo_wheel "$source")"
}

odoo_wheel() {
    local tarball=$1 dir tmp wheel
    dir="$ODOO_WHEELS_DIR/$(sha256sum "$tarball" | cut -c1-16)"
    wheel=$(compgen -G "$dir/odoo-*.whl" | head -n 1 || true)
    if [[ -z "$wheel" ]]; then
        log "building the Odoo wheel from $tarball (once per tarball, kept in $dir)"
        tmp=$(mktemp -d)
        tar -C "$tmp" -xf "$tarball"
        mkdir -p "$dir"
        # SOURCE_DATE_EPOCH: the same tarball gives the same wheel, byte for byte.
        SOURCE_DATE_EPOCH=$(stat -c %Y "$tarball") "$UV_BIN" build --quiet --wheel \
            --out-dir "$tmp/dist" "$tmp"/odoo-* >&2 || { rm -rf "$tmp"; die "could not build Odoo"; }
        mv "$tmp"/dist/odoo-*.whl "$dir/"
        rm -rf "$tmp"
        chmod -R a+rX "$ODOO_WHEELS_DIR"
        wheel=$(compgen -G "$dir/odoo-*.whl" | head -n 1)
    fi
    echo "$wheel"
}

# The test application, as a git repository with branch 18.0 (tests push more commits to
# it): tests/app, with its odoo source and its lock, as the real app's repository has them.
build_app_origin() {
    [[ -d "$APP_ORIGIN" ]] && return 0
    local work source
    source=$(odoo_source)
    log "creating the app origin repository from tests/app (Odoo from $source)"
    work=$(mktemp -d)
    # The files git would commit (so no .venv, build/ or caches), as a clone would have them.
    git -C "$APP_SOURCE" ls-files -z --cached --others --exclude-standard . \
        | tar -C "$APP_SOURCE" --null -T - -cf - | tar -C "$work" -xf -
    printf '\n[tool.uv.sources]\n%s' "$(odoo_uv_source "$source")" >>"$work/pyproject.toml"
    "$UV_BIN" lock --quiet --directory "$work" || { rm -rf "$work"; die "could not lock the app"; }
    git -C "$work" init -q -b 18.0
    git -C "$work" add -A
    git -C "$work" -c user.name=sandbox -c user.email=sandbox@localhost \
        commit -q -m "Test application, initial release"
    git init -q --bare -b 18.0 "$APP_ORIGIN"
    git -C "$work" push -q "$APP_ORIGIN" 18.0
    rm -rf "$work"
}

registry_addresses() {
    local hosts="$REGISTRY_HOSTS" host
    local url
    for url in "${APP_REPO:-}" "${ODOO_SOURCE:-}"; do
        if [[ "$url" =~ ^[a-z+]+://([^/:@]+@)?([^/:]+) ]]; then
            hosts+=" ${BASH_REMATCH[2]}"
        fi
    done
    for host in $hosts; do
        getent ahostsv4 "$host" | awk -v h="$host" '{print $1, h}' | sort -u
    done
}

setup_nftables() {
    local elements
    elements=$(registry_addresses | awk '{print $1}' | sort -u | paste -sd, -)
    [[ -n "$elements" ]] || die "could not resolve the package registries ($REGISTRY_HOSTS)"
    sysctl -qw net.ipv4.ip_forward=1
    nft delete table inet "$NFT_TABLE" 2>/dev/null || true
    nft -f - <<EOF
table inet $NFT_TABLE {
    set registries {
        type ipv4_addr
        elements = { $elements }
    }
    chain forward {
        type filter hook forward priority 0; policy accept;
        iifname "vocasb*" oifname "vocasb*" ip daddr $SUBNET tcp dport 22 accept
        iifname "vocasb*" oifname "vocasb*" ct state established,related accept
        iifname "vocasb*" ip daddr @registries tcp dport { 80, 443 } accept
        # Anything else a container sends is refused at once, never silently dropped: a name
        # lookup or a download it may not make fails in a moment, not after its timeouts.
        iifname "vocasb*" reject with icmpx type admin-prohibited
        oifname "vocasb*" ct state established,related accept
        oifname "vocasb*" drop
    }
    chain postrouting {
        type nat hook postrouting priority 100; policy accept;
        ip saddr $SUBNET oifname != "vocasb*" masquerade
    }
}
EOF
}

setup_network() {
    local name=$1 index=$2 ns veth
    ns=$(netns_of "$name")
    veth=$(veth_of "$index")
    ip netns list | grep -qw "$ns" || ip netns add "$ns"
    if ! ip link show "$veth" >/dev/null 2>&1; then
        ip link add "$veth" type veth peer name eth0 netns "$ns"
    fi
    ip addr replace "$(host_ip "$index")/30" dev "$veth"
    ip link set "$veth" up
    ip -n "$ns" addr replace "$(container_ip "$index")/30" dev eth0
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route replace default via "$(host_ip "$index")"
}

# What a real host has and a rootfs lacks: its own host keys, our key, apt sources. Plus
# what only this sandbox needs: registry addresses (no DNS), the proxy's CA for pip and uv.
prepare_rootfs() {
    local name=$1 suite=$2 rootfs
    rootfs=$(rootfs_of "$name")
    if [[ ! -d "$rootfs" ]]; then
        log "$name: unpacking the Debian $suite rootfs"
        mkdir -p "$rootfs"
        tar -C "$rootfs" -xzf "$(tarball_of "$suite")"
        configure_rootfs "$name" "$suite" "$rootfs"
    fi
    check_rootfs "$rootfs"
}

configure_rootfs() {
    local name=$1 suite=$2 rootfs=$3
    [[ -n "$rootfs" && "$rootfs" != / ]] || die "refusing to configure '$rootfs' as a rootfs"
    echo "$name" >"$rootfs/etc/hostname"
    {
        echo "127.0.0.1 localhost"
        echo "127.0.1.1 $name"
        registry_addresses
    } >"$rootfs/etc/hosts"
    : >"$rootfs/etc/resolv.conf"
    rm -f "$rootfs/etc/apt/sources.list.d/debian.sources"
    cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $DEBIAN_MIRROR $suite main
deb $DEBIAN_MIRROR $suite-updates main
deb http://deb.debian.org/debian-security $suite-security main
SOURCES

    # Root's user manager stays up (lingering): otherwise each of the tests' SSH sessions
    # starts and stops it, and a session opened while it stops waits for that, up to 90 s.
    install -d "$rootfs/var/lib/systemd/linger"
    touch "$rootfs/var/lib/systemd/linger/root"

    ssh-keygen -q -t ed25519 -N "" -C "root@$name" -f "$rootfs/etc/ssh/ssh_host_ed25519_key"
    install -d -m 700 "$rootfs/root/.ssh"
    install -m 600 "$STATE_DIR/id_ed25519.pub" "$rootfs/root/.ssh/authorized_keys"
    add_sudo_login "$rootfs"

    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
        chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
    fi
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$rootfs/etc/pip.conf"
    install -d "$rootfs/etc/uv"
    # uv >= 0.13 names native-tls "system-certs": trust the system store, proxy CA included.
    printf 'system-certs = true\n' >"$rootfs/etc/uv/uv.toml"
    # The origin is bind-mounted from the host and owned by root there.
    printf '[safe]\n\tdirectory = %s\n' "$APP_ORIGIN_IN_CONTAINER" >"$rootfs/etc/gitconfig"
    mkdir -p "$rootfs$APP_ORIGIN_IN_CONTAINER" "$rootfs$DEBS_IN_CONTAINER" "$rootfs$ODOO_WHEELS_DIR" \
        "$CACHE_DIR/apt/$name/partial"
}

# The user the README's SSH section describes: key login, passwordless sudo, no password
# ('*': none, yet not locked for sshd).
add_sudo_login() {
    local rootfs=$1 home
    chroot "$rootfs" useradd --create-home --shell /bin/bash --password '*' "$SUDO_LOGIN"
    printf '%s ALL=(ALL) NOPASSWD: ALL\n' "$SUDO_LOGIN" >"$rootfs/etc/sudoers.d/$SUDO_LOGIN"
    chmod 440 "$rootfs/etc/sudoers.d/$SUDO_LOGIN"
    home="$rootfs/home/$SUDO_LOGIN"
    install -d -m 700 "$home/.ssh"
    install -m 600 "$STATE_DIR/id_ed25519.pub" "$home/.ssh/authorized_keys"
    chroot "$rootfs" chown -R "$SUDO_LOGIN:" "/home/$SUDO_LOGIN/.ssh"
}

# Debian 13 has no wkhtmltopdf package, and the patched build's .deb (GitHub) is out of reach
# here. The sandbox builds a test package in its place, NOT wkhtmltopdf: the patched build's
# package name (wkhtmltox), a script that only prints a version. It lets the tests run the
# real install path (download by URL, sha256 check, dpkg) on the Debian 13 host.
build_wkhtmltox_test_deb() {
    local deb="$DEBS_DIR/$WKHTMLTOX_TEST_DEB" pkg
    [[ -s "$deb" ]] && return 0
    pkg=$(mktemp -d)
    install -d "$pkg/DEBIAN" "$pkg/usr/local/bin"
    cat >"$pkg/DEBIAN/control" <<CONTROL
Package: wkhtmltox
Version: 0.12.6.1-3~sandbox
Architecture: all
Maintainer: infra-oca-france sandbox <root@localhost>
Description: sandbox test package standing in for the patched wkhtmltopdf build
 NOT wkhtmltopdf: built by tests/sandbox/sandbox.sh so that the tests exercise the install
 of the patched build's .deb (URL + sha256) where the real one cannot be downloaded.
CONTROL
    printf '#!/bin/sh\n# Sandbox test package: NOT wkhtmltopdf. Renders nothing.\n%s\n' \
        'echo "wkhtmltopdf 0.12.6.1 (sandbox test package, not the real wkhtmltopdf)"' \
        >"$pkg/usr/local/bin/wkhtmltopdf"
    chmod 755 "$pkg/usr/local/bin/wkhtmltopdf"
    mkdir -p "$DEBS_DIR"
    dpkg-deb --root-owner-group --build "$pkg" "$deb" >/dev/null
    rm -rf "$pkg"
}

# Where prod sends its backups: recette's address and pinned host key, as real data would say.
write_group_data() {
    local sha256 recette_index recette_key backup_index backup_key proxies="" entry index
    sha256=$(sha256sum "$DEBS_DIR/$WKHTMLTOX_TEST_DEB" | cut -d' ' -f1)
    read -r _ recette_index _ <<<"${CONTAINERS[0]}"
    recette_key=$(cut -d' ' -f1,2 "$(rootfs_of oca-france-recette)/etc/ssh/ssh_host_ed25519_key.pub")
    read -r _ backup_index _ <<<"${CONTAINERS[2]}"
    backup_key=$(cut -d' ' -f1,2 "$(rootfs_of oca-france-backup)/etc/ssh/ssh_host_ed25519_key.pub")
    for entry in "${CONTAINERS[@]}"; do
        read -r _ index _ <<<"$entry"
        proxies+="\"$(host_ip "$index")\", "
    done
    mkdir -p "$GROUP_DATA_DIR"
    cat >"$GROUP_DATA_DIR/all.py" <<PYTHON
"""Sandbox only: written by tests/sandbox/sandbox.sh, loaded with pyinfra --group-data on top
of the project's group_data/ (matching keys are replaced)."""

# Debian 13 has no wkhtmltopdf package: the sandbox's test .deb (NOT wkhtmltopdf) in its place.
wkhtmltopdf_debs = {
    "debian-13": {"url": "file://$DEBS_IN_CONTAINER/$WKHTMLTOX_TEST_DEB", "sha256": "$sha256"},
}

# prod sends its backups to the recette container, whose host key it pins.
backup_transfer_host = "$(container_ip "$recette_index")"
backup_transfer_host_key = "$recette_key"
# A failed transfer tried again within seconds, not 20 minutes (the tests wait for it).
backup_transfer_retries = 1
backup_transfer_retry_sec = 15
# prod pushes its backups to the backup container, whose host key it pins.
offsite_host = "$(container_ip "$backup_index")"
offsite_host_key = "$backup_key"
# A failed push tried again within seconds (the tests wait for it).
offsite_push_retries = 1
offsite_push_retry_sec = 15
# The provider's proxy, here: the host side of each container's link (the tests' requests come
# from there), in plain http.
front_trusted_proxies = [${proxies%, }]
front_public_proto = "http"
PYTHON
    # prod's hold short: a deploy there shows the maintenance page (test_1b_front_door);
    # recette keeps the default, longer than its deploys' downtime.
    cat >"$GROUP_DATA_DIR/prod.py" <<PYTHON
"""Sandbox only: prod's group data on top of group_data/prod.py (tests/sandbox/sandbox.sh)."""

front_hold_sec = 5
PYTHON
}

# CAP_NET_ADMIN, in the container's own network namespace only, as an LXD container has it:
# odoo-front-gate's nftables rule.
boot() {
    local name=$1 index=$2 rootfs
    rootfs=$(rootfs_of "$name")
    is_running "$name" && return 0
    log "$name: booting"
    setsid systemd-nspawn --boot --directory="$rootfs" --machine="$name" \
        --register=no --keep-unit --console=passive \
        --network-namespace-path="/run/netns/$(netns_of "$name")" \
        --capability=CAP_NET_ADMIN \
        --bind-ro="$APP_ORIGIN:$APP_ORIGIN_IN_CONTAINER" \
        --bind-ro="$DEBS_DIR:$DEBS_IN_CONTAINER" \
        --bind-ro="$ODOO_WHEELS_DIR" \
        --bind="$CACHE_DIR/apt/$name:/var/cache/apt/archives" \
        </dev/null >"$STATE_DIR/$name.console.log" 2>&1 &
    echo $! >"$(pidfile_of "$name")"
}

wait_for_ssh() {
    local name=$1 deadline=$((SECONDS + 90))
    until ssh -F "$STATE_DIR/ssh_config.root" -o ConnectTimeout=2 -o BatchMode=yes "$name" true \
        2>/dev/null; do
        ((SECONDS < deadline)) || die "$name: no SSH after 90s, see $STATE_DIR/$name.console.log"
        is_running "$name" || die "$name: container exited, see $STATE_DIR/$name.console.log"
        sleep 1
    done
    log "$name: up ($(container_ip "$2"))"
}

ssh_host_entry() {
    cat <<EOF
Host $1
    HostName $(container_ip "$2")
    User $3
    IdentityFile $STATE_DIR/id_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile $STATE_DIR/known_hosts
    StrictHostKeyChecking yes
    LogLevel ERROR

EOF
}

# ssh_config: the hosts as a user's ~/.ssh/config has them (pyinfra and make use it: prod
# through the sudo user). ssh_config.root: root on both, the tests' own way in to check state.
write_client_config() {
    local entry name index login key
    : >"$STATE_DIR/ssh_config"
    : >"$STATE_DIR/ssh_config.root"
    : >"$STATE_DIR/known_hosts"
    for entry in "${CONTAINERS[@]}"; do
        read -r name index _ login <<<"$entry"
        ssh_host_entry "$name" "$index" "$login" >>"$STATE_DIR/ssh_config"
        ssh_host_entry "$name" "$index" root >>"$STATE_DIR/ssh_config.root"
        key=$(cut -d' ' -f1,2 "$(rootfs_of "$name")/etc/ssh/ssh_host_ed25519_key.pub")
        echo "$(container_ip "$index") $key" >>"$STATE_DIR/known_hosts"
    done
    # What `make sandbox` and the tests export before running pyinfra: same inventory and
    # group data as the real hosts, other SSH config, the local app repo, throwaway secrets.
    if [[ ! -f "$STATE_DIR/env" ]]; then
        umask 077
        cat >"$STATE_DIR/env" <<EOF
OCA_SSH_CONFIG=$STATE_DIR/ssh_config
OCA_SSH_KNOWN_HOSTS=$STATE_DIR/known_hosts
OCA_FRANCE_APP_REPO=${APP_REPO:-file://$APP_ORIGIN_IN_CONTAINER}
ODOO_OCA_FRANCE_ADMIN_PASSWORD_RECETTE=sandbox-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
ODOO_OCA_FRANCE_ADMIN_PASSWORD_PROD=sandbox-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
OCA_FRANCE_BACKUP_TRANSFER_KEY_FILE=$STATE_DIR/backup-transfer
OCA_FRANCE_OFFSITE_KEY_FILE=$STATE_DIR/offsite
ODOO_OCA_FRANCE_BORG_PASSPHRASE=sandbox-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
EOF
    fi
}

cmd_up() {
    [[ $EUID -eq 0 ]] || die "run me as root (containers, namespaces, nftables)"
    install_host_packages
    mkdir -p "$STATE_DIR" "$CACHE_DIR"
    chmod 700 "$STATE_DIR"
    [[ -f "$STATE_DIR/ip_forward.before" ]] || cat /proc/sys/net/ipv4/ip_forward >"$STATE_DIR/ip_forward.before"
    [[ -f "$STATE_DIR/id_ed25519" ]] || ssh-keygen -q -t ed25519 -N "" -C sandbox -f "$STATE_DIR/id_ed25519"
    # The dedicated backup transfer key pair (.env's OCA_FRANCE_BACKUP_TRANSFER_KEY_FILE).
    [[ -f "$STATE_DIR/backup-transfer" ]] \
        || ssh-keygen -q -t ed25519 -N "" -C sandbox-backup-transfer -f "$STATE_DIR/backup-transfer"
    # The off-site push key pair (.env's OCA_FRANCE_OFFSITE_KEY_FILE).
    [[ -f "$STATE_DIR/offsite" ]] \
        || ssh-keygen -q -t ed25519 -N "" -C sandbox-offsite -f "$STATE_DIR/offsite"
    build_rootfs_tarballs
    mkdir -p "$ODOO_WHEELS_DIR"
    build_app_origin
    build_wkhtmltox_test_deb
    setup_nftables
    local entry name index suite
    for entry in "${CONTAINERS[@]}"; do
        read -r name index suite _ <<<"$entry"
        setup_network "$name" "$index"
        prepare_rootfs "$name" "$suite"
        boot "$name" "$index"
    done
    write_client_config
    write_group_data
    for entry in "${CONTAINERS[@]}"; do
        read -r name index _ <<<"$entry"
        wait_for_ssh "$name" "$index"
    done
}

# Processes running inside a container: exactly those in its network namespace.
container_pids() {
    ip netns pids "$(netns_of "$1")" 2>/dev/null || true
}

# Every process of the container, killed at once. One may exit between the listing and its kill:
# that is not a failure (wait_gone says whether any is left).
kill_processes() {
    local pid
    for pid in $(container_pids "$1"); do
        kill -KILL "$pid" 2>/dev/null || true
    done
}

wait_gone() {
    local seconds=$1 name=$2
    for _ in $(seq $((seconds * 2))); do
        if ! is_running "$name" && [[ -z "$(container_pids "$name")" ]]; then
            return 0
        fi
        sleep 0.5
    done
    return 1
}

# Torn down: a container is thrown away with its rootfs, so a shutdown that takes longer than
# this is not waited for.
readonly POWER_OFF_WAIT_SEC=15

request_power_off() {
    local name=$1 pid
    pid=$(cat "$(pidfile_of "$name")" 2>/dev/null) || pid=""
    if [[ -n "$pid" ]] && is_running "$name"; then
        log "$name: powering off"
        kill -TERM "$pid" # nspawn asks the container's systemd to power off
    fi
}

# Powered off (request_power_off first: the containers shut down side by side), or killed.
stop_container() {
    local name=$1 pid
    pid=$(cat "$(pidfile_of "$name")" 2>/dev/null) || pid=""
    if ! wait_gone "$POWER_OFF_WAIT_SEC" "$name"; then
        # A shutdown that hangs: kill what runs in the container, then nspawn itself.
        log "$name: did not power off in ${POWER_OFF_WAIT_SEC}s, killing its processes"
        kill_processes "$name"
        if [[ -n "$pid" ]] && is_running "$name"; then
            kill -KILL "$pid"
        fi
        wait_gone 10 "$name" || log "WARNING: $name: processes left: $(container_pids "$name")"
    fi
    rm -f "$(pidfile_of "$name")"
}

# A power cut: every process of the container killed at once, no shutdown. `up` boots it again.
cmd_power_cut() {
    local name=$1 pid
    [[ $EUID -eq 0 ]] || die "run me as root"
    is_running "$name" || die "$name is not running"
    pid=$(cat "$(pidfile_of "$name")")
    log "$name: power cut"
    kill_processes "$name"
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone 30 "$name" || die "$name: processes left after the power cut: $(container_pids "$name")"
    rm -f "$(pidfile_of "$name")"
}

# A host lost for good (its provider's incident, a dead disk): a bare container in its place.
cmd_rebuild() {
    local wanted=$1 as_suite=${2:-} entry name index suite rootfs
    [[ $EUID -eq 0 ]] || die "run me as root"
    for entry in "${CONTAINERS[@]}"; do
        read -r name index suite _ <<<"$entry"
        [[ "$name" == "$wanted" ]] || continue
        suite=${as_suite:-$suite}
        [[ -f "$(tarball_of "$suite")" ]] || die "no Debian '$suite' rootfs (bookworm, trixie)"
        is_running "$name" && cmd_power_cut "$name"
        rootfs=$(rootfs_of "$name")
        log "$name: destroying its disk"
        rm -rf --one-file-system "$rootfs"
        prepare_rootfs "$name" "$suite"
        boot "$name" "$index"
        write_client_config
        wait_for_ssh "$name" "$index"
        return 0
    done
    die "no container named '$wanted'"
}

cmd_down() {
    [[ $EUID -eq 0 ]] || die "run me as root"
    local entry name index
    for entry in "${CONTAINERS[@]}"; do
        read -r name _ <<<"$entry"
        request_power_off "$name"
    done
    for entry in "${CONTAINERS[@]}"; do
        read -r name index _ <<<"$entry"
        stop_container "$name"
        ip link del "$(veth_of "$index")" 2>/dev/null || true
        ip netns del "$(netns_of "$name")" 2>/dev/null || true
    done
    nft delete table inet "$NFT_TABLE" 2>/dev/null || true
    if [[ -f "$STATE_DIR/ip_forward.before" ]]; then
        sysctl -qw "net.ipv4.ip_forward=$(cat "$STATE_DIR/ip_forward.before")"
    fi
    rm -rf "$STATE_DIR"
    log "down (cache kept in $CACHE_DIR)"
}

cmd_info() {
    local entry name index
    echo "Sandbox containers (state in $STATE_DIR):"
    for entry in "${CONTAINERS[@]}"; do
        read -r name index _ <<<"$entry"
        echo "  $name"
        [[ "$name" == oca-france-backup ]] \
            || echo "    Odoo:  http://$(container_ip "$index"):$ODOO_PORT/web/login"
        echo "    shell: ssh -F $STATE_DIR/ssh_config $name"
    done
    echo "Deploy on recette: ssh -F $STATE_DIR/ssh_config oca-france-recette" \
        "sudo -u odoo /home/odoo/scripts/deploy origin/18.0"
    echo "Tear down: make sandbox-down"
}

case "${1:-}" in
    up) cmd_up ;;
    rootfs)
        [[ $EUID -eq 0 ]] || die "run me as root (debootstrap)"
        install_host_packages
        mkdir -p "$CACHE_DIR"
        build_rootfs_tarballs
        ;;
    check-rootfs)
        [[ -n "${2:-}" ]] || { usage >&2; exit 1; }
        check_rootfs "$2"
        ;;
    power-cut)
        [[ -n "${2:-}" ]] || { usage >&2; exit 1; }
        cmd_power_cut "$2"
        ;;
    rebuild)
        [[ -n "${2:-}" ]] || { usage >&2; exit 1; }
        cmd_rebuild "$2" "${3:-}"
        ;;
    down) cmd_down ;;
    info) cmd_info ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 1 ;;
esac
