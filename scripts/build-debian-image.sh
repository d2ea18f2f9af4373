#!/usr/bin/env bash
# Builds the real-world test image: Debian 12 (debootstrap --variant=minbase) with curl,
# ca-certificates, python3 + requests, nodejs and dnsutils, as an OCI image layout.
#   scripts/build-debian-image.sh [OUT_DIR] [TAG]
# OUT_DIR defaults to /var/cache/boilerhouse-test/debian-image, outside the repository, so
# the suite pays for debootstrap once: the layout is rebuilt only when it is missing or when
# this script (its recipe) changed, which recipe.sha256 beside it records. The mirror is the
# first one configured for apt (BH_DEBIAN_MIRROR overrides it).
set -euo pipefail
out=${1:-/var/cache/boilerhouse-test/debian-image}
tag=${2:-latest}
recipe=$(sha256sum "$0" | cut -d' ' -f1)
if [ -f "$out/index.json" ] && [ "$(cat "$out/recipe.sha256" 2>/dev/null)" = "$recipe" ] &&
  umoci ls --layout "$out" 2>/dev/null | grep -qx "$tag"; then
  exit 0
fi

apt_mirror() {
  grep -hsoE '^(URIs:|deb) +https?://[^ ]+' /etc/apt/sources.list.d/*.sources \
    /etc/apt/sources.list.d/*.list /etc/apt/sources.list | grep -v security | head -n1 |
    awk '{print $2}' || true
}
mirror=${BH_DEBIAN_MIRROR:-$(apt_mirror)}
mirror=${mirror:-http://deb.debian.org/debian}

mkdir -p "$(dirname "$out")"
work=$(mktemp -d "$(dirname "$out")/.debian-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
layout="$work/layout"
umoci init --layout "$layout"
umoci new --image "$layout:$tag"
umoci unpack --image "$layout:$tag" "$work/bundle" >/dev/null
root="$work/bundle/rootfs"
debootstrap --variant=minbase \
  --include=curl,ca-certificates,python3,python3-requests,nodejs,dnsutils \
  bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
  { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
# What Docker images leave out: caches, the build host's identity and resolver (Boilerhouse
# provides /etc/hostname, /etc/hosts and /etc/resolv.conf per instance) and device nodes
# (the runtime creates /dev).
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/dev/* \
  "$root"/var/log/* "$root"/etc/resolv.conf "$root"/etc/hostname "$root"/etc/hosts
umoci repack --image "$layout:$tag" "$work/bundle" >/dev/null
umoci config --image "$layout:$tag" --config.cmd /bin/bash --config.workingdir / \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
umoci gc --layout "$layout"
echo "$recipe" >"$layout/recipe.sha256"
rm -rf "$out.old"
[ -d "$out" ] && mv "$out" "$out.old"
mv "$layout" "$out"
rm -rf "$out.old"
