#!/usr/bin/env bash
# Builds a real kube-apiserver for the Kubernetes-mode tests (envtest style: API server + etcd,
# no kubelet) from Debian's `kubernetes` source package (1.20.2 with its vendor/ tree) and
# Debian's Go, and installs Debian's etcd-server beside it.
#   scripts/build-kube-apiserver.sh [OUT_DIR]      prints the binary's path
# OUT_DIR defaults to /var/cache/boilerhouse-test/kube, outside the repository: the build takes
# about ten minutes on 2 cores, so it runs only when the binary is missing or this script (its
# recipe) changed, which recipe.sha256 beside it records.
#
# Two steps beyond a plain `go build`: modern-go/reflect2 1.0.1 crashes at start-up under
# Go >= 1.18, so vendor/github.com/modern-go/reflect2 is replaced by Debian's
# golang-github-modern-go-reflect2-dev (1.0.2, API-compatible); and the OpenAPI definitions,
# which the source tarball does not ship, are generated with the tree's own `make gen_openapi`.
# Go's build cache is kept in OUT_DIR/gocache, so a rebuild after a recipe change is quick.
set -euo pipefail
out=${1:-/var/cache/boilerhouse-test/kube}
recipe=$(sha256sum "$0" | cut -d' ' -f1)
if [ -x "$out/kube-apiserver" ] && [ "$(cat "$out/recipe.sha256" 2>/dev/null)" = "$recipe" ]; then
  echo "$out/kube-apiserver"
  exit 0
fi

need=()
for p in golang-go etcd-server golang-github-modern-go-reflect2-dev dpkg-dev rsync jq; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
# The source package needs a deb-src entry; add one for the main mirror if none exists.
srcs=/etc/apt/sources.list.d/boilerhouse-src.sources
if ! apt-cache showsrc kubernetes >/dev/null 2>&1 || ! apt-cache showsrc kubernetes | grep -q .; then
  mirror=$(grep -hsoE '^(URIs:|deb) +https?://[^ ]+' /etc/apt/sources.list.d/*.sources \
    /etc/apt/sources.list.d/*.list /etc/apt/sources.list | grep -v security | head -n1 |
    awk '{print $2}' || true)
  suite=$(. /etc/os-release && echo "$VERSION_CODENAME")
  printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\n' \
    "${mirror:-http://deb.debian.org/debian}" "$suite" >"$srcs"
  apt-get update -qq
fi
if [ ${#need[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" \
    >/dev/null
fi

# A fixed build directory: Go's cache keys include source paths, so a rebuild in the same
# place reuses the cache (one build at a time, as the suite runs it).
work="$out/build"
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get source -qq --only-source kubernetes >"$work/source.log" 2>&1) ||
  { tail -n 20 "$work/source.log" >&2; exit 1; }
src=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -n1)
[ -n "$src" ] || { echo "build-kube-apiserver: no source tree unpacked" >&2; exit 1; }

reflect2=/usr/share/gocode/src/github.com/modern-go/reflect2
rm -rf "$src/vendor/github.com/modern-go/reflect2"
cp -r "$reflect2" "$src/vendor/github.com/modern-go/reflect2"

(cd "$src" && HOME="$work" GOCACHE="$out/gocache" make gen_openapi) >"$work/gen.log" 2>&1 ||
  { tail -n 30 "$work/gen.log" >&2; exit 1; }

version=$(sed -n 's/^kubernetes (\([0-9.]*+really\)\{0,1\}\([0-9.]*\).*/\2/p' \
  "$src/debian/changelog" | head -n1)
minor=$(echo "$version" | cut -d. -f2)
pkg=k8s.io/component-base/version
ldflags="-X $pkg.gitVersion=v$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
ldflags="$ldflags -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
# Kubernetes 1.20 builds in GOPATH mode from its vendor/ tree (as its hack/ scripts and
# Debian's rules do); module mode asks for go.mod updates it cannot download.
gopath="$work/gopath"
mkdir -p "$gopath/src/k8s.io"
ln -s "$src" "$gopath/src/k8s.io/kubernetes"
(cd "$gopath/src/k8s.io/kubernetes" && GO111MODULE=off GOPATH="$gopath" \
  GOCACHE="$out/gocache" CGO_ENABLED=0 \
  go build -ldflags "$ldflags" -o "$work/kube-apiserver" ./cmd/kube-apiserver) \
  >"$work/build.log" 2>&1 || { tail -n 30 "$work/build.log" >&2; exit 1; }
mv "$work/kube-apiserver" "$out/kube-apiserver"
echo "$recipe" >"$out/recipe.sha256"
echo "$out/kube-apiserver"
