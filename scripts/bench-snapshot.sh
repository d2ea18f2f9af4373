#!/bin/sh
# Snapshot benchmarks (need root: files are chowned into the uid range; the image benchmark
# also needs loop devices and mkfs.ext4), each row beside its baseline from the same run.
# Usage: scripts/bench-snapshot.sh [BUILD_DIR] [tar|image|all]   (default: build, all)
#   tar    the tar-v1 format (tests/bench/bench_snapshot.c)
#   image  the image-v1 format on a 10,000-file and a 30,000-file set (bench_image.c)
# BENCH_RUNS sets the restore runs, BENCH_DIR the filesystem of the temp dir.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build}
what=${2:-all}
cmake --build "$build" --target bench_snapshot bench_image >/dev/null
case $what in
tar) exec "$build/tests/bench_snapshot" ;;
image) exec "$build/tests/bench_image" ;;
*) "$build/tests/bench_snapshot" && exec "$build/tests/bench_image" ;;
esac
