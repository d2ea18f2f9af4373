/* Who is calling and what they may do: one place for both listeners (REST with /ws, and the
 * Kubernetes-compatible API). A credential (the Authorization header) becomes a principal
 * {actor, scopes}; a principal and what a route needs become allow, or 403 naming the scope.
 *
 * Credentials: the admin key (BOILERHOUSE_API_KEY) is the principal "admin" with scope admin;
 * a token from the store (token.h) is "token:<id>" with its scopes. With no admin key set
 * (loopback only) a caller without a valid token is "anonymous" with scope admin, except on
 * the instance socket, where a token is always required. */
#ifndef BH_AUTH_H
#define BH_AUTH_H

#include <cjson/cJSON.h>

#include "ctx.h"
#include "err.h"
#include "token.h"

/* What a route needs. */
enum bh_auth_need {
    BH_AUTH_PUBLIC = 0,    /* nothing (health, webhooks: those check their own secret) */
    BH_AUTH_ANY,           /* any principal (whoami; /ws, filtered to a tenant scope's tenant) */
    BH_AUTH_READ,          /* admin or viewer */
    BH_AUTH_ADMIN,         /* admin: every change but claims, secrets, tokens */
    BH_AUTH_CLAIM,         /* admin, or tenant:<the tenant acted on> (claim, release, keepalive) */
    BH_AUTH_TENANT_READ,   /* admin, viewer, or tenant:<the tenant read> */
    BH_AUTH_INSTANCE_READ, /* admin, viewer, or tenant:<the instance's tenant> (and workload) */
};

enum { BH_AUTH_SCOPE_ADMIN = 1, BH_AUTH_SCOPE_VIEWER = 2 };

struct bh_principal {
    char actor[32];  /* "admin", "anonymous" or "token:<id>": the audit log's actor */
    unsigned scopes; /* BH_AUTH_SCOPE_* */
    char tenants[BH_TOKEN_MAX_SCOPES][64]; /* tenant:<id> scopes */
    int n_tenants;
    char workload[64]; /* a per-claim token covers only this workload; "" any */
};

/* Where the credential came from. */
enum bh_auth_via { BH_AUTH_VIA_LISTENER, BH_AUTH_VIA_INSTANCE };

/* The principal of an Authorization header value (NULL: none sent). BH_EAUTH when there is no
 * valid credential (and one is needed), BH_EIO if the token table cannot be read. */
BH_MUST_CHECK int bh_auth_principal(struct bh_ctx *ctx, const char *authorization,
                                    enum bh_auth_via via, struct bh_principal *out,
                                    struct bh_err *err);
/* Whether p may do what needs `need` to tenant (NULL when the route has none) and workload
 * (NULL: none named). BH_EFORBIDDEN naming the caller's scope otherwise. */
BH_MUST_CHECK int bh_auth_allow(const struct bh_principal *p, enum bh_auth_need need,
                                const char *tenant, const char *workload, struct bh_err *err);
/* The tenant a /ws stream of p must be filtered to (NULL: none, p sees every event). asked is
 * the tenant= the client gave. BH_EFORBIDDEN if p may not see it. */
BH_MUST_CHECK int bh_auth_ws_tenant(const struct bh_principal *p, const char *asked,
                                    const char **tenant, struct bh_err *err);
/* {"actor": ..., "scopes": [...]} for GET /api/v1/whoami (plus "workload" for a per-claim
 * token). Owned. */
cJSON *bh_auth_whoami(const struct bh_principal *p);

#endif
