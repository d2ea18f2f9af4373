/* Validation of the four resource kinds: one generic walker over the tables of
 * resource_schema.c, producing "spec.a.b[0].c: <problem>" messages, and filling defaults. */
#include "resource.h"

#include <stdio.h>
#include <string.h>

#include "json.h"
#include "name.h"
#include "mem.h"
#include "resource_int.h"

/* Integers travel as doubles in cJSON; beyond 2^53 they are no longer exact. */
#define RESOURCE_MAX_EXACT_INT 9007199254740992.0

/* ---- the generic walker ------------------------------------------------------------------ */

static int resource_validate_value(const struct bh_resource_field *f, cJSON *v, const char *path,
                                   struct bh_err *err);

static const char *resource_type_name(enum bh_resource_type t)
{
    switch (t) {
    case BH_T_STRING:
        return "a string";
    case BH_T_INT:
        return "an integer";
    case BH_T_NUMBER:
        return "a number";
    case BH_T_BOOL:
        return "a boolean";
    case BH_T_ARRAY:
        return "an array";
    default:
        return "an object";
    }
}

static int resource_type_ok(enum bh_resource_type t, const cJSON *v)
{
    switch (t) {
    case BH_T_STRING:
        return cJSON_IsString(v);
    case BH_T_INT:
        return cJSON_IsNumber(v) && v->valuedouble >= -RESOURCE_MAX_EXACT_INT &&
               v->valuedouble <= RESOURCE_MAX_EXACT_INT &&
               v->valuedouble == (double)(long long)v->valuedouble;
    case BH_T_NUMBER:
        return cJSON_IsNumber(v);
    case BH_T_BOOL:
        return cJSON_IsBool(v);
    case BH_T_ARRAY:
        return cJSON_IsArray(v);
    case BH_T_ANY:
        return 1;
    default:
        return cJSON_IsObject(v);
    }
}

static int resource_enum_ok(const struct bh_resource_field *f, const cJSON *v, const char *path,
                            struct bh_err *err)
{
    char allowed[256] = "";
    for (const char *const *e = f->enums; *e; e++) {
        if (!strcmp(*e, v->valuestring))
            return 0;
        snprintf(allowed + strlen(allowed), sizeof(allowed) - strlen(allowed), "%s%s",
                 e == f->enums ? "" : ", ", *e);
    }
    return bh_err_set(err, BH_EINVAL, "%s: must be one of: %s", path, allowed);
}

static int resource_range_ok(const struct bh_resource_field *f, double d, const char *path,
                             struct bh_err *err)
{
    if ((f->flags & BH_F_MIN) && d < f->min)
        return bh_err_set(err, BH_EINVAL, "%s: must be greater than or equal to %g", path, f->min);
    if ((f->flags & BH_F_EXCL_MIN) && d <= f->min)
        return bh_err_set(err, BH_EINVAL, "%s: must be greater than %g", path, f->min);
    if ((f->flags & BH_F_MAX) && d > f->max)
        return bh_err_set(err, BH_EINVAL, "%s: must be less than or equal to %g", path, f->max);
    return 0;
}

static int resource_validate_strmap(cJSON *v, const char *path, struct bh_err *err)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        if (!cJSON_IsString(e))
            return bh_err_set(err, BH_EINVAL, "%s.%s: must be a string", path, e->string);
    }
    return 0;
}

static int resource_validate_array(const struct bh_resource_field *f, cJSON *v, const char *path,
                                   struct bh_err *err)
{
    int i = 0;
    cJSON *item;
    cJSON_ArrayForEach(item, v) {
        char child[512];
        snprintf(child, sizeof(child), "%s[%d]", path, i++);
        if (resource_validate_value(f->items, item, child, err) < 0)
            return -1;
    }
    return 0;
}

static cJSON *resource_default(const struct bh_resource_field *f)
{
    if (f->type == BH_T_OBJECT)
        return cJSON_CreateObject();
    if (f->type == BH_T_STRING)
        return cJSON_CreateString(f->default_str);
    return cJSON_CreateNumber((double)f->default_int);
}

static const struct bh_resource_field *resource_field_find(const struct bh_resource_field *fields,
                                                           const char *name)
{
    for (; fields->name; fields++)
        if (!strcmp(fields->name, name))
            return fields;
    return NULL;
}

static void resource_child_path(char *out, size_t n, const char *path, const char *name)
{
    snprintf(out, n, "%s%s%s", path, *path ? "." : "", name);
}

