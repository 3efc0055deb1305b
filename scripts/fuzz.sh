#!/usr/bin/env bash
# scripts/fuzz.sh — the fuzz targets of Fuzz/Sources/Fuzz.swift under libFuzzer.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]   fuzz each target SECONDS (default 300); new
#                                           interesting inputs are added to Fuzz/corpus/TARGET
#   scripts/fuzz.sh --ci                    what CI runs: replay every committed corpus with
#                                           the normal debug build, then fuzz each target
#                                           for TELLTALE_FUZZ_CI_SECONDS (default 8) without
#                                           touching the corpus
#
# Targets: config, exposition, jsonpath, matchers, negotiation, redaction, redis, alerting-rows.
# The fuzz build
# (-sanitize=fuzzer,address -DFUZZING) lives in .build-fuzz. A crash leaves its input as
# crash-* in the current directory: add it to the target's corpus once fixed, so that every
# CI run replays it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v swift >/dev/null && [[ -x /opt/swift/usr/bin/swift ]]; then
    export PATH="/opt/swift/usr/bin:$PATH"
fi

TARGETS=(config exposition jsonpath matchers negotiation redaction redis alerting-rows web-config)
CI=0
SECONDS_EACH=300
if [[ ${1:-} == --ci ]]; then
    CI=1
    SECONDS_EACH="${TELLTALE_FUZZ_CI_SECONDS:-8}"
    shift
elif [[ ${1:-} =~ ^[0-9]+$ ]]; then
    SECONDS_EACH=$1
    shift
fi
(($#)) && TARGETS=("$@")

if ((CI)); then
    echo "[fuzz] replaying the committed corpora"
    swift build --product telltale-fuzz
    for target in "${TARGETS[@]}"; do
        # A hang in a replayed input is a failure too.
        timeout 300 .build/debug/telltale-fuzz "$target" "Fuzz/corpus/$target"
    done
fi

echo "[fuzz] building the libFuzzer targets (.build-fuzz)"
swift build --scratch-path .build-fuzz --product telltale-fuzz \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING
FUZZER=.build-fuzz/debug/telltale-fuzz
# AddressSanitizer reports crashes itself; Swift's backtracer would only get in its way.
export SWIFT_BACKTRACE=enable=no

failed=()
for target in "${TARGETS[@]}"; do
    corpus="Fuzz/corpus/$target"
    dirs=("$corpus")
    if ((CI)); then
        # New inputs go to a scratch directory: CI must not change the tree.
        scratch="$(mktemp -d)"
        dirs=("$scratch" "$corpus")
    fi
    echo "[fuzz] $target: ${SECONDS_EACH}s"
    if ! TELLTALE_FUZZ_TARGET="$target" "$FUZZER" -max_total_time="$SECONDS_EACH" -timeout=10 \
        -rss_limit_mb=2048 -max_len=65536 -print_final_stats=0 "${dirs[@]}" 2>"/tmp/telltale-fuzz-$target.log"; then
        tail -40 "/tmp/telltale-fuzz-$target.log" >&2
        failed+=("$target")
    else
        grep -E "^Done|#[0-9]+.*DONE" "/tmp/telltale-fuzz-$target.log" | tail -1 || true
    fi
    ((CI)) && rm -rf "$scratch"
done

if ((${#failed[@]})); then
    echo "[fuzz] FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "[fuzz] ${#TARGETS[@]} targets passed"
