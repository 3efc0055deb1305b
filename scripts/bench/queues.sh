#!/usr/bin/env bash
# scripts/bench/queues.sh — the queue collector on 1,000 BullMQ queues with 100,000 jobs,
# side by side with prometheus-redis-exporter --check-keys for the same keys, in one run.
#
#   1. scripts/bench/queues_data.py writes a BullMQ v5/v6-style layout straight into a
#      throw-away Redis (scripts/services.sh) with pipelines: wait/paused/active lists,
#      prioritized/delayed/waiting-children/completed/failed zsets, meta hashes, id keys,
#      markers, events streams, active jobs' locks and one hash per job.
#   2. Telltale (`queues` with discovery, interval QUEUE_INTERVAL) runs alone against it:
#      its first run (with the discovery SCAN), then STEADY_RUNS steady-state runs. Time from
#      `telltale_collector_duration_seconds{collector="queues:default"}` (sum/count and the 50 ms
#      bucket), round trips from `telltale_redis_round_trips_total`, commands and read
#      events from Redis' INFO (commandstats, total_reads_processed) deltas.
#      The job counts Telltale exports are checked against what was written.
#   3. Telltale stopped, redis_exporter runs alone with --check-keys for the eight
#      state keys of every queue; it is scraped EXPORTER_SCRAPES times (curl time_total),
#      with the same Redis deltas.
#
# Usage: scripts/bench/queues.sh
#   QUEUES (1000), JOBS (100000), QUEUE_INTERVAL (2), STEADY_RUNS (10), EXPORTER_SCRAPES (5)
#   BENCH_REDIS_DB (0): the Redis database used; it must be empty, and is flushed at exit.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BENCH_COMMAND="scripts/bench/queues.sh"
# shellcheck source=lib.sh
. "$HERE/lib.sh"
bench_init queues 55743 56743

QUEUES="${QUEUES:-1000}"
JOBS="${JOBS:-100000}"
QUEUE_INTERVAL="${QUEUE_INTERVAL:-2}"
STEADY_RUNS="${STEADY_RUNS:-10}"
EXPORTER_SCRAPES="${EXPORTER_SCRAPES:-5}"
REDIS_DB="${BENCH_REDIS_DB:-0}"
EXPORTER=prometheus-redis-exporter
PY="$BENCH_REPO/.venv-bullmq-v6/bin/python"
[[ -x $PY ]] || bdie "$PY not found (scripts/setup.sh makes .venv-bullmq-v6)"
command -v "$EXPORTER" >/dev/null || bdie "$EXPORTER not found (scripts/setup.sh)"
require_free_port "$BENCH_TELLTALE_PORT"
require_free_port "$BENCH_REDIS_EXPORTER_PORT"
bench_services

RCLI=(redis-cli -h 127.0.0.1 -p "$TELLTALE_REDIS_PORT" -n "$REDIS_DB")
REDIS_URL="redis://127.0.0.1:$TELLTALE_REDIS_PORT/$REDIS_DB"
TT_URL="http://127.0.0.1:$BENCH_TELLTALE_PORT/metrics"
EX_URL="http://127.0.0.1:$BENCH_REDIS_EXPORTER_PORT/metrics"
[[ "$("${RCLI[@]}" dbsize)" == 0 ]] || bdie "Redis db $REDIS_DB on port $TELLTALE_REDIS_PORT is not empty (BENCH_REDIS_DB selects another)"
BENCH_CLEANUPS+=("$(printf '%q ' "${RCLI[@]}") flushdb")

