#!/usr/bin/env bash
# scripts/bench/whole-product.sh — everything on at once: resident memory and /metrics latency.
#
# Two Telltale configurations, run one after the other (ROUNDS times, alternating):
#   * "10k series": the SQL gauge of scripts/bench/foundation.sh (10,000 series, 1 s), alone;
#   * "whole product": the same 10,000 SQL series plus 1,000 BullMQ queues with 50,000 jobs
#     (scripts/bench/queues_data.py, discovery, 2 s), 50 providers polled every second from a
#     stand-in (nginx answering the balance document of tests/fakes/provider_fake.py: real
#     providers are remote, and the Python fake took a few percent of the cores the
#     measurement shares, preempting wrk and Telltale), 5 probes, the process and host
#     collectors, and alerting with 1,000 rules over the SQL series (instant, equality
#     matchers; evaluated after every collection, at least every 2 s) as the leader, with
#     a webhook channel.
# Each phase: start, wait until every series is there, WARMUP seconds, then wrk on /metrics
# as Prometheus asks for it (gzip), flat out (8 connections), then resident memory, then wrk
# as scrapers: SCRAPERS connections (a Prometheus pair scrapes a target on one connection
# each), each waiting SCRAPE_PAUSE_MS after each answer (about 1,700 requests a second, far
# more than real scrapes, for a p99 of many samples). Flat out, the cores are saturated and
# the p99 mostly shows how wrk and the event loops share them; as scrapers, it shows what the
# background work makes a scrape wait. Targets (issue #15): under 40 MiB with everything
# on, and /metrics p99 within 2× of the 10,000-series figure of the same run.
# The peer: after the Telltale rounds, nginx serves each configuration's gzip body as a
# static file with the same wrk runs (ROUNDS times): what those bytes cost on this machine.
#
# Rounds: one 10 s wrk run's p99 varies by half from one round to the next on this shared
# machine (0.10–0.15 ms for the same configuration in one run), so each figure is the mean of
# five rounds.
# Knobs: ROUNDS (5), WARMUP (20), WRK_DURATION (10s), WRK_THREADS (2), WRK_CONNECTIONS (8),
#        SCRAPERS (2), SCRAPE_PAUSE_MS (1), BENCH_TIMEOUT (180 per round + 120, plus BENCH_HOLD); PostgreSQL 55745, Redis 56745,
#        nginx 19840 (BENCH_NGINX_PORT) and the next port for the stand-in; BENCH_REDIS_DB (0, must be empty);
#        BENCH_HOLD (seconds: keep the first whole-product phase running after wrk, its PID
#        printed, to look at it with /proc/PID/smaps, perf or the console; the run goes on after).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BENCH_COMMAND="scripts/bench/whole-product.sh"
[[ ${BENCH_HOLD:-0} =~ ^[0-9]+$ ]] || { echo "BENCH_HOLD must be whole seconds" >&2; exit 2; }
ROUNDS="${ROUNDS:-5}"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "ROUNDS must be a positive whole number" >&2; exit 2; }
# A round (two Telltale phases, two nginx phases) takes about two minutes; the hold included.
BENCH_TIMEOUT="${BENCH_TIMEOUT:-$((180 * ROUNDS + 120 + ${BENCH_HOLD:-0}))}"
# shellcheck source=lib.sh disable=SC1091
. "$HERE/lib.sh"
bench_init whole-product 55745 56745

