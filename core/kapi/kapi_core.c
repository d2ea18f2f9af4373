/* The core kinds kubectl habits need beside ours: namespaces (local mode has one), secrets
 * mapped onto the secret store (values go in, never come out), events (the controllers'
 * Kubernetes Events, kevents.h, so `describe` shows what happened), and the
 * CustomResourceDefinitions of crds/, stored as
 * sent so `kubectl apply -f crds/` succeeds as on a cluster (the schema served stays the
 * compiled one). */
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "crypto.h"
#include "json.h"
#include "kapi_int.h"
#include "kevents.h"
#include "mem.h"
#include "name.h"
#include "resource.h"
#include "secret.h"
#include "store.h"

#define CRD_KIND "CustomResourceDefinition"
#define TENANT_LABEL "boilerhouse.dev/tenant"
/* What a secret's values read as: they are write-only. */
#define REDACTED_B64 "PHJlZGFjdGVkPg==" /* "<redacted>" */

static cJSON *core_list(const char *api_version, const char *kind, cJSON *items)
{
    cJSON *l = cJSON_CreateObject();
    cJSON_AddStringToObject(l, "apiVersion", api_version);
    cJSON_AddStringToObject(l, "kind", kind);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(l, "metadata"), "resourceVersion", "0");
    cJSON_AddItemToObject(l, "items", items);
    return l;
}

static int core_is(const struct bh_kapi_req *req, const char *method)
{
    return strcmp(req->method, method) == 0;
}

/* ---- namespaces ---- */

static cJSON *ns_object(void)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "apiVersion", "v1");
    cJSON_AddStringToObject(o, "kind", "Namespace");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "metadata"), "name", BH_KAPI_NAMESPACE);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "status"), "phase", "Active");
    return o;
}

static void core_namespaces(const struct bh_kapi_req *req, struct bh_kapi_resp *resp)
{
    const char *name = req->path->name;
    if (!core_is(req, "GET"))
        bh_kapi_status(resp, 403, "Forbidden",
                       "local mode has one namespace, \"" BH_KAPI_NAMESPACE "\"");
    else if (!name[0]) {
        cJSON *items = cJSON_CreateArray();
        cJSON_AddItemToArray(items, ns_object());
        bh_kapi_json(resp, 200, core_list("v1", "NamespaceList", items));
    } else if (strcmp(name, BH_KAPI_NAMESPACE) == 0)
        bh_kapi_json(resp, 200, ns_object());
    else
        bh_kapi_status(resp, 404, "NotFound", "namespaces \"%.64s\" not found", name);
}

/* ---- secrets ---- */

/* A stored secret ({name, tenant?, keys}) as a v1 Secret with redacted values. */
static cJSON *secret_object(const cJSON *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "apiVersion", "v1");
    cJSON_AddStringToObject(o, "kind", "Secret");
    cJSON *md = cJSON_AddObjectToObject(o, "metadata");
    cJSON_AddStringToObject(md, "name", bh_json_str(s, "name"));
    cJSON_AddStringToObject(md, "namespace", BH_KAPI_NAMESPACE);
    const char *tenant = bh_json_str(s, "tenant");
    if (tenant)
        cJSON_AddStringToObject(cJSON_AddObjectToObject(md, "labels"), TENANT_LABEL, tenant);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(md, "annotations"), "boilerhouse.dev/values",
                            "write-only");
    cJSON_AddStringToObject(o, "type", "Opaque");
    cJSON *data = cJSON_AddObjectToObject(o, "data"), *k;
    cJSON_ArrayForEach(k, cJSON_GetObjectItem(s, "keys"))
        cJSON_AddStringToObject(data, k->valuestring, REDACTED_B64);
    return o;
}

static cJSON *secret_find(struct bh_ctx *ctx, const char *name, struct bh_err *err)
{
    cJSON *all = NULL, *s, *out = NULL;
    if (bh_secrets_list(ctx->secrets, &all, err) < 0)
        return NULL;
    cJSON_ArrayForEach(s, all)
        if (!out && strcmp(bh_json_str(s, "name"), name) == 0)
            out = secret_object(s);
    cJSON_Delete(all);
    if (!out)
        bh_err_set(err, BH_ENOTFOUND, "not found");
    return out;
}

