#!/usr/bin/env bash
# scripts/bench/foundation.sh — /metrics with a synthetic 10,000-series snapshot.
#
# Measures, in one run:
#   * the cost of one change of the snapshot (collector run, merge, render of both
#     formats and their gzip segments), from Telltale's own collector histogram, the
#     process's CPU time, a perf CPU profile (if perf works here) and `telltale once`;
#   * /metrics requests per second and latency with wrk on loopback, plain and gzip,
#     side by side with nginx serving the same bytes as static files (gzip_static);
#   * resident memory of `telltale serve` with 10,000 series, after warm-up and after wrk.
#
# The 10,000 series come from a SQL-defined gauge over generate_series against a local
# throw-away PostgreSQL (scripts/services.sh), re-run every second so the snapshot
# changes every second. See scripts/bench/lib.sh for run directory, ports and cleanup.
#
# Usage: scripts/bench/foundation.sh
#   WRK_DURATION (10s), WRK_THREADS (2), WRK_CONNECTIONS (32), WRK_ROUNDS (2),
#   PERF=0 to skip the perf profile.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BENCH_COMMAND="scripts/bench/foundation.sh"
# shellcheck source=lib.sh
. "$HERE/lib.sh"
bench_init foundation 55741 56741

WRK_DURATION="${WRK_DURATION:-10s}"
WRK_THREADS="${WRK_THREADS:-2}"
WRK_CONNECTIONS="${WRK_CONNECTIONS:-32}"
WRK_ROUNDS="${WRK_ROUNDS:-2}"
SERIES=10000
command -v wrk >/dev/null || bdie "wrk not found (scripts/setup.sh)"
command -v nginx >/dev/null || bdie "nginx not found (scripts/setup.sh)"
require_free_port "$BENCH_TELLTALE_PORT"
require_free_port "$BENCH_NGINX_PORT"
bench_services

TT_URL="http://127.0.0.1:$BENCH_TELLTALE_PORT"
NGINX_URL="http://127.0.0.1:$BENCH_NGINX_PORT"

# ------------------------------------------------------------------ configurations
cat >"$WORK/telltale.yml" <<EOF
server:
  listen: "127.0.0.1:$BENCH_TELLTALE_PORT"
log:
  level: warning
postgres:
  - name: bench
    dsn: \${TELLTALE_PG_DSN}
    interval: 1s
    timeout: 900ms
    health:
      enabled: false
      database_size: {enabled: false}
    queries:
$(bench_series_query "$SERIES")
EOF
# Same target without the query: the fixed cost of starting `telltale once`.
cat >"$WORK/telltale-empty.yml" <<EOF
postgres:
  - name: bench
    dsn: \${TELLTALE_PG_DSN}
    health:
      enabled: false
      database_size: {enabled: false}
    queries:
      - metric: bench_series
        sql: SELECT 1::text AS id, 1::float8 AS v
        labels: [id]
        values: [v]
EOF
"$TELLTALE_BIN" check-config --config "$WORK/telltale.yml" >/dev/null
SQL_COLLECTOR='collector="sql:bench:bench_series"'

# ------------------------------------------------------------------ baseline memory
blog "baseline: telltale serve without configuration (process and host collectors)"
start_bg "$WORK/telltale-baseline.log" "$TELLTALE_BIN" serve --listen "127.0.0.1:$BENCH_TELLTALE_PORT"
BASE_PID=$BG_PID
wait_http "$TT_URL/readyz"
curl -fsS -o /dev/null "$TT_URL/metrics"
sleep 2
MEM_BASELINE="$(mem_fields "$BASE_PID")"
stop_pid "$BASE_PID"