/* A null value means "not set", as in Kubernetes: it is dropped before validation. */
static void resource_drop_nulls(cJSON *obj)
{
    for (cJSON *c = obj->child, *next; c; c = next) {
        next = c->next;
        if (cJSON_IsNull(c))
            cJSON_Delete(cJSON_DetachItemViaPointer(obj, c));
    }
}

static int resource_validate_object(const struct bh_resource_field *fields, cJSON *obj,
                                    const char *path, struct bh_err *err)
{
    char child[512];
    resource_drop_nulls(obj);
    for (const cJSON *c = obj->child; c; c = c->next) {
        resource_child_path(child, sizeof(child), path, c->string);
        if (!resource_field_find(fields, c->string))
            return bh_err_set(err, BH_EINVAL, "%s: unknown field", child);
    }
    for (const struct bh_resource_field *f = fields; f->name; f++) {
        resource_child_path(child, sizeof(child), path, f->name);
        cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, f->name);
        if (!v && (f->flags & BH_F_REQUIRED))
            return bh_err_set(err, BH_EINVAL, "%s: required", child);
        if (!v && (f->flags & BH_F_DEFAULT))
            cJSON_AddItemToObject(obj, f->name, v = resource_default(f));
        if (v && resource_validate_value(f, v, child, err) < 0)
            return -1;
    }
    return 0;
}

static int resource_validate_value(const struct bh_resource_field *f, cJSON *v, const char *path,
                                   struct bh_err *err)
{
    int rc = 0;
    if (!resource_type_ok(f->type, v))
        return bh_err_set(err, BH_EINVAL, "%s: must be %s", path, resource_type_name(f->type));
    if (f->enums)
        rc = resource_enum_ok(f, v, path, err);
    else if (f->type == BH_T_INT || f->type == BH_T_NUMBER)
        rc = resource_range_ok(f, v->valuedouble, path, err);
    else if (f->type == BH_T_OBJECT)
        rc = resource_validate_object(f->fields, v, path, err);
    else if (f->type == BH_T_ARRAY)
        rc = resource_validate_array(f, v, path, err);
    else if (f->type == BH_T_STRMAP)
        rc = resource_validate_strmap(v, path, err);
    if (rc == 0 && f->check)
        rc = f->check(v, path, err);
    return rc;
}

/* ---- entry points ------------------------------------------------------------------------ */

int bh_resource_validate_spec(const char *kind, cJSON *spec, struct bh_err *err)
{
    const struct bh_resource_kind *k = bh_resource_kind_find(kind);
    if (!k)
        return bh_err_set(err, BH_EINVAL, "kind: must be one of: %s", bh_resource_kind_names());
    struct bh_resource_field root = {.name = "spec", .type = BH_T_OBJECT, .fields = k->spec};
    return resource_validate_value(&root, spec, "spec", err);
}

static int resource_check_header(const cJSON *obj, struct bh_err *err)
{
    const cJSON *api = cJSON_GetObjectItemCaseSensitive(obj, "apiVersion");
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(obj, "kind");
    if (!cJSON_IsObject(obj))
        return bh_err_set(err, BH_EINVAL, "the resource must be an object");
    if (!api)
        return bh_err_set(err, BH_EINVAL, "apiVersion: required");
    if (!cJSON_IsString(api) || strcmp(api->valuestring, BH_API_VERSION))
        return bh_err_set(err, BH_EINVAL, "apiVersion: must be \"%s\"", BH_API_VERSION);
    if (!kind)
        return bh_err_set(err, BH_EINVAL, "kind: required");
    if (!bh_resource_kind_find(cJSON_GetStringValue(kind)))
        return bh_err_set(err, BH_EINVAL, "kind: must be one of: %s", bh_resource_kind_names());
    return 0;
}

/* The kind's finalizer, unless the object is being deleted: then only its controller (or a
 * user forcing the deletion) takes finalizers away. */
static void resource_default_finalizer(const struct bh_resource_kind *k, cJSON *obj)
{
    cJSON *md = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
    if (!k->finalizer || cJSON_GetObjectItemCaseSensitive(md, "deletionTimestamp"))
        return;
    cJSON *fin = cJSON_GetObjectItemCaseSensitive(md, "finalizers");
    if (!fin)
        fin = cJSON_AddArrayToObject(md, "finalizers");
    const cJSON *f;
    cJSON_ArrayForEach(f, fin)
        if (cJSON_IsString(f) && !strcmp(f->valuestring, k->finalizer))
            return;
    cJSON_AddItemToArray(fin, cJSON_CreateString(k->finalizer));
}

