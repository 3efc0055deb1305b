#!/usr/bin/env bash
# scripts/bench/alert-eval.sh — evaluation of 1,000 rules over 100,000 series: Telltale against
# a real Prometheus evaluating the same rules in PromQL over the same series, side by side.
#
# Telltale collects two SQL families every INTERVAL seconds from generate_series queries
# (bench_queue_depth, a gauge, and bench_jobs_total, a counter, each over svc s1..s1000 ×
# queue q1..q50, values changing at each run) and evaluates the 1,000 rows of
# telltale_alert_rules every INTERVAL seconds. Prometheus scrapes that Telltale's /metrics every
# INTERVAL seconds (keeping only the bench_* series) and evaluates the same 1,000 rules,
# written in PromQL, in one rule group. scripts/bench/alert_eval_rules.py writes both from one
# list (instant rules with equality and regex matchers, increase/rate/avg_over_time over 5 m,
# sum/max by a label, sum by queue of increase; most never fire).
#
# After WARMUP seconds, both /metrics are read every 3 s for MEASURE seconds: Telltale's
# telltale_alert_evaluation_duration_seconds (the last evaluation of all rules) and
# Prometheus' prometheus_rule_group_last_duration_seconds (the last evaluation of the group),
# each evaluation counted once. Target (issue #13): Telltale's time at most Prometheus'.
#
# Knobs: INTERVAL (15), WARMUP (150), MEASURE (240), BENCH_TIMEOUT (540),
#        BENCH_TELLTALE_PORT (29500), BENCH_PROMETHEUS_PORT (29501); PostgreSQL 29432, Redis 29379.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BENCH_TIMEOUT="${BENCH_TIMEOUT:-540}"
BENCH_TELLTALE_PORT="${BENCH_TELLTALE_PORT:-29500}"
BENCH_PROMETHEUS_PORT="${BENCH_PROMETHEUS_PORT:-29501}"
# shellcheck source=lib.sh disable=SC1091
. "$HERE/lib.sh"
bench_init alert-eval 29432 29379
INTERVAL="${INTERVAL:-15}"
WARMUP="${WARMUP:-150}"
MEASURE="${MEASURE:-240}"
PROMETHEUS="${PROMETHEUS:-/usr/bin/prometheus}"
[[ -x $PROMETHEUS ]] || bdie "no Prometheus at $PROMETHEUS (apt-get install prometheus)"
require_free_port "$BENCH_TELLTALE_PORT"
require_free_port "$BENCH_PROMETHEUS_PORT"
bench_services
TT_URL="http://127.0.0.1:$BENCH_TELLTALE_PORT"
PROM_URL="http://127.0.0.1:$BENCH_PROMETHEUS_PORT"
DATABASE=bench_alert_eval

RULE_KINDS="$(python3 "$HERE/alert_eval_rules.py" "$WORK/rules.sql" "$WORK/rules.yml" "$INTERVAL")"
"${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DATABASE" -c "CREATE DATABASE $DATABASE OWNER $TELLTALE_PG_USER" >&2
DSN="postgres://$TELLTALE_PG_USER:$TELLTALE_PG_PASSWORD@127.0.0.1:$TELLTALE_PG_PORT/$DATABASE"
# The epoch moves the values at each run: the gauge cycles through 0..99, the counter grows
# by 1..5 per second and per series.
EPOCH="extract(epoch FROM now())::bigint"
cat >"$WORK/telltale.yml" <<YAML
log: {level: error}
collectors:
  process: {enabled: true}
  host: {enabled: false}
postgres:
  - name: bench
    dsn: "$DSN"
    health: {enabled: false, database_size: {enabled: false}}
    queries:
      - metric: bench_queue_depth
        sql: SELECT 's' || s AS svc, 'q' || q AS queue, (s * 7 + q * 13 + $EPOCH / $INTERVAL) % 100 AS v FROM generate_series(1, 1000) s, generate_series(1, 50) q
        labels: [svc, queue]
        values: [v]
        max_series: 50000
        interval: ${INTERVAL}s
        timeout: 10s
      - metric: bench_jobs
        type: counter
        sql: SELECT 's' || s AS svc, 'q' || q AS queue, ($EPOCH % 1000000) * ((s + q) % 5 + 1) AS v FROM generate_series(1, 1000) s, generate_series(1, 50) q
        labels: [svc, queue]
        values: [v]
        max_series: 50000
        interval: ${INTERVAL}s
        timeout: 10s
