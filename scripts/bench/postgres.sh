#!/usr/bin/env bash
# scripts/bench/postgres.sh — Telltale versus prometheus-postgres-exporter on one database.
#
# In one run, against the same throw-away PostgreSQL (scripts/services.sh):
#   1. /metrics scrape latency of Telltale (postgres target: health + database size) and of
#      postgres_exporter (Debian package, comparable collectors), scraped alternately with
#      Prometheus' request headers, the database idle;
#   2. the same under `pgbench -c 8 -T 60` (tables initialised at a small scale first);
#   3. the query load each puts on the database over 2 minutes at a 15 s cadence: Telltale
#      with interval 15 s (database size also every 15 s, to be conservative — its default is
#      5 m), the exporter scraped every 15 s; from pg_stat_statements (reset first), by role
#      (Telltale: `telltale`; the exporter: its own role `pgexporter` with pg_monitor), plus
#      the CPU time of each one's backends from /proc.
#
# Usage: scripts/bench/postgres.sh
#   SCRAPES (200), SCRAPE_GAP (0.05 s before each scrape), LOAD_SECONDS (60), PGBENCH_SCALE (10), LOAD_WINDOW (120), LOAD_INTERVAL (15)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BENCH_COMMAND="scripts/bench/postgres.sh"
# shellcheck source=lib.sh
. "$HERE/lib.sh"
bench_init postgres 55742 56742

SCRAPES="${SCRAPES:-200}"
SCRAPE_GAP="${SCRAPE_GAP:-0.05}"
LOAD_SECONDS="${LOAD_SECONDS:-60}"
PGBENCH_SCALE="${PGBENCH_SCALE:-10}"
LOAD_WINDOW="${LOAD_WINDOW:-120}"
LOAD_INTERVAL="${LOAD_INTERVAL:-15}"
EXPORTER=prometheus-postgres-exporter
command -v "$EXPORTER" >/dev/null || bdie "$EXPORTER not found (scripts/setup.sh)"
require_free_port "$BENCH_TELLTALE_PORT"
require_free_port "$BENCH_PG_EXPORTER_PORT"
bench_services
PGBENCH="$TELLTALE_PG_BIN/pgbench"
[[ -x $PGBENCH ]] || bdie "pgbench not found in $TELLTALE_PG_BIN"
DB="$TELLTALE_PG_DATABASE"
sql() { "${PSQL[@]}" -d "$DB" -c "$1"; }

TT_URL="http://127.0.0.1:$BENCH_TELLTALE_PORT/metrics"
EX_URL="http://127.0.0.1:$BENCH_PG_EXPORTER_PORT/metrics"
# What Prometheus 2.x sends.
PROM_HEADERS=(--header 'Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1'
              --header 'Accept-Encoding: gzip')

# ------------------------------------------------------------------ database setup
EXPORTER_PASSWORD="pgexporter-bench-$$"
if [[ "$(sql "SELECT 1 FROM pg_roles WHERE rolname = 'pgexporter'")" == 1 ]]; then
    sql "ALTER ROLE pgexporter LOGIN PASSWORD '$EXPORTER_PASSWORD'" >/dev/null
    sql "SET client_min_messages = warning; GRANT pg_monitor TO pgexporter" >/dev/null
else
    sql "CREATE ROLE pgexporter LOGIN PASSWORD '$EXPORTER_PASSWORD' IN ROLE pg_monitor" >/dev/null
    BENCH_CLEANUPS+=("'${PSQL[0]}' -X -q -d '$DB' -c 'DROP ROLE IF EXISTS pgexporter'")
fi
sql "SET client_min_messages = warning; CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null

# ------------------------------------------------------------------ Telltale and the exporter
cat >"$WORK/telltale.yml" <<EOF
server:
  listen: "127.0.0.1:$BENCH_TELLTALE_PORT"
log:
  level: warning
collectors:
  process: {enabled: false}
  host: {enabled: false}
