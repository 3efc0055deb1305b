#!/usr/bin/env bash
# scripts/bench/providers.sh — 50 balance providers at a 1 s interval, one of them hanging.
#
# Measures, in one run and with the same binary, two phases of `telltale serve`:
#   A. no providers: Telltale's self metrics, and the process collector with a 1 h interval
#      (host collector off) — `telltale serve` with no collector at all exits at start;
#   B. the same plus PROVIDERS `nowpayments` providers polled every INTERVAL s (timeout INTERVAL s,
#      http_threads HTTP_THREADS), all healthy at first; once all are up, the last one's API
#      starts hanging (the fake answers after 5 s, beyond the provider's timeout).
# The APIs are the test suite's fake (tests/fakes/provider_fake.py), in two processes of
# their own on loopback: one serves the healthy providers (each under its own path prefix,
# `base_url: http://127.0.0.1:PORT/p01`), the other the hanging one.
#
# In each phase, one client scrapes /metrics SCRAPES times, one scrape every SCRAPE_INTERVAL s,
# one at a time over a keep-alive connection, with Prometheus' Accept and Accept-Encoding
# (gzip) headers: latency from sending the request to the last body byte (percentiles as
# scripts/bench/scrape.py computes them). The same scrapes, decompressed after timing, give
# in phase B every healthy provider's `telltale_provider_last_success_timestamp_seconds`
# over the window: the gaps between its successive values (how often it updated), and how
# old the value a scrape served was. The fake's own request log gives the gaps between the
# requests Telltale sent. Also: the hanging provider's up/stale/errors, Telltale's CPU time,
# renders (`telltale_render_duration_seconds`), threads and memory in both phases.
#
# Usage: scripts/bench/providers.sh
#   PROVIDERS (50), INTERVAL (1, seconds), HTTP_THREADS (8), SCRAPES (300),
#   SCRAPE_INTERVAL (0.1, seconds), BENCH_TIMEOUT (180). No PostgreSQL or Redis is used.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BENCH_COMMAND="scripts/bench/providers.sh"
BENCH_TIMEOUT="${BENCH_TIMEOUT:-180}"
# shellcheck source=lib.sh disable=SC1091  # (followed with shellcheck -x)
. "$HERE/lib.sh"
bench_init providers 55744 56744   # (ports unused: this benchmark needs no database)
# No services live in the default run directory: remove it too (lib.sh removes only $WORK then).
# Registered cleanups run before lib.sh stops our processes: stop them first.
if ((BENCH_OWN_RUN_DIR)); then
    # shellcheck disable=SC2016  # expanded when the cleanup runs
    BENCH_CLEANUPS+=('for p in "${BENCH_PIDS[@]}"; do stop_pid "$p"; done; rm -rf "$TELLTALE_RUN_DIR"')
fi

PROVIDERS="${PROVIDERS:-50}"
INTERVAL="${INTERVAL:-1}"
HTTP_THREADS="${HTTP_THREADS:-8}"
SCRAPES="${SCRAPES:-300}"
SCRAPE_INTERVAL="${SCRAPE_INTERVAL:-0.1}"
FAKE="$BENCH_REPO/tests/fakes/provider_fake.py"
[[ -f $FAKE ]] || bdie "$FAKE not found"
((PROVIDERS >= 2)) || bdie "PROVIDERS must be at least 2"
require_free_port "$BENCH_TELLTALE_PORT"

