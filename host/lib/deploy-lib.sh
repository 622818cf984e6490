# shellcheck shell=bash disable=SC2034  # the settings are used by deploy, which sources this
# Installed by infra-oca-france (pyinfra) in /opt/oca-france/lib: local changes are overwritten.
#
# The deploy's steps, sourced by /opt/oca-france/bin/deploy: settings, output, the state file
# and history, checks, snapshot and rollback, repair. Each step records itself in the state
# file before it runs, so that a deploy killed at any point can be repaired (repair below).

# shellcheck source=lib/host.sh
source "$(dirname "${BASH_SOURCE[0]}")/host.sh"

# The settings the steps use, from the host config.
readonly CHECKOUT="$HOST_CHECKOUT"
readonly SERVICE="$HOST_SERVICE"
readonly DB="$HOST_DB_NAME"
readonly FILESTORE_ROOT="$HOST_FILESTORE_ROOT"
readonly PRODUCTION_DATA_DIR="$HOST_PRODUCTION_DATA_DIR"
readonly IN_USE_FILE="$HOST_PRODUCTION_DATA_IN_USE_FILE"
readonly RESTORE_ALLOWED="$HOST_DEPLOY_RESTORE_ALLOWED"
readonly REF_PATTERN="$HOST_DEPLOY_REF_PATTERN"
readonly HEALTH_URL="$HOST_HEALTH_URL"
readonly LOGIN_URL="$HOST_LOGIN_URL"
readonly START_TIMEOUT="$HOST_ODOO_START_TIMEOUT"
readonly LOCK_FILE="$HOST_DEPLOY_LOCK_FILE"
readonly STATE_FILE="$HOST_DEPLOY_STATE_FILE"
readonly HISTORY_FILE="$HOST_DEPLOY_HISTORY_FILE"
readonly LOG_DIR="$HOST_DEPLOY_LOG_DIR"
readonly LOGS_KEPT="$HOST_DEPLOY_LOGS_KEPT"
readonly PREPARED_DIR="$HOST_PREPARED_DIR"
readonly SNAPSHOT_DIR="$HOST_SNAPSHOT_DIR"
readonly SNAPSHOTS_KEPT="$HOST_DEPLOY_SNAPSHOTS_KEPT"
readonly DISK_MARGIN_MIB="$HOST_DEPLOY_DISK_MARGIN_MIB"
readonly PG_DATA_ROOT="$HOST_POSTGRESQL_DATA_ROOT"
readonly VERIFY_BACKUP="$HOST_VERIFY_COMMAND"
readonly STATUS_COMMAND="$HOST_STATUS_COMMAND"
readonly ADDONS_SUBDIRS=("${HOST_ODOO_ADDONS_SUBDIRS[@]}")
# Where uv keeps the Pythons it installs, and which it prefers (group_data/all.py).
export UV_PYTHON_INSTALL_DIR="$HOST_UV_PYTHON_INSTALL_DIR"
export UV_PYTHON_PREFERENCE="$HOST_UV_PYTHON_PREFERENCE"

# Exit codes: what failed, and what state it left.
readonly EXIT_USAGE=1        # bad arguments: nothing touched
readonly EXIT_REFUSED=2      # refused before touching anything (user, lock, ref, Python, data, disk)
readonly EXIT_FETCH=3        # git fetch failed: nothing touched
readonly EXIT_BACKUP=4       # stop or snapshot failed: previous release started again
readonly EXIT_ROLLED_BACK=5  # new release failed: previous release and data restored, site up
readonly EXIT_BROKEN=6       # rollback failed too: the site may be down, act now

# Who asked: the admin behind sudo, or the unit (DEPLOY_BY in the timers' units).
readonly DEPLOYED_BY="${DEPLOY_BY:-${SUDO_USER:-$(id -un)}}"
LOG_FILE=""
STEP_LINE=0  # the log's line where the running step began (shown when it fails)

# --- Output: step lines on the terminal and in the log; everything else in the log only.
# fd 3 and 4 are the caller's stdout and stderr; after open_log, 1 and 2 go to the log file.
exec 3>&1 4>&2

log() {
    local line
    line="$(date '+%Y-%m-%d %H:%M:%S') deploy: $*"
    [[ -z "$LOG_FILE" ]] || printf '%s\n' "$line"
    printf '%s\n' "$line" >&3 2>/dev/null || true  # the terminal may be gone: go on
}

warn() {
    local line
    line="$(date '+%Y-%m-%d %H:%M:%S') deploy: $*"
    [[ -z "$LOG_FILE" ]] || printf '%s\n' "$line"
    printf '%s\n' "$line" >&4 2>/dev/null || true
}

