#!/usr/bin/env bash
# scripts/services.sh — throw-away PostgreSQL and Redis for the demo and tests.
#
# Usage: scripts/services.sh start|stop|status|env|start-pg|stop-pg|start-redis|stop-redis|clean
#
#   start        start both; a service that is not running gets a FRESH instance
#                (new PostgreSQL cluster, empty Redis).  Already running: no-op.
#   stop         stop both (Redis without saving); tolerates already stopped.
#   stop-pg      stop PostgreSQL only, keeping its data (simulates an outage).
#   start-pg     start PostgreSQL again on the kept data (fresh init if none).
#   stop-redis   stop Redis only, keeping its data (SHUTDOWN SAVE to a dump).
#   start-redis  start Redis again, loading that dump.
#   status       print the state; exit 0 if both run, 3 otherwise.
#   env          print the env file (eval "$(scripts/services.sh env)").
#   clean        stop both and delete all their state.
#
# Where things live
# -----------------
#   RUN_DIR = $TELLTALE_RUN_DIR, default $REPO/.run (git-ignored).  Holds:
#     env            `export` lines for clients (see write_env below)
#     state          what this script needs to find its instances again (ports…)
#     redis.pid, redis.log, redis/ (working dir; dump.rdb only after stop-redis)
#     pg -> PG_ROOT  symlink, for convenience (logs: $RUN_DIR/pg/postgresql.log)
#   PG_ROOT = $TELLTALE_PG_ROOT, default /tmp/telltale-run-<hash>/pg where <hash>
#     is the first 12 hex digits of sha256(absolute RUN_DIR).  PostgreSQL refuses
#     to run as root, so it runs as the `postgres` system user, which cannot
#     traverse /root (mode 700) — the repo, and so RUN_DIR, may well be under
#     /root.  Hence data and socket live under /tmp, one directory per RUN_DIR.
#     Holds: data/ (PGDATA, owned by postgres), sock/ (unix socket dir),
#     postgresql.log, .bootstrapped (marker: roles/db/extension created).
#
# Ports: TELLTALE_PG_PORT (default 25432), TELLTALE_REDIS_PORT (default 25379), below Linux's
# ephemeral range (32768-60999) so that no outgoing connection can hold them when we start,
# both bound to 127.0.0.1 only.  Once an instance exists, the values recorded in
# $RUN_DIR/state win over the environment (so stop/start-pg find the instance).
#
# PostgreSQL: role `telltale` (LOGIN, password telltale-demo-secret, member of
# pg_monitor so it can read every backend's stats), database `telltale_demo`
# owned by it, with pg_stat_statements preloaded and created.  Auth: trust on
# the unix socket (admin = superuser `postgres`), scram-sha-256 on 127.0.0.1.
# fsync/full_page_writes/synchronous_commit are off: this data is disposable.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN_DIR="${TELLTALE_RUN_DIR:-$REPO/.run}"
mkdir -p "$RUN_DIR"
RUN_DIR="$(cd "$RUN_DIR" && pwd -P)"

ENV_FILE="$RUN_DIR/env"
STATE_FILE="$RUN_DIR/state"

PG_USER_NAME=telltale
PG_PASSWORD=telltale-demo-secret
PG_DATABASE=telltale_demo
START_TIMEOUT="${TELLTALE_SERVICES_TIMEOUT:-60}"   # seconds per service