WARMUP="${WARMUP:-20}"
WRK_DURATION="${WRK_DURATION:-10s}"
WRK_THREADS="${WRK_THREADS:-2}"
WRK_CONNECTIONS="${WRK_CONNECTIONS:-8}"
SCRAPERS="${SCRAPERS:-2}"
SCRAPE_PAUSE_MS="${SCRAPE_PAUSE_MS:-1}"
[[ $SCRAPE_PAUSE_MS =~ ^[0-9]+$ ]] || bdie "SCRAPE_PAUSE_MS must be whole milliseconds"
SERIES=10000 QUEUES=1000 JOBS=50000 PROVIDERS=50 PROBES=5 RULES=1000
REDIS_DB="${BENCH_REDIS_DB:-0}"
PY="$BENCH_REPO/.venv-bullmq-v6/bin/python"
[[ -x $PY ]] || bdie "$PY not found (scripts/setup.sh makes .venv-bullmq-v6)"
command -v wrk >/dev/null || bdie "wrk not found (scripts/setup.sh)"
command -v nginx >/dev/null || bdie "nginx not found (scripts/setup.sh)"
require_free_port "$BENCH_TELLTALE_PORT"
require_free_port "$BENCH_NGINX_PORT"
STAND_IN_PORT=$((BENCH_NGINX_PORT + 1))
require_free_port "$STAND_IN_PORT"
bench_services
TT_URL="http://127.0.0.1:$BENCH_TELLTALE_PORT"
NGINX_URL="http://127.0.0.1:$BENCH_NGINX_PORT"
RCLI=(redis-cli -h 127.0.0.1 -p "$TELLTALE_REDIS_PORT" -n "$REDIS_DB")
REDIS_URL="redis://127.0.0.1:$TELLTALE_REDIS_PORT/$REDIS_DB"
[[ "$("${RCLI[@]}" dbsize)" == 0 ]] || bdie "Redis db $REDIS_DB is not empty (BENCH_REDIS_DB selects another)"
BENCH_CLEANUPS+=("$(printf '%q ' "${RCLI[@]}") flushdb")

# ------------------------------------------------------------------ data and stand-in
blog "writing $QUEUES queues with $JOBS jobs"
"$PY" "$HERE/queues_data.py" --url "$REDIS_URL" --queues "$QUEUES" --jobs "$JOBS" >"$WORK/queues.json"
# The providers' API, the probes' health endpoint and the webhook channel, answered by nginx.
start_nginx "$WORK/stand-in" "$STAND_IN_PORT" 1 "        location ~ ^/p[0-9]+/v1/balance\$ {
            default_type application/json;
            return 200 '{\"btc\": {\"amount\": 0.5, \"pendingAmount\": \"0.25\"}, \"eth\": {\"amount\": 2, \"pendingAmount\": 0}}';
        }
        location = /health { return 200 'ok'; }
        location = /hook { return 200 'ok'; }" /health