# ------------------------------------------------------------------ telltale serve, 10k series
blog "telltale serve with $SERIES series (interval 1s)"
start_bg "$WORK/telltale.log" "$TELLTALE_BIN" serve --config "$WORK/telltale.yml"
TT_PID=$BG_PID
wait_http "$TT_URL/readyz"
sleep 5   # warm-up: several changes of the snapshot, a few scrapes
for _ in 1 2 3; do curl -fsS -o /dev/null "$TT_URL/metrics"; curl -fsS -o /dev/null -H 'Accept-Encoding: gzip' "$TT_URL/metrics"; done
GOT_SERIES="$(curl -fsS "$TT_URL/metrics" | grep -c '^bench_series{' || true)"
[[ $GOT_SERIES == "$SERIES" ]] || bdie "expected $SERIES bench_series samples, got $GOT_SERIES (log: $WORK/telltale.log)"
MEM_WARM="$(mem_fields "$TT_PID")"

all_runs() { metric_sum "$TT_URL/metrics" telltale_collector_duration_seconds_count; }

# Window A (undisturbed, no scrapes but the two reads): collector duration, CPU per change.
WINDOW_A=10
blog "window A: ${WINDOW_A}s without load"
A_SUM0=$(metric_sum "$TT_URL/metrics" telltale_collector_duration_seconds_sum "$SQL_COLLECTOR")
A_CNT0=$(metric_sum "$TT_URL/metrics" telltale_collector_duration_seconds_count "$SQL_COLLECTOR")
A_RSUM0=$(metric_sum "$TT_URL/metrics" telltale_render_duration_seconds_sum)
A_RCNT0=$(metric_sum "$TT_URL/metrics" telltale_render_duration_seconds_count)
A_ALL0=$(all_runs); A_CPU0=$(cpu_ticks "$TT_PID"); A_T0=$(date +%s.%N)
sleep "$WINDOW_A"
A_SUM1=$(metric_sum "$TT_URL/metrics" telltale_collector_duration_seconds_sum "$SQL_COLLECTOR")
A_CNT1=$(metric_sum "$TT_URL/metrics" telltale_collector_duration_seconds_count "$SQL_COLLECTOR")
A_RSUM1=$(metric_sum "$TT_URL/metrics" telltale_render_duration_seconds_sum)
A_RCNT1=$(metric_sum "$TT_URL/metrics" telltale_render_duration_seconds_count)
A_ALL1=$(all_runs); A_CPU1=$(cpu_ticks "$TT_PID"); A_T1=$(date +%s.%N)
CLK_TCK=$(getconf CLK_TCK)
SQL_RUNS=$(calc "int($A_CNT1 - $A_CNT0)")
SQL_MS=$(calc "round(($A_SUM1 - $A_SUM0) / ($A_CNT1 - $A_CNT0) * 1000, 1)")
# Every collector run publishes (and so re-renders): the self-metrics change each time.
PUBLISHES=$(calc "int($A_ALL1 - $A_ALL0)")
CPU_PER_CHANGE_MS=$(calc "round(($A_CPU1 - $A_CPU0) / $CLK_TCK * 1000 / max(1, $PUBLISHES), 1)")
RENDER_MS=""
if [[ $A_RCNT0 != nan && $A_RCNT1 != nan ]] && python3 -c "import sys; sys.exit(0 if $A_RCNT1 > $A_RCNT0 else 1)"; then
    RENDER_RUNS=$(calc "int($A_RCNT1 - $A_RCNT0)")
    RENDER_MS=$(calc "round(($A_RSUM1 - $A_RSUM0) / ($A_RCNT1 - $A_RCNT0) * 1000, 1)")
fi
CPU_SHARE=$(calc "round(($A_CPU1 - $A_CPU0) / $CLK_TCK / ($A_T1 - $A_T0) * 100, 1)")

# Window B: the same, under a perf CPU profile, to split the cost of a change.
PERF_ROWS=""
WINDOW_B=15
blog "window B: ${WINDOW_B}s perf profile (dwarf call graphs), if perf works here"
B_ALL0=$(all_runs)
if perf_profile "$TT_PID" "$WINDOW_B" "$WORK/perf-report.txt"; then
    B_PUBLISHES=$(calc "int($(all_runs) - $B_ALL0)")
    R="$WORK/perf-report.txt"
    P_COLLECT=$(perf_share "$R" 'SQLMetricCollectorC7collect')
    P_PUBLISH=$(perf_share "$R" 'MetricStoreC7publish')
    P_RENDER=$(perf_share "$R" 'MetricStoreC6render')
    P_ASSEMBLE=$(perf_share "$R" 'MetricStoreC8assemble')
    ms_of() { calc "round($1 / 100 * $CPU_PER_CHANGE_MS, 1)"; }
    PERF_ROWS="$(cat <<EOF
