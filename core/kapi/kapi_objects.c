/* The four boilerhouse.dev kinds over the Kubernetes-compatible API: get, list, watch,
 * create, update, patch, delete and /status, on the same store, validation and controllers
 * as REST. The store has no namespaces: every object lives in BH_KAPI_NAMESPACE. */
#include <limits.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "claim.h"
#include "clock.h"
#include "crypto.h"
#include "json.h"
#include "kapi_int.h"
#include "mem.h"
#include "num.h"
#include "plugin.h"
#include "resource.h"
#include "ssa.h"
#include "store.h"

#define OBJ_LIST_CHUNK_MAX 10000
#define OBJ_WATCH_DEFAULT_S 1800
#define OBJ_FIELDS_MAX 1024 /* members of one object checked for duplicates */
#define OBJ_UNKNOWN_MAX 64  /* unknown fields dropped from one body under Warn or Ignore */

/* The columns are those of crds/ (additionalPrinterColumns); test_kapi compares them. */
const struct bh_kapi_kind bh_kapi_kinds[] = {
    {"BoilerhouseWorkload",
     {{"Phase", "string", ".status.phase"},
      {"Version", "string", ".spec.version"},
      {"Image", "string", ".spec.image.ref"},
      {"Age", "date", ".metadata.creationTimestamp"}}},
    {"BoilerhousePool",
     {{"Workload", "string", ".spec.workloadRef"},
      {"Size", "integer", ".spec.size"},
      {"Ready", "integer", ".status.ready"},
      {"Phase", "string", ".status.phase"}}},
    {"BoilerhouseClaim",
     {{"Tenant", "string", ".spec.tenantId"},
      {"Workload", "string", ".spec.workloadRef"},
      {"Phase", "string", ".status.phase"},
      {"Endpoint", "string", ".status.endpoint.host"},
      {"Age", "date", ".metadata.creationTimestamp"}}},
    {"BoilerhouseTrigger",
     {{"Type", "string", ".spec.type"},
      {"Workload", "string", ".spec.workloadRef"},
      {"Phase", "string", ".status.phase"}}},
};
const size_t bh_kapi_n_kinds = BH_ARRAY_LEN(bh_kapi_kinds);

const struct bh_kapi_kind *bh_kapi_kind_by_plural(const char *plural)
{
    for (size_t i = 0; i < bh_kapi_n_kinds; i++) {
        const char *kind = bh_kapi_kinds[i].kind;
        if (strcmp(bh_resource_plural(kind), plural) == 0 ||
            strcmp(bh_resource_short_name(kind), plural) == 0)
            return &bh_kapi_kinds[i];
    }
    return NULL;
}

const struct bh_kapi_kind *bh_kapi_kind_by_name(const char *kind)
{
    for (size_t i = 0; kind && i < bh_kapi_n_kinds; i++)
        if (strcmp(bh_kapi_kinds[i].kind, kind) == 0)
            return &bh_kapi_kinds[i];
    return NULL;
}

void bh_kapi_decorate(cJSON *obj)
{
    cJSON *md = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
    if (cJSON_IsObject(md)) /* the store's own default is not a namespace we serve */
        bh_json_set_str(md, "namespace", BH_KAPI_NAMESPACE);
}

/* ---- Tables ---- */

/* Kubernetes's short ages: 45s, 3m12s, 2h5m, 4d. */
static char *obj_age(const char *ts)
{
    long long ms = bh_clock_parse_rfc3339(ts);
    if (ms < 0)
        return bh_xstrdup("<unknown>");
    long long s = (long long)time(NULL) - ms / 1000;
    s = s < 0 ? 0 : s;
    if (s < 120)
        return bh_xasprintf("%llds", s);
    if (s < 600)
        return bh_xasprintf("%lldm%llds", s / 60, s % 60);
    if (s < 3 * 3600)
        return bh_xasprintf("%lldm", s / 60);
    if (s < 8 * 3600)
        return bh_xasprintf("%lldh%lldm", s / 3600, s / 60 % 60);
    if (s < 48 * 3600)
        return bh_xasprintf("%lldh", s / 3600);
    return bh_xasprintf("%lldd", s / 86400);
}

static cJSON *obj_cell(const cJSON *obj, const struct bh_kapi_column *c)
{
    const cJSON *v = bh_json_get(obj, c->json_path + 1);
    if (strcmp(c->type, "date") == 0) {
        bh_autofree char *age = obj_age(cJSON_GetStringValue(v));
        return cJSON_CreateString(age);
    }
    return v && !cJSON_IsObject(v) && !cJSON_IsArray(v) ? cJSON_Duplicate(v, 0)
                                                        : cJSON_CreateNull();
}

