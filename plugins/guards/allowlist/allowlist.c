/* bh-guard-allowlist: allows the tenants listed (exact IDs, or glob patterns with * ? [..]),
 * case-insensitively unless caseSensitive is set; anyone else is denied with denyMessage. */
#include <boilerhouse/plugin.h>
#include <cjson/cJSON.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct bh_host_api *host;

struct allowlist {
    struct bh_plugin_handle *h;
    cJSON *tenants;  /* owned array of strings (may be NULL) */
    cJSON *patterns; /* owned array of strings (may be NULL) */
    int case_sensitive;
    const char *deny_message;
};

static int allowlist_strings(struct allowlist *a, const char *key, cJSON **out, struct bh_err *err)
{
    const char *text = host->config_json(a->h, key);
    *out = text ? cJSON_Parse(text) : NULL;
    const cJSON *v;
    cJSON_ArrayForEach(v, *out) {
        if (!cJSON_IsString(v))
            return host->err_set(a->h, err, BH_EINVAL, "config.%s: every entry must be a string",
                                 key);
    }
    return 0;
}

static void allowlist_close(void *inst)
{
    struct allowlist *a = inst;
    if (!a)
        return;
    cJSON_Delete(a->tenants);
    cJSON_Delete(a->patterns);
    free(a);
}

static int allowlist_open(void *state, struct bh_plugin_handle *h, void **inst, struct bh_err *err)
{
    struct allowlist *a = calloc(1, sizeof(*a));
    if (!a)
        return host->err_set(h, err, BH_EIO, "out of memory");
    a->h = h;
    a->case_sensitive = host->config_bool(h, "caseSensitive");
    a->deny_message = host->config_string(h, "denyMessage");
    if (allowlist_strings(a, "tenants", &a->tenants, err) < 0 ||
        allowlist_strings(a, "patterns", &a->patterns, err) < 0) {
        allowlist_close(a);
        return -1;
    }
    *inst = a;
    return 0;
}

static int allowlist_match(const struct allowlist *a, const char *tenant)
{
    const cJSON *v;
    cJSON_ArrayForEach(v, a->tenants) {
        if (a->case_sensitive ? strcmp(v->valuestring, tenant) == 0
                              : strcasecmp(v->valuestring, tenant) == 0)
            return 1;
    }
    cJSON_ArrayForEach(v, a->patterns) {
        if (fnmatch(v->valuestring, tenant, a->case_sensitive ? 0 : FNM_CASEFOLD) == 0)
            return 1;
    }
    return 0;
}

static int allowlist_evaluate(void *inst, const struct bh_event *ev, struct bh_guard_verdict *v,
                              struct bh_err *err)
{
    struct allowlist *a = inst;
    if (!ev->tenant)
        return host->err_set(a->h, err, BH_EINVAL, "no tenant to check");
    v->verdict = allowlist_match(a, ev->tenant) ? BH_GUARD_ALLOW : BH_GUARD_DENY;
    if (v->verdict == BH_GUARD_DENY)
        snprintf(v->reason, sizeof(v->reason), "%s", a->deny_message);
    return 0;
}

static const struct bh_config_field allowlist_schema[] = {
    {"tenants", BH_CFG_LIST, 0, NULL, "tenant IDs allowed"},
    {"patterns", BH_CFG_LIST, 0, NULL, "glob patterns of tenant IDs allowed"},
    {"caseSensitive", BH_CFG_BOOL, 0, "false", "compare IDs case-sensitively"},
    {"denyMessage", BH_CFG_STRING, 0, "You are not allowed to use this agent.",
     "what a refused sender is told"},
};

static const struct bh_guard_ops allowlist_ops = {
    .size = sizeof(struct bh_guard_ops),
    .open = allowlist_open,
    .close = allowlist_close,
    .evaluate = allowlist_evaluate,
};

static const struct bh_plugin_info allowlist_info = {
    .size = sizeof(struct bh_plugin_info),
    .abi_major = BH_PLUGIN_ABI_MAJOR,
    .abi_minor = BH_PLUGIN_ABI_MINOR,
    .build_sig = BH_PLUGIN_BUILD_SIG,
    .kind = BH_PLUGIN_GUARD,
    .flags = BH_PLUGIN_THREADSAFE,
    .name = "allowlist",
    .version = "0.1.0",
    .field_size = sizeof(struct bh_config_field),
    .serves_schema = allowlist_schema,
    .n_serves_schema = sizeof(allowlist_schema) / sizeof(allowlist_schema[0]),
    .ops = &allowlist_ops,
};

BH_PLUGIN_EXPORT const struct bh_plugin_info *bh_plugin_entry(const struct bh_host_api *h)
{
    if (!BH_HAS_OP(h, struct bh_host_api, config_json))
        return NULL;
    host = h;
    return &allowlist_info;
}
