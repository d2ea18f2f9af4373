/* The REST API: the listener (api.c) and the interface between its HTTP plumbing and the
 * route handlers (api_routes.c). */
#ifndef BH_API_H
#define BH_API_H

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stddef.h>

#include "auth.h"
#include "ctx.h"
#include "err.h"

struct MHD_Connection;

struct bh_api_req {
    struct bh_ctx *ctx;
    struct MHD_Connection *conn;
    const char *method;
    const char *url;
    const char *body; /* NUL-terminated, may be NULL */
    size_t body_len;
    const char *const *params; /* captured "*" / "**" path segments */
    int n_params;
    const struct bh_principal *who; /* the authenticated caller (NULL on public routes) */
};

/* How a call's audit record is appended before its answer is sent (bh_api_audit). */
enum bh_api_audit_mode {
    BH_API_AUDIT_COMMIT,  /* committed (bh_audit_append): every state change by default */
    BH_API_AUDIT_QUEUE,   /* queued (bh_audit_append_async): a call that changed no state, such
                           * as a claim answered from the instance the tenant holds */
    BH_API_AUDIT_JOURNAL, /* journaled (bh_audit_append_logged): a state change answered in a
                           * few milliseconds (a pool claim), as crash-safe as a commit */
};

struct bh_api_resp {
    int status;
    cJSON *json;                  /* owned; sent as application/json */
    char *text;                   /* owned; sent as content_type instead of json when set */
    const char *content_type;     /* static */
    int retry_after;              /* seconds; > 0: sent as Retry-After (429, 503) */
    enum bh_api_audit_mode audit; /* how its record is appended; 0: committed first */
};

struct bh_api_route {
    const char *method;
    const char *pattern;
    void (*handler)(const struct bh_api_req *req, struct bh_api_resp *resp);
    enum bh_auth_need need; /* who may call it (auth.h); the tenant is the first parameter */
};

/* The route table, terminated by a {NULL} entry; order matters only for equal patterns. */
extern const struct bh_api_route bh_api_routes[];

/* Responses: body ownership passes to resp. */
void bh_api_json(struct bh_api_resp *resp, int status, cJSON *body);
void bh_api_error(struct bh_api_resp *resp, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void bh_api_from_err(struct bh_api_resp *resp, const struct bh_err *err);
/* The integer query parameter name (def when absent) in [min, max] into *out; on a bad value
 * answers 400 naming the parameter and returns -1. */
int bh_api_query_int(const struct bh_api_req *req, struct bh_api_resp *resp, const char *name,
                     long long def, long long min, long long max, long long *out);
/* The request body as a JSON/YAML object (*out owned); on failure resp holds the 400. */
int bh_api_body(const struct bh_api_req *req, struct bh_api_resp *resp, cJSON **out);

/* Records a state-changing call (audit_api.c) after its handler answered, committed before
 * the answer is sent, as resp->audit says; other calls are not recorded. pattern is the
 * matched route's. */
void bh_api_audit(const struct bh_api_req *req, const char *actor, const char *pattern,
                  const struct bh_api_resp *resp);
/* The workload a claim-family body names ("workload", else "workloadRef"); owned, NULL if
 * none or the body is not JSON/YAML. */
char *bh_api_body_workload(const struct bh_api_req *req);
/* Tokens (api_tokens.c): GET/POST /api/v1/tokens, DELETE /api/v1/tokens/{id}, and
 * GET /api/v1/whoami. */
void bh_api_tokens_list(const struct bh_api_req *req, struct bh_api_resp *resp);
void bh_api_tokens_create(const struct bh_api_req *req, struct bh_api_resp *resp);
void bh_api_tokens_revoke(const struct bh_api_req *req, struct bh_api_resp *resp);
void bh_api_whoami(const struct bh_api_req *req, struct bh_api_resp *resp);
/* GET /api/v1/audit?tenant=&actor=&since=&limit= */
void bh_api_audit_list(const struct bh_api_req *req, struct bh_api_resp *resp);
/* Lua policies (api_policies.c): GET /api/v1/policies, POST /api/v1/policies/test. */
/* api_samples.c: chart history (samples.h). */
void bh_api_samples_instance(const struct bh_api_req *req, struct bh_api_resp *resp);
void bh_api_samples_overview(const struct bh_api_req *req, struct bh_api_resp *resp);

void bh_api_policies_list(const struct bh_api_req *req, struct bh_api_resp *resp);
void bh_api_policies_test(const struct bh_api_req *req, struct bh_api_resp *resp);

struct bh_api;
/* Starts listening on ctx->cfg's host and port. */
int bh_api_start(struct bh_ctx *ctx, struct bh_api **out, struct bh_err *err);
void bh_api_stop(struct bh_api *api);

#endif