static cJSON *obj_column(const char *name, const char *type, const char *format)
{
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "name", name);
    cJSON_AddStringToObject(c, "type", type);
    cJSON_AddStringToObject(c, "format", format);
    cJSON_AddStringToObject(c, "description", "");
    cJSON_AddNumberToObject(c, "priority", 0);
    return c;
}

/* The row's object: the metadata only, as kubectl's default includeObject=Metadata; moved out
 * of obj, not copied (a list of 1,000 spent most of its Table time copying). */
static cJSON *obj_partial(cJSON *obj)
{
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "kind", "PartialObjectMetadata");
    cJSON_AddStringToObject(p, "apiVersion", "meta.k8s.io/v1");
    cJSON *md = cJSON_DetachItemFromObjectCaseSensitive(obj, "metadata");
    cJSON_AddItemToObject(p, "metadata", md ? md : cJSON_CreateObject());
    return p;
}

cJSON *bh_kapi_table(const char *kind, cJSON *items, int64_t rv)
{
    return bh_kapi_table_of(bh_kapi_kind_by_name(kind)->columns, items, rv);
}

cJSON *bh_kapi_table_of(const struct bh_kapi_column *columns, cJSON *items, int64_t rv)
{
    cJSON *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "kind", "Table");
    cJSON_AddStringToObject(t, "apiVersion", "meta.k8s.io/v1");
    char buf[24];
    snprintf(buf, sizeof(buf), "%lld", (long long)rv);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(t, "metadata"), "resourceVersion", buf);
    cJSON_AddItemToObject(t, "columnDefinitions", bh_kapi_table_columns(columns));
    cJSON *rows = cJSON_AddArrayToObject(t, "rows");
    cJSON *o;
    cJSON_ArrayForEach(o, items) {
        cJSON *row = cJSON_CreateObject();
        cJSON_AddItemToObject(row, "cells", bh_kapi_table_cells(columns, o));
        cJSON_AddItemToObject(row, "object", obj_partial(o));
        cJSON_AddItemToArray(rows, row);
    }
    return t;
}

cJSON *bh_kapi_table_columns(const struct bh_kapi_column *columns)
{
    cJSON *cols = cJSON_CreateArray();
    cJSON_AddItemToArray(cols, obj_column("Name", "string", "name"));
    for (const struct bh_kapi_column *c = columns; c->name; c++)
        cJSON_AddItemToArray(cols, obj_column(c->name, c->type, ""));
    return cols;
}

cJSON *bh_kapi_table_cells(const struct bh_kapi_column *columns, const cJSON *obj)
{
    cJSON *cells = cJSON_CreateArray();
    cJSON_AddItemToArray(cells, cJSON_CreateString(bh_json_str(obj, "metadata.name") ?: ""));
    for (const struct bh_kapi_column *c = columns; c->name; c++)
        cJSON_AddItemToArray(cells, obj_cell(obj, c));
    return cells;
}

/* ---- helpers ---- */

struct obj_ctx {
    const struct bh_kapi_req *req;
    struct bh_kapi_resp *resp;
    const struct bh_kapi_kind *kind;
    char resource[96]; /* "boilerhouseworkloads.boilerhouse.dev" */
};

static void obj_fail(struct obj_ctx *c, const struct bh_err *err, const char *name,
                     const cJSON *obj)
{
    if (c->resp->json) /* answered already (a strict field validation) */
        return;
    bh_kapi_status_from_err(c->resp, err, c->resource, c->kind->kind, name, obj);
}

static int obj_dry_run(const struct obj_ctx *c)
{
    const char *d = bh_kapi_query(c->req, "dryRun");
    return d && strcmp(d, "All") == 0;
}

/* A namespace other than ours holds nothing. */
static int obj_ns_ok(const struct obj_ctx *c)
{
    const char *ns = c->req->path->ns;
    return !ns[0] || strcmp(ns, BH_KAPI_NAMESPACE) == 0;
}

static void obj_ns_missing(struct obj_ctx *c)
{
    bh_kapi_status(c->resp, 404, "NotFound", "namespaces \"%s\" not found", c->req->path->ns);
}

static cJSON *obj_out(cJSON *obj, int table, const char *kind)
{
    bh_kapi_decorate(obj);
    if (!table)
        return obj;
    cJSON *one = cJSON_CreateArray();
    cJSON_AddItemToArray(one, obj);
    cJSON *t = bh_kapi_table(kind, one, bh_json_int(obj, "metadata.resourceVersion", 0));
    cJSON_Delete(one);
    return t;
}