alerting:
  dsn: "$DSN"
  interval: ${INTERVAL}s
YAML
"$TELLTALE_BIN" migrate --config "$WORK/telltale.yml" >&2
"${PSQL[@]}" -d "$DATABASE" -f "$WORK/rules.sql" >&2

cat >"$WORK/prometheus.yml" <<YAML
global: {scrape_interval: ${INTERVAL}s, evaluation_interval: ${INTERVAL}s, scrape_timeout: 10s}
rule_files: ["$WORK/rules.yml"]
scrape_configs:
  - job_name: telltale
    static_configs: [{targets: ["127.0.0.1:$BENCH_TELLTALE_PORT"]}]
    metric_relabel_configs:
      - {source_labels: [__name__], regex: "bench_.*", action: keep}
YAML
"${PROMETHEUS%/*}/promtool" check config "$WORK/prometheus.yml" >&2 || bdie "promtool rejected the configuration"

blog "starting Telltale and Prometheus"
start_bg "$WORK/telltale.log" "$TELLTALE_BIN" serve --config "$WORK/telltale.yml" --listen "127.0.0.1:$BENCH_TELLTALE_PORT"
TT_PID=$BG_PID
wait_http "$TT_URL/healthz"
start_bg "$WORK/prometheus.log" "$PROMETHEUS" --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
    --storage.tsdb.retention.time=1h --web.listen-address="127.0.0.1:$BENCH_PROMETHEUS_PORT"
PROM_PID=$BG_PID
wait_http "$PROM_URL/-/ready" 60

# Telltale's exposition must hold the 100,000 series before the warm-up counts.
for _ in $(seq 60); do
    SERIES="$(curl -fsS --max-time 10 "$TT_URL/metrics" | grep -c '^bench_' || true)"
    ((SERIES >= 100000)) && break
    sleep 1
done
((SERIES >= 100000)) || bdie "Telltale exposes $SERIES bench_* series, not 100,000"
blog "Telltale exposes $SERIES bench_* series; warming up for ${WARMUP}s"
sleep "$WARMUP"

# sample — one line "telltale_seconds prometheus_seconds prometheus_evaluated_at".
sample() {
    printf '%s %s %s\n' "$(metric_sum "$TT_URL/metrics" telltale_alert_evaluation_duration_seconds)" \
        "$(metric_sum "$PROM_URL/metrics" prometheus_rule_group_last_duration_seconds)" \
        "$(metric_sum "$PROM_URL/metrics" prometheus_rule_group_last_evaluation_timestamp_seconds)"
}
blog "measuring for ${MEASURE}s"
CPU_START="$(cpu_ticks "$TT_PID")"
PROM_CPU_START="$(cpu_ticks "$PROM_PID")"
MEASURE_START=$SECONDS
while ((SECONDS - MEASURE_START < MEASURE)); do
    sample >>"$WORK/samples.txt"
    sleep 3
done
ELAPSED=$((SECONDS - MEASURE_START))
CPU_END="$(cpu_ticks "$TT_PID")"
PROM_CPU_END="$(cpu_ticks "$PROM_PID")"
TICKS="$(getconf CLK_TCK)"
TT_CPU="$(calc "round(100 * ($CPU_END - $CPU_START) / $TICKS / $ELAPSED, 1)")"
PROM_CPU="$(calc "round(100 * ($PROM_CPU_END - $PROM_CPU_START) / $TICKS / $ELAPSED, 1)")"
TT_RSS="$(calc "round($(rss_kib "$TT_PID") / 1024, 1)")"
PROM_RSS="$(calc "round($(rss_kib "$PROM_PID") / 1024, 1)")"
TT_SAMPLES="$(metric_sum "$TT_URL/metrics" telltale_alert_samples)"
TT_REFUSED="$(metric_sum "$TT_URL/metrics" telltale_alert_samples_refused_total)"
TT_ERRORS="$(metric_sum "$TT_URL/metrics" telltale_alert_rule_errors)"
TT_ERRORS="${TT_ERRORS/nan/0}"   # the family is empty when no rule is in error
TT_FIRING="$(metric_sum "$TT_URL/metrics" telltale_alerts_firing)"
PROM_RULES="$(metric_sum "$PROM_URL/metrics" prometheus_rule_group_rules)"
PROM_FAILURES="$(metric_sum "$PROM_URL/metrics" prometheus_rule_evaluation_failures_total)"
PROM_FIRING="$(curl -fsS --max-time 10 "$PROM_URL/api/v1/alerts" | python3 -c 'import json,sys; print(sum(a["state"] == "firing" for a in json.load(sys.stdin)["data"]["alerts"]))')"
PROM_SERIES="$(metric_sum "$PROM_URL/metrics" prometheus_tsdb_head_series)"