die() {
    local code=$1
    shift
    warn "ERROR: $*"
    exit "$code"
}

open_log() {
    mkdir -p "$LOG_DIR"
    LOG_FILE="$LOG_DIR/deploy-$(date -u '+%Y%m%dT%H%M%S')-$$.log"
    exec 1>>"$LOG_FILE" 2>&1
    log "log of this deploy (Odoo's and uv's output): $LOG_FILE"
    prune_logs || true  # every run keeps the newest LOGS_KEPT, refusals and repairs included
}

# A step: its line, its state, and where its output begins in the log.
step() {
    begin_step "$1"
    shift
    log "$@"
}

# The state's step, and the log's line where its output begins (shown if it fails).
begin_step() {
    STEP_LINE=$(($(wc -l <"$LOG_FILE") + 1))
    set_state step "$1"
}

show_failed_step() {
    [[ -n "$LOG_FILE" ]] || return 0
    warn "last lines of the failed step (whole log: $LOG_FILE):"
    tail -n "+$STEP_LINE" "$LOG_FILE" | tail -n 20 | sed 's/^/    /' >&4 2>/dev/null || true
}

# The failed step's error, in one line, for the history (and so odoo-status): its last line
# that says error, else its last line.
failed_step_error() {
    [[ -n "$LOG_FILE" ]] || return 0
    local lines
    lines=$(tail -n "+$STEP_LINE" "$LOG_FILE" | grep -v '^\s*$' || true)
    { grep -iE 'error|exception' <<<"$lines" || tail -n 1 <<<"$lines"; } | tail -n 1 | cut -c1-300
}

prune_logs() {
    find "$LOG_DIR" -maxdepth 1 -name 'deploy-*.log' -type f | sort -r \
        | tail -n "+$((LOGS_KEPT + 1))" | xargs -r rm -f
}

# --- The state file: what the running deploy is doing, next to the lock. Its presence
# while nobody holds the lock means a deploy died.
declare -A STATE=()