/* ---- reads ---- */

static void obj_get(struct obj_ctx *c)
{
    cJSON *obj = NULL;
    struct bh_err err;
    const char *name = c->req->path->name;
    if (!obj_ns_ok(c)) {
        bh_err_set(&err, BH_ENOTFOUND, "not found");
        obj_fail(c, &err, name, NULL);
    } else if (bh_store_get(c->req->ctx->store, c->kind->kind, name, &obj, &err) < 0) {
        obj_fail(c, &err, name, NULL);
    } else {
        bh_kapi_json(c->resp, 200, obj_out(obj, c->req->want_table, c->kind->kind));
    }
}

static int obj_selectors(struct obj_ctx *c, struct bh_kapi_sel *labels, struct bh_kapi_sel *fields)
{
    struct bh_err err;
    if (bh_kapi_sel_parse(bh_kapi_query(c->req, "labelSelector"), labels, &err) < 0 ||
        bh_kapi_sel_parse(bh_kapi_query(c->req, "fieldSelector"), fields, &err) < 0) {
        bh_kapi_status(c->resp, 400, "BadRequest", "%s", err.msg);
        return -1;
    }
    for (int i = 0; i < fields->n; i++) {
        const char *k = fields->req[i].key;
        if (strcmp(k, "metadata.name") && strcmp(k, "metadata.namespace") &&
            strcmp(k, "status.phase") && strcmp(k, "spec.tenantId") &&
            strcmp(k, "spec.workloadRef")) {
            bh_kapi_status(c->resp, 400, "BadRequest",
                           "field label not supported: %s (metadata.name, metadata.namespace, "
                           "status.phase, spec.tenantId, spec.workloadRef are)",
                           k);
            return -1;
        }
    }
    return 0;
}

/* Keeps what the selectors match, past the continue token, up to limit; sets *more. */
static cJSON *obj_page(cJSON *all, const struct bh_kapi_sel *labels,
                       const struct bh_kapi_sel *fields, const char *after, long limit, int *more)
{
    cJSON *items = cJSON_CreateArray();
    long n = 0;
    *more = 0;
    for (cJSON *o = all->child, *next; o; o = next) {
        next = o->next;
        bh_kapi_decorate(o);
        if ((after && strcmp(bh_json_str(o, "metadata.name"), after) <= 0) ||
            !bh_kapi_sel_match_labels(labels, o) || !bh_kapi_sel_match_fields(fields, o))
            continue;
        if (limit > 0 && n == limit) {
            *more = 1;
            break;
        }
        cJSON_AddItemToArray(items, cJSON_DetachItemViaPointer(all, o)); /* moved, not copied */
        n++;
    }
    return items;
}

/* The continue token is the last name returned (lists are ordered by name), or NULL. Owned. */
static char *obj_continue(const cJSON *items, int more)
{
    int n = cJSON_GetArraySize(items);
    const char *last = bh_json_str(cJSON_GetArrayItem(items, n - 1), "metadata.name");
    return more && n && last ? bh_xstrdup(last) : NULL;
}

static cJSON *obj_list_doc(struct obj_ctx *c, cJSON *items, int64_t rv, int more)
{
    bh_autofree char *next = obj_continue(items, more);
    if (c->req->want_table) {
        cJSON *o; /* rows carry metadata for kubectl; not who owns which field */
        cJSON_ArrayForEach(o, items)
            cJSON_DeleteItemFromObjectCaseSensitive(bh_json_get(o, "metadata"), "managedFields");
        cJSON *t = bh_kapi_table(c->kind->kind, items, rv);
        if (next)
            cJSON_AddStringToObject(bh_json_get(t, "metadata"), "continue", next);
        cJSON_Delete(items);
        return t;
    }
    cJSON *l = cJSON_CreateObject();
    cJSON_AddStringToObject(l, "apiVersion", BH_API_VERSION);
    bh_autofree char *lk = bh_xasprintf("%sList", c->kind->kind);
    cJSON_AddStringToObject(l, "kind", lk);
    cJSON *md = cJSON_AddObjectToObject(l, "metadata");
    char buf[24];
    snprintf(buf, sizeof(buf), "%lld", (long long)rv);
    cJSON_AddStringToObject(md, "resourceVersion", buf);
    if (next)
        cJSON_AddStringToObject(md, "continue", next);
    cJSON_AddItemToObject(l, "items", items);
    return l;
}

