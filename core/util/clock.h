/* Clocks: a monotonic millisecond clock for deadlines and durations, and the wall clock as
 * the RFC 3339 timestamps resources carry. */
#ifndef BH_CLOCK_H
#define BH_CLOCK_H

#include <pthread.h>
#include <time.h>

/* CLOCK_MONOTONIC in milliseconds. */
long long bh_clock_ms(void);
/* Now, UTC, as "YYYY-MM-DDTHH:MM:SSZ" into buf[32]. */
void bh_clock_rfc3339(char buf[32]);
/* Parses a UTC RFC 3339 time, "YYYY-MM-DDTHH:MM:SS[.fraction]Z" (the form resources carry),
 * into unix milliseconds. -1 if s is anything else (an offset other than Z included). */
long long bh_clock_parse_rfc3339(const char *s);
/* Exponential backoff after `failures` consecutive failures (1 or more): min_ms, doubling
 * each time, at most max_ms. */
long bh_clock_backoff_ms(long long failures, long min_ms, long max_ms);

/* The time ms from now on clock clk (CLOCK_REALTIME for a default condition variable), as
 * pthread_cond_timedwait takes it. */
void bh_clock_deadline(int clk, long ms, struct timespec *out);

/* Waits ms on cond (a default, CLOCK_REALTIME condition variable) with mu, unless *stop is
 * or becomes set (under mu, signalled on cond); 1 to go on, 0 once stopped. */
int bh_clock_sleep_unless(pthread_mutex_t *mu, pthread_cond_t *cond, const volatile int *stop,
                          long ms);

/* Wall-clock milliseconds since the epoch (CLOCK_REALTIME). */
long long bh_clock_wall_ms(void);
/* wall_ms as RFC 3339 UTC with milliseconds ("2026-01-02T03:04:05.678Z"). */
void bh_clock_rfc3339_ms(long long wall_ms, char buf[32]);

#endif