# redis_snapshot FILE — one INFO ALL (stats + commandstats) in FILE.
redis_snapshot() { "${RCLI[@]}" info all | tr -d '\r' >"$1"; }
# redis_delta BEFORE AFTER DIVISOR → JSON: per-command calls and usec, reads, connections,
# all divided by DIVISOR; the INFO of the AFTER snapshot itself is taken out.
redis_delta() {
    python3 - "$1" "$2" "$3" <<'EOF'
import json, sys
def parse(path):
    stats, cmds = {}, {}
    for line in open(path):
        line = line.strip()
        if line.startswith("cmdstat_"):
            name, _, rest = line[len("cmdstat_"):].partition(":")
            fields = dict(kv.split("=") for kv in rest.split(","))
            cmds[name] = (int(fields["calls"]), int(fields["usec"]))
        elif ":" in line and not line.startswith("#"):
            key, _, value = line.partition(":")
            stats[key] = value
    return stats, cmds
(s0, c0), (s1, c1) = parse(sys.argv[1]), parse(sys.argv[2])
n = float(sys.argv[3])
cmds = {}
for name, (calls, usec) in c1.items():
    calls0, usec0 = c0.get(name, (0, 0))
    calls, usec = calls - calls0, usec - usec0
    if name == "info":
        calls -= 1  # the snapshot's own INFO
    if calls > 0:
        cmds[name] = {"calls": calls / n, "usec": usec / n}
delta = lambda key: (int(s1.get(key, 0)) - int(s0.get(key, 0)))
print(json.dumps({
    "commands": cmds,
    "calls": sum(c["calls"] for c in cmds.values()),
    "usec": sum(c["usec"] for c in cmds.values()),
    "reads": (delta("total_reads_processed") - 1) / n,       # minus the snapshot's INFO
    "connections": (delta("total_connections_received") - 1) / n,
}))
EOF
}

# ------------------------------------------------------------------ 1. data
blog "writing $QUEUES queues with $JOBS jobs into Redis db $REDIS_DB"
"$PY" "$HERE/queues_data.py" --url "$REDIS_URL" --queues "$QUEUES" --jobs "$JOBS" >"$WORK/data.json"
blog "data: $(cat "$WORK/data.json")"

# ------------------------------------------------------------------ 2. Telltale
queue_bench_config "$WORK/telltale.yml" "{url: \"$REDIS_URL\"}" "[bull]" $((QUEUES * 2))
QC='collector="queues:default"'
redis_snapshot "$WORK/r-start.txt"
blog "Telltale: first run (discovery + collection)"
start_bg "$WORK/telltale.log" "$TELLTALE_BIN" serve --config "$WORK/telltale.yml"
TT_PID=$BG_PID
wait_http "http://127.0.0.1:$BENCH_TELLTALE_PORT/readyz" 60
# /readyz can answer 200 a moment before /metrics shows the run (it is rendered after).
deadline=$((SECONDS + 30))
until curl -fsS "$TT_URL" >"$WORK/first.txt" && grep -q "^telltale_collector_duration_seconds_count{$QC} [1-9]" "$WORK/first.txt"; do
    ((SECONDS < deadline)) || bdie "no queues run in /metrics (log: $WORK/telltale.log)"
    sleep 0.02
done
redis_snapshot "$WORK/r-first.txt"
first_metric() { awk -v n="$1" -v f="$2" '$0 !~ /^#/ && index($0, n f) == 1 {print $NF}' "$WORK/first.txt"; }
FIRST_COUNT=$(first_metric telltale_collector_duration_seconds_count "{$QC}")
FIRST_MS=$(calc "round($(first_metric telltale_collector_duration_seconds_sum "{$QC}") / $FIRST_COUNT * 1000, 1)")
FIRST_RT=$(first_metric telltale_redis_round_trips_total "{$QC,redis=\"default\"}")
[[ $FIRST_COUNT == 1 ]] || blog "note: $FIRST_COUNT runs before the first read (interval ${QUEUE_INTERVAL}s)"
redis_delta "$WORK/r-start.txt" "$WORK/r-first.txt" "$FIRST_COUNT" >"$WORK/first.json"

