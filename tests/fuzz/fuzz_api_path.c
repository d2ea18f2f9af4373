/* The REST router's request-path handling: the URL unescaping libmicrohttpd calls back into
 * (api_unescape) and matching the unescaped path against every route of the real table
 * (api_match). api.c is compiled into this harness for its static functions; the archive's
 * copy of it is then never linked (every symbol it defines is already here). The query string
 * is parsed by libmicrohttpd; its values reach handlers as NUL-terminated strings. */
#include "../../core/api/api.c"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *path = bh_xmalloc(size + 1);
    memcpy(path, data, size);
    path[size] = '\0';
    size_t n = api_unescape(NULL, NULL, path);
    if (n > size || strlen(path) != n)
        abort(); /* unescaping only shrinks, and never decodes a NUL */
    for (const struct bh_api_route *r = bh_api_routes; r->pattern; r++) {
        char *params[API_MAX_PARAMS];
        int np = -1;
        if (!api_match(r->pattern, path, params, &np)) {
            if (np != 0)
                abort(); /* a failed match owns nothing */
            continue;
        }
        if (np < 0 || np > API_MAX_PARAMS)
            abort();
        for (int i = 0; i < np; i++)
            if (strlen(params[i]) >= n)
                abort(); /* a capture is part of the path */
        api_free_params(params, np);
    }
    free(path);
    return 0;
}
