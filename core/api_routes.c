/* REST handlers for /api/v1: the original's routes and response shapes (workloadResponse,
 * claimResponse, instanceResponse), with validation before anything is touched. */
#include "api.h"

#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>

#include "fs.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "queue.h"
#include "resource.h"
#include "store.h"

#define API_CLAIM_FINALIZER "boilerhouse.dev/cleanup"
#define API_LOG_TAIL_DEFAULT 200
#define API_LOG_TAIL_MAX 5000
#define API_EXEC_TIMEOUT_MS 30000

/* ---- shapes ---- */

static cJSON *api_workload_shape(const cJSON *obj)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", bh_json_str(obj, "metadata.name"));
    cJSON_AddItemToObject(o, "spec", cJSON_Duplicate(bh_json_get(obj, "spec"), 1));
    const cJSON *st = bh_json_get(obj, "status");
    cJSON_AddItemToObject(o, "status", st ? cJSON_Duplicate(st, 1) : cJSON_CreateObject());
    cJSON_AddNumberToObject(o, "generation", (double)bh_json_int(obj, "metadata.generation", 0));
    cJSON_AddStringToObject(o, "createdAt", bh_json_str(obj, "metadata.creationTimestamp"));
    return o;
}

static void api_copy_str(cJSON *dst, const char *key, const cJSON *src, const char *path)
{
    const char *v = bh_json_str(src, path);
    if (v)
        cJSON_AddStringToObject(dst, key, v);
}

static cJSON *api_claim_shape(const cJSON *claim)
{
    cJSON *o = cJSON_CreateObject();
    api_copy_str(o, "tenantId", claim, "spec.tenantId");
    api_copy_str(o, "workload", claim, "spec.workloadRef");
    const char *phase = bh_json_str(claim, "status.phase");
    cJSON_AddStringToObject(o, "phase", phase ? phase : "Pending");
    api_copy_str(o, "instanceId", claim, "status.instanceId");
    const cJSON *ep = bh_json_get(claim, "status.endpoint");
    if (ep)
        cJSON_AddItemToObject(o, "endpoint", cJSON_Duplicate(ep, 1));
    api_copy_str(o, "source", claim, "status.source");
    api_copy_str(o, "claimedAt", claim, "status.claimedAt");
    api_copy_str(o, "detail", claim, "status.detail");
    return o;
}

static cJSON *api_instance_shape(const cJSON *inst)
{
    cJSON *o = cJSON_CreateObject();
    api_copy_str(o, "id", inst, "metadata.name");
    const char *phase = bh_json_str(inst, "status.phase");
    cJSON_AddStringToObject(o, "phase", phase ? phase : "Unknown");
    api_copy_str(o, "tenantId", inst, "spec.tenantId");
    api_copy_str(o, "workloadRef", inst, "spec.workload");
    api_copy_str(o, "network", inst, "spec.network");
    const cJSON *ep = bh_json_get(inst, "status.endpoint");
    if (ep)
        cJSON_AddItemToObject(o, "endpoint", cJSON_Duplicate(ep, 1));
    const cJSON *labels = bh_json_get(inst, "metadata.labels");
    if (labels)
        cJSON_AddItemToObject(o, "labels", cJSON_Duplicate(labels, 1));
    api_copy_str(o, "createdAt", inst, "metadata.creationTimestamp");
    api_copy_str(o, "startedAt", inst, "status.startedAt");
    api_copy_str(o, "lastActivity", inst, "status.lastActivity");
    return o;
}

/* ---- helpers ---- */

/* Parses the request body (JSON or YAML) into *out; answers 400 itself on failure. */
static int api_body(const struct bh_api_req *req, struct bh_api_resp *resp, cJSON **out)
{
    struct bh_err err;
    if (!req->body || req->body_len == 0) {
        bh_api_error(resp, 400, "request body is empty");
        return -1;
    }
    if (bh_resource_parse(req->body, req->body_len, out, &err) < 0) {
        bh_api_error(resp, 400, "invalid request body: %s", err.msg);
        return -1;
    }
    if (!cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        bh_api_error(resp, 400, "request body must be an object");
        return -1;
    }
    return 0;
}