TT="http://127.0.0.1:$BENCH_TELLTALE_PORT"
# What Prometheus 2.x sends (as scripts/bench/postgres.sh).
PROM_ACCEPT='application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1'
API_KEY="bench-np-key-$$"
WIDTH=${#PROVIDERS}
((WIDTH >= 2)) || WIDTH=2
pname() { printf "p%0${WIDTH}d" "$1"; }
HANGING="$(pname "$PROVIDERS")"
CLK_TCK=$(getconf CLK_TCK)

# ------------------------------------------------------------------ the fake APIs
# start_fake NAME — the fake in a process of its own; its URL in FAKE_URL, its pid in BG_PID.
start_fake() {
    local log="$WORK/fake-$1.log" deadline=$((SECONDS + 15))
    start_bg "$log" env FAKE_NP_KEY="$API_KEY" python3 -u "$FAKE"
    until FAKE_URL="$(head -n1 "$log" 2>/dev/null)" && [[ $FAKE_URL == http://127.0.0.1:* ]]; do
        kill -0 "$BG_PID" 2>/dev/null || bdie "the fake ($1) exited: $(tail -3 "$log")"
        ((SECONDS < deadline)) || bdie "the fake ($1) printed no URL"
        sleep 0.1
    done
}
start_fake healthy
HEALTHY_URL=$FAKE_URL; HEALTHY_FAKE_PID=$BG_PID
start_fake hanging
HANGING_URL=$FAKE_URL; HANGING_FAKE_PID=$BG_PID
blog "fakes: healthy providers at $HEALTHY_URL, $HANGING at $HANGING_URL"
fake_post() { curl -fsS --max-time 5 -H 'Content-Type: application/json' -d "$2" -o /dev/null "$1"; }

# ------------------------------------------------------------------ configurations
config_head() {
    cat <<EOF
server:
  listen: "127.0.0.1:$BENCH_TELLTALE_PORT"
log:
  level: warning
collectors:
  process: {enabled: true, interval: 1h}   # one run; without any collector, serve exits
  host: {enabled: false}
http_threads: $HTTP_THREADS
EOF
}
config_head >"$WORK/telltale-none.yml"
{
    config_head
    echo "providers:"
    for ((i = 1; i <= PROVIDERS; i++)); do
        name="$(pname "$i")"
        base="$HEALTHY_URL/$name"; [[ $name == "$HANGING" ]] && base="$HANGING_URL/$name"
        echo "  - {name: $name, type: nowpayments, base_url: \"$base\", api_key: \"\${BENCH_NP_KEY}\", interval: ${INTERVAL}s, timeout: ${INTERVAL}s}"
    done
} >"$WORK/telltale-providers.yml"
export BENCH_NP_KEY="$API_KEY"
for config in none providers; do
    "$TELLTALE_BIN" check-config --config "$WORK/telltale-$config.yml" >"$WORK/check-$config.log" 2>&1 ||
        bdie "check-config failed for $config: $(cat "$WORK/check-$config.log")"
done

# start_telltale CONFIG — `telltale serve` in the background (pid in TT_PID), until /readyz.
start_telltale() {
    local log="$WORK/telltale-$1.log" deadline=$((SECONDS + 30))
    start_bg "$log" "$TELLTALE_BIN" serve --config "$WORK/telltale-$1.yml"
    TT_PID=$BG_PID
    until curl -fsS -o /dev/null --max-time 2 "$TT/readyz" 2>/dev/null; do
        kill -0 "$TT_PID" 2>/dev/null || bdie "telltale serve ($1) exited: $(tail -n 3 "$log")"
        ((SECONDS < deadline)) || bdie "telltale serve ($1) not ready after 30 s (log: $log)"
        sleep 0.2
    done
}

# ------------------------------------------------------------------ the scraping client
# watch.py URL N INTERVAL REPO_BENCH_DIR OUT — N scrapes (after 5 unrecorded warm-up ones), one
# every INTERVAL s; per scrape the latency, and the provider series of the decompressed body.
cat >"$WORK/watch.py" <<'EOF'
import gzip, http.client, json, re, sys, time, urllib.parse
url, n, interval, accept, out = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
parsed = urllib.parse.urlsplit(url)
headers = {"Accept": accept, "Accept-Encoding": "gzip"}
SAMPLE = re.compile(r'^(telltale_provider_\w+)\{([^}]*)\} (\S+)')
LABEL = re.compile(r'(\w+)="([^"]*)"')
conn = None
latencies, errors = [], 0
last = {"bytes": 0, "plain_bytes": 0, "content_type": "", "encoding": ""}
providers = {}   # name -> {"values": [...], "max_age": s, "present": k, "last": {series: value}}
scrapes_parsed = 0

def scrape():
    global conn
    for attempt in (1, 2):
        if conn is None:
            conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10)
        try:
            start = time.perf_counter()
            conn.request("GET", parsed.path, headers=headers)
            response = conn.getresponse()
            body = response.read()
            elapsed = time.perf_counter() - start
            if response.getheader("Connection", "").lower() == "close":
                conn.close(); conn = None
            return response, body, elapsed
        except (OSError, http.client.HTTPException):
            if conn is not None:
                conn.close()
            conn = None
            if attempt == 2:
                return None, None, None

def record(body, encoding, now):
    global scrapes_parsed
    text = (gzip.decompress(body) if encoding == "gzip" else body).decode()
    last["plain_bytes"] = len(text.encode())
    scrapes_parsed += 1
    seen = {}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if not m:
            continue
        labels = dict(LABEL.findall(m.group(2)))
        name = labels.get("provider")
        if name is None:
            continue
        key = m.group(1) + ("{" + ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "provider") + "}")
        seen.setdefault(name, {})[key] = float(m.group(3))
    for name, series in seen.items():
        p = providers.setdefault(name, {"values": [], "max_age": 0.0, "present": 0, "last": {}})
        p["last"] = series
        stamp = series.get("telltale_provider_last_success_timestamp_seconds{}")
        if stamp is None:
            continue
        p["present"] += 1
        if not p["values"] or p["values"][-1] != stamp:
            p["values"].append(stamp)
        p["max_age"] = max(p["max_age"], now - stamp)

for _ in range(5):  # warm-up: connection, first encodings
    scrape()
t0 = time.time()
start = time.monotonic()
for i in range(n):
    if time.monotonic() - start > n * interval * 2 + 10:
        break  # bounded even if scrapes are slow
    delay = start + i * interval - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    response, body, elapsed = scrape()
    now = time.time()
    if response is None or response.status != 200:
        errors += 1
        continue
    latencies.append(elapsed * 1000)
    last.update(bytes=len(body), content_type=response.getheader("Content-Type", ""),
                encoding=response.getheader("Content-Encoding", ""))
    record(body, last["encoding"], now)
json.dump({"t0": t0, "t1": time.time(), "latencies_ms": latencies, "errors": errors, "scrapes_parsed": scrapes_parsed,
           **last, "providers": providers}, open(out, "w"))
EOF

# phase NAME — the measurement window of one phase (Telltale at TT_PID already warm).
phase() {
    local name="$1"
    curl -fsS --max-time 5 -o "$WORK/$name-start.txt" "$TT/metrics"
    local cpu0 t0 cpu1 t1
    cpu0=$(cpu_ticks "$TT_PID"); t0=$(date +%s.%N)
    python3 "$WORK/watch.py" "$TT/metrics" "$SCRAPES" "$SCRAPE_INTERVAL" "$PROM_ACCEPT" "$WORK/$name-watch.json"
    cpu1=$(cpu_ticks "$TT_PID"); t1=$(date +%s.%N)
    curl -fsS --max-time 5 -o "$WORK/$name-end.txt" "$TT/metrics"
    echo "{\"cpu_s\": $(calc "($cpu1 - $cpu0) / $CLK_TCK"), \"wall_s\": $(calc "$t1 - $t0"), \"threads\": $(awk '/^Threads:/ {print $2}' "/proc/$TT_PID/status"), \"rss_mib\": $(calc "round($(rss_kib "$TT_PID") / 1024, 1)")}" >"$WORK/$name-proc.json"
}

# ------------------------------------------------------------------ phase A: no providers
blog "phase A: telltale serve without providers ($SCRAPES scrapes, one every ${SCRAPE_INTERVAL}s)"
start_telltale none
sleep 2
phase none
stop_pid "$TT_PID"

# ------------------------------------------------------------------ phase B: providers, one hanging
blog "phase B: $PROVIDERS providers every ${INTERVAL}s"
start_telltale providers
# up_count [PROVIDER] — how many providers (or whether PROVIDER) show telltale_provider_up 1.
up_count() { metric_sum "$TT/metrics" telltale_provider_up "${1:+provider=\"$1\"}"; }
deadline=$((SECONDS + 20))
until [[ "$(up_count)" == "$PROVIDERS" ]]; do
    ((SECONDS < deadline)) || bdie "not all $PROVIDERS providers up after 20 s: $(up_count) (log: $WORK/telltale-providers.log)"
    sleep 0.2
done
blog "all $PROVIDERS providers up; $HANGING's API starts hanging"
fake_post "$HANGING_URL/_mode" '{"mode": "hang"}'
HANG_T0=$(date +%s.%N)
deadline=$((SECONDS + 15))
until [[ "$(up_count "$HANGING")" == 0 ]]; do
    ((SECONDS < deadline)) || bdie "$HANGING still up 15 s after its API started hanging"
    sleep 0.05
done
HANG_DETECT_S=$(calc "round($(date +%s.%N) - $HANG_T0, 2)")
blog "$HANGING down ${HANG_DETECT_S} s after its API started hanging; settling 3 s, then the window"
sleep 3
fake_post "$HEALTHY_URL/_clear" '{}'
fake_post "$HANGING_URL/_clear" '{}'
FAKE_CPU0=$(($(cpu_ticks "$HEALTHY_FAKE_PID") + $(cpu_ticks "$HANGING_FAKE_PID")))
phase providers
FAKE_CPU1=$(($(cpu_ticks "$HEALTHY_FAKE_PID") + $(cpu_ticks "$HANGING_FAKE_PID")))
curl -fsS --max-time 10 -o "$WORK/fake-healthy-requests.json" "$HEALTHY_URL/_requests"
curl -fsS --max-time 10 -o "$WORK/fake-hanging-requests.json" "$HANGING_URL/_requests"
LOG_FAILED_RUNS=$(grep -c 'collector run failed' "$WORK/telltale-providers.log" || true)
LOG_OTHER=$(grep -vc 'collector run failed' "$WORK/telltale-providers.log" || true)
stop_pid "$TT_PID"
FAKE_CPU_S=$(calc "($FAKE_CPU1 - $FAKE_CPU0) / $CLK_TCK")

# ------------------------------------------------------------------ analysis
python3 - "$WORK" "$HERE" "$HANGING" "$PROVIDERS" "$INTERVAL" "$FAKE_CPU_S" "$HANG_DETECT_S" >"$WORK/report.md" <<'EOF'
import json, re, statistics, sys
work, here, hanging, total, interval, fake_cpu = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
detect = float(sys.argv[7])
sys.path.insert(0, here)
from scrape import percentile  # the same nearest-rank percentiles as the other benchmarks

def load(name):
    return json.load(open(f"{work}/{name}"))

def samples(path):
    """Plain-text exposition → {(name, frozenset(labels)): value}."""
    out = {}
    for line in open(path):
        m = re.match(r'^(\w+)(?:\{([^}]*)\})? (\S+)$', line.strip())
        if m:
            out[(m.group(1), frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or "")))] = float(m.group(3))
    return out

