#!/bin/sh
# Egress engine benchmark: added latency (p50/p99) and req/s through the proxy, with and
# without TLS interception, against direct requests, in one run. Not part of ctest.
#   scripts/bench-egress.sh [connections] [seconds]     (build first: cmake --build build)
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${BH_BUILD_DIR:-$here/build}/tests/bench_egress
dir=$(mktemp -d /tmp/egress-bench-XXXXXX)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
printf 'subjectAltName=DNS:api.example.test\nextendedKeyUsage=serverAuth\n' >ext.cnf
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout testca.key \
  -out testca.crt -days 2 -subj /CN=BenchCA -addext basicConstraints=critical,CA:TRUE 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key -out srv.csr \
  -subj /CN=api.example.test 2>/dev/null
openssl x509 -req -in srv.csr -CA testca.crt -CAkey testca.key -CAcreateserial -out srv.crt \
  -days 2 -extfile ext.cnf 2>/dev/null
echo '127.0.0.2 api.example.test' >hosts
"$bin" "$dir" "${1:-8}" "${2:-3}"
