/* The listeners' rate limiter (core/util/ratelimit.c): token buckets per credential or
 * address, the authentication-failure bar, the bounded table, the counters. Rates are slow
 * enough that no bucket refills while a test runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "ratelimit.h"

#define SLOW 0.001 /* tokens per second: none come back during a test */

static enum bh_ratelimit_verdict check(struct bh_ratelimit *rl, const char *addr, const char *cred,
                                       int ok, int *retry, struct bh_listen_stats *st)
{
    return bh_ratelimit_check(rl, addr, cred, ok, retry, st);
}

static void test_a_credential_gets_its_burst_then_429_with_a_wait(void **state)
{
    struct bh_ratelimit_cfg cfg = {.rate_per_s = SLOW, .burst = 3, .auth_failures = 5};
    struct bh_ratelimit *rl = bh_ratelimit_new(&cfg);
    struct bh_listen_stats st = {0};
    int retry = -1;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(check(rl, "10.0.0.1", "Bearer a", 1, &retry, &st), BH_RATELIMIT_OK);
        assert_int_equal(retry, 0);
    }
    /* The same credential from another address shares the bucket. */
    assert_int_equal(check(rl, "10.0.0.2", "Bearer a", 1, &retry, &st), BH_RATELIMIT_RATE_LIMITED);
    assert_true(retry >= 1);
    /* Another credential has its own. */
    assert_int_equal(check(rl, "10.0.0.1", "Bearer b", 1, &retry, &st), BH_RATELIMIT_OK);
    assert_int_equal(st.rate_limited, 1);
    assert_int_equal(st.auth_failures, 0);
    bh_ratelimit_free(rl);
}

static void test_without_a_credential_the_address_is_the_key(void **state)
{
    struct bh_ratelimit_cfg cfg = {.rate_per_s = SLOW, .burst = 1, .auth_failures = 5};
    struct bh_ratelimit *rl = bh_ratelimit_new(&cfg);
    int retry;
    assert_int_equal(check(rl, "10.0.0.1", NULL, 1, &retry, NULL), BH_RATELIMIT_OK);
    assert_int_equal(check(rl, "10.0.0.1", NULL, 1, &retry, NULL), BH_RATELIMIT_RATE_LIMITED);
    assert_int_equal(check(rl, "10.0.0.2", NULL, 1, &retry, NULL), BH_RATELIMIT_OK);
    bh_ratelimit_free(rl);
}

static void test_rate_zero_is_unlimited(void **state)
{
    struct bh_ratelimit_cfg cfg = {.rate_per_s = 0, .burst = 1, .auth_failures = 5};
    struct bh_ratelimit *rl = bh_ratelimit_new(&cfg);
    int retry;
    for (int i = 0; i < 1000; i++)
        assert_int_equal(check(rl, "10.0.0.1", "Bearer a", 1, &retry, NULL), BH_RATELIMIT_OK);
    bh_ratelimit_free(rl);
}

static void test_failures_past_the_allowance_bar_the_address(void **state)
{
    struct bh_ratelimit_cfg cfg = {.rate_per_s = 100, .burst = 100, .auth_failures = 2};
    struct bh_ratelimit *rl = bh_ratelimit_new(&cfg);
    struct bh_listen_stats st = {0};
    int retry;
    for (int i = 0; i < 3; i++) /* the allowance, then the one that bars */
        assert_int_equal(check(rl, "10.0.0.9", "Bearer x", 0, &retry, &st),
                         BH_RATELIMIT_UNAUTHORIZED);
    /* Barred: even the right credential waits; the wait is said. */
    assert_int_equal(check(rl, "10.0.0.9", "Bearer k", 1, &retry, &st),
                     BH_RATELIMIT_AUTH_THROTTLED);
    assert_true(retry >= 1 && retry <= 60);
    /* Another address is not barred. */
    assert_int_equal(check(rl, "10.0.0.8", "Bearer k", 1, &retry, &st), BH_RATELIMIT_OK);
    assert_int_equal(st.auth_failures, 3);
    assert_int_equal(st.auth_throttled, 1);
    bh_ratelimit_free(rl);
}

