#!/usr/bin/env bash
# scripts/bench/queues-tls.sh — the queue collector on 1,000 BullMQ queues over TLS against
# plain TCP, on one redis-server that listens on both, in one run.
#
#   1. openssl makes a CA and a server certificate (127.0.0.1) in the work directory; a
#      redis-server of this script's own listens on a plain port and a TLS port of 127.0.0.1.
#   2. scripts/bench/queues_data.py (as scripts/bench/queues.sh uses it) writes the queues
#      through the plain port.
#   3. Telltale runs alone against the plain port, then against the TLS port (rediss://,
#      certificate and host name verified), then both once more, alternating, so that a
#      change in the machine's load weighs on both alike. Each takes a first run (discovery),
#      then STEADY_RUNS steady-state runs; /metrics is polled between runs, so each run's
#      time is `telltale_collector_duration_seconds{collector="queues"}` sum delta of a
#      single count increment. Reported: median and mean per mode, the ratio of medians,
#      Telltale's CPU per run and the round trips; the job counts are checked against
#      what was written, in both modes.
#
# Usage: scripts/bench/queues-tls.sh
#   QUEUES (1000), JOBS (100000), QUEUE_INTERVAL (2), STEADY_RUNS (10), ROUNDS (2)
#   BASELINE_BIN: another telltale binary (say, a build from before a change) to time over
#   the plain port too, in each round, as a third column named BASELINE_NAME.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BENCH_COMMAND="scripts/bench/queues-tls.sh"
# shellcheck source=lib.sh
. "$HERE/lib.sh"
bench_init queues-tls 55744 56744

QUEUES="${QUEUES:-1000}"
JOBS="${JOBS:-100000}"
QUEUE_INTERVAL="${QUEUE_INTERVAL:-2}"
STEADY_RUNS="${STEADY_RUNS:-10}"
ROUNDS="${ROUNDS:-2}"
PY="$BENCH_REPO/.venv-bullmq-v6/bin/python"
[[ -x $PY ]] || bdie "$PY not found (scripts/setup.sh makes .venv-bullmq-v6)"
command -v redis-server >/dev/null || bdie "redis-server not found (scripts/setup.sh)"
command -v openssl >/dev/null || bdie "openssl not found"
require_free_port "$BENCH_TELLTALE_PORT"
MODES=(plain tls)
if [[ -n ${BASELINE_BIN:-} ]]; then
    [[ -x $BASELINE_BIN ]] || bdie "BASELINE_BIN=$BASELINE_BIN is not an executable"
    cp -p "$BASELINE_BIN" "$WORK/telltale-baseline"
    MODES+=(baseline)
    BENCH_COMMAND="BASELINE_BIN=$BASELINE_BIN ${BASELINE_NAME:+BASELINE_NAME=\"$BASELINE_NAME\" }$BENCH_COMMAND"
fi
TT_URL="http://127.0.0.1:$BENCH_TELLTALE_PORT/metrics"
QC='collector="queues"'

# ------------------------------------------------------------------ 1. certificates, server
PKI="$WORK/pki"
mkdir -p "$PKI"
(
    cd "$PKI"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem \
        -days 2 -subj "/CN=Telltale bench CA" -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign,cRLSign
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr \
        -subj "/CN=127.0.0.1"
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext
) >"$WORK/openssl.log" 2>&1 || bdie "openssl failed: $(tail -5 "$WORK/openssl.log")"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PLAIN_PORT=$(free_port)
TLS_PORT=$(free_port)
[[ $PLAIN_PORT != "$TLS_PORT" ]] || TLS_PORT=$(free_port)
mkdir -p "$WORK/redis"
start_bg "$WORK/redis/redis.log" redis-server --bind 127.0.0.1 --port "$PLAIN_PORT" --tls-port "$TLS_PORT" \
    --tls-cert-file "$PKI/server.pem" --tls-key-file "$PKI/server.key" --tls-ca-cert-file "$PKI/ca.pem" \
    --tls-auth-clients no --save "" --appendonly no --dir "$WORK/redis"
REDIS_PID=$BG_PID
deadline=$((SECONDS + 20))
until redis-cli -h 127.0.0.1 -p "$PLAIN_PORT" ping >/dev/null 2>&1; do
    ((SECONDS < deadline)) || bdie "redis-server did not start: $(tail -3 "$WORK/redis/redis.log")"
    sleep 0.1
done
RCLI=(redis-cli -h 127.0.0.1 -p "$PLAIN_PORT")

# ------------------------------------------------------------------ 2. data
blog "writing $QUEUES queues with $JOBS jobs (redis-server $PLAIN_PORT plain, $TLS_PORT TLS)"
"$PY" "$HERE/queues_data.py" --url "redis://127.0.0.1:$PLAIN_PORT/0" --queues "$QUEUES" --jobs "$JOBS" >"$WORK/data.json"
blog "data: $(cat "$WORK/data.json")"