# Correctness: the counts Telltale exports against what was written.
check_queue_counts "$WORK/first.txt" "$WORK/data.json" >"$WORK/check.txt"
CHECK="$(cat "$WORK/check.txt")"
blog "Telltale check: $CHECK"
TT_SERIES=$(grep -c '^telltale_queue' "$WORK/first.txt" || true)

blog "Telltale: $STEADY_RUNS steady-state runs (interval ${QUEUE_INTERVAL}s)"
count_now() { metric_sum "$TT_URL" telltale_collector_duration_seconds_count "$QC"; }
C0=$(count_now)
until python3 -c "import sys; sys.exit(0 if $(count_now) > $C0 else 1)"; do sleep 0.05; done   # just after a run
S_SUM0=$(metric_sum "$TT_URL" telltale_collector_duration_seconds_sum "$QC")
S_CNT0=$(metric_sum "$TT_URL" telltale_collector_duration_seconds_count "$QC")
S_B0=$(metric_sum "$TT_URL" telltale_collector_duration_seconds_bucket "$QC,le=\"0.05\"")
S_RT0=$(metric_sum "$TT_URL" telltale_redis_round_trips_total "$QC")
S_RSUM0=$(metric_sum "$TT_URL" telltale_render_duration_seconds_sum)
S_RCNT0=$(metric_sum "$TT_URL" telltale_render_duration_seconds_count)
REDIS_PID=$(cat "$TELLTALE_RUN_DIR/redis.pid")
redis_snapshot "$WORK/r-s0.txt"
S_CPU0=$(cpu_ticks "$TT_PID"); S_RCPU0=$(cpu_ticks "$REDIS_PID")
sleep "$(calc "$STEADY_RUNS * $QUEUE_INTERVAL - 0.5")"
until python3 -c "import sys; sys.exit(0 if $(count_now) >= $S_CNT0 + $STEADY_RUNS else 1)"; do sleep 0.05; done
S_CPU1=$(cpu_ticks "$TT_PID"); S_RCPU1=$(cpu_ticks "$REDIS_PID")
redis_snapshot "$WORK/r-s1.txt"
S_SUM1=$(metric_sum "$TT_URL" telltale_collector_duration_seconds_sum "$QC")
S_CNT1=$(metric_sum "$TT_URL" telltale_collector_duration_seconds_count "$QC")
S_B1=$(metric_sum "$TT_URL" telltale_collector_duration_seconds_bucket "$QC,le=\"0.05\"")
S_RT1=$(metric_sum "$TT_URL" telltale_redis_round_trips_total "$QC")
S_RSUM1=$(metric_sum "$TT_URL" telltale_render_duration_seconds_sum)
S_RCNT1=$(metric_sum "$TT_URL" telltale_render_duration_seconds_count)
RUNS=$(calc "int($S_CNT1 - $S_CNT0)")
CLK_TCK=$(getconf CLK_TCK)
TT_CPU_MS=$(calc "round(($S_CPU1 - $S_CPU0) / $CLK_TCK * 1000 / $RUNS, 1)")
TT_REDIS_CPU_MS=$(calc "round(($S_RCPU1 - $S_RCPU0) / $CLK_TCK * 1000 / $RUNS, 1)")

# Where Telltale's CPU goes: a perf profile over a few more runs.
PERF_ROWS=""
PERF_SECONDS=$((QUEUE_INTERVAL * 5))
blog "Telltale: ${PERF_SECONDS}s perf profile, if perf works here"
if perf_profile "$TT_PID" "$PERF_SECONDS" "$WORK/perf-report.txt"; then
    R="$WORK/perf-report.txt"
    ms_of() { calc "round($1 / 100 * $TT_CPU_MS, 1)"; }
    row() { local share; share=$(perf_share "$R" "$2"); echo "| $1 | $share % | $(ms_of "$share") |"; }
    # shellcheck disable=SC2016  # backticks are Markdown here
    PERF_ROWS="$(
        row 'collector, async part: `QueueCollector.collectQueues` (its largest part: parse replies, build families)' 'QueueCollectorC13collectQueues'
        row '&nbsp;&nbsp;`QueueCounts.appendCommands` (the counts commands, written in RESP)' 'QueueCountsV14appendCommands'
        row '&nbsp;&nbsp;`countFamilies` (the gauge families of the counts, built while the follow-up is in flight)' 'QueueCollectorC13countFamilies'
        row 'Redis client: `RedisConnection.pipeline` (hiredis, on its own thread: write, read, convert)' 'RedisConnectionC8pipeline'
        row 'store: `MetricStore.publish` (merge + render, after the run)' 'MetricStoreC7publish'
        row '&nbsp;&nbsp;`MetricStore.render` (merge, encode the changed families, gzip)' 'MetricStoreC6render'
    )"
    PERF_NOTE="$(perf_samples "$R") samples at 499 Hz over ${PERF_SECONDS} s"