def total_of(snapshot, name, **want):
    return sum(v for (n, labels), v in snapshot.items()
               if n == name and all((k, w) in labels for k, w in want.items()))

def delta(phase, name, **want):
    return total_of(samples(f"{work}/{phase}-end.txt"), name, **want) - total_of(samples(f"{work}/{phase}-start.txt"), name, **want)

def fmt(x, digits=2):
    return f"{x:.{digits}f}"

watch = {p: load(f"{p}-watch.json") for p in ("none", "providers")}
proc = {p: load(f"{p}-proc.json") for p in ("none", "providers")}
lat = {p: sorted(w["latencies_ms"]) for p, w in watch.items()}
stats = {p: {"p50": percentile(v, .5), "p90": percentile(v, .9), "p99": percentile(v, .99), "max": v[-1],
             "mean": sum(v) / len(v)} for p, v in lat.items()}
w = watch["providers"]
window = w["t1"] - w["t0"]
names = [f"p{i:0{max(2, len(str(total)))}d}" for i in range(1, total + 1)]
healthy = [n for n in names if n != hanging]
prov = w["providers"]

# --- updates of the healthy providers, from the values the scrapes served
gaps, per_gap_max, per_updates, per_age, missed, missing_series = [], {}, {}, {}, {}, {}
for n in healthy:
    p = prov.get(n, {"values": [], "max_age": float("nan"), "present": 0})
    values = p["values"]
    g = [b - a for a, b in zip(values, values[1:])]
    gaps += g
    per_gap_max[n] = max(g) if g else float("inf")
    per_updates[n] = len(g)
    per_age[n] = p["max_age"]
    missed[n] = sum(max(0, round(x / interval) - 1) for x in g)
    missing_series[n] = w["scrapes_parsed"] - p["present"]