/* Echoes at most 64 characters of user input in errors, so a hostile ID stays readable. */
static void api_bad_tenant(struct bh_api_resp *resp, const char *tenant)
{
    bh_api_error(resp, 400,
                 "invalid tenant id \"%.64s\": must be 1-63 characters of [A-Za-z0-9._-] and not "
                 "\".\" or \"..\"",
                 tenant);
}

static void api_list_kind(const struct bh_api_req *req, struct bh_api_resp *resp, const char *kind,
                          const char *selector, cJSON *(*shape)(const cJSON *))
{
    cJSON *list = NULL;
    struct bh_err err;
    if (bh_store_list(req->d->store, kind, selector, &list, NULL, &err) < 0) {
        bh_api_from_err(resp, &err);
        return;
    }
    cJSON *out = cJSON_CreateArray();
    const cJSON *o;
    cJSON_ArrayForEach(o, list) cJSON_AddItemToArray(out, shape(o));
    cJSON_Delete(list);
    bh_api_json(resp, 200, out);
}

/* ---- system ---- */

static void h_health(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "ok");
    bh_api_json(resp, 200, o);
}

static cJSON *api_count_phases(struct bh_daemon *d, const char *kind, const char *empty)
{
    cJSON *list = NULL, *out = cJSON_CreateObject(), *by = cJSON_CreateObject();
    struct bh_err err;
    int total = 0;
    if (bh_store_list(d->store, kind, NULL, &list, NULL, &err) == 0) {
        const cJSON *o;
        cJSON_ArrayForEach(o, list)
        {
            const char *phase = bh_json_str(o, "status.phase");
            phase = phase ? phase : empty;
            cJSON *n = cJSON_GetObjectItemCaseSensitive(by, phase);
            if (n)
                cJSON_SetNumberValue(n, n->valuedouble + 1);
            else
                cJSON_AddNumberToObject(by, phase, 1);
            total++;
        }
    }
    cJSON_Delete(list);
    cJSON_AddNumberToObject(out, "total", total);
    cJSON_AddItemToObject(out, "byPhase", by);
    return out;
}

static void h_stats(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "instances", api_count_phases(req->d, "Instance", "Unknown"));
    cJSON_AddItemToObject(o, "claims", api_count_phases(req->d, "BoilerhouseClaim", "Pending"));
    bh_api_json(resp, 200, o);
}

/* ---- workloads ---- */

static void h_workloads_list(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    api_list_kind(req, resp, "BoilerhouseWorkload", NULL, api_workload_shape);
}

/* Accepts the original's {name, spec} or a whole resource; returns an owned full object. */
static cJSON *api_workload_object(cJSON *body, const char *url_name, struct bh_api_resp *resp)
{
    if (bh_json_get(body, "apiVersion") || bh_json_get(body, "kind")) {
        const char *kind = bh_json_str(body, "kind");
        if (!kind || strcmp(kind, "BoilerhouseWorkload") != 0) {
            bh_api_error(resp, 400, "kind: must be BoilerhouseWorkload");
            return NULL;
        }
        return cJSON_Duplicate(body, 1);
    }
    for (cJSON *it = body->child; it; it = it->next) {
        if (strcmp(it->string, "name") != 0 && strcmp(it->string, "spec") != 0) {
            bh_api_error(resp, 400, "%s: unknown field (expected name and spec)", it->string);
            return NULL;
        }
    }
    const char *name = url_name ? url_name : bh_json_str(body, "name");
    if (!name) {
        bh_api_error(resp, 400, "name: required");
        return NULL;
    }
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddStringToObject(obj, "apiVersion", BH_API_VERSION);
    cJSON_AddStringToObject(obj, "kind", "BoilerhouseWorkload");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(obj, "metadata"), "name", name);
    const cJSON *spec = bh_json_get(body, "spec");
    cJSON_AddItemToObject(obj, "spec", spec ? cJSON_Duplicate(spec, 1) : cJSON_CreateObject());
    return obj;
}

