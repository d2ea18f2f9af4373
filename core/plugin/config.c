/* Declared field tables: a plugin's config schema and the schema of what it serves. Tables
 * are walked with the element size the plugin declares, so struct bh_config_field can grow. */
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "plugin_int.h"

static const char *const config_type_names[] = {[BH_CFG_STRING] = "a string",
                                                [BH_CFG_INT] = "an int",
                                                [BH_CFG_BOOL] = "a bool",
                                                [BH_CFG_LIST] = "a list",
                                                [BH_CFG_JSON] = "a JSON value"};

const char *bh_plugin_type_name(uint32_t type)
{
    return type < BH_ARRAY_LEN(config_type_names) && config_type_names[type]
               ? config_type_names[type]
               : "of an unknown type";
}

const struct bh_config_field *bh_plugin_field_at(const struct bh_plugin_info *info,
                                                 const struct bh_config_field *table, size_t i)
{
    return (const struct bh_config_field *)((const char *)table + i * info->field_size);
}

int bh_plugin_schema_check(const char *path, const char *what, const struct bh_plugin_info *info,
                           const struct bh_config_field *table, size_t n, uint32_t max_type,
                           struct bh_err *err)
{
    if (n > 0 && !table)
        return bh_err_set(err, BH_EINVAL, "%s: %s is NULL but has %zu entries", path, what, n);
    if (n > 0 && info->field_size < BH_PLUGIN_FIELD_MIN)
        return bh_err_set(err, BH_EINVAL, "%s: field_size %zu, daemon needs at least %zu", path,
                          info->field_size, (size_t)BH_PLUGIN_FIELD_MIN);
    for (size_t i = 0; i < n; i++) {
        const struct bh_config_field *f = bh_plugin_field_at(info, table, i);
        if (!f->key || f->type < 1 || f->type > max_type)
            return bh_err_set(err, BH_EINVAL, "%s: %s entry %zu is malformed", path, what, i);
    }
    return 0;
}

const struct bh_config_field *bh_plugin_field_find(const struct bh_plugin_info *info,
                                                   const struct bh_config_field *table, size_t n,
                                                   const char *key)
{
    for (size_t i = 0; i < n; i++) {
        const struct bh_config_field *f = bh_plugin_field_at(info, table, i);
        if (strcmp(f->key, key) == 0)
            return f;
    }
    return NULL;
}

/* Integers arrive as JSON numbers (doubles): accept only whole values a double holds
 * exactly, so the cast in config_int is always defined. */
static int config_is_int(const cJSON *v)
{
    if (!cJSON_IsNumber(v))
        return 0;
    double d = v->valuedouble;
    return d >= -9007199254740992.0 && d <= 9007199254740992.0 && d == (double)(long long)d;
}

int bh_plugin_value_ok(uint32_t type, const cJSON *v)
{
    switch (type) {
    case BH_CFG_STRING:
        return cJSON_IsString(v);
    case BH_CFG_INT:
        return config_is_int(v);
    case BH_CFG_BOOL:
        return cJSON_IsBool(v);
    case BH_CFG_LIST:
        return cJSON_IsArray(v);
    case BH_CFG_JSON:
        return v && !cJSON_IsNull(v);
    }
    return 0;
}

/* Parses a schema default (text) into a typed value; NULL if the text does not fit the type. */
static cJSON *config_parse_default(const struct bh_config_field *f)
{
    const char *s = f->default_value;
    if (f->type == BH_CFG_STRING)
        return cJSON_CreateString(s);
    if (f->type == BH_CFG_BOOL)
        return strcmp(s, "true") == 0    ? cJSON_CreateTrue()
               : strcmp(s, "false") == 0 ? cJSON_CreateFalse()
                                         : NULL;
    char *end = NULL;
    long long n = strtoll(s, &end, 10);
    return (s[0] && *end == '\0') ? cJSON_CreateNumber((double)n) : NULL;
}

/* A schema to build a config from: the plugin's own (config_schema) or its part of a
 * resource (serves_schema, for trigger and guard instances). */
