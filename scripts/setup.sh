#!/usr/bin/env bash
# scripts/setup.sh — prepare a Debian 12 (bookworm) machine for building,
# demoing and testing Telltale.  Idempotent and quick when already done:
#
#   * Debian packages (apt-get) — only when `dpkg -s` says one is missing; then
#     `apt-get update` runs once before the install.  Package maintainer scripts
#     are prevented from starting system services (policy-rc.d exits 101), and
#     anything they started anyway is stopped: our own throw-away PostgreSQL and
#     Redis are run by scripts/services.sh on non-default ports.
#   * .venv            — Python venv with tests/requirements.txt (pytest & co).
#   * .venv-bullmq-v5  — Python `bullmq` 2.x (the BullMQ v5 Redis layout).
#   * .venv-bullmq-v6  — Python `bullmq` 3.x (the BullMQ v6 Redis layout).
#     Each venv records a hash of what it was built from and is rebuilt only
#     when that changes (or the venv is broken).
#
# Must run as root (it calls apt-get).  Swift itself is not installed here: it
# lives at /opt/swift on this machine kind and is not a Debian package.
#
# Environment knobs:
#   TELLTALE_PYTHON      python used to create venvs (default: python3)
#   TELLTALE_SKIP_APT=1  do not touch Debian packages at all
#   BULLMQ_V5_SPEC / BULLMQ_V6_SPEC   override the pinned bullmq requirements
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# Debian packages the project needs at build, demo or test time.
APT_PACKAGES=(
    postgresql postgresql-contrib          # server + pg_stat_statements
    redis-server                           # also pulls redis-tools (redis-cli)
    libpq-dev libhiredis-dev libcurl4-openssl-dev zlib1g-dev libpcre2-dev libssl-dev   # C libs behind Sources/C*
    openssl                                # certificates for the Redis TLS tests
    prometheus                             # promtool (rule/metric linting) + server
    prometheus-alertmanager                # the real Alertmanager of the receiver tests
    nginx wrk                              # demo reverse proxy / load generator
    chromium                               # headless browser of the status page test
    prometheus-postgres-exporter prometheus-redis-exporter     # comparison exporters
    systemd strace                         # systemd-analyze, systemd-sysusers; system calls vs the unit's filter (tests/test_deploy.py)
    ca-certificates
)

# System services the packages above may try to start; we never want them running
# (they would take ports, CPU and memory; services.sh runs its own instances).
SYSTEM_SERVICES=(postgresql redis-server nginx prometheus prometheus-node-exporter
                 prometheus-postgres-exporter prometheus-redis-exporter prometheus-alertmanager)

PYTHON="${TELLTALE_PYTHON:-python3}"

# bullmq (PyPI) majors track the Node BullMQ Redis layouts: Python 2.x ships the
# Lua scripts of Node BullMQ v5, Python 3.x those of v6 (v6 dropped the legacy
# repeatable-job scripts, changed getCountsPerPriority/moveToDelayed).  Checked
# with `pip index versions bullmq` on 2026-11-21: newest 2.x is 2.26.0, newest
# overall 3.4.4.  Exact pins keep CI reproducible.
BULLMQ_V5_SPEC="${BULLMQ_V5_SPEC:-bullmq==2.26.0}"
BULLMQ_V6_SPEC="${BULLMQ_V6_SPEC:-bullmq==3.4.4}"

