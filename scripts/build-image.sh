#!/usr/bin/env bash
# Builds the Boilerhouse image (deploy/Containerfile) from this checkout with buildah and
# writes it as an OCI image layout (tag TAG, default latest) to OUT_DIR:
#   scripts/build-image.sh [--build-arg NAME=VALUE]... [--cache DIR] [--ca-file FILE] OUT_DIR [TAG]
# --build-arg goes to buildah bud: BUILD_IMAGE and RUNTIME_IMAGE are the base images (Debian
# 12 from docker.io by default; any transport buildah reads, e.g. oci:/path/to/layout:tag).
# --cache DIR keeps what the build downloads (apt's .debs, npm's package cache) in DIR for the
# next build (builds sharing DIR take turns: apt locks its archive dir); the build itself is
# never cached. --ca-file FILE: PEM certificates the build's npm also trusts
# (NODE_EXTRA_CA_CERTS), for a network whose TLS goes through an intercepting proxy; mounted
# into the build steps only, never in the image. Needs root, buildah and the network (apt, npm).
#
# buildah's storage (overlay), run state and temporary files live in a directory of this
# script's own (under $TMPDIR, default /var/tmp), removed at the end, even on failure. buildah
# runs in a private mount namespace so its mounts end with it, with an empty tmpfs over
# /var/lib/containers: its blob-info cache (always /var/lib/containers/cache for root, whatever
# --root says) is not left behind. OUT_DIR is replaced only once the build succeeded.
set -euo pipefail

usage() {
  echo "usage: $0 [--build-arg NAME=VALUE]... [--cache DIR] [--ca-file FILE] OUT_DIR [TAG]" >&2
  exit 2
}

all_args=("$@")
build_args=()
cache=
ca_file=
while [ $# -gt 0 ]; do
  case "$1" in
  --build-arg)
    [ $# -ge 2 ] && [[ "$2" == ?*=* ]] || usage
    build_args+=(--build-arg "$2")
    shift 2
    ;;
  --cache)
    [ $# -ge 2 ] || usage
    cache=$2
    shift 2
    ;;
  --ca-file)
    [ $# -ge 2 ] && [ -f "$2" ] || { echo "$0: --ca-file needs a readable file" >&2; exit 2; }
    ca_file=$(realpath "$2")
    shift 2
    ;;
  -*) usage ;;
  *) break ;;
  esac
done
[ $# -ge 1 ] && [ $# -le 2 ] || usage
out=$1
tag=${2:-latest}
[[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || { echo "$0: bad tag '$tag'" >&2; exit 2; }
if [ -e "$out" ] && [ ! -f "$out/oci-layout" ]; then
  echo "$0: $out exists and is not an OCI image layout; not replacing it" >&2
  exit 2
fi
src=$(cd "$(dirname "$0")/.." && pwd)
command -v buildah >/dev/null || { echo "$0: buildah is not installed (scripts/install-deps.sh)" >&2; exit 1; }

# The part that runs inside the mount namespace (this script again, with BH_IMAGE_NS set).
build_in_namespace() {
  mount -t tmpfs -o size=64m,mode=0700 bh-image-build /var/lib/containers
  work=$(mktemp -d "${TMPDIR:-/var/tmp}/bh-image-build.XXXXXX")
  # The layout is pushed beside OUT_DIR (the same filesystem), then renamed into place.
  mkdir -p "$(dirname "$out")"
  next=$(mktemp -d "$(dirname "$out")/.build-image.XXXXXX")
  # TERM/INT end the script through its EXIT trap (bash runs it for exit, not for a signal).
  trap 'exit 143' TERM INT
  trap 'bh_buildah rm --all >/dev/null 2>&1; bh_buildah rmi --all --force >/dev/null 2>&1;
        rm -rf "$work" "$next"' EXIT
  export TMPDIR=$work/tmp
  mkdir -p "$TMPDIR"
  local volumes=() runtime=()
  if [ -n "$cache" ]; then
    mkdir -p "$cache/apt" "$cache/npm"
    exec 9>"$cache/.lock"
    flock 9
    volumes=(--volume "$cache/apt:/var/cache/apt/archives" --volume "$cache/npm:/root/.npm")
  fi
  if [ -n "$ca_file" ]; then
    volumes+=(--volume "$ca_file:/run/bh-build-ca.crt:ro")
    build_args+=(--build-arg NODE_EXTRA_CA_CERTS=/run/bh-build-ca.crt)
  fi
  # runc when present: buildah's default, crun, refuses hosts with cgroups in hybrid mode.
  command -v runc >/dev/null && runtime=(--runtime runc)
  bh_buildah bud --network host "${runtime[@]}" "${volumes[@]}" "${build_args[@]}" \
    -f "$src/deploy/Containerfile" -t "localhost/boilerhouse:$tag" "$src"
  bh_buildah push --quiet "localhost/boilerhouse:$tag" "oci:$next:$tag"
  chmod 755 "$next"
  rm -rf "$out"
  mv "$next" "$out"
}

bh_buildah() {
  buildah --root "$work/root" --runroot "$work/run" --storage-driver overlay "$@"
}

if [ -n "${BH_IMAGE_NS:-}" ]; then
  build_in_namespace
  exit 0
fi
# /var/lib/containers must exist to be a mount point; made here only if missing, and removed
# again if nothing else has put anything in it meanwhile.
if [ ! -d /var/lib/containers ]; then
  mkdir -p /var/lib/containers
  trap 'rmdir /var/lib/containers 2>/dev/null || true' EXIT
  trap 'exit 143' TERM INT
fi
BH_IMAGE_NS=1 unshare --mount --propagation private "$0" "${all_args[@]}"