static void secret_list(const struct bh_kapi_req *req, struct bh_kapi_resp *resp)
{
    cJSON *all = NULL, *s, *items = cJSON_CreateArray();
    struct bh_err err;
    if (bh_secrets_list(req->ctx->secrets, &all, &err) < 0) {
        cJSON_Delete(items);
        bh_kapi_status_from_err(resp, &err, "secrets", "Secret", "", NULL);
        return;
    }
    cJSON_ArrayForEach(s, all)
        cJSON_AddItemToArray(items, secret_object(s));
    cJSON_Delete(all);
    bh_kapi_json(resp, 200, core_list("v1", "SecretList", items));
}

/* Decodes base64 data into an owned NUL-terminated string, or NULL. */
static char *secret_b64(const char *in)
{
    size_t len;
    return (char *)bh_crypto_unbase64(in, &len);
}

static int secret_put_one(struct bh_ctx *ctx, const char *tenant, const char *name,
                          const cJSON *item, int b64, struct bh_err *err)
{
    if (!cJSON_IsString(item))
        return bh_err_set(err, BH_EINVAL, "%s[%.64s]: must be a string",
                          b64 ? "data" : "stringData", item->string);
    char *value = b64 ? secret_b64(item->valuestring) : bh_xstrdup(item->valuestring);
    if (!value)
        return bh_err_set(err, BH_EINVAL, "data[%.64s]: illegal base64 data", item->string);
    int rc = bh_secrets_set(ctx->secrets, tenant, name, item->string, value, err);
    bh_crypto_wipe(value, strlen(value));
    free(value);
    return rc;
}

static int secret_put(struct bh_ctx *ctx, const cJSON *body, struct bh_err *err)
{
    const char *name = bh_json_str(body, "metadata.name");
    const char *tenant = bh_json_label(body, TENANT_LABEL);
    if (!name)
        return bh_err_set(err, BH_EINVAL, "metadata.name: Required value");
    if (tenant && !bh_name_tenant_valid(tenant))
        return bh_err_set(err, BH_EINVAL, "metadata.labels: invalid tenant id");
    const cJSON *it;
    cJSON_ArrayForEach(it, bh_json_get(body, "data"))
        if (secret_put_one(ctx, tenant, name, it, 1, err) < 0)
            return -1;
    cJSON_ArrayForEach(it, bh_json_get(body, "stringData"))
        if (secret_put_one(ctx, tenant, name, it, 0, err) < 0)
            return -1;
    return 0;
}

static void secret_write(const struct bh_kapi_req *req, struct bh_kapi_resp *resp)
{
    cJSON *body = NULL, *out = NULL;
    struct bh_err err;
    if (bh_kapi_body(req, resp, &body) < 0)
        return;
    const char *name = bh_json_str(body, "metadata.name");
    if (core_is(req, "POST") && name && (out = secret_find(req->ctx, name, &err)) != NULL) {
        bh_kapi_status(resp, 409, "AlreadyExists", "secrets \"%.64s\" already exists", name);
    } else if (secret_put(req->ctx, body, &err) < 0 || !(out = secret_find(req->ctx, name, &err))) {
        bh_kapi_status_from_err(resp, &err, "secrets", "Secret", name, NULL);
    } else {
        bh_kapi_json(resp, core_is(req, "POST") ? 201 : 200, out);
        out = NULL;
    }
    cJSON_Delete(out);
    cJSON *sd = cJSON_GetObjectItem(body, "stringData"), *v;
    cJSON_ArrayForEach(v, sd)
        if (cJSON_IsString(v))
            bh_crypto_wipe(v->valuestring, strlen(v->valuestring));
    cJSON_Delete(body);
}

static void core_secrets(const struct bh_kapi_req *req, struct bh_kapi_resp *resp)
{
    const char *name = req->path->name;
    struct bh_err err;
    cJSON *out;
    if (req->path->ns[0] && strcmp(req->path->ns, BH_KAPI_NAMESPACE) != 0)
        bh_kapi_status(resp, 404, "NotFound", "namespaces \"%.64s\" not found", req->path->ns);
    else if (core_is(req, "GET") && !name[0])
        secret_list(req, resp);
    else if (core_is(req, "GET") && (out = secret_find(req->ctx, name, &err)))
        bh_kapi_json(resp, 200, out);
    else if (core_is(req, "GET"))
        bh_kapi_status_from_err(resp, &err, "secrets", "Secret", name, NULL);
    else if ((core_is(req, "POST") && !name[0]) || (core_is(req, "PUT") && name[0]))
        secret_write(req, resp);
    else if (core_is(req, "DELETE") && name[0] &&
             bh_secrets_delete(req->ctx->secrets, NULL, name, NULL, &err) == 0)
        bh_kapi_status_ok(resp, "secrets", name);
    else if (core_is(req, "DELETE") && name[0])
        bh_kapi_status_from_err(resp, &err, "secrets", "Secret", name, NULL);
    else
        bh_kapi_status(resp, 405, "MethodNotAllowed", "the server does not allow this method");
}