STAND_IN_URL="http://127.0.0.1:$STAND_IN_PORT"
export TELLTALE_CHANNEL_HOOK="$STAND_IN_URL/hook"
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
        echo "  - {name: p$i, type: nowpayments, base_url: \"$STAND_IN_URL/p$i\", api_key: np-test-key, interval: 1s, timeout: 1s}"
    done
    echo "probes:"
    for ((i = 1; i <= PROBES; i++)); do
        echo "  - {name: app$i, url: \"$STAND_IN_URL/health\", interval: 2s, timeout: 1s}"
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
SCRAPERS_CMD="wrk -t$SCRAPERS -c$SCRAPERS -d$WRK_DURATION --latency -H 'Accept-Encoding: gzip' -s pause.lua"
echo "function delay() return $SCRAPE_PAUSE_MS end" >"$WORK/pause.lua"
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
declare -A P50 P99 RPS RSS HWM SERIES_OUT SCRAPER_P50 SCRAPER_P99 SCRAPER_RPS
# wrk_run OUT COMMAND URL — a wrk command on URL (in the work dir), failing the run on any error.
wrk_run() {
    local out="$1" command="$2" url="$3"
    (cd "$WORK" && eval "$command \"$url\"") >"$out" 2>&1 || bdie "wrk failed: $(cat "$out")"
    ! grep -q -E 'Non-2xx|Socket errors' "$out" || bdie "wrk errors: $(grep -E 'Non-2xx|Socket errors' "$out")"
}
wrk_field() { awk -v f="$2" '$1 == f {print $2}' "$1"; }
# wrk_record OUT KEY P50 P99 RPS — adds OUT's figures under KEY to the arrays named.
wrk_record() {
    local out="$1" key="$2"
    local -n p50="$3" p99="$4" rps="$5"
    p50[$key]+=" $(to_ms "$(wrk_field "$out" 50%)")"
    p99[$key]+=" $(to_ms "$(wrk_field "$out" 99%)")"
    rps[$key]+=" $(wrk_field "$out" Requests/sec:)"
}
# measure KEY URL [PID] — wrk flat out, resident memory of PID (if given), then wrk as
# scrapers; results added to the arrays under KEY.
measure() {
    local key="$1" url="$2" pid="${3:-}" out="$WORK/wrk-$1-$round.txt"
    wrk_run "$out" "$WRK_CMD" "$url"
    wrk_record "$out" "$key" P50 P99 RPS
    if [[ -n $pid ]]; then
        IFS='|' read -r rss _ _ hwm _ <<<"$(mem_fields "$pid")"
        RSS[$key]+=" $rss"
        HWM[$key]+=" $hwm"
    fi
    out="$WORK/wrk-scrapers-$1-$round.txt"
    wrk_run "$out" "$SCRAPERS_CMD" "$url"
    wrk_record "$out" "$key" SCRAPER_P50 SCRAPER_P99 SCRAPER_RPS
}
phase() {  # CONFIG (in round $round)
    local config="$1" log="$WORK/telltale-$1-$round.log" deadline
    blog "round $round: $config"
    start_bg "$log" "$TELLTALE_BIN" serve --config "$WORK/$config.yml"
    local pid=$BG_PID
    deadline=$((SECONDS + 60))
    until ready "$config"; do
        ((SECONDS < deadline)) || bdie "$config: not every series within 60 s (log: $(tail -3 "$log"))"
        sleep 0.5
    done
    sleep "$WARMUP"
    measure "$config" "$TT_URL/metrics" "$pid"
    SERIES_OUT[$config]="$(curl -fsS --compressed "$TT_URL/metrics" | grep -c -v '^#')"
    save_gzip_body "$TT_URL/metrics" "$WORK/body-$config.gz"
    if [[ -n ${BENCH_HOLD:-} && $config == whole && $round == 1 ]]; then
        blog "holding the whole product for $BENCH_HOLD s: PID $pid, $TT_URL, work dir $WORK"
        sleep "$BENCH_HOLD"
    fi
    stop_pid "$pid"
}
# nginx_phase CONFIG — nginx serving, as a static gzip file, the body Telltale returned for
# CONFIG: what these bytes cost to serve on this machine, without Telltale.
nginx_phase() {
    local config="$1" dir="$WORK/nginx-$1"
    blog "round $round: nginx with the $config body"
    start_nginx_static "$dir" "$BENCH_NGINX_PORT" "$WORK/body-$config.gz"
    local pid=$BG_PID
    measure "nginx-$config" "$NGINX_URL/metrics"
    stop_pid "$pid"
}
for round in $(seq 1 "$ROUNDS"); do
    phase series
    phase whole
done
for round in $(seq 1 "$ROUNDS"); do
    nginx_phase series
    nginx_phase whole
done

