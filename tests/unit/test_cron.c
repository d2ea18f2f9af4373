/* The cron trigger's schedule parser and next-time search (plugins/triggers/cron), against a
 * table of expressions and expected next instants, DST transitions included, with the real
 * zone files of the system's tz database. Expected values were checked with Python's
 * zoneinfo; the DST rows follow the documented choices (a time in a gap fires when the gap
 * ends; a repeated wall time fires once, at its first occurrence). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "bh_test.h"
#include "cron_expr.h"
#include "tz.h"

static int64_t at(const char *rfc3339)
{
    struct tm tm = {0};
    const char *end = strptime(rfc3339, "%Y-%m-%dT%H:%M:%SZ", &tm);
    assert_non_null(end);
    return (int64_t)timegm(&tm);
}

static const struct {
    const char *expr, *zone, *after, *next;
} next_cases[] = {
    {"*/15 * * * *", NULL, "2024-01-01T00:07:00Z", "2024-01-01T00:15:00Z"},
    {"*/15 * * * *", NULL, "2024-01-01T00:15:00Z", "2024-01-01T00:30:00Z"},
    {"5/20 * * * *", NULL, "2024-01-01T00:26:00Z", "2024-01-01T00:45:00Z"},
    {"0 9 * * MON-FRI", NULL, "2024-01-05T10:00:00Z", "2024-01-08T09:00:00Z"},
    {"0 12 * JAN,jul sun", NULL, "2024-01-01T00:00:00Z", "2024-01-07T12:00:00Z"},
    {"0 12 * JAN,jul sun", NULL, "2024-01-29T00:00:00Z", "2024-07-07T12:00:00Z"},
    {"0 0 * * 7", NULL, "2024-01-01T00:00:00Z", "2024-01-07T00:00:00Z"},
    /* Both day fields restricted: either matches (Jan 3 is a Wednesday). */
    {"0 0 1,15 * 3", NULL, "2024-01-01T00:00:00Z", "2024-01-03T00:00:00Z"},
    {"0 0 29 2 *", NULL, "2024-03-01T00:00:00Z", "2028-02-29T00:00:00Z"},
    {"59 23 31 12 *", NULL, "2024-12-31T23:59:00Z", "2025-12-31T23:59:00Z"},
    {"0-10/5,30 8-9 * * *", NULL, "2024-05-05T08:10:00Z", "2024-05-05T08:30:00Z"},
    {"@hourly", NULL, "2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z"},
    {"@daily", NULL, "2024-01-01T00:00:01Z", "2024-01-02T00:00:00Z"},
    {"@weekly", NULL, "2024-01-01T00:00:00Z", "2024-01-07T00:00:00Z"},
    {"@monthly", NULL, "2024-01-31T12:00:00Z", "2024-02-01T00:00:00Z"},
    {"@yearly", NULL, "2024-06-01T00:00:00Z", "2025-01-01T00:00:00Z"},
    {"@every 5s", NULL, "2024-01-01T00:00:01Z", "2024-01-01T00:00:05Z"},
    {"@every 2m", NULL, "2024-01-01T00:03:00Z", "2024-01-01T00:04:00Z"},
    /* Zones: New York is UTC-5 in winter, UTC-4 in summer. */
    {"0 9 * * *", "America/New_York", "2024-01-15T00:00:00Z", "2024-01-15T14:00:00Z"},
    {"0 9 * * *", "America/New_York", "2024-07-15T00:00:00Z", "2024-07-15T13:00:00Z"},
    /* Spring forward (2024-03-10 02:00 EST -> 03:00 EDT): 02:30 does not exist, it fires
     * when the gap ends; 03:00 itself exists. */
    {"30 2 * * *", "America/New_York", "2024-03-10T05:00:00Z", "2024-03-10T07:00:00Z"},
    {"30 2 * * *", "America/New_York", "2024-03-10T07:00:00Z", "2024-03-11T06:30:00Z"},
    {"0 3 * * *", "America/New_York", "2024-03-10T05:00:00Z", "2024-03-10T07:00:00Z"},
    /* Fall back (2024-11-03 02:00 EDT -> 01:00 EST): 01:30 fires once, the first time. */
    {"30 1 * * *", "America/New_York", "2024-11-03T04:00:00Z", "2024-11-03T05:30:00Z"},
    {"30 1 * * *", "America/New_York", "2024-11-03T05:30:00Z", "2024-11-04T06:30:00Z"},
    /* Started during the repeat (01:10 EST, the first 01:30 is past): the second one. */
    {"30 1 * * *", "America/New_York", "2024-11-03T06:10:00Z", "2024-11-03T06:30:00Z"},
    {"*/30 * * * *", "America/New_York", "2024-11-03T05:45:00Z", "2024-11-03T07:00:00Z"},
    /* Europe/Berlin: 2024-03-31 02:00 CET -> 03:00 CEST. */
    {"0 3 * * *", "Europe/Berlin", "2024-03-31T00:00:00Z", "2024-03-31T01:00:00Z"},
    {"30 2 * * *", "Europe/Berlin", "2024-03-31T00:00:00Z", "2024-03-31T01:00:00Z"},
    {"30 2 * * *", "Europe/Berlin", "2024-10-27T00:00:00Z", "2024-10-27T00:30:00Z"},
    /* Lord Howe moves by 30 minutes (02:00 +10:30 -> 02:30 +11 on 2024-10-06). */
    {"15 2 * * *", "Australia/Lord_Howe", "2024-10-05T12:00:00Z", "2024-10-05T15:30:00Z"},
    {"45 2 * * *", "Australia/Lord_Howe", "2024-10-05T12:00:00Z", "2024-10-05T15:45:00Z"},
    /* Kolkata: no DST, +05:30. */
    {"0 0 * * *", "Asia/Kolkata", "2024-01-01T00:00:00Z", "2024-01-01T18:30:00Z"},
    /* Past the last transition in the file: the footer's POSIX rule. */
    {"0 12 * * *", "America/New_York", "2050-07-01T00:00:00Z", "2050-07-01T16:00:00Z"},
    {"0 12 * * *", "America/New_York", "2050-01-01T00:00:00Z", "2050-01-01T17:00:00Z"},
    {"30 2 * * *", "America/New_York", "2050-03-13T05:00:00Z", "2050-03-13T07:00:00Z"},
    {"0 12 * * *", "Australia/Sydney", "2045-01-15T00:00:00Z", "2045-01-15T01:00:00Z"},
    {"0 12 * * *", "Australia/Sydney", "2045-07-15T00:00:00Z", "2045-07-15T02:00:00Z"},
};

