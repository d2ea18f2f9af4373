#!/usr/bin/env bash
# Builds a small OCI image layout from Debian's busybox-static with umoci:
#   scripts/build-busybox-image.sh OUT_DIR [TAG]
# The image has busybox and its applet links in /bin, an /www/index.html for httpd and a
# default command of `sh`. Used by the example workloads and the tests.
set -euo pipefail
out=${1:?usage: build-busybox-image.sh OUT_DIR [TAG]}
tag=${2:-latest}
[ -f "$out/index.json" ] && umoci ls --layout "$out" 2>/dev/null | grep -qx "$tag" && exit 0

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$(dirname "$out")"
[ -d "$out" ] || umoci init --layout "$out"
umoci new --image "$out:$tag"
umoci unpack --image "$out:$tag" "$work/bundle" >/dev/null
root="$work/bundle/rootfs"
mkdir -p "$root"/{bin,etc,www,tmp,proc,sys,dev,root,var/log,run}
install -m 0755 /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"
echo '<h1>boilerhouse busybox httpd</h1>' > "$root/www/index.html"
umoci repack --image "$out:$tag" "$work/bundle" >/dev/null
umoci config --image "$out:$tag" --config.cmd sh --config.workingdir / \
  --config.env PATH=/bin:/usr/bin:/sbin:/usr/sbin
umoci gc --layout "$out"
