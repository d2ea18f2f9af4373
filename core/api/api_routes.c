/* REST handlers for /api/v1: the original's routes and response shapes (workloadResponse,
 * claimResponse, instanceResponse), with validation before anything is touched. */
#include "admit.h"
#include "api.h"

#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>

#include "build.h"
#include "clock.h"
#include "crypto.h"
#include "metrics.h"
#include "ctx.h"
#include "claim.h"
#include "fs.h"
#include "idle.h"
#include "instance.h"
#include "json.h"
#include "mem.h"
#include "name.h"
#include "plugin.h"
#include "queue.h"
#include "runtime.h"
#include "resource.h"
#include "secret.h"
#include "store.h"
#include "trigger.h"
#include "workload.h"
#include "ws.h"

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
    cJSON_AddStringToObject(o, "phase", phase ? phase : BH_CLAIM_PENDING);
    api_copy_str(o, "instanceId", claim, "status.instanceId");
    const cJSON *ep = bh_json_get(claim, "status.endpoint");
    if (ep)
        cJSON_AddItemToObject(o, "endpoint", cJSON_Duplicate(ep, 1));
    api_copy_str(o, "source", claim, "status.source");
    api_copy_str(o, "claimedAt", claim, "status.claimedAt");
    api_copy_str(o, "detail", claim, "status.detail");
    const cJSON *policy = bh_json_get(claim, "status.policy");
    if (policy && policy->child) /* the claim policy that admitted it, and its overrides */
        cJSON_AddItemToObject(o, "policy", cJSON_Duplicate(policy, 1));
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
    cJSON_AddNumberToObject(o, "workloadGeneration",
                            (double)bh_json_int(inst, "spec.workloadGeneration", 0));
    api_copy_str(o, "imageDigest", inst, "status.imageDigest");
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
int bh_api_body(const struct bh_api_req *req, struct bh_api_resp *resp, cJSON **out)
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
                 "invalid tenant id \"%.64s\": must be 1-63 characters of [A-Za-z0-9._-], "
                 "beginning and ending with a letter or digit (a Kubernetes label value)",
                 tenant);
}

static void api_list_kind(const struct bh_api_req *req, struct bh_api_resp *resp, const char *kind,
                          const char *selector, cJSON *(*shape)(const cJSON *))
{
    cJSON *list = NULL;
    struct bh_err err;
    if (bh_store_list(req->ctx->store, kind, selector, &list, NULL, &err) < 0) {
        bh_api_from_err(resp, &err);
        return;
    }
    cJSON *out = cJSON_CreateArray();
    const cJSON *o;
    cJSON_ArrayForEach(o, list)
        cJSON_AddItemToArray(out, shape(o));
    cJSON_Delete(list);
    bh_api_json(resp, 200, out);
}

/* lastActivity and idleTimeLeftSeconds of inst, added to a response object; wl (optional,
 * borrowed) is the caller's copy of the workload, read here only if it is not inst's. */
static void api_add_idle_of(struct bh_ctx *ctx, cJSON *out, const cJSON *inst, const cJSON *wl)
{
    const char *last = bh_json_str(inst, "status.lastActivity");
    if (last)
        bh_json_set_str(out, "lastActivity", last);
    const char *name = bh_json_str(inst, "spec.workload");
    cJSON *read = NULL;
    struct bh_err err;
    if (!wl || !name || strcmp(bh_json_str(wl, "metadata.name") ?: "", name) != 0) {
        if (!name || bh_store_get(ctx->store, "BoilerhouseWorkload", name, &read, &err) < 0)
            return;
        wl = read;
    }
    long long left = bh_idle_left_ms(inst, wl);
    if (left >= 0)
        bh_json_set_num(out, "idleTimeLeftSeconds", (double)(left / 1000));
    cJSON_Delete(read);
}

/* The same for the instance named instance_id (NULL: none). */
static void api_add_idle(struct bh_ctx *ctx, cJSON *out, const char *instance_id, const cJSON *wl)
{
    cJSON *inst = NULL;
    struct bh_err err;
    if (!instance_id || bh_store_get(ctx->store, "Instance", instance_id, &inst, &err) < 0)
        return;
    api_add_idle_of(ctx, out, inst, wl);
    cJSON_Delete(inst);
}

/* ---- system ---- */

static void h_health(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "ok");
    bh_api_json(resp, 200, o);
}