static void h_workload_create(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    cJSON *body = NULL, *stored = NULL;
    if (api_body(req, resp, &body) < 0)
        return;
    cJSON *obj = api_workload_object(body, NULL, resp);
    cJSON_Delete(body);
    if (!obj)
        return;
    struct bh_err err;
    if (bh_resource_validate(obj, &err) < 0 ||
        bh_store_create(req->d->store, obj, &stored, &err) < 0) {
        if (err.code == BH_ECONFLICT)
            bh_api_error(resp, 409, "workload %s already exists",
                         bh_json_str(obj, "metadata.name"));
        else
            bh_api_from_err(resp, &err);
    } else {
        bh_api_json(resp, 201, api_workload_shape(stored));
    }
    cJSON_Delete(stored);
    cJSON_Delete(obj);
}

static void h_workload_get(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    cJSON *obj = NULL;
    struct bh_err err;
    if (bh_store_get(req->d->store, "BoilerhouseWorkload", req->params[0], &obj, &err) < 0) {
        bh_api_error(resp, err.code == BH_ENOTFOUND ? 404 : 500, "workload %.64s not found",
                     req->params[0]);
        return;
    }
    bh_api_json(resp, 200, api_workload_shape(obj));
    cJSON_Delete(obj);
}

static void h_workload_put(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    cJSON *body = NULL, *cur = NULL, *stored = NULL;
    struct bh_err err;
    if (bh_store_get(req->d->store, "BoilerhouseWorkload", req->params[0], &cur, &err) < 0) {
        bh_api_error(resp, 404, "workload %.64s not found", req->params[0]);
        return;
    }
    cJSON_Delete(cur);
    if (api_body(req, resp, &body) < 0)
        return;
    cJSON_DeleteItemFromObjectCaseSensitive(body, "name"); /* the URL names it */
    cJSON *obj = api_workload_object(body, req->params[0], resp);
    cJSON_Delete(body);
    if (!obj)
        return;
    const char *name = bh_json_str(obj, "metadata.name");
    if (name && strcmp(name, req->params[0]) != 0)
        bh_api_error(resp, 400, "metadata.name: %s does not match the URL", name);
    else if (bh_resource_validate(obj, &err) < 0 ||
             bh_store_update(req->d->store, obj, &stored, &err) < 0)
        bh_api_from_err(resp, &err);
    else
        bh_api_json(resp, 200, api_workload_shape(stored));
    cJSON_Delete(stored);
    cJSON_Delete(obj);
}

static void h_workload_delete(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    struct bh_err err;
    if (bh_store_delete(req->d->store, "BoilerhouseWorkload", req->params[0], &err) < 0) {
        bh_api_error(resp, err.code == BH_ENOTFOUND ? 404 : 500, "workload %.64s: %s",
                     req->params[0], err.code == BH_ENOTFOUND ? "not found" : err.msg);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "deleted");
    bh_api_json(resp, 200, o);
}

/* Snapshots are written by hibernation, which this build does not do yet: the lists are
 * truthfully empty. */
static void h_snapshots(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    bh_api_json(resp, 200, cJSON_CreateArray());
}

/* ---- tenants and claims ---- */

