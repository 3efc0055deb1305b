#!/usr/bin/env bash
# scripts/bench/alert-latency.sh — alert latency: a row committed in PostgreSQL → a local
# receiver holding the message, Telltale alone against Prometheus + Alertmanager, in one run.
#
# One Telltale reads a business table, bench_level(trial, v), as the gauge
# bench_level{trial} (a SQL metric every LATENCY_SQL_INTERVAL seconds, 15 by default). The
# same alert, "bench_level > 50, no `for`", reaches the receiver (latency_receiver.py) by two
# paths side by side:
#   (a) Telltale alone: a row of telltale_alert_rules and a webhook row of telltale_channels
#       with the default grouping (group_wait 0); Telltale evaluates after each collection;
#   (b) Prometheus scraping that Telltale's /metrics every PROM_INTERVAL (15 s), evaluating
#       every PROM_INTERVAL the repository's alerts/*.rules.yml plus the equivalent rule
#       (`bench_level > 50`) and alerting to Alertmanager with group_wait 30s,
#       group_interval 5m, repeat_interval 4h, routing to a webhook.
# Both send Alertmanager's webhook format; the receiver notes when each alert first arrives.
#
# Trial k (1…LATENCY_TRIALS) commits `UPDATE bench_level SET v = 100 WHERE trial = k`
# (k−½)/LATENCY_TRIALS of a collection interval after one of Telltale's collections (phases
# spread evenly, instead of random ones, so that few trials still cover the interval), waits
# for the firing message of both paths, commits v = 0 at the same point of the interval and
# waits for Telltale's resolved message. The commit time is PostgreSQL's clock_timestamp() in
# the UPDATE. Each trial has its own row, so its own series and alert (label `trial`), and
# Alertmanager groups by [alertname, trial]: every trial is a new group's first notification,
# Alertmanager's best case (an alert joining a group already notified waits for
# group_interval instead), and nothing carries over from one trial into the next. Alertmanager
# sends a resolved alert only at the group's next flush, group_interval (5 m) after the firing
# one, so its resolved latency is that by design; the ones that arrive before the run ends
# are reported.
#
# Usage: scripts/bench/alert-latency.sh
#   LATENCY_TRIALS (6), LATENCY_SQL_INTERVAL (15 s: Telltale's SQL metric and alerting.interval),
#   PROM_INTERVAL (15 s: scrape and evaluation), AM_GROUP_WAIT (30s), AM_GROUP_INTERVAL (5m),
#   AM_REPEAT_INTERVAL (4h), BENCH_TIMEOUT (600). Ports (127.0.0.1): BENCH_TELLTALE_PORT (28500),
#   BENCH_PROMETHEUS_PORT (28501), BENCH_ALERTMANAGER_PORT (28502), BENCH_RECEIVER_PORT (28503);
#   PostgreSQL 28432, Redis 28379 (TELLTALE_PG_PORT, TELLTALE_REDIS_PORT).
# With the defaults a run takes about 7.5 minutes: each trial waits for Alertmanager's group_wait.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BENCH_COMMAND="scripts/bench/alert-latency.sh"
BENCH_TIMEOUT="${BENCH_TIMEOUT:-600}"
BENCH_TELLTALE_PORT="${BENCH_TELLTALE_PORT:-28500}"
# shellcheck source=lib.sh
. "$HERE/lib.sh"
bench_init alert-latency 28432 28379

