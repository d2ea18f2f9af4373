/* Discovery (/version, /api, /apis, the resource lists) and OpenAPI v2/v3, built from the
 * kind table (kapi_objects.c) and the validator's schema tables (resource_schema.c), so
 * kubectl's short names, categories, `explain` and field validation see what crds/ says; the
 * descriptions `explain` prints (and the status schema) come from crds/ itself, compiled in. */
#include <microhttpd.h>
#include <pthread.h>
#include <string.h>

#include "json.h"
#include "kapi_int.h"
#include "log.h"
#include "mem.h"
#include "resource.h"

#define GROUP BH_API_GROUP
#define VERSION "v1alpha1"
#define EXT_GROUP "apiextensions.k8s.io"

static cJSON *strs(const char *const *v)
{
    cJSON *a = cJSON_CreateArray();
    for (; *v; v++)
        cJSON_AddItemToArray(a, cJSON_CreateString(*v));
    return a;
}

static const char *const verbs_all[] = {
    "create", "delete", "deletecollection", "get", "list", "patch", "update", "watch", NULL};
static const char *const verbs_status[] = {"get", "patch", "update", NULL};
static const char *const verbs_read[] = {"get", "list", "watch", NULL};
static const char *const verbs_secret[] = {"create", "delete", "get", "list",
                                           "patch",  "update", NULL};

static cJSON *resource(const char *name, const char *singular, const char *kind, int namespaced,
                       const char *const *verbs)
{
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "name", name);
    cJSON_AddStringToObject(r, "singularName", singular);
    cJSON_AddBoolToObject(r, "namespaced", namespaced);
    cJSON_AddStringToObject(r, "kind", kind);
    cJSON_AddItemToObject(r, "verbs", strs(verbs));
    return r;
}

static cJSON *resource_list(const char *gv)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "kind", "APIResourceList");
    cJSON_AddStringToObject(o, "apiVersion", "v1");
    cJSON_AddStringToObject(o, "groupVersion", gv);
    cJSON_AddArrayToObject(o, "resources");
    return o;
}

static cJSON *group_resources(void)
{
    cJSON *o = resource_list(GROUP "/" VERSION), *rs = cJSON_GetObjectItem(o, "resources");
    static const char *const cats[] = {"boilerhouse", "all", NULL};
    for (size_t i = 0; i < bh_kapi_n_kinds; i++) {
        const struct bh_kapi_kind *k = &bh_kapi_kinds[i];
        const char *plural = bh_resource_plural(k->kind);
        bh_autofree char *singular = bh_xstrndup(plural, strlen(plural) - 1);
        cJSON *r = resource(plural, singular, k->kind, 1, verbs_all);
        const char *sn[] = {bh_resource_short_name(k->kind), NULL};
        cJSON_AddItemToObject(r, "shortNames", strs(sn));
        cJSON_AddItemToObject(r, "categories", strs(cats));
        cJSON_AddItemToArray(rs, r);
        bh_autofree char *st = bh_xasprintf("%s/status", plural);
        cJSON_AddItemToArray(rs, resource(st, "", k->kind, 1, verbs_status));
    }
    return o;
}

static cJSON *core_resources(void)
{
    cJSON *o = resource_list("v1"), *rs = cJSON_GetObjectItem(o, "resources");
    static const char *const ns_short[] = {"ns", NULL}, *const ev_short[] = {"ev", NULL};
    cJSON *ns = resource("namespaces", "namespace", "Namespace", 0, verbs_read);
    cJSON_AddItemToObject(ns, "shortNames", strs(ns_short));
    cJSON_AddItemToArray(rs, ns);
    cJSON_AddItemToArray(rs, resource("secrets", "secret", "Secret", 1, verbs_secret));
    cJSON *ev = resource("events", "event", "Event", 1, verbs_read);
    cJSON_AddItemToObject(ev, "shortNames", strs(ev_short));
    cJSON_AddItemToArray(rs, ev);
    return o;
}

static cJSON *ext_resources(void)
{
    cJSON *o = resource_list(EXT_GROUP "/v1"), *rs = cJSON_GetObjectItem(o, "resources");
    static const char *const crd_short[] = {"crd", "crds", NULL};
    cJSON *r = resource("customresourcedefinitions", "customresourcedefinition",
                        "CustomResourceDefinition", 0, verbs_all);
    cJSON_AddItemToObject(r, "shortNames", strs(crd_short));
    cJSON_AddItemToArray(rs, r);
    return o;
}