static long obj_long_param(struct obj_ctx *c, const char *key, long max, int *bad)
{
    const char *v = bh_kapi_query(c->req, key);
    long long n = 0;
    struct bh_err err;
    if (v && *v && bh_num_parse(v, 0, max, &n, &err) < 0) { /* "" is unset, as upstream */
        bh_kapi_status(c->resp, 400, "BadRequest", "%s: %s", key, err.msg);
        *bad = 1;
    }
    return (long)n;
}

static void obj_watch(struct obj_ctx *c, const struct bh_kapi_sel *labels,
                      const struct bh_kapi_sel *fields)
{
    int bad = 0;
    long timeout = obj_long_param(c, "timeoutSeconds", 86400, &bad);
    long rv = bad ? 0 : obj_long_param(c, "resourceVersion", LONG_MAX, &bad);
    if (bad)
        return;
    struct bh_kapi_watch *w = bh_xcalloc(1, sizeof(*w));
    w->kind = c->kind->kind;
    w->rv = rv;
    w->initial = w->rv == 0; /* no version: the current objects first, as ADDED */
    w->labels = *labels;
    w->fields = *fields;
    w->table = c->req->want_table;
    const char *bm = bh_kapi_query(c->req, "allowWatchBookmarks");
    w->bookmarks = bm && strcmp(bm, "true") == 0;
    w->deadline_ms = bh_clock_ms() + 1000LL * (timeout ? timeout : OBJ_WATCH_DEFAULT_S);
    c->resp->watch = w;
}

static void obj_list(struct obj_ctx *c)
{
    struct bh_kapi_sel labels, fields;
    if (obj_selectors(c, &labels, &fields) < 0)
        return;
    const char *watch = bh_kapi_query(c->req, "watch");
    if (watch && (strcmp(watch, "true") == 0 || strcmp(watch, "1") == 0)) {
        obj_watch(c, &labels, &fields);
        return;
    }
    int bad = 0;
    long limit = obj_long_param(c, "limit", OBJ_LIST_CHUNK_MAX, &bad);
    if (bad)
        return;
    cJSON *all = NULL;
    int64_t rv = 0;
    struct bh_err err;
    if (!obj_ns_ok(c)) {
        bh_kapi_json(c->resp, 200, obj_list_doc(c, cJSON_CreateArray(), 0, 0));
        return;
    }
    if (bh_store_list(c->req->ctx->store, c->kind->kind, NULL, &all, &rv, &err) < 0) {
        obj_fail(c, &err, "", NULL);
        return;
    }
    int more;
    cJSON *items = obj_page(all, &labels, &fields, bh_kapi_query(c->req, "continue"), limit, &more);
    cJSON_Delete(all);
    bh_kapi_json(c->resp, 200, obj_list_doc(c, items, rv, more));
}

/* ---- writes ---- */

/* The body as an object of this kind, in our namespace; answers 4xx itself. */
static cJSON *obj_body(struct obj_ctx *c)
{
    cJSON *obj = NULL;
    if (bh_kapi_body(c->req, c->resp, &obj) < 0)
        return NULL;
    const char *kind = bh_json_str(obj, "kind"), *ns = bh_json_str(obj, "metadata.namespace");
    if (!cJSON_IsObject(obj) || !kind || strcmp(kind, c->kind->kind) != 0) {
        bh_kapi_status(c->resp, 400, "BadRequest", "the body must be a %s object", c->kind->kind);
    } else if (ns && strcmp(ns, c->req->path->ns[0] ? c->req->path->ns : BH_KAPI_NAMESPACE)) {
        bh_kapi_status(c->resp, 400, "BadRequest",
                       "the namespace of the provided object does not match the namespace sent "
                       "on the request");
    } else {
        cJSON_DeleteItemFromObjectCaseSensitive(bh_json_get(obj, "metadata"), "namespace");
        cJSON_DeleteItemFromObjectCaseSensitive(bh_json_get(obj, "metadata"), "managedFields");
        return obj;
    }
    cJSON_Delete(obj);
    return NULL;
}

/* generateName: a name from the prefix and 5 random characters, as the API server does. */
static int obj_generate_name(cJSON *obj, struct bh_err *err)
{
    const char *prefix = bh_json_str(obj, "metadata.generateName");
    if (!prefix || bh_json_str(obj, "metadata.name"))
        return 0;
    static const char alphabet[] = "bcdfghjklmnpqrstvwxz2456789";
    unsigned char r[5];
    if (bh_crypto_random(r, sizeof(r), err) < 0)
        return -1;
    char suffix[6];
    for (int i = 0; i < 5; i++)
        suffix[i] = alphabet[r[i] % (sizeof(alphabet) - 1)];
    suffix[5] = '\0';
    bh_autofree char *name = bh_xasprintf("%.57s%s", prefix, suffix);
    cJSON *md = bh_json_obj(obj, "metadata");
    bh_json_set_str(md, "name", name);
    cJSON_DeleteItemFromObjectCaseSensitive(md, "generateName");
    return 0;
}