static void test_next_times(void **state)
{
    for (size_t i = 0; i < sizeof(next_cases) / sizeof(next_cases[0]); i++) {
        struct cron_expr c;
        struct bh_err err = {0};
        struct tz *z = NULL;
        if (cron_parse(next_cases[i].expr, &c, &err) < 0)
            fail_msg("%s: %s", next_cases[i].expr, err.msg);
        if (next_cases[i].zone && tz_load(TZ_DIR_DEFAULT, next_cases[i].zone, &z, &err) < 0)
            fail_msg("%s: %s", next_cases[i].zone, err.msg);
        int64_t next = 0;
        assert_int_equal(cron_next(&c, z, at(next_cases[i].after), &next), 1);
        if (next != at(next_cases[i].next)) {
            char got[32];
            time_t t = (time_t)next;
            strftime(got, sizeof(got), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
            fail_msg("\"%s\" in %s after %s: %s, want %s", next_cases[i].expr,
                     next_cases[i].zone ? next_cases[i].zone : "UTC", next_cases[i].after, got,
                     next_cases[i].next);
        }
        tz_free(z);
    }
}

static const struct {
    const char *expr, *want;
} bad_cases[] = {
    {"* * * *", "has 4 fields"},
    {"* * * * * *", "has 6 fields"},
    {"", "has 0 fields"},
    {"60 * * * *", "minute \"60\": out of range 0-59"},
    {"* 24 * * *", "hour \"24\": out of range 0-23"},
    {"* * 0 * *", "day-of-month \"0\": out of range 1-31"},
    {"* * * 13 *", "month \"13\": out of range 1-12"},
    {"* * * * 8", "day-of-week \"8\": out of range 0-7"},
    {"5-1 * * * *", "minute \"5-1\": out of range"},
    {"*/0 * * * *", "minute \"*/0\": step must be a positive number"},
    {"1-x * * * *", "minute \"1-x\": bad range end"},
    {"x * * * *", "minute \"x\": not a number or name"},
    {"* * * FOO *", "month \"FOO\": not a number or name"},
    {"* * * * monday", "day-of-week \"monday\": not a number or name"},
    {"1,,2 * * * *", "minute \"1,,2\": empty list item"},
    {"*5 * * * *", "minute \"*5\": unexpected \"5\""},
    {"@weekly2", "unknown macro \"@weekly2\""},
    {"@reboot", "unknown macro"},
    {"@every 0s", "@every \"0s\""},
    {"@every 5d", "@every \"5d\""},
    {"@every s", "@every \"s\""},
};

static void test_bad_expressions(void **state)
{
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        struct cron_expr c;
        struct bh_err err = {0};
        if (cron_parse(bad_cases[i].expr, &c, &err) == 0)
            fail_msg("\"%s\" parsed", bad_cases[i].expr);
        assert_int_equal(err.code, BH_EINVAL);
        if (!strstr(err.msg, bad_cases[i].want) || strncmp(err.msg, "schedule: ", 10) != 0)
            fail_msg("\"%s\": %s (want %s)", bad_cases[i].expr, err.msg, bad_cases[i].want);
    }
}