/* Reads {workload | workloadRef, resume?}; answers 400 itself. Owned name or NULL. */
static char *api_claim_workload(const struct bh_api_req *req, struct bh_api_resp *resp, int *resume)
{
    cJSON *body = NULL;
    if (api_body(req, resp, &body) < 0)
        return NULL;
    char *name = NULL;
    for (cJSON *it = body->child; it; it = it->next) {
        if (strcmp(it->string, "workload") && strcmp(it->string, "workloadRef") &&
            strcmp(it->string, "resume")) {
            bh_api_error(resp, 400, "%.64s: unknown field (expected workload, resume)", it->string);
            cJSON_Delete(body);
            return NULL;
        }
    }
    const char *w = bh_json_str(body, "workload");
    w = w ? w : bh_json_str(body, "workloadRef");
    if (!w)
        bh_api_error(resp, 400, "workload: required (a string)");
    else if (!bh_resource_name_valid(w))
        bh_api_error(resp, 400, "workload: \"%.64s\" is not a valid name", w);
    else
        name = bh_xstrdup(w);
    if (resume)
        *resume = bh_json_bool(body, "resume", 0);
    cJSON_Delete(body);
    return name;
}

static cJSON *api_claim_new(const char *name, const char *tenant, const char *workload, int resume)
{
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddStringToObject(obj, "apiVersion", BH_API_VERSION);
    cJSON_AddStringToObject(obj, "kind", "BoilerhouseClaim");
    cJSON *md = cJSON_AddObjectToObject(obj, "metadata");
    cJSON_AddStringToObject(md, "name", name);
    cJSON *labels = cJSON_AddObjectToObject(md, "labels");
    cJSON_AddStringToObject(labels, "boilerhouse.dev/tenant", tenant);
    cJSON_AddStringToObject(labels, "boilerhouse.dev/workload", workload);
    cJSON_AddItemToObject(md, "finalizers",
                          cJSON_CreateStringArray(&(const char *){API_CLAIM_FINALIZER}, 1));
    cJSON *spec = cJSON_AddObjectToObject(obj, "spec");
    cJSON_AddStringToObject(spec, "tenantId", tenant);
    cJSON_AddStringToObject(spec, "workloadRef", workload);
    if (resume)
        cJSON_AddBoolToObject(spec, "resume", 1);
    return obj;
}

/* Waits for the claim to reach a phase in `phases` ("Active|Error"), or to disappear when
 * phases is NULL. Returns the claim (owned) or NULL when gone / timed out (*timed_out). */
static cJSON *api_claim_wait(struct bh_daemon *d, const char *name, const char *phases,
                             int *timed_out)
{
    long long deadline = bh_now_ms() + d->cfg.claim_timeout_ms;
    uint64_t seq = 0;
    bh_daemon_wait_claim_change(d, &seq, 0); /* snapshot the sequence before reading */
    *timed_out = 0;
    for (;;) {
        cJSON *c = NULL;
        struct bh_err err;
        if (bh_store_get(d->store, "BoilerhouseClaim", name, &c, &err) < 0)
            return NULL;
        const char *phase = bh_json_str(c, "status.phase");
        if (phases && phase && strstr(phases, phase) &&
            !bh_json_get(c, "metadata.deletionTimestamp"))
            return c;
        if (bh_now_ms() >= deadline) {
            *timed_out = 1;
            return c;
        }
        cJSON_Delete(c);
        bh_daemon_wait_claim_change(d, &seq, deadline);
    }
}

