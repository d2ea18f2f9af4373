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

/* ---- OpenAPI v2 as protobuf (gnostic's openapi_v2.Document), for kubectl before 1.27: it
 * asks for nothing else, and takes a JSON answer for a broken protobuf one (explain and
 * client-side validation then fail). Field numbers are those of gnostic's OpenAPIv2.proto;
 * only what our documents hold is encoded. Vendor extensions and defaults travel as YAML,
 * which JSON is. ---- */

struct pbw {
    unsigned char *data;
    size_t len, cap;
};

static void pbw_bytes(struct pbw *w, const void *p, size_t n)
{
    if (w->len + n > w->cap) {
        w->cap = (w->len + n) * 2 + 64;
        w->data = bh_xrealloc(w->data, w->cap);
    }
    memcpy(w->data + w->len, p, n);
    w->len += n;
}

static void pbw_varint(struct pbw *w, uint64_t v)
{
    unsigned char b[10];
    size_t n = 0;
    do {
        b[n++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    pbw_bytes(w, b, n);
}

static void pbw_len(struct pbw *w, int field, const void *p, size_t n)
{
    pbw_varint(w, (uint64_t)field << 3 | 2);
    pbw_varint(w, n);
    pbw_bytes(w, p, n);
}

static void pbw_str(struct pbw *w, int field, const char *s)
{
    if (s)
        pbw_len(w, field, s, strlen(s));
}

/* A nested message: sub (owned, emptied) as field. */
static void pbw_msg(struct pbw *w, int field, struct pbw *sub)
{
    pbw_len(w, field, sub->data ? sub->data : (unsigned char *)"", sub->len);
    free(sub->data);
    *sub = (struct pbw){0};
}

static void pbw_bool(struct pbw *w, int field, int v)
{
    if (v) {
        pbw_varint(w, (uint64_t)field << 3);
        pbw_varint(w, 1);
    }
}

static void pbw_double(struct pbw *w, int field, double v)
{
    unsigned char b[8];
    uint64_t bits;
    memcpy(&bits, &v, sizeof(bits));
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(bits >> (8 * i));
    pbw_varint(w, (uint64_t)field << 3 | 1);
    pbw_bytes(w, b, 8);
}

/* Any{yaml: v as JSON} as field. */
static void pbw_any(struct pbw *w, int field, const cJSON *v)
{
    struct pbw any = {0};
    bh_autofree char *text = cJSON_PrintUnformatted(v);
    pbw_str(&any, 2, text);
    pbw_msg(w, field, &any);
}

/* NamedAny{name, Any} as field, for each "x-" member of o. */
static void pbw_extensions(struct pbw *w, int field, const cJSON *o)
{
    const cJSON *m;
    cJSON_ArrayForEach(m, o) {
        if (strncmp(m->string, "x-", 2) != 0)
            continue;
        struct pbw named = {0};
        pbw_str(&named, 1, m->string);
        pbw_any(&named, 2, m);
        pbw_msg(w, field, &named);
    }
}

static void pbw_schema(struct pbw *w, const cJSON *s);

/* A Schema message as field. */
static void pbw_schema_field(struct pbw *w, int field, const cJSON *s)
{
    struct pbw sub = {0};
    pbw_schema(&sub, s);
    pbw_msg(w, field, &sub);
}

/* Properties / Definitions: {1: NamedSchema{1 name, 2 Schema}} for each member of o. */
static void pbw_named_schemas(struct pbw *w, const cJSON *o)
{
    const cJSON *m;
    cJSON_ArrayForEach(m, o) {
        struct pbw named = {0};
        pbw_str(&named, 1, m->string);
        pbw_schema_field(&named, 2, m);
        pbw_msg(w, 1, &named);
    }
}

static void pbw_schema(struct pbw *w, const cJSON *s)
{
    const cJSON *v;
    struct pbw sub = {0};
    pbw_str(w, 1, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s, "$ref")));
    pbw_str(w, 2, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s, "format")));
    pbw_str(w, 4, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s, "description")));
    if ((v = cJSON_GetObjectItemCaseSensitive(s, "default")))
        pbw_any(w, 5, v);
    if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(s, "maximum")))
        pbw_double(w, 7, v->valuedouble);
    pbw_bool(w, 8, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s, "exclusiveMaximum")));
    if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(s, "minimum")))
        pbw_double(w, 9, v->valuedouble);
    pbw_bool(w, 10, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s, "exclusiveMinimum")));
    if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(s, "maxLength")))
        pbw_varint(w, 11 << 3), pbw_varint(w, (uint64_t)v->valuedouble);
    pbw_str(w, 13, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s, "pattern")));
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(s, "required"))
        pbw_str(w, 19, cJSON_GetStringValue(v));
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(s, "enum"))
        pbw_any(w, 20, v);
    if ((v = cJSON_GetObjectItemCaseSensitive(s, "additionalProperties"))) {
        if (cJSON_IsObject(v))
            pbw_schema_field(&sub, 1, v);
        else
            pbw_bool(&sub, 2, cJSON_IsTrue(v));
        pbw_msg(w, 21, &sub);
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(s, "type"))) {
        pbw_str(&sub, 1, cJSON_GetStringValue(v));
        pbw_msg(w, 22, &sub);
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(s, "items"))) {
        pbw_schema_field(&sub, 1, v);
        pbw_msg(w, 23, &sub);
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(s, "properties"))) {
        pbw_named_schemas(&sub, v);
        pbw_msg(w, 25, &sub);
    }
    pbw_extensions(w, 31, s);
}