/* ---- events ---- */

/* kubectl describe asks for an object's events by involvedObject kind, name, namespace and
 * uid. Events are kept by name (a new object of the same name sees its predecessor's, as
 * `kubectl get events` does for a while on a cluster), so the uid is not compared. */
static void events_drop_uid(struct bh_kapi_sel *sel)
{
    int w = 0;
    for (int i = 0; i < sel->n; i++)
        if (strcmp(sel->req[i].key, "involvedObject.uid") != 0)
            sel->req[w++] = sel->req[i];
    sel->n = w;
}

static void core_events(const struct bh_kapi_req *req, struct bh_kapi_resp *resp)
{
    struct bh_kapi_sel fields, labels;
    struct bh_err err;
    long long rv = 0;
    if (req->path->ns[0] && strcmp(req->path->ns, BH_KAPI_NAMESPACE) != 0) {
        bh_kapi_json(resp, 200, core_list("v1", "EventList", cJSON_CreateArray()));
        return;
    }
    if (bh_kapi_sel_parse(bh_kapi_query(req, "fieldSelector"), &fields, &err) < 0 ||
        bh_kapi_sel_parse(bh_kapi_query(req, "labelSelector"), &labels, &err) < 0) {
        bh_kapi_status(resp, 400, "BadRequest", "%s", err.msg);
        return;
    }
    events_drop_uid(&fields);
    cJSON *all = bh_kevents_list(req->ctx->kevents, BH_KAPI_NAMESPACE, &rv);
    cJSON *items = cJSON_CreateArray(), *e, *one = NULL;
    cJSON_ArrayForEach(e, all) {
        if (req->path->name[0] && !one && !strcmp(bh_json_str(e, "metadata.name"), req->path->name))
            one = cJSON_Duplicate(e, 1);
        if (bh_kapi_sel_match_fields(&fields, e) && bh_kapi_sel_match_labels(&labels, e))
            cJSON_AddItemToArray(items, cJSON_Duplicate(e, 1));
    }
    cJSON_Delete(all);
    if (req->path->name[0]) {
        cJSON_Delete(items);
        if (one)
            bh_kapi_json(resp, 200, one);
        else
            bh_kapi_status(resp, 404, "NotFound", "events \"%.200s\" not found", req->path->name);
        return;
    }
    if (req->want_table) { /* kubectl get events */
        static const struct bh_kapi_column cols[] = {
            {"Last Seen", "date", ".lastTimestamp"}, {"Type", "string", ".type"},
            {"Reason", "string", ".reason"},         {"Object", "string", ".involvedObject.name"},
            {"Message", "string", ".message"},       {NULL, NULL, NULL}};
        bh_kapi_json(resp, 200, bh_kapi_table_of(cols, items, rv));
        cJSON_Delete(items);
        return;
    }
    cJSON *l = core_list("v1", "EventList", items);
    char buf[24];
    snprintf(buf, sizeof(buf), "%lld", rv);
    bh_json_set_str(bh_json_obj(l, "metadata"), "resourceVersion", buf);
    bh_kapi_json(resp, 200, l);
}

/* ---- CustomResourceDefinitions ---- */

static int crd_ours(const char *name)
{
    for (size_t i = 0; name && i < bh_kapi_n_kinds; i++) {
        const char *plural = bh_resource_plural(bh_kapi_kinds[i].kind);
        size_t n = strlen(plural);
        if (strncmp(name, plural, n) == 0 && strcmp(name + n, "." BH_API_GROUP) == 0)
            return 1;
    }
    return 0;
}