fi
stop_pid "$TT_PID"
STEADY_MS=$(calc "round(($S_SUM1 - $S_SUM0) / $RUNS * 1000, 1)")
UNDER_50=$(calc "int($S_B1 - $S_B0)")
RT_PER_RUN=$(calc "round(($S_RT1 - $S_RT0) / $RUNS, 2)")
RENDER_MS="n/a"
[[ $S_RCNT0 != nan ]] && RENDER_MS="$(calc "round(($S_RSUM1 - $S_RSUM0) / max(1, $S_RCNT1 - $S_RCNT0) * 1000, 1)") ms"
redis_delta "$WORK/r-s0.txt" "$WORK/r-s1.txt" "$RUNS" >"$WORK/steady.json"

# ------------------------------------------------------------------ 3. redis_exporter
CHECK_KEYS=""
for state in wait paused active prioritized delayed waiting-children completed failed; do
    CHECK_KEYS+="db$REDIS_DB=bull:*:$state,"
done
CHECK_KEYS="${CHECK_KEYS%,}"
EXPORTER_FLAGS=(-redis.addr "redis://127.0.0.1:$TELLTALE_REDIS_PORT" -web.listen-address "127.0.0.1:$BENCH_REDIS_EXPORTER_PORT"
                -check-keys "$CHECK_KEYS" -check-keys-batch-size 1000)
blog "redis_exporter: $EXPORTER_SCRAPES scrapes"
start_bg "$WORK/exporter.log" "$EXPORTER" "${EXPORTER_FLAGS[@]}"
EX_PID=$BG_PID
deadline=$((SECONDS + 20))
until curl -fsS -o /dev/null "http://127.0.0.1:$BENCH_REDIS_EXPORTER_PORT/" 2>/dev/null; do
    ((SECONDS < deadline)) || bdie "redis_exporter did not start: $(tail -3 "$WORK/exporter.log")"
    sleep 0.2
done
redis_snapshot "$WORK/r-e0.txt"
E_CPU0=$(cpu_ticks "$EX_PID"); E_RCPU0=$(cpu_ticks "$REDIS_PID")
: >"$WORK/exporter-times.txt"
for i in $(seq 1 "$EXPORTER_SCRAPES"); do
    curl -fsS --max-time 60 -o "$WORK/exporter.txt" -w '%{time_total}\n' "$EX_URL" >>"$WORK/exporter-times.txt"
done
E_CPU1=$(cpu_ticks "$EX_PID"); E_RCPU1=$(cpu_ticks "$REDIS_PID")
redis_snapshot "$WORK/r-e1.txt"
stop_pid "$EX_PID"
EX_CPU_MS=$(calc "round(($E_CPU1 - $E_CPU0) / $CLK_TCK * 1000 / $EXPORTER_SCRAPES, 1)")
EX_REDIS_CPU_MS=$(calc "round(($E_RCPU1 - $E_RCPU0) / $CLK_TCK * 1000 / $EXPORTER_SCRAPES, 1)")
redis_delta "$WORK/r-e0.txt" "$WORK/r-e1.txt" "$EXPORTER_SCRAPES" >"$WORK/exporter.json"
EX_KEYS=$(grep -c '^redis_key_size{' "$WORK/exporter.txt" || true)
EX_ERR=$(awk '/^redis_exporter_last_scrape_error/ {print $NF}' "$WORK/exporter.txt")
EXPECTED_KEYS=$("${RCLI[@]}" --scan --pattern 'bull:*' | grep -cE ':(wait|paused|active|prioritized|delayed|waiting-children|completed|failed)$' || true)

