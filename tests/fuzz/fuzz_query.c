/* The query values the REST and Kubernetes-compatible APIs parse themselves (libmicrohttpd
 * splits and unescapes the query string): integers (limit, tail, since, timeoutSeconds,
 * resourceVersion) through bh_num_parse, and times (audit since=, and the timestamps resources
 * carry) through bh_clock_parse_rfc3339. The first byte picks the integer bounds. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "fuzz.h"
#include "mem.h"
#include "num.h"

static void check_int(const char *s, long long min, long long max)
{
    long long n = 12345;
    struct bh_err err;
    if (bh_num_parse(s, min, max, &n, &err) < 0) {
        if (n != 12345 || !err.msg[0])
            abort(); /* a refusal says why and leaves *out alone */
        return;
    }
    if (n < min || n > max || strspn(s, "-0123456789") != strlen(s) || strtoll(s, NULL, 10) != n)
        abort();
}

static void check_time(const char *s)
{
    long long ms = bh_clock_parse_rfc3339(s);
    if (ms < 0)
        return;
    /* what parsed, written back in the canonical form, parses to the same second */
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    char canon[64];
    if (!gmtime_r(&secs, &tm) || !strftime(canon, sizeof(canon), "%Y-%m-%dT%H:%M:%SZ", &tm))
        return; /* beyond what struct tm holds: nothing to compare */
    if (bh_clock_parse_rfc3339(canon) != secs * 1000LL)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const long long bounds[][2] = {
        {1, 1000}, {0, 86400}, {0, LLONG_MAX}, {LLONG_MIN, LLONG_MAX}, {-5, 5}};
    if (size == 0)
        return 0;
    const long long *b = bounds[data[0] % BH_ARRAY_LEN(bounds)];
    char *s = bh_xmalloc(size);
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';
    check_int(s, b[0], b[1]);
    check_time(s);
    free(s);
    return 0;
}
