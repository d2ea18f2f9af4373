/* TZif reader (RFC 8536, versions 1 to 4) and POSIX TZ rules, see tz.h for why. Transitions
 * come from the 64-bit block when there is one; instants after the last transition follow the
 * footer's rule ("EST5EDT,M3.2.0,M11.1.0"), which is how slim TZif files describe the future. */
#include "tz.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TZ_FILE_MAX (1 << 20)
#define TZ_HEADER_LEN 44

/* One end of a DST period: a day rule and the local time of day it happens at. */
struct tz_rule_day {
    char kind; /* 'J' (1..365, no Feb 29), 'D' (0..365), 'M' (month.week.weekday) */
    int n, m, w, d;
    int32_t secs; /* time of day, local (may be negative or past 24 h) */
};

struct tz_rule {
    int32_t std_off, dst_off; /* UTC offsets, seconds east */
    int has_dst;
    struct tz_rule_day start, end;
};

struct tz {
    int64_t *times; /* transitions, ascending */
    uint8_t *idx;   /* type of each transition */
    size_t n_times;
    int32_t *utoff; /* per type */
    size_t n_types;
    int has_rule;
    struct tz_rule rule;
};

static int tz_fail(struct bh_err *err, int code, const char *what)
{
    err->code = code;
    snprintf(err->msg, sizeof(err->msg), "%s", what);
    return -1;
}

/* ---- calendar ---- */

int64_t tz_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

void tz_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static int tz_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned tz_month_days(int64_t y, unsigned m)
{
    static const unsigned days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return days[m - 1] + (m == 2 && tz_leap(y));
}

/* ---- POSIX TZ rules ---- */

/* [+-]hh[:mm[:ss]]; hours up to 167 (RFC 8536 extension). */
static const char *tz_parse_hms(const char *s, int32_t *out)
{
    int sign = 1;
    if (*s == '+' || *s == '-')
        sign = *s++ == '-' ? -1 : 1;
    int32_t parts[3] = {0, 0, 0};
    for (int i = 0; i < 3; i++) {
        if (i > 0 && *s != ':')
            break;
        s += i > 0;
        if (!isdigit((unsigned char)*s))
            return NULL;
        int v = 0;
        for (int k = 0; k < 3 && isdigit((unsigned char)*s); k++)
            v = v * 10 + (*s++ - '0');
        if ((i == 0 && v > 167) || (i > 0 && v > 59))
            return NULL;
        parts[i] = v;
    }
    *out = sign * (parts[0] * 3600 + parts[1] * 60 + parts[2]);
    return s;
}

/* A zone abbreviation: 3+ letters, or <...> of [A-Za-z0-9+-]. */
static const char *tz_parse_name(const char *s)
{
    const char *start = s;
    if (*s == '<') {
        while (*++s && (isalnum((unsigned char)*s) || *s == '+' || *s == '-'))
            ;
        return *s == '>' && s - start >= 4 ? s + 1 : NULL;
    }
    while (isalpha((unsigned char)*s))
        s++;
    return s - start >= 3 ? s : NULL;
}

static const char *tz_parse_int(const char *s, int lo, int hi, int *out)
{
    if (!isdigit((unsigned char)*s))
        return NULL;
    int v = 0;
    while (isdigit((unsigned char)*s) && v <= hi)
        v = v * 10 + (*s++ - '0');
    if (v < lo || v > hi)
        return NULL;
    *out = v;
    return s;
}

static const char *tz_parse_day(const char *s, struct tz_rule_day *r)
{
    r->secs = 7200; /* 02:00 unless given */
    if (*s == 'J') {
        r->kind = 'J';
        s = tz_parse_int(s + 1, 1, 365, &r->n);
    } else if (*s == 'M') {
        r->kind = 'M';
        s = tz_parse_int(s + 1, 1, 12, &r->m);
        s = s && *s == '.' ? tz_parse_int(s + 1, 1, 5, &r->w) : NULL;
        s = s && *s == '.' ? tz_parse_int(s + 1, 0, 6, &r->d) : NULL;
    } else {
        r->kind = 'D';
        s = tz_parse_int(s, 0, 365, &r->n);
    }
    if (s && *s == '/')
        s = tz_parse_hms(s + 1, &r->secs);
    return s;
}

/* Parses "std offset [dst [offset] [,start[/time],end[/time]]]". */
static int tz_parse_rule(const char *s, struct tz_rule *r)
{
    int32_t off;
    memset(r, 0, sizeof(*r));
    if (!(s = tz_parse_name(s)) || !(s = tz_parse_hms(s, &off)))
        return -1;
    r->std_off = r->dst_off = -off; /* POSIX offsets are west of UTC */
    if (!*s)
        return 0;
    if (!(s = tz_parse_name(s)))
        return -1;
    r->has_dst = 1;
    r->dst_off = r->std_off + 3600;
    if (*s && *s != ',') {
        if (!(s = tz_parse_hms(s, &off)))
            return -1;
        r->dst_off = -off;
    }
    if (!*s) /* no rule given: the US rule, as POSIX systems assume */
        s = ",M3.2.0,M11.1.0";
    if (*s++ != ',' || !(s = tz_parse_day(s, &r->start)) || *s++ != ',' ||
        !(s = tz_parse_day(s, &r->end)))
        return -1;
    return *s ? -1 : 0;
}

