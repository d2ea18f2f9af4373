#!/usr/bin/env bash
# One command for the whole suite on a fresh Debian 12 machine (as root): installs what is
# needed, builds, builds the test images (busybox; Debian, cached) and runs unit + integration
# tests with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
build=${BH_BUILD_DIR:-build}
scripts/build-busybox-image.sh "$build/images/busybox" latest
# The real-world Debian image, cached outside the repository (BH_DEBIAN_IMAGE overrides where).
scripts/build-debian-image.sh "${BH_DEBIAN_IMAGE:-/var/cache/boilerhouse-test/debian-image}" latest
cd "$build"
ctest --output-on-failure --timeout 900 "$@"