/* The field manager of a write: ?fieldManager=, else the client's name from its User-Agent
 * ("kubectl/v1.32.4 (linux/amd64)" is "kubectl"), as the API server defaults it. */
static void obj_manager(const struct obj_ctx *c, char *out, size_t cap)
{
    const char *m = bh_kapi_query(c->req, "fieldManager");
    const char *ua = MHD_lookup_connection_value(c->req->conn, MHD_HEADER_KIND, "User-Agent");
    if (m && *m)
        snprintf(out, cap, "%.127s", m);
    else if (ua && *ua && *ua != '/')
        snprintf(out, cap, "%.*s", (int)(strcspn(ua, "/ ") < 127 ? strcspn(ua, "/ ") : 127), ua);
    else
        snprintf(out, cap, "unknown");
}

/* Removes the field at a dotted path ("spec.foo"); 0 if there was one. */
static int obj_drop_field(cJSON *obj, const char *path)
{
    bh_autofree char *parent = bh_xstrdup(path);
    char *dot = strrchr(parent, '.');
    cJSON *holder = obj;
    const char *key = path;
    if (dot) {
        *dot = '\0';
        holder = bh_json_get(obj, parent);
        key = dot + 1;
    }
    cJSON *gone =
        cJSON_IsObject(holder) ? cJSON_DetachItemFromObjectCaseSensitive(holder, key) : NULL;
    cJSON_Delete(gone);
    return gone ? 0 : -1;
}

/* A strict decoding error, as the API server words it; answered here. */
static int obj_strict(struct obj_ctx *c, const char *what, const char *field, struct bh_err *err)
{
    bh_kapi_status(c->resp, 400, "BadRequest",
                   "%s in version \"v1alpha1\" cannot be handled as a %s: strict decoding error: "
                   "%s field \"%s\"",
                   c->kind->kind, c->kind->kind, what, field);
    return bh_err_set(err, BH_EINVAL, "answered");
}

/* Duplicate keys in the JSON body (cJSON keeps them all): under Strict a 400 naming the first;
 * under Warn and Ignore the last one stays, as the API server decodes. Returns -1 (answered)
 * only under Strict. */
static int obj_duplicates(struct obj_ctx *c, cJSON *node, const char *path, int strict, int warn,
                          int depth, struct bh_err *err)
{
    if (depth > OBJ_UNKNOWN_MAX || !(cJSON_IsObject(node) || cJSON_IsArray(node)))
        return 0;
    if (cJSON_IsObject(node) && cJSON_GetArraySize(node) > OBJ_FIELDS_MAX) /* bounds the scan */
        return strict ? obj_strict(c, "too many fields in one object at", path, err) : 0;
    for (cJSON *m = node->child, *next; m; m = next) {
        next = m->next;
        bh_autofree char *child = m->string
                                      ? bh_xasprintf("%s%s%s", path, *path ? "." : "", m->string)
                                      : bh_xstrdup(path);
        int dup = 0;
        for (const cJSON *o = m->next; cJSON_IsObject(node) && o && !dup; o = o->next)
            dup = !strcmp(o->string, m->string);
        if (dup && strict)
            return obj_strict(c, "duplicate", child, err);
        if (dup && warn)
            bh_kapi_warn(c->resp, "duplicate field \"%s\"", child);
        if (dup)
            cJSON_Delete(cJSON_DetachItemViaPointer(node, m));
        else if (obj_duplicates(c, m, child, strict, warn, depth + 1, err) < 0)
            return -1;
    }
    return 0;
}

/* Validation and defaulting shared with REST, honouring ?fieldValidation=: Strict (400 naming
 * the unknown or duplicate field), Warn (dropped, with a Warning: header kubectl prints) or
 * Ignore (dropped). Without the parameter an unknown field is Invalid (422), as over REST. */