struct config_table {
    const struct bh_config_field *fields;
    size_t n;
};

static int config_take_given(const char *path, const struct bh_plugin_info *info,
                             const struct config_table *t, const cJSON *given, cJSON *values,
                             struct bh_err *err)
{
    const cJSON *v;
    cJSON_ArrayForEach(v, given) {
        const struct bh_config_field *f = bh_plugin_field_find(info, t->fields, t->n, v->string);
        if (!f)
            return bh_err_set(err, BH_EINVAL, "%s: unknown config key \"%s\"", path, v->string);
        if (cJSON_HasObjectItem(values, f->key))
            return bh_err_set(err, BH_EINVAL, "%s: config key \"%s\" given twice", path, f->key);
        if (!bh_plugin_value_ok(f->type, v))
            return bh_err_set(err, BH_EINVAL, "%s: config key \"%s\" must be %s", path, f->key,
                              bh_plugin_type_name(f->type));
        cJSON_AddItemToObject(values, f->key, cJSON_Duplicate(v, 1));
    }
    return 0;
}

static int config_fill_defaults(const char *path, const struct bh_plugin_info *info,
                                const struct config_table *t, cJSON *values, struct bh_err *err)
{
    for (size_t i = 0; i < t->n; i++) {
        const struct bh_config_field *f = bh_plugin_field_at(info, t->fields, i);
        if (cJSON_HasObjectItem(values, f->key))
            continue;
        if (f->required)
            return bh_err_set(err, BH_EINVAL, "%s: missing required config key \"%s\"", path,
                              f->key);
        if (!f->default_value)
            continue;
        cJSON *d = config_parse_default(f);
        if (!d)
            return bh_err_set(err, BH_EINVAL, "%s: config key \"%s\": default \"%.64s\" is not %s",
                              path, f->key, f->default_value, bh_plugin_type_name(f->type));
        cJSON_AddItemToObject(values, f->key, d);
    }
    return 0;
}

static int config_build(const char *path, const struct bh_plugin_info *info,
                        const struct config_table *t, const cJSON *given, struct bh_config **out,
                        struct bh_err *err)
{
    if (given && !cJSON_IsObject(given))
        return bh_err_set(err, BH_EINVAL, "%s: config must be an object", path);
    cJSON *values = cJSON_CreateObject();
    if (config_take_given(path, info, t, given, values, err) < 0 ||
        config_fill_defaults(path, info, t, values, err) < 0) {
        cJSON_Delete(values);
        return -1;
    }
    *out = bh_xcalloc(1, sizeof(**out));
    (*out)->values = values;
    return 0;
}

int bh_plugin_config_build(const char *path, const struct bh_plugin_info *info, const cJSON *given,
                           struct bh_config **out, struct bh_err *err)
{
    if (bh_plugin_schema_check(path, "config schema", info, info->config_schema, info->n_config,
                               BH_CFG_BOOL, err) < 0)
        return -1;
    const struct config_table t = {info->config_schema, info->n_config};
    int rc = config_build(path, info, &t, given, out, err);
    /* Without a config only a required key can be missing: an optional plugin nobody set up
     * (the s3 storage plugin in a default install), not a mistake to report as one. */
    if (rc < 0 && !given)
        err->code = BH_EUNAVAIL;
    return rc;
}

int bh_plugin_instance_config(const struct bh_plugin *p, const char *where, const cJSON *given,
                              struct bh_config **out, struct bh_err *err)
{
    /* The serves schema was checked when the plugin loaded. */
    const struct config_table t = {p->info->serves_schema, p->info->n_serves_schema};
    return config_build(where, p->info, &t, given, out, err);
}

void bh_plugin_config_free(struct bh_config *cfg)
{
    if (cfg)
        cJSON_Delete(cfg->values);
    free(cfg);
}

const cJSON *bh_plugin_config_item(const struct bh_config *cfg, const char *key)
{
    return cfg && key ? cJSON_GetObjectItemCaseSensitive(cfg->values, key) : NULL;
}