/* A query parameter: ParametersItem{1 Parameter{2 NonBodyParameter{3 QueryParameterSubSchema
 * {2 in, 4 name, 6 type}}}}. */
static void pbw_parameter(struct pbw *w, const cJSON *p)
{
    struct pbw q = {0}, nb = {0}, param = {0};
    pbw_str(&q, 2, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "in")));
    pbw_str(&q, 4, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "name")));
    pbw_str(&q, 6, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "type")));
    pbw_msg(&nb, 3, &q);
    pbw_msg(&param, 2, &nb);
    pbw_msg(w, 1, &param);
}

/* Operation{8 parameters, 9 responses, 13 vendor_extension}. */
static void pbw_operation(struct pbw *w, const cJSON *op)
{
    const cJSON *v;
    struct pbw item = {0}, codes = {0};
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(op, "parameters")) {
        pbw_parameter(&item, v);
        pbw_msg(w, 8, &item);
    }
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(op, "responses")) {
        struct pbw resp = {0}, value = {0}, named = {0};
        pbw_str(&resp, 1, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(v, "description")));
        pbw_msg(&value, 1, &resp);
        pbw_str(&named, 1, v->string);
        pbw_msg(&named, 2, &value);
        pbw_msg(&codes, 1, &named);
    }
    pbw_msg(w, 9, &codes);
    pbw_extensions(w, 13, op);
}

/* Paths{2 NamedPathItem{1 name, 2 PathItem{2 get, 3 put, 4 post, 5 delete, 8 patch}}}. */
static void pbw_paths(struct pbw *w, const cJSON *paths)
{
    static const struct {
        const char *method;
        int field;
    } ops[] = {{"get", 2}, {"put", 3}, {"post", 4}, {"delete", 5}, {"patch", 8}};
    const cJSON *p;
    cJSON_ArrayForEach(p, paths) {
        struct pbw item = {0}, named = {0}, op = {0};
        for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
            const cJSON *o = cJSON_GetObjectItemCaseSensitive(p, ops[i].method);
            if (!o)
                continue;
            pbw_operation(&op, o);
            pbw_msg(&item, ops[i].field, &op);
        }
        pbw_str(&named, 1, p->string);
        pbw_msg(&named, 2, &item);
        pbw_msg(w, 2, &named);
    }
}

void bh_kapi_proto_openapi(const cJSON *doc, char **out, size_t *len)
{
    struct pbw w = {0}, sub = {0};
    const cJSON *info = cJSON_GetObjectItemCaseSensitive(doc, "info");
    pbw_str(&w, 1, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "swagger")));
    pbw_str(&sub, 1, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(info, "title")));
    pbw_str(&sub, 2, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(info, "version")));
    pbw_msg(&w, 2, &sub);
    pbw_paths(&sub, cJSON_GetObjectItemCaseSensitive(doc, "paths"));
    pbw_msg(&w, 8, &sub);
    pbw_named_schemas(&sub, cJSON_GetObjectItemCaseSensitive(doc, "definitions"));
    pbw_msg(&w, 9, &sub);
    *len = w.len;
    *out = w.data ? (char *)w.data : bh_xstrdup("");
}
