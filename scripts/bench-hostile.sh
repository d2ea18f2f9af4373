#!/bin/sh
# GET /api/v1/health with and without 2,000 slow connections open, same run (see
# scripts/bench_hostile.py). Usage: scripts/bench-hostile.sh [--slow N] [--seconds S]
# (needs root, wrk and a build in build/; takes the integration lock like the tests)
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
export BH_BUILD_DIR=${BH_BUILD_DIR:-$src/build}
[ -x "$BH_BUILD_DIR/boilerhouse" ] || { echo "build first: cmake --build build" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is missing: scripts/install-deps.sh" >&2; exit 1; }
[ -f "$BH_BUILD_DIR/images/busybox/index.json" ] ||
    "$src/scripts/build-busybox-image.sh" "$BH_BUILD_DIR/images/busybox" latest
exec flock /tmp/bh-integration.lock python3 "$src/scripts/bench_hostile.py" "$@"
