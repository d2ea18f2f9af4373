#!/usr/bin/env bash
# Installs every Debian package Boilerhouse needs to build, run and test.
# Idempotent: packages already present are left alone.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config git ca-certificates curl python3 clang-format
  libcjson-dev libyaml-dev libcurl4-openssl-dev libssl-dev libarchive-dev
  libzstd-dev liblua5.4-dev libmicrohttpd-dev libsqlite3-dev libcmocka-dev
  runc crun nftables iproute2 uidmap
  busybox-static umoci skopeo docker-registry apache2-utils
  debootstrap buildah
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
