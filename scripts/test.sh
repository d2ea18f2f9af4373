#!/usr/bin/env bash
# One command for the whole suite on a fresh Debian 12 machine (as root): installs what is
# needed, builds, builds the busybox test image and runs unit + integration tests with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
build=${BH_BUILD_DIR:-build}
scripts/build-busybox-image.sh "$build/images/busybox" latest
cd "$build"
ctest --output-on-failure --timeout 900 "$@"