/* Finds or creates the claim; a claim that ended (Error/Released) starts over. Owned. */
static cJSON *api_claim_ensure(struct bh_daemon *d, const char *name, const char *tenant,
                               const char *workload, int resume, struct bh_err *err)
{
    cJSON *c = NULL;
    if (bh_store_get(d->store, "BoilerhouseClaim", name, &c, err) == 0 &&
        bh_json_get(c, "metadata.deletionTimestamp")) {
        int timed_out;
        cJSON_Delete(c);
        c = api_claim_wait(d, name, NULL, &timed_out); /* a release is finishing */
        if (c) {
            cJSON_Delete(c);
            bh_err_set(err, BH_EUNAVAIL, "the previous claim is still being released");
            return NULL;
        }
    }
    if (!c) {
        cJSON *obj = api_claim_new(name, tenant, workload, resume);
        int rc = bh_store_create(d->store, obj, &c, err);
        cJSON_Delete(obj);
        if (rc < 0 && err->code == BH_ECONFLICT) /* a concurrent claim made it first */
            rc = bh_store_get(d->store, "BoilerhouseClaim", name, &c, err);
        return rc < 0 ? NULL : c;
    }
    const char *phase = bh_json_str(c, "status.phase");
    if (phase && (strcmp(phase, "Error") == 0 || strcmp(phase, "Released") == 0)) {
        bh_json_set_str(bh_json_obj(c, "status"), "phase", "Pending");
        bh_json_set_str(bh_json_obj(c, "status"), "detail", "claimed again");
        cJSON_DeleteItemFromObjectCaseSensitive(bh_json_obj(c, "metadata"), "resourceVersion");
        if (bh_store_update_status(d->store, c, NULL, err) < 0) {
            cJSON_Delete(c);
            return NULL;
        }
    }
    return c;
}

static void h_claim(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    long long t0 = bh_now_ms();
    const char *tenant = req->params[0];
    if (!bh_tenant_id_valid(tenant)) {
        api_bad_tenant(resp, tenant);
        return;
    }
    int resume = 0;
    bh_autofree char *workload = api_claim_workload(req, resp, &resume);
    if (!workload)
        return;
    struct bh_err err;
    cJSON *wl = NULL;
    if (bh_store_get(req->d->store, "BoilerhouseWorkload", workload, &wl, &err) < 0) {
        bh_api_error(resp, 404, "workload %s not found", workload);
        return;
    }
    cJSON_Delete(wl);
    bh_autofree char *name = bh_claim_name(tenant, workload);
    cJSON *c = api_claim_ensure(req->d, name, tenant, workload, resume, &err);
    if (!c) {
        bh_api_from_err(resp, &err);
        return;
    }
    const char *phase = bh_json_str(c, "status.phase");
    int existing = phase && strcmp(phase, "Active") == 0;
    int timed_out = 0;
    if (!existing) {
        cJSON_Delete(c);
        c = api_claim_wait(req->d, name, "Active|Error", &timed_out);
    }
    if (!c) {
        bh_api_error(resp, 409, "claim %s was released while it was being made", name);
        return;
    }
    cJSON *out = api_claim_shape(c);
    cJSON_Delete(c);
    if (existing)
        bh_json_set_str(out, "source", "existing");
    cJSON_AddNumberToObject(out, "latencyMs", (double)(bh_now_ms() - t0));
    const char *final = bh_json_str(out, "phase");
    if (timed_out) {
        bh_json_set_str(out, "error", "the instance did not become ready in time");
        bh_api_json(resp, 504, out);
    } else if (strcmp(final, "Active") != 0) {
        bh_json_set_str(out, "error", bh_json_str(out, "detail"));
        bh_api_json(resp, 500, out);
    } else {
        bh_api_json(resp, existing ? 200 : 201, out);
    }
}

static void h_release(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    const char *tenant = req->params[0];
    if (!bh_tenant_id_valid(tenant)) {
        api_bad_tenant(resp, tenant);
        return;
    }
    bh_autofree char *workload = api_claim_workload(req, resp, NULL);
    if (!workload)
        return;
    bh_autofree char *name = bh_claim_name(tenant, workload);
    struct bh_err err;
    if (bh_store_delete(req->d->store, "BoilerhouseClaim", name, &err) < 0) {
        if (err.code == BH_ENOTFOUND)
            bh_api_error(resp, 404, "claim not found for tenant %s and workload %s", tenant,
                         workload);
        else
            bh_api_from_err(resp, &err);
        return;
    }
    int timed_out = 0;
    cJSON *left = api_claim_wait(req->d, name, NULL, &timed_out);
    if (left) {
        cJSON *out = api_claim_shape(left);
        cJSON_Delete(left);
        bh_json_set_str(out, "error", "release did not finish in time");
        bh_api_json(resp, timed_out ? 504 : 500, out);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "released");
    cJSON_AddStringToObject(o, "tenantId", tenant);
    cJSON_AddStringToObject(o, "workload", workload);
    bh_api_json(resp, 200, o);
}

