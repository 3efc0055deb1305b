#!/usr/bin/env bash
# scripts/test.sh — run the whole test suite (this is what .ci/run calls).
#
#   1. scripts/setup.sh                 Debian packages + Python venvs (fast if done)
#   2. scripts/services.sh start        throw-away PostgreSQL + Redis; always
#                                       stopped again when this script exits
#   3. swift build --build-tests        debug build of the package and its tests
#   4. swift test --skip-build          the Swift Testing suites in Tests/ (no XCTest)
#   5. scripts/build-release.sh        release build of telltale, as it ships
#   6. pytest tests/                    end-to-end tests against the release binary
#                                       (TELLTALE_BIN), with $RUN_DIR/env exported
#   7. scripts/fuzz.sh --ci             replay the committed fuzz corpora, then fuzz
#                                       each target briefly (libFuzzer, .build-fuzz)
#   8. scripts/faults.sh --soak 30      kill -9 / SIGSTOP of the backends, fd exhaustion,
#                                       slowloris, idle connections, a short soak
#
# A failing step 4 does not stop step 5/6: CI shows every failure in one run.
# The exit code is non-zero if any step failed.
#
# Usage:  scripts/test.sh [PYTEST ARGS...]     e.g. scripts/test.sh -k healthz
#   SKIP_SWIFT_TESTS=1   skip steps 3 and 4 (quick iteration on the e2e tests)
#   SKIP_FUZZ=1          skip step 7
#   SWIFT_TEST_ARGS      extra args for `swift test`, e.g. "--no-parallel"
#   TELLTALE_STEP_TIMEOUT  seconds allowed for each of steps 4 and 6 (default 2400)
#   TELLTALE_RUN_DIR, TELLTALE_PG_PORT, TELLTALE_REDIS_PORT: see scripts/services.sh
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

# Swift lives at /opt/swift on this machine kind; don't depend on the caller's PATH.
if ! command -v swift >/dev/null && [[ -x /opt/swift/usr/bin/swift ]]; then
    export PATH="/opt/swift/usr/bin:$PATH"
fi

export TELLTALE_RUN_DIR="${TELLTALE_RUN_DIR:-$REPO/.run}"
STEP_TIMEOUT="${TELLTALE_STEP_TIMEOUT:-2400}"
START=$SECONDS
FAILED=()

section() {
    printf '\n==================== %s  [%s, +%ss] ====================\n' \
        "$*" "$(date '+%H:%M:%S')" "$((SECONDS - START))"
}
fail() { FAILED+=("$1"); printf '!!! FAILED: %s\n' "$1" >&2; }

SERVICES_STARTED=0
cleanup() {
    local rc=$?
    if ((SERVICES_STARTED)); then
        SERVICES_STARTED=0
        section "stopping services"
        bash scripts/services.sh stop || true
    fi
    exit "$rc"
}
trap cleanup EXIT

# Long steps run in the background + `wait`: bash runs a signal trap only after a
# foreground child exits, so this way a SIGTERM/Ctrl-C to this script is acted
# on at once — forwarded to the step (timeout(1) relays it to its command) —
# and then the EXIT trap stops the services.
CHILD_PID=""
run() {
    "$@" &
    CHILD_PID=$!
    local rc=0
    wait "$CHILD_PID" || rc=$?
    CHILD_PID=""
    return "$rc"
}
# shellcheck disable=SC2317  # invoked via trap
on_signal() {
    if [[ -n $CHILD_PID ]]; then
        kill -TERM "$CHILD_PID" 2>/dev/null || true
        wait "$CHILD_PID" 2>/dev/null || true
    fi
    exit "$1"
}
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

section "setup (scripts/setup.sh)"
run bash scripts/setup.sh

section "services (scripts/services.sh start)"
SERVICES_STARTED=1
run bash scripts/services.sh start
# Swift tests and pytest both get the connection details (TELLTALE_PG_DSN, …).
set -a
# shellcheck disable=SC1091
. "$TELLTALE_RUN_DIR/env"
set +a

if [[ ${SKIP_SWIFT_TESTS:-0} == 1 ]]; then
    section "swift tests skipped (SKIP_SWIFT_TESTS=1)"
else
    section "swift build --build-tests"
    if run swift build --build-tests; then
        section "swift test"
        # shellcheck disable=SC2086  # SWIFT_TEST_ARGS is a word list on purpose
        run timeout -k 30 "$STEP_TIMEOUT" swift test --skip-build ${SWIFT_TEST_ARGS:-} \
            || fail "swift test (exit $?)"
    else
        fail "swift build --build-tests"
    fi
fi

section "scripts/build-release.sh"
if run bash scripts/build-release.sh; then
    TELLTALE_BIN="$(swift build -c release --show-bin-path)/telltale"
    export TELLTALE_BIN
    echo "TELLTALE_BIN=$TELLTALE_BIN"
    "$TELLTALE_BIN" --version || true

    section "pytest tests/"
    # Default to the tests/ folder unless the caller named paths of their own.
    pytest_args=("$@")
    has_path=0
    for a in "$@"; do
        if [[ $a != -* && -e $a ]]; then has_path=1; fi
    done
    ((has_path)) || pytest_args=(tests "${pytest_args[@]}")
    # cache_dir inside the git-ignored run dir: keeps .pytest_cache out of the tree.
    set +e
    run timeout -k 30 "$STEP_TIMEOUT" "$REPO/.venv/bin/python" -m pytest -q -rs \
        -o cache_dir="$TELLTALE_RUN_DIR/pytest_cache" "${pytest_args[@]}"
    rc=$?
    set -e
    case $rc in
        0) ;;
        5) echo "WARNING: pytest collected no tests (exit 5) — not counted as a failure" ;;
        124) fail "pytest (timed out after ${STEP_TIMEOUT}s)" ;;
        *) fail "pytest (exit $rc)" ;;
    esac

    section "scripts/faults.sh --soak 30"
    run timeout -k 30 900 bash scripts/faults.sh --soak 30 || fail "scripts/faults.sh (exit $?)"
else
    fail "scripts/build-release.sh"
fi

if [[ ${SKIP_FUZZ:-0} != 1 ]]; then
    section "scripts/fuzz.sh --ci"
    run timeout -k 30 1500 bash scripts/fuzz.sh --ci || fail "scripts/fuzz.sh (exit $?)"
fi

# Stop services now (not only in the trap) so the summary is the last thing printed.
section "stopping services"
SERVICES_STARTED=0
bash scripts/services.sh stop || true

section "summary"
if ((${#FAILED[@]})); then
    printf 'FAILED steps: %s\n' "${FAILED[*]}"
    exit 1
fi
echo "all steps passed in $((SECONDS - START))s"