/* Days since the epoch of rule day r in year y. */
static int64_t tz_rule_date(const struct tz_rule_day *r, int64_t y)
{
    int64_t jan1 = tz_days_from_civil(y, 1, 1);
    if (r->kind == 'J')
        return jan1 + r->n - 1 + (tz_leap(y) && r->n >= 60);
    if (r->kind == 'D')
        return jan1 + r->n;
    int64_t first = tz_days_from_civil(y, (unsigned)r->m, 1);
    int wd = (int)(((first + 4) % 7 + 7) % 7); /* 1970-01-01 was a Thursday */
    int64_t day = (r->d - wd + 7) % 7 + (int64_t)(r->w - 1) * 7;
    while (day >= tz_month_days(y, (unsigned)r->m))
        day -= 7;
    return first + day;
}

static int32_t tz_rule_offset(const struct tz_rule *r, int64_t utc)
{
    if (!r->has_dst)
        return r->std_off;
    int64_t y;
    unsigned m, d;
    int64_t local = utc + r->std_off;
    tz_civil_from_days((local >= 0 ? local : local - 86399) / 86400, &y, &m, &d);
    /* DST starts at a time given in standard time and ends at one given in DST. */
    int64_t start = tz_rule_date(&r->start, y) * 86400 + r->start.secs - r->std_off;
    int64_t end = tz_rule_date(&r->end, y) * 86400 + r->end.secs - r->dst_off;
    int dst = start < end ? (utc >= start && utc < end) : !(utc >= end && utc < start);
    return dst ? r->dst_off : r->std_off;
}

/* ---- TZif ---- */

static int64_t tz_be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    if (n == 4)
        return (int32_t)(uint32_t)v;
    return (int64_t)v;
}

struct tz_counts {
    size_t isut, isstd, leap, time, type, chr;
};

static int tz_header(const uint8_t *p, size_t len, struct tz_counts *c)
{
    if (len < TZ_HEADER_LEN || memcmp(p, "TZif", 4) != 0)
        return -1;
    size_t *fields[] = {&c->isut, &c->isstd, &c->leap, &c->time, &c->type, &c->chr};
    for (int i = 0; i < 6; i++)
        *fields[i] = (size_t)(uint32_t)tz_be(p + 20 + 4 * i, 4);
    /* RFC 8536 3.1: at least one type, indicator counts 0 or typecnt, and sane sizes. */
    if (c->type == 0 || c->type > 256 || c->time > 100000 || c->leap > 100000 || c->chr > 65536 ||
        (c->isut && c->isut != c->type) || (c->isstd && c->isstd != c->type))
        return -1;
    return 0;
}

static size_t tz_block_len(const struct tz_counts *c, int tsize)
{
    return c->time * (size_t)tsize + c->time + c->type * 6 + c->chr +
           c->leap * (size_t)(tsize + 4) + c->isstd + c->isut;
}

/* Reads one data block (tsize 4 or 8 bytes per time) into z. */
static int tz_block(struct tz *z, const uint8_t *p, const struct tz_counts *c, int tsize)
{
    z->n_times = c->time;
    z->n_types = c->type;
    z->times = calloc(c->time + 1, sizeof(*z->times));
    z->idx = calloc(c->time + 1, 1);
    z->utoff = calloc(c->type, sizeof(*z->utoff));
    if (!z->times || !z->idx || !z->utoff)
        return -1;
    for (size_t i = 0; i < c->time; i++) {
        z->times[i] = tz_be(p + i * (size_t)tsize, tsize);
        if (i > 0 && z->times[i] <= z->times[i - 1])
            return -1;
    }
    p += c->time * (size_t)tsize;
    for (size_t i = 0; i < c->time; i++)
        if ((z->idx[i] = p[i]) >= c->type)
            return -1;
    p += c->time;
    for (size_t i = 0; i < c->type; i++) {
        int64_t off = tz_be(p + 6 * i, 4);
        if (off < -89999 || off > 93599)
            return -1;
        z->utoff[i] = (int32_t)off;
    }
    return 0;
}

static int tz_footer(struct tz *z, const uint8_t *p, size_t len)
{
    if (len < 2 || p[0] != '\n')
        return -1;
    const uint8_t *nl = memchr(p + 1, '\n', len - 1);
    if (!nl || nl - p > 128)
        return -1;
    if (nl == p + 1) /* an empty footer: no rule */
        return 0;
    char text[129];
    memcpy(text, p + 1, (size_t)(nl - p - 1));
    text[nl - p - 1] = '\0';
    if (tz_parse_rule(text, &z->rule) < 0)
        return -1;
    z->has_rule = 1;
    return 0;
}

