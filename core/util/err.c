

#include "err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void err_vfmt(struct bh_err *err, int code, const char *fmt, va_list ap)
{
    err->code = code;
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
}

int bh_err_set(struct bh_err *err, int code, const char *fmt, ...)
{
    if (!err)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    err_vfmt(err, code, fmt, ap);
    va_end(ap);
    return -1;
}

int bh_err_errno(struct bh_err *err, int code, const char *fmt, ...)
{
    int saved = errno;
    if (!err)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    err_vfmt(err, code, fmt, ap);
    va_end(ap);
    size_t len = strlen(err->msg);
    snprintf(err->msg + len, sizeof(err->msg) - len, ": %s", strerror(saved));
    return -1;
}

int bh_err_wrap(struct bh_err *err, const char *fmt, ...)
{
    if (!err)
        return -1;
    char prefix[256], old[sizeof(err->msg)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof(old));
    snprintf(err->msg, sizeof(err->msg), "%s: %s", prefix, old);
    return -1;
}

void bh_err_clear(struct bh_err *err)
{
    if (err) {
        err->code = BH_OK;
        err->msg[0] = '\0';
    }
}

int bh_err_http_status(int code)
{
    static const int map[] = {
        [BH_OK] = 200,    [BH_EINVAL] = 400,     [BH_ENOTFOUND] = 404, [BH_ECONFLICT] = 409,
        [BH_EIO] = 500,   [BH_EUNAVAIL] = 503,   [BH_ETIMEOUT] = 504,  [BH_ETOOLARGE] = 413,
        [BH_EAUTH] = 401, [BH_EFORBIDDEN] = 403,
    };
    if (code < 0 || (size_t)code >= sizeof(map) / sizeof(map[0]) || map[code] == 0)
        return 500;
    return map[code];
}