TRIALS="${LATENCY_TRIALS:-6}"
SQL_INTERVAL="${LATENCY_SQL_INTERVAL:-15}"
PROM_INTERVAL="${PROM_INTERVAL:-15}"
AM_GROUP_WAIT="${AM_GROUP_WAIT:-30s}"
AM_GROUP_INTERVAL="${AM_GROUP_INTERVAL:-5m}"
AM_REPEAT_INTERVAL="${AM_REPEAT_INTERVAL:-4h}"
PROM_PORT="${BENCH_PROMETHEUS_PORT:-28501}"
AM_PORT="${BENCH_ALERTMANAGER_PORT:-28502}"
RX_PORT="${BENCH_RECEIVER_PORT:-28503}"
PROMETHEUS=/usr/bin/prometheus
ALERTMANAGER=/usr/bin/prometheus-alertmanager
[[ -x $PROMETHEUS ]] || bdie "$PROMETHEUS not found (Debian package prometheus)"
[[ -x $ALERTMANAGER ]] || bdie "$ALERTMANAGER not found (Debian package prometheus-alertmanager)"
for port in "$BENCH_TELLTALE_PORT" "$PROM_PORT" "$AM_PORT" "$RX_PORT"; do require_free_port "$port"; done
TT_URL="http://127.0.0.1:$BENCH_TELLTALE_PORT"
PROM_URL="http://127.0.0.1:$PROM_PORT"
AM_URL="http://127.0.0.1:$AM_PORT"
RX_URL="http://127.0.0.1:$RX_PORT"
RULE=BenchLevelHigh
SQL_COLLECTOR="sql:app:bench_level"

# ------------------------------------------------------------------ database, receiver, Telltale
bench_services
DB=bench_alert_latency
"${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB OWNER $TELLTALE_PG_USER"
BENCH_CLEANUPS+=("'${PSQL[0]}' -X -q -d postgres -c 'DROP DATABASE IF EXISTS $DB WITH (FORCE)'")
sql() { "${PSQL[@]}" -d "$DB" -c "$1"; }
sql "CREATE TABLE bench_level (trial int PRIMARY KEY, v double precision NOT NULL);
     ALTER TABLE bench_level OWNER TO $TELLTALE_PG_USER;
     INSERT INTO bench_level SELECT k, 0 FROM generate_series(1, $TRIALS) k"

start_bg "$WORK/receiver.log" python3 "$HERE/latency_receiver.py" --listen "127.0.0.1:$RX_PORT"
wait_http "$RX_URL/log"

cat >"$WORK/telltale.yml" <<EOF
log: {level: warning}
collectors:
  process: {enabled: false}
  host: {enabled: false}
postgres:
  - name: app
    dsn: \${BENCH_DSN}
    interval: ${SQL_INTERVAL}s
    queries:
      - metric: bench_level
        help: The benchmark's business value, one series per trial.
        sql: SELECT trial::text AS trial, v FROM bench_level
        labels: [trial]
        values: [v]
alerting:
  dsn: \${BENCH_DSN}
  interval: ${SQL_INTERVAL}s
EOF
export BENCH_DSN="postgres://$TELLTALE_PG_USER:$TELLTALE_PG_PASSWORD@127.0.0.1:$TELLTALE_PG_PORT/$DB"
export TELLTALE_CHANNEL_BENCH="$RX_URL/telltale"
"$TELLTALE_BIN" migrate --config "$WORK/telltale.yml" >&2
sql "INSERT INTO telltale_channels (name, kind, url_env) VALUES ('bench', 'webhook', 'TELLTALE_CHANNEL_BENCH');
     INSERT INTO telltale_alert_rules (name, environment, metric, comparison, threshold, severity, channel, description)
     VALUES ('$RULE', 'production', 'bench_level', '>', 50, 'critical', 'bench', 'bench_level is above 50')"
start_bg "$WORK/telltale.log" "$TELLTALE_BIN" serve --config "$WORK/telltale.yml" --listen "127.0.0.1:$BENCH_TELLTALE_PORT"
wait_http "$TT_URL/readyz" 60

# ------------------------------------------------------------------ Prometheus and Alertmanager
cat >"$WORK/bench.rules.yml" <<EOF
# Telltale's rule row, written in PromQL (no \`for\`, as the row's for_seconds 0).
groups:
  - name: bench.latency
    rules:
      - alert: $RULE
        expr: bench_level > 50
        labels:
          severity: critical
        annotations:
          summary: bench_level is above 50
