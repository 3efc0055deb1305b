#!/usr/bin/env bash
# scripts/bench/renders.sh — renders of the exposition per idle minute on an alerting leader.
#
# Two `telltale serve` run side by side, this build and PEER_BIN (the build to compare with,
# typically the previous commit's), each the alerting leader of its own database with one
# rule that never fires, the process and host collectors off: nothing changes. After both
# lead, telltale_render_duration_seconds_count is read at the start and end of MINUTES
# minutes; each render re-encodes, re-deflates and trims memory, so an idle leader should
# render (next to) nothing.
#
# Usage: PEER_BIN=/path/to/previous/telltale [PEER_LABEL="abc1234, before X"] scripts/bench/renders.sh
#        MINUTES (1), BENCH_TIMEOUT (240). A render count does not depend on the build mode, so
#        debug builds of both (TELLTALE_BIN=.build/debug/telltale) measure the same thing.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BENCH_COMMAND="PEER_BIN=… scripts/bench/renders.sh"
BENCH_TIMEOUT="${BENCH_TIMEOUT:-240}"
# shellcheck source=lib.sh disable=SC1091
. "$HERE/lib.sh"
bench_init renders 27432 27379
[[ -x ${PEER_BIN:-} ]] || bdie "set PEER_BIN to the Telltale binary to compare with"
cp -p "$PEER_BIN" "$WORK/peer"
PEER_BIN="$WORK/peer"
bench_services
MINUTES="${MINUTES:-1}"
PEER_PORT=$((BENCH_TELLTALE_PORT + 1))
require_free_port "$BENCH_TELLTALE_PORT"
require_free_port "$PEER_PORT"

# start NAME BINARY PORT DATABASE — a leader of its own database, in the background.
start() {
    local name="$1" bin="$2" port="$3" database="$4"
    "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $database" -c "CREATE DATABASE $database OWNER $TELLTALE_PG_USER" >&2
    cat >"$WORK/$name.yml" <<YAML
log: {level: error}
collectors:
  process: {enabled: false}
  host: {enabled: false}
alerting:
  dsn: "postgres://$TELLTALE_PG_USER:$TELLTALE_PG_PASSWORD@127.0.0.1:$TELLTALE_PG_PORT/$database"
YAML
    "$bin" migrate --config "$WORK/$name.yml" >&2
    "${PSQL[@]}" -d "$database" -c "INSERT INTO telltale_alert_rules (name, environment, metric, comparison, threshold)
        VALUES ('never', 'any', 'telltale_build_info', '>', 1e12)" >&2
    start_bg "$WORK/$name.log" "$bin" serve --config "$WORK/$name.yml" --listen "127.0.0.1:$port"
    wait_http "http://127.0.0.1:$port/healthz"
}
renders() { metric_sum "http://127.0.0.1:$1/metrics" telltale_render_duration_seconds_count; }
leader() { metric_sum "http://127.0.0.1:$1/metrics" telltale_alerting_leader; }

start current "$TELLTALE_BIN" "$BENCH_TELLTALE_PORT" bench_renders_current
start peer "$PEER_BIN" "$PEER_PORT" bench_renders_peer
for _ in $(seq 150); do [[ $(leader "$BENCH_TELLTALE_PORT") == 1 && $(leader "$PEER_PORT") == 1 ]] && break; sleep 0.2; done
[[ $(leader "$BENCH_TELLTALE_PORT") == 1 && $(leader "$PEER_PORT") == 1 ]] || bdie "both must lead their database"
# Past the first evaluation and reload, so that only the idle state is measured.
sleep 5
CURRENT_START="$(renders "$BENCH_TELLTALE_PORT")"
PEER_START="$(renders "$PEER_PORT")"
blog "measuring $MINUTES idle minute(s)"
sleep $((MINUTES * 60))
CURRENT_END="$(renders "$BENCH_TELLTALE_PORT")"
PEER_END="$(renders "$PEER_PORT")"
CURRENT="$(calc "($CURRENT_END - $CURRENT_START) / $MINUTES")"
PEER="$(calc "($PEER_END - $PEER_START) / $MINUTES")"
{
    echo "## Renders per idle minute on an alerting leader"
    echo
    echo "Command: \`$BENCH_COMMAND\` (MINUTES=$MINUTES). Both binaries ran side by side in this run, each"
    echo "leading the alerting of its own database with one rule that never fires, no collectors."
    echo
    machine_info
    echo "- Peer: $("$PEER_BIN" --version 2>&1 | head -n1), ${PEER_LABEL:-the binary at PEER_BIN}"
    echo
    echo "| build | renders per idle minute |"
    echo "| --- | --- |"
    echo "| this build | $CURRENT |"
    echo "| peer | $PEER |"
    echo
    echo "Target: at least 5× fewer than the peer."
} >"$WORK/report.md"
cat "$WORK/report.md"
write_section "$WORK/report.md"
