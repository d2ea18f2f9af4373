/* Shared by the cmocka tests: what a test does when a real dependency it drives (runc, root,
 * a plugin .so) is missing. Header-only (static inline). */
#ifndef BH_TEST_H
#define BH_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* CTest's SKIP_RETURN_CODE for the unit tests (tests/CMakeLists.txt). */
#define BH_TEST_SKIP 77

/* Locally the test executable is skipped (exit 77: CTest reports it as skipped, not passed);
 * under CI=true (.ci/run) it fails, so a CI machine missing a dependency cannot turn part of
 * the suite silently green. Call it before cmocka runs anything. */
__attribute__((noreturn)) static inline void bh_test_skip_or_fail(const char *reason)
{
    const char *ci = getenv("CI");
    if (ci && strcmp(ci, "true") == 0) {
        fprintf(stderr, "FAIL: CI=true and this test cannot run: %s\n", reason);
        exit(1);
    }
    fprintf(stderr, "SKIP: %s\n", reason);
    exit(BH_TEST_SKIP);
}

#endif