static cJSON *api_count_phases(struct bh_ctx *ctx, const char *kind, const char *empty)
{
    cJSON *list = NULL, *out = cJSON_CreateObject(), *by = cJSON_CreateObject();
    struct bh_err err;
    int total = 0;
    if (bh_store_list(ctx->store, kind, NULL, &list, NULL, &err) == 0) {
        const cJSON *o;
        cJSON_ArrayForEach(o, list) {
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

/* Prometheus text format. */
static void h_metrics(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    struct bh_err err;
    if (bh_metrics_render(req->ctx, &resp->text, &err) < 0) {
        bh_api_from_err(resp, &err);
        return;
    }
    resp->status = 200;
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

/* A short-lived token a browser passes to /ws as ?token= (it cannot set headers there). */
static void h_ws_token(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    bh_autofree char *token = NULL;
    long long expires = 0;
    struct bh_err err;
    const char *tenant = NULL;
    const char *asked = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "tenant");
    if (bh_auth_ws_tenant(req->who, asked, &tenant, &err) < 0 ||
        bh_ws_token_mint(req->ctx, tenant, &token, &expires, &err) < 0) {
        bh_api_from_err(resp, &err);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "token", token);
    cJSON_AddNumberToObject(o, "expiresAt", (double)expires);
    bh_api_json(resp, 200, o);
}

static void h_stats(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "instances", api_count_phases(req->ctx, "Instance", "Unknown"));
    cJSON_AddItemToObject(o, "claims",
                          api_count_phases(req->ctx, "BoilerhouseClaim", BH_CLAIM_PENDING));
    bh_api_json(resp, 200, o);
}

/* ---- workloads and pools: {name, spec} or whole resources ---- */

static const char *api_kind_of(const struct bh_api_req *req)
{
    if (strstr(req->url, "/api/v1/triggers") == req->url)
        return BH_TRIGGER_KIND;
    return strstr(req->url, "/api/v1/pools") == req->url ? "BoilerhousePool"
                                                         : "BoilerhouseWorkload";
}

static const char *api_noun(const char *kind)
{
    if (strcmp(kind, BH_TRIGGER_KIND) == 0)
        return "trigger";
    return strcmp(kind, "BoilerhousePool") == 0 ? "pool" : "workload";
}

static void h_resources_list(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    api_list_kind(req, resp, api_kind_of(req), NULL, api_workload_shape);
}

/* Accepts the original's {name, spec} or a whole resource; returns an owned full object. */
static cJSON *api_resource_object(cJSON *body, const char *kind, const char *url_name,
                                  struct bh_api_resp *resp)
{
    if (bh_json_get(body, "apiVersion") || bh_json_get(body, "kind")) {
        const char *k = bh_json_str(body, "kind");
        if (!k || strcmp(k, kind) != 0) {
            bh_api_error(resp, 400, "kind: must be %s", kind);
            return NULL;
        }
        return cJSON_Duplicate(body, 1);
    }
    for (cJSON *it = body->child; it; it = it->next) {
        if (strcmp(it->string, "name") != 0 && strcmp(it->string, "spec") != 0) {
            bh_api_error(resp, 400, "%.64s: unknown field (expected name and spec)", it->string);
            return NULL;
        }
    }
    const char *name = url_name ? url_name : bh_json_str(body, "name");
    if (!name) {
        bh_api_error(resp, 400, "name: required");
        return NULL;
    }
    cJSON *obj = bh_resource_new(kind, name);
    const cJSON *spec = bh_json_get(body, "spec");
    cJSON_AddItemToObject(obj, "spec", spec ? cJSON_Duplicate(spec, 1) : cJSON_CreateObject());
    return obj;
}

static void h_resource_create(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    const char *kind = api_kind_of(req);
    cJSON *body = NULL, *stored = NULL;
    if (bh_api_body(req, resp, &body) < 0)
        return;
    cJSON *obj = api_resource_object(body, kind, NULL, resp);
    cJSON_Delete(body);
    if (!obj)
        return;
    struct bh_err err;
    if (bh_resource_validate(obj, &err) < 0 ||
        bh_plugins_check_resource(req->ctx->plugins, obj, &err) < 0 ||
        bh_trigger_check(req->ctx, obj, &err) < 0) {
        bh_api_from_err(resp, &err);
    } else if (bh_store_create(req->ctx->store, obj, &stored, &err) < 0) {
        if (err.code == BH_ECONFLICT)
            bh_api_error(resp, 409, "%s %s already exists", api_noun(kind),
                         bh_json_str(obj, "metadata.name"));
        else
            bh_api_from_err(resp, &err);
    } else {
        bh_api_json(resp, 201, api_workload_shape(stored));
    }
    cJSON_Delete(stored);
    cJSON_Delete(obj);
}

static void h_resource_get(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    const char *kind = api_kind_of(req);
    cJSON *obj = NULL;
    struct bh_err err;
    if (bh_store_get(req->ctx->store, kind, req->params[0], &obj, &err) < 0) {
        bh_api_error(resp, err.code == BH_ENOTFOUND ? 404 : 500, "%s %.64s not found",
                     api_noun(kind), req->params[0]);
        return;
    }
    bh_api_json(resp, 200, api_workload_shape(obj));
    cJSON_Delete(obj);
}

static void h_resource_put(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    const char *kind = api_kind_of(req);
    cJSON *body = NULL, *cur = NULL, *stored = NULL;
    struct bh_err err;
    if (bh_store_get(req->ctx->store, kind, req->params[0], &cur, &err) < 0) {
        bh_api_error(resp, 404, "%s %.64s not found", api_noun(kind), req->params[0]);
        return;
    }
    cJSON_Delete(cur);
    if (bh_api_body(req, resp, &body) < 0)
        return;
    cJSON_DeleteItemFromObjectCaseSensitive(body, "name"); /* the URL names it */
    cJSON *obj = api_resource_object(body, kind, req->params[0], resp);
    cJSON_Delete(body);
    if (!obj)
        return;
    const char *name = bh_json_str(obj, "metadata.name");
    if (name && strcmp(name, req->params[0]) != 0)
        bh_api_error(resp, 400, "metadata.name: %s does not match the URL", name);
    else if (bh_resource_validate(obj, &err) < 0 ||
             bh_plugins_check_resource(req->ctx->plugins, obj, &err) < 0 ||
             bh_trigger_check(req->ctx, obj, &err) < 0 ||
             bh_store_update(req->ctx->store, obj, &stored, &err) < 0)
        bh_api_from_err(resp, &err);
    else
        bh_api_json(resp, 200, api_workload_shape(stored));
    cJSON_Delete(stored);
    cJSON_Delete(obj);
}

/* A workload's deletion is a cascade (workload.h): answered once it is gone (200), or, when
 * it outlasts the claim timeout, 202 with what it still waits for. */
static void h_resource_delete(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    const char *kind = api_kind_of(req);
    struct bh_err err;
    cJSON *left = NULL;
    if (bh_store_delete(req->ctx->store, kind, req->params[0], &err) < 0) {
        bh_api_error(resp, err.code == BH_ENOTFOUND ? 404 : 500, "%s %.64s: %s", api_noun(kind),
                     req->params[0], err.code == BH_ENOTFOUND ? "not found" : err.msg);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    if (strcmp(kind, "BoilerhouseWorkload") == 0 &&
        !bh_workload_wait_gone(req->ctx, req->params[0], req->ctx->cfg.claim_timeout_ms, &left)) {
        cJSON_AddStringToObject(o, "status", "terminating");
        cJSON_AddStringToObject(o, "detail", bh_json_str(left, "status.detail") ?: "");
        cJSON_Delete(left);
        bh_api_json(resp, 202, o);
        return;
    }
    cJSON_AddStringToObject(o, "status", "deleted");
    bh_api_json(resp, 200, o);
}

static cJSON *api_snapshot_shape(const cJSON *snap)
{
    cJSON *o = cJSON_Duplicate(bh_json_get(snap, "spec"), 1);
    return o ? o : cJSON_CreateObject();
}

static void h_snapshots(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    bh_autofree char *sel =
        req->n_params ? bh_xasprintf("boilerhouse.dev/workload=%s", req->params[0]) : NULL;
    api_list_kind(req, resp, "Snapshot", sel, api_snapshot_shape);
}

/* DELETE /api/v1/tenants/{id}/snapshots/{workload}: the tenant's data, everywhere. */
static void h_snapshot_delete(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    const char *tenant = req->params[0], *workload = req->params[1];
    struct bh_err err;
    if (!bh_name_tenant_valid(tenant)) {
        bh_api_error(resp, 400, "tenant id: \"%.64s\" is not valid", tenant);
        return;
    }
    if (!bh_name_label_valid(workload)) {
        bh_api_error(resp, 400, "workload: \"%.64s\" is not a valid name", workload);
        return;
    }
    if (bh_claim_delete_snapshot(req->ctx, tenant, workload, &err) < 0) {
        bh_api_from_err(resp, &err);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "deleted");
    cJSON_AddStringToObject(o, "tenantId", tenant);
    cJSON_AddStringToObject(o, "workload", workload);
    bh_api_json(resp, 200, o);
}

/* ---- tenants and claims ---- */

/* Reads {workload | workloadRef, resume?}; answers 400 itself. Owned name or NULL. */
static char *api_claim_workload(const struct bh_api_req *req, struct bh_api_resp *resp, int *resume)
{
    cJSON *body = NULL;
    if (bh_api_body(req, resp, &body) < 0)
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
    else if (!bh_name_label_valid(w))
        bh_api_error(resp, 400, "workload: \"%.64s\" is not a valid name", w);
    else
        name = bh_xstrdup(w);
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(body, "resume");
    if (resume && r)
        *resume = cJSON_IsTrue(r) ? 1 : cJSON_IsFalse(r) ? -1 : 0;
    cJSON_Delete(body);
    return name;
}

/* The workload a tenant route is about: validates the tenant id, then reads {workload}.
 * Answers 4xx itself and returns NULL on bad input; else the workload's name (owned). */
static char *api_tenant_workload(const struct bh_api_req *req, struct bh_api_resp *resp,
                                 int *resume)
{
    const char *tenant = req->params[0];
    if (!bh_name_tenant_valid(tenant)) {
        api_bad_tenant(resp, tenant);
        return NULL;
    }
    return api_claim_workload(req, resp, resume);
}

/* The claim a tenant route is about (api_tenant_workload): the claim name (owned) and
 * *workload (owned), or NULL. */
static char *api_tenant_claim(const struct bh_api_req *req, struct bh_api_resp *resp, int *resume,
                              char **workload)
{
    *workload = api_tenant_workload(req, resp, resume);
    return *workload ? bh_claim_name(req->ctx, req->params[0], *workload) : NULL;
}

static void h_claim(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    long long t0 = bh_clock_ms();
    struct bh_claim_req creq = {.tenant = req->params[0]};
    /* No claim name here: bh_claim_open finds the claim (from memory when it is Active). */
    bh_autofree char *workload = api_tenant_workload(req, resp, &creq.resume);
    if (!workload)
        return;
    creq.workload = workload;
    struct bh_err err;
    cJSON *wl = NULL;
    if (bh_store_get(req->ctx->store, "BoilerhouseWorkload", workload, &wl, &err) < 0) {
        bh_api_error(resp, 404, "workload %s not found", workload);
        return;
    }
    creq.wl = wl;
    struct bh_claim_answer ans;
    if (bh_claim_open(req->ctx, &creq, &ans, &err) < 0) {
        bh_api_from_err(resp, &err);
        cJSON_Delete(wl);
        return;
    }
    cJSON *out = api_claim_shape(ans.claim);
    const char *source = bh_json_str(ans.claim, "status.source");
    int pooled = !ans.existing && source && strcmp(source, "pool") == 0;
    if (ans.existing || pooled) {
        /* The claim touched the instance just now (a pool take stamps its activity in the take
         * itself): its activity is now, its idle time whole (no instance read on the hottest
         * paths). */
        if (ans.existing)
            bh_json_set_str(out, "source", "existing");
        char now[32];
        bh_clock_rfc3339_ms(bh_clock_wall_ms(), now);
        bh_json_set_str(out, "lastActivity", now);
        bh_admit_apply(ans.claim, wl); /* a policy's idle timeout */
        long long timeout = bh_json_int(wl, "spec.idle.timeoutSeconds", 0);
        if (timeout > 0)
            bh_json_set_num(out, "idleTimeLeftSeconds", (double)timeout);
    } else {
        /* After a boot the workload is read again: it may have changed meanwhile. */
        api_add_idle(req->ctx, out, bh_json_str(out, "instanceId"), NULL);
    }
    const char *websocket = bh_json_str(wl, "spec.network.websocket");
    if (websocket && websocket[0])
        bh_json_set_str(out, "websocket", websocket);
    cJSON_Delete(wl);
    cJSON_AddNumberToObject(out, "latencyMs", (double)(bh_clock_ms() - t0));
    if (ans.timed_out) {
        bh_json_set_str(out, "error", "the instance did not become ready in time");
        bh_api_json(resp, 504, out);
    } else if (strcmp(bh_json_str(out, "phase"), BH_CLAIM_ACTIVE) != 0) {
        /* A claim policy's no (or its failure, fail closed) is a refusal, not a fault; so is
         * admission control's (busy: 503, the tenant's limit: 429, both with Retry-After). */
        const char *reason = bh_json_str(ans.claim, "status.reason");
        bh_json_set_str(out, "error", bh_json_str(out, "detail"));
        if (reason)
            bh_json_set_str(out, "reason", reason);
        int status = !reason                                             ? 500
                     : strcmp(reason, BH_CLAIM_REASON_OVERLOADED) == 0   ? 503
                     : strcmp(reason, BH_CLAIM_REASON_TENANT_LIMIT) == 0 ? 429
                                                                         : 403;
        if (status == 503 || status == 429) {
            resp->retry_after = (int)bh_json_int(ans.claim, "status.retryAfterSeconds", 1);
            bh_json_set_num(out, "retryAfterSeconds", resp->retry_after);
        }
        bh_api_json(resp, status, out);
    } else {
        bh_api_json(resp, ans.existing ? 200 : 201, out);
        /* Served from the instance the tenant holds: nothing changed but the lazy activity
         * touch, so its record need not be on the disk before the answer. Served from a pool
         * in ~2 ms, of which a commit would be ~0.16: journaled, as crash-safe. */
        resp->audit = ans.existing ? BH_API_AUDIT_QUEUE
                      : pooled     ? BH_API_AUDIT_JOURNAL
                                   : BH_API_AUDIT_COMMIT;
    }
    bh_claim_answer_free(&ans);
}

static void api_release(const struct bh_api_req *req, struct bh_api_resp *resp,
                        enum bh_claim_release_mode mode)
{
    const char *tenant = req->params[0];
    bh_autofree char *workload = NULL;
    bh_autofree char *name = api_tenant_claim(req, resp, NULL, &workload);
    struct bh_claim_answer ans;
    struct bh_err err;
    if (!name)
        return;
    if (bh_claim_release(req->ctx, tenant, workload, mode, &ans, &err) < 0) {
        bh_api_from_err(resp, &err);
        return;
    }
    if (ans.claim) {
        cJSON *out = api_claim_shape(ans.claim);
        bh_json_set_str(out, "error",
                        ans.timed_out ? "release did not finish in time"
                                      : bh_json_str(ans.claim, "status.detail"));
        bh_api_json(resp, ans.timed_out ? 504 : 500, out);
        bh_claim_answer_free(&ans);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "released");
    cJSON_AddStringToObject(o, "tenantId", tenant);
    cJSON_AddStringToObject(o, "workload", workload);
    if (mode == BH_CLAIM_RELEASE_FORCE) {
        cJSON_AddBoolToObject(o, "saved", 0);
        cJSON_AddStringToObject(o, "detail", "forced: the instance was destroyed without saving");
    }
    bh_api_json(resp, 200, o);
}

static void h_release(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    api_release(req, resp, BH_CLAIM_RELEASE_NORMAL);
}

static void h_release_force(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    api_release(req, resp, BH_CLAIM_RELEASE_FORCE);
}

static void h_release_retry(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    api_release(req, resp, BH_CLAIM_RELEASE_RETRY);
}

static void h_keepalive(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    const char *tenant = req->params[0];
    bh_autofree char *workload = NULL;
    bh_autofree char *name = api_tenant_claim(req, resp, NULL, &workload);
    if (!name)
        return;
    cJSON *c = NULL;
    struct bh_err err;
    const char *id = NULL;
    if (bh_store_get(req->ctx->store, "BoilerhouseClaim", name, &c, &err) == 0 &&
        bh_name_is_pair(c, tenant, workload))
        id = bh_json_str(c, "status.instanceId");
    if (!id || bh_idle_touch(req->ctx, id, &err) < 0) {
        bh_api_error(resp, 404, "tenant %s has no active %s instance", tenant, workload);
    } else {
        cJSON *out = api_claim_shape(c);
        api_add_idle(req->ctx, out, id, NULL);
        bh_api_json(resp, 200, out);
    }
    cJSON_Delete(c);
}

/* Groups claims by tenant: [{tenantId, claims: [claimResponse]}]. */
static cJSON *api_group_tenants(const cJSON *claims)
{
    cJSON *out = cJSON_CreateArray();
    const cJSON *c;
    cJSON_ArrayForEach(c, claims) {
        const char *tenant = bh_json_str(c, "spec.tenantId");
        cJSON *group = NULL, *g;
        cJSON_ArrayForEach(g, out)
            if (strcmp(bh_json_str(g, "tenantId"), tenant) == 0)
                group = g;
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

/* Adds idle fields to every claim of every tenant group. */
static void api_groups_add_idle(struct bh_ctx *ctx, cJSON *groups)
{
    cJSON *g, *c;
    cJSON_ArrayForEach(g, groups) {
        cJSON_ArrayForEach(c, cJSON_GetObjectItem(g, "claims"))
            api_add_idle(ctx, c, bh_json_str(c, "instanceId"), NULL);
    }
}

/* The claims matching selector (NULL: all), grouped by tenant with their idle fields; NULL
 * once it answered the error itself. */
static cJSON *api_tenant_groups(const struct bh_api_req *req, struct bh_api_resp *resp,
                                const char *selector)
{
    cJSON *claims = NULL;
    struct bh_err err;
    if (bh_store_list(req->ctx->store, "BoilerhouseClaim", selector, &claims, NULL, &err) < 0) {
        bh_api_from_err(resp, &err);
        return NULL;
    }
    cJSON *groups = api_group_tenants(claims);
    cJSON_Delete(claims);
    api_groups_add_idle(req->ctx, groups);
    return groups;
}

static void h_tenants(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    cJSON *groups = api_tenant_groups(req, resp, NULL);
    if (groups)
        bh_api_json(resp, 200, groups);
}

static void h_tenant(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    const char *tenant = req->params[0];
    if (!bh_name_tenant_valid(tenant)) {
        api_bad_tenant(resp, tenant);
        return;
    }
    bh_autofree char *sel = bh_xasprintf("boilerhouse.dev/tenant=%s", tenant);
    cJSON *groups = api_tenant_groups(req, resp, sel);
    if (!groups)
        return;
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
    if (bh_store_get(req->ctx->store, "Instance", req->params[0], &inst, &err) < 0) {
        bh_api_error(resp, 404, "instance %.64s not found", req->params[0]);
        return NULL;
    }
    return inst;
}

static void h_instance_get(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    cJSON *inst = api_instance_get(req, resp);
    if (inst) {
        cJSON *out = api_instance_shape(inst);
        api_add_idle_of(req->ctx, out, inst, NULL);
        bh_api_json(resp, 200, out);
    }
    cJSON_Delete(inst);
}

/* GET /instances/{id}/stats: what the instance's cgroup uses now (the dashboard derives CPU
 * use from two readings); -1 where the runtime cannot tell. */
static void h_instance_stats(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    cJSON *inst = api_instance_get(req, resp);
    if (!inst)
        return;
    struct bh_runtime_stats st = {-1, -1, -1, -1, -1};
    bh_autofree char *cid = bh_runtime_container_id(req->params[0]);
    struct bh_err err;
    const char *phase = bh_json_str(inst, "status.phase");
    int pid = (int)bh_json_int(inst, "status.pid", 0);
    if (pid > 0 && bh_runtime_stats(req->ctx->runtime, cid, pid, &st, &err) < 0)
        st.cpu_ns = st.net_bytes = st.mem_bytes = st.mem_limit = -1;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", req->params[0]);
    cJSON_AddStringToObject(o, "phase", phase ? phase : "Unknown");
    cJSON_AddNumberToObject(o, "cpuNs", (double)st.cpu_ns);
    cJSON_AddNumberToObject(o, "memoryBytes", (double)st.mem_bytes);
    cJSON_AddNumberToObject(o, "memoryLimitBytes", (double)st.mem_limit);
    cJSON_AddNumberToObject(o, "netBytes", (double)st.net_bytes);
    char ts[32];
    bh_clock_rfc3339(ts);
    cJSON_AddStringToObject(o, "sampledAt", ts);
    cJSON_Delete(inst);
    bh_api_json(resp, 200, o);
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

/* Answers the last ?tail= lines (default API_LOG_TAIL_DEFAULT) of a log file; a log not
 * written yet is empty. */
static void api_log_tail(const struct bh_api_req *req, struct bh_api_resp *resp, const char *path)
{
    long long tail;
    if (bh_api_query_int(req, resp, "tail", API_LOG_TAIL_DEFAULT, 1, API_LOG_TAIL_MAX, &tail) < 0)
        return;
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

static void h_instance_logs(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    cJSON *inst = api_instance_get(req, resp);
    if (!inst)
        return;
    cJSON_Delete(inst);
    bh_autofree char *path = bh_instance_log_path(req->ctx, req->params[0]);
    api_log_tail(req, resp, path);
}

/* The log of the workload's last Dockerfile build. */
static void h_workload_logs(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    cJSON *wl = NULL;
    struct bh_err err;
    if (!bh_name_label_valid(req->params[0]) ||
        bh_store_get(req->ctx->store, "BoilerhouseWorkload", req->params[0], &wl, &err) < 0) {
        bh_api_error(resp, 404, "workload %.64s not found", req->params[0]);
        return;
    }
    cJSON_Delete(wl);
    bh_autofree char *path = bh_build_log_path(req->ctx, req->params[0]);
    api_log_tail(req, resp, path);
}

static void h_instance_exec(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    cJSON *inst = api_instance_get(req, resp), *body = NULL, *out = NULL;
    if (!inst)
        return;
    cJSON_Delete(inst);
    if (bh_api_body(req, resp, &body) < 0)
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
    else if (bh_instance_exec(req->ctx, req->params[0], argv, API_EXEC_TIMEOUT_MS, &out, &err) < 0)
        bh_api_from_err(resp, &err);
    else {
        bh_idle_touch(req->ctx, req->params[0], &err); /* an exec is activity */
        bh_api_json(resp, 200, out);
    }
    free(argv);
    cJSON_Delete(body);
}

static void h_instance_destroy(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    cJSON *inst = api_instance_get(req, resp);
    if (!inst)
        return;
    const char *owner = bh_json_str(inst, "spec.claim");
    bh_autofree char *claim = owner ? bh_xstrdup(owner) : NULL;
    const char *phase = bh_json_str(inst, "status.phase");
    int starting = phase && strcmp(phase, "Starting") == 0;
    cJSON_Delete(inst);
    if (starting) { /* its boot owns it until it runs; tearing down now would race the boot */
        bh_api_error(resp, 409, "instance %s is still starting", req->params[0]);
        return;
    }
    struct bh_err err;
    if (bh_instance_destroy(req->ctx, req->params[0], &err) < 0) {
        bh_api_from_err(resp, &err);
        return;
    }
    if (claim && claim[0]) { /* its claim notices the loss now rather than at its next check */
        bh_autofree char *key = bh_xasprintf("BoilerhouseClaim/%s", claim);
        bh_queue_add(req->ctx->queue, key);
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "destroyed");
    cJSON_AddStringToObject(o, "instance", req->params[0]);
    bh_api_json(resp, 200, o);
}

/* ---- secrets (values go in, never come out) ---- */

/* ---- triggers: test, events, and the shared listener's routes ---- */

static void h_trigger_test(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    cJSON *body = NULL, *out = NULL;
    if (req->body_len > 0 && bh_api_body(req, resp, &body) < 0)
        return;
    struct bh_err err;
    if (bh_trigger_test(req->ctx, req->params[0], body, &out, &err) < 0)
        bh_api_from_err(resp, &err);
    else
        bh_api_json(resp, 200, out);
    cJSON_Delete(body);
}

static void h_trigger_events(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    long long limit;
    if (bh_api_query_int(req, resp, "limit", 50, 1, 1000, &limit) < 0)
        return;
    cJSON *list = NULL;
    struct bh_err err;
    if (bh_trigger_events(req->ctx, req->params[0], (int)limit, &list, &err) < 0) {
        bh_api_from_err(resp, &err);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "events", list);
    bh_api_json(resp, 200, o);
}

static const char *api_header(void *conn, const char *name)
{
    return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
}

/* Webhooks authenticate with their own signatures, not the API key. */
static void h_hook(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    const struct bh_trigger_http_req hr = {req->method,   req->url,   req->body ? req->body : "",
                                           req->body_len, api_header, req->conn};
    struct bh_http_response hresp = {0};
    bh_trigger_http(req->ctx, &hr, &hresp);
    resp->status = hresp.status ? hresp.status : 500;
    resp->text = hresp.body ? hresp.body : bh_xstrdup("");
    resp->content_type = hresp.content_type && strstr(hresp.content_type, "json")
                             ? "application/json"
                             : "text/plain; charset=utf-8";
    hresp.body = NULL;
    bh_plugin_response_clear(&hresp);
}

static void h_secrets_list(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    cJSON *out = NULL;
    struct bh_err err;
    if (bh_secrets_list(req->ctx->secrets, &out, &err) < 0)
        bh_api_from_err(resp, &err);
    else
        bh_api_json(resp, 200, out);
}

/* {name, key, value, tenantId?} */
static void h_secret_set(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    cJSON *body = NULL;
    if (bh_api_body(req, resp, &body) < 0)
        return;
    const char *name = bh_json_str(body, "name"), *key = bh_json_str(body, "key");
    const char *value = bh_json_str(body, "value"), *tenant = bh_json_str(body, "tenantId");
    struct bh_err err;
    if (!name || !key || !value)
        bh_api_error(resp, 400, "%s: required (a string)", !name ? "name" : !key ? "key" : "value");
    else if (tenant && !bh_name_tenant_valid(tenant))
        api_bad_tenant(resp, tenant);
    else if (bh_secrets_set(req->ctx->secrets, tenant, name, key, value, &err) < 0)
        bh_api_from_err(resp, &err);
    else {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", name);
        cJSON_AddStringToObject(o, "key", key);
        if (tenant)
            cJSON_AddStringToObject(o, "tenantId", tenant);
        bh_api_json(resp, 201, o);
    }
    cJSON *v = cJSON_GetObjectItemCaseSensitive(body, "value");
    if (cJSON_IsString(v))
        bh_crypto_wipe(v->valuestring, strlen(v->valuestring));
    cJSON_Delete(body);
}

/* DELETE /secrets/{name}?key=K&tenant=T: one key, or the whole secret. */
static void h_secret_delete(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    const char *key = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "key");
    const char *tenant = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "tenant");
    struct bh_err err;
    if (tenant && !bh_name_tenant_valid(tenant)) {
        api_bad_tenant(resp, tenant);
        return;
    }
    if (bh_secrets_delete(req->ctx->secrets, tenant, req->params[0], key, &err) < 0) {
        bh_api_from_err(resp, &err);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "deleted");
    bh_api_json(resp, 200, o);
}

const struct bh_api_route bh_api_routes[] = {
    {"GET", "/api/v1/health", h_health, BH_AUTH_PUBLIC},
    {"GET", "/metrics", h_metrics, BH_AUTH_READ},
    {"POST", "/api/v1/ws/token", h_ws_token, BH_AUTH_ANY},
    {"GET", "/api/v1/audit", bh_api_audit_list, BH_AUTH_READ},
    {"GET", "/api/v1/stats", h_stats, BH_AUTH_READ},
    {"GET", "/api/v1/workloads", h_resources_list, BH_AUTH_READ},
    {"POST", "/api/v1/workloads", h_resource_create, BH_AUTH_ADMIN},
    {"GET", "/api/v1/workloads/*", h_resource_get, BH_AUTH_READ},
    {"PUT", "/api/v1/workloads/*", h_resource_put, BH_AUTH_ADMIN},
    {"DELETE", "/api/v1/workloads/*", h_resource_delete, BH_AUTH_ADMIN},
    {"GET", "/api/v1/pools", h_resources_list, BH_AUTH_READ},
    {"POST", "/api/v1/pools", h_resource_create, BH_AUTH_ADMIN},
    {"GET", "/api/v1/pools/*", h_resource_get, BH_AUTH_READ},
    {"PUT", "/api/v1/pools/*", h_resource_put, BH_AUTH_ADMIN},
    {"DELETE", "/api/v1/pools/*", h_resource_delete, BH_AUTH_ADMIN},
    {"GET", "/api/v1/workloads/*/snapshots", h_snapshots, BH_AUTH_READ},
    {"GET", "/api/v1/workloads/*/logs", h_workload_logs, BH_AUTH_READ},
    {"GET", "/api/v1/snapshots", h_snapshots, BH_AUTH_READ},
    {"DELETE", "/api/v1/tenants/**/snapshots/*", h_snapshot_delete, BH_AUTH_ADMIN},
    {"POST", "/api/v1/tenants/**/claim", h_claim, BH_AUTH_CLAIM},
    {"POST", "/api/v1/tenants/**/release", h_release, BH_AUTH_CLAIM},
    {"POST", "/api/v1/tenants/**/release/force", h_release_force, BH_AUTH_CLAIM},
    {"POST", "/api/v1/tenants/**/release/retry", h_release_retry, BH_AUTH_CLAIM},
    {"POST", "/api/v1/tenants/**/keepalive", h_keepalive, BH_AUTH_CLAIM},
    {"GET", "/api/v1/tenants", h_tenants, BH_AUTH_READ},
    {"GET", "/api/v1/tenants/**", h_tenant, BH_AUTH_TENANT_READ},
    {"GET", "/api/v1/instances", h_instances_list, BH_AUTH_READ},
    {"GET", "/api/v1/instances/*", h_instance_get, BH_AUTH_INSTANCE_READ},
    {"GET", "/api/v1/instances/*/logs", h_instance_logs, BH_AUTH_INSTANCE_READ},
    {"GET", "/api/v1/instances/*/stats", h_instance_stats, BH_AUTH_INSTANCE_READ},
    {"GET", "/api/v1/instances/*/samples", bh_api_samples_instance, BH_AUTH_INSTANCE_READ},
    {"GET", "/api/v1/samples", bh_api_samples_overview, BH_AUTH_READ},
    {"POST", "/api/v1/instances/*/exec", h_instance_exec, BH_AUTH_ADMIN},
    {"POST", "/api/v1/instances/*/destroy", h_instance_destroy, BH_AUTH_ADMIN},
    {"GET", "/api/v1/triggers", h_resources_list, BH_AUTH_READ},
    {"POST", "/api/v1/triggers", h_resource_create, BH_AUTH_ADMIN},
    {"GET", "/api/v1/triggers/*", h_resource_get, BH_AUTH_READ},
    {"PUT", "/api/v1/triggers/*", h_resource_put, BH_AUTH_ADMIN},
    {"DELETE", "/api/v1/triggers/*", h_resource_delete, BH_AUTH_ADMIN},
    {"POST", "/api/v1/triggers/*/test", h_trigger_test, BH_AUTH_ADMIN},
    {"GET", "/api/v1/triggers/*/events", h_trigger_events, BH_AUTH_READ},
    {"POST", "/hooks/**", h_hook, BH_AUTH_PUBLIC},
    {"GET", "/api/v1/secrets", h_secrets_list, BH_AUTH_ADMIN},
    {"POST", "/api/v1/secrets", h_secret_set, BH_AUTH_ADMIN},
    {"DELETE", "/api/v1/secrets/*", h_secret_delete, BH_AUTH_ADMIN},
    {"GET", "/api/v1/whoami", bh_api_whoami, BH_AUTH_ANY},
    {"GET", "/api/v1/tokens", bh_api_tokens_list, BH_AUTH_ADMIN},
    {"POST", "/api/v1/tokens", bh_api_tokens_create, BH_AUTH_ADMIN},
    {"DELETE", "/api/v1/tokens/*", bh_api_tokens_revoke, BH_AUTH_ADMIN},
    {"GET", "/api/v1/policies", bh_api_policies_list, BH_AUTH_READ},
    {"POST", "/api/v1/policies/test", bh_api_policies_test, BH_AUTH_ADMIN},
    {NULL, NULL, NULL, 0},
};