postgres:
  - name: app
    dsn: \${TELLTALE_PG_DSN}
    interval: ${LOAD_INTERVAL}s
    health:
      enabled: true
      database_size: {enabled: true, interval: ${LOAD_INTERVAL}s}
EOF
"$TELLTALE_BIN" check-config --config "$WORK/telltale.yml" >/dev/null
start_bg "$WORK/telltale.log" "$TELLTALE_BIN" serve --config "$WORK/telltale.yml"

EXPORTER_FLAGS=(--web.listen-address="127.0.0.1:$BENCH_PG_EXPORTER_PORT" --no-collector.bgwriter --log.level=warn)
start_bg "$WORK/exporter.log" env \
    DATA_SOURCE_NAME="postgresql://pgexporter:$EXPORTER_PASSWORD@127.0.0.1:$TELLTALE_PG_PORT/$DB?sslmode=disable" \
    "$EXPORTER" "${EXPORTER_FLAGS[@]}"
wait_http "http://127.0.0.1:$BENCH_TELLTALE_PORT/readyz"
wait_http "$EX_URL"
[[ "$(metric_sum "$TT_URL" telltale_pg_up)" == 1 ]] || bdie "Telltale: telltale_pg_up is not 1 (log: $WORK/telltale.log)"
[[ "$(metric_sum "$EX_URL" pg_up)" == 1 ]] || bdie "exporter: pg_up is not 1 (log: $WORK/exporter.log)"
TT_SERIES=$(curl -fsS "$TT_URL" | grep -c '^telltale_pg_' || true)
EX_SERIES=$(curl -fsS "$EX_URL" | grep -c '^pg_' || true)
# Reference: nginx serving a static copy of Telltale's body (the machine's floor).
TARGETS=(telltale="$TT_URL" exporter="$EX_URL")
if command -v nginx >/dev/null && port_free "$BENCH_NGINX_PORT"; then
    save_gzip_body "$TT_URL" "$WORK/body.gz"
    start_nginx_static "$WORK/nginx" "$BENCH_NGINX_PORT" "$WORK/body.gz"
    TARGETS+=(nginx="http://127.0.0.1:$BENCH_NGINX_PORT/metrics")
fi
python3 "$HERE/scrape.py" --n 5 "${PROM_HEADERS[@]}" "${TARGETS[@]}" >/dev/null   # warm-up

# ------------------------------------------------------------------ 1. idle
blog "phase 1: $SCRAPES alternating scrapes each, database idle"
python3 "$HERE/scrape.py" --n "$SCRAPES" --gap "$SCRAPE_GAP" --max-seconds 60 "${PROM_HEADERS[@]}" \
    "${TARGETS[@]}" >"$WORK/idle.json"

# ------------------------------------------------------------------ 2. pgbench load
PGB=("$PGBENCH" -h "$TELLTALE_PG_SOCKET_DIR" -p "$TELLTALE_PG_PORT" -U postgres)
if [[ -z "$(sql "SELECT to_regclass('public.pgbench_accounts')")" ]]; then
    blog "pgbench -i -s $PGBENCH_SCALE"
    "${PGB[@]}" -i -q -s "$PGBENCH_SCALE" "$DB" >"$WORK/pgbench-init.log" 2>&1 || bdie "pgbench -i failed: $(tail -5 "$WORK/pgbench-init.log")"
    BENCH_CLEANUPS+=("'$PGBENCH' -h '$TELLTALE_PG_SOCKET_DIR' -p '$TELLTALE_PG_PORT' -U postgres -i -I d '$DB'")
fi
blog "phase 2: pgbench -c 8 -j 2 -T $LOAD_SECONDS, scraping alternately meanwhile"
start_bg "$WORK/pgbench.log" "${PGB[@]}" -c 8 -j 2 -T "$LOAD_SECONDS" -n "$DB"
PGBENCH_PID=$BG_PID
sleep 3
python3 "$HERE/scrape.py" --n "$SCRAPES" --gap "$SCRAPE_GAP" --max-seconds $((LOAD_SECONDS - 8)) "${PROM_HEADERS[@]}" \
    "${TARGETS[@]}" >"$WORK/load.json"
