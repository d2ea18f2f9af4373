/* Which REST calls the audit log records, and what of each: a table from route to action,
 * with where the tenant and the target come from. Only names are taken from bodies (a
 * secret's value never is). */
#include <limits.h>
#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "audit.h"
#include "clock.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "num.h"
#include "resource.h"

enum audit_from { FROM_NONE, FROM_PARAM, FROM_PARAM2, FROM_BODY_NAME, FROM_BODY_WORKLOAD };

static const struct {
    const char *method, *pattern, *action;
    int tenant_param; /* take the tenant from the first path parameter */
    enum audit_from target;
} audit_table[] = {
    {"POST", "/api/v1/tenants/**/claim", "claim", 1, FROM_BODY_WORKLOAD},
    {"POST", "/api/v1/tenants/**/release", "release", 1, FROM_BODY_WORKLOAD},
    {"POST", "/api/v1/tenants/**/release/force", "release.force", 1, FROM_BODY_WORKLOAD},
    {"POST", "/api/v1/tenants/**/release/retry", "release.retry", 1, FROM_BODY_WORKLOAD},
    {"DELETE", "/api/v1/tenants/**/snapshots/*", "snapshot.delete", 1, FROM_PARAM2},
    {"POST", "/api/v1/workloads", "workload.create", 0, FROM_BODY_NAME},
    {"PUT", "/api/v1/workloads/*", "workload.update", 0, FROM_PARAM},
    {"DELETE", "/api/v1/workloads/*", "workload.delete", 0, FROM_PARAM},
    {"POST", "/api/v1/pools", "pool.create", 0, FROM_BODY_NAME},
    {"PUT", "/api/v1/pools/*", "pool.update", 0, FROM_PARAM},
    {"DELETE", "/api/v1/pools/*", "pool.delete", 0, FROM_PARAM},
    {"POST", "/api/v1/triggers", "trigger.create", 0, FROM_BODY_NAME},
    {"PUT", "/api/v1/triggers/*", "trigger.update", 0, FROM_PARAM},
    {"DELETE", "/api/v1/triggers/*", "trigger.delete", 0, FROM_PARAM},
    {"POST", "/api/v1/triggers/*/test", "trigger.test", 0, FROM_PARAM},
    {"POST", "/api/v1/instances/*/exec", "instance.exec", 0, FROM_PARAM},
    {"POST", "/api/v1/instances/*/destroy", "instance.destroy", 0, FROM_PARAM},
    {"POST", "/api/v1/secrets", "secret.set", 0, FROM_BODY_NAME},
    {"DELETE", "/api/v1/secrets/*", "secret.delete", 0, FROM_PARAM},
    {"POST", "/api/v1/ws/token", "token.mint", 0, FROM_NONE}, /* a browser's /ws token */
    {"POST", "/api/v1/tokens", "token.mint", 0, FROM_BODY_NAME},
    {"DELETE", "/api/v1/tokens/*", "token.revoke", 0, FROM_PARAM},
};

/* A name from the body: "name", else metadata.name (manifests); or the claim's "workload",
 * else "workloadRef" (h_claim takes either). Owned. */
static char *audit_body_field(const struct bh_api_req *req, enum audit_from from)
{
    cJSON *body = NULL;
    struct bh_err err;
    if (!req->body || bh_resource_parse(req->body, req->body_len, &body, &err) < 0)
        return NULL;
    const char *v =
        from == FROM_BODY_WORKLOAD ? bh_json_str(body, "workload") : bh_json_str(body, "name");
    if (!v)
        v = bh_json_str(body, from == FROM_BODY_NAME ? "metadata.name" : "workloadRef");
    char *out = v ? bh_xstrdup(v) : NULL;
    cJSON_Delete(body);
    return out;
}

char *bh_api_body_workload(const struct bh_api_req *req)
{
    return audit_body_field(req, FROM_BODY_WORKLOAD);
}

void bh_api_audit(const struct bh_api_req *req, const char *actor, const char *pattern,
                  const struct bh_api_resp *resp)
{
    if (!req->ctx->audit)
        return;
    for (size_t i = 0; i < BH_ARRAY_LEN(audit_table); i++) {
        if (strcmp(audit_table[i].pattern, pattern) != 0 ||
            strcmp(audit_table[i].method, req->method) != 0)
            continue;
        enum audit_from from = audit_table[i].target;
        bh_autofree char *body_target = from >= FROM_BODY_NAME ? audit_body_field(req, from) : NULL;
        const char *param = req->n_params > 0 ? req->params[0] : NULL;
        struct bh_audit_rec rec = {
            .actor = actor,
            .action = audit_table[i].action,
            .tenant = audit_table[i].tenant_param ? param : NULL,
            .target = from == FROM_PARAM    ? param
                      : from == FROM_PARAM2 ? (req->n_params > 1 ? req->params[1] : NULL)
                                            : body_target,
            .outcome = resp->status < 400 ? "ok" : "error",
            .status = resp->status,
            .error = resp->status >= 400 ? bh_json_str(resp->json, "error") : NULL,
        };
        struct bh_err err;
        int rc = 0;
        if (resp->audit == BH_API_AUDIT_QUEUE)
            bh_audit_append_async(req->ctx->audit, &rec);
        else if (resp->audit == BH_API_AUDIT_JOURNAL)
            rc = bh_audit_append_logged(req->ctx->audit, &rec, &err);
        else
            rc = bh_audit_append(req->ctx->audit, &rec, &err);
        if (rc < 0)
            bh_error("audit", "%s by %s not recorded: %s", rec.action, actor, err.msg);
        return;
    }
}

/* since= as RFC 3339 (UTC, "Z") or unix seconds, into unix milliseconds; -1 if malformed. */
static long long audit_parse_since(const char *s)
{
    long long secs;
    if (!s || !*s)
        return 0;
    if (strchr(s, 'T'))
        return bh_clock_parse_rfc3339(s);
    return bh_num_parse(s, 0, LLONG_MAX / 1000, &secs, NULL) < 0 ? -1 : secs * 1000;
}

void bh_api_audit_list(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    struct MHD_Connection *c = req->conn;
    const char *since = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "since");
    struct bh_audit_query q = {
        .tenant = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "tenant"),
        .actor = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "actor"),
        .since_ms = audit_parse_since(since),
    };
    long long limit;
    if (bh_api_query_int(req, resp, "limit", 100, 1, 10000, &limit) < 0)
        return;
    q.limit = (int)limit;
    cJSON *list = NULL;
    struct bh_err err;
    if (!req->ctx->audit)
        bh_api_error(resp, 503, "the audit log is not open");
    else if (q.since_ms < 0)
        bh_api_error(resp, 400, "since: RFC 3339 time (UTC, ending in Z) or unix seconds");
    else if (bh_audit_query(req->ctx->audit, &q, &list, &err) < 0)
        bh_api_from_err(resp, &err);
    else
        bh_api_json(resp, 200, list);
}