static void test_without_an_address_no_one_is_barred_and_the_credential_rate_holds(void **state)
{
    struct bh_ratelimit_cfg cfg = {.rate_per_s = SLOW, .burst = 2, .auth_failures = 1};
    struct bh_ratelimit *rl = bh_ratelimit_new(&cfg);
    struct bh_listen_stats st = {0};
    int retry;
    /* Many failures through a listener that cannot tell clients apart bar nobody ... */
    for (int i = 0; i < 10; i++)
        assert_int_equal(check(rl, NULL, "Bearer x", 0, &retry, &st), BH_RATELIMIT_UNAUTHORIZED);
    assert_int_equal(check(rl, NULL, "Bearer k", 1, &retry, &st), BH_RATELIMIT_OK);
    /* ... but a valid credential's rate still counts, and without one nothing is limited. */
    assert_int_equal(check(rl, NULL, "Bearer k", 1, &retry, &st), BH_RATELIMIT_OK);
    assert_int_equal(check(rl, NULL, "Bearer k", 1, &retry, &st), BH_RATELIMIT_RATE_LIMITED);
    for (int i = 0; i < 5; i++)
        assert_int_equal(check(rl, NULL, NULL, 1, &retry, &st), BH_RATELIMIT_OK);
    assert_int_equal(st.auth_failures, 10);
    assert_int_equal(st.auth_throttled, 0);
    bh_ratelimit_free(rl);
}

static void test_a_success_clears_the_failures(void **state)
{
    struct bh_ratelimit_cfg cfg = {.rate_per_s = 100, .burst = 100, .auth_failures = 2};
    struct bh_ratelimit *rl = bh_ratelimit_new(&cfg);
    int retry;
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 2; i++)
            assert_int_equal(check(rl, "10.0.0.9", "Bearer x", 0, &retry, NULL),
                             BH_RATELIMIT_UNAUTHORIZED);
        assert_int_equal(check(rl, "10.0.0.9", "Bearer k", 1, &retry, NULL), BH_RATELIMIT_OK);
    }
    bh_ratelimit_free(rl);
}

static void test_a_full_table_lets_requests_through(void **state)
{
    struct bh_ratelimit_cfg cfg = {
        .rate_per_s = SLOW, .burst = 1, .auth_failures = 5, .max_entries = 2};
    struct bh_ratelimit *rl = bh_ratelimit_new(&cfg);
    int retry;
    /* Two live entries (empty buckets) fill the table... */
    assert_int_equal(check(rl, "10.0.0.1", NULL, 1, &retry, NULL), BH_RATELIMIT_OK);
    assert_int_equal(check(rl, "10.0.0.2", NULL, 1, &retry, NULL), BH_RATELIMIT_OK);
    /* ...so a third key is not tracked, rather than refused. */
    for (int i = 0; i < 5; i++)
        assert_int_equal(check(rl, "10.0.0.3", NULL, 1, &retry, NULL), BH_RATELIMIT_OK);
    assert_int_equal(check(rl, "10.0.0.1", NULL, 1, &retry, NULL), BH_RATELIMIT_RATE_LIMITED);
    bh_ratelimit_free(rl);
}

static void test_without_a_limiter_only_authorization_counts(void **state)
{
    struct bh_listen_stats st = {0};
    int retry;
    assert_int_equal(check(NULL, "10.0.0.1", NULL, 1, &retry, &st), BH_RATELIMIT_OK);
    assert_int_equal(check(NULL, "10.0.0.1", NULL, 0, &retry, &st), BH_RATELIMIT_UNAUTHORIZED);
    assert_int_equal(st.auth_failures, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_credential_gets_its_burst_then_429_with_a_wait),
        cmocka_unit_test(test_without_a_credential_the_address_is_the_key),
        cmocka_unit_test(test_rate_zero_is_unlimited),
        cmocka_unit_test(test_failures_past_the_allowance_bar_the_address),
        cmocka_unit_test(test_a_success_clears_the_failures),
        cmocka_unit_test(test_without_an_address_no_one_is_barred_and_the_credential_rate_holds),
        cmocka_unit_test(test_a_full_table_lets_requests_through),
        cmocka_unit_test(test_without_a_limiter_only_authorization_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