static void test_never_matches(void **state)
{
    struct cron_expr c;
    struct bh_err err = {0};
    assert_int_equal(cron_parse("0 0 30 2 *", &c, &err), 0);
    int64_t next;
    assert_int_equal(cron_next(&c, NULL, at("2024-01-01T00:00:00Z"), &next), 0);
}

static void test_zone_names_are_checked(void **state)
{
    static const char *const bad[] = {"../etc/passwd",
                                      "/etc/localtime",
                                      "Europe/../../x",
                                      "Europe//Berlin",
                                      "Europe/Berlin/",
                                      "a b",
                                      ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct tz *z = NULL;
        struct bh_err err = {0};
        assert_int_equal(tz_load(TZ_DIR_DEFAULT, bad[i], &z, &err), -1);
        assert_int_equal(err.code, BH_EINVAL);
        assert_non_null(strstr(err.msg, "not an IANA zone name"));
    }
    struct tz *z = NULL;
    struct bh_err err = {0};
    assert_int_equal(tz_load(TZ_DIR_DEFAULT, "Nowhere/Atlantis", &z, &err), -1);
    assert_non_null(strstr(err.msg, "unknown zone"));
    /* Not a TZif file: refused, not misread. */
    static const uint8_t junk[] = "TZif2 but nothing after";
    assert_int_equal(tz_parse(junk, sizeof(junk), &z, &err), -1);
}

static void test_offsets_match_the_system(void **state)
{
    /* Every 6 hours over 2020..2060 in zones with and without DST, compared with the C
     * library's own reading of the same files (in this single-threaded test, setenv is
     * safe). */
    static const char *const zones[] = {"America/New_York", "Europe/Berlin",
                                        "Australia/Sydney", "Australia/Lord_Howe",
                                        "Asia/Kolkata",     "America/Sao_Paulo"};
    for (size_t i = 0; i < sizeof(zones) / sizeof(zones[0]); i++) {
        struct tz *z = NULL;
        struct bh_err err = {0};
        assert_int_equal(tz_load(TZ_DIR_DEFAULT, zones[i], &z, &err), 0);
        setenv("TZ", zones[i], 1);
        tzset();
        for (int64_t t = at("2020-01-01T00:00:00Z"); t < at("2060-01-01T00:00:00Z");
             t += 6 * 3600) {
            time_t tt = (time_t)t;
            struct tm tm;
            localtime_r(&tt, &tm);
            if (tz_offset(z, t) != tm.tm_gmtoff)
                fail_msg("%s at %lld: %d, libc %ld", zones[i], (long long)t, tz_offset(z, t),
                         tm.tm_gmtoff);
        }
        tz_free(z);
    }
    unsetenv("TZ");
}

int main(void)
{
    if (access(TZ_DIR_DEFAULT "/America/New_York", R_OK) != 0)
        bh_test_skip_or_fail("no tz database in " TZ_DIR_DEFAULT " (install tzdata)");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_next_times),
        cmocka_unit_test(test_bad_expressions),
        cmocka_unit_test(test_never_matches),
        cmocka_unit_test(test_zone_names_are_checked),
        cmocka_unit_test(test_offsets_match_the_system),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
