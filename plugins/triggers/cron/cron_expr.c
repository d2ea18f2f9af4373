/* Cron expression parser and next-time search (cron_expr.h). Parsing is driven by a table of
 * the five fields; the search walks wall-clock time field by field (skipping whole months,
 * days and hours that cannot match) and maps the wall time found to an instant with tz. */
#include "cron_expr.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CRON_EXPR_MAX 256
#define CRON_SEARCH_YEARS 30

struct cron_field {
    const char *name;
    int lo, hi;
    const char *const *names; /* names[i] is value lo + i; NULL if the field has none */
    size_t offset;            /* of its mask in struct cron_expr */
};

static const char *const cron_months[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul",
                                          "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const cron_days[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};

static const struct cron_field cron_fields[] = {
    {"minute", 0, 59, NULL, offsetof(struct cron_expr, minute)},
    {"hour", 0, 23, NULL, offsetof(struct cron_expr, hour)},
    {"day-of-month", 1, 31, NULL, offsetof(struct cron_expr, dom)},
    {"month", 1, 12, cron_months, offsetof(struct cron_expr, month)},
    /* 7 is Sunday too, folded onto 0 after parsing. */
    {"day-of-week", 0, 7, cron_days, offsetof(struct cron_expr, dow)},
};
#define CRON_NFIELDS (sizeof(cron_fields) / sizeof(cron_fields[0]))

static const struct {
    const char *name, *expr;
} cron_macros[] = {
    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

static int cron_fail(struct bh_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int cron_fail(struct bh_err *err, const char *fmt, ...)
{
    err->code = BH_EINVAL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- parsing ---- */

/* A number or (for fields with names) a three-letter name; returns the rest or NULL. */
static const char *cron_value(const struct cron_field *f, const char *s, int *out)
{
    if (isdigit((unsigned char)*s)) {
        int v = 0;
        while (isdigit((unsigned char)*s) && v < 1000)
            v = v * 10 + (*s++ - '0');
        *out = v;
        return s;
    }
    for (int i = 0; f->names && f->names[i]; i++)
        if (strncasecmp(s, f->names[i], 3) == 0 && !isalpha((unsigned char)s[3])) {
            *out = f->lo + i;
            return s + 3;
        }
    return NULL;
}

/* One list item: "*", "a", "a-b", each optionally "/step"; "a/step" runs a..hi. */
static int cron_item(const struct cron_field *f, const char *item, uint64_t *mask,
                     struct bh_err *err)
{
    int a = f->lo, b = f->hi, step = 1;
    const char *s = item;
    if (*s == '*') {
        s++;
    } else {
        if (!(s = cron_value(f, s, &a)))
            return cron_fail(err, "schedule: %s \"%s\": not a number or name", f->name, item);
        b = a;
        if (*s == '-' && !(s = cron_value(f, s + 1, &b)))
            return cron_fail(err, "schedule: %s \"%s\": bad range end", f->name, item);
        if (*s == '/' && b == a)
            b = f->hi;
    }
    if (*s == '/') {
        if (!isdigit((unsigned char)s[1]) || !(s = cron_value(f, s + 1, &step)) || step == 0)
            return cron_fail(err, "schedule: %s \"%s\": step must be a positive number", f->name,
                             item);
    }
    if (*s)
        return cron_fail(err, "schedule: %s \"%s\": unexpected \"%s\"", f->name, item, s);
    if (a < f->lo || b > f->hi || a > b)
        return cron_fail(err, "schedule: %s \"%s\": out of range %d-%d", f->name, item, f->lo,
                         f->hi);
    for (int v = a; v <= b; v += step)
        *mask |= 1ull << v;
    return 0;
}

static int cron_field_parse(const struct cron_field *f, char *text, uint64_t *mask,
                            struct bh_err *err)
{
    *mask = 0;
    char *save = NULL;
    if (text[0] == ',' || text[strlen(text) - 1] == ',' || strstr(text, ",,"))
        return cron_fail(err, "schedule: %s \"%s\": empty list item", f->name, text);
    for (char *item = strtok_r(text, ",", &save); item; item = strtok_r(NULL, ",", &save))
        if (cron_item(f, item, mask, err) < 0)
            return -1;
    return 0;
}

/* "@every 30s": a whole number of seconds, minutes or hours. */
static int cron_parse_every(const char *arg, struct cron_expr *out, struct bh_err *err)
{
    char *end = NULL;
    long long n = isdigit((unsigned char)*arg) ? strtoll(arg, &end, 10) : 0;
    long long unit = !end                    ? 0
                     : strcmp(end, "s") == 0 ? 1
                     : strcmp(end, "m") == 0 ? 60
                     : strcmp(end, "h") == 0 ? 3600
                                             : 0;
    if (n <= 0 || n > 100000 || unit == 0)
        return cron_fail(err, "schedule: @every \"%.32s\": want <n>s, <n>m or <n>h, n 1..100000",
                         arg);
    out->every = n * unit;
    return 0;
}

static int cron_parse_macro(const char *expr, struct cron_expr *out, struct bh_err *err)
{
    if (strncmp(expr, "@every ", 7) == 0)
        return cron_parse_every(expr + 7, out, err);
    for (size_t i = 0; i < sizeof(cron_macros) / sizeof(cron_macros[0]); i++)
        if (strcasecmp(expr, cron_macros[i].name) == 0)
            return cron_parse(cron_macros[i].expr, out, err);
    return cron_fail(err,
                     "schedule: unknown macro \"%.32s\" (@yearly, @annually, @monthly, @weekly, "
                     "@daily, @midnight, @hourly, @every <n>s|m|h)",
                     expr);
}

int cron_parse(const char *expr, struct cron_expr *out, struct bh_err *err)
{
    memset(out, 0, sizeof(*out));
    if (strlen(expr) >= CRON_EXPR_MAX)
        return cron_fail(err, "schedule: longer than %d characters", CRON_EXPR_MAX - 1);
    while (*expr == ' ' || *expr == '\t')
        expr++;
    if (*expr == '@')
        return cron_parse_macro(expr, out, err);
    char buf[CRON_EXPR_MAX], *save = NULL, *tok[CRON_NFIELDS + 1];
    snprintf(buf, sizeof(buf), "%s", expr);
    size_t n = 0;
    for (char *t = strtok_r(buf, " \t", &save); t; t = strtok_r(NULL, " \t", &save))
        if (n < CRON_NFIELDS + 1)
            tok[n++] = t;
    if (n != CRON_NFIELDS)
        return cron_fail(err,
                         "schedule: \"%.64s\" has %zu fields; want 5 (minute hour day-of-month "
                         "month day-of-week) or a macro",
                         expr, n);
    for (size_t i = 0; i < CRON_NFIELDS; i++) {
        const struct cron_field *f = &cron_fields[i];
        uint64_t *mask = (uint64_t *)((char *)out + f->offset);
        if (cron_field_parse(f, tok[i], mask, err) < 0)
            return -1;
    }
    out->dom_star = tok[2][0] == '*';
    out->dow_star = tok[4][0] == '*';
    if (out->dow & (1ull << 7))
        out->dow = (out->dow | 1ull) & ~(1ull << 7);
    return 0;
}

/* ---- the search ---- */

static int cron_day_matches(const struct cron_expr *c, int64_t days, unsigned dom)
{
    unsigned dow = (unsigned)(((days + 4) % 7 + 7) % 7);
    int by_dom = (c->dom >> dom) & 1, by_dow = (c->dow >> dow) & 1;
    if (c->dom_star || c->dow_star)
        return by_dom && by_dow;
    return by_dom || by_dow;
}

/* The first matching wall-clock minute at or after `local` (local seconds, minute-aligned);
 * 0 if none within CRON_SEARCH_YEARS. */
static int cron_next_local(const struct cron_expr *c, int64_t local, int64_t *out)
{
    int64_t y0, y;
    unsigned m, d;
    tz_civil_from_days(local / 86400, &y0, &m, &d);
    for (;;) {
        int64_t days = local / 86400;
        int64_t secs = local % 86400;
        tz_civil_from_days(days, &y, &m, &d);
        if (y > y0 + CRON_SEARCH_YEARS)
            return 0;
        if (!((c->month >> m) & 1)) /* the first day of the next month */
            local = tz_days_from_civil(m == 12 ? y + 1 : y, m == 12 ? 1 : m + 1, 1) * 86400;
        else if (!cron_day_matches(c, days, d))
            local = (days + 1) * 86400;
        else if (!((c->hour >> (secs / 3600)) & 1))
            local = days * 86400 + (secs / 3600 + 1) * 3600;
        else if (!((c->minute >> (secs % 3600 / 60)) & 1))
            local += 60;
        else
            break;
    }
    *out = local;
    return 1;
}

int cron_next(const struct cron_expr *c, const struct tz *z, int64_t after, int64_t *next)
{
    if (c->every) {
        *next = (after >= 0 ? after / c->every + 1 : after / c->every) * c->every;
        return 1;
    }
    if (after < 0 || after > (int64_t)1 << 40) /* the search works on the epoch's side */
        return 0;
    int64_t off = z ? tz_offset(z, after) : 0;
    int64_t local = (after + off) / 60 * 60 + 60;
    /* A wall time may have no instant after `after` (its repeat is past): look further. */
    for (int tries = 0; tries < 4; tries++) {
        if (!cron_next_local(c, local, &local))
            return 0;
        if (!z) {
            *next = local;
            return 1;
        }
        if (tz_resolve(z, local, after, next))
            return 1;
        local += 60;
    }
    return 0;
}