log() { printf '[services] %s\n' "$*"; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- configuration

find_pg_bin() {
    # Newest installed server version; Debian keeps binaries off PATH.
    local d
    d="$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n1)"
    [[ -n $d && -x $d/initdb ]] || die "PostgreSQL server binaries not found under /usr/lib/postgresql (run scripts/setup.sh)"
    printf '%s\n' "$d"
}

load_config() {
    # Recorded state first (describes instances that may exist), then env/defaults.
    local rec_pg_port="" rec_redis_port="" rec_pg_root="" rec_pg_bin="" k v
    if [[ -f $STATE_FILE ]]; then
        # Plain KEY=VALUE lines written by save_state; parse rather than source.
        while IFS='=' read -r k v; do
            case "$k" in
                PG_PORT) rec_pg_port="$v" ;;
                REDIS_PORT) rec_redis_port="$v" ;;
                PG_ROOT) rec_pg_root="$v" ;;
                PG_BIN) rec_pg_bin="$v" ;;
            esac
        done <"$STATE_FILE"
    fi
    PG_PORT="${rec_pg_port:-${TELLTALE_PG_PORT:-25432}}"
    REDIS_PORT="${rec_redis_port:-${TELLTALE_REDIS_PORT:-25379}}"
    if [[ -n $rec_pg_root ]]; then
        PG_ROOT="$rec_pg_root"
    elif [[ -n ${TELLTALE_PG_ROOT:-} ]]; then
        PG_ROOT="$TELLTALE_PG_ROOT"
    else
        local hash
        hash="$(printf '%s' "$RUN_DIR" | sha256sum | cut -c1-12)"
        PG_ROOT="/tmp/telltale-run-$hash/pg"
    fi
    if [[ -n $rec_pg_bin && -x $rec_pg_bin/pg_ctl ]]; then
        PG_BIN="$rec_pg_bin"
    else
        PG_BIN="${TELLTALE_PG_BIN:-$(find_pg_bin)}"
    fi
    PGDATA_DIR="$PG_ROOT/data"
    PG_SOCK="$PG_ROOT/sock"
    PG_LOG="$PG_ROOT/postgresql.log"
    REDIS_PIDFILE="$RUN_DIR/redis.pid"
    REDIS_LOG="$RUN_DIR/redis.log"
    REDIS_DIR="$RUN_DIR/redis"
}

save_state() {
    printf 'PG_PORT=%s\nREDIS_PORT=%s\nPG_ROOT=%s\nPG_BIN=%s\n' \
        "$PG_PORT" "$REDIS_PORT" "$PG_ROOT" "$PG_BIN" >"$STATE_FILE.tmp"
    mv "$STATE_FILE.tmp" "$STATE_FILE"
}

# Single-quote a value for a shell `export` line (also parseable by shlex).
shq() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