gaps.sort()
late = {n: round(per_gap_max[n], 2) for n in healthy if per_gap_max[n] > 1.5 * interval}
missed_total = sum(missed.values())
expected_updates = window / interval

# --- the fake's view: gaps between the requests Telltale sent per healthy provider
requests = load("fake-healthy-requests.json")
by_provider = {}
for r in requests:
    prefix = r["path"].split("/")[1]
    if r["wall"] >= w["t0"] and r["wall"] <= w["t1"]:
        by_provider.setdefault(prefix, []).append(r["wall"])
req_gaps = sorted(b - a for times in by_provider.values() for a, b in zip(sorted(times), sorted(times)[1:]))
req_count = sorted(len(by_provider.get(n, [])) for n in healthy)
hang_requests = [r for r in load("fake-hanging-requests.json") if w["t0"] <= r["wall"] <= w["t1"]]

# --- the hanging provider at the end of the window
end = samples(f"{work}/providers-end.txt")
def hv(name, **labels):
    return total_of(end, name, provider=hanging, **labels)
hang_errors = {dict(labels)["reason"]: delta("providers", "telltale_provider_errors_total", provider=hanging, reason=dict(labels)["reason"])
               for (n, labels) in end if n == "telltale_provider_errors_total" and ("provider", hanging) in labels}