# ------------------------------------------------------------------ report
python3 - "$WORK" "$STEADY_MS" "$FIRST_MS" "$RT_PER_RUN" "$FIRST_RT" "$FIRST_COUNT" "$RUNS" "$UNDER_50" \
    "$TT_CPU_MS" "$TT_REDIS_CPU_MS" "$EX_CPU_MS" "$EX_REDIS_CPU_MS" >"$WORK/table.md" <<'EOF'
import json, sys
work = sys.argv[1]
steady_ms, first_ms, rt_run, first_rt = float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
first_count, runs, under50 = int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8])
tt_cpu, tt_redis_cpu, ex_cpu, ex_redis_cpu = (float(x) for x in sys.argv[9:13])
steady, first, ex = (json.load(open(f"{work}/{n}.json")) for n in ("steady", "first", "exporter"))
times = [float(x) * 1000 for x in open(f"{work}/exporter-times.txt").read().split()]
ex_ms = sum(times) / len(times)
def fmt(x):
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.1f}".rstrip("0").rstrip(".")
print("| per collection | Telltale, steady-state run | Telltale, first run (+ discovery SCAN) | redis_exporter scrape (--check-keys) |")
print("| --- | --- | --- | --- |")
print(f"| time | **{steady_ms:.1f} ms** (mean of {runs} runs; {under50} of {runs} ≤ 50 ms) | {first_ms:.1f} ms"
      f"{' (mean of ' + str(first_count) + ' runs)' if first_count > 1 else ''} | **{ex_ms:.0f} ms** (mean of {len(times)}; {min(times):.0f}–{max(times):.0f}) |")
print(f"| network round trips (Telltale's own counter) | **{fmt(rt_run)}** | {fmt(first_rt / first_count)} | n/a (no counter; about one per command: it does not pipeline) |")
print(f"| Redis read events (`total_reads_processed`) | {fmt(steady['reads'])} | {fmt(first['reads'] )} | {fmt(ex['reads'])} |")
print(f"| Redis commands | {fmt(steady['calls'])} | {fmt(first['calls'])} | {fmt(ex['calls'])} |")
print(f"| Redis time in those commands (commandstats usec) | {steady['usec'] / 1000:.1f} ms | {first['usec'] / 1000:.1f} ms | {ex['usec'] / 1000:.1f} ms |")
print(f"| new connections | {fmt(steady['connections'])} | {fmt(first['connections'])} | {fmt(ex['connections'])} |")
print(f"| redis-server CPU (user + system, `/proc`) | {tt_redis_cpu:.0f} ms | | {ex_redis_cpu:.0f} ms |")
print(f"| client CPU: Telltale process (incl. its render after the run) / exporter process | {tt_cpu:.0f} ms | | {ex_cpu:.0f} ms |")
print()
print(f"- Exporter scrape ÷ Telltale steady-state run: **{ex_ms / steady_ms:.1f}×** (target ≥ 10×: {'**met**' if ex_ms / steady_ms >= 10 else '**not met**'}).")
print(f"- Collection under 50 ms: {'**met**' if steady_ms < 50 else '**not met**'} ({steady_ms:.1f} ms mean, {under50}/{runs} runs in the ≤ 50 ms bucket).")
print("@@SPLIT@@")
names = sorted(set(steady["commands"]) | set(first["commands"]) | set(ex["commands"]),
               key=lambda n: -(ex["commands"].get(n, {}).get("calls", 0) + steady["commands"].get(n, {}).get("calls", 0)))
