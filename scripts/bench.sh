#!/bin/sh
# Claim / hibernate / restore benchmark with baselines from the same run (see scripts/bench.py).
# Usage: scripts/bench.sh [--quick] [BENCH.PY OPTIONS]   (needs root and a build in build/)
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
export BH_BUILD_DIR=${BH_BUILD_DIR:-$src/build}
[ -x "$BH_BUILD_DIR/boilerhouse" ] || { echo "build first: cmake --build build" >&2; exit 1; }
[ -f "$BH_BUILD_DIR/images/busybox/index.json" ] ||
    "$src/scripts/build-busybox-image.sh" "$BH_BUILD_DIR/images/busybox" latest
exec python3 "$src/scripts/bench.py" "$@"