/* Groups claims by tenant: [{tenantId, claims: [claimResponse]}]. */
static cJSON *api_group_tenants(const cJSON *claims)
{
    cJSON *out = cJSON_CreateArray();
    const cJSON *c;
    cJSON_ArrayForEach(c, claims)
    {
        const char *tenant = bh_json_str(c, "spec.tenantId");
        cJSON *group = NULL, *g;
        cJSON_ArrayForEach(g, out) if (strcmp(bh_json_str(g, "tenantId"), tenant) == 0) group = g;
        if (!group) {
            group = cJSON_CreateObject();
            cJSON_AddStringToObject(group, "tenantId", tenant);
            cJSON_AddArrayToObject(group, "claims");
            cJSON_AddItemToArray(out, group);
        }
        cJSON_AddItemToArray(cJSON_GetObjectItem(group, "claims"), api_claim_shape(c));
    }
    return out;
}

static void h_tenants(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    cJSON *claims = NULL;
    struct bh_err err;
    if (bh_store_list(req->d->store, "BoilerhouseClaim", NULL, &claims, NULL, &err) < 0) {
        bh_api_from_err(resp, &err);
        return;
    }
    bh_api_json(resp, 200, api_group_tenants(claims));
    cJSON_Delete(claims);
}

static void h_tenant(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    const char *tenant = req->params[0];
    if (!bh_tenant_id_valid(tenant)) {
        api_bad_tenant(resp, tenant);
        return;
    }
    bh_autofree char *sel = bh_xasprintf("boilerhouse.dev/tenant=%s", tenant);
    cJSON *claims = NULL;
    struct bh_err err;
    if (bh_store_list(req->d->store, "BoilerhouseClaim", sel, &claims, NULL, &err) < 0) {
        bh_api_from_err(resp, &err);
        return;
    }
    cJSON *groups = api_group_tenants(claims);
    cJSON_Delete(claims);
    if (cJSON_GetArraySize(groups) == 0)
        bh_api_error(resp, 404, "tenant %s not found", tenant);
    else
        bh_api_json(resp, 200, cJSON_DetachItemFromArray(groups, 0));
    cJSON_Delete(groups);
}

/* ---- instances ---- */

static void h_instances_list(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    api_list_kind(req, resp, "Instance", "boilerhouse.dev/managed=true", api_instance_shape);
}

static cJSON *api_instance_get(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    cJSON *inst = NULL;
    struct bh_err err;
    if (bh_store_get(req->d->store, "Instance", req->params[0], &inst, &err) < 0) {
        bh_api_error(resp, 404, "instance %.64s not found", req->params[0]);
        return NULL;
    }
    return inst;
}

static void h_instance_get(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    cJSON *inst = api_instance_get(req, resp);
    if (inst)
        bh_api_json(resp, 200, api_instance_shape(inst));
    cJSON_Delete(inst);
}

/* The last n lines of text (a pointer into it). */
static const char *api_tail_lines(const char *text, size_t len, long n)
{
    const char *p = text + len;
    if (p > text && p[-1] == '\n')
        p--;
    while (p > text) {
        if (p[-1] == '\n' && --n == 0)
            break;
        p--;
    }
    return p;
}

