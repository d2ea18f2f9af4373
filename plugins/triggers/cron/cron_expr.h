/* Cron schedules: the standard five fields (minute hour day-of-month month day-of-week) with
 * lists, ranges, steps, month and day names, the @yearly..@hourly macros, and one extension,
 * "@every <n>s|m|h", a fixed interval aligned to the epoch (meant for tests and short
 * periods). Pure functions of their input: unit-tested and fuzzed without a host. */
#ifndef BH_CRON_EXPR_H
#define BH_CRON_EXPR_H

#include <boilerhouse/plugin.h>
#include <stdint.h>

#include "tz.h"

struct cron_expr {
    uint64_t minute, hour, dom, month, dow; /* bit i set: value i matches */
    /* Vixie semantics: when both day fields are restricted a day matches either of them;
     * a field that starts with '*' does not restrict. */
    int dom_star, dow_star;
    int64_t every; /* seconds, for @every; 0 for a field schedule */
};

/* Parses expr; err names the field and the token at fault. */
int cron_parse(const char *expr, struct cron_expr *out, struct bh_err *err);

/* The first scheduled instant strictly after `after` (seconds since the epoch, UTC), with the
 * wall clock of zone z (NULL: UTC). 1 with *next set, 0 if nothing matches in the next 30
 * years ("0 0 30 2 *"). DST: see tz_resolve (a time in a gap fires when the gap ends; a time
 * that repeats fires once, at its first occurrence). */
int cron_next(const struct cron_expr *c, const struct tz *z, int64_t after, int64_t *next);

#endif
