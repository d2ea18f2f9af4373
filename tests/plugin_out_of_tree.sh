#!/bin/sh
# plugin/out-of-tree: install into a temp prefix, build examples/plugin-network-example with
# only the installed header and pkg-config file, start the installed daemon with it and
# check that a workload with network.access "example" is accepted (and an unserved access
# refused). Every failed step fails the test.
set -eu
build=$1
src=$2
tmp=$(mktemp -d /tmp/bh-oot-XXXXXX)
chmod 0711 "$tmp" # instances run as unprivileged uids below the state dir
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    [ -n "${KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT

cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
export PKG_CONFIG_PATH="$tmp/prefix/share/pkgconfig"
pkg-config --exists boilerhouse-plugin
plugindir=$(pkg-config --variable=plugindir boilerhouse-plugin)
test -f "$plugindir/bh-network-none.so"

# A copy outside the source tree: nothing but pkg-config can point it at the header.
cp -r "$src/examples/plugin-network-example" "$tmp/example"
make -s -C "$tmp/example"
# The installed daemon loads only what this test needs: no bridged plugins, no host changes.
mkdir "$tmp/plugins"
cp "$plugindir/bh-network-none.so" "$plugindir/bh-storage-local.so" \
    "$tmp/example/bh-network-example.so" "$tmp/plugins/"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$tmp/prefix/bin/boilerhouse" serve --state-dir "$tmp/state" --listen "127.0.0.1:$port" \
    --plugin-dir "$tmp/plugins" >"$tmp/daemon.log" 2>&1 &
pid=$!
url="http://127.0.0.1:$port/api/v1"
i=0
until curl -sf "$url/health" >/dev/null; do
    i=$((i + 1))
    if [ $i -gt 200 ] || ! kill -0 "$pid" 2>/dev/null; then
        cat "$tmp/daemon.log" >&2
        echo "daemon did not start" >&2
        exit 1
    fi
    sleep 0.05
done
grep -q 'loaded .*bh-network-example.so' "$tmp/daemon.log"

workload() {
    printf '{"name": "%s", "spec": {"version": "1", "image": {"ref": "busybox:latest"},
      "resources": {"vcpus": 1, "memoryMb": 64, "diskGb": 1}, "network": {"access": "%s"}}}' "$1" "$2"
}
code=$(workload ex example | curl -s -o "$tmp/ok.json" -w '%{http_code}' -X POST \
    -H 'Content-Type: application/json' --data-binary @- "$url/workloads")
[ "$code" = 201 ] || { echo "access example: HTTP $code: $(cat "$tmp/ok.json")" >&2; exit 1; }
code=$(workload bad open | curl -s -o "$tmp/bad.json" -w '%{http_code}' -X POST \
    -H 'Content-Type: application/json' --data-binary @- "$url/workloads")
case "$code" in 4??) ;; *) echo "access open: HTTP $code" >&2; exit 1 ;; esac
grep -q 'spec.network.access: must be one of: example, none' "$tmp/bad.json" ||
    { echo "access open: $(cat "$tmp/bad.json")" >&2; exit 1; }
code=$(curl -s -o /dev/null -w '%{http_code}' "$url/workloads/bad")
[ "$code" = 404 ] || { echo "refused workload was stored (HTTP $code)" >&2; exit 1; }
echo "out-of-tree plugin loaded and served network.access example"
