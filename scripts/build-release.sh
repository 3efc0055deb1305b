#!/usr/bin/env bash
# scripts/build-release.sh — the release build of `telltale`, as it ships: the binary is
# `swift build -c release --show-bin-path`/telltale (.build/release/telltale).
#
# The flags keep the resident memory down (BENCHMARKS.md, "Resident memory"):
#   --static-swift-stdlib          the Swift runtime and Foundation are linked in, so the
#                                  loader binds no symbols of theirs at start;
#   -use-ld=lld, -z pack-relative-relocs
#                                  the ~100,000 relative relocations are packed (RELR): the
#                                  loader reads about 20 KiB instead of a 2.5 MB table;
#   --no-export-dynamic            the static runtime's link arguments export every symbol
#                                  (~23,000); the loader would search them on each lookup
#                                  for the C libraries. Nothing dlsym()s into Telltale.
#   -function-sections (Swift), -ffunction-sections (C)
#                                  each function in its own section, so that the linker
#                                  can place it (Swift otherwise emits most of a file's
#                                  functions as one section);
#   --symbol-ordering-file         the functions the whole product runs (scripts/symbol-order.txt,
#                                  made by scripts/bench/symbol-order.sh) first and together:
#                                  the kernel maps code by whole page-cache folios around what
#                                  runs, so scattered, they would keep most of the 25 MB of
#                                  code resident. Names the build no longer has are skipped.
#                                  SwiftPM does not relink when only this file changes:
#                                  rm -f .build/release/telltale first.
#   -T scripts/release-text.ld     the compiler's private functions (`.L…`: closure context
#                                  destroyers, outlined copies, metadata accessors) have
#                                  no symbol an order file can name; scattered, the ones
#                                  that run mapped 6 MiB of folios around them. The script
#                                  gathers all of them (about 130 KiB) before the code.
#                                  As for the order file, rm -f .build/release/telltale
#                                  after changing it.
# Extra arguments are passed on to `swift build`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec swift build -c release --product telltale --static-swift-stdlib \
    -Xswiftc -use-ld=lld -Xswiftc -Xfrontend -Xswiftc -function-sections -Xcc -ffunction-sections \
    -Xlinker -z -Xlinker pack-relative-relocs \
    -Xlinker --no-export-dynamic \
    -Xlinker --symbol-ordering-file="$PWD/scripts/symbol-order.txt" -Xlinker --no-warn-symbol-ordering \
    -Xlinker -T -Xlinker "$PWD/scripts/release-text.ld" \
    "$@"