write_env() {
    local dsn="postgres://$PG_USER_NAME:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DATABASE"
    # libpq URI with the socket directory as a query parameter (no %-encoding needed).
    local admin_dsn="postgresql://postgres@/$PG_DATABASE?host=$PG_SOCK&port=$PG_PORT"
    {
        echo "# Written by scripts/services.sh start — source it: . $(shq "$ENV_FILE")"
        local kv
        for kv in \
            "TELLTALE_RUN_DIR=$RUN_DIR" \
            "TELLTALE_PG_DSN=$dsn" \
            "TELLTALE_PG_ADMIN_DSN=$admin_dsn" \
            "TELLTALE_PG_HOST=127.0.0.1" \
            "TELLTALE_PG_PORT=$PG_PORT" \
            "TELLTALE_PG_USER=$PG_USER_NAME" \
            "TELLTALE_PG_PASSWORD=$PG_PASSWORD" \
            "TELLTALE_PG_DATABASE=$PG_DATABASE" \
            "TELLTALE_PG_SOCKET_DIR=$PG_SOCK" \
            "TELLTALE_PG_DATA=$PGDATA_DIR" \
            "TELLTALE_PG_BIN=$PG_BIN" \
            "PGHOST=$PG_SOCK" \
            "PGPORT=$PG_PORT" \
            "PGUSER=postgres" \
            "TELLTALE_REDIS_URL=redis://127.0.0.1:$REDIS_PORT" \
            "TELLTALE_REDIS_HOST=127.0.0.1" \
            "TELLTALE_REDIS_PORT=$REDIS_PORT"; do
            printf 'export %s=%s\n' "${kv%%=*}" "$(shq "${kv#*=}")"
        done
    } >"$ENV_FILE.tmp"
    mv "$ENV_FILE.tmp" "$ENV_FILE"
}

# ---------------------------------------------------------------- helpers

# Run a PostgreSQL binary as the postgres user.  `cd /` first: initdb/pg_ctl
# fail when they cannot read the current directory (e.g. a repo under /root).
# `9>&-` keeps our flock fd from leaking into the long-lived postmaster.
as_postgres() { (cd / && runuser -u postgres -- "$@") 9>&-; }

# psql as superuser over the unix socket (trust auth; root can use the socket).
admin_psql() {
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$PG_PORT" -U postgres "$@"
}

pg_running() {
    [[ -f $PGDATA_DIR/PG_VERSION ]] || return 1
    as_postgres "$PG_BIN/pg_ctl" status -D "$PGDATA_DIR" >/dev/null 2>&1
}

pg_pid() { head -n1 "$PGDATA_DIR/postmaster.pid" 2>/dev/null || true; }

redis_pid() {
    # The pid from our pidfile, only if that process is alive and is redis.
    local pid
    pid="$(cat "$REDIS_PIDFILE" 2>/dev/null || true)"
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" == redis-server* ]] || return 1
    printf '%s\n' "$pid"
}

redis_running() { redis_pid >/dev/null; }

redis_cli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
redis_pong() { [[ "$(redis_cli ping 2>/dev/null)" == PONG ]]; }
pid_gone() { ! kill -0 "$1" 2>/dev/null; }

# wait_for SECONDS DESCRIPTION COMMAND... — poll every 0.2 s.
wait_for() {
    local timeout="$1" what="$2"; shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || { printf '[services] timed out after %ss waiting for %s\n' "$timeout" "$what" >&2; return 1; }
        sleep 0.2
    done
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

ensure_pg_root() {
    # Refuse a pre-planted symlink or foreign directory at the predictable /tmp path.
    local base
    base="$(dirname "$PG_ROOT")"
    mkdir -p "$base"
    [[ ! -L $base && -d $base && "$(stat -c %u "$base")" == 0 ]] \
        || die "$base must be a root-owned directory (not a symlink)"
    chmod 755 "$base"
    mkdir -p "$PG_ROOT"
    [[ ! -L $PG_ROOT ]] || die "$PG_ROOT must not be a symlink"
    chown postgres:postgres "$PG_ROOT"
    chmod 755 "$PG_ROOT"
    ln -sfn "$PG_ROOT" "$RUN_DIR/pg"
}

# ---------------------------------------------------------------- PostgreSQL

pg_init_fresh() {
    id postgres >/dev/null 2>&1 || die "no 'postgres' system user (run scripts/setup.sh)"
    ensure_pg_root
    rm -rf "$PGDATA_DIR" "$PG_SOCK" "$PG_ROOT/.bootstrapped" "$PG_LOG"
    install -d -o postgres -g postgres -m 700 "$PGDATA_DIR"
    install -d -o postgres -g postgres -m 755 "$PG_SOCK"
    log "initdb $PGDATA_DIR"
    # -N: skip fsync of the new files; --no-locale: C collation, stable output.
    as_postgres "$PG_BIN/initdb" -D "$PGDATA_DIR" -U postgres -E UTF8 --no-locale -N \
        --auth-local=trust --auth-host=scram-sha-256 >"$PG_ROOT/initdb.log" 2>&1 \
        || { cat "$PG_ROOT/initdb.log" >&2; die "initdb failed"; }

    # Only these two ways in: socket (trust, for the admin) and 127.0.0.1 (password).
    cat >"$PGDATA_DIR/pg_hba.conf" <<'EOF'
# Written by scripts/services.sh
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  trust
host    all       all   127.0.0.1/32   scram-sha-256
EOF
    cat >>"$PGDATA_DIR/postgresql.conf" <<EOF

# ---- scripts/services.sh (throw-away test/demo cluster) ----
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCK'
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = all
track_io_timing = on
password_encryption = 'scram-sha-256'
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
log_line_prefix = '%m [%p] %u@%d '
EOF
    chown postgres:postgres "$PGDATA_DIR/pg_hba.conf" "$PGDATA_DIR/postgresql.conf"
}

pg_bootstrap() {
    log "creating role $PG_USER_NAME and database $PG_DATABASE"
    admin_psql -d postgres <<EOF
CREATE ROLE $PG_USER_NAME LOGIN PASSWORD '$PG_PASSWORD';
GRANT pg_monitor TO $PG_USER_NAME;
CREATE DATABASE $PG_DATABASE OWNER $PG_USER_NAME;
EOF
    admin_psql -d "$PG_DATABASE" -c 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements'
    touch "$PG_ROOT/.bootstrapped"
}

pg_launch() {
    if port_in_use "$PG_PORT"; then
        die "127.0.0.1:$PG_PORT is already in use by something else (set TELLTALE_PG_PORT)"
    fi
    log "starting PostgreSQL on 127.0.0.1:$PG_PORT (socket dir $PG_SOCK)"
    install -d -o postgres -g postgres -m 755 "$PG_SOCK"
    touch "$PG_LOG" && chown postgres:postgres "$PG_LOG"
    as_postgres "$PG_BIN/pg_ctl" start -D "$PGDATA_DIR" -l "$PG_LOG" -w -t "$START_TIMEOUT" \
        </dev/null >"$PG_ROOT/pg_ctl.log" 2>&1 \
        || { tail -n 30 "$PG_LOG" >&2; die "PostgreSQL failed to start (log: $PG_LOG)"; }
    wait_for "$START_TIMEOUT" "PostgreSQL on 127.0.0.1:$PG_PORT" \
        "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" \
        || { tail -n 30 "$PG_LOG" >&2; die "PostgreSQL not ready (log: $PG_LOG)"; }
}

start_pg() {  # $1 = fresh|keep
    if pg_running; then
        log "PostgreSQL already running (pid $(pg_pid), port $PG_PORT)"
        return 0
    fi
    # Check before initdb, so a clash fails fast and leaves nothing half-made.
    if port_in_use "$PG_PORT"; then
        die "127.0.0.1:$PG_PORT is already in use by something else (set TELLTALE_PG_PORT)"
    fi
    if [[ $1 == fresh || ! -f $PG_ROOT/.bootstrapped || ! -f $PGDATA_DIR/PG_VERSION ]]; then
        pg_init_fresh
        save_state
        pg_launch
        pg_bootstrap
    else
        ensure_pg_root
        pg_launch
    fi
}

stop_pg() {
    if ! pg_running; then
        log "PostgreSQL not running"
        return 0
    fi
    log "stopping PostgreSQL (pid $(pg_pid))"
    as_postgres "$PG_BIN/pg_ctl" stop -D "$PGDATA_DIR" -m fast -w -t "$START_TIMEOUT" >/dev/null \
        || die "pg_ctl stop failed (log: $PG_LOG)"
}

# ---------------------------------------------------------------- Redis

start_redis() {  # $1 = fresh|keep
    if redis_running; then
        log "Redis already running (pid $(redis_pid), port $REDIS_PORT)"
        return 0
    fi
    command -v redis-server >/dev/null || die "redis-server not found (run scripts/setup.sh)"
    if port_in_use "$REDIS_PORT"; then
        die "127.0.0.1:$REDIS_PORT is already in use by something else (set TELLTALE_REDIS_PORT)"
    fi
    mkdir -p "$REDIS_DIR"
    # A dump exists only after stop-redis (SHUTDOWN SAVE); a fresh start drops it.
    [[ $1 == fresh ]] && rm -f "$REDIS_DIR/dump.rdb"
    rm -f "$REDIS_PIDFILE"
    save_state
    log "starting Redis on 127.0.0.1:$REDIS_PORT"
    # No persistence (--save "" --appendonly no); a dump.rdb in --dir is still
    # loaded at start, which is how stop-redis/start-redis keep the data.
    # stdio to a file: errors before the logfile is opened land there, and the
    # daemon must not hold a caller's pipe open.  9>&-: don't inherit our lock.
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes \
        --save '' --appendonly no --dir "$REDIS_DIR" \
        --daemonize yes --pidfile "$REDIS_PIDFILE" --logfile "$REDIS_LOG" \
        </dev/null >"$RUN_DIR/redis.stdout.log" 2>&1 9>&- \
        || { cat "$RUN_DIR/redis.stdout.log" >&2; die "redis-server failed to start"; }
    wait_for "$START_TIMEOUT" "Redis on 127.0.0.1:$REDIS_PORT" \
        redis_pong \
        || { tail -n 30 "$REDIS_LOG" "$RUN_DIR/redis.stdout.log" >&2 2>/dev/null; die "Redis not ready"; }
}

stop_redis() {  # $1 = nosave|save
    local pid
    if ! pid="$(redis_pid)"; then
        log "Redis not running"
        rm -f "$REDIS_PIDFILE"
        return 0
    fi
    log "stopping Redis (pid $pid${1:+, $1})"
    if [[ $1 == save ]]; then
        rm -f "$REDIS_DIR/dump.rdb"
        redis_cli shutdown save >/dev/null 2>&1 || true
    else
        redis_cli shutdown nosave >/dev/null 2>&1 || true
    fi
    # SHUTDOWN's reply is a dropped connection; confirm the process is gone.
    if ! wait_for 15 "Redis pid $pid to exit" pid_gone "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        wait_for 5 "Redis pid $pid to exit after SIGTERM" pid_gone "$pid" \
            || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$REDIS_PIDFILE"
}

# ---------------------------------------------------------------- commands

status() {
    local rc=0
    echo "run dir:    $RUN_DIR"
    echo "pg root:    $PG_ROOT"
    if pg_running; then
        echo "postgresql: running  pid $(pg_pid)  127.0.0.1:$PG_PORT  socket $PG_SOCK"
    elif [[ -f $PGDATA_DIR/PG_VERSION ]]; then
        echo "postgresql: stopped  (data kept in $PGDATA_DIR)"; rc=3
    else
        echo "postgresql: stopped  (no cluster)"; rc=3
    fi
    if redis_running; then
        echo "redis:      running  pid $(redis_pid)  127.0.0.1:$REDIS_PORT"
    else
        echo "redis:      stopped"; rc=3
    fi
    if [[ -f $ENV_FILE ]]; then echo "env file:   $ENV_FILE"; else echo "env file:   (none)"; fi
    return "$rc"
}

usage() {
    sed -n '3,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

main() {
    local cmd="${1:-}"
    case "$cmd" in
        start|stop|status|env|start-pg|stop-pg|start-redis|stop-redis|clean) ;;
        -h|--help|help) usage; return 0 ;;
        *) usage >&2; return 2 ;;
    esac

    # One invocation at a time per RUN_DIR (tests may call us concurrently).
    exec 9>"$RUN_DIR/.lock"
    flock -w 180 9 || die "could not lock $RUN_DIR/.lock"
    load_config

    case "$cmd" in
        start)
            # Nothing running: forget recorded ports/paths so the environment
            # (TELLTALE_PG_PORT, …) applies to the fresh instances.
            if ! pg_running && ! redis_running; then
                rm -f "$STATE_FILE"
                load_config
            fi
            start_pg fresh
            start_redis fresh
            write_env
            log "ready — env: $ENV_FILE"
            ;;
        stop)
            stop_pg
            stop_redis nosave
            ;;
        start-pg)
            start_pg keep
            write_env
            ;;
        stop-pg)
            stop_pg
            ;;
        start-redis)
            start_redis keep
            write_env
            ;;
        stop-redis)
            stop_redis save
            ;;
        status)
            status
            ;;
        env)
            [[ -f $ENV_FILE ]] || die "no env file; run: scripts/services.sh start"
            cat "$ENV_FILE"
            ;;
        clean)
            stop_pg
            stop_redis nosave
            log "removing $PG_ROOT and state in $RUN_DIR"
            rm -rf "$PG_ROOT" "$REDIS_DIR" "$ENV_FILE" "$STATE_FILE" "$RUN_DIR/pg" \
                "$REDIS_LOG" "$RUN_DIR/redis.stdout.log"
            rmdir "$(dirname "$PG_ROOT")" 2>/dev/null || true
            ;;
    esac
}

main "$@"