EOF
{
    echo "global: {scrape_interval: ${PROM_INTERVAL}s, evaluation_interval: ${PROM_INTERVAL}s, scrape_timeout: $((PROM_INTERVAL < 10 ? PROM_INTERVAL : 10))s}"
    echo "rule_files:"
    for f in "$BENCH_REPO"/alerts/*.rules.yml "$WORK/bench.rules.yml"; do echo "  - $f"; done
    echo "alerting: {alertmanagers: [{static_configs: [{targets: ['127.0.0.1:$AM_PORT']}]}]}"
    echo "scrape_configs: [{job_name: telltale, static_configs: [{targets: ['127.0.0.1:$BENCH_TELLTALE_PORT']}]}]"
} >"$WORK/prometheus.yml"
cat >"$WORK/alertmanager.yml" <<EOF
route:
  receiver: bench
  group_by: [alertname, trial]
  group_wait: $AM_GROUP_WAIT
  group_interval: $AM_GROUP_INTERVAL
  repeat_interval: $AM_REPEAT_INTERVAL
receivers:
  - name: bench
    webhook_configs:
      - url: $RX_URL/alertmanager
        send_resolved: true
EOF
if command -v promtool >/dev/null; then
    promtool check config "$WORK/prometheus.yml" >"$WORK/promtool.log" 2>&1 || bdie "promtool: $(tail -3 "$WORK/promtool.log")"
fi
if command -v amtool >/dev/null; then
    amtool check-config "$WORK/alertmanager.yml" >"$WORK/amtool.log" 2>&1 || bdie "amtool: $(tail -3 "$WORK/amtool.log")"
fi
start_bg "$WORK/alertmanager.log" "$ALERTMANAGER" --config.file="$WORK/alertmanager.yml" \
    --storage.path="$WORK/alertmanager" --web.listen-address="127.0.0.1:$AM_PORT" \
    --cluster.listen-address= --log.level=warn
start_bg "$WORK/prometheus.log" "$PROMETHEUS" --config.file="$WORK/prometheus.yml" \
    --storage.tsdb.path="$WORK/prometheus" --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn
wait_http "$AM_URL/-/ready" 60
wait_http "$PROM_URL/-/ready" 60

# json URL EXPRESSION — EXPRESSION (Python, over the answer `j`) of a JSON answer; empty on failure.
json() {
    curl -fsS --max-time 5 "$1" 2>/dev/null | python3 -c "import json, sys; j = json.load(sys.stdin); print($2)" 2>/dev/null || true
}
tt_last_collection() {  # Unix time Telltale's SQL metric last finished a run
    curl -fsS --max-time 5 "$TT_URL/metrics" |
        awk -v key="telltale_collector_last_success_timestamp_seconds{collector=\"$SQL_COLLECTOR\"}" '$1 == key {print $2}'
}
blog "waiting until Telltale leads and Prometheus has the $TRIALS series and its Alertmanager"
deadline=$((SECONDS + 90))
until [[ "$(metric_sum "$TT_URL/metrics" telltale_alerting_leader)" == 1 &&
         "$(json "$PROM_URL/api/v1/query?query=count(bench_level)" "j['data']['result'][0]['value'][1]")" == "$TRIALS" &&
         "$(json "$PROM_URL/api/v1/alertmanagers" "len(j['data']['activeAlertmanagers'])")" == 1 ]]; do
    ((SECONDS < deadline)) || bdie "not ready after 90 s (logs in $WORK)"
    sleep 1
done

# ------------------------------------------------------------------ trials
# commit_level TRIAL VALUE [AT] — sets the row (at Unix time AT, waiting in the session
# already open) and prints the server's clock when the UPDATE ran, just before its commit.
# Both the wait and the clock are the server's: the time a psql takes to start and connect
# would shift the commit and, read after psql returns, the clock by up to a second on a busy
# machine.
commit_level() {
    "${PSQL[@]}" -d "$DB" -c "SELECT pg_sleep(greatest(0, ${3:-0} - extract(epoch FROM clock_timestamp())))" \
        -c "UPDATE bench_level SET v = $2 WHERE trial = $1 RETURNING extract(epoch FROM clock_timestamp())" | tail -n1
}
# await PATH TRIAL STATUS UNTIL — "ARRIVAL STARTS_AT" from the receiver, "nan nan" if it has
# not come by Unix time UNTIL.
await() {
    local got
    while :; do
        if got="$(curl -fsS --max-time 2 "$RX_URL/first?path=$1&trial=$2&status=$3" 2>/dev/null)"; then
            echo "$got"; return
        fi
        [[ "$(calc "$(date +%s.%N) < $4")" == True ]] || { blog "no $3 message for trial $2 on $1"; echo "nan nan"; return; }
        sleep 0.2
    done
}
# at_phase PHASE — sets AT to the first Unix time at least 2 s from now that is PHASE s after
# one of Telltale's collections (they run at a fixed rate), and LAST to its last collection.
at_phase() {
    LAST="$(tt_last_collection)"
    [[ -n $LAST ]] || bdie "no telltale_collector_last_success_timestamp_seconds for $SQL_COLLECTOR"
    AT="$(calc "(lambda now: now + ($LAST + $1 - now) % $SQL_INTERVAL)($(date +%s.%N) + 2)")"
}
since() { calc "round(float('${2%% *}') - $1, 2)"; }   # since START "ARRIVAL STARTS_AT"
# Upper bounds: Telltale sees a commit at its next collection; Prometheus also needs a scrape,
# an evaluation and group_wait.
AM_GROUP_WAIT_S="$(calc "float('${AM_GROUP_WAIT%[smh]}') * {'s': 1, 'm': 60, 'h': 3600}['${AM_GROUP_WAIT: -1}']")"
TT_BOUND=$((2 * SQL_INTERVAL + 15))
AM_BOUND=$((SQL_INTERVAL + 2 * PROM_INTERVAL + ${AM_GROUP_WAIT_S%.*} + 45))
printf 'trial\tphase\tup\ttt_fire\ttt_starts\tam_fire\tam_starts\tdown\ttt_resolved\ttt_resolved_starts\n' >"$WORK/trials.tsv"
for ((k = 1; k <= TRIALS; k++)); do
    phase="$(calc "($k - 0.5) / $TRIALS * $SQL_INTERVAL")"
    at_phase "$phase"
    blog "trial $k/$TRIALS: commit at $(date -u -d "@$AT" +%T.%2N), $(calc "round($phase, 2)") s after a collection of Telltale's"
    up="$(commit_level "$k" 100 "$AT")"
    phase="$(calc "($up - $LAST) % $SQL_INTERVAL")"   # as it happened
    tt_fire="$(await /telltale "$k" firing "$(calc "$up + $TT_BOUND")")"
    am_fire="$(await /alertmanager "$k" firing "$(calc "$up + $AM_BOUND")")"
    at_phase "$phase"   # the same point of the interval, not just after Alertmanager's message
    down="$(commit_level "$k" 0 "$AT")"
    tt_resolved="$(await /telltale "$k" resolved "$(calc "$down + $TT_BOUND")")"
    blog "trial $k: Telltale $(since "$up" "$tt_fire") s, Prometheus + Alertmanager $(since "$up" "$am_fire") s"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$k" "$phase" "$up" "${tt_fire// /$'\t'}" "${am_fire// /$'\t'}" "$down" "${tt_resolved// /$'\t'}" >>"$WORK/trials.tsv"
done

# Offsets of Prometheus' schedules (fixed within a run): its last scrape of Telltale and the
# benchmark group's last evaluation, and Telltale's last collection; resolved messages of
# Alertmanager that came during the run.
curl -fsS --max-time 5 "$PROM_URL/api/v1/targets" >"$WORK/targets.json"
curl -fsS --max-time 5 "$PROM_URL/api/v1/rules" >"$WORK/rules.json"
tt_last_collection >"$WORK/tt-last-collection.txt"
curl -fsS --max-time 5 "$RX_URL/log" >"$WORK/receiver-log.json"

# ------------------------------------------------------------------ report
python3 - "$WORK" "$HERE" "$SQL_INTERVAL" "$PROM_INTERVAL" "$AM_GROUP_WAIT_S" >"$WORK/results.md" <<'EOF'
import csv, json, math, statistics, sys
work, here, sql_interval, prom_interval, group_wait = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:6])
sys.path.insert(0, here)
from latency_receiver import unix_seconds

rows = list(csv.DictReader(open(f"{work}/trials.tsv"), delimiter="\t"))
log = json.load(open(f"{work}/receiver-log.json"))
am_resolved = {}
for request in log:
    for trial, status in request["alerts"]:
        if request["path"] == "/alertmanager" and status == "resolved":
            am_resolved.setdefault(trial, request["received"])

def lat(row, key, start):
    return float(row[key]) - float(row[start])
def fmt(x):
    return "—" if math.isnan(x) else f"{x:.1f} s"

tt_fire = [lat(r, "tt_fire", "up") for r in rows]
am_fire = [lat(r, "am_fire", "up") for r in rows]
am_active = [lat(r, "am_starts", "up") for r in rows]
tt_res = [lat(r, "tt_resolved", "down") for r in rows]
am_res = [am_resolved[r["trial"]] - float(r["down"]) if r["trial"] in am_resolved else math.nan for r in rows]

print("| trial | commit after a Telltale collection | Telltale: firing message | Prometheus + Alertmanager: firing message | of which until Prometheus' alert is active (`startsAt`) | Telltale: resolved message |")
print("| --- | --- | --- | --- | --- | --- |")
for r, a, b, c, d in zip(rows, tt_fire, am_fire, am_active, tt_res):
    print(f"| {r['trial']} | {float(r['phase']):.1f} s | {fmt(a)} | {fmt(b)} | {fmt(c)} | {fmt(d)} |")

def summary(xs):
    good = [x for x in xs if not math.isnan(x)]
    missing = len(xs) - len(good)
    if not good:
        return math.nan, math.nan, missing
    return statistics.median(good), max(good), missing

(tm, tx, tmiss), (am, ax, amiss), (rm, rx, rmiss) = summary(tt_fire), summary(am_fire), summary(tt_res)
print()
print("| path | firing: median | firing: max | resolved: median | resolved: max | messages missing |")
print("| --- | --- | --- | --- | --- | --- |")
print(f"| Telltale alone | **{fmt(tm)}** | {fmt(tx)} | {fmt(rm)} | {fmt(rx)} | {tmiss + rmiss} |")
got = [x for x in am_res if not math.isnan(x)]
resolved = "none arrived during the run"
if got:
    spread = f"{min(got):.0f} s" if len(got) == 1 else f"{min(got):.0f}–{max(got):.0f} s"
    resolved = f"{len(got)} of {len(rows)} arrived during the run, {spread} after the commit"
print(f"| Prometheus + Alertmanager | **{fmt(am)}** | {fmt(ax)} | at the group's next flush, `group_interval` after the firing message ({resolved}) | | {amiss} |")
print()
ratio_median, ratio_max = tm / am, tx / ax
verdict = "met" if ratio_median <= 1 / 3 else "**not met**"
print(f"Telltale ÷ Prometheus + Alertmanager, firing: **{ratio_median:.2f}** of the median, {ratio_max:.2f} of the maximum "
      f"(target: at most 1/3 ≈ 0.33: {verdict}).")

# Where Prometheus' path spends its time. Its scrapes and evaluations tick every prom_interval at
# offsets fixed for the run, so one run shows one set of offsets.
targets = json.load(open(f"{work}/targets.json"))["data"]["activeTargets"]
scrape = unix_seconds(targets[0]["lastScrape"])
groups = json.load(open(f"{work}/rules.json"))["data"]["groups"]
evaluation = unix_seconds(next(g for g in groups if g["name"] == "bench.latency")["lastEvaluation"])
collection = float(open(f"{work}/tt-last-collection.txt").read())
scrape_after = (scrape - collection) % prom_interval
eval_after = (evaluation - scrape) % prom_interval
after_active = summary([b - c for b, c in zip(am_fire, am_active)])[0]
at_average = am + prom_interval - scrape_after - eval_after
print()
print(f"In this run Prometheus scraped Telltale {scrape_after:.1f} s after each of Telltale's collections and "
      f"evaluated the rules {eval_after:.1f} s after each scrape (each of these offsets is fixed within a run and "
      f"averages half of {prom_interval:.0f} s over runs); Alertmanager's message came a median {after_active:.1f} s "
      f"after Prometheus' alert became active (`group_wait` {group_wait:.0f} s, then Prometheus' delivery to "
      f"Alertmanager and the webhook). With both offsets at their average, the median of Prometheus + "
      f"Alertmanager would be about {at_average:.1f} s (ratio {tm / at_average:.2f}).")
EOF

{
    echo "## Alert latency: Telltale against Prometheus + Alertmanager"
    echo
    echo "Command: \`$BENCH_COMMAND\` (LATENCY_TRIALS=$TRIALS, LATENCY_SQL_INTERVAL=$SQL_INTERVAL, PROM_INTERVAL=$PROM_INTERVAL,"
    echo "AM_GROUP_WAIT=$AM_GROUP_WAIT, AM_GROUP_INTERVAL=$AM_GROUP_INTERVAL, AM_REPEAT_INTERVAL=$AM_REPEAT_INTERVAL)."
    echo
    machine_info
    echo "- Prometheus $(pkg_version prometheus), Alertmanager $(pkg_version prometheus-alertmanager), $("$TELLTALE_PG_BIN/postgres" --version | sed 's/^postgres (PostgreSQL) /PostgreSQL /'), receiver: Python $(python3 -c 'import platform; print(platform.python_version())') \`http.server\`"
    echo
    echo "Latency from the commit of a row in PostgreSQL (\`UPDATE bench_level SET v = 100 WHERE trial = k\`; the"
    echo "clock is the server's \`clock_timestamp()\` in the UPDATE, just before it commits) to a local webhook"
    echo "receiver holding the message (the clock read when its body is in), by two paths in"
    echo "the same run, from the same Telltale reading the table as the gauge \`bench_level{trial}\` every"
    echo "${SQL_INTERVAL} s:"
    echo
    echo "- **Telltale alone**: a rule row (\`bench_level > 50\`, \`for_seconds\` 0) and a webhook channel row with the"
    echo "  default grouping (\`group_wait_seconds\` 0); Telltale evaluates after each collection (\`alerting.interval\` ${SQL_INTERVAL}s)."
    echo "- **Prometheus + Alertmanager**: Prometheus scrapes that Telltale's \`/metrics\` and evaluates every ${PROM_INTERVAL} s the"
    echo "  repository's \`alerts/*.rules.yml\` and the same alert in PromQL (\`bench_level > 50\`, no \`for\`); Alertmanager"
    echo "  routes to a webhook with \`group_wait\` $AM_GROUP_WAIT, \`group_interval\` $AM_GROUP_INTERVAL, \`repeat_interval\` $AM_REPEAT_INTERVAL."
    echo
    echo "Trial k commits (k − ½)/$TRIALS of Telltale's collection interval after one of its collections (phases spread"
    echo "evenly over the interval), waits for both firing messages, sets the row back to 0 at the same point of"
    echo "the interval and waits for Telltale's resolved message. Each trial has its own row, hence its own series and alert (label \`trial\`), and"
    echo "Alertmanager groups by \`[alertname, trial]\`: every trial is a new group's first notification, Alertmanager's"
    echo "best case (an alert joining a group that was already notified waits for \`group_interval\`), and no state"
    echo "carries from one trial to the next."
    echo
    cat "$WORK/results.md"
    echo
    echo "Telltale's latency is the wait for its next collection (0 to ${SQL_INTERVAL} s, half on average) plus one"
    echo "evaluation and one delivery. Prometheus' path adds to that same wait a scrape and an evaluation (0 to"
    echo "${PROM_INTERVAL} s each) and \`group_wait\`; a shorter SQL interval shortens both paths by the same amount."
} >"$WORK/report.md"
cat "$WORK/report.md"
write_section "$WORK/report.md"