set_state() {
    while (($#)); do
        STATE[$1]=$2
        shift 2
    done
    local key tmp="$STATE_FILE.tmp"
    for key in "${!STATE[@]}"; do printf '%s=%s\n' "$key" "${STATE[$key]}"; done >"$tmp"
    mv "$tmp" "$STATE_FILE"
}

read_state() {
    [[ -f "$STATE_FILE" ]] || return 1
    local key value
    STATE=()
    while IFS='=' read -r key value; do
        [[ -n "$key" ]] && STATE[$key]=$value
    done <"$STATE_FILE"
}

clear_state() {
    rm -f "$STATE_FILE"
    STATE=()
}

# --- History: one JSON line per deploy, rollback or repair.
record_history() {
    python3 -I - "$HISTORY_FILE" "$@" <<'PYTHON'
import json
import sys
from datetime import datetime

path, *pairs = sys.argv[1:]
entry = {"time": datetime.now().astimezone().isoformat(timespec="seconds")}
entry.update(zip(pairs[::2], pairs[1::2]))
for key, value in entry.items():
    if value == "":
        entry[key] = None
    elif key.endswith("_s"):
        entry[key] = int(value)
    elif value in ("true", "false"):
        entry[key] = value == "true"
with open(path, "a", encoding="utf-8") as history:
    history.write(json.dumps(entry) + "\n")
PYTHON
}

# --- The lock: one deploy (or backup, or repair) at a time (host_lock, host.sh).
take_lock() {
    local held="another deploy, a backup or a repair is running (lock $LOCK_FILE)"
    ((LOCK_WAIT == 0)) || held="$held, still after ${LOCK_WAIT}s"
    host_lock "$LOCK_WAIT" || die "$EXIT_REFUSED" "$held"
}

# --- Service
stop_service() {
    systemctl stop "$SERVICE"
}

start_service() {
    systemctl start "$SERVICE" || return 1
    wait_until_healthy
}

wait_until_healthy() {
    local deadline=$((SECONDS + START_TIMEOUT)) login errors=0
    while ((SECONDS < deadline)); do
        # Not active means it crashed (and is waiting to be restarted): fail now.
        if ! systemctl is-active --quiet "$SERVICE"; then
            log "$SERVICE is not running"
            return 1
        fi
        if curl -fsS --max-time 5 "$HEALTH_URL" 2>/dev/null | grep -q '"db_server_status": *true'; then
            login=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' "$LOGIN_URL" 2>/dev/null || true)
            if [[ "$login" == 200 ]]; then
                log "$SERVICE is up: health and login pages answer"
                return 0
            fi
            # The server runs but its login page fails (a template, the registry): no wait
            # makes that pass.
            if [[ "$login" == 500 ]] && ((++errors >= 3)); then
                log "ERROR: $LOGIN_URL answers 500: the release cannot serve its login page"
                return 1
            fi
            [[ "$login" == 500 ]] || errors=0
        fi
        sleep 0.5
    done
    log "$SERVICE did not answer $LOGIN_URL within ${START_TIMEOUT}s"
    return 1
}

# --- Code
checkout_code() {
    git -C "$CHECKOUT" reset --quiet --hard "$1" || return 1
    sync_venv "$CHECKOUT"
}

# uv sync until uv finds the venv up to date: the first sync of a fresh clone installs
# __manifest__.py files that the app's cache-keys glob matches (see group_data/all.py).
# Bounded: a hung download must not hold the lock for ever (while serving: the deploy is
# refused; during the downtime: rolled back).
sync_venv() {
    (
        cd "$1" || exit 1
        sync_bounded || exit 1
        "${HOST_SYNC_CHECK_COMMAND[@]}" >/dev/null 2>&1 || sync_bounded
    )
}

sync_bounded() {
    timeout --kill-after=30 "$HOST_VENV_SYNC_TIMEOUT_SEC" "${HOST_SYNC_COMMAND[@]}" && return 0
    local status=$?
    ((status != 124 && status != 137)) \
        || log "ERROR: ${HOST_SYNC_COMMAND[*]} took more than ${HOST_VENV_SYNC_TIMEOUT_SEC}s"
    return "$status"
}

# The next release built beside the running one, while the site serves: a worktree of the
# commit and its venv. The downloads and builds happen now, into uv's cache, so that the
# sync of the checkout during the downtime only links what is already there.
PREPARED=""
prepare_release() {
    PREPARED="$PREPARED_DIR/$1"
    discard_prepared
    mkdir -p "$PREPARED_DIR"
    git -C "$CHECKOUT" worktree add --quiet --detach "$PREPARED" "$1" || return 1
    sync_venv "$PREPARED"
}

discard_prepared() {
    [[ -n "$PREPARED" ]] || return 0
    rm -rf "$PREPARED"
    git -C "$CHECKOUT" worktree prune
}

# uv takes the checkout's venv for outdated once the app was synced in the worktree (the
# editable app's build is shared between the two): sync it again, links only, so that uv
# (and the next apply) find it up to date.
resync_checkout() {
    sync_venv "$CHECKOUT" || warn "WARNING: could not sync $CHECKOUT's venv after the release"
}

# --- Snapshots: the database copied inside PostgreSQL (CREATE DATABASE ... TEMPLATE, while
# Odoo is stopped) and the filestore as hard links (Odoo writes each file once and never
# rewrites it). A rollback renames them back: no dump to restore, no archive to unpack.
psql_admin() {
    psql -XAtq -v ON_ERROR_STOP=1 -d postgres "$@"
}

database_exists() {
    [[ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$1'")" == 1 ]]
}

take_snapshot() {
    local name=$1
    createdb --template="$DB" --strategy=FILE_COPY "$name" || return 1
    mkdir -p "$SNAPSHOT_DIR/$name" "$FILESTORE_ROOT/$DB"
    # Another filesystem (no hard links): a real copy, slower but as safe.
    cp -al "$FILESTORE_ROOT/$DB" "$SNAPSHOT_DIR/$name/filestore" 2>/dev/null || {
        rm -rf "$SNAPSHOT_DIR/$name/filestore"
        cp -a "$FILESTORE_ROOT/$DB" "$SNAPSHOT_DIR/$name/filestore"
    } || return 1
    touch "$SNAPSHOT_DIR/$name/complete"
}

drop_snapshot() {
    local name=$1
    [[ -n "$name" ]] || return 0
    dropdb --if-exists "$name" && rm -rf "${SNAPSHOT_DIR:?}/$name"
}

# Put a snapshot back in place of the live database and filestore. Safe to run again after
# being interrupted: each half is skipped once done.
restore_snapshot() {
    local name=$1 failed
    if database_exists "$name"; then
        psql_admin -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" || return 1
        psql_admin -c "ALTER DATABASE \"$name\" RENAME TO \"$DB\"" || return 1
    elif ! database_exists "$DB"; then
        log "ERROR: neither $DB nor its snapshot $name exists"
        return 1
    fi
    if [[ -d "$SNAPSHOT_DIR/$name/filestore" ]]; then
        failed="$FILESTORE_ROOT/.$DB.replaced-$(date '+%Y%m%dT%H%M%S')"
        if [[ -d "$FILESTORE_ROOT/$DB" ]]; then mv "$FILESTORE_ROOT/$DB" "$failed" || return 1; fi
        mv "$SNAPSHOT_DIR/$name/filestore" "$FILESTORE_ROOT/$DB" || return 1
        rm -rf "$failed"
    fi
    rm -rf "${SNAPSHOT_DIR:?}/$name"
}

snapshots() {
    psql_admin -c "SELECT datname FROM pg_database WHERE datname LIKE '$DB-snap-%' ORDER BY 1"
}

# Keep the newest SNAPSHOTS_KEPT, once a deploy succeeded; and no directory without its db.
prune_snapshots() {
    local name
    snapshots | head -n "-$SNAPSHOTS_KEPT" | while read -r name; do
        log "removing old snapshot $name"
        drop_snapshot "$name"
    done
    for name in "$SNAPSHOT_DIR"/*; do
        [[ -d "$name" ]] || continue
        database_exists "$(basename "$name")" || rm -rf "$name"
    done
}

mib() {
    echo $(($1 / 1048576))
}

# The snapshot needs about the database's size on PostgreSQL's disk, plus a margin.
check_disk() {
    local db_bytes avail need
    db_bytes=$(psql_admin -c "SELECT pg_database_size('$DB')") || db_bytes=0
    need=$((db_bytes + DISK_MARGIN_MIB * 1048576))
    avail=$(df --output=avail -B1 "$PG_DATA_ROOT" | tail -n 1)
    ((avail >= need)) || die "$EXIT_REFUSED" "not enough free disk for the snapshot of $DB:" \
        "$(mib "$db_bytes") MiB plus a margin of $DISK_MARGIN_MIB MiB (deploy_disk_margin_mib)" \
        "needed on $PG_DATA_ROOT, $(mib "$avail") MiB free"
    avail=$(df --output=avail -B1 "$FILESTORE_ROOT" | tail -n 1)
    ((avail >= DISK_MARGIN_MIB * 1048576)) || die "$EXIT_REFUSED" "not enough free disk on" \
        "$FILESTORE_ROOT: $(mib "$avail") MiB free, $DISK_MARGIN_MIB MiB (deploy_disk_margin_mib) needed"
}

# --- Rollback: the previous release, its venv, and the snapshot's data; then started.
# mode "boot": at boot, before systemd starts the service itself.
rollback_to() {
    local previous=$1 snapshot=$2 mode=${3:-}
    begin_step rolling-back
    [[ "$mode" == boot ]] || systemctl stop "$SERVICE" || true
    log "putting back the code of $previous and its venv"
    checkout_code "$previous" || return 1
    log "putting back the data of snapshot $snapshot"
    restore_snapshot "$snapshot" || return 1
    [[ "$mode" == boot ]] && return 0
    log "starting $SERVICE"
    start_service
}

# --- Repair: a deploy died (kill -9, OOM, power loss) and left its state file behind.
# Before the stop nothing changed; during the snapshot, only a partial snapshot; after it,
# the previous release and its data go back; after a healthy start, it is recorded as done.
repair() {
    local mode=${1:-} result what started died_at
    read_state || return 0
    started=${STATE[started]:-0}
    died_at=${STATE[died_at]:-${STATE[step]:-}}
    set_state died_at "$died_at"  # a repair that dies too keeps where the deploy died
    log "a deploy of ${STATE[ref]:-?} (${STATE[to]:-?}) by ${STATE[by]:-?} died at step" \
        "'$died_at'${STATE[log]:+ (its log: ${STATE[log]})}: repairing"
    case "${STATE[step]:-}" in
        preflight | stopping | snapshot | restarting)
            drop_snapshot "${STATE[snapshot]:-}"
            what="the previous release was still in place"
            result=repaired
            set_state step restarting  # the service's guard lets this start pass
            if [[ "$mode" != boot ]] && ! start_service; then result=broken; fi
            ;;
        healthy)
            what="the new release had started healthy: recorded as deployed"
            result=deployed
            if [[ "$mode" != boot ]] && ! systemctl is-active --quiet "$SERVICE"; then
                set_state step starting
                start_service || result=broken
            fi
            ;;
        *)
            what="rolled back to ${STATE[from]:-?} and the data of ${STATE[snapshot]:-?}"
            result=repaired
            rollback_to "${STATE[from]}" "${STATE[snapshot]}" "$mode" || result=broken
            ;;
    esac
    record_history action repair by "$DEPLOYED_BY" from "${STATE[from]:-}" to "${STATE[to]:-}" \
        ref "${STATE[ref]:-}" result "$result" failed_step "$died_at" \
        duration_s "$(($(date +%s) - started))" log "$LOG_FILE"
    if [[ "$result" == broken ]]; then
        warn "ERROR: repair failed: the site may be down (state kept in $STATE_FILE)"
        return 1
    fi
    clear_state
    log "repaired: $what"
}
