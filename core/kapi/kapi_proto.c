/* The one protobuf body kubectl sends us: a v1 Secret (kubectl writes built-in kinds as
 * application/vnd.kubernetes.protobuf). Decoded into the JSON shape the handlers take; only
 * the fields a secret's creation uses, everything else skipped. Outside input: fuzzed by
 * tests/fuzz/fuzz_kapi.c. */
#include <stdlib.h>
#include <string.h>

#include "kapi.h"
#include "mem.h"

struct pb {
    const unsigned char *p, *end;
};

static int pb_varint(struct pb *b, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64 && b->p < b->end; shift += 7) {
        unsigned char c = *b->p++;
        *v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80))
            return 0;
    }
    return -1;
}

/* The next field: its number, wire type and, for length-delimited ones, its bytes. */
static int pb_next(struct pb *b, int *field, struct pb *sub)
{
    uint64_t tag, n;
    if (pb_varint(b, &tag) < 0 || tag >> 3 == 0 || tag >> 3 > 1000)
        return -1;
    *field = (int)(tag >> 3);
    sub->p = sub->end = NULL;
    switch (tag & 7) {
    case 0:
        return pb_varint(b, &n);
    case 1:
    case 5:
        n = (tag & 7) == 1 ? 8 : 4;
        if ((uint64_t)(b->end - b->p) < n)
            return -1;
        b->p += n;
        return 0;
    case 2:
        if (pb_varint(b, &n) < 0 || n > (uint64_t)(b->end - b->p))
            return -1;
        sub->p = b->p;
        sub->end = b->p + n;
        b->p += n;
        return 0;
    default:
        return -1;
    }
}

static char *pb_str(const struct pb *s)
{
    size_t n = (size_t)(s->end - s->p);
    if (!s->p || memchr(s->p, '\0', n))
        return NULL;
    return bh_xstrndup((const char *)s->p, n);
}

/* A map entry {1: key, 2: value} of strings, added to obj. */
static int pb_map_entry(struct pb e, cJSON *obj)
{
    bh_autofree char *key = NULL, *value = NULL;
    int f;
    struct pb s;
    while (e.p < e.end) {
        if (pb_next(&e, &f, &s) < 0)
            return -1;
        if (f == 1 || f == 2) {
            char **slot = f == 1 ? &key : &value;
            free(*slot);
            if (!(*slot = pb_str(&s)))
                return -1;
        }
    }
    if (!key)
        return -1;
    cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
    cJSON_AddStringToObject(obj, key, value ? value : "");
    return 0;
}

/* Length-delimited fields of message m: field number -> (string key or map into key). */
struct pb_rule {
    int field;
    const char *key;
    int map;
};

static int pb_message(struct pb m, const struct pb_rule *rules, size_t n, cJSON *out,
                      int (*nested)(struct pb, cJSON *), int nested_field)
{
    int f;
    struct pb s;
    while (m.p < m.end) {
        if (pb_next(&m, &f, &s) < 0)
            return -1;
        if (f == nested_field && s.p) {
            if (nested(s, out) < 0)
                return -1;
            continue;
        }
        for (size_t i = 0; i < n && s.p; i++) {
            if (rules[i].field != f)
                continue;
            cJSON *slot = cJSON_GetObjectItemCaseSensitive(out, rules[i].key);
            if (rules[i].map) {
                if (!slot)
                    slot = cJSON_AddObjectToObject(out, rules[i].key);
                if (pb_map_entry(s, slot) < 0)
                    return -1;
            } else {
                char *v = pb_str(&s);
                if (!v)
                    return -1;
                cJSON_DeleteItemFromObjectCaseSensitive(out, rules[i].key);
                cJSON_AddStringToObject(out, rules[i].key, v);
                free(v);
            }
        }
    }
    return 0;
}

static const struct pb_rule pb_meta[] = {
    {1, "name", 0},    {2, "generateName", 0}, {3, "namespace", 0},
    {11, "labels", 1}, {12, "annotations", 1},
};
/* Secret: data (2) holds bytes; taken as strings, since the secret store keeps strings. */
static const struct pb_rule pb_secret[] = {
    {2, "stringData", 1}, {3, "type", 0}, {4, "stringData", 1}};

static int pb_metadata(struct pb m, cJSON *out)
{
    return pb_message(m, pb_meta, BH_ARRAY_LEN(pb_meta), cJSON_AddObjectToObject(out, "metadata"),
                      NULL, 0);
}

int bh_kapi_proto_secret(const void *data, size_t len, cJSON **out, struct bh_err *err)
{
    static const unsigned char magic[4] = {'k', '8', 's', 0};
    struct pb env = {data, (const unsigned char *)data + len}, raw = {0}, s;
    int f;
    if (len < 4 || memcmp(data, magic, 4) != 0)
        return bh_err_set(err, BH_EINVAL, "not a Kubernetes protobuf envelope");
    env.p += 4;
    while (env.p < env.end)
        if (pb_next(&env, &f, &s) < 0)
            return bh_err_set(err, BH_EINVAL, "malformed protobuf envelope");
        else if (f == 2)
            raw = s;
    if (!raw.p)
        return bh_err_set(err, BH_EINVAL, "protobuf envelope without an object");
    cJSON *o = cJSON_CreateObject();
    if (pb_message(raw, pb_secret, BH_ARRAY_LEN(pb_secret), o, pb_metadata, 1) < 0) {
        cJSON_Delete(o);
        return bh_err_set(err, BH_EINVAL, "malformed protobuf Secret");
    }
    cJSON_AddStringToObject(o, "kind", "Secret");
    *out = o;
    return 0;
}