static cJSON *group(const char *name, const char *version)
{
    cJSON *g = cJSON_CreateObject();
    cJSON_AddStringToObject(g, "name", name);
    cJSON *v = cJSON_CreateObject();
    bh_autofree char *gv = bh_xasprintf("%s/%s", name, version);
    cJSON_AddStringToObject(v, "groupVersion", gv);
    cJSON_AddStringToObject(v, "version", version);
    cJSON_AddItemToArray(cJSON_AddArrayToObject(g, "versions"), v);
    cJSON_AddItemToObject(g, "preferredVersion", cJSON_Duplicate(v, 1));
    return g;
}

static cJSON *groups(void)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "kind", "APIGroupList");
    cJSON_AddStringToObject(o, "apiVersion", "v1");
    cJSON *gs = cJSON_AddArrayToObject(o, "groups");
    cJSON_AddItemToArray(gs, group(GROUP, VERSION));
    cJSON_AddItemToArray(gs, group(EXT_GROUP, "v1"));
    return o;
}

static cJSON *legacy(void)
{
    cJSON *o = cJSON_CreateObject();
    static const char *const versions[] = {"v1", NULL};
    cJSON_AddStringToObject(o, "kind", "APIVersions");
    cJSON_AddItemToObject(o, "versions", strs(versions));
    cJSON *addr = cJSON_CreateObject();
    cJSON_AddStringToObject(addr, "clientCIDR", "0.0.0.0/0");
    cJSON_AddStringToObject(addr, "serverAddress", "");
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "serverAddressByClientCIDRs"), addr);
    return o;
}

static cJSON *version(void)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "major", "1");
    cJSON_AddStringToObject(o, "minor", "32");
    cJSON_AddStringToObject(o, "gitVersion", "v1.32.0+boilerhouse-" BH_VERSION);
    cJSON_AddStringToObject(o, "platform", "linux/amd64");
    return o;
}

static cJSON *resources_for(const struct bh_kapi_path *p)
{
    if (!p->group[0] && strcmp(p->version, "v1") == 0)
        return core_resources();
    if (strcmp(p->group, GROUP) == 0 && strcmp(p->version, VERSION) == 0)
        return group_resources();
    if (strcmp(p->group, EXT_GROUP) == 0 && strcmp(p->version, "v1") == 0)
        return ext_resources();
    return NULL;
}

void bh_kapi_discovery(const struct bh_kapi_req *req, struct bh_kapi_resp *resp)
{
    const struct bh_kapi_path *p = req->path;
    cJSON *out = NULL;
    if (strcmp(req->method, "GET") != 0) {
        bh_kapi_status(resp, 405, "MethodNotAllowed", "the server does not allow this method");
        return;
    }
    switch (p->type) {
    case BH_KAPI_P_VERSION:
        out = version();
        break;
    case BH_KAPI_P_LEGACY:
        out = legacy();
        break;
    case BH_KAPI_P_GROUPS:
        out = groups();
        break;
    case BH_KAPI_P_GROUP:
        if (strcmp(p->group, GROUP) == 0 || strcmp(p->group, EXT_GROUP) == 0) {
            out = group(p->group, strcmp(p->group, GROUP) == 0 ? VERSION : "v1");
            cJSON_AddStringToObject(out, "kind", "APIGroup");
            cJSON_AddStringToObject(out, "apiVersion", "v1");
        }
        break;
    case BH_KAPI_P_RESOURCES:
        out = resources_for(p);
        break;
    default: /* health */
        out = cJSON_CreateString("ok");
    }
    if (!out)
        bh_kapi_status(resp, 404, "NotFound", "the server could not find the requested resource");
    else
        bh_kapi_json(resp, 200, out);
}

/* ---- OpenAPI ---- */

static cJSON *typed(const char *type)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", type);
    return o;
}

static cJSON *gvk(const char *group, const char *version, const char *kind)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "group", group);
    cJSON_AddStringToObject(o, "kind", kind);
    cJSON_AddStringToObject(o, "version", version);
    return o;
}

