#!/usr/bin/env bash
# scripts/demo.sh — run the Telltale demo: throw-away PostgreSQL + Redis, a seed
# generator producing activity, and `telltale serve --config examples/admin-portal.yml`
# in the foreground.  Ctrl-C (or SIGTERM) stops telltale, the seed generator and
# the services.
#
#   scripts/demo.sh [EXTRA TELLTALE SERVE ARGS...]     e.g. --listen 127.0.0.1:9900
#
#   TELLTALE_DEMO_KEEP_SERVICES=1   leave PostgreSQL/Redis running on exit
#   TELLTALE_RUN_DIR, TELLTALE_PG_PORT, TELLTALE_REDIS_PORT: see scripts/services.sh
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

if ! command -v swift >/dev/null && [[ -x /opt/swift/usr/bin/swift ]]; then
    export PATH="/opt/swift/usr/bin:$PATH"
fi
export TELLTALE_RUN_DIR="${TELLTALE_RUN_DIR:-$REPO/.run}"

CONFIG="$REPO/examples/admin-portal.yml"
SCHEMA="$REPO/examples/admin-portal-schema.sql"
SEED="$REPO/examples/seed.py"

say() { printf '[demo] %s\n' "$*"; }

[[ -f $CONFIG ]] || { say "missing $CONFIG"; exit 1; }

SEED_PID=""
TELLTALE_PID=""
SERVICES_STARTED=0
# shellcheck disable=SC2317  # invoked via trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $TELLTALE_PID ]] && kill -0 "$TELLTALE_PID" 2>/dev/null; then
        kill -TERM "$TELLTALE_PID" 2>/dev/null || true
        wait "$TELLTALE_PID" 2>/dev/null || true
    fi
    if [[ -n $SEED_PID ]] && kill -0 "$SEED_PID" 2>/dev/null; then
        say "stopping seed generator (pid $SEED_PID)"
        kill -TERM "$SEED_PID" 2>/dev/null || true
        wait "$SEED_PID" 2>/dev/null || true
    fi
    if ((SERVICES_STARTED)) && [[ ${TELLTALE_DEMO_KEEP_SERVICES:-0} != 1 ]]; then
        bash scripts/services.sh stop || true
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bash scripts/setup.sh
SERVICES_STARTED=1
bash scripts/services.sh start

say "building telltale (release)"
bash scripts/build-release.sh
BIN="$(swift build -c release --show-bin-path)/telltale"

# Connection details for the config's ${VAR} substitution, psql and the seeder.
set -a
# shellcheck disable=SC1091
. "$TELLTALE_RUN_DIR/env"
set +a

if [[ -f $SCHEMA ]]; then
    # The schema file is written to be re-runnable (IF NOT EXISTS / OR REPLACE).
    say "loading $(basename "$SCHEMA") into $TELLTALE_PG_DATABASE"
    "$TELLTALE_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -d "$TELLTALE_PG_ADMIN_DSN" -f "$SCHEMA"
fi

# Alerting's tables, then the ops roadmap's alerts as rows. Their channel "slack" posts to
# TELLTALE_CHANNEL_SLACK when it is set (a Slack incoming webhook URL); without it the channel
# is disabled and the alerts show on / and in /metrics only.
say "migrating alerting's tables and loading examples/alert-rules.sql"
"$BIN" migrate --config "$CONFIG"
export TELLTALE_CHANNEL_SLACK="${TELLTALE_CHANNEL_SLACK:-http://127.0.0.1:9/no-slack-configured}"
"$TELLTALE_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -d "$TELLTALE_PG_ADMIN_DSN" -f "$REPO/examples/alert-rules.sql"
"$TELLTALE_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -d "$TELLTALE_PG_DSN" \
    -c "UPDATE telltale_channels SET enabled = $([[ $TELLTALE_CHANNEL_SLACK == *no-slack-configured ]] && echo false || echo true) WHERE name = 'slack'"

if [[ -f $SEED ]]; then
    SEED_LOG="$TELLTALE_RUN_DIR/seed.log"
    say "starting seed generator (log: $SEED_LOG)"
    "$REPO/.venv/bin/python" "$SEED" </dev/null >"$SEED_LOG" 2>&1 &
    SEED_PID=$!
fi

# The URL to open: 9839 unless the caller passed --listen HOST:PORT.
LISTEN="127.0.0.1:9839"
prev=""
for a in "$@"; do
    if [[ $prev == --listen ]]; then LISTEN="$a"; fi
    if [[ $a == --listen=* ]]; then LISTEN="${a#--listen=}"; fi
    prev="$a"
done
URL="http://${LISTEN/#0.0.0.0:/127.0.0.1:}"
say "Telltale demo: $URL/   (metrics: $URL/metrics; Ctrl-C to stop)"
# In the background + wait, so a SIGTERM to this script is handled at once
# (bash runs traps only after a foreground child exits) and forwarded by cleanup.
"$BIN" serve --config "$CONFIG" "$@" </dev/null &
TELLTALE_PID=$!
set +e
wait "$TELLTALE_PID"
rc=$?
set -e
TELLTALE_PID=""
say "telltale exited with code $rc"
exit "$rc"