wait "$PGBENCH_PID" || bdie "pgbench failed: $(tail -5 "$WORK/pgbench.log")"
PGBENCH_TPS=$(awk '/^tps = / {printf "%.0f", $3; exit}' "$WORK/pgbench.log")

# ------------------------------------------------------------------ 3. query load at 15 s
blog "phase 3: query load over ${LOAD_WINDOW}s (exporter scraped every ${LOAD_INTERVAL}s; Telltale interval ${LOAD_INTERVAL}s)"
sleep 2
sample_backends() {  # every second: role, pid, cumulative CPU time (ns, schedstat) of each backend
    while :; do
        "${PSQL[@]}" -d "$DB" -F ' ' -c "SELECT usename, pid FROM pg_stat_activity WHERE usename IN ('telltale', 'pgexporter')" 2>/dev/null |
            while read -r role pid; do
                [[ -r /proc/$pid/schedstat ]] && printf '%s %s %s\n' "$role" "$pid" "$(awk '{print $1}' "/proc/$pid/schedstat")"
            done
        sleep 1
    done
}
sql "SELECT pg_stat_statements_reset()" >/dev/null
LOAD_T0=$(date +%s.%N)
start_bg "$WORK/backends.txt" bash -c "$(declare -f sample_backends); PSQL=($(printf '%q ' "${PSQL[@]}")); DB=$(printf '%q' "$DB"); sample_backends"
SAMPLER_PID=$BG_PID
LOAD_SCRAPES=$((LOAD_WINDOW / LOAD_INTERVAL))
python3 "$HERE/scrape.py" --n "$LOAD_SCRAPES" --interval "$LOAD_INTERVAL" "${PROM_HEADERS[@]}" exporter="$EX_URL" >"$WORK/window.json"
remaining=$(calc "max(0, $LOAD_T0 + $LOAD_WINDOW - $(date +%s.%N))")
sleep "$remaining"
stop_pid "$SAMPLER_PID"
"${PSQL[@]}" -d "$DB" -F '|' -c "
    SELECT r.rolname, sum(s.calls), round(sum(s.total_exec_time)::numeric, 2), sum(s.rows), count(*)
    FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
    WHERE r.rolname IN ('telltale', 'pgexporter') GROUP BY 1" >"$WORK/statements.txt"
"${PSQL[@]}" -d "$DB" -F $'\t' -c "
    SELECT rolname, calls, round(total_exec_time::numeric, 2),
           replace(left(regexp_replace(query, '\s+', ' ', 'g'), 90), '|', '\|')
    FROM (SELECT r.rolname, s.*, row_number() OVER (PARTITION BY r.rolname ORDER BY s.total_exec_time DESC) AS n
          FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
          WHERE r.rolname IN ('telltale', 'pgexporter')) t
    WHERE n <= 5 ORDER BY rolname DESC, total_exec_time DESC" >"$WORK/top.txt"
TT_RUNS_HEALTH=$(metric_sum "$TT_URL" telltale_collector_duration_seconds_count 'collector="postgres:app"')
TT_HEALTH_MS=$(calc "round($(metric_sum "$TT_URL" telltale_collector_duration_seconds_sum 'collector="postgres:app"') / $TT_RUNS_HEALTH * 1000, 2)")
TT_SIZE_RUNS=$(metric_sum "$TT_URL" telltale_collector_duration_seconds_count 'collector="postgres_size:app"')
TT_SIZE_MS=$(calc "round($(metric_sum "$TT_URL" telltale_collector_duration_seconds_sum 'collector="postgres_size:app"') / $TT_SIZE_RUNS * 1000, 2)")