static cJSON *object_meta(void)
{
    cJSON *m = typed("object"), *props = cJSON_AddObjectToObject(m, "properties");
    static const char *const s[] = {"name",
                                    "namespace",
                                    "uid",
                                    "resourceVersion",
                                    "generateName",
                                    "creationTimestamp",
                                    "deletionTimestamp"};
    cJSON_AddStringToObject(m, "description", "Standard object metadata.");
    for (size_t i = 0; i < BH_ARRAY_LEN(s); i++)
        cJSON_AddItemToObject(props, s[i], typed("string"));
    cJSON_AddItemToObject(props, "generation", typed("integer"));
    for (int i = 0; i < 2; i++) {
        cJSON *map = typed("object");
        cJSON_AddItemToObject(map, "additionalProperties", typed("string"));
        cJSON_AddItemToObject(props, i ? "annotations" : "labels", map);
    }
    cJSON *fin = typed("array");
    cJSON_AddItemToObject(fin, "items", typed("string"));
    cJSON_AddItemToObject(props, "finalizers", fin);
    return m;
}

/* ---- the CRDs' descriptions ---- */

static cJSON *crd_schemas; /* {kind: openAPIV3Schema}, parsed once, kept for the process */
static pthread_once_t crd_once = PTHREAD_ONCE_INIT;

static void crd_load(void)
{
    crd_schemas = cJSON_CreateObject();
    for (const char *const *t = bh_kapi_crd_texts; *t; t++) {
        cJSON *crd = NULL;
        struct bh_err err;
        if (bh_resource_parse(*t, strlen(*t), &crd, &err) < 0) {
            bh_error("kapi", "compiled-in CRD: %s", err.msg); /* test_resource parses them */
            continue;
        }
        const char *kind = bh_json_str(crd, "spec.names.kind");
        cJSON *schema = bh_json_get(cJSON_GetArrayItem(bh_json_get(crd, "spec.versions"), 0),
                                    "schema.openAPIV3Schema");
        if (kind && schema)
            cJSON_AddItemToObject(crd_schemas, kind, cJSON_Duplicate(schema, 1));
        cJSON_Delete(crd);
    }
}

/* Copies the CRD's descriptions onto the served schema s, field by field (a $ref keeps the
 * description of what it refers to). */
static void describe(cJSON *s, const cJSON *crd)
{
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(crd, "description");
    if (!cJSON_IsObject(s) || !crd)
        return;
    if (cJSON_IsString(d) && !cJSON_HasObjectItem(s, "description") &&
        !cJSON_HasObjectItem(s, "$ref"))
        cJSON_AddStringToObject(s, "description", d->valuestring);
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(crd, "properties");
    cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(s, "properties"))
        describe(p, cJSON_GetObjectItemCaseSensitive(props, p->string));
    describe(cJSON_GetObjectItemCaseSensitive(s, "items"),
             cJSON_GetObjectItemCaseSensitive(crd, "items"));
}

/* The kind's schema with the CRD's descriptions, and its status schema as the CRD states it. */
static void describe_kind(cJSON *top, const char *kind)
{
    pthread_once(&crd_once, crd_load);
    const cJSON *crd = cJSON_GetObjectItemCaseSensitive(crd_schemas, kind);
    const cJSON *status = bh_json_get(crd, "properties.status");
    if (status)
        cJSON_ReplaceItemInObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(top, "properties"),
                                               "status", cJSON_Duplicate(status, 1));
    describe(top, crd);
}

static cJSON *top_schema(const char *group, const char *kind, cJSON *spec, const char *ref_prefix)
{
    cJSON *s = typed("object"), *props = cJSON_AddObjectToObject(s, "properties");
    cJSON_AddItemToObject(props, "apiVersion", typed("string"));
    cJSON_AddItemToObject(props, "kind", typed("string"));
    cJSON *meta = cJSON_CreateObject();
    bh_autofree char *ref =
        bh_xasprintf("%sio.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", ref_prefix);
    cJSON_AddStringToObject(meta, "$ref", ref);
    cJSON_AddItemToObject(props, "metadata", meta);
    if (spec)
        cJSON_AddItemToObject(props, "spec", spec);
    if (strcmp(kind, "Secret") == 0) {
        cJSON_AddItemToObject(props, "type", typed("string"));
    } else {
        cJSON *status = typed("object");
        cJSON_AddBoolToObject(status, "x-kubernetes-preserve-unknown-fields", 1);
        cJSON_AddItemToObject(props, "status", status);
    }
    cJSON *list = cJSON_CreateArray();
    cJSON_AddItemToArray(list, gvk(group, group[0] ? VERSION : "v1", kind));
    cJSON_AddItemToObject(s, "x-kubernetes-group-version-kind", list);
    return s;
}

