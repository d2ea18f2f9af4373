/* Workloads against the values the loaded plugins serve. The store validates the structure of
 * spec.network (its keys are a shared vocabulary); which access values exist, and which keys
 * each serves, is up to the loaded network plugins. */
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "plugin_int.h"

#define SERVES_WORKLOAD_KIND "BoilerhouseWorkload"

/* Keys of spec.network the core itself reads, whatever the access. */
static int serves_core_key(const char *key)
{
    return strcmp(key, "access") == 0 || strcmp(key, "websocket") == 0;
}

static struct bh_plugin *serves_find(struct bh_plugins *ps, const char *access)
{
    struct bh_plugin *p;
    for (size_t i = 0; (p = bh_plugins_nth(ps, BH_PLUGIN_NETWORK, i)); i++)
        if (p->info->serves && strcmp(p->info->serves, access) == 0)
            return p;
    return NULL;
}

/* "none, restricted, unrestricted": the served access values, in load order. */
static char *serves_list(struct bh_plugins *ps)
{
    char *list = bh_xstrdup("");
    struct bh_plugin *p;
    for (size_t i = 0; (p = bh_plugins_nth(ps, BH_PLUGIN_NETWORK, i)); i++) {
        if (!p->info->serves)
            continue;
        char *next = bh_xasprintf("%s%s%s", list, list[0] ? ", " : "", p->info->serves);
        free(list);
        list = next;
    }
    return list;
}

static int serves_check_keys(const struct bh_plugin_info *info, const cJSON *network,
                             struct bh_err *err)
{
    const cJSON *v;
    cJSON_ArrayForEach(v, network) {
        if (serves_core_key(v->string))
            continue;
        const struct bh_config_field *f =
            bh_plugin_field_find(info, info->serves_schema, info->n_serves_schema, v->string);
        if (!f)
            return bh_err_set(err, BH_EINVAL, "spec.network.%s: not used by access %s", v->string,
                              info->serves);
        if (!bh_plugin_value_ok(f->type, v))
            return bh_err_set(err, BH_EINVAL, "spec.network.%s: must be %s", v->string,
                              bh_plugin_type_name(f->type));
    }
    for (size_t i = 0; i < info->n_serves_schema; i++) {
        const struct bh_config_field *f = bh_plugin_field_at(info, info->serves_schema, i);
        if (f->required && !cJSON_HasObjectItem(network, f->key))
            return bh_err_set(err, BH_EINVAL, "spec.network.%s: required by access %s", f->key,
                              info->serves);
    }
    return 0;
}

int bh_plugins_check_resource(struct bh_plugins *ps, const cJSON *obj, struct bh_err *err)
{
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(obj, "kind");
    if (!cJSON_IsString(kind) || strcmp(kind->valuestring, SERVES_WORKLOAD_KIND) != 0)
        return 0;
    const cJSON *spec = cJSON_GetObjectItemCaseSensitive(obj, "spec");
    const cJSON *network = cJSON_GetObjectItemCaseSensitive(spec, "network");
    const char *access = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(network, "access"));
    const struct bh_plugin *p = serves_find(ps, access ? access : "none");
    if (!p) {
        bh_autofree char *served = serves_list(ps);
        return bh_err_set(err, BH_EINVAL,
                          "spec.network.access: must be one of: %s (\"%.64s\" is served by no "
                          "loaded network plugin)",
                          served, access ? access : "none");
    }
    return serves_check_keys(p->info, network, err);
}