# ------------------------------------------------------------------ report
python3 - "$WORK" >"$WORK/tables.md" <<'EOF'
import json, sys
work = sys.argv[1]
def lat_rows(phase, label):
    data = json.load(open(f"{work}/{phase}.json"))
    t, e = data["telltale"], data["exporter"]
    ratio = e["p99_ms"] / t["p99_ms"] if t["p99_ms"] else float("inf")
    verdict = "**met**" if ratio >= 10 else "**not met**"
    rows = []
    pairs = [("Telltale", t), ("postgres_exporter", e)]
    if "nginx" in data:
        pairs.append(("*nginx, static copy of Telltale's body (reference)*", data["nginx"]))
    for name, d in pairs:
        rows.append(f"| {label} | {name} | {d['n']} | {d['p50_ms']:.2f} | {d['p90_ms']:.2f} | **{d['p99_ms']:.2f}** | "
                    f"{d['max_ms']:.2f} | {d['mean_ms']:.2f} | {d['bytes']} | {d['errors']} |")
    return rows, f"{label}: exporter p99 ÷ Telltale p99 = **{ratio:.1f}×** (target ≥ 10×: {verdict})"
print("| database | server | scrapes | p50 ms | p90 ms | p99 ms | max ms | mean ms | body bytes (gzip) | errors |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
verdicts = []
for phase, label in (("idle", "idle"), ("load", "pgbench load")):
    rows, v = lat_rows(phase, label)
    print("\n".join(rows)); verdicts.append(v)
print()
for v in verdicts: print(f"- {v}")
print("@@SPLIT@@")
stats = {}
for line in open(f"{work}/statements.txt"):
    role, calls, ms, rows, n = line.strip().split("|")
    stats[role] = (int(calls), float(ms), int(rows), int(n))
cpu, pids = {}, {}
for line in open(f"{work}/backends.txt"):
    parts = line.split()
    if len(parts) != 3: continue
    role, pid, ticks = parts[0], parts[1], int(parts[2])
    lo, hi = cpu.setdefault((role, pid), [ticks, ticks])
    cpu[(role, pid)] = [min(lo, ticks), max(hi, ticks)]
    pids.setdefault(role, set()).add(pid)
def backend_cpu(role):
    return sum(hi - lo for (r, _), (lo, hi) in cpu.items() if r == role) / 1e6
print("| role | statements (calls) | distinct statements | rows returned | total_exec_time ms | backend CPU ms | backends seen |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for role, name in (("telltale", "Telltale (`telltale`)"), ("pgexporter", "postgres_exporter (`pgexporter`)")):
    calls, ms, rows, n = stats.get(role, (0, 0.0, 0, 0))
    print(f"| {name} | {calls} | {n} | {rows} | **{ms:.2f}** | {backend_cpu(role):.1f} | {len(pids.get(role, ()))} |")
t, e = stats.get("telltale", (0, 0.0, 0, 0)), stats.get("pgexporter", (0, 0.0, 0, 0))
ok = t[0] <= e[0] and t[1] <= e[1]
def ratio(a, b):
    return f"{a / b:.2f}" if b else "n/a"
print()
print(f"- Telltale ÷ exporter: calls {ratio(t[0], e[0])}, total_exec_time {ratio(t[1], e[1])}, "
      f"backend CPU {ratio(backend_cpu('telltale'), backend_cpu('pgexporter'))} "
      f"(target, calls and time no higher than the exporter's: {'**met**' if ok else '**not met**'})")
EOF
LAT_TABLE="$(sed '/@@SPLIT@@/,$d' "$WORK/tables.md")"
LOAD_TABLE="$(sed '1,/@@SPLIT@@/d' "$WORK/tables.md")"
WINDOW_SCRAPES=$(python3 -c "import json; print(json.load(open('$WORK/window.json'))['exporter']['n'])")

SECTION="$WORK/section.md"
{
    echo "## Postgres: Telltale versus postgres_exporter"
    echo
    echo "Command: \`$BENCH_COMMAND\`"
    echo
    machine_info
    echo "- PostgreSQL $("$TELLTALE_PG_BIN/postgres" --version | awk '{print $3}'), postgres_exporter $(pkg_version prometheus-postgres-exporter) (Debian), pgbench from the same PostgreSQL"
    echo
    echo "Both watch the same database over TCP on loopback. Coverage:"
    echo
    echo "- Telltale: a postgres target with \`health\` (up, version, recovery, max_connections, connections by"
    echo "  database and state, oldest transaction, replication lag and slots, locks by mode, \`pg_stat_database\`"
    echo "  counters) and \`database_size\`; process and host collectors off. $TT_SERIES \`telltale_pg_*\` samples."
    echo "- postgres_exporter: \`${EXPORTER} ${EXPORTER_FLAGS[*]}\`, i.e. its default metrics (\`pg_stat_database\`,"
    echo "  \`pg_stat_activity\`, \`pg_locks\`, \`pg_stat_replication\`, \`pg_replication_slots\`, \`pg_stat_archiver\`,"
    echo "  \`pg_settings\` — which gives max_connections — version, up) and the database-size collector; only the"
    echo "  bgwriter collector (no Telltale counterpart) off. $EX_SERIES \`pg_*\` samples. Role \`pgexporter\`, member of \`pg_monitor\`."
    echo
    echo "### Scrape latency"
    echo
    echo "Sequential scrapes (\`scripts/bench/scrape.py --gap $SCRAPE_GAP\`), taking turns with a ${SCRAPE_GAP} s pause before each"
    echo "(so every scrape meets an idle server, as Prometheus' do), one keep-alive connection each, with Prometheus'"
    echo "\`Accept\` (OpenMetrics preferred) and \`Accept-Encoding: gzip\` headers; time to the last body byte. For"
    echo "reference, nginx $(nginx -v 2>&1 | sed 's/.*nginx\///') takes turns too, serving a static copy of Telltale's body (\`gzip_static\`): the floor"
    echo "of this machine for a request that does no work."
    echo "Under load: \`pgbench -c 8 -j 2 -T $LOAD_SECONDS -n\` (TPC-B-like, scale $PGBENCH_SCALE) ran at $PGBENCH_TPS tps meanwhile."
    echo
    echo "$LAT_TABLE"
    echo
    echo "### Query load on the database at a ${LOAD_INTERVAL} s cadence"
    echo
    echo "Over ${LOAD_WINDOW} s after \`pg_stat_statements_reset()\` (\`pg_stat_statements.track = all\`), database idle:"
    echo "the exporter scraped $WINDOW_SCRAPES times, every ${LOAD_INTERVAL} s; Telltale running with \`interval: ${LOAD_INTERVAL}s\` and, to be"
    echo "conservative, \`database_size.interval: ${LOAD_INTERVAL}s\` (its default is 5 m). Backend CPU: user + system time of each role's"
    echo "backend processes, sampled every second from \`/proc/PID/schedstat\` (it includes parsing, planning and protocol work that"
    echo "\`total_exec_time\` leaves out)."
    echo
    echo "$LOAD_TABLE"
    echo "- Telltale's own view: health run $TT_HEALTH_MS ms on average ($TT_RUNS_HEALTH runs), database size $TT_SIZE_MS ms ($TT_SIZE_RUNS runs)"
    echo "  — one round trip each; every statement of a target goes over one kept connection."
    echo
    echo "<details><summary>Top statements per role (by total_exec_time)</summary>"
    echo
    echo "| role | calls | total ms | statement |"
    echo "| --- | --- | --- | --- |"
    awk -F'\t' '{printf "| %s | %s | %s | `%s` |\n", $1, $2, $3, $4}' "$WORK/top.txt"
    echo
    echo "</details>"
} >"$SECTION"

cat "$SECTION"
write_section "$SECTION"