static cJSON *secret_data(void)
{
    cJSON *map = typed("object");
    cJSON_AddItemToObject(map, "additionalProperties", typed("string"));
    return map;
}

static cJSON *query_param(const char *name)
{
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "name", name);
    cJSON_AddStringToObject(p, "in", "query");
    cJSON_AddItemToObject(p, "schema", typed("string"));
    cJSON_AddStringToObject(p, "type", "string"); /* v2 spelling */
    return p;
}

/* An operation kubectl inspects: the GVK extension and the query parameters it may send. */
static cJSON *operation(const char *group, const char *kind)
{
    cJSON *op = cJSON_CreateObject();
    cJSON_AddItemToObject(op, "x-kubernetes-group-version-kind",
                          gvk(group, group[0] ? VERSION : "v1", kind));
    cJSON *ps = cJSON_AddArrayToObject(op, "parameters");
    static const char *const q[] = {"dryRun", "fieldManager", "fieldValidation"};
    for (size_t i = 0; i < BH_ARRAY_LEN(q); i++)
        cJSON_AddItemToArray(ps, query_param(q[i]));
    cJSON *ok = cJSON_CreateObject();
    cJSON_AddStringToObject(ok, "description", "OK");
    cJSON_AddItemToObject(cJSON_AddObjectToObject(op, "responses"), "200", ok);
    return op;
}

static void add_paths(cJSON *paths, const char *prefix, const char *plural, const char *group,
                      const char *kind)
{
    bh_autofree char *coll = bh_xasprintf("%s/namespaces/{namespace}/%s", prefix, plural);
    bh_autofree char *item = bh_xasprintf("%s/{name}", coll);
    cJSON *c = cJSON_AddObjectToObject(paths, coll), *i = cJSON_AddObjectToObject(paths, item);
    cJSON_AddItemToObject(c, "post", operation(group, kind));
    cJSON_AddItemToObject(i, "put", operation(group, kind));
    cJSON_AddItemToObject(i, "patch", operation(group, kind));
}

/* One group-version's document (v3) or, with v2 set, the definitions and paths of all. */
static void fill_group(cJSON *schemas, cJSON *paths, const char *ref_prefix)
{
    for (size_t i = 0; i < bh_kapi_n_kinds; i++) {
        const struct bh_kapi_kind *k = &bh_kapi_kinds[i];
        bh_autofree char *id = bh_xasprintf("dev.boilerhouse." VERSION ".%s", k->kind);
        cJSON *top = top_schema(GROUP, k->kind, bh_resource_spec_schema(k->kind), ref_prefix);
        describe_kind(top, k->kind);
        cJSON_AddItemToObject(schemas, id, top);
        add_paths(paths, "/apis/" GROUP "/" VERSION, bh_resource_plural(k->kind), GROUP, k->kind);
    }
}

static void fill_core(cJSON *schemas, cJSON *paths, const char *ref_prefix)
{
    cJSON *secret = top_schema("", "Secret", NULL, ref_prefix);
    cJSON *props = cJSON_GetObjectItem(secret, "properties");
    cJSON_AddItemToObject(props, "data", secret_data());
    cJSON_AddItemToObject(props, "stringData", secret_data());
    cJSON_AddItemToObject(schemas, "io.k8s.api.core.v1.Secret", secret);
    add_paths(paths, "/api/v1", "secrets", "", "Secret");
}

