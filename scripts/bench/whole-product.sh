#!/usr/bin/env bash
# scripts/bench/whole-product.sh — everything on at once: resident memory and /metrics latency.
#
# Two Telltale configurations, run one after the other (ROUNDS times, alternating):
#   * "10k series": the SQL gauge of scripts/bench/foundation.sh (10,000 series, 1 s), alone;
#   * "whole product": the same 10,000 SQL series plus 1,000 BullMQ queues with 50,000 jobs
#     (scripts/bench/queues_data.py, discovery, 2 s), 50 providers polled every second from the
#     test suite's fake (tests/fakes/provider_fake.py), 5 probes, the process and host
#     collectors, and alerting with 1,000 rules over the SQL series (instant, equality
#     matchers; evaluated after every collection, at least every 2 s) as the leader, with
#     a webhook channel.
# Each phase: start, wait until every series is there, WARMUP seconds, then wrk on /metrics
# as Prometheus asks for it (gzip), flat out, then resident memory, then wrk again paced (each
# connection waits PACE_MS after each answer: about 1,900 requests a second, the cores not
# saturated, so the p99 shows what the background work makes a scrape wait rather than how
# the cores are shared under saturation). Targets (issue #15): under 40 MiB with everything
# on, and /metrics p99 within 2× of the 10,000-series figure of the same run.
#
# Knobs: ROUNDS (2), WARMUP (20), WRK_DURATION (10s), WRK_THREADS (2), WRK_CONNECTIONS (8),
#        PACE_MS (4), BENCH_TIMEOUT (480, plus BENCH_HOLD); PostgreSQL 55745, Redis 56745; BENCH_REDIS_DB (0, must be empty);
#        BENCH_HOLD (seconds: keep the first whole-product phase running after wrk, its PID
#        printed, to look at it with /proc/PID/smaps, perf or the console; the run goes on after).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BENCH_COMMAND="scripts/bench/whole-product.sh"
[[ ${BENCH_HOLD:-0} =~ ^[0-9]+$ ]] || { echo "BENCH_HOLD must be whole seconds" >&2; exit 2; }
BENCH_TIMEOUT="${BENCH_TIMEOUT:-$((480 + ${BENCH_HOLD:-0}))}"  # the hold included
# shellcheck source=lib.sh disable=SC1091
. "$HERE/lib.sh"
bench_init whole-product 55745 56745

ROUNDS="${ROUNDS:-2}"
WARMUP="${WARMUP:-20}"
WRK_DURATION="${WRK_DURATION:-10s}"
WRK_THREADS="${WRK_THREADS:-2}"
WRK_CONNECTIONS="${WRK_CONNECTIONS:-8}"
PACE_MS="${PACE_MS:-4}"
[[ $PACE_MS =~ ^[0-9]+$ ]] || bdie "PACE_MS must be whole milliseconds"
SERIES=10000 QUEUES=1000 JOBS=50000 PROVIDERS=50 PROBES=5 RULES=1000
REDIS_DB="${BENCH_REDIS_DB:-0}"
PY="$BENCH_REPO/.venv-bullmq-v6/bin/python"
FAKE="$BENCH_REPO/tests/fakes/provider_fake.py"
[[ -x $PY ]] || bdie "$PY not found (scripts/setup.sh makes .venv-bullmq-v6)"
command -v wrk >/dev/null || bdie "wrk not found (scripts/setup.sh)"
require_free_port "$BENCH_TELLTALE_PORT"
bench_services
TT_URL="http://127.0.0.1:$BENCH_TELLTALE_PORT"
RCLI=(redis-cli -h 127.0.0.1 -p "$TELLTALE_REDIS_PORT" -n "$REDIS_DB")
REDIS_URL="redis://127.0.0.1:$TELLTALE_REDIS_PORT/$REDIS_DB"
[[ "$("${RCLI[@]}" dbsize)" == 0 ]] || bdie "Redis db $REDIS_DB is not empty (BENCH_REDIS_DB selects another)"
BENCH_CLEANUPS+=("$(printf '%q ' "${RCLI[@]}") flushdb")

