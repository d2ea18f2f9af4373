#!/usr/bin/env bash
# Builds the libFuzzer harnesses (clang, ASan+UBSan) into ./build-fuzz (or $BH_FUZZ_BUILD_DIR)
# and runs each for N seconds (default 60), starting from tests/fuzz/corpus/<target>/ plus a
# scratch corpus that is kept between runs. Usage: scripts/fuzz.sh [seconds] [target...]
# Releases: `scripts/fuzz.sh 600` (every harness at least 10 minutes; record the summary in
# docs/testing.md). A crash leaves crash-* in the build dir's fuzz-out/<target>/, minimised into
# tests/fuzz/corpus/<target>/ (which ctest replays as fuzz/<target>) so it fails until fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
build=${BH_FUZZ_BUILD_DIR:-build-fuzz}
CC=clang cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBH_FUZZ=ON -DBH_SANITIZE=ON \
    >/dev/null
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for f in tests/fuzz/fuzz_*.c; do
        t=$(basename "$f" .c)
        [ "$t" = fuzz_replay ] || targets+=("${t#fuzz_}")
    done
fi
cmake --build "$build" -j"$(nproc)" --target "${targets[@]/#/fuzz_}" >/dev/null
summary=()
status=0
for t in "${targets[@]}"; do
    out="$build/fuzz-out/$t"
    mkdir -p "$out/corpus"
    log="$out/log.txt"
    rc=0
    (cd "$out" && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        "../../tests/fuzz/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 corpus "$OLDPWD/tests/fuzz/corpus/$t") >"$log" 2>&1 || rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
    files=$(find "$out/corpus" "tests/fuzz/corpus/$t" -type f 2>/dev/null | wc -l)
    if [ $rc -eq 0 ]; then
        res=ok
    else
        res="CRASH (see $log)"
        status=1
        for crash in "$out"/crash-* "$out"/timeout-* "$out"/leak-*; do
            [ -f "$crash" ] || continue
            min="tests/fuzz/corpus/$t/$(basename "$crash")"
            (cd "$out" && "../../tests/fuzz/fuzz_$t" -minimize_crash=1 -runs=20000 \
                -exact_artifact_path="$OLDPWD/$min" "$(basename "$crash")") >>"$log" 2>&1 ||
                true
            [ -f "$min" ] || cp "$crash" "$min"
            res="$res; seed $min"
        done
    fi
    summary+=("$(printf '%-10s %4ss %10s runs %7s exec/s %-10s %5s files  %s' "$t" "$secs" \
        "${runs:-?}" "${speed:-?}" "${cov:-}" "$files" "$res")")
done
printf '%s\n' "${summary[@]}"
exit $status