# Each evaluation once: Telltale's by a change of its gauge (milliseconds), Prometheus' by its
# evaluation timestamp.
read -r TT_N TT_MEDIAN TT_MAX PROM_N PROM_MEDIAN PROM_MAX < <(python3 - "$WORK/samples.txt" <<'PY'
import statistics, sys
tt, prom, last_tt, last_at = [], [], None, None
for line in open(sys.argv[1]):
    t, p, at = line.split()
    if t != "nan" and t != last_tt:
        tt.append(float(t)); last_tt = t
    if p != "nan" and at != last_at:
        prom.append(float(p)); last_at = at
ms = lambda v: f"{v * 1000:.1f}"
print(len(tt), ms(statistics.median(tt)), ms(max(tt)), len(prom), ms(statistics.median(prom)), ms(max(prom)))
PY
)
RATIO="$(calc "round($TT_MEDIAN / $PROM_MEDIAN, 2)")"
blog "Telltale median $TT_MEDIAN ms, Prometheus median $PROM_MEDIAN ms"

{
    echo "## Alert evaluation: 1,000 rules over 100,000 series"
    echo
    echo "Command: \`scripts/bench/alert-eval.sh\` (INTERVAL=$INTERVAL, WARMUP=$WARMUP, MEASURE=$MEASURE). Telltale and Prometheus"
    echo "ran side by side, Prometheus scraping Telltale's \`/metrics\`, both evaluating every ${INTERVAL} s."
    echo
    machine_info
    echo "- Prometheus $("$PROMETHEUS" --version 2>&1 | awk 'NR == 1 {print $3}'), PostgreSQL $("$TELLTALE_PG_BIN/postgres" --version | awk '{print $3}')"
    echo
    echo "Series: \`bench_queue_depth\` (gauge) and \`bench_jobs_total\` (counter), each over 1,000 \`svc\` × 50 \`queue\`, from"
    echo "two SQL queries over \`generate_series\` collected every ${INTERVAL} s ($SERIES series in Telltale's exposition;"
    echo "Prometheus keeps only these, $PROM_SERIES in its head). Rules, the same 1,000 in \`telltale_alert_rules\` and in one"
    echo "Prometheus rule group, written by [\`alert_eval_rules.py\`](scripts/bench/alert_eval_rules.py): \`$RULE_KINDS\`"
    echo "(eq: \`m{svc=\"…\",queue=\"…\"} > 98\`; re: \`svc=~\"s12[0-9]\"\`; increase/rate/avg: over 5 m on one service's 50 series;"
    echo "sum/max: \`sum by (queue)\`, \`max by (svc)\` over a regex; sumincrease: \`sum by (queue) (increase(…[5m]))\`)."
    echo
    echo "| measure | Telltale | Prometheus |"
    echo "| --- | --- | --- |"
    echo "| **evaluation of all 1,000 rules, median** | **$TT_MEDIAN ms** | **$PROM_MEDIAN ms** |"
    echo "| evaluation, max | $TT_MAX ms | $PROM_MAX ms |"
    echo "| evaluations measured (over ${ELAPSED} s after ${WARMUP} s of warm-up) | $TT_N | $PROM_N |"
    echo "| firing alerts at the end | $TT_FIRING | $PROM_FIRING |"
    echo "| rules in error / evaluation failures | $TT_ERRORS | $PROM_FAILURES (rules loaded: $PROM_RULES) |"
    echo "| CPU over the measurement (% of one core; Telltale also collects and serves the 100,000 series) | $TT_CPU % | $PROM_CPU % |"
    echo "| resident memory at the end | $TT_RSS MiB | $PROM_RSS MiB |"
    echo "| samples kept for windowed rules (\`telltale_alert_samples\`; refused) | $TT_SAMPLES ($TT_REFUSED) | |"
    echo
    echo "Telltale: \`telltale_alert_evaluation_duration_seconds\` (to the millisecond); Prometheus:"
    echo "\`prometheus_rule_group_last_duration_seconds\`, both read from their own \`/metrics\` every 3 s, each evaluation"
    echo "counted once. Ratio Telltale ÷ Prometheus (medians): **$RATIO**. Target: at most 1."
} >"$WORK/report.md"
cat "$WORK/report.md"
write_section "$WORK/report.md"