# ------------------------------------------------------------------ data and fakes
blog "writing $QUEUES queues with $JOBS jobs"
"$PY" "$HERE/queues_data.py" --url "$REDIS_URL" --queues "$QUEUES" --jobs "$JOBS" >"$WORK/queues.json"
start_bg "$WORK/fake.log" python3 -u "$FAKE"
deadline=$((SECONDS + 15))
until FAKE_URL="$(head -n1 "$WORK/fake.log" 2>/dev/null)" && [[ $FAKE_URL == http://127.0.0.1:* ]]; do
    ((SECONDS < deadline)) || bdie "the provider fake printed no URL"
    sleep 0.1
done
for path in /health /hook; do
    curl -fsS --max-time 5 -H 'Content-Type: application/json' -o /dev/null \
        -d "{\"path\": \"$path\", \"status\": 200, \"body\": \"ok\"}" "$FAKE_URL/_route" || bdie "the fake refused a route"
done
export TELLTALE_CHANNEL_HOOK="$FAKE_URL/hook"
DATABASE=bench_whole_product
"${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DATABASE" -c "CREATE DATABASE $DATABASE OWNER $TELLTALE_PG_USER" >&2
DSN="postgres://$TELLTALE_PG_USER:$TELLTALE_PG_PASSWORD@127.0.0.1:$TELLTALE_PG_PORT/$DATABASE"

# ------------------------------------------------------------------ configurations
sql_section() {
    cat <<EOF
server: {listen: "127.0.0.1:$BENCH_TELLTALE_PORT"}
log: {level: warning}
postgres:
  - name: bench
    dsn: "$DSN"
    interval: 1s
    timeout: 900ms
    health: {database_size: {enabled: false}}
    queries:
$(bench_series_query "$SERIES")
EOF
}
sql_section >"$WORK/series.yml"
{
    sql_section
    cat <<EOF
collectors:
  process: {interval: 5s}
  host: {interval: 5s}
queues:
  redis: {url: "$REDIS_URL"}
  interval: 2s
  timeout: 2s
  discovery: {enabled: true, interval: 10m, budget: 5s}
  max_queues: $((QUEUES * 2))
http_threads: 8
providers:
EOF
    for ((i = 1; i <= PROVIDERS; i++)); do
        echo "  - {name: p$i, type: nowpayments, base_url: \"$FAKE_URL/p$i\", api_key: np-test-key, interval: 1s, timeout: 1s}"
    done
    echo "probes:"
    for ((i = 1; i <= PROBES; i++)); do
        echo "  - {name: app$i, url: \"$FAKE_URL/health\", interval: 2s, timeout: 1s}"
    done
    cat <<EOF
alerting:
  dsn: "$DSN"
  interval: 2s
  admin_thresholds: {enabled: false}
EOF
} >"$WORK/whole.yml"
for config in series whole; do
    "$TELLTALE_BIN" check-config --config "$WORK/$config.yml" >/dev/null 2>"$WORK/check.log" ||
        bdie "check-config $config: $(cat "$WORK/check.log")"
done
"$TELLTALE_BIN" migrate --config "$WORK/whole.yml" >&2
"${PSQL[@]}" -d "$DATABASE" >&2 <<EOF
INSERT INTO telltale_channels (name, kind, url_env) VALUES ('hook', 'webhook', 'TELLTALE_CHANNEL_HOOK');
INSERT INTO telltale_alert_rules (name, environment, metric, matchers, comparison, threshold, channel)
    SELECT 'r' || g, 'any', 'bench_series', 'id="' || (g * 10) || '"', '>', 95, 'hook' FROM generate_series(1, $RULES) g;
EOF

# ------------------------------------------------------------------ phases
WRK_CMD="wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d$WRK_DURATION --latency -H 'Accept-Encoding: gzip'"
echo "function delay() return $PACE_MS end" >"$WORK/pace.lua"
to_ms() {
    awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'
}
# ready CONFIG — whether /metrics holds what the configuration makes. Asked for gzip, as
# Prometheus asks: an uncompressed request makes Telltale keep the text of its large
# families for five minutes (README, "Data flows"), which the phase would then measure.
ready() {
    local text
    text="$(curl -fsS --compressed --max-time 5 "$TT_URL/metrics" 2>/dev/null)" || return 1
    [[ $(grep -c '^bench_series{' <<<"$text") == "$SERIES" ]] || return 1
    [[ $1 == series ]] && return 0
    (($(grep -c '^telltale_queue_up{' <<<"$text") == QUEUES)) &&
        (($(grep -c '^telltale_provider_up{.*} 1' <<<"$text") == PROVIDERS)) &&
        grep -q '^telltale_alerting_leader 1' <<<"$text"
}
declare -A P50 P99 RPS RSS HWM SERIES_OUT PACED_P50 PACED_P99 PACED_RPS
# wrk_run OUT [ARGS…] — wrk on /metrics, failing the run on any error.
wrk_run() {
    local out="$1"
    shift
    eval "$WRK_CMD $* \"$TT_URL/metrics\"" >"$out" 2>&1 || bdie "wrk failed: $(cat "$out")"
    ! grep -q -E 'Non-2xx|Socket errors' "$out" || bdie "wrk errors: $(grep -E 'Non-2xx|Socket errors' "$out")"
}
wrk_field() { awk -v f="$2" '$1 == f {print $2}' "$1"; }
phase() {  # CONFIG ROUND
    local config="$1" log="$WORK/telltale-$1-$2.log" out="$WORK/wrk-$1-$2.txt" deadline
    blog "round $2: $config"
    start_bg "$log" "$TELLTALE_BIN" serve --config "$WORK/$config.yml"
    local pid=$BG_PID
    deadline=$((SECONDS + 60))
    until ready "$config"; do
        ((SECONDS < deadline)) || bdie "$config: not every series within 60 s (log: $(tail -3 "$log"))"
        sleep 0.5
    done
    sleep "$WARMUP"
    wrk_run "$out"
    P50[$config]+=" $(to_ms "$(wrk_field "$out" 50%)")"
    P99[$config]+=" $(to_ms "$(wrk_field "$out" 99%)")"
    RPS[$config]+=" $(wrk_field "$out" Requests/sec:)"
    IFS='|' read -r rss _ _ hwm _ <<<"$(mem_fields "$pid")"
    RSS[$config]+=" $rss"
    HWM[$config]+=" $hwm"
    out="$WORK/wrk-paced-$1-$2.txt"
    wrk_run "$out" -s "$WORK/pace.lua"
    PACED_P50[$config]+=" $(to_ms "$(wrk_field "$out" 50%)")"
    PACED_P99[$config]+=" $(to_ms "$(wrk_field "$out" 99%)")"
    PACED_RPS[$config]+=" $(wrk_field "$out" Requests/sec:)"
    SERIES_OUT[$config]="$(curl -fsS --compressed "$TT_URL/metrics" | grep -c -v '^#')"
    if [[ -n ${BENCH_HOLD:-} && $config == whole && $2 == 1 ]]; then
        blog "holding the whole product for $BENCH_HOLD s: PID $pid, $TT_URL, work dir $WORK"
        sleep "$BENCH_HOLD"
    fi
    stop_pid "$pid"
}
for round in $(seq 1 "$ROUNDS"); do
    phase series "$round"
    phase whole "$round"
done

# ------------------------------------------------------------------ report
# shellcheck disable=SC2086  # the lists are space-separated on purpose
mean() { python3 -c "import sys; v=[float(x) for x in sys.argv[1:]]; print(f'{sum(v)/len(v):.2f}')" $1; }
# shellcheck disable=SC2086
maxof() { python3 -c "import sys; print(f'{max(float(x) for x in sys.argv[1:]):.1f}')" $1; }
rounds() { echo "$1" | xargs | sed 's/ / · /g'; }
verdict() { if python3 -c "import sys; sys.exit(0 if $1 else 1)"; then echo "**met**"; else echo "**not met**"; fi; }
P99_SERIES=$(mean "${P99[series]}"); P99_WHOLE=$(mean "${P99[whole]}")
PACED_SERIES=$(mean "${PACED_P99[series]}"); PACED_WHOLE=$(mean "${PACED_P99[whole]}")
RSS_WHOLE=$(maxof "${RSS[whole]}")
SECTION="$WORK/section.md"
{
    echo "## The whole product: everything on at once"
    echo
    echo "Command: \`$BENCH_COMMAND\` (wrk: \`$WRK_CMD URL\` flat out, then paced with \`-s pace.lua\`: each connection waits $PACE_MS ms after each answer; $ROUNDS rounds, phases alternating, ${WARMUP} s warm-up each)"
    echo
    machine_info
    echo
    echo "- **10k series**: a SQL gauge over \`generate_series(1, $SERIES)\` every second (as in the foundation benchmark), Postgres health, process and host collectors."
    echo "- **whole product**: the same, plus $QUEUES BullMQ queues with $JOBS jobs (discovery, every 2 s), $PROVIDERS NOWPayments providers"
    echo "  every second (the test suite's fake), $PROBES probes every 2 s, and alerting as the leader with $RULES rules over the SQL series"
    echo "  (evaluated after every collection) and a webhook channel. Series exposed: ${SERIES_OUT[whole]} (10k series: ${SERIES_OUT[series]})."
    echo
    echo "| | 10k series | whole product |"
    echo "| --- | --- | --- |"
    echo "| flat out: \`/metrics\` p99, ms (rounds) | **$P99_SERIES** ← $(rounds "${P99[series]}") | **$P99_WHOLE** ← $(rounds "${P99[whole]}") |"
    echo "| flat out: \`/metrics\` p50, ms | $(mean "${P50[series]}") | $(mean "${P50[whole]}") |"
    echo "| flat out: requests per second | $(mean "${RPS[series]}") | $(mean "${RPS[whole]}") |"
    echo "| paced: \`/metrics\` p99, ms (rounds) | **$PACED_SERIES** ← $(rounds "${PACED_P99[series]}") | **$PACED_WHOLE** ← $(rounds "${PACED_P99[whole]}") |"
    echo "| paced: \`/metrics\` p50, ms | $(mean "${PACED_P50[series]}") | $(mean "${PACED_P50[whole]}") |"
    echo "| paced: requests per second | $(mean "${PACED_RPS[series]}") | $(mean "${PACED_RPS[whole]}") |"
    echo "| VmRSS after wrk, MiB (rounds) | $(rounds "${RSS[series]}") | $(rounds "${RSS[whole]}") |"
    echo "| VmHWM (peak), MiB | $(maxof "${HWM[series]}") | $(maxof "${HWM[whole]}") |"
    echo
    echo "- Resident memory with everything on: $RSS_WHOLE MiB (target under 40 MiB: $(verdict "$RSS_WHOLE < 40"))."
    echo "- \`/metrics\` p99 with everything on ÷ 10k series, flat out: $(calc "round($P99_WHOLE / $P99_SERIES, 2)")× (target ≤ 2×: $(verdict "$P99_WHOLE <= 2 * $P99_SERIES"))."
    echo "- \`/metrics\` p99 with everything on ÷ 10k series, paced: $(calc "round($PACED_WHOLE / $PACED_SERIES, 2)")× (target ≤ 2×: $(verdict "$PACED_WHOLE <= 2 * $PACED_SERIES"))."
    echo "- wrk, Telltale, PostgreSQL, Redis and the provider fake share the $(nproc) CPUs."
} >"$SECTION"
cat "$SECTION"
write_section "$SECTION"
