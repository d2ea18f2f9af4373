/* What a script returned, read strictly: a guard's `true` / `false, "reason"`, and a claim
 * policy's verdict or decision table with overrides the core can apply. Anything else is the
 * script's failure, named. */
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "lua_int.h"
#include "mem.h"

#define DECISION_LABEL_MAX 63

int bh_lua_verdict(const cJSON *ret, char **reason)
{
    const cJSON *first = cJSON_GetArrayItem(ret, 0);
    const cJSON *second = cJSON_GetArrayItem(ret, 1);
    *reason = NULL;
    if (!cJSON_IsBool(first) || (second && !cJSON_IsString(second) && !cJSON_IsNull(second)))
        return -1;
    if (cJSON_IsTrue(first))
        return 1;
    *reason = cJSON_IsString(second) ? bh_xstrdup(second->valuestring) : NULL;
    return 0;
}

void bh_lua_decision_free(struct bh_lua_decision *d)
{
    free(d->reason);
    free(d->script);
    cJSON_Delete(d->overrides);
    memset(d, 0, sizeof(*d));
}

static int decision_label_ok(const char *s, int key)
{
    static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";
    size_t n = strlen(s);
    if (key && (n == 0 || strncmp(s, "boilerhouse.dev/", 16) == 0))
        return 0;
    const char *slash = key ? strchr(s, '/') : NULL;
    if (slash && (strspn(s, ok) != (size_t)(slash - s) || slash == s))
        return 0;
    const char *tail = slash ? slash + 1 : s;
    return strlen(tail) <= DECISION_LABEL_MAX && strspn(tail, ok) == strlen(tail);
}

static int decision_labels(const cJSON *v, struct bh_err *err)
{
    if (!cJSON_IsObject(v))
        return bh_err_set(err, BH_EINVAL, "labels: must be a table of strings");
    for (const cJSON *c = v->child; c; c = c->next) {
        if (!decision_label_ok(c->string, 1))
            return bh_err_set(err, BH_EINVAL,
                              "labels: key \"%.64s\" is not a label key (or is reserved)",
                              c->string);
        if (!cJSON_IsString(c) || !decision_label_ok(c->valuestring, 0))
            return bh_err_set(err, BH_EINVAL, "labels.%.64s: must be a label value", c->string);
    }
    return 0;
}

/* Caps may only lower the workload's resources. */
static int decision_resources(const cJSON *v, const cJSON *wl, struct bh_err *err)
{
    if (!cJSON_IsObject(v))
        return bh_err_set(err, BH_EINVAL, "resources: must be a table");
    for (const cJSON *c = v->child; c; c = c->next) {
        if (strcmp(c->string, "vcpus") != 0 && strcmp(c->string, "memoryMb") != 0)
            return bh_err_set(err, BH_EINVAL, "resources.%.64s: unknown (vcpus, memoryMb)",
                              c->string);
        bh_autofree char *path = bh_xasprintf("spec.resources.%s", c->string);
        double max = bh_json_num(wl, path, 0);
        if (!cJSON_IsNumber(c) || c->valuedouble <= 0 || c->valuedouble > max ||
            (strcmp(c->string, "memoryMb") == 0 && c->valuedouble != (long long)c->valuedouble))
            return bh_err_set(err, BH_EINVAL,
                              "resources.%s: must be > 0 and at most %g (the workload's)",
                              c->string, max);
    }
    return 0;
}

static int decision_choice(const cJSON *v, const char *field, const char *a, const char *b,
                           struct bh_err *err)
{
    if (!cJSON_IsString(v) || (strcmp(v->valuestring, a) != 0 && strcmp(v->valuestring, b) != 0))
        return bh_err_set(err, BH_EINVAL, "%s: must be \"%s\" or \"%s\"", field, a, b);
    return 0;
}

static int decision_override(const cJSON *c, const cJSON *wl, struct bh_err *err)
{
    const char *k = c->string;
    if (strcmp(k, "idleTimeoutSeconds") == 0) {
        if (!cJSON_IsNumber(c) || c->valuedouble < 0 || c->valuedouble > 31536000 ||
            c->valuedouble != (long long)c->valuedouble)
            return bh_err_set(err, BH_EINVAL,
                              "idleTimeoutSeconds: must be an integer in [0, 31536000]");
        return 0;
    }
    if (strcmp(k, "idleAction") == 0)
        return decision_choice(c, k, "hibernate", "destroy", err);
    if (strcmp(k, "source") == 0)
        return decision_choice(c, k, "pool", "cold", err);
    if (strcmp(k, "resources") == 0)
        return decision_resources(c, wl, err);
    if (strcmp(k, "labels") == 0)
        return decision_labels(c, err);
    return bh_err_set(err, BH_EINVAL,
                      "%.64s: unknown (allow, reason, idleTimeoutSeconds, idleAction, source, "
                      "resources, labels)",
                      k);
}

/* A decision table: {allow = bool (default true), reason = string, overrides...}. */
static int decision_table(const cJSON *t, const cJSON *wl, struct bh_lua_decision *d,
                          struct bh_err *err)
{
    const cJSON *allow = cJSON_GetObjectItemCaseSensitive(t, "allow");
    const cJSON *reason = cJSON_GetObjectItemCaseSensitive(t, "reason");
    if (allow && !cJSON_IsBool(allow))
        return bh_err_set(err, BH_EINVAL, "allow: must be a boolean");
    if (reason && !cJSON_IsString(reason))
        return bh_err_set(err, BH_EINVAL, "reason: must be a string");
    d->allow = !allow || cJSON_IsTrue(allow);
    d->reason = reason ? bh_xstrdup(reason->valuestring) : NULL;
    d->overrides = cJSON_CreateObject();
    for (const cJSON *c = t->child; c; c = c->next) {
        if (strcmp(c->string, "allow") == 0 || strcmp(c->string, "reason") == 0)
            continue;
        if (decision_override(c, wl, err) < 0)
            return -1;
        cJSON_AddItemToObject(d->overrides, c->string, cJSON_Duplicate(c, 1));
    }
    return 0;
}

int bh_lua_decision_read(const cJSON *ret, const cJSON *wl, struct bh_lua_decision *d,
                         struct bh_err *err)
{
    const cJSON *first = cJSON_GetArrayItem(ret, 0);
    if (cJSON_IsObject(first)) {
        if (decision_table(first, wl, d, err) < 0)
            return bh_err_wrap(err, "%s: bad decision", d->script);
        return 0;
    }
    int v = bh_lua_verdict(ret, &d->reason);
    if (v < 0)
        return bh_err_set(err, BH_EINVAL,
                          "%s: wrong return type: expected true, false[, reason] or a decision "
                          "table",
                          d->script);
    d->allow = v;
    return 0;
}
