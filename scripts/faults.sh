#!/usr/bin/env bash
# scripts/faults.sh — fault injection against the release binary (scripts/faults.py says
# what each scenario does and checks): kill -9 and SIGSTOP of PostgreSQL and Redis, fd
# exhaustion, slowloris, 2,000 idle connections, a SIGHUP storm while PostgreSQL hangs, and a
# soak with memory and fds flat.
#
#   scripts/faults.sh                  all scenarios, 10-minute soak
#   scripts/faults.sh --soak 30        a short soak (what scripts/test.sh runs in CI)
#   scripts/faults.sh --only idle,soak
#
# Starts PostgreSQL and Redis (scripts/services.sh) unless they run, and stops them again
# if it started them. Uses $TELLTALE_BIN, else builds the release binary.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
if ! command -v swift >/dev/null && [[ -x /opt/swift/usr/bin/swift ]]; then
    export PATH="/opt/swift/usr/bin:$PATH"
fi

started=0
if ! bash scripts/services.sh status >/dev/null 2>&1; then
    bash scripts/setup.sh
    bash scripts/services.sh start
    started=1
fi
stop_services() { if ((started)); then bash scripts/services.sh stop || true; fi; }
trap stop_services EXIT

if [[ -z ${TELLTALE_BIN:-} ]]; then
    bash scripts/build-release.sh
    TELLTALE_BIN="$(swift build -c release --show-bin-path)/telltale"
fi
"$REPO/.venv/bin/python" scripts/faults.py --binary "$TELLTALE_BIN" "$@"
