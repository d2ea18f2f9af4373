#include "num.h"

#include <errno.h>
#include <stdlib.h>

int bh_num_parse(const char *s, long long min, long long max, long long *out, struct bh_err *err)
{
    if (!s || !*s)
        return bh_err_set(err, BH_EINVAL, "empty, expected an integer");
    const char *digits = s[0] == '-' ? s + 1 : s;
    if (*digits < '0' || *digits > '9')
        return bh_err_set(err, BH_EINVAL, "\"%.32s\" is not an integer", s);
    char *end = NULL;
    errno = 0;
    long long n = strtoll(s, &end, 10);
    if (*end)
        return bh_err_set(err, BH_EINVAL, "\"%.32s\" is not an integer", s);
    if (errno == ERANGE || n < min || n > max)
        return bh_err_set(err, BH_EINVAL, "must be an integer from %lld to %lld", min, max);
    *out = n;
    return 0;
}
