/* Helpers the snapshot benchmarks share: a monotonic clock, run counts and the p50. */
#ifndef BH_BENCH_UTIL_H
#define BH_BENCH_UTIL_H

#include <stdlib.h>
#include <time.h>

static inline double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* BENCH_RUNS, else def; at most 64. */
static inline int bench_runs(int def)
{
    const char *r = getenv("BENCH_RUNS");
    int n = r && atoi(r) > 0 ? atoi(r) : def;
    return n < 64 ? n : 64;
}

static inline int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts ms and returns its median. */
static inline double p50(double *ms, int n)
{
    qsort(ms, (size_t)n, sizeof(*ms), cmp_double);
    return ms[n / 2];
}

#endif
