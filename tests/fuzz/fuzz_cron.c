/* The cron trigger's parsers of operator input: schedule expressions and the TZif files and
 * POSIX TZ footer rules of the time zone database. Input: a leading 'T' makes the rest a TZif
 * file (its zone then drives a schedule search), anything else is a schedule searched in UTC.
 * Must never crash, hang or read out of bounds; a next time found is strictly later than the
 * instant it was asked after. */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#include "../../plugins/triggers/cron/cron_expr.h"
#include "../../plugins/triggers/cron/tz.h"

static void fuzz_search(const struct cron_expr *c, const struct tz *z)
{
    int64_t t = 1700000000, next;
    for (int i = 0; i < 8 && cron_next(c, z, t, &next); i++) {
        if (next <= t)
            abort();
        t = next;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct bh_err err = {0};
    struct cron_expr c;
    if (size > 0 && data[0] == 'T') {
        struct tz *z = NULL;
        if (tz_parse(data + 1, size - 1, &z, &err) == 0) {
            if (cron_parse("*/7 1-3 * * *", &c, &err) < 0)
                abort();
            fuzz_search(&c, z);
            tz_free(z);
        }
        return 0;
    }
    char *in = malloc(size + 1);
    if (!in)
        abort();
    memcpy(in, data, size);
    in[size] = '\0';
    if (cron_parse(in, &c, &err) == 0)
        fuzz_search(&c, NULL);
    free(in);
    return 0;
}
