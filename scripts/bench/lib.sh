# shellcheck shell=bash
# scripts/bench/lib.sh — shared helpers for the benchmark scripts (sourced, not run).
#
# Every benchmark script:
#   * uses its own run directory ($TELLTALE_RUN_DIR, default /tmp/tt-bench-<name>) and
#     its own PostgreSQL/Redis ports (TELLTALE_PG_PORT / TELLTALE_REDIS_PORT, with a
#     per-script default that differs from scripts/services.sh's 25432/25379);
#   * starts the throw-away services with scripts/services.sh if they are not already
#     running there, and stops them again at exit (only if it started them; the run
#     directory is removed too when it is the script's default one);
#   * stops every process it started, by pid, at exit;
#   * is bounded in time by a watchdog (BENCH_TIMEOUT seconds, default 330);
#   * prints a Markdown section and writes it into BENCHMARKS.md between
#     `<!-- bench:<name> -->` and `<!-- /bench:<name> -->` (BENCH_NO_WRITE=1: print only).
#
# Ports of the processes under test (127.0.0.1 only) can be moved with
#   BENCH_TELLTALE_PORT (19839), BENCH_NGINX_PORT (19840),
#   BENCH_PG_EXPORTER_PORT (19187), BENCH_REDIS_EXPORTER_PORT (19121).

set -euo pipefail

BENCH_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TELLTALE_BIN="${TELLTALE_BIN:-$BENCH_REPO/.build/release/telltale}"
BENCH_TELLTALE_PORT="${BENCH_TELLTALE_PORT:-19839}"
BENCH_NGINX_PORT="${BENCH_NGINX_PORT:-19840}"
BENCH_PG_EXPORTER_PORT="${BENCH_PG_EXPORTER_PORT:-19187}"
BENCH_REDIS_EXPORTER_PORT="${BENCH_REDIS_EXPORTER_PORT:-19121}"

BENCH_PIDS=()              # processes we started, stopped at exit (by pid)
BENCH_STARTED_SERVICES=0   # 1 if we started scripts/services.sh services
BENCH_OWN_RUN_DIR=0        # 1 if RUN_DIR is our default (removed at exit)
BENCH_CLEANUPS=()          # extra cleanup commands (eval'ed at exit, in reverse)

blog() { printf '[bench:%s %s] %s\n' "$BENCH_NAME" "$(date +%H:%M:%S)" "$*" >&2; }
bdie() { blog "ERROR: $*"; exit 1; }

# bench_init NAME DEFAULT_PG_PORT DEFAULT_REDIS_PORT — call first.
bench_init() {
    BENCH_NAME="$1"
    BENCH_COMMAND="${BENCH_COMMAND:-$(basename "$0")}"
    if [[ -z ${TELLTALE_RUN_DIR:-} ]]; then
        export TELLTALE_RUN_DIR="/tmp/tt-bench-$BENCH_NAME"
        BENCH_OWN_RUN_DIR=1
    fi
    export TELLTALE_PG_PORT="${TELLTALE_PG_PORT:-$2}"
    export TELLTALE_REDIS_PORT="${TELLTALE_REDIS_PORT:-$3}"
    mkdir -p "$TELLTALE_RUN_DIR"
    WORK="$TELLTALE_RUN_DIR/bench-$BENCH_NAME"
    rm -rf "$WORK"
    mkdir -p "$WORK"
    trap bench_cleanup EXIT
    trap 'if [[ -e $WORK/.watchdog ]]; then blog "stopped by the watchdog after ${BENCH_TIMEOUT:-330}s"; else blog "interrupted"; fi; exit 130' INT TERM
    # Watchdog: the whole script must stay bounded in time. It holds none of our output
    # open (a caller's pipe would otherwise wait for it).
    local timeout="${BENCH_TIMEOUT:-330}" main=$$
    ( exec </dev/null >/dev/null 2>&1; sleep "$timeout"; touch "$WORK/.watchdog"; kill -TERM "$main" ) &
    BENCH_WATCHDOG=$!
    [[ -x $TELLTALE_BIN ]] || bdie "no Telltale binary at $TELLTALE_BIN (scripts/build-release.sh)"
    # Run a private copy: the binary may be rebuilt while we run (and perf must resolve the
    # symbols of the very file that runs).
    cp -p "$TELLTALE_BIN" "$WORK/telltale"
    TELLTALE_BIN="$WORK/telltale"
}