static int obj_validate(struct obj_ctx *c, cJSON *obj, struct bh_err *err)
{
    const char *mode = bh_kapi_query(c->req, "fieldValidation");
    if (mode && strcmp(mode, "Strict") && strcmp(mode, "Warn") && strcmp(mode, "Ignore")) {
        bh_kapi_status(c->resp, 400, "BadRequest",
                       "fieldValidation: must be one of Strict, Warn or Ignore, not \"%.32s\"",
                       mode);
        return bh_err_set(err, BH_EINVAL, "answered");
    }
    int lenient = mode && strcmp(mode, "Strict") != 0, warn = mode && !strcmp(mode, "Warn");
    if (mode && obj_duplicates(c, obj, "", !lenient, warn, 0, err) < 0)
        return -1;
    for (int i = 0;; i++) {
        if (bh_resource_validate(obj, err) == 0)
            return 0;
        const char *tail = strstr(err->msg, ": unknown field");
        if (!tail || tail[15] != '\0' || !mode)
            return -1;
        bh_autofree char *field = bh_xstrndup(err->msg, (size_t)(tail - err->msg));
        if (!lenient)
            return obj_strict(c, "unknown", field, err);
        if (i >= OBJ_UNKNOWN_MAX || obj_drop_field(obj, field) < 0)
            return -1;
        if (warn)
            bh_kapi_warn(c->resp, "unknown field \"%s\"", field);
    }
}

/* Validation and defaulting shared with REST, then the plugins' checks. */
static int obj_admit(struct obj_ctx *c, cJSON *obj, int create, struct bh_err *err)
{
    cJSON_DeleteItemFromObjectCaseSensitive(bh_json_get(obj, "metadata"), "generateName");
    if (obj_validate(c, obj, err) < 0 ||
        bh_plugins_check_resource(c->req->ctx->plugins, obj, err) < 0)
        return -1;
    if (create && strcmp(c->kind->kind, "BoilerhouseClaim") == 0)
        return bh_claim_admit(c->req->ctx, obj, err);
    return 0;
}

static void obj_created(struct obj_ctx *c, cJSON *obj, cJSON *stored, int code)
{
    bh_kapi_json(c->resp, code, obj_out(stored ? stored : cJSON_Duplicate(obj, 1), 0, NULL));
}

/* Records the write's field manager in obj's managedFields (old: the object before; NULL on
 * create). */
static void obj_own(struct obj_ctx *c, const cJSON *old, cJSON *obj)
{
    char manager[128], now[32];
    obj_manager(c, manager, sizeof(manager));
    bh_clock_rfc3339(now);
    bh_ssa_update(old, obj, manager, BH_API_VERSION, now);
}

/* Admits and stores a new object (owned by the caller). apply: its managedFields are made
 * already. */
static void obj_insert(struct obj_ctx *c, cJSON *obj, int apply)
{
    cJSON *stored = NULL;
    struct bh_err err;
    const char *name = bh_json_str(obj, "metadata.name");
    if (obj_admit(c, obj, 1, &err) < 0) {
        obj_fail(c, &err, name, obj);
        return;
    }
    if (!apply)
        obj_own(c, NULL, obj);
    if (obj_dry_run(c)) {
        obj_created(c, obj, NULL, 201);
    } else if (bh_store_create(c->req->ctx->store, obj, &stored, &err) < 0) {
        if (err.code == BH_ECONFLICT)
            bh_kapi_status(c->resp, 409, "AlreadyExists", "%s \"%s\" already exists", c->resource,
                           name);
        else
            obj_fail(c, &err, name, obj);
    } else {
        obj_created(c, obj, stored, 201);
    }
}

static void obj_create(struct obj_ctx *c)
{
    if (!obj_ns_ok(c) || !c->req->path->ns[0]) {
        obj_ns_missing(c);
        return;
    }
    cJSON *obj = obj_body(c);
    if (!obj)
        return;
    struct bh_err err;
    if (obj_generate_name(obj, &err) < 0)
        obj_fail(c, &err, bh_json_str(obj, "metadata.name"), obj);
    else
        obj_insert(c, obj, 0);
    cJSON_Delete(obj);
}

/* Writes obj (a whole object for the URL's name) as an update of spec and metadata, or of
 * status for the subresource. old: the object before, whose field owners the write updates
 * (NULL: obj's managedFields are final, as an apply made them). */
static void obj_write(struct obj_ctx *c, cJSON *obj, const cJSON *old)
{
    const char *name = c->req->path->name, *n = bh_json_str(obj, "metadata.name");
    int status = strcmp(c->req->path->sub, "status") == 0;
    cJSON *stored = NULL;
    struct bh_err err;
    if (n && strcmp(n, name) != 0) {
        bh_kapi_status(c->resp, 400, "BadRequest",
                       "the name of the object (%.64s) does not match the name on the URL (%s)", n,
                       name);
        return;
    }
    if (!n)
        bh_json_set_str(bh_json_obj(obj, "metadata"), "name", name);
    if (obj_admit(c, obj, 0, &err) < 0) {
        obj_fail(c, &err, name, obj);
        return;
    }
    if (old && !status)
        obj_own(c, old, obj);
    if (obj_dry_run(c))
        obj_created(c, obj, NULL, 200);
    else if ((status ? bh_store_update_status : bh_store_update)(c->req->ctx->store, obj, &stored,
                                                                 &err) < 0)
        obj_fail(c, &err, name, obj);
    else
        obj_created(c, obj, stored, 200);
}

