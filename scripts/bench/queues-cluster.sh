#!/usr/bin/env bash
# scripts/bench/queues-cluster.sh — the queue collector on a three-master Redis Cluster
# (3,000 queues, 150,000 jobs) against one standalone Redis (1,000 queues, 50,000 jobs),
# in the same run: is the cluster's collection, nodes read in parallel with one round trip
# each, within 1.3× of the standalone one?
#
#   1. Four redis-servers of the script's own: one standalone, three cluster-enabled made
#      into a cluster with `redis-cli --cluster create` (slots split evenly).
#   2. scripts/bench/queues_data.py writes the BullMQ v5/v6-style layout with pipelines:
#      QUEUES_PER_NODE queues with JOBS_PER_NODE jobs on the standalone Redis (prefix `bull`)
#      and as much on each master under a hash-tagged prefix that lands on it (`{t…}`),
#      written straight to that master (every key of a prefix is in one slot).
#   3. Telltale (`queues` with discovery, interval QUEUE_INTERVAL) runs alone against the
#      standalone Redis, then alone against the cluster (given every master's address),
#      ROUNDS times in turn; and, to see what routing itself costs, against the cluster with
#      only the prefix of the first master (the standalone's very queues: same seed). Each
#      phase skips the first runs (discovery, first reads) and times STEADY_RUNS runs one by
#      one (the status page's last duration, in ms); round trips from
#      `telltale_redis_round_trips_total`; CPU from /proc. The job counts Telltale exports
#      are checked against what was written.
#
# Usage: scripts/bench/queues-cluster.sh
#   QUEUES_PER_NODE (1000), JOBS_PER_NODE (50000), QUEUE_INTERVAL (2), STEADY_RUNS (12), ROUNDS (2)
#   BENCH_REDIS_BASE_PORT (26790): the standalone Redis; the cluster nodes take the next three
#   ports, and need port + 10000 free too (their cluster bus).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BENCH_COMMAND="scripts/bench/queues-cluster.sh"
export BENCH_TIMEOUT="${BENCH_TIMEOUT:-600}"
# shellcheck source=lib.sh
. "$HERE/lib.sh"
bench_init queues-cluster 55745 56745

QUEUES_PER_NODE="${QUEUES_PER_NODE:-1000}"
JOBS_PER_NODE="${JOBS_PER_NODE:-50000}"
QUEUE_INTERVAL="${QUEUE_INTERVAL:-2}"
STEADY_RUNS="${STEADY_RUNS:-12}"
ROUNDS="${ROUNDS:-2}"
BASE_PORT="${BENCH_REDIS_BASE_PORT:-26790}"
STANDALONE_PORT=$BASE_PORT
CLUSTER_PORTS=($((BASE_PORT + 1)) $((BASE_PORT + 2)) $((BASE_PORT + 3)))
PY="$BENCH_REPO/.venv-bullmq-v6/bin/python"
[[ -x $PY ]] || bdie "$PY not found (scripts/setup.sh makes .venv-bullmq-v6)"
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || bdie "redis-server/redis-cli not found"
require_free_port "$BENCH_TELLTALE_PORT"
require_free_port "$STANDALONE_PORT"
for port in "${CLUSTER_PORTS[@]}"; do require_free_port "$port"; require_free_port $((port + 10000)); done
TT_URL="http://127.0.0.1:$BENCH_TELLTALE_PORT/metrics"
QC='collector="queues"'

# ------------------------------------------------------------------ 1. servers
declare -A REDIS_PIDS
start_redis() {  # PORT [ARGS…]
    local port="$1"; shift
    mkdir -p "$WORK/redis-$port"
    start_bg "$WORK/redis-$port.log" redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$WORK/redis-$port" "$@"
    REDIS_PIDS[$port]=$BG_PID
}
start_redis "$STANDALONE_PORT"
for port in "${CLUSTER_PORTS[@]}"; do
    start_redis "$port" --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000
done
for port in "$STANDALONE_PORT" "${CLUSTER_PORTS[@]}"; do
    deadline=$((SECONDS + 20))
    until [[ "$(redis-cli -p "$port" ping 2>/dev/null)" == PONG ]]; do
        ((SECONDS < deadline)) || bdie "redis-server on $port did not start: $(tail -3 "$WORK/redis-$port.log")"
        sleep 0.1
    done
done
blog "creating the cluster on ${CLUSTER_PORTS[*]}"
redis-cli --cluster create "${CLUSTER_PORTS[@]/#/127.0.0.1:}" --cluster-yes >"$WORK/cluster-create.log" 2>&1 \
    || bdie "redis-cli --cluster create failed: $(tail -5 "$WORK/cluster-create.log")"
