#!/usr/bin/env bash
# scripts/bench/symbol-order.sh — regenerates scripts/symbol-order.txt: the functions the
# whole product runs, which scripts/build-release.sh lays out first and together in the
# binary (BENCHMARKS.md, "Resident memory").
#
# Why: the kernel maps a binary's code into a process by whole page-cache folios (up to
# 2 MiB) around each instruction that runs. Left in the linker's default order, the ~2.5 MB
# of functions that ever run are spread over all 25 MB of code, and most of it ends up
# resident. Packed together, they fill a few MiB.
#
# How: on the setup of scripts/bench/whole-product.sh (1,000 queues, 50 providers, 5 probes,
# 1,000 rules, 10,000 SQL series; held with BENCH_HOLD), with the release binary:
#   1. perf samples it for 30 s: the hottest functions, listed first (skipped without perf);
#   2. callgrind runs it twice and records every function that runs at all: with the
#      benchmark's configuration (valgrind's ~50x slowdown makes most sources time out: the
#      failure paths) and with 30 s timeouts and intervals (the success paths), while the
#      endpoints are asked for as Prometheus, a browser, a probe and the benchmark's wrk would.
# Functions that only other configurations run (TLS, Sentinel, e-mail…) keep the default
# order: they cost what they cost without an order file.
#
# Needs valgrind (apt-get install valgrind), perf optionally, and a release build
# (scripts/build-release.sh). Takes about 15 minutes. Knobs: PROFILE_SECONDS (240, each
# callgrind run). Re-run it when much code has moved (the whole-product benchmark's resident
# memory climbs back), then relink: rm -f .build/release/telltale && scripts/build-release.sh.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${TELLTALE_BIN:-$REPO/.build/release/telltale}"
OUT="$REPO/scripts/symbol-order.txt"
PROFILE_SECONDS="${PROFILE_SECONDS:-240}"
say() { printf '[symbol-order %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
command -v valgrind >/dev/null || die "valgrind not found (apt-get install valgrind)"
[[ -x $BIN ]] || die "no release binary at $BIN (scripts/build-release.sh)"
OBJCOPY="$(dirname "$(readlink -f "$(command -v swift)")")/llvm-objcopy"
[[ -x $OBJCOPY ]] || die "llvm-objcopy not found next to swift"

TMP="$(mktemp -d /tmp/tt-symbol-order.XXXXXX)"
BENCH_PID=""
cleanup() {
    set +e
    [[ -n $TELLTALE_PID ]] && kill -TERM "$TELLTALE_PID" 2>/dev/null
    if [[ -n $BENCH_PID ]]; then
        # bash runs the benchmark's TERM trap (which stops its services) only once its
        # foreground child, a sleep or a wait, has ended: end that too.
        kill -TERM "$BENCH_PID" 2>/dev/null
        pkill -TERM -P "$BENCH_PID" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$BENCH_PID" 2>/dev/null || break; sleep 0.3; done
    fi
    rm -rf "$TMP"
}
TELLTALE_PID=""
trap cleanup EXIT

say "starting the whole-product setup (scripts/bench/whole-product.sh, held)"
BENCH_HOLD=3600 ROUNDS=1 WARMUP=2 WRK_DURATION=2s BENCH_NO_WRITE=1 TELLTALE_BIN="$BIN" \
    bash "$REPO/scripts/bench/whole-product.sh" >"$TMP/bench.log" 2>&1 &
BENCH_PID=$!
deadline=$((SECONDS + 900))
until held="$(grep -m1 'holding the whole product' "$TMP/bench.log")"; do
    kill -0 "$BENCH_PID" 2>/dev/null || die "the benchmark ended: $(tail -3 "$TMP/bench.log")"
    ((SECONDS < deadline)) || die "the benchmark did not reach its hold"
    sleep 2
done
held_pid="$(sed -E 's/.*: PID ([0-9]+), .*/\1/' <<<"$held")"
URL="$(sed -E 's/.*, (http[^,]+), .*/\1/' <<<"$held")"
WORK="$(sed -E 's/.*work dir (.*)$/\1/' <<<"$held")"
mapfile -d '' ENVIRON <"/proc/$held_pid/environ"

: >"$TMP/perf.txt"
if command -v perf >/dev/null; then
    say "sampling PID $held_pid with perf for 30 s"
    perf record -q -F 20000 -p "$held_pid" -o "$TMP/perf.data" -- sleep 30 >/dev/null 2>&1 || true
    perf script -i "$TMP/perf.data" -F ip,sym,dso --no-demangle 2>/dev/null |
        awk '$NF ~ /\/telltale\)?$/ && $2 != "[unknown]" {print $2}' | sort | uniq -c | sort -rn |
        awk '{print $2}' >"$TMP/perf.txt" || true
fi
kill -TERM "$held_pid"
while kill -0 "$held_pid" 2>/dev/null; do sleep 0.2; done

# valgrind cannot read the DWARF 5 the toolchain writes; the symbol table is what it needs.
"$OBJCOPY" --strip-debug "$BIN" "$TMP/telltale"
sed -E -e 's/timeout: [0-9]+m?s/timeout: 30s/g' -e 's/interval: [0-9]+s/interval: 30s/g' \
    -e 's/budget: [0-9]+s/budget: 120s/' "$WORK/whole.yml" >"$TMP/relaxed.yml"

drive() {  # SECONDS: the endpoints, as a scrape, a browser and a probe ask for them
    local end=$((SECONDS + $1)) path
    while ((SECONDS < end)); do
        curl -s -m 60 -o /dev/null -H 'Accept-Encoding: gzip' \
            -H 'Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5' "$URL/metrics" || true
        curl -s -m 60 -o /dev/null -H 'Accept-Encoding: gzip' "$URL/metrics" || true
        for path in metrics "" api/v1/status healthz readyz nothing; do curl -s -m 60 -o /dev/null "$URL/$path" || true; done
        # As the benchmark asks: keep-alive connections that wrk drops mid-response at its end.
        wrk -t1 -c4 -d1s -H 'Accept-Encoding: gzip' "$URL/metrics" >/dev/null 2>&1 || true
        sleep 2
    done
}
for config in "$WORK/whole.yml" "$TMP/relaxed.yml"; do
    name="$(basename "$config" .yml)"
    say "callgrind: $name ($PROFILE_SECONDS s)"
    env -i "${ENVIRON[@]}" valgrind --tool=callgrind --compress-strings=no --demangle=no \
        --callgrind-out-file="$TMP/callgrind-$name.out" "$TMP/telltale" serve --config "$config" \
        >"$TMP/callgrind-$name.log" 2>&1 &
    TELLTALE_PID=$!
    deadline=$((SECONDS + 300))
    until curl -s -m 30 -o /dev/null "$URL/healthz"; do
        kill -0 "$TELLTALE_PID" 2>/dev/null || die "telltale under callgrind ended: $(grep -v '^==' "$TMP/callgrind-$name.log" | tail -3)"
        ((SECONDS < deadline)) || die "telltale under callgrind did not answer"
        sleep 2
    done
    drive "$PROFILE_SECONDS"
    kill -TERM "$TELLTALE_PID"
    wait "$TELLTALE_PID" || true
    TELLTALE_PID=""
done

# Sampled functions first, hottest first; then every other function that ran, by name.
python3 - "$TMP/perf.txt" "$OUT" "$TMP"/callgrind-*.out <<'EOF'
import re, sys
perf, out, profiles = sys.argv[1], sys.argv[2], sys.argv[3:]
ran = set()
for profile in profiles:
    binary = ""
    for line in open(profile, errors="replace"):
        if line.startswith("ob="):
            binary = line[3:].strip()
        elif line.startswith("fn=") and binary.endswith("/telltale"):
            name = re.sub(r"'\d+$", "", line[3:].strip())  # callgrind's recursion marks
            if not name.startswith("0x") and name != "(below main)":
                ran.add(name)
hot = [line.strip() for line in open(perf) if line.strip()]
order = hot + sorted(ran - set(hot))
open(out, "w").write("".join(name + "\n" for name in order))
print(f"{len(order)} functions: {len(hot)} sampled, {len(ran)} seen by callgrind", file=sys.stderr)
EOF
say "wrote $OUT; relink: rm -f .build/release/telltale && scripts/build-release.sh"