hang_balances = sum(1 for (n, labels) in end if n == "telltale_provider_balance" and ("provider", hanging) in labels)
hang_req_count = delta("providers", "telltale_provider_request_duration_seconds_count", provider=hanging)
hang_req_mean = delta("providers", "telltale_provider_request_duration_seconds_sum", provider=hanging) / max(1, hang_req_count)
hang_age = w["t1"] - hv("telltale_provider_last_success_timestamp_seconds")
healthy_errors = sum(delta("providers", "telltale_provider_errors_total", provider=n) for n in healthy)
healthy_req_count = sum(delta("providers", "telltale_provider_request_duration_seconds_count", provider=n) for n in healthy)
healthy_req_mean = sum(delta("providers", "telltale_provider_request_duration_seconds_sum", provider=n) for n in healthy) / max(1, healthy_req_count)
runs = {p: delta(p, "telltale_collector_duration_seconds_count") for p in proc}
renders = {p: delta(p, "telltale_render_duration_seconds_count") for p in proc}
render_ms = {p: delta(p, "telltale_render_duration_seconds_sum") / renders[p] * 1000 if renders[p] else float("nan") for p in proc}
slow_renders = {p: renders[p] - delta(p, "telltale_render_duration_seconds_bucket", le="0.01") for p in proc}

def row3(label, values, digits=2, unit=""):
    values = sorted(values)
    return f"| {label} | {fmt(values[0], digits)}{unit} | {fmt(statistics.median(values), digits)}{unit} | {fmt(values[-1], digits)}{unit} |"

print("@@UPDATES@@")
print(f"Window: {window:.1f} s, {w['scrapes_parsed']} scrapes parsed; ≈ {expected_updates:.0f} updates expected per provider.")
print()
print(f"| {len(healthy)} healthy providers | min | median | max |")
print("| --- | --- | --- | --- |")
print(row3(f"**gap between successive `last_success_timestamp` values** (s; all {len(gaps)} gaps)", gaps, 3))
print(row3("largest gap of each provider (s)", list(per_gap_max.values()), 3))
print(row3("updates seen per provider in the window", list(per_updates.values()), 0))
print(row3("oldest value a scrape served, per provider (s: scrape time − timestamp)", list(per_age.values()), 3))
if req_gaps:
    print(row3(f"the fake's view: gap between Telltale's requests (s; {len(req_gaps)} gaps)", req_gaps, 3))
    print(row3("the fake's view: requests per provider in the window", req_count, 0))