static void obj_update(struct obj_ctx *c)
{
    if (!obj_ns_ok(c)) {
        obj_ns_missing(c);
        return;
    }
    cJSON *obj = obj_body(c), *old = NULL;
    struct bh_err err;
    if (!obj)
        return;
    if (strcmp(c->req->path->sub, "status") != 0) /* status is written only through /status */
        cJSON_DeleteItemFromObjectCaseSensitive(obj, "status");
    if (bh_store_get(c->req->ctx->store, c->kind->kind, c->req->path->name, &old, &err) < 0)
        obj_fail(c, &err, c->req->path->name, NULL);
    else
        obj_write(c, obj, old);
    cJSON_Delete(old);
    cJSON_Delete(obj);
}

/* The patched object: the current one with the body applied per the Content-Type. */
static cJSON *obj_patched(struct obj_ctx *c, cJSON *cur)
{
    const char *ct = c->req->content_type ? c->req->content_type : "";
    cJSON *patch = NULL;
    struct bh_err err;
    if (bh_kapi_body(c->req, c->resp, &patch) < 0)
        return NULL;
    int rc = 0;
    if (strncmp(ct, "application/merge-patch+json", 28) == 0) {
        bh_kapi_merge_patch(&cur, patch);
    } else if (strncmp(ct, "application/json-patch+json", 27) == 0) {
        rc = bh_kapi_json_patch(&cur, patch, &err);
        if (rc < 0)
            bh_kapi_status(c->resp, 422, "Invalid", "the JSON patch failed: %s", err.msg);
    } else {
        rc = -1;
        bh_kapi_status(c->resp, 415, "UnsupportedMediaType",
                       "the body of the request was in an unknown format - accepted media types "
                       "include: application/json-patch+json, application/merge-patch+json, "
                       "application/apply-patch+yaml");
    }
    cJSON_Delete(patch);
    if (rc < 0) {
        cJSON_Delete(cur);
        return NULL;
    }
    return cur;
}

/* ---- server-side apply ---- */

/* The applied configuration: an object of this kind named as the URL. Answers 4xx itself. */
static cJSON *obj_apply_body(struct obj_ctx *c)
{
    cJSON *config = obj_body(c);
    const char *n = bh_json_str(config, "metadata.name");
    if (config && n && strcmp(n, c->req->path->name) != 0) {
        bh_kapi_status(c->resp, 400, "BadRequest",
                       "the name of the object (%.64s) does not match the name on the URL (%s)", n,
                       c->req->path->name);
        cJSON_Delete(config);
        return NULL;
    }
    return config;
}

/* The object an apply starts from: the stored one, or a new one of the URL's name (an apply
 * creates). *exists tells which. NULL (answered) on a store error. */
static cJSON *obj_apply_base(struct obj_ctx *c, int *exists)
{
    cJSON *live = NULL;
    struct bh_err err;
    *exists = bh_store_get(c->req->ctx->store, c->kind->kind, c->req->path->name, &live, &err) == 0;
    if (*exists)
        return live;
    if (err.code != BH_ENOTFOUND) {
        obj_fail(c, &err, c->req->path->name, NULL);
        return NULL;
    }
    return bh_resource_new(c->kind->kind, c->req->path->name);
}

/* application/apply-patch+yaml: the body is the manager's whole intent for the fields it
 * sets; fields other managers own with other values are conflicts unless ?force=true. */
static void obj_apply(struct obj_ctx *c)
{
    const char *manager = bh_kapi_query(c->req, "fieldManager"),
               *force = bh_kapi_query(c->req, "force");
    if (!manager || !*manager) {
        bh_kapi_status(c->resp, 400, "BadRequest",
                       "PATCH request must have fieldManager for "
                       "apply (application/apply-patch+yaml)");
        return;
    }
    int exists = 0;
    cJSON *config = obj_apply_body(c), *live = config ? obj_apply_base(c, &exists) : NULL;
    struct bh_ssa_result res;
    struct bh_err err;
    char now[32];
    bh_clock_rfc3339(now);
    if (!live) {
        cJSON_Delete(config);
        return;
    }
    if (bh_ssa_apply(&live, config, manager, force && !strcmp(force, "true"), BH_API_VERSION, now,
                     &res, &err) < 0) {
        if (err.code == BH_ECONFLICT)
            bh_kapi_status_conflicts(c->resp, &res, c->resource, c->kind->kind, c->req->path->name);
        else
            bh_kapi_status(c->resp, 400, "BadRequest", "%s", err.msg);
    } else if (exists) {
        cJSON_DeleteItemFromObjectCaseSensitive(bh_json_get(live, "metadata"), "namespace");
        cJSON_DeleteItemFromObjectCaseSensitive(live, "status");
        obj_write(c, live, NULL);
    } else {
        obj_insert(c, live, 1);
    }
    cJSON_Delete(live);
    cJSON_Delete(config);
}

