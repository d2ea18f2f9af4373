/* A small reader of the system's time zone database (TZif files, RFC 8536) and of the POSIX TZ
 * rule in their footer, so the cron trigger computes wall-clock times in any IANA zone without
 * touching the process-wide TZ (setenv + tzset + localtime_r would race every other thread of
 * the daemon, and glibc keeps one zone per process). A loaded zone is immutable: any number of
 * threads may read it. */
#ifndef BH_CRON_TZ_H
#define BH_CRON_TZ_H

#include <boilerhouse/plugin.h>
#include <stddef.h>
#include <stdint.h>

#define TZ_DIR_DEFAULT "/usr/share/zoneinfo"

struct tz;

/* Loads zone `name` ("Europe/Berlin", "UTC") from dir. The name is checked before it becomes a
 * path: [A-Za-z0-9_+-] components separated by '/', no "..", not absolute. *out owned
 * (tz_free). */
int tz_load(const char *dir, const char *name, struct tz **out, struct bh_err *err);
/* Parses TZif data (what tz_load reads): the fuzzers' and tests' entry. */
int tz_parse(const uint8_t *data, size_t len, struct tz **out, struct bh_err *err);
void tz_free(struct tz *z);

/* The zone's UTC offset in seconds at instant utc (seconds since the epoch). */
int32_t tz_offset(const struct tz *z, int64_t utc);

/* The instant of wall-clock time `local` (seconds since the epoch as if the zone were UTC)
 * that is later than `after`: 1 with *utc set, or 0 if there is none. A wall time that occurs
 * twice (a fall-back) gives its first occurrence later than `after`; one that does not occur
 * (a spring-forward gap) gives the first instant after the gap. */
int tz_resolve(const struct tz *z, int64_t local, int64_t after, int64_t *utc);

/* Days since 1970-01-01 of a proleptic Gregorian date, and back. */
int64_t tz_days_from_civil(int64_t y, unsigned m, unsigned d);
void tz_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d);

#endif