int bh_resource_validate(cJSON *obj, struct bh_err *err)
{
    if (resource_check_header(obj, err) < 0)
        return -1;
    const struct bh_resource_kind *k =
        bh_resource_kind_find(cJSON_GetObjectItemCaseSensitive(obj, "kind")->valuestring);
    const struct bh_resource_field top[] = {
        {.name = "apiVersion", .type = BH_T_STRING, .flags = BH_F_REQUIRED},
        {.name = "kind", .type = BH_T_STRING, .flags = BH_F_REQUIRED},
        {.name = "metadata",
         .type = BH_T_OBJECT,
         .flags = BH_F_REQUIRED,
         .fields = bh_resource_metadata_fields},
        {.name = "spec", .type = BH_T_OBJECT, .flags = BH_F_REQUIRED, .fields = k->spec},
        /* status is written by the daemon; only its shape is checked */
        {.name = "status", .type = BH_T_FREEFORM},
        {.name = NULL},
    };
    if (resource_validate_object(top, obj, "", err) < 0)
        return -1;
    resource_default_finalizer(k, obj);
    return 0;
}

/* ---- OpenAPI export, for comparing with crds/ -------------------------------------------- */

static cJSON *resource_field_schema(const struct bh_resource_field *f);

static const char *resource_openapi_type(enum bh_resource_type t)
{
    static const char *const names[] = {
        [BH_T_STRING] = "string", [BH_T_INT] = "integer",    [BH_T_NUMBER] = "number",
        [BH_T_BOOL] = "boolean",  [BH_T_OBJECT] = "object",  [BH_T_ARRAY] = "array",
        [BH_T_STRMAP] = "object", [BH_T_FREEFORM] = "object"};
    return t < BH_ARRAY_LEN(names) ? names[t] : NULL;
}

static cJSON *resource_object_schema(const struct bh_resource_field *fields)
{
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "type", "object");
    cJSON *props = cJSON_AddObjectToObject(s, "properties");
    cJSON *req = cJSON_CreateArray();
    for (const struct bh_resource_field *f = fields; f->name; f++) {
        cJSON_AddItemToObject(props, f->name, resource_field_schema(f));
        if (f->flags & BH_F_REQUIRED)
            cJSON_AddItemToArray(req, cJSON_CreateString(f->name));
    }
    if (cJSON_GetArraySize(req))
        cJSON_AddItemToObject(s, "required", req);
    else
        cJSON_Delete(req);
    return s;
}

static void resource_add_constraints(cJSON *s, const struct bh_resource_field *f)
{
    if (f->enums) {
        cJSON *e = cJSON_AddArrayToObject(s, "enum");
        for (const char *const *v = f->enums; *v; v++)
            cJSON_AddItemToArray(e, cJSON_CreateString(*v));
    }
    if (f->flags & (BH_F_MIN | BH_F_EXCL_MIN))
        cJSON_AddNumberToObject(s, "minimum", f->min);
    if (f->flags & BH_F_EXCL_MIN)
        cJSON_AddTrueToObject(s, "exclusiveMinimum");
    if (f->flags & BH_F_MAX)
        cJSON_AddNumberToObject(s, "maximum", f->max);
    if (f->flags & BH_F_DEFAULT)
        cJSON_AddItemToObject(s, "default", resource_default(f));
}

static cJSON *resource_field_schema(const struct bh_resource_field *f)
{
    cJSON *s = f->type == BH_T_OBJECT ? resource_object_schema(f->fields) : cJSON_CreateObject();
    if (f->type != BH_T_OBJECT)
        cJSON_AddStringToObject(s, "type", resource_openapi_type(f->type));
    if (f->type == BH_T_ARRAY)
        cJSON_AddItemToObject(s, "items", resource_field_schema(f->items));
    if (f->type == BH_T_STRMAP)
        cJSON_AddItemToObject(s, "additionalProperties", cJSON_Parse("{\"type\":\"string\"}"));
    if (f->type == BH_T_FREEFORM)
        cJSON_AddTrueToObject(s, "x-kubernetes-preserve-unknown-fields");
    resource_add_constraints(s, f);
    return s;
}

cJSON *bh_resource_spec_schema(const char *kind)
{
    const struct bh_resource_kind *k = bh_resource_kind_find(kind);
    return k ? resource_object_schema(k->spec) : NULL;
}

cJSON *bh_resource_new(const char *kind, const char *name)
{
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddStringToObject(obj, "apiVersion", BH_API_VERSION);
    cJSON_AddStringToObject(obj, "kind", kind);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(obj, "metadata"), "name", name);
    return obj;
}
