/* Request paths and selectors of the Kubernetes-compatible API: outside input, parsed into
 * fixed-size fields, anything longer or stranger refused (fuzzed: tests/fuzz/fuzz_kapi.c). */
#include <stdio.h>
#include <string.h>

#include "json.h"
#include "kapi.h"
#include "mem.h"

#define PATH_MAX_SEGS 10

/* Fixed paths, matched whole. */
static const struct {
    const char *path;
    enum bh_kapi_path_type type;
} path_fixed[] = {
    {"/version", BH_KAPI_P_VERSION},       {"/api", BH_KAPI_P_LEGACY},
    {"/apis", BH_KAPI_P_GROUPS},           {"/openapi/v2", BH_KAPI_P_OPENAPI_V2},
    {"/openapi/v3", BH_KAPI_P_OPENAPI_V3}, {"/healthz", BH_KAPI_P_HEALTH},
    {"/livez", BH_KAPI_P_HEALTH},          {"/readyz", BH_KAPI_P_HEALTH},
};

static int path_copy(char *dst, size_t cap, const char *src, struct bh_err *err)
{
    size_t n = strlen(src);
    if (n == 0 || n >= cap)
        return bh_err_set(err, BH_ENOTFOUND, "path segment of %zu characters", n);
    memcpy(dst, src, n + 1);
    return 0;
}

/* Splits into at most PATH_MAX_SEGS non-empty segments (a trailing slash is tolerated). */
static int path_split(char *buf, char **segs, struct bh_err *err)
{
    int n = 0;
    char *p = buf + (buf[0] == '/');
    while (*p) {
        char *slash = strchr(p, '/');
        if (slash)
            *slash = '\0';
        if (!*p || n == PATH_MAX_SEGS)
            return bh_err_set(err, BH_ENOTFOUND, "no such path");
        segs[n++] = p;
        if (!slash)
            break;
        p = slash + 1;
    }
    return n;
}

/* After the group-version prefix: [namespaces/<ns>/]<resource>[/<name>[/<sub>]], where
 * /api/v1/namespaces/<name>[/status] is the namespace object itself. */
static int path_object(char **s, int n, struct bh_kapi_path *p, struct bh_err *err)
{
    p->type = BH_KAPI_P_OBJECT;
    if (n >= 3 && strcmp(s[0], "namespaces") == 0 && !(n == 3 && strcmp(s[2], "status") == 0)) {
        if (path_copy(p->ns, sizeof(p->ns), s[1], err) < 0)
            return -1;
        s += 2;
        n -= 2;
    }
    if (n < 1 || n > 3)
        return bh_err_set(err, BH_ENOTFOUND, "no such path");
    if (path_copy(p->resource, sizeof(p->resource), s[0], err) < 0)
        return -1;
    if (n >= 2 && path_copy(p->name, sizeof(p->name), s[1], err) < 0)
        return -1;
    if (n == 3 && path_copy(p->sub, sizeof(p->sub), s[2], err) < 0)
        return -1;
    return 0;
}

static int path_api(char **s, int n, struct bh_kapi_path *p, struct bh_err *err)
{
    if (strcmp(s[0], "api") == 0) {
        if (path_copy(p->version, sizeof(p->version), s[1], err) < 0)
            return -1;
        p->type = BH_KAPI_P_RESOURCES;
        return n == 2 ? 0 : path_object(s + 2, n - 2, p, err);
    }
    if (path_copy(p->group, sizeof(p->group), s[1], err) < 0)
        return -1;
    p->type = BH_KAPI_P_GROUP;
    if (n == 2)
        return 0;
    if (path_copy(p->version, sizeof(p->version), s[2], err) < 0)
        return -1;
    p->type = BH_KAPI_P_RESOURCES;
    return n == 3 ? 0 : path_object(s + 3, n - 3, p, err);
}

static int path_openapi_gv(char **s, int n, struct bh_kapi_path *p, struct bh_err *err)
{
    p->type = BH_KAPI_P_OPENAPI_GV;
    if (n == 4 && strcmp(s[2], "api") == 0)
        return path_copy(p->version, sizeof(p->version), s[3], err);
    if (n == 5 && strcmp(s[2], "apis") == 0)
        return path_copy(p->group, sizeof(p->group), s[3], err) < 0
                   ? -1
                   : path_copy(p->version, sizeof(p->version), s[4], err);
    return bh_err_set(err, BH_ENOTFOUND, "no such path");
}

