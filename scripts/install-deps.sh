#!/usr/bin/env bash
# Installs every Debian package Boilerhouse needs to build, run and test.
# Idempotent: packages already present are left alone.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config git ca-certificates curl python3 clang-format
  libcjson-dev libyaml-dev libcurl4-openssl-dev libssl-dev libarchive-dev
  libzstd-dev liblz4-dev liblua5.4-dev libmicrohttpd-dev libsqlite3-dev libcmocka-dev
  # the bridged network plugins: rtnetlink and nftables in process, no `ip`/`nft` per attach
  libnl-route-3-dev libnftables-dev
  runc crun nftables iproute2 uidmap e2fsprogs
  busybox-static umoci skopeo docker-registry apache2-utils
  debootstrap buildah
  prometheus
  # the dashboard's browser test (tests/integration/test_ui.py): Debian's Chromium, driven by
  # playwright-core from ui/package-lock.json (the build's npm ci installs it)
  chromium
  # load generator for scripts/bench.py (existing-claim and list req/s) and bench-hostile.sh
  wrk
  # sanitizer runtimes for the BH_SANITIZE passes (gcc); clang + compiler-rt for scripts/fuzz.sh
  libasan8 liblsan0 libubsan1 libtsan2 clang libclang-rt-dev
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# docker-registry's package starts a system service on :5000; tests run their own instance.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
  systemctl stop docker-registry || true
fi
# node and npm: the build bundles the dashboard (ui/, `npm ci` from the npm registry), the
# tests run s3rver and playwright-core. Debian's, unless the machine already has node with
# its own npm (NodeSource's nodejs ships npm and conflicts with Debian's npm): leave that alone.
command -v npm >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
  --no-install-recommends nodejs npm >/dev/null
# An S3-compatible server for the S3 storage plugin's tests, pinned, in a cache outside the
# repo (tests/integration/test_s3.py looks there; BH_S3RVER overrides).
S3RVER_VERSION=3.7.1
S3RVER_DIR=/var/cache/boilerhouse/s3rver
if [ "$(cat "$S3RVER_DIR/.version" 2>/dev/null)" != "$S3RVER_VERSION" ]; then
  mkdir -p "$S3RVER_DIR"
  npm install --silent --no-audit --no-fund --prefix "$S3RVER_DIR" "s3rver@$S3RVER_VERSION" >/dev/null
  echo "$S3RVER_VERSION" >"$S3RVER_DIR/.version"
fi
# kubectl: Debian's kubernetes-client when the machine has none. Its kubectl 1.20 is also
# unpacked (not installed: a newer kubectl on PATH stays) into a cache outside the repo, where
# tests/integration/test_kubectl.py runs it: kubectl before 1.27 reads OpenAPI v2 only as
# protobuf, a path the current kubectl never takes (BH_KUBECTL_OLD overrides).
command -v kubectl >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
  --no-install-recommends kubernetes-client >/dev/null
KUBECTL_OLD_DIR=/var/cache/boilerhouse/kubectl-debian
if [ ! -x "$KUBECTL_OLD_DIR/usr/bin/kubectl" ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -qq kubernetes-client 2>/dev/null)
  mkdir -p "$KUBECTL_OLD_DIR"
  dpkg -x "$tmp"/kubernetes-client_*.deb "$KUBECTL_OLD_DIR"
  rm -rf "$tmp"
fi
