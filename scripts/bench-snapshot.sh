#!/bin/sh
# Snapshot create/restore benchmark (needs root: files are chowned into the uid range).
# Usage: scripts/bench-snapshot.sh [BUILD_DIR]   (default: build; run cmake --build first)
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build}
out=$build/bench_snapshot
cc -O2 -D_GNU_SOURCE -I"$src/core" -I"$src/include" "$src/tests/bench/bench_snapshot.c" \
    "$build/libbhcore.a" $(pkg-config --cflags --libs libarchive openssl libcjson) -lpthread \
    -o "$out"
exec "$out"