# ------------------------------------------------------------------ 3. Telltale, plain and TLS
# write_config MODE — Telltale's configuration for one mode.
write_config() {
    local redis
    if [[ $1 != tls ]]; then
        redis="{url: \"redis://127.0.0.1:$PLAIN_PORT/0\"}"
    else
        redis="{url: \"rediss://127.0.0.1:$TLS_PORT/0\", tls: {ca_file: \"$PKI/ca.pem\"}}"
    fi
    queue_bench_config "$WORK/telltale-$1.yml" "$redis" "[bull]" $((QUEUES * 2)) "$(binary "$1")"
}

binary() { if [[ $1 == baseline ]]; then echo "$WORK/telltale-baseline"; else echo "$TELLTALE_BIN"; fi; }


# net_bytes — "input output": Redis' total_net_input_bytes and total_net_output_bytes.
net_bytes() {
    "${RCLI[@]}" info stats | tr -d '\r' | awk -F: '$1 == "total_net_input_bytes" {i = $2} $1 == "total_net_output_bytes" {o = $2} END {print i, o}'
}

# run_mode MODE ROUND — one Telltale on MODE: first run, then STEADY_RUNS runs, each timed
# on its own; appends "MODE seconds" lines to runs.txt and a summary line to modes.txt.
run_mode() {
    local mode="$1" round="$2" log="$WORK/telltale-$1-$2.log" deadline count sum c s c0 s0 cpu0 cpu1 rt0 rt1 net0 net1 runs=0
    blog "Telltale over $mode (round $round): first run, then $STEADY_RUNS runs"
    start_bg "$log" "$(binary "$mode")" serve --config "$WORK/telltale-$mode.yml"
    local pid=$BG_PID
    wait_http "http://127.0.0.1:$BENCH_TELLTALE_PORT/readyz" 60
    deadline=$((SECONDS + 60))
    until curl -fsS "$TT_URL" >"$WORK/first-$mode-$round.txt" 2>/dev/null \
        && grep -q "^telltale_collector_up{$QC} 1" "$WORK/first-$mode-$round.txt"; do
        ((SECONDS < deadline)) || bdie "no successful queues run over $mode (log: $log)"
        sleep 0.05
    done
    echo "$mode $round $(check_queue_counts "$WORK/first-$mode-$round.txt" "$WORK/data.json")" >>"$WORK/checks.txt"
    c0=$(metric_sum "$TT_URL" telltale_collector_duration_seconds_count "$QC")
    s0=$(metric_sum "$TT_URL" telltale_collector_duration_seconds_sum "$QC")
    rt0=$(metric_sum "$TT_URL" telltale_redis_round_trips_total "$QC")
    cpu0=$(cpu_ticks "$pid")
    net0=$(net_bytes)
    count=$c0 sum=$s0
    deadline=$((SECONDS + STEADY_RUNS * QUEUE_INTERVAL * 3 + 30))
    while ((runs < STEADY_RUNS)); do
        ((SECONDS < deadline)) || bdie "the steady runs over $mode did not come (log: $log)"
        # Polled four times per interval: often enough to see each run alone, rarely enough
        # not to weigh on the runs measured (each poll renders nothing, but sends it all).
        sleep "$(calc "$QUEUE_INTERVAL / 4")"
        curl -fsS --max-time 5 "$TT_URL" >"$WORK/poll.txt" 2>/dev/null || continue
        c=$(awk -v f="telltale_collector_duration_seconds_count{$QC}" 'index($0, f) == 1 {print $NF}' "$WORK/poll.txt")
        s=$(awk -v f="telltale_collector_duration_seconds_sum{$QC}" 'index($0, f) == 1 {print $NF}' "$WORK/poll.txt")
        [[ -n $c && $c != "$count" ]] || continue
        # One new run since the last poll: its own time. (Two at once, on a stalled poll: skipped.)
        if python3 -c "import sys; sys.exit(0 if $c - $count == 1 else 1)"; then
            echo "$mode $(calc "$s - $sum")" >>"$WORK/runs.txt"
            runs=$((runs + 1))
        fi
        grep -q "^telltale_collector_up{$QC} 1" "$WORK/poll.txt" || bdie "a failed run over $mode (log: $log)"
        count=$c sum=$s
    done
    cpu1=$(cpu_ticks "$pid")
    net1=$(net_bytes)
    rt1=$(metric_sum "$TT_URL" telltale_redis_round_trips_total "$QC")
    echo "$mode $(calc "int($count - $c0)") $((cpu1 - cpu0)) $(calc "$rt1 - $rt0") $(calc "${net1% *} - ${net0% *}") $(calc "${net1#* } - ${net0#* }")" >>"$WORK/modes.txt"
    stop_pid "$pid"
}

for mode in "${MODES[@]}"; do write_config "$mode"; done
: >"$WORK/runs.txt"
: >"$WORK/modes.txt"
: >"$WORK/checks.txt"
for round in $(seq 1 "$ROUNDS"); do
    for mode in "${MODES[@]}"; do run_mode "$mode" "$round"; done
done
CHECKS="$(cat "$WORK/checks.txt")"
blog "checks: $(tr '\n' ';' <"$WORK/checks.txt")"
grep -q MISMATCH "$WORK/checks.txt" && bdie "the counts differ from the data written: $CHECKS"

# ------------------------------------------------------------------ report
CLK_TCK=$(getconf CLK_TCK)
BASELINE_NOTE=""
[[ -n ${BASELINE_BIN:-} ]] && BASELINE_NOTE="${BASELINE_NAME:-$("$WORK/telltale-baseline" --version 2>&1 | head -n1)}, built $(date -u -r "$WORK/telltale-baseline" '+%Y-%m-%d %H:%M UTC')"
python3 - "$WORK" "$CLK_TCK" "$BASELINE_NOTE" >"$WORK/table.md" <<'EOF'
import statistics, sys
work, clk, baseline = sys.argv[1], int(sys.argv[2]), sys.argv[3]
times, cpu, runs, trips, received, sent = {}, {}, {}, {}, {}, {}
for line in open(f"{work}/runs.txt"):
    mode, seconds = line.split()
    times.setdefault(mode, []).append(float(seconds) * 1000)
for line in open(f"{work}/modes.txt"):
    mode, count, ticks, rt, bytes_in, bytes_out = line.split()
    for table, value in ((runs, int(count)), (cpu, int(ticks)), (trips, float(rt)), (received, float(bytes_in)),
                         (sent, float(bytes_out))):
        table[mode] = table.get(mode, 0) + value
modes = [m for m in ("plain", "tls", "baseline") if m in times]
titles = {"plain": "plain TCP (`redis://`)", "tls": "TLS (`rediss://`, verified)",
          "baseline": f"plain TCP, baseline binary ({baseline})"}
median = {m: statistics.median(times[m]) for m in modes}
row = lambda name, cells: print(f"| {name} | " + " | ".join(cells) + " |")
row("per steady-state collection", [titles[m] for m in modes])
row("---", ["---" for m in modes])
row("time, median", [f"**{median[m]:.1f} ms**" for m in modes])
row("time, mean (min–max)", [f"{statistics.mean(times[m]):.1f} ms ({min(times[m]):.1f}–{max(times[m]):.1f})" for m in modes])
row("runs timed", [str(len(times[m])) for m in modes])
row("Telltale CPU per run (user + system, `/proc`)", [f"{cpu[m] / clk * 1000 / runs[m]:.0f} ms" for m in modes])
row("network round trips per run (Telltale's counter)", [f"{trips[m] / runs[m]:.2f}" for m in modes])
row("bytes per run to / from Redis (its `total_net_input_bytes` / `total_net_output_bytes`)",
    [f"{received[m] / runs[m] / 1024:,.0f} KiB / {sent[m] / runs[m] / 1024:,.0f} KiB" for m in modes])
print()
ratio = median["tls"] / median["plain"]
print(f"- TLS ÷ plain, medians: **{ratio:.2f}×** (target ≤ 1.3×: {'**met**' if ratio <= 1.3 else '**not met**'}).")
if "baseline" in median:
    print(f"- Plain ÷ baseline, medians: {median['plain'] / median['baseline']:.2f}×.")
EOF
TABLE="$(cat "$WORK/table.md")"

SECTION="$WORK/section.md"
{
    echo "## Queues over TLS: 1,000 BullMQ queues, 100,000 jobs, TLS against plain TCP"
    echo
    echo "Command: \`$BENCH_COMMAND\`"
    echo
    machine_info
    echo "- Redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') (one server, a plain and a TLS port), OpenSSL $(openssl version | awk '{print $2}'), data written with redis-py $("$PY" -c 'import redis; print(redis.__version__)')"
    echo
    echo "Data (\`scripts/bench/queues_data.py\`, seeded, as in the queues benchmark): $(python3 -c "
import json; d = json.load(open('$WORK/data.json'))
print(f\"{d['queues']} queues, {d['jobs']:,} jobs, {d['keys']:,} keys.\")")"
    echo
    echo "- Telltale: \`queues\` with discovery, interval ${QUEUE_INTERVAL} s, alone on Redis, first over the plain port, then over"
    echo "  the TLS port (\`rediss://127.0.0.1\`, \`tls: {ca_file}\`: certificate chain and IP address verified; TLS 1.3,"
    echo "  a P-256 certificate), $ROUNDS rounds alternating; $STEADY_RUNS steady-state runs timed one by one in each."
    echo "  Count check against the data written, every round: $(awk '{print $1 ": " $5}' "$WORK/checks.txt" | sort -u | tr '\n' ';' | sed 's/;$//; s/;/; /g')."
    echo
    echo "$TABLE"
    echo "- Both modes make the same round trips with the same commands: what TLS adds is the encryption"
    echo "  of those bytes (and, at each reconnect only, a handshake)."
} >"$SECTION"

cat "$SECTION"
write_section "$SECTION"
