#!/usr/bin/env bash
# scripts/demo.sh — run the whole Telltale product on one command, all on 127.0.0.1:
#
#   * throw-away PostgreSQL + Redis (scripts/services.sh) with the admin-portal schema and a
#     seed generator inserting rows (examples/seed.py);
#   * BullMQ queues payments, fulfillment, emails worked by Python bullmq workers that keep
#     completing, failing, retrying, delaying and prioritising jobs; fulfillment is paused for
#     a minute every four (scripts/demo/queues.py);
#   * fakes of NOWPayments and Kinguin whose balances drift and which now and then answer 429
#     or 500, and an app health endpoint for a probe (scripts/demo/apis.py);
#   * alerting migrated and loaded with examples/alert-rules.sql (and the seeded
#     admin_alert_thresholds), its "slack" channel posting to a local chat receiver that
#     prints each message here and keeps the last ones on a page (scripts/demo/chat.py);
#   * a real Prometheus scraping Telltale with alerts/*.rules.yml loaded, sending to a real
#     Alertmanager whose webhook is the same chat receiver (skip both: --no-prometheus);
#   * `telltale serve --config examples/admin-portal.yml` in the foreground.
# Ctrl-C (or SIGTERM) stops everything it started.
#
#   scripts/demo.sh [--no-prometheus] [EXTRA TELLTALE SERVE ARGS...]   e.g. --log.level debug
#
# Ports (127.0.0.1; fixed, below Linux's ephemeral range so the tests' free ports never clash):
#   TELLTALE_DEMO_PORT 9839 (Telltale), TELLTALE_DEMO_APIS_PORT 29100 (provider/app fakes),
#   TELLTALE_DEMO_CHAT_PORT 29101 (chat receiver), TELLTALE_DEMO_PROMETHEUS_PORT 29090,
#   TELLTALE_DEMO_ALERTMANAGER_PORT 29093; PostgreSQL/Redis: see scripts/services.sh.
# Other knobs:
#   TELLTALE_DEMO_KEEP_SERVICES=1      leave PostgreSQL/Redis running on exit
#   TELLTALE_DEMO_EXTERNAL_SERVICES=1  PostgreSQL/Redis already run (their variables exported,
#                                      else read from $TELLTALE_RUN_DIR/env): no setup.sh, no
#                                      services start or stop (tests/test_demo_stack.py)
#   TELLTALE_BIN                       this telltale binary instead of a release build
#   TELLTALE_DEMO_DIR                  state and logs (default $TELLTALE_RUN_DIR/demo)
#   TELLTALE_DEMO_REDIS_URL            the queues' Redis (default $TELLTALE_REDIS_URL)
#   TELLTALE_DEMO_INTERVAL             Telltale's queue and probe interval (default 15s)
#   TELLTALE_DEMO_PROVIDER_INTERVAL    Telltale's provider interval (default 30s)
#   TELLTALE_DEMO_SCRAPE_INTERVAL      Prometheus' scrape and evaluation interval (default 15s)
#   TELLTALE_DEMO_RULES_DIR            the *.rules.yml Prometheus loads (default alerts/)
#   TELLTALE_DEMO_GROUP_WAIT           Alertmanager's group_wait (default 30s)
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
DEMO_DIR="${TELLTALE_DEMO_DIR:-$TELLTALE_RUN_DIR/demo}"
EXTERNAL_SERVICES="${TELLTALE_DEMO_EXTERNAL_SERVICES:-0}"

TELLTALE_PORT="${TELLTALE_DEMO_PORT:-9839}"
APIS_PORT="${TELLTALE_DEMO_APIS_PORT:-29100}"
CHAT_PORT="${TELLTALE_DEMO_CHAT_PORT:-29101}"
PROMETHEUS_PORT="${TELLTALE_DEMO_PROMETHEUS_PORT:-29090}"
ALERTMANAGER_PORT="${TELLTALE_DEMO_ALERTMANAGER_PORT:-29093}"
SCRAPE_INTERVAL="${TELLTALE_DEMO_SCRAPE_INTERVAL:-15s}"
RULES_DIR="${TELLTALE_DEMO_RULES_DIR:-$REPO/alerts}"
GROUP_WAIT="${TELLTALE_DEMO_GROUP_WAIT:-30s}"

say() { printf '[demo] %s\n' "$*"; }
die() { printf '[demo] ERROR: %s\n' "$*" >&2; exit 1; }

[[ -f $CONFIG ]] || die "missing $CONFIG"

# --no-prometheus is ours; everything else goes to `telltale serve`.
WITH_PROMETHEUS=1
SERVE_ARGS=()
LISTEN=""
prev=""
for a in "$@"; do
    case "$a" in
        --no-prometheus) WITH_PROMETHEUS=0 ;;
        --listen=*) LISTEN="${a#--listen=}"; SERVE_ARGS+=("$a") ;;
        *) [[ $prev == --listen ]] && LISTEN="$a"; SERVE_ARGS+=("$a") ;;
    esac
    prev="$a"