bench_cleanup() {
    local rc=$? i pid
    set +e
    trap - EXIT INT TERM
    for ((i = ${#BENCH_CLEANUPS[@]} - 1; i >= 0; i--)); do eval "${BENCH_CLEANUPS[$i]}" >/dev/null 2>&1; done
    for pid in "${BENCH_PIDS[@]}"; do stop_pid "$pid"; done
    if ((BENCH_STARTED_SERVICES)); then
        if ((BENCH_OWN_RUN_DIR)); then
            bash "$BENCH_REPO/scripts/services.sh" clean >/dev/null 2>&1
            rm -rf "$TELLTALE_RUN_DIR"
        else
            bash "$BENCH_REPO/scripts/services.sh" stop >/dev/null 2>&1
            rm -rf "$WORK"
        fi
    else
        rm -rf "$WORK"
    fi
    if [[ -n ${BENCH_WATCHDOG:-} ]]; then
        pkill -P "$BENCH_WATCHDOG" sleep 2>/dev/null   # its sleep, by parent pid
        kill "$BENCH_WATCHDOG" 2>/dev/null
    fi
    exit "$rc"
}

# stop_pid PID — TERM, wait up to 5 s, then KILL.
stop_pid() {
    local pid="$1" n
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null
    for ((n = 0; n < 50; n++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
}

# start_bg LOGFILE CMD... — run in the background, remember the pid in BG_PID.
start_bg() {
    local logfile="$1"; shift
    "$@" >"$logfile" 2>&1 </dev/null &
    BG_PID=$!
    BENCH_PIDS+=("$BG_PID")
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
require_free_port() { port_free "$1" || bdie "127.0.0.1:$1 is already in use (see the BENCH_*_PORT variables)"; }

# wait_http URL [SECONDS] — until it answers 2xx.
wait_http() {
    local url="$1" deadline=$((SECONDS + ${2:-30}))
    until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
        ((SECONDS < deadline)) || bdie "no answer from $url"
        sleep 0.2
    done
}

# bench_services — start PostgreSQL and Redis (if not running) and source their env.
bench_services() {
    if bash "$BENCH_REPO/scripts/services.sh" status >/dev/null 2>&1; then
        blog "services already running in $TELLTALE_RUN_DIR: using them, leaving them running"
    else
        blog "starting services in $TELLTALE_RUN_DIR (pg $TELLTALE_PG_PORT, redis $TELLTALE_REDIS_PORT)"
        BENCH_STARTED_SERVICES=1
        bash "$BENCH_REPO/scripts/services.sh" start >&2
    fi
    # shellcheck disable=SC1091
    . "$TELLTALE_RUN_DIR/env"
    # shellcheck disable=SC2034  # used by the scripts that source this file
    PSQL=("$TELLTALE_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -At)   # admin via PGHOST socket, PGUSER=postgres
}

# metric_sum URL NAME [LABEL_FILTER] — sum of the samples of NAME (exact name) whose line
# contains LABEL_FILTER (a plain substring, e.g. 'collector="queues"').
metric_sum() {
    curl -fsS --max-time 5 "$1" | awk -v name="$2" -v filter="${3:-}" '
        $0 !~ /^#/ {
            split($1, parts, "{"); if (parts[1] != name) next
            if (filter != "" && index($0, filter) == 0) next
            sum += $NF; found = 1
        }
        END { if (found) printf "%.9g\n", sum; else print "nan" }'
}

calc() { python3 -c "import math; print($1)"; }

# cpu_ticks PID — user + system CPU time of the whole process (all threads), in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# perf_profile PID SECONDS REPORT — CPU profile with DWARF call graphs; writes
# `perf report --children` text to REPORT. Returns 1 if perf is missing or fails.
perf_profile() {
    local pid="$1" seconds="$2" report="$3"
    [[ ${PERF:-1} == 1 ]] && command -v perf >/dev/null || return 1
    timeout $((seconds + 30)) perf record -q -F 499 --call-graph dwarf,16384 -p "$pid" -o "$report.data" \
        -- sleep "$seconds" >"$report.log" 2>&1 || return 1
    perf report -i "$report.data" --children --sort symbol --stdio -g none >"$report" 2>/dev/null || return 1
    rm -f "$report.data"
}
# perf_share REPORT PATTERN — the largest inclusive ("children") percentage of a symbol matching PATTERN.
perf_share() {
    awk -v pat="$2" '$1 ~ /%$/ && $0 ~ pat { v = $1; sub(/%/, "", v); if (v + 0 > best) best = v + 0 }
                     END { printf "%.1f\n", best + 0 }' "$1"
}
perf_samples() { awk '/^# Samples:/ {print $3; exit}' "$1"; }

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# mem_line PID — "VmRSS / RssAnon / RssFile / Pss" in MiB for a table row.
mem_fields() {
    local pid="$1"
    awk '/^(VmRSS|RssAnon|RssFile|VmHWM):/ {v[$1]=$2}
         END {printf "%.1f|%.1f|%.1f|%.1f", v["VmRSS:"]/1024, v["RssAnon:"]/1024, v["RssFile:"]/1024, v["VmHWM:"]/1024}' \
        "/proc/$pid/status"
    awk '/^Pss:/ {printf "|%.1f\n", $2/1024}' "/proc/$pid/smaps_rollup"
}

machine_info() {
    local cpu
    cpu="$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "- Date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- Machine: $(nproc) CPUs ($cpu), $(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
    echo "- Load average when the run started: $BENCH_LOADAVG (the machine is shared: other work may run concurrently)"
    echo "- Telltale: $("$TELLTALE_BIN" --version 2>&1 | head -n1), git $(git -C "$BENCH_REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$BENCH_REPO" diff --quiet HEAD -- Sources 2>/dev/null || echo ' (+ uncommitted changes in Sources/)'), release binary built $(date -u -r "$TELLTALE_BIN" '+%Y-%m-%d %H:%M UTC')"
}

# start_nginx DIR PORT WORKERS SERVER READY — nginx in the foreground (pid in BG_PID) on
# 127.0.0.1:PORT with WORKERS worker processes, SERVER the directives of its one server
# block, sendfile, no access log; its files stay under DIR. Returns once READY (a path)
# answers.
start_nginx() {
    local dir="$1" port="$2" workers="$3" server="$4" ready="$5"
    mkdir -p "$dir/tmp" "$dir/logs"
    cat >"$dir/nginx.conf" <<EOF
# Written by scripts/bench (lib.sh start_nginx)
$( ((EUID == 0)) && echo "user root;" )
daemon off;
master_process on;
worker_processes $workers;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 65s;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    types { }
    default_type "text/plain; version=0.0.4; charset=utf-8";
    server {
        listen 127.0.0.1:$port;
$server
    }
}
EOF
    start_bg "$dir/logs/stdout.log" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log"
    wait_http "http://127.0.0.1:$port$ready"
}

# save_gzip_body URL FILE — the gzip body URL answers to Prometheus' Accept-Encoding, in FILE.
save_gzip_body() {
    curl -fsS -H 'Accept-Encoding: gzip' -o "$2" "$1"
}

# start_nginx_static DIR PORT BODY — nginx serving a saved gzip body (BODY, from
# save_gzip_body) as a static file, one worker per CPU: DIR/www/metrics.gz at
# http://127.0.0.1:PORT/metrics for clients that accept gzip (gzip_static), DIR/www/metrics
# (its decompressed content) for the others.
start_nginx_static() {
    mkdir -p "$1/www"
    gzip -t "$3" || bdie "the gzip body $3 does not decompress"
    cp "$3" "$1/www/metrics.gz"
    gzip -dc "$3" >"$1/www/metrics"
    touch -r "$1/www/metrics" "$1/www/metrics.gz"  # one modification time for both, as nginx recommends
    start_nginx "$1" "$2" "$(nproc)" "        root $1/www;
        gzip off;
        gzip_static on;
        gzip_vary on;
        location = /metrics { }" /metrics
}

pkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo '?'; }

# write_section FILE — replace this script's section of BENCHMARKS.md with FILE's content.
write_section() {
    local file="$1" target="$BENCH_REPO/BENCHMARKS.md"
    if [[ ${BENCH_NO_WRITE:-0} == 1 ]]; then blog "BENCH_NO_WRITE=1: BENCHMARKS.md not touched"; return 0; fi
    python3 - "$target" "$BENCH_NAME" "$file" <<'EOF'
import os, sys
target, name, section_file = sys.argv[1:4]
begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
section = open(section_file).read().strip("\n")
block = f"{begin}\n{section}\n{end}"
text = open(target).read() if os.path.exists(target) else "# Benchmarks\n"
if begin in text and end in text:
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    text = head + block + tail
else:
    text = text.rstrip("\n") + "\n\n" + block + "\n"
tmp = target + ".tmp"
open(tmp, "w").write(text)
os.replace(tmp, target)
EOF
    blog "section written into $target"
}

BENCH_LOADAVG="$(cut -d' ' -f1-3 /proc/loadavg)"

# bench_series_query N: the YAML list item (under `queries:`) of the synthetic gauge of N
# series, re-run every second, that the foundation and whole-product benches expose.
bench_series_query() {
    cat <<EOF
      - metric: bench_series
        help: Synthetic series for the benchmark.
        sql: SELECT g::text AS id, (g % 97)::float8 AS v FROM generate_series(1, $1) g
        labels: [id]
        values: [v]
        max_series: 20000
        interval: 1s
EOF
}

# queue_bench_config FILE REDIS_YAML PREFIXES_YAML MAX_QUEUES [BINARY]: the queue benches'
# Telltale configuration (the queue collector alone, with discovery), checked by BINARY
# (default TELLTALE_BIN).
queue_bench_config() {
    cat >"$1" <<EOF
server:
  listen: "127.0.0.1:$BENCH_TELLTALE_PORT"
log:
  level: warning
collectors:
  process: {enabled: false}
  host: {enabled: false}
queues:
  redis: $2
  interval: ${QUEUE_INTERVAL}s
  timeout: ${QUEUE_INTERVAL}s
  prefixes: $3
  discovery: {enabled: true, interval: 10m, budget: 5s, scan_count: 1000}
  max_queues: $4
EOF
    "${5:-$TELLTALE_BIN}" check-config --config "$1" >/dev/null
}

# check_queue_counts EXPOSITION DATA_JSON — "queues=… series=… counts=ok": the telltale_queue_jobs
# of a scrape against what scripts/bench/queues_data.py wrote.
check_queue_counts() {
    python3 - "$1" "$2" <<'EOF'
import json, re, sys
data = json.load(open(sys.argv[2]))
sums, queues, series = {}, set(), 0
for line in open(sys.argv[1]):
    m = re.match(r'telltale_queue_jobs\{(.*)\} (\S+)$', line)
    if not m:
        continue
    labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
    sums[labels["state"]] = sums.get(labels["state"], 0) + float(m.group(2))
    queues.add(labels["queue"]); series += 1
wrong = {s: (sums.get(s, 0), n) for s, n in data["states"].items() if sums.get(s, 0) != n}
print(f"queues={len(queues)} series={series} " + ("counts=ok" if not wrong and len(queues) == data["queues"]
      else f"counts=MISMATCH {wrong}"))
EOF
}
