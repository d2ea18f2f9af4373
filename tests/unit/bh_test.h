/* Shared by the cmocka tests: what a test does when a real dependency it drives (runc, root,
 * a plugin .so) is missing. Header-only (static inline). */
#ifndef BH_TEST_H
#define BH_TEST_H

#include <errno.h>
#include <signal.h>
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

/* For leftovers named prefix<pid>: 1 when the name has the prefix and its pid is gone (a run
 * killed before its teardown), 0 otherwise. Another run of the same test, alive beside this
 * one (two checkouts testing at once), keeps its directory. */
static inline int bh_test_leftover(const char *name, const char *prefix)
{
    size_t n = strlen(prefix);
    if (strncmp(name, prefix, n) != 0)
        return 0;
    char *end;
    long pid = strtol(name + n, &end, 10);
    if (end == name + n || *end || pid <= 0)
        return 1; /* not ours to keep: no live owner can be named */
    return kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

#endif