print()
print(f"- Providers that missed an update (a gap over {1.5 * interval:g} s): **{len(late)} of {len(healthy)}**"
      + (f", {missed_total} missed updates in all: {dict(sorted(late.items()))}" if late else "") + ".")
print(f"- Scrapes in which a healthy provider's series were missing: {sum(missing_series.values())}. "
      f"Failed fetches of healthy providers in the window: {healthy_errors:.0f}; their requests took {healthy_req_mean * 1000:.1f} ms on average "
      f"({healthy_req_count:.0f} requests, `telltale_provider_request_duration_seconds`).")
print("@@HANGING@@")
print(f"| `{hanging}`, API hanging (answers after 5 s) | value |")
print("| --- | --- |")
print(f"| from the API hanging to `telltale_provider_up` 0 on `/metrics` (before the window) | {detect:.2f} s |")
print(f"| `telltale_provider_up` at the end of the window | **{hv('telltale_provider_up'):.0f}** |")
print(f"| `telltale_provider_stale` | **{hv('telltale_provider_stale'):.0f}** |")
print(f"| `telltale_provider_balance` series kept (last good values) | {hang_balances} |")
print(f"| age of its `last_success_timestamp` at the end of the window | {hang_age:.1f} s |")
print("| `telltale_provider_errors_total` increase in the window, by reason | "
      + (", ".join(f"`{r}` {v:.0f}" for r, v in sorted(hang_errors.items())) or "none") + " |")