static void h_instance_logs(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    cJSON *inst = api_instance_get(req, resp);
    if (!inst)
        return;
    cJSON_Delete(inst);
    const char *q = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "tail");
    char *end = NULL;
    long tail = q ? strtol(q, &end, 10) : API_LOG_TAIL_DEFAULT;
    if (q && (*end || tail < 1 || tail > API_LOG_TAIL_MAX)) {
        bh_api_error(resp, 400, "tail: must be an integer from 1 to %d", API_LOG_TAIL_MAX);
        return;
    }
    bh_autofree char *path = bh_instance_log_path(req->d, req->params[0]);
    char *text = NULL;
    size_t len = 0;
    struct bh_err err;
    if (bh_fs_read_all(path, 64 << 20, &text, &len, &err) < 0) {
        text = bh_xstrdup("");
        len = 0;
    }
    resp->status = 200;
    resp->text = bh_xstrdup(api_tail_lines(text, len, tail));
    resp->content_type = "text/plain; charset=utf-8";
    free(text);
}

static void h_instance_exec(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    cJSON *inst = api_instance_get(req, resp), *body = NULL, *out = NULL;
    if (!inst)
        return;
    cJSON_Delete(inst);
    if (api_body(req, resp, &body) < 0)
        return;
    const cJSON *cmd = bh_json_get(body, "command");
    int n = cJSON_IsArray(cmd) ? cJSON_GetArraySize(cmd) : 0;
    char **argv = bh_xcalloc((size_t)n + 1, sizeof(char *));
    for (int i = 0; i < n; i++) {
        const cJSON *a = cJSON_GetArrayItem(cmd, i);
        argv[i] = cJSON_IsString(a) ? a->valuestring : NULL;
        if (!argv[i])
            n = 0;
    }
    struct bh_err err;
    if (n == 0)
        bh_api_error(resp, 400, "command: required, a non-empty array of strings");
    else if (bh_instance_exec(req->d, req->params[0], argv, API_EXEC_TIMEOUT_MS, &out, &err) < 0)
        bh_api_from_err(resp, &err);
    else
        bh_api_json(resp, 200, out);
    free(argv);
    cJSON_Delete(body);
}

static void h_instance_destroy(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    cJSON *inst = api_instance_get(req, resp);
    if (!inst)
        return;
    bh_autofree char *claim = bh_xstrdup(bh_json_str(inst, "spec.claim"));
    cJSON_Delete(inst);
    struct bh_err err;
    if (bh_instance_destroy(req->d, req->params[0], &err) < 0) {
        bh_api_from_err(resp, &err);
        return;
    }
    if (claim[0]) { /* its claim notices the loss now rather than at its next check */
        bh_autofree char *key = bh_xasprintf("BoilerhouseClaim/%s", claim);
        bh_queue_add(req->d->queue, key);
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "destroyed");
    cJSON_AddStringToObject(o, "instance", req->params[0]);
    bh_api_json(resp, 200, o);
}

const struct bh_api_route bh_api_routes[] = {
    {"GET", "/api/v1/health", h_health, 0},
    {"GET", "/api/v1/stats", h_stats, 1},
    {"GET", "/api/v1/workloads", h_workloads_list, 1},
    {"POST", "/api/v1/workloads", h_workload_create, 1},
    {"GET", "/api/v1/workloads/*", h_workload_get, 1},
    {"PUT", "/api/v1/workloads/*", h_workload_put, 1},
    {"DELETE", "/api/v1/workloads/*", h_workload_delete, 1},
    {"GET", "/api/v1/workloads/*/snapshots", h_snapshots, 1},
    {"GET", "/api/v1/snapshots", h_snapshots, 1},
    {"POST", "/api/v1/tenants/**/claim", h_claim, 1},
    {"POST", "/api/v1/tenants/**/release", h_release, 1},
    {"GET", "/api/v1/tenants", h_tenants, 1},
    {"GET", "/api/v1/tenants/**", h_tenant, 1},
    {"GET", "/api/v1/instances", h_instances_list, 1},
    {"GET", "/api/v1/instances/*", h_instance_get, 1},
    {"GET", "/api/v1/instances/*/logs", h_instance_logs, 1},
    {"POST", "/api/v1/instances/*/exec", h_instance_exec, 1},
    {"POST", "/api/v1/instances/*/destroy", h_instance_destroy, 1},
    {NULL, NULL, NULL, 0},
};