static void obj_patch(struct obj_ctx *c)
{
    cJSON *cur = NULL;
    struct bh_err err;
    const char *name = c->req->path->name;
    if (!obj_ns_ok(c)) {
        obj_ns_missing(c);
        return;
    }
    const char *ct = c->req->content_type ? c->req->content_type : "";
    if (strncmp(ct, "application/apply-patch+yaml", 28) == 0) {
        obj_apply(c);
        return;
    }
    if (bh_store_get(c->req->ctx->store, c->kind->kind, name, &cur, &err) < 0) {
        obj_fail(c, &err, name, NULL);
        return;
    }
    cJSON *old = cJSON_Duplicate(cur, 1);
    cJSON *obj = obj_patched(c, cur);
    if (obj) {
        cJSON_DeleteItemFromObjectCaseSensitive(bh_json_get(obj, "metadata"), "namespace");
        obj_write(c, obj, old);
    }
    cJSON_Delete(obj);
    cJSON_Delete(old);
}

/* With finalizers (a claim's) the object stays, marked, until its controller lets it go:
 * deleting a claim releases it, hibernating first. The answer is the object then. */
static void obj_delete(struct obj_ctx *c)
{
    const char *name = c->req->path->name;
    cJSON *cur = NULL;
    struct bh_err err;
    if (!obj_ns_ok(c)) {
        obj_ns_missing(c);
        return;
    }
    if (bh_store_get(c->req->ctx->store, c->kind->kind, name, &cur, &err) < 0) {
        obj_fail(c, &err, name, NULL);
        return;
    }
    if (!obj_dry_run(c) && bh_store_delete(c->req->ctx->store, c->kind->kind, name, &err) < 0) {
        obj_fail(c, &err, name, NULL);
    } else if (bh_json_get(cur, "metadata.finalizers") && !obj_dry_run(c)) {
        cJSON_Delete(cur);
        cur = NULL;
        if (bh_store_get(c->req->ctx->store, c->kind->kind, name, &cur, &err) == 0) {
            bh_kapi_json(c->resp, 200, obj_out(cur, 0, NULL));
            return;
        }
        bh_kapi_status_ok(c->resp, bh_resource_plural(c->kind->kind), name);
    } else {
        bh_kapi_status_ok(c->resp, bh_resource_plural(c->kind->kind), name);
    }
    cJSON_Delete(cur);
}

void bh_kapi_objects(const struct bh_kapi_req *req, struct bh_kapi_resp *resp)
{
    struct obj_ctx c = {.req = req, .resp = resp};
    const struct bh_kapi_path *p = req->path;
    if (strcmp(p->group, BH_API_GROUP) != 0) {
        bh_kapi_core(req, resp); /* apiextensions */
        return;
    }
    c.kind = bh_kapi_kind_by_plural(p->resource);
    if (!c.kind || strcmp(p->version, "v1alpha1") != 0 ||
        (p->sub[0] && strcmp(p->sub, "status") != 0)) {
        bh_kapi_status(resp, 404, "NotFound", "the server could not find the requested resource");
        return;
    }
    snprintf(c.resource, sizeof(c.resource), "%s." BH_API_GROUP, bh_resource_plural(c.kind->kind));
    const char *m = req->method;
    int item = p->name[0] != 0;
    if (strcmp(m, "GET") == 0)
        item ? obj_get(&c) : obj_list(&c);
    else if (strcmp(m, "POST") == 0 && !item)
        obj_create(&c);
    else if (strcmp(m, "PUT") == 0 && item)
        obj_update(&c);
    else if (strcmp(m, "PATCH") == 0 && item)
        obj_patch(&c);
    else if (strcmp(m, "DELETE") == 0 && item)
        obj_delete(&c);
    else
        bh_kapi_status(resp, 405, "MethodNotAllowed", "the server does not allow this method");
}