print(f"| requests in the window: Telltale's count / the fake's count | {hang_req_count:.0f} / {len(hang_requests)} |")
print(f"| mean request duration (`telltale_provider_request_duration_seconds`) | {hang_req_mean * 1000:.0f} ms |")
print("@@LATENCY@@")
print("| phase | scrapes | p50 ms | p90 ms | p99 ms | max ms | mean ms | body bytes gzip / plain | errors |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
labels = {"none": "A: no providers", "providers": f"B: {total} providers, one hanging"}
for p in ("none", "providers"):
    s, x = stats[p], watch[p]
    print(f"| {labels[p]} | {len(lat[p])} | {fmt(s['p50'])} | {fmt(s['p90'])} | **{fmt(s['p99'])}** | {fmt(s['max'])} | {fmt(s['mean'])} "
          f"| {x['bytes']:,} / {x['plain_bytes']:,} | {x['errors']} |")
r = {k: stats["providers"][k] / stats["none"][k] for k in ("p50", "p90", "p99", "max", "mean")}
print(f"| **ratio B ÷ A** | | **{r['p50']:.2f}** | {r['p90']:.2f} | **{r['p99']:.2f}** | {r['max']:.2f} | {r['mean']:.2f} "
      f"| {watch['providers']['bytes'] / max(1, watch['none']['bytes']):.1f}× | |")
print()
print(f"Content-Type served: `{watch['providers']['content_type']}`, `Content-Encoding: {watch['providers']['encoding']}`.")
print("@@CPU@@")
print("| phase | Telltale CPU (user + system) | collector runs | renders (`telltale_render_duration_seconds`) | mean render | renders over 10 ms | threads | VmRSS |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for p in ("none", "providers"):
    c = proc[p]
    share = c["cpu_s"] / c["wall_s"] * 100
    per_run = f"; {c['cpu_s'] * 1000 / runs[p]:.2f} ms per run" if runs[p] else ""
    print(f"| {labels[p]} | **{share:.1f} %** of one core ({c['cpu_s']:.2f} s in {c['wall_s']:.1f} s{per_run}) | {runs[p]:.0f} "
          f"| {renders[p]:.0f} | {'n/a' if renders[p] == 0 else fmt(render_ms[p]) + ' ms'} | {slow_renders[p]:.0f} | {c['threads']} | {c['rss_mib']} MiB |")
print(f"@@FAKECPU@@{fake_cpu / proc['providers']['wall_s'] * 100:.1f}")
ok_updates = not late and sum(missing_series.values()) == 0
print(f"@@VERDICT_UPDATES@@{'**met**' if ok_updates else '**not met**'}")
print(f"@@VERDICT_SCRAPE@@{'**met**' if r['p50'] <= 1.5 and r['p99'] <= 2 else '**not met**'}")
print(f"@@RATIOS@@p50 {r['p50']:.2f}×, p99 {r['p99']:.2f}×")
EOF
part() { awk -v tag="@@$1@@" '$0 ~ /^@@/ {on = ($0 == tag); next} on' "$WORK/report.md"; }
inline() { sed -n "s/^@@$1@@//p" "$WORK/report.md"; }

SECTION="$WORK/section.md"
{
    echo "## Providers: $PROVIDERS providers at ${INTERVAL} s, one hanging"
    echo
    echo "Command: \`$BENCH_COMMAND\`"
    echo
    machine_info
    echo "- Provider APIs: the test suite's fake (\`tests/fakes/provider_fake.py\`), two processes on loopback: one"
    echo "  for the $((PROVIDERS - 1)) healthy providers (each under its own path prefix), one for \`$HANGING\`; Python $(python3 -c 'import platform; print(platform.python_version())')."
    echo
    echo "Two phases of \`telltale serve\`, same binary, host collector off:"
    echo
    echo "- **A**: no providers: Telltale's self metrics and the process collector with \`interval: 1h\` (one run at"
    echo "  start; \`telltale serve\` with no collector at all exits at once — \"Service failed(Telltale.CollectorRunner)\")."
    echo "- **B**: the same plus $PROVIDERS \`nowpayments\` providers, \`interval: ${INTERVAL}s\`, \`timeout: ${INTERVAL}s\`, \`http_threads: $HTTP_THREADS\`. Once"
    echo "  all were up, \`$HANGING\`'s API started hanging (it answers after 5 s, beyond the timeout); the"
    echo "  window began 3 s after \`$HANGING\` showed \`telltale_provider_up\` 0."
    echo
    echo "In each phase one client scrapes \`/metrics\` $SCRAPES times, one scrape every ${SCRAPE_INTERVAL} s, one at a time over a"
    echo "keep-alive connection, with Prometheus' \`Accept\` (OpenMetrics preferred) and \`Accept-Encoding: gzip\`"
    echo "headers; latency from the request to the last body byte. The same responses, decompressed after timing,"
    echo "give each provider's \`telltale_provider_last_success_timestamp_seconds\` over the window."
    echo
    echo "### The healthy providers keep updating"
    echo
    part UPDATES
    echo "- The others still update on time (no gap over 1.5 × the interval, no vanished series): $(inline VERDICT_UPDATES)."
    echo
    echo "### The hanging provider"
    echo
    part HANGING
    echo
    echo "### Scrape latency: no providers against $PROVIDERS providers"
    echo
    part LATENCY
    echo
    echo "- B ÷ A: $(inline RATIOS). Scrape as fast as without providers (here: p50 within 1.5× and p99 within 2×"
    echo "  of phase A, though B's body is larger and $PROVIDERS collectors publish every second meanwhile): $(inline VERDICT_SCRAPE)."
    echo
    echo "### Telltale's work"
    echo
    part CPU
    echo
    echo "Over each window (from Telltale's self metrics and \`/proc\`). Every collector run publishes into the store,"
    echo "which re-renders the families that changed — for a provider run, the provider and collector families merged"
    echo "over all $PROVIDERS providers — on one render thread; a scrape only hands out the cached result. The two fake"
    echo "processes used $(inline FAKECPU) % of one core in phase B. Telltale's log (level \`warning\`) in phase B: $LOG_FAILED_RUNS"
    echo "\"collector run failed\" lines (the failed runs of \`$HANGING\`), $LOG_OTHER other lines."
} >"$SECTION"

cat "$SECTION"
write_section "$SECTION"
