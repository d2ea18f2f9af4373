#!/usr/bin/env bash
# One command to run Boilerhouse on a fresh Debian 12 machine (as root): installs what is
# needed, builds, imports the busybox example image and serves the example workloads in
# local mode. Environment: BOILERHOUSE_STATE_DIR (default /var/lib/boilerhouse),
# BOILERHOUSE_PORT (3000), BOILERHOUSE_API_KEY, BOILERHOUSE_LOG_LEVEL.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
build=${BH_BUILD_DIR:-build}
state=${BOILERHOUSE_STATE_DIR:-/var/lib/boilerhouse}
scripts/build-busybox-image.sh "$build/images/busybox" latest
"$build/boilerhouse" image import "$build/images/busybox" localhost/busybox:latest --state-dir "$state"
echo "boilerhouse: serving on http://${BOILERHOUSE_LISTEN_HOST:-127.0.0.1}:${BOILERHOUSE_PORT:-3000} (state $state)"
echo "try: curl -X POST localhost:${BOILERHOUSE_PORT:-3000}/api/v1/tenants/alice/claim -d '{\"workload\":\"httpserver\"}'"
exec "$build/boilerhouse" serve --state-dir "$state" --workloads-dir "$PWD/workloads" \
  --plugin-dir "$PWD/$build/plugins"