| collector run (query result → family), \`SQLMetricCollector.collect\` | ${P_COLLECT} % | $(ms_of "$P_COLLECT") |
| publish, \`MetricStore.publish\` (all of the below) | ${P_PUBLISH} % | $(ms_of "$P_PUBLISH") |
| &nbsp;&nbsp;render on the store's thread, \`MetricStore.render\` (merge, encode and deflate the changed families, lay out) | ${P_RENDER} % | $(ms_of "$P_RENDER") |
| &nbsp;&nbsp;&nbsp;&nbsp;of which laying out the cached pieces, \`MetricStore.assemble\` (and deflating runs of small families) | ${P_ASSEMBLE} % | $(ms_of "$P_ASSEMBLE") |
EOF
)"
    PERF_NOTE="perf: $(perf_samples "$R") samples at 499 Hz over ${WINDOW_B} s, $B_PUBLISHES publishes in that window"
else
    blog "no perf profile (perf missing or not permitted; PERF=0 skips it)"
fi

# `telltale once`: process start + connect + query + one render + printing.
median_once() {  # CONFIG → median wall time in ms of 5 runs
    local i t0 t1 times=()
    for i in 1 2 3 4 5; do
        t0=$(date +%s%N)
        "$TELLTALE_BIN" once --config "$1" >/dev/null 2>"$WORK/once.err" || bdie "telltale once failed: $(cat "$WORK/once.err")"
        t1=$(date +%s%N)
        times+=($(((t1 - t0) / 1000)))
    done
    printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.1f\n", a[int((NR+1)/2)]/1000}'
}
blog "timing telltale once (5 runs each)"
ONCE_FULL_MS=$(median_once "$WORK/telltale.yml")
ONCE_EMPTY_MS=$(median_once "$WORK/telltale-empty.yml")

# ------------------------------------------------------------------ nginx with the same bytes
blog "copying the current /metrics (gzip body, and its plain content) into nginx's docroot"
NG="$WORK/nginx"
save_gzip_body "$TT_URL/metrics" "$WORK/body.gz"
WORKERS=$(nproc)
start_nginx_static "$NG" "$BENCH_NGINX_PORT" "$WORK/body.gz"
PLAIN_BYTES=$(stat -c %s "$NG/www/metrics")
GZIP_BYTES=$(stat -c %s "$NG/www/metrics.gz")
NGINX_PID=$BG_PID
wait_http "$NGINX_URL/metrics"
for url in "$TT_URL/metrics" "$NGINX_URL/metrics"; do
    enc=$(curl -fsS -D - -o /dev/null -H 'Accept-Encoding: gzip' "$url" | tr -d '\r' | awk -F': ' 'tolower($1)=="content-encoding" {print $2}')
    [[ $enc == gzip ]] || bdie "$url does not answer gzip to Accept-Encoding: gzip"
done

# ------------------------------------------------------------------ wrk
WRK_CMD="wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d$WRK_DURATION --latency"
to_ms() {  # wrk latency like 1.23ms / 456.00us / 1.02s → ms
    awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'
}
declare -A RPS P50 P99 ERRS
SQL_CNT_BEFORE_WRK=$(metric_sum "$TT_URL/metrics" telltale_collector_duration_seconds_count "$SQL_COLLECTOR")
WRK_T0=$(date +%s.%N)
for round in $(seq 1 "$WRK_ROUNDS"); do
    for variant in text gzip; do
        for server in telltale nginx; do
            url="$TT_URL/metrics"; [[ $server == nginx ]] && url="$NGINX_URL/metrics"
            hdr=(); [[ $variant == gzip ]] && hdr=(-H 'Accept-Encoding: gzip')
            blog "wrk round $round: $server $variant"
            out="$WORK/wrk-$server-$variant-$round.txt"
            $WRK_CMD "${hdr[@]}" "$url" >"$out" 2>&1 || bdie "wrk failed: $(cat "$out")"
            key="$server-$variant"
            RPS[$key]="${RPS[$key]:-} $(awk '/^Requests\/sec:/ {print $2}' "$out")"
            P50[$key]="${P50[$key]:-} $(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")"
            P99[$key]="${P99[$key]:-} $(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")"
            e=$(awk '/Non-2xx|Socket errors/ {print}' "$out" | tr '\n' ' ')
            [[ -n $e ]] && ERRS[$key]="${ERRS[$key]:-} $e"
        done
    done
done
WRK_T1=$(date +%s.%N)
SQL_CNT_AFTER_WRK=$(metric_sum "$TT_URL/metrics" telltale_collector_duration_seconds_count "$SQL_COLLECTOR")
SQL_RUNS_DURING_WRK=$(calc "int($SQL_CNT_AFTER_WRK - $SQL_CNT_BEFORE_WRK)")
WRK_SECONDS=$(calc "round($WRK_T1 - $WRK_T0)")
MEM_AFTER="$(mem_fields "$TT_PID")"
stop_pid "$NGINX_PID"

# $1 is a space-separated list of numbers: split on purpose.
# shellcheck disable=SC2086
mean() { python3 -c "import sys; v=[float(x) for x in sys.argv[1:]]; print(f'{sum(v)/len(v):.0f}' if v else 'nan')" $1; }
# shellcheck disable=SC2086
meanf() { python3 -c "import sys; v=[float(x) for x in sys.argv[1:]]; print(f'{sum(v)/len(v):.2f}' if v else 'nan')" $1; }
rounds() { echo "$1" | xargs | sed 's/ / · /g'; }

# ------------------------------------------------------------------ report
mem_row() {  # LABEL FIELDS
    IFS='|' read -r rss anon file hwm pss <<<"$2"
    echo "| $1 | **$rss** | $anon | $file | $pss | $hwm |"
}
WARM_RSS="${MEM_WARM%%|*}"; AFTER_RSS="${MEM_AFTER%%|*}"
verdict() { if python3 -c "import sys; sys.exit(0 if $1 else 1)"; then echo "**met**"; else echo "**not met**"; fi; }

SECTION="$WORK/section.md"
{
    echo "## Foundation: /metrics with 10,000 series"
    echo
    echo "Command: \`$BENCH_COMMAND\` (wrk: \`$WRK_CMD [-H 'Accept-Encoding: gzip'] URL\`, $WRK_ROUNDS rounds, servers alternating)"
    echo
    machine_info
    echo "- nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), wrk $(pkg_version wrk), PostgreSQL $("$TELLTALE_PG_BIN/postgres" --version | awk '{print $3}')"
    echo
    echo "Snapshot: a SQL-defined gauge over \`generate_series(1, $SERIES)\` (labels \`[id]\`, values \`[v]\`, interval 1 s), plus"
    echo "Telltale's process, host and self metrics. Exposition: $PLAIN_BYTES bytes plain, $GZIP_BYTES bytes gzip."
    echo
    echo "### Cost of one change"
    echo
    echo "Every collector run publishes into the store, which merges all sources and renders both formats"
    echo "and their gzip segments."
    echo
    echo "| measure | value |"
    echo "| --- | --- |"
    if [[ -n $RENDER_MS ]]; then
        echo "| **render** (merge + encode both formats + gzip), mean of $RENDER_RUNS renders of \`telltale_render_duration_seconds\` | **$RENDER_MS ms** |"
    else
        echo "| render | this binary has no \`telltale_render_duration_seconds\`; see the profile below |"
    fi
    echo "| SQL collector run (query + rows → family; excludes merge and render), mean of $SQL_RUNS runs of \`telltale_collector_duration_seconds\` | $SQL_MS ms |"
    echo "| Telltale CPU per change: process CPU time ÷ collector runs over ${WINDOW_A} s without scrapes ($PUBLISHES runs; CPU use $CPU_SHARE % of one core) | $CPU_PER_CHANGE_MS ms |"
    echo "| \`telltale once\`, median of 5 (process start, connect, query, render, print) | $ONCE_FULL_MS ms |"
    echo "| \`telltale once\` with a 1-row query instead (fixed cost of the above) | $ONCE_EMPTY_MS ms |"
    if [[ -n $PERF_ROWS ]]; then
        echo
        echo "Split of the CPU per change from a perf profile ($PERF_NOTE; inclusive shares, scaled to the $CPU_PER_CHANGE_MS ms above):"
        echo
        echo "| part | share of CPU | ms per change |"
        echo "| --- | --- | --- |"
        echo "$PERF_ROWS"
    fi
    echo
    echo "### Requests per second"
    echo
    echo "Same bytes: nginx serves the gzip body Telltale returned (\`gzip_static on\`) and its decompressed content,"
    echo "with \`sendfile\`, $WORKERS workers, no access log. Telltale's body changes every second meanwhile."
    echo "Means over $WRK_ROUNDS rounds (per-round values after the arrow); latency percentiles from wrk."
    echo
    echo "| format | server | req/s | p50 ms | p99 ms | Telltale ÷ nginx | target ≥ 0.5 |"
    echo "| --- | --- | --- | --- | --- | --- | --- |"
    for variant in text gzip; do
        tt=$(mean "${RPS[telltale-$variant]}"); ng=$(mean "${RPS[nginx-$variant]}")
        ratio=$(calc "f'{$tt / $ng:.3f}'")
        label="plain text"; [[ $variant == gzip ]] && label="gzip"
        echo "| $label | Telltale | $tt ← $(rounds "${RPS[telltale-$variant]}") | $(meanf "${P50[telltale-$variant]}") | $(meanf "${P99[telltale-$variant]}") | $ratio | $(verdict "$tt / $ng >= 0.5") |"
        echo "| $label | nginx | $ng ← $(rounds "${RPS[nginx-$variant]}") | $(meanf "${P50[nginx-$variant]}") | $(meanf "${P99[nginx-$variant]}") | | |"
    done
    for key in "${!ERRS[@]}"; do echo; echo "wrk errors, $key: ${ERRS[$key]}"; done
    echo
    echo "wrk, Telltale and nginx share the $(nproc) CPUs. The SQL collector ran $SQL_RUNS_DURING_WRK times during the ${WRK_SECONDS} s of wrk runs (interval 1 s)."
    echo
    echo "### Resident memory of \`telltale serve\`"
    echo
    echo "MiB, from \`/proc/PID/status\` and \`smaps_rollup\`, of the binary \`scripts/build-release.sh\` builds (Swift runtime and"
    echo "Foundation linked statically, lld with packed relocations, no exported symbols; a default dynamic build holds about 10 MiB"
    echo "more). RssFile is mostly the touched pages of that binary and of the C libraries (libpq with OpenSSL and Kerberos,"
    echo "libcurl, hiredis, libc); Pss shares those with other processes mapping them."
    echo
    echo "| when | VmRSS | RssAnon | RssFile | Pss | VmHWM (peak) |"
    echo "| --- | --- | --- | --- | --- | --- |"
    mem_row "no configuration (process + host collectors), for reference" "$MEM_BASELINE"
    mem_row "$SERIES series, after warm-up" "$MEM_WARM"
    mem_row "$SERIES series, after the wrk runs" "$MEM_AFTER"
    echo
    echo "Target: under 40 MiB with $SERIES series — $(verdict "$WARM_RSS < 40") after warm-up ($WARM_RSS MiB), $(verdict "$AFTER_RSS < 40") after wrk ($AFTER_RSS MiB)."
} >"$SECTION"

stop_pid "$TT_PID"
cat "$SECTION"
write_section "$SECTION"
