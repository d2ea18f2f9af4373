#!/usr/bin/env bash
# One command for the whole suite on a fresh Debian 12 machine (as root): installs what is
# needed, builds, builds the test images (busybox; Debian, cached) and runs unit + integration
# tests with ctest, BH_TEST_JOBS (default 4) tests at a time. Extra args go to ctest.
# BH_SANITIZE selects a sanitizer pass in its own build dir:
#   BH_SANITIZE=1 (or address)  ASan+UBSan+LSan, build-asan; any report fails the test
#   BH_SANITIZE=thread          TSan, build-tsan (CI runs its unit tests: -L unit)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake_args=()
ctest_args=()
case "${BH_SANITIZE:-}" in
"" | 0) ;;
1 | address)
    export BH_BUILD_DIR=${BH_BUILD_DIR:-build-asan}
    cmake_args=(-DBH_SANITIZE=ON)
    export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:detect_leaks=1:abort_on_error=0:check_initialization_order=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
    export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp:print_suppressions=0}
    # The image build (tests/integration/test_image.py) compiles its own unsanitized binaries:
    # the normal pass runs it once.
    ctest_args=(-LE image-build)
    ;;
thread)
    export BH_BUILD_DIR=${BH_BUILD_DIR:-build-tsan}
    cmake_args=(-DBH_TSAN=ON)
    export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp}
    ctest_args=(-LE image-build)
    ;;
*)
    echo "BH_SANITIZE=$BH_SANITIZE: expected 1, address or thread" >&2
    exit 2
    ;;
esac
scripts/build.sh "${cmake_args[@]}"
build=${BH_BUILD_DIR:-build}
scripts/build-busybox-image.sh "$build/images/busybox" latest
# The real-world Debian image, cached outside the repository (BH_DEBIAN_IMAGE overrides where).
scripts/build-debian-image.sh "${BH_DEBIAN_IMAGE:-/var/cache/boilerhouse-test/debian-image}" latest
# A real kube-apiserver (and Debian's etcd) for the Kubernetes-mode tests, built once from
# Debian's source package and cached outside the repository (BH_KUBE_CACHE overrides where).
export BH_KUBE_APISERVER
BH_KUBE_APISERVER=$(scripts/build-kube-apiserver.sh "${BH_KUBE_CACHE:-/var/cache/boilerhouse-test/kube}")
rm -rf "$build/test-logs" # daemon logs kept by tests/integration/bh.py
cd "$build"
# Files run in parallel (most of an integration file's time is spent waiting on containers,
# not on the CPU); BH_TEST_JOBS overrides how many at once.
ctest --output-on-failure --timeout 900 -j"${BH_TEST_JOBS:-4}" "${ctest_args[@]}" "$@"
