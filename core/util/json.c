#include "json.h"

#include <string.h>

#include "mem.h"

cJSON *bh_json_get(const cJSON *obj, const char *path)
{
    char key[128];
    const cJSON *cur = obj;
    while (cur && *path) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        if (n >= sizeof(key))
            return NULL;
        memcpy(key, path, n);
        key[n] = '\0';
        cur = cJSON_IsObject(cur) ? cJSON_GetObjectItemCaseSensitive(cur, key) : NULL;
        path += n + (dot ? 1 : 0);
    }
    return (cJSON *)cur;
}

const char *bh_json_str(const cJSON *obj, const char *path)
{
    const cJSON *it = bh_json_get(obj, path);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

const char *bh_json_label(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(bh_json_get(obj, "metadata.labels"), key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

long long bh_json_int(const cJSON *obj, const char *path, long long def)
{
    const cJSON *it = bh_json_get(obj, path);
    return cJSON_IsNumber(it) ? (long long)it->valuedouble : def;
}

double bh_json_num(const cJSON *obj, const char *path, double def)
{
    const cJSON *it = bh_json_get(obj, path);
    return cJSON_IsNumber(it) ? it->valuedouble : def;
}

int bh_json_bool(const cJSON *obj, const char *path, int def)
{
    const cJSON *it = bh_json_get(obj, path);
    return cJSON_IsBool(it) ? cJSON_IsTrue(it) : def;
}

cJSON *bh_json_obj(cJSON *obj, const char *path)
{
    char key[128];
    cJSON *cur = obj;
    while (*path) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        if (n >= sizeof(key))
            n = sizeof(key) - 1;
        memcpy(key, path, n);
        key[n] = '\0';
        cJSON *next = cJSON_GetObjectItemCaseSensitive(cur, key);
        if (!cJSON_IsObject(next)) {
            cJSON_DeleteItemFromObjectCaseSensitive(cur, key);
            next = cJSON_AddObjectToObject(cur, key);
        }
        cur = next;
        path += n + (dot ? 1 : 0);
    }
    return cur;
}

/* Puts item (owned) at key. The replacement is built and its key copied before the old
 * item is freed, so key or the new value may be borrowed from the item being replaced. */
static void json_put(cJSON *obj, const char *key, cJSON *item)
{
    if (!item)
        return;
    if (!cJSON_GetObjectItemCaseSensitive(obj, key))
        cJSON_AddItemToObject(obj, key, item);
    else if (!cJSON_ReplaceItemInObjectCaseSensitive(obj, key, item))
        cJSON_Delete(item);
}

void bh_json_set_str(cJSON *obj, const char *key, const char *value)
{
    if (value)
        json_put(obj, key, cJSON_CreateString(value));
    else
        cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
}

void bh_json_set_num(cJSON *obj, const char *key, double value)
{
    json_put(obj, key, cJSON_CreateNumber(value));
}

char *bh_json_print(const cJSON *item)
{
    char *s = cJSON_PrintUnformatted(item);
    if (!s)
        return bh_xstrdup("null");
    char *copy = bh_xstrdup(s);
    cJSON_free(s);
    return copy;
}