static void crd_write(const struct bh_kapi_req *req, struct bh_kapi_resp *resp)
{
    cJSON *body = NULL, *stored = NULL;
    struct bh_err err;
    if (bh_kapi_body(req, resp, &body) < 0)
        return;
    const char *name = bh_json_str(body, "metadata.name");
    if (!crd_ours(name)) {
        bh_kapi_status(resp, 403, "Forbidden",
                       "local mode serves only the boilerhouse.dev CustomResourceDefinitions");
    } else if (req->path->name[0] && strcmp(name, req->path->name) != 0) {
        bh_kapi_status(resp, 400, "BadRequest", "metadata.name does not match the URL");
    } else {
        cJSON_DeleteItemFromObjectCaseSensitive(bh_json_get(body, "metadata"), "managedFields");
        int rc = core_is(req, "POST") ? bh_store_create(req->ctx->store, body, &stored, &err)
                                      : bh_store_update(req->ctx->store, body, &stored, &err);
        if (rc < 0 && err.code == BH_ECONFLICT && core_is(req, "POST"))
            bh_kapi_status(resp, 409, "AlreadyExists",
                           "customresourcedefinitions.apiextensions.k8s.io \"%s\" already exists",
                           name);
        else if (rc < 0)
            bh_kapi_status_from_err(resp, &err, "customresourcedefinitions.apiextensions.k8s.io",
                                    CRD_KIND, name, body);
        else
            bh_kapi_json(resp, core_is(req, "POST") ? 201 : 200, stored), stored = NULL;
    }
    cJSON_Delete(stored);
    cJSON_Delete(body);
}

static void crd_patch(const struct bh_kapi_req *req, struct bh_kapi_resp *resp)
{
    cJSON *cur = NULL, *patch = NULL, *stored = NULL;
    struct bh_err err;
    if (bh_store_get(req->ctx->store, CRD_KIND, req->path->name, &cur, &err) < 0) {
        bh_kapi_status_from_err(resp, &err, "customresourcedefinitions.apiextensions.k8s.io",
                                CRD_KIND, req->path->name, NULL);
        return;
    }
    if (bh_kapi_body(req, resp, &patch) == 0) {
        bh_kapi_merge_patch(&cur, patch);
        if (bh_store_update(req->ctx->store, cur, &stored, &err) < 0)
            bh_kapi_status_from_err(resp, &err, "customresourcedefinitions.apiextensions.k8s.io",
                                    CRD_KIND, req->path->name, cur);
        else
            bh_kapi_json(resp, 200, stored);
    }
    cJSON_Delete(patch);
    cJSON_Delete(cur);
}

static void core_crds(const struct bh_kapi_req *req, struct bh_kapi_resp *resp)
{
    const char *name = req->path->name;
    cJSON *out = NULL;
    struct bh_err err;
    const char *res = "customresourcedefinitions.apiextensions.k8s.io";
    if (strcmp(req->path->resource, "customresourcedefinitions") != 0 || req->path->ns[0])
        bh_kapi_status(resp, 404, "NotFound", "the server could not find the requested resource");
    else if (core_is(req, "GET") && !name[0] &&
             bh_store_list(req->ctx->store, CRD_KIND, NULL, &out, NULL, &err) == 0)
        bh_kapi_json(resp, 200,
                     core_list("apiextensions.k8s.io/v1", "CustomResourceDefinitionList", out));
    else if (core_is(req, "GET") && name[0] &&
             bh_store_get(req->ctx->store, CRD_KIND, name, &out, &err) == 0)
        bh_kapi_json(resp, 200, out);
    else if (core_is(req, "GET"))
        bh_kapi_status_from_err(resp, &err, res, CRD_KIND, name, NULL);
    else if (core_is(req, "POST") || core_is(req, "PUT"))
        crd_write(req, resp);
    else if (core_is(req, "PATCH"))
        crd_patch(req, resp);
    else if (core_is(req, "DELETE") && bh_store_delete(req->ctx->store, CRD_KIND, name, &err) == 0)
        bh_kapi_status_ok(resp, "customresourcedefinitions", name);
    else
        bh_kapi_status(resp, 405, "MethodNotAllowed", "the server does not allow this method");
}

void bh_kapi_core(const struct bh_kapi_req *req, struct bh_kapi_resp *resp)
{
    const struct bh_kapi_path *p = req->path;
    if (strcmp(p->group, "apiextensions.k8s.io") == 0)
        core_crds(req, resp);
    else if (p->group[0] || strcmp(p->version, "v1") != 0)
        bh_kapi_status(resp, 404, "NotFound", "the server could not find the requested resource");
    else if (strcmp(p->resource, "namespaces") == 0)
        core_namespaces(req, resp);
    else if (strcmp(p->resource, "secrets") == 0)
        core_secrets(req, resp);
    else if (strcmp(p->resource, "events") == 0 && core_is(req, "GET"))
        core_events(req, resp);
    else
        bh_kapi_status(resp, 404, "NotFound", "the server could not find the requested resource");
}