/* CRDs are stored as sent; kubectl needs only to know it may ask for field validation. */
static void fill_ext(cJSON *schemas, cJSON *paths, const char *ref_prefix)
{
    cJSON *crd = top_schema(EXT_GROUP, "CustomResourceDefinition", NULL, ref_prefix);
    cJSON *v = cJSON_GetArrayItem(cJSON_GetObjectItem(crd, "x-kubernetes-group-version-kind"), 0);
    bh_json_set_str(v, "version", "v1");
    cJSON_AddBoolToObject(crd, "x-kubernetes-preserve-unknown-fields", 1);
    cJSON_AddItemToObject(schemas,
                          "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1."
                          "CustomResourceDefinition",
                          crd);
    bh_autofree char *item =
        bh_xasprintf("/apis/" EXT_GROUP "/v1/customresourcedefinitions/{name}");
    cJSON *op = operation(EXT_GROUP, "CustomResourceDefinition");
    bh_json_set_str(cJSON_GetObjectItem(op, "x-kubernetes-group-version-kind"), "version", "v1");
    cJSON_AddItemToObject(cJSON_AddObjectToObject(paths, item), "patch", op);
}

static cJSON *openapi_doc(int v2, int core, int boilerhouse)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, v2 ? "swagger" : "openapi", v2 ? "2.0" : "3.0.0");
    cJSON *info = cJSON_AddObjectToObject(o, "info");
    cJSON_AddStringToObject(info, "title", "Boilerhouse (local mode)");
    cJSON_AddStringToObject(info, "version", BH_VERSION);
    cJSON *paths = cJSON_AddObjectToObject(o, "paths");
    cJSON *schemas =
        v2 ? cJSON_AddObjectToObject(o, "definitions")
           : cJSON_AddObjectToObject(cJSON_AddObjectToObject(o, "components"), "schemas");
    const char *ref = v2 ? "#/definitions/" : "#/components/schemas/";
    cJSON_AddItemToObject(schemas, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
                          object_meta());
    if (boilerhouse)
        fill_group(schemas, paths, ref);
    if (core)
        fill_core(schemas, paths, ref);
    if (core && boilerhouse)
        fill_ext(schemas, paths, ref);
    return o;
}

static cJSON *openapi_root(void)
{
    cJSON *o = cJSON_CreateObject(), *paths = cJSON_AddObjectToObject(o, "paths");
    cJSON *g = cJSON_AddObjectToObject(paths, "apis/" GROUP "/" VERSION);
    cJSON_AddStringToObject(g, "serverRelativeURL",
                            "/openapi/v3/apis/" GROUP "/" VERSION "?hash=" BH_VERSION);
    cJSON *x = cJSON_AddObjectToObject(paths, "apis/" EXT_GROUP "/v1");
    cJSON_AddStringToObject(x, "serverRelativeURL",
                            "/openapi/v3/apis/" EXT_GROUP "/v1?hash=" BH_VERSION);
    cJSON *c = cJSON_AddObjectToObject(paths, "api/v1");
    cJSON_AddStringToObject(c, "serverRelativeURL", "/openapi/v3/api/v1?hash=" BH_VERSION);
    return o;
}

void bh_kapi_openapi(const struct bh_kapi_req *req, struct bh_kapi_resp *resp)
{
    const struct bh_kapi_path *p = req->path;
    int core = !p->group[0] && strcmp(p->version, "v1") == 0;
    int ours = strcmp(p->group, GROUP) == 0 && strcmp(p->version, VERSION) == 0;
    int ext = strcmp(p->group, EXT_GROUP) == 0 && strcmp(p->version, "v1") == 0;
    const char *accept = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Accept");
    if (p->type == BH_KAPI_P_OPENAPI_V2 && accept && strstr(accept, BH_KAPI_OPENAPI_PB)) {
        cJSON *doc = openapi_doc(1, 1, 1); /* kubectl before 1.27 reads only this */
        bh_kapi_proto_openapi(doc, &resp->raw, &resp->raw_len);
        cJSON_Delete(doc);
        resp->raw_type = "application/octet-stream"; /* as kube-apiserver: Go's mime parser
                                                      * refuses the '@' of the asked type */
        resp->status = 200;
    } else if (p->type == BH_KAPI_P_OPENAPI_V2)
        bh_kapi_json(resp, 200, openapi_doc(1, 1, 1));
    else if (p->type == BH_KAPI_P_OPENAPI_V3)
        bh_kapi_json(resp, 200, openapi_root());
    else if (ext)
        bh_kapi_json(resp, 200, openapi_doc(0, 1, 1)); /* holds the CRD schema as well */
    else if (core || ours)
        bh_kapi_json(resp, 200, openapi_doc(0, core, ours));
    else
        bh_kapi_status(resp, 404, "NotFound", "no OpenAPI document for this group-version");
}
