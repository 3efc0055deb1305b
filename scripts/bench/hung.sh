#!/usr/bin/env bash
# scripts/bench/hung.sh — /metrics latency while PostgreSQL and Redis hang.
#
# One `telltale serve` watches a PostgreSQL target (health queries and a SQL metric at 1 s),
# Redis job queues (at 1 s) and evaluates alert rules from the same PostgreSQL (alerting at
# 1 s). One client scrapes /metrics SCRAPES times, every SCRAPE_INTERVAL s, over a keep-alive
# connection with Prometheus' Accept and Accept-Encoding headers (scripts/bench/scrape.py):
#   idle     both backends answer;
#   stopped  PostgreSQL (postmaster and every backend) and Redis are SIGSTOPped, which is
#            what a hung server or a dead network path looks like to a client, from two
#            seconds before the first scrape to the last.
# Also recorded: telltale_pg_up, collector_up of the queues and telltale_alerting_database_up
# at the end of the stopped phase (all must read 0), and that both recover after SIGCONT.
#
# Usage: scripts/bench/hung.sh       SCRAPES (600), SCRAPE_INTERVAL (0.05), BENCH_TIMEOUT (240)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BENCH_COMMAND="scripts/bench/hung.sh"
BENCH_TIMEOUT="${BENCH_TIMEOUT:-240}"
# shellcheck source=lib.sh disable=SC1091
. "$HERE/lib.sh"
bench_init hung 55746 56746
bench_services
require_free_port "$BENCH_TELLTALE_PORT"

SCRAPES="${SCRAPES:-600}"
SCRAPE_INTERVAL="${SCRAPE_INTERVAL:-0.05}"
TT="http://127.0.0.1:$BENCH_TELLTALE_PORT"
PROM_ACCEPT='application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1'

cat >"$WORK/config.yml" <<EOF
log: {level: error}
postgres:
  - name: main
    dsn: "$TELLTALE_PG_DSN"
    interval: 1s
    timeout: 1s
    queries:
      - {metric: bench_rows, sql: "SELECT count(*) AS n FROM pg_class", values: [n], interval: 1s, timeout: 1s}
queues:
  redis: {url: "$TELLTALE_REDIS_URL", command_timeout: 1s}
  interval: 1s
  timeout: 1s
alerting:
  dsn: "$TELLTALE_PG_DSN"
  interval: 1s
EOF
"$TELLTALE_BIN" migrate --config "$WORK/config.yml" >&2
"${PSQL[@]}" -d "$TELLTALE_PG_DATABASE" -c "INSERT INTO telltale_alert_rules (name, environment, metric, comparison, threshold)
    VALUES ('bench-rows', 'any', 'bench_rows', '>', 1e12) ON CONFLICT (name) DO NOTHING" >&2
start_bg "$WORK/telltale.log" "$TELLTALE_BIN" serve --config "$WORK/config.yml" --listen "127.0.0.1:$BENCH_TELLTALE_PORT"
wait_http "$TT/healthz"
up() { metric_sum "$TT/metrics" "$1" "${2:-}"; }
for _ in $(seq 100); do [[ $(up telltale_pg_up) == 1 && $(up telltale_alerting_database_up) == 1 ]] && break; sleep 0.2; done

scrape() {
    python3 "$HERE/scrape.py" --n "$SCRAPES" --interval "$SCRAPE_INTERVAL" --timeout 10 \
        --header "Accept: $PROM_ACCEPT" --header "Accept-Encoding: gzip" "$1=$TT/metrics"
}

blog "idle: $SCRAPES scrapes"
scrape idle >"$WORK/idle.json"

PG_PIDS=()
pg_tree() {
    local root
    root="$(head -n1 "$TELLTALE_PG_DATA/postmaster.pid")"
    echo "$root"
    pgrep -P "$root" || true
}
mapfile -t PG_PIDS < <(pg_tree)
REDIS_PID="$(cat "$TELLTALE_RUN_DIR/redis.pid")"
resume() { kill -CONT "${PG_PIDS[@]}" "$REDIS_PID" 2>/dev/null || true; }
BENCH_CLEANUPS+=(resume)
blog "stopped: SIGSTOP PostgreSQL (${#PG_PIDS[@]} processes) and Redis, then $SCRAPES scrapes"
kill -STOP "${PG_PIDS[@]}" "$REDIS_PID"
sleep 2
scrape stopped >"$WORK/stopped.json"
DOWN="pg_up $(up telltale_pg_up), queues collector_up $(up telltale_collector_up 'collector="queues:default"'), alerting_database_up $(up telltale_alerting_database_up)"
resume
RECOVERED=no
for _ in $(seq 150); do
    if [[ $(up telltale_pg_up) == 1 && $(up telltale_collector_up 'collector="queues:default"') == 1 ]]; then RECOVERED=yes; break; fi
    sleep 0.2
done

python3 - "$WORK" "$DOWN" "$RECOVERED" >"$WORK/section.md" <<'EOF'
import json, sys
work, down, recovered = sys.argv[1:4]
idle = json.load(open(f"{work}/idle.json"))["idle"]
stopped = json.load(open(f"{work}/stopped.json"))["stopped"]
print("| phase | scrapes | errors | p50 ms | p90 ms | p99 ms | max ms |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for name, s in (("idle", idle), ("PostgreSQL and Redis SIGSTOPped", stopped)):
    print(f"| {name} | {s['n']} | {s['errors']} | {s['p50_ms']:.2f} | {s['p90_ms']:.2f} | {s['p99_ms']:.2f} | {s['max_ms']:.2f} |")
ratio = stopped["p99_ms"] / idle["p99_ms"]
print()
print(f"p99 while stopped / idle: **{ratio:.2f}×** (target: at most 2×). At the end of the stopped phase: {down}. "
      f"Recovered after SIGCONT: {recovered}.")
EOF
{
    echo "## Hung backends: /metrics while PostgreSQL and Redis are SIGSTOPped"
    echo
    echo "Command: \`$BENCH_COMMAND\` (SCRAPES=$SCRAPES, SCRAPE_INTERVAL=$SCRAPE_INTERVAL). The peer is the same"
    echo "binary in the same run with both backends answering."
    echo
    machine_info
    echo
    cat "$WORK/section.md"
} >"$WORK/report.md"
cat "$WORK/report.md"
write_section "$WORK/report.md"