done
# Loopback unless the caller chose an address (the config's ":9839" is every interface).
if [[ -z $LISTEN ]]; then
    LISTEN="127.0.0.1:$TELLTALE_PORT"
    SERVE_ARGS+=(--listen "$LISTEN")
fi
TELLTALE_URL="http://${LISTEN/#0.0.0.0:/127.0.0.1:}"
TELLTALE_URL="${TELLTALE_URL/#http:\/\/:/http://127.0.0.1:}"

# Background processes, started in order and stopped in reverse: "name pid" pairs.
PIDS=()
NAMES=()
SERVICES_STARTED=0
# shellcheck disable=SC2317  # invoked via trap
cleanup() {
    local rc=$? i
    trap - EXIT INT TERM
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        if kill -0 "${PIDS[i]}" 2>/dev/null; then
            say "stopping ${NAMES[i]} (pid ${PIDS[i]})"
            kill -TERM "${PIDS[i]}" 2>/dev/null || true
            wait "${PIDS[i]}" 2>/dev/null || true
        fi
    done
    if ((SERVICES_STARTED)) && [[ ${TELLTALE_DEMO_KEEP_SERVICES:-0} != 1 ]]; then
        bash scripts/services.sh stop || true
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME LOG COMMAND... — run in the background, output to LOG ("-" for the terminal).
start() {
    local name="$1" log="$2"; shift 2
    if [[ $log == - ]]; then
        "$@" </dev/null &
    else
        "$@" </dev/null >"$log" 2>&1 &
    fi
    PIDS+=($!)
    NAMES+=("$name")
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_port NAME PORT — until something listens there; fails if NAME's process died.
wait_port() {
    local name="$1" port="$2" i pid="${PIDS[-1]}"
    for ((i = 0; i < 300; i++)); do
        port_in_use "$port" && return 0
        kill -0 "$pid" 2>/dev/null || die "$name exited while starting (log: $DEMO_DIR/$name.log)"
        sleep 0.1
    done
    die "$name did not listen on 127.0.0.1:$port within 30 s (log: $DEMO_DIR/$name.log)"
}

check_ports_free() {
    local port
    for port in "$@"; do
        ! port_in_use "$port" || die "127.0.0.1:$port is already in use (see the port knobs in $0)"
    done
}

prepare_services() {
    if [[ $EXTERNAL_SERVICES == 1 ]]; then
        if [[ -z ${TELLTALE_PG_DSN:-} ]]; then
            set -a
            # shellcheck disable=SC1091
            . "$TELLTALE_RUN_DIR/env"
            set +a
        fi
        return 0
    fi
    bash scripts/setup.sh
    SERVICES_STARTED=1
    bash scripts/services.sh start
    # Connection details for the config's ${VAR} substitution, psql and the seeder.
    set -a
    # shellcheck disable=SC1091
    . "$TELLTALE_RUN_DIR/env"
    set +a
    # A memory limit as a production BullMQ Redis has (noeviction: jobs are never evicted),
    # so the Redis memory panel and rules have something to show.
    redis-cli -u "$TELLTALE_REDIS_URL" CONFIG SET maxmemory 256mb >/dev/null
    redis-cli -u "$TELLTALE_REDIS_URL" CONFIG SET maxmemory-policy noeviction >/dev/null
}

telltale_binary() {
    if [[ -n ${TELLTALE_BIN:-} ]]; then
        [[ -x $TELLTALE_BIN ]] || die "TELLTALE_BIN=$TELLTALE_BIN is not executable"
        BIN="$TELLTALE_BIN"
        return 0
    fi
    say "building telltale (release)"
    bash scripts/build-release.sh
    BIN="$(swift build -c release --show-bin-path)/telltale"
}

load_database() {
    local psql="$TELLTALE_PG_BIN/psql"
    # The schema file is written to be re-runnable (IF NOT EXISTS / OR REPLACE).
    say "loading $(basename "$SCHEMA") into the database"
    "$psql" -X -q -v ON_ERROR_STOP=1 -d "$TELLTALE_PG_ADMIN_DSN" -f "$SCHEMA"
    # Alerting's tables, then the ops roadmap's alerts as rows; their channel "slack" posts to
    # TELLTALE_CHANNEL_SLACK: the local chat receiver unless a real Slack webhook URL is given.
    say "migrating alerting's tables and loading examples/alert-rules.sql"
    "$BIN" migrate --config "$CONFIG"
    "$psql" -X -q -v ON_ERROR_STOP=1 -d "$TELLTALE_PG_ADMIN_DSN" -f "$REPO/examples/alert-rules.sql"
}

write_prometheus_configs() {
    mkdir -p "$DEMO_DIR/prometheus-data" "$DEMO_DIR/alertmanager-data"
    cat >"$DEMO_DIR/prometheus.yml" <<EOF
# Written by scripts/demo.sh
global:
  scrape_interval: $SCRAPE_INTERVAL
  evaluation_interval: $SCRAPE_INTERVAL
rule_files:
  - $RULES_DIR/*.rules.yml
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:$ALERTMANAGER_PORT"]
scrape_configs:
  - job_name: telltale          # the alert rules expect job="telltale"
    static_configs:
      - targets: ["${TELLTALE_URL#http://}"]
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:$PROMETHEUS_PORT"]
EOF
    cat >"$DEMO_DIR/alertmanager.yml" <<EOF
# Written by scripts/demo.sh: every alert to the demo's chat receiver.
route:
  receiver: chat
  group_by: [alertname]
  group_wait: $GROUP_WAIT
  group_interval: 1m
  repeat_interval: 4h
receivers:
  - name: chat
    webhook_configs:
      - url: http://127.0.0.1:$CHAT_PORT/alertmanager
        send_resolved: true
EOF
    # The inhibitions of the example Alertmanager configuration, when there is one, so that
    # an outage makes as few messages here as it would there.
    if [[ -f $REPO/docker/alertmanager.yml ]]; then
        "$REPO/.venv/bin/python" - "$REPO/docker/alertmanager.yml" >>"$DEMO_DIR/alertmanager.yml" <<'EOF'
import sys, yaml
rules = (yaml.safe_load(open(sys.argv[1])) or {}).get("inhibit_rules")
if rules:
    print(yaml.safe_dump({"inhibit_rules": rules}, sort_keys=False))
EOF
    fi
}

start_prometheus() {
    write_prometheus_configs
    start alertmanager "$DEMO_DIR/alertmanager.log" prometheus-alertmanager \
        --config.file="$DEMO_DIR/alertmanager.yml" --storage.path="$DEMO_DIR/alertmanager-data" \
        --web.listen-address="127.0.0.1:$ALERTMANAGER_PORT" --cluster.listen-address=""
    wait_port alertmanager "$ALERTMANAGER_PORT"
    start prometheus "$DEMO_DIR/prometheus.log" prometheus \
        --config.file="$DEMO_DIR/prometheus.yml" --storage.tsdb.path="$DEMO_DIR/prometheus-data" \
        --web.listen-address="127.0.0.1:$PROMETHEUS_PORT"
    wait_port prometheus "$PROMETHEUS_PORT"
}

main() {
    mkdir -p "$DEMO_DIR"
    local ports=("$APIS_PORT" "$CHAT_PORT")
    ((WITH_PROMETHEUS)) && ports+=("$PROMETHEUS_PORT" "$ALERTMANAGER_PORT")
    check_ports_free "${ports[@]}"
    prepare_services
    telltale_binary

    export TELLTALE_DEMO_APIS_URL="http://127.0.0.1:$APIS_PORT"
    export TELLTALE_DEMO_REDIS_URL="${TELLTALE_DEMO_REDIS_URL:-$TELLTALE_REDIS_URL}"
    export TELLTALE_CHANNEL_SLACK="${TELLTALE_CHANNEL_SLACK:-http://127.0.0.1:$CHAT_PORT/slack}"
    load_database

    start chat - "$REPO/.venv/bin/python" scripts/demo/chat.py --port "$CHAT_PORT"
    wait_port chat "$CHAT_PORT"
    start apis "$DEMO_DIR/apis.log" "$REPO/.venv/bin/python" scripts/demo/apis.py --port "$APIS_PORT"
    wait_port apis "$APIS_PORT"
    start queues "$DEMO_DIR/queues.log" "$REPO/.venv-bullmq-v6/bin/python" scripts/demo/queues.py run
    start seed "$DEMO_DIR/seed.log" "$REPO/.venv/bin/python" "$SEED"
    ((WITH_PROMETHEUS)) && start_prometheus

    say "Telltale:      $TELLTALE_URL/   (metrics: $TELLTALE_URL/metrics)"
    say "chat messages: http://127.0.0.1:$CHAT_PORT/   (also printed here)"
    say "fake APIs:     $TELLTALE_DEMO_APIS_URL/v1/balance, /esa/api/v1/balance, /health"
    if ((WITH_PROMETHEUS)); then
        say "Prometheus:    http://127.0.0.1:$PROMETHEUS_PORT/   (alerts: /alerts)"
        say "Alertmanager:  http://127.0.0.1:$ALERTMANAGER_PORT/"
    fi
    say "logs:          $DEMO_DIR/*.log   (Ctrl-C stops everything)"

    # In the background + wait, so a SIGTERM to this script is handled at once
    # (bash runs traps only after a foreground child exits) and forwarded by cleanup.
    start telltale - "$BIN" serve --config "$CONFIG" "${SERVE_ARGS[@]}"
    local rc=0
    wait "${PIDS[-1]}" || rc=$?
    say "telltale exited with code $rc"
    exit "$rc"
}

main