cluster_ok() {
    local port
    for port in "${CLUSTER_PORTS[@]}"; do redis-cli -p "$port" cluster info | grep -q '^cluster_state:ok' || return 1; done
}
deadline=$((SECONDS + 60))
until cluster_ok; do
    ((SECONDS < deadline)) || bdie "the cluster did not become ok"
    sleep 0.2
done

# One hash tag per master: "tag port" lines.
"$PY" - "${CLUSTER_PORTS[@]}" >"$WORK/tags.txt" <<'EOF'
import sys
import redis
ports = [int(p) for p in sys.argv[1:]]
r = redis.Redis(port=ports[0])
owner = {}
for first, last, master, *_ in r.execute_command("CLUSTER", "SLOTS"):
    for slot in range(first, last + 1):
        owner[slot] = int(master[1])
chosen = {}
for i in range(1000):
    tag = f"{{t{i}}}"
    chosen.setdefault(owner[r.execute_command("CLUSTER", "KEYSLOT", tag)], tag)
    if len(chosen) == len(ports):
        break
for port in ports:
    print(chosen[port], port)
EOF
mapfile -t TAG_LINES <"$WORK/tags.txt"
((${#TAG_LINES[@]} == 3)) || bdie "no hash tag for every master: ${TAG_LINES[*]}"

# ------------------------------------------------------------------ 2. data
blog "writing $QUEUES_PER_NODE queues with $JOBS_PER_NODE jobs on the standalone Redis and on each of the three masters"
DATA_PIDS=()
"$PY" "$HERE/queues_data.py" --url "redis://127.0.0.1:$STANDALONE_PORT/0" --prefix bull \
    --queues "$QUEUES_PER_NODE" --jobs "$JOBS_PER_NODE" --seed 42 >"$WORK/data-standalone.json" &
DATA_PIDS+=($!)
TAGS=()
seed=42
for line in "${TAG_LINES[@]}"; do
    read -r tag port <<<"$line"
    TAGS+=("$tag")
    "$PY" "$HERE/queues_data.py" --url "redis://127.0.0.1:$port/0" --prefix "$tag" \
        --queues "$QUEUES_PER_NODE" --jobs "$JOBS_PER_NODE" --seed $seed >"$WORK/data-$port.json" &
    DATA_PIDS+=($!)
    seed=$((seed + 1))
done
for pid in "${DATA_PIDS[@]}"; do wait "$pid" || bdie "queues_data.py failed"; done
blog "data: standalone $(cat "$WORK/data-standalone.json")"

# ------------------------------------------------------------------ 3. Telltale
write_config() { queue_bench_config "$1" "$2" "$3" $((QUEUES_PER_NODE * 4)); }  # FILE REDIS_YAML PREFIXES_YAML
write_config "$WORK/standalone.yml" "{url: \"redis://127.0.0.1:$STANDALONE_PORT/0\"}" "[bull]"
CLUSTER_ADDRESSES="$(printf '"127.0.0.1:%s", ' "${CLUSTER_PORTS[@]}")"
write_config "$WORK/cluster.yml" "{cluster: {addresses: [${CLUSTER_ADDRESSES%, }]}}" \
    "[$(printf '"%s", ' "${TAGS[@]}" | sed 's/, $//')]"
# The same 1,000 queues as the standalone Redis (seed 42), on one master, through the
# cluster client: what routing itself costs.
write_config "$WORK/cluster-one.yml" "{cluster: {addresses: [${CLUSTER_ADDRESSES%, }]}}" "[\"${TAGS[0]}\"]"

# poll_runs OUT RUNS TELLTALE_PID REDIS_PID… — the durations of RUNS consecutive runs, after
# two warm-up runs, and the CPU time of Telltale and of the Redis servers meanwhile. Runs are
# seen on the small status page `/` (polled every 20 ms from 0.6 s before a run can end: its
# "last duration", in ms, and "last success" of the queues collector); /metrics (megabytes
# here) is read only at the start and the end, just after a run, for the round trips and
# the counts.
poll_runs() {
    local out="$1" runs="$2"; shift 2
    python3 - "http://127.0.0.1:$BENCH_TELLTALE_PORT" "$runs" "$QC" "$(getconf CLK_TCK)" "$QUEUE_INTERVAL" "$@" >"$out" <<'EOF'
import json, re, sys, time, urllib.request
base, runs, qc, tick, interval = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
tt_pid, redis_pids = sys.argv[6], sys.argv[7:]
def cpu(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / tick * 1000   # utime + stime, ms
row = re.compile(r'<td>queues</td><td>(\w+)</td><td>([^<]*)</td><td>([^<]*)</td>')
def status():
    m = row.search(urllib.request.urlopen(base + "/", timeout=5).read().decode())
    return (m.group(1), m.group(2), m.group(3)) if m else ("", "", "")
def metrics():
    return urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
def value(text, name):
    m = re.search(r'^' + name + r'\{' + re.escape(qc) + r'\} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0
def trips(text):
    return value(text, "telltale_redis_round_trips_total")
def runs_in(text):
    return value(text, "telltale_collector_duration_seconds_count")
def next_run(last):
    # Runs start every `interval`: polling begins a little before the next one can end.
    time.sleep(max(0.0, interval - 0.6))
    while True:
        state, duration, success = status()
        if success not in (last, "", "never"):
            return state, duration, success
        time.sleep(0.02)
_, _, success = next_run("")               # the first run (discovery)
for _ in range(2):                          # two warm-up runs
    _, _, success = next_run(success)
start = metrics()
cpu0 = (cpu(tt_pid), sum(cpu(p) for p in redis_pids))
durations, failed = [], 0
while len(durations) + failed < runs:
    state, duration, success = next_run(success)
    if state == "ok" and duration.endswith(" ms"):
        durations.append(float(duration[:-3]) / 1000)
    elif state == "ok" and duration.endswith(" s"):
        durations.append(float(duration[:-2]))
    else:
        failed += 1
cpu1 = (cpu(tt_pid), sum(cpu(p) for p in redis_pids))
end = metrics()
jobs = {}
for m in re.finditer(r'^telltale_queue_jobs\{(.*)\} (\S+)$', end, re.M):
    labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
    jobs[labels["state"]] = jobs.get(labels["state"], 0) + float(m.group(2))
queues = len(re.findall(r'^telltale_queue_up\{.*\} 1$', end, re.M))
# Telltale's CPU holds its render after each run and the answers to this polling.
print(json.dumps({"durations": durations, "failed": failed,
                  "round_trips": (trips(end) - trips(start)) / max(1, runs_in(end) - runs_in(start)),
                  "telltale_cpu_ms": (cpu1[0] - cpu0[0]) / runs, "redis_cpu_ms": (cpu1[1] - cpu0[1]) / runs,
                  "jobs": jobs, "queues_up": queues}))
EOF
}

# phase NAME CONFIG PORTS… — one Telltale alone on those servers; results in $WORK/NAME-ROUND.json.
phase() {
    local name="$1" config="$2" port pids=()
    shift 2
    for port in "$@"; do pids+=("${REDIS_PIDS[$port]}"); done
    blog "Telltale, $name: $STEADY_RUNS runs (round $round of $ROUNDS)"
    start_bg "$WORK/telltale-$name-$round.log" "$TELLTALE_BIN" serve --config "$config"
    local pid=$BG_PID
    wait_http "http://127.0.0.1:$BENCH_TELLTALE_PORT/readyz" 60
    poll_runs "$WORK/$name-$round.json" "$STEADY_RUNS" "$pid" "${pids[@]}"
    stop_pid "$pid"
}

for round in $(seq 1 "$ROUNDS"); do
    phase standalone "$WORK/standalone.yml" "$STANDALONE_PORT"
    phase cluster "$WORK/cluster.yml" "${CLUSTER_PORTS[@]}"
    phase cluster-one "$WORK/cluster-one.yml" "${CLUSTER_PORTS[@]}"
done

# ------------------------------------------------------------------ report
python3 - "$WORK" "$ROUNDS" "$QUEUES_PER_NODE" "${CLUSTER_PORTS[@]}" >"$WORK/table.md" <<'EOF'
import json, statistics, sys
work, rounds, per_node, ports = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
def written(files):
    total = {}
    for f in files:
        for state, n in json.load(open(f))["states"].items():
            total[state] = total.get(state, 0) + n
    return total
expected = {"standalone": (written([f"{work}/data-standalone.json"]), per_node),
            "cluster": (written([f"{work}/data-{p}.json" for p in ports]), 3 * per_node),
            "cluster-one": (written([f"{work}/data-{ports[0]}.json"]), per_node)}
rows = {}
for name, (states, queues) in expected.items():
    phases = [json.load(open(f"{work}/{name}-{r}.json")) for r in range(1, rounds + 1)]
    durations = [x * 1000 for p in phases for x in p["durations"]]
    checks = [p["failed"] == 0 and p["queues_up"] == queues and all(p["jobs"].get(s, 0) == n for s, n in states.items()) for p in phases]
    rows[name] = {
        "median": statistics.median(durations), "mean": statistics.mean(durations),
        "min": min(durations), "max": max(durations), "n": len(durations),
        "rounds": [statistics.median([x * 1000 for x in p["durations"]]) for p in phases],
        "trips": statistics.mean(p["round_trips"] for p in phases),
        "cpu": statistics.mean(p["telltale_cpu_ms"] for p in phases),
        "redis_cpu": statistics.mean(p["redis_cpu_ms"] for p in phases),
        "check": "ok" if all(checks) else f"MISMATCH {[(p['queues_up'], p['jobs']) for p in phases]} vs {states}",
    }
s, c, o = rows["standalone"], rows["cluster"], rows["cluster-one"]
jobs = lambda name: sum(expected[name][0].values())
print(f"| per collection | standalone Redis: {per_node:,} queues, {jobs('standalone'):,} jobs "
      f"| Redis Cluster, 3 masters: {3 * per_node:,} queues, {jobs('cluster'):,} jobs "
      f"| Redis Cluster: the standalone's {per_node:,} queues on one master |")
print("| --- | --- | --- | --- |")
def line(label, f):
    print(f"| {label} | " + " | ".join(f(r) for r in (s, c, o)) + " |")
line(f"time, median of {s['n']} runs each", lambda r: f"**{r['median']:.1f} ms**")
line("time, mean (min–max)", lambda r: f"{r['mean']:.1f} ms ({r['min']:.1f}–{r['max']:.1f})")
line("median of each round, in run order", lambda r: " / ".join(f"{x:.1f}" for x in r["rounds"]) + " ms")
line("network round trips per run (the cluster's: all nodes')", lambda r: f"{r['trips']:.2f}")
line("Telltale CPU per run (user + system, `/proc`; incl. its render and the polling)", lambda r: f"{r['cpu']:.0f} ms")
line("redis-server CPU per run (the cluster's: the three masters)", lambda r: f"{r['redis_cpu']:.0f} ms")
line("counts against the data written", lambda r: r["check"])
print()
ratio = c["median"] / s["median"]
print(f"- Cluster (3,000 queues) ÷ standalone (1,000 queues), median collection time: **{ratio:.2f}×** "
      f"(target ≤ 1.3×: {'**met**' if ratio <= 1.3 else '**not met**'}).")
print(f"- The same 1,000 queues through the cluster client on one master ÷ standalone: **{o['median'] / s['median']:.2f}×** "
      "(the cluster client's work and a cluster-mode Redis).")
print(f"- CPU per run, Telltale + Redis: standalone {s['cpu'] + s['redis_cpu']:.0f} ms, cluster {c['cpu'] + c['redis_cpu']:.0f} ms "
      f"({(c['cpu'] + c['redis_cpu']) / (s['cpu'] + s['redis_cpu']):.1f}×), on 2 CPUs.")
EOF

SECTION="$WORK/section.md"
{
    echo "## Queues on a Redis Cluster: 3,000 queues on three masters against 1,000 on one Redis"
    echo
    echo "Command: \`$BENCH_COMMAND\`"
    echo
    machine_info
    echo "- Redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'): one standalone and three cluster masters (\`redis-cli --cluster create\`, no replicas), all on this machine; data written with redis-py $("$PY" -c 'import redis; print(redis.__version__)')"
    echo
    echo "Data (\`scripts/bench/queues_data.py\`): on the standalone Redis $(python3 -c "
import json; d = json.load(open('$WORK/data-standalone.json'))
print(f\"{d['queues']} queues of prefix \`bull\`, {d['jobs']:,} jobs ({d['keys']:,} keys)\")"); on each master as much under a
hash-tagged prefix that lands on it ($(printf '`%s` ' "${TAGS[@]}" | sed 's/ $//' | sed 's/` `/`, `/g')), seeds 42–44."
    echo
    echo "- Telltale: \`queues\` with discovery, interval ${QUEUE_INTERVAL} s, alone on the servers of each phase; the phases"
    echo "  alternate (standalone, cluster) $ROUNDS times, each a fresh process whose first two runs are skipped. On the"
    echo "  cluster each pipeline is split by the master owning each queue's slot, the three parts are sent in parallel"
    echo "  (one round trip per node, each node client on its own thread) and the replies put back in order."
    echo
    cat "$WORK/table.md"
    echo "- Reading: the cluster run does three times the work of the standalone one on the same $(nproc) CPUs. The three"
    echo "  masters answer in parallel (one round trip each per pipeline), but together they need three times"
    echo "  Redis' CPU (more: a cluster-mode Redis spends more per command, third column), and Telltale builds,"
    echo "  parses and turns into series three times the commands and replies in one serial pass per run."
    echo "  The third column differs from the first only by the cluster: the client's work (the slot of each"
    echo "  command's first key, each node's part copied out, the replies put back in order) and a cluster-mode"
    echo "  Redis (its own CPU per run is in the table)."
} >"$SECTION"

cat "$SECTION"
write_section "$SECTION"