# ------------------------------------------------------------------ report
# shellcheck disable=SC2086  # the lists are space-separated on purpose
mean() { python3 -c "import sys; v=[float(x) for x in sys.argv[1:]]; print(f'{sum(v)/len(v):.2f}')" $1; }
# shellcheck disable=SC2086
maxof() { python3 -c "import sys; print(f'{max(float(x) for x in sys.argv[1:]):.1f}')" $1; }
rounds() { echo "$1" | xargs | sed 's/ / · /g'; }
verdict() { if python3 -c "import sys; sys.exit(0 if $1 else 1)"; then echo "**met**"; else echo "**not met**"; fi; }
RSS_WHOLE=$(maxof "${RSS[whole]}")
# ratio ARRAY [PREFIX] — whole ÷ series of the means in ARRAY (P99 or SCRAPER_P99), for
# Telltale, or for nginx with PREFIX nginx-.
ratio() {
    local -n values="$1"
    local prefix="${2:-}"
    calc "round($(mean "${values[${prefix}whole]}") / $(mean "${values[${prefix}series]}"), 2)"
}
met() {
    local -n values="$1"
    verdict "$(mean "${values[whole]}") <= 2 * $(mean "${values[series]}")"
}
# row LABEL ARRAY [bold] — one table row: the mean of each column, with its rounds when asked.
row() {
    local label="$1" bold="${3:-}" line key
    local -n values="$2"
    line="| $label |"
    for key in series whole nginx-series nginx-whole; do
        if [[ -z ${values[$key]:-} ]]; then line+=" |"
        elif [[ -n $bold ]]; then line+=" **$(mean "${values[$key]}")** ← $(rounds "${values[$key]}") |"
        else line+=" $(mean "${values[$key]}") |"
        fi
    done
    echo "$line"
}
SECTION="$WORK/section.md"
{
    echo "## The whole product: everything on at once"
    echo
    echo "Command: \`$BENCH_COMMAND\` (wrk flat out: \`$WRK_CMD URL\`; as scrapers: \`$SCRAPERS_CMD URL\`, where pause.lua makes each connection wait $SCRAPE_PAUSE_MS ms after each answer; $ROUNDS rounds, phases alternating, ${WARMUP} s warm-up each)"
    echo
    machine_info
    echo
    echo "- **10k series**: a SQL gauge over \`generate_series(1, $SERIES)\` every second (as in the foundation benchmark), Postgres health, process and host collectors."
    echo "- **whole product**: the same, plus $QUEUES BullMQ queues with $JOBS jobs (discovery, every 2 s), $PROVIDERS NOWPayments providers"
    echo "  every second (nginx answering the balance document), $PROBES probes every 2 s, and alerting as the leader with $RULES rules over the SQL series"
    echo "  (evaluated after every collection) and a webhook channel. Series exposed: ${SERIES_OUT[whole]} (10k series: ${SERIES_OUT[series]})."
    echo "- **nginx**: the peer, after the Telltale rounds: nginx $(nginx -v 2>&1 | sed 's/.*nginx\///') serving each configuration's gzip body"
    echo "  ($(stat -c %s "$WORK/body-series.gz") and $(stat -c %s "$WORK/body-whole.gz") bytes) as a static file (\`gzip_static\`, sendfile, $(nproc) workers), with the same wrk runs."
    echo
    echo "| | 10k series | whole product | nginx, 10k series body | nginx, whole product body |"
    echo "| --- | --- | --- | --- | --- |"
    row "flat out: \`/metrics\` p99, ms (rounds)" P99 bold
    row "flat out: \`/metrics\` p50, ms" P50
    row "flat out: requests per second" RPS
    row "$SCRAPERS scrapers: \`/metrics\` p99, ms (rounds)" SCRAPER_P99 bold
    row "$SCRAPERS scrapers: \`/metrics\` p50, ms" SCRAPER_P50
    row "$SCRAPERS scrapers: requests per second" SCRAPER_RPS
    echo "| VmRSS after wrk, MiB (rounds) | $(rounds "${RSS[series]}") | $(rounds "${RSS[whole]}") | | |"
    echo "| VmHWM (peak), MiB | $(maxof "${HWM[series]}") | $(maxof "${HWM[whole]}") | | |"
    echo
    echo "- Resident memory with everything on: $RSS_WHOLE MiB (target under 40 MiB: $(verdict "$RSS_WHOLE < 40"))."
    echo "- \`/metrics\` p99 with everything on ÷ 10k series, flat out: $(ratio P99)× (target ≤ 2×: $(met P99)); nginx with the same two bodies: $(ratio P99 nginx-)×."
    echo "- \`/metrics\` p99 with everything on ÷ 10k series, $SCRAPERS scrapers: $(ratio SCRAPER_P99)× (target ≤ 2×: $(met SCRAPER_P99)); nginx with the same two bodies: $(ratio SCRAPER_P99 nginx-)×."
    echo "- wrk, Telltale (or nginx), PostgreSQL, Redis and the providers' stand-in share the $(nproc) CPUs."
} >"$SECTION"
cat "$SECTION"
write_section "$SECTION"