int tz_parse(const uint8_t *data, size_t len, struct tz **out, struct bh_err *err)
{
    struct tz_counts c;
    if (tz_header(data, len, &c) < 0 || len - TZ_HEADER_LEN < tz_block_len(&c, 4))
        return tz_fail(err, BH_EINVAL, "not a TZif file (bad header or truncated)");
    int version = data[4] ? data[4] - '0' : 1;
    const uint8_t *p = data + TZ_HEADER_LEN;
    size_t left = len - TZ_HEADER_LEN;
    int tsize = 4;
    if (version >= 2) { /* skip the 32-bit block: the 64-bit one follows with its header */
        p += tz_block_len(&c, 4);
        left -= tz_block_len(&c, 4);
        if (tz_header(p, left, &c) < 0 || left - TZ_HEADER_LEN < tz_block_len(&c, 8))
            return tz_fail(err, BH_EINVAL, "TZif: bad or truncated 64-bit block");
        p += TZ_HEADER_LEN;
        left -= TZ_HEADER_LEN;
        tsize = 8;
    }
    struct tz *z = calloc(1, sizeof(*z));
    if (!z || tz_block(z, p, &c, tsize) < 0 ||
        (version >= 2 && tz_footer(z, p + tz_block_len(&c, 8), left - tz_block_len(&c, 8)) < 0)) {
        tz_free(z);
        return tz_fail(err, BH_EINVAL, "TZif: bad transitions, types or footer rule");
    }
    *out = z;
    return 0;
}

static int tz_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 64 || name[0] == '/' || name[n - 1] == '/' || strstr(name, "..") ||
        strstr(name, "//"))
        return 0;
    return strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+-/") == n;
}

int tz_load(const char *dir, const char *name, struct tz **out, struct bh_err *err)
{
    if (!tz_name_ok(name))
        return tz_fail(err, BH_EINVAL,
                       "not an IANA zone name (like Europe/Berlin: [A-Za-z0-9_+-] and '/')");
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        char msg[600];
        snprintf(msg, sizeof(msg), "unknown zone (%s: %s)", path, strerror(errno));
        return tz_fail(err, errno == ENOENT ? BH_EINVAL : BH_EIO, msg);
    }
    uint8_t *buf = malloc(TZ_FILE_MAX);
    size_t len = buf ? fread(buf, 1, TZ_FILE_MAX, f) : 0;
    fclose(f);
    int rc = buf ? tz_parse(buf, len, out, err) : tz_fail(err, BH_EIO, "out of memory");
    free(buf);
    return rc;
}

void tz_free(struct tz *z)
{
    if (!z)
        return;
    free(z->times);
    free(z->idx);
    free(z->utoff);
    free(z);
}

/* ---- lookups ---- */

int32_t tz_offset(const struct tz *z, int64_t utc)
{
    if (z->n_times == 0 || utc < z->times[0])
        return z->n_times == 0 && z->has_rule ? tz_rule_offset(&z->rule, utc) : z->utoff[0];
    if (utc >= z->times[z->n_times - 1] && z->has_rule)
        return tz_rule_offset(&z->rule, utc);
    size_t lo = 0, hi = z->n_times; /* the last transition at or before utc */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (z->times[mid] <= utc)
            lo = mid;
        else
            hi = mid;
    }
    return z->utoff[z->idx[lo]];
}

/* The first instant in (lo, hi] whose offset differs from lo's (hi's offset does). */
static int64_t tz_transition(const struct tz *z, int64_t lo, int64_t hi)
{
    int32_t before = tz_offset(z, lo);
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (tz_offset(z, mid) == before)
            lo = mid;
        else
            hi = mid;
    }
    return hi;
}

int tz_resolve(const struct tz *z, int64_t local, int64_t after, int64_t *utc)
{
    /* Offsets change at most once in two days: the ones a day either side are the only ones
     * this wall time can have. */
    int32_t o1 = tz_offset(z, local - 86400), o2 = tz_offset(z, local + 86400);
    int64_t u1 = local - o1, u2 = local - o2;
    int ok1 = tz_offset(z, u1) == o1, ok2 = tz_offset(z, u2) == o2;
    int64_t best = INT64_MAX;
    if (ok1 && u1 > after)
        best = u1;
    if (ok2 && u2 > after && u2 < best)
        best = u2;
    if (!ok1 && !ok2) /* in a gap: the gap ends at the transition */
        best = tz_transition(z, u1 < u2 ? u1 : u2, u1 < u2 ? u2 : u1);
    if (best == INT64_MAX || best <= after)
        return 0;
    *utc = best;
    return 1;
}
