#include "clock.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

long long bh_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long bh_clock_backoff_ms(long long failures, long min_ms, long max_ms)
{
    long ms = min_ms;
    for (long long i = 1; i < failures && ms < max_ms; i++)
        ms *= 2;
    return ms < max_ms ? ms : max_ms;
}

void bh_clock_rfc3339(char buf[32])
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

long long bh_clock_parse_rfc3339(const char *s)
{
    struct tm tm = {0};
    const char *rest = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
    if (!rest)
        return -1;
    long long ms = 0;
    if (*rest == '.') {
        size_t digits = strspn(++rest, "0123456789");
        if (digits == 0)
            return -1;
        for (size_t i = 0; i < 3; i++) /* ".5" is 500 ms: scale the first three digits */
            ms = ms * 10 + (i < digits ? rest[i] - '0' : 0);
        rest += digits;
    }
    if (strcmp(rest, "Z") != 0)
        return -1;
    time_t t = timegm(&tm);
    return t < 0 ? -1 : (long long)t * 1000 + ms;
}

long long bh_clock_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void bh_clock_rfc3339_ms(long long wall_ms, char buf[32])
{
    time_t t = (time_t)(wall_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, 32 - n, ".%03lldZ", wall_ms % 1000);
}

void bh_clock_deadline(int clk, long ms, struct timespec *out)
{
    clock_gettime((clockid_t)clk, out);
    out->tv_sec += ms / 1000;
    out->tv_nsec += (ms % 1000) * 1000000L;
    if (out->tv_nsec >= 1000000000L) {
        out->tv_sec++;
        out->tv_nsec -= 1000000000L;
    }
}

int bh_clock_sleep_unless(pthread_mutex_t *mu, pthread_cond_t *cond, const volatile int *stop,
                          long ms)
{
    struct timespec ts;
    bh_clock_deadline(CLOCK_REALTIME, ms, &ts);
    pthread_mutex_lock(mu);
    if (!*stop)
        pthread_cond_timedwait(cond, mu, &ts);
    int go_on = !*stop;
    pthread_mutex_unlock(mu);
    return go_on;
}