int bh_kapi_path_parse(const char *url, struct bh_kapi_path *p, struct bh_err *err)
{
    memset(p, 0, sizeof(*p));
    for (size_t i = 0; i < BH_ARRAY_LEN(path_fixed); i++) {
        size_t len = strlen(path_fixed[i].path);
        /* the path, or the path and a trailing slash; url is read only as far as it goes */
        if (strncmp(url, path_fixed[i].path, len) == 0 &&
            (url[len] == '\0' || (url[len] == '/' && url[len + 1] == '\0'))) {
            p->type = path_fixed[i].type;
            return 0;
        }
    }
    char buf[1024], *segs[PATH_MAX_SEGS];
    if (strlen(url) >= sizeof(buf))
        return bh_err_set(err, BH_ENOTFOUND, "path too long");
    snprintf(buf, sizeof(buf), "%s", url);
    int n = path_split(buf, segs, err);
    if (n < 0)
        return -1;
    if (n >= 2 && (strcmp(segs[0], "api") == 0 || strcmp(segs[0], "apis") == 0))
        return path_api(segs, n, p, err);
    if (n >= 4 && strcmp(segs[0], "openapi") == 0 && strcmp(segs[1], "v3") == 0)
        return path_openapi_gv(segs, n, p, err);
    return bh_err_set(err, BH_ENOTFOUND, "no such path");
}

/* ---- selectors ---- */

static int sel_copy(char *dst, size_t cap, const char *src, size_t n, const char *what,
                    struct bh_err *err)
{
    while (n && *src == ' ')
        src++, n--;
    while (n && src[n - 1] == ' ')
        n--;
    if (n >= cap)
        return bh_err_set(err, BH_EINVAL, "selector %s longer than %zu characters", what, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
    return 0;
}

/* One requirement: its operator is the first "!=", "==" or "=", else existence. */
static int sel_one(const char *s, size_t n, struct bh_kapi_sel *sel, struct bh_err *err)
{
    if (sel->n == BH_KAPI_SEL_MAX)
        return bh_err_set(err, BH_EINVAL, "selector has more than %d requirements",
                          BH_KAPI_SEL_MAX);
    __typeof__(sel->req[0]) *r = &sel->req[sel->n];
    const char *eq = memchr(s, '=', n);
    if (!eq) {
        int neg = n && s[0] == '!';
        r->op = neg ? BH_KAPI_SEL_ABSENT : BH_KAPI_SEL_EXISTS;
        r->value[0] = '\0';
        if (sel_copy(r->key, sizeof(r->key), s + neg, n - (size_t)neg, "key", err) < 0)
            return -1;
    } else {
        int ne = eq > s && eq[-1] == '!';
        const char *kend = ne ? eq - 1 : eq, *v = eq + 1 + (eq + 1 < s + n && eq[1] == '=');
        r->op = ne ? BH_KAPI_SEL_NE : BH_KAPI_SEL_EQ;
        if (sel_copy(r->key, sizeof(r->key), s, (size_t)(kend - s), "key", err) < 0 ||
            sel_copy(r->value, sizeof(r->value), v, (size_t)(s + n - v), "value", err) < 0)
            return -1;
    }
    if (!r->key[0] || strpbrk(r->key, " !=()") || strpbrk(r->value, " !=(),"))
        return bh_err_set(err, BH_EINVAL,
                          "unable to parse requirement \"%.*s\": expected key, !key, key=value "
                          "or key!=value (set-based selectors are not supported)",
                          (int)(n > 80 ? 80 : n), s);
    sel->n++;
    return 0;
}

int bh_kapi_sel_parse(const char *text, struct bh_kapi_sel *sel, struct bh_err *err)
{
    sel->n = 0;
    if (!text)
        return 0;
    const char *p = text;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (sel_one(p, n, sel, err) < 0)
            return -1;
        p += n + (comma != NULL);
    }
    return 0;
}

static int sel_test(int op, const char *have, const char *want)
{
    switch (op) {
    case BH_KAPI_SEL_EQ:
        return have && strcmp(have, want) == 0;
    case BH_KAPI_SEL_NE:
        return !have || strcmp(have, want) != 0;
    case BH_KAPI_SEL_EXISTS:
        return have != NULL;
    default:
        return have == NULL;
    }
}

int bh_kapi_sel_match_labels(const struct bh_kapi_sel *sel, const cJSON *obj)
{
    const cJSON *labels = bh_json_get(obj, "metadata.labels");
    for (int i = 0; i < sel->n; i++) {
        const cJSON *v = labels ? cJSON_GetObjectItemCaseSensitive(labels, sel->req[i].key) : NULL;
        if (!sel_test(sel->req[i].op, cJSON_GetStringValue(v), sel->req[i].value))
            return 0;
    }
    return 1;
}

int bh_kapi_sel_match_fields(const struct bh_kapi_sel *sel, const cJSON *obj)
{
    for (int i = 0; i < sel->n; i++)
        if (!sel_test(sel->req[i].op, bh_json_str(obj, sel->req[i].key), sel->req[i].value))
            return 0;
    return 1;
}
