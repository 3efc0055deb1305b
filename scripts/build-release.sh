#!/usr/bin/env bash
# scripts/build-release.sh — the release build of `telltale`, as it ships: the binary is
# `swift build -c release --show-bin-path`/telltale (.build/release/telltale).
#
# The link flags keep the resident memory down (BENCHMARKS.md, "Resident memory"):
#   --static-swift-stdlib          the Swift runtime and Foundation are linked in, so the
#                                  loader binds no symbols of theirs at start;
#   -use-ld=lld, -z pack-relative-relocs
#                                  the ~100,000 relative relocations are packed (RELR): the
#                                  loader reads about 20 KiB instead of a 2.5 MB table;
#   --no-export-dynamic            the static runtime's link arguments export every symbol
#                                  (~23,000); the loader would search them on each lookup
#                                  for the C libraries. Nothing dlsym()s into Telltale.
# Extra arguments are passed on to `swift build`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec swift build -c release --product telltale --static-swift-stdlib \
    -Xswiftc -use-ld=lld \
    -Xlinker -z -Xlinker pack-relative-relocs \
    -Xlinker --no-export-dynamic \
    "$@"