pkg_installed() {
    # `dpkg -s` exits 0 for removed-but-not-purged packages too; check the status.
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

stop_system_services() {
    # Belt and braces: policy-rc.d should have kept every service down, but a
    # package could start a daemon by other means.  Stop whatever is running.
    local svc
    for svc in "${SYSTEM_SERVICES[@]}"; do
        if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
            if systemctl is-active --quiet "$svc" 2>/dev/null; then
                log "stopping system service $svc (started by package install)"
                systemctl stop "$svc" || true
                systemctl disable "$svc" >/dev/null 2>&1 || true
            fi
        elif [[ -x "/etc/init.d/$svc" ]]; then
            if "/etc/init.d/$svc" status >/dev/null 2>&1; then
                log "stopping system service $svc (started by package install)"
                "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
            fi
        fi
    done
}

install_apt_packages() {
    local missing=() p
    for p in "${APT_PACKAGES[@]}"; do
        pkg_installed "$p" || missing+=("$p")
    done
    # Debian's own python needs python3-venv for `-m venv`; pyenv's python has it.
    if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
        pkg_installed python3-venv || missing+=(python3-venv)
    fi
    if ((${#missing[@]} == 0)); then
        log "Debian packages: all present"
        return 0
    fi
    [[ $EUID -eq 0 ]] || die "need root to install: ${missing[*]}"
    log "Debian packages missing: ${missing[*]}"

    # Keep maintainer scripts from starting services.  Respect an existing
    # policy-rc.d (e.g. the Docker image's one): only add/remove our own.
    local policy=/usr/sbin/policy-rc.d own_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\n# temporary, from telltale scripts/setup.sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        own_policy=1
        # shellcheck disable=SC2064  # expand $policy now
        trap "rm -f '$policy'" EXIT
    fi

    export DEBIAN_FRONTEND=noninteractive
    local apt_opts=(-y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    apt-get update -q
    # --no-install-recommends: recommends (e.g. node-exporter, mail servers) are
    # not needed here and only slow down a fresh CI machine.
    apt-get install "${apt_opts[@]}" --no-install-recommends "${missing[@]}" </dev/null

    if ((own_policy)); then
        rm -f "$policy"
        trap - EXIT
    fi
    stop_system_services
}

# make_venv DIR REQUIREMENT... — (re)create a venv unless its recorded stamp
# (python version + requirements) matches.  REQUIREMENT is passed to pip as-is;
# use "-r FILE" for a requirements file (its content goes into the stamp).
make_venv() {
    local dir="$1"; shift
    local stamp_file="$dir/.telltale-stamp" stamp pyver arg prev=""
    pyver="$("$PYTHON" -c 'import sys; print(sys.version)')" \
        || die "python not usable: $PYTHON"
    stamp="$pyver"
    for arg in "$@"; do
        if [[ $prev == -r ]]; then stamp+=$'\n'"$(cat "$arg")"; else stamp+=$'\n'"$arg"; fi
        prev="$arg"
    done
    stamp="$(printf '%s' "$stamp" | sha256sum | cut -d' ' -f1)"

    if [[ -f $stamp_file && "$(cat "$stamp_file")" == "$stamp" ]] \
        && "$dir/bin/python" -c 'pass' >/dev/null 2>&1; then
        log "venv $(basename "$dir"): up to date"
        return 0
    fi
    log "venv $(basename "$dir"): creating (pip install $*)"
    rm -rf "$dir"
    "$PYTHON" -m venv "$dir"
    "$dir/bin/python" -m pip install -q --disable-pip-version-check --no-input "$@"
    printf '%s\n' "$stamp" >"$stamp_file"
}

# Separate venvs because the two bullmq majors cannot be installed side by side
# (and pin conflicting redis-py versions).  Tests pick the interpreter:
# .venv-bullmq-v5/bin/python or .venv-bullmq-v6/bin/python.
setup_bullmq_venvs() {
    make_venv "$REPO/.venv-bullmq-v5" "$BULLMQ_V5_SPEC"
    make_venv "$REPO/.venv-bullmq-v6" "$BULLMQ_V6_SPEC"
}

main() {
    if [[ ${TELLTALE_SKIP_APT:-0} != 1 ]]; then
        install_apt_packages
    fi
    command -v "$PYTHON" >/dev/null || die "python not found: $PYTHON"
    make_venv "$REPO/.venv" -r "$REPO/tests/requirements.txt"
    setup_bullmq_venvs

    # Swift is not apt-installable here; just say clearly if it is missing.
    if ! command -v swift >/dev/null && [[ ! -x /opt/swift/usr/bin/swift ]]; then
        log "WARNING: swift not found (expected on PATH or at /opt/swift/usr/bin)"
    fi
    log "done"
}

main "$@"