print("| command | Telltale steady run: calls | usec | Telltale first run: calls | usec | exporter scrape: calls | usec |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for n in names:
    cells = []
    for d in (steady, first, ex):
        c = d["commands"].get(n)
        cells += [fmt(c["calls"]), fmt(c["usec"])] if c else ["", ""]
    print(f"| `{n.upper()}` | " + " | ".join(cells) + " |")
EOF
TABLE="$(sed '/@@SPLIT@@/,$d' "$WORK/table.md")"
CMD_TABLE="$(sed '1,/@@SPLIT@@/d' "$WORK/table.md")"

SECTION="$WORK/section.md"
{
    echo "## Queues: 1,000 BullMQ queues, 100,000 jobs"
    echo
    echo "Command: \`$BENCH_COMMAND\`"
    echo
    machine_info
    echo "- Redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), redis_exporter $(pkg_version prometheus-redis-exporter) (Debian), data written with redis-py $("$PY" -c 'import redis; print(redis.__version__)')"
    echo
    echo "Data (\`scripts/bench/queues_data.py\`, seeded): $(python3 -c "
import json; d = json.load(open('$WORK/data.json'))
print(f\"{d['queues']} queues ({d['paused_queues']} paused), {d['jobs']:,} jobs, {d['smallest_queue']} to {d['largest_queue']:,} per queue; \"
      + ', '.join(f'{k} {v:,}' for k, v in d['states'].items()) + f\"; {d['keys']:,} keys, {d['used_memory_mb']} MB in Redis, written in {d['seconds']} s.\")")"
    echo
    echo "- Telltale: \`queues\` with discovery (SCAN MATCH \`bull:*:[im][de]*\`, COUNT 1000, every 10 m), interval ${QUEUE_INTERVAL} s, alone"
    echo "  on Redis. Per queue one pipelined round trip reads all counts (15 commands: LLEN/ZCARD per state,"
    echo "  the meta paused flag, overdue delayed, the head of wait, the active ids, new events) — all"
    echo "  queues in the same pipeline; a second round trip reads what those pointed at (head job timestamp,"
    echo "  active jobs' locks with one multi-key EXISTS per queue, and the hashes of jobs finished since the last run)."
    echo "  It exports $TT_SERIES \`telltale_queue_*\` samples. Check against the data written: $CHECK."
    echo "- redis_exporter: \`$EXPORTER ${EXPORTER_FLAGS[*]}\`, alone on Redis: SCAN per pattern, then per key"
    echo "  TYPE and LLEN/ZCARD. It found $EX_KEYS of the $EXPECTED_KEYS existing state keys (empty lists and sets do not"
    echo "  exist in Redis, so it reports nothing for empty states; last scrape error: ${EX_ERR:-?})."
    echo
    echo "$TABLE"
    echo "- Round trips: the counts of all $QUEUES queues take **one** round trip; a steady-state run takes $RT_PER_RUN in all"
    echo "  (counts + follow-up). The first run adds the discovery SCAN pass, one round trip per SCAN call."
    echo "  Redis read events are not round trips: Redis reads a large pipeline in several 16 KiB reads."
    echo "- Render of Telltale's exposition after each run (\`telltale_render_duration_seconds\`, not part of the collection time): $RENDER_MS."
    if [[ -n $PERF_ROWS ]]; then
        echo
        echo "Where Telltale's CPU goes (perf, $PERF_NOTE; inclusive shares, scaled to the $TT_CPU_MS ms of CPU per run above):"
        echo
        echo "| part | share of CPU | ms per run |"
        echo "| --- | --- | --- |"
        echo "$PERF_ROWS"
    fi
    echo
    echo "<details><summary>Redis commands per collection</summary>"
    echo
    echo "$CMD_TABLE"
    echo
    echo "</details>"
} >"$SECTION"

cat "$SECTION"
write_section "$SECTION"
