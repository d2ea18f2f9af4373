/* Credentials to principals, and principals to decisions (auth.h). */
#include "auth.h"

#include <stdio.h>
#include <string.h>

#include "crypto.h"
#include "json.h"
#include "mem.h"

static void auth_admin(struct bh_principal *p, const char *actor)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->actor, sizeof(p->actor), "%s", actor);
    p->scopes = BH_AUTH_SCOPE_ADMIN;
}

/* Fills p from a token row {id, scopes, workload?}. */
static void auth_from_token(struct bh_principal *p, const cJSON *row)
{
    const cJSON *s;
    memset(p, 0, sizeof(*p));
    snprintf(p->actor, sizeof(p->actor), "token:%s", bh_json_str(row, "id") ?: "");
    snprintf(p->workload, sizeof(p->workload), "%s", bh_json_str(row, "workload") ?: "");
    cJSON_ArrayForEach(s, cJSON_GetObjectItem(row, "scopes")) {
        const char *v = cJSON_GetStringValue(s);
        if (!v)
            continue;
        if (strcmp(v, "admin") == 0)
            p->scopes |= BH_AUTH_SCOPE_ADMIN;
        else if (strcmp(v, "viewer") == 0)
            p->scopes |= BH_AUTH_SCOPE_VIEWER;
        else if (strncmp(v, "tenant:", 7) == 0 && p->n_tenants < BH_TOKEN_MAX_SCOPES)
            snprintf(p->tenants[p->n_tenants++], sizeof(p->tenants[0]), "%s", v + 7);
    }
}

int bh_auth_principal(struct bh_ctx *ctx, const char *authorization, enum bh_auth_via via,
                      struct bh_principal *out, struct bh_err *err)
{
    const char *key = ctx->cfg.api_key;
    if (key && bh_crypto_bearer_matches(authorization, key)) {
        auth_admin(out, "admin");
        return 0;
    }
    if (authorization && strncmp(authorization, "Bearer ", 7) == 0 && ctx->store) {
        cJSON *row = NULL;
        if (bh_token_lookup(ctx->store, authorization + 7, &row, err) < 0)
            return -1;
        if (row) {
            auth_from_token(out, row);
            cJSON_Delete(row);
            return 0;
        }
    }
    /* Open access is for the operator's own loopback, never for what runs in an instance.
     * Whatever else is sent is ignored there (kubeconfig's "local-mode" placeholder token). */
    if (!key && via == BH_AUTH_VIA_LISTENER) {
        auth_admin(out, "anonymous");
        return 0;
    }
    return bh_err_set(err, BH_EAUTH, "missing or invalid bearer token");
}

static int auth_has_tenant(const struct bh_principal *p, const char *tenant)
{
    for (int i = 0; tenant && i < p->n_tenants; i++)
        if (strcmp(p->tenants[i], tenant) == 0)
            return 1;
    return 0;
}

/* The caller's scopes as text for a 403: "viewer", "tenant:alice", ... */
static void auth_scope_text(const struct bh_principal *p, char *buf, size_t n)
{
    size_t len = 0;
    buf[0] = '\0';
    if (p->scopes & BH_AUTH_SCOPE_VIEWER)
        len += (size_t)snprintf(buf + len, n - len, "viewer");
    for (int i = 0; i < p->n_tenants && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%stenant:%s", len ? "," : "", p->tenants[i]);
    if (p->workload[0] && len < n)
        snprintf(buf + len, n - len, " (workload %s)", p->workload);
}

static int auth_forbid(const struct bh_principal *p, const char *what, struct bh_err *err)
{
    char scopes[512];
    auth_scope_text(p, scopes, sizeof(scopes));
    return bh_err_set(err, BH_EFORBIDDEN, "token scope %s does not allow %s",
                      scopes[0] ? scopes : "(none)", what);
}

/* A tenant scope's claim or read: its tenant, and its workload when it is per-claim. */
static int auth_tenant_ok(const struct bh_principal *p, const char *tenant, const char *workload,
                          struct bh_err *err)
{
    char what[160];
    if (!auth_has_tenant(p, tenant)) {
        snprintf(what, sizeof(what), "tenant %s", tenant ? tenant : "(none)");
        return auth_forbid(p, what, err);
    }
    if (p->workload[0] && workload && strcmp(workload, p->workload) != 0) {
        snprintf(what, sizeof(what), "workload %s", workload);
        return auth_forbid(p, what, err);
    }
    return 0;
}

int bh_auth_allow(const struct bh_principal *p, enum bh_auth_need need, const char *tenant,
                  const char *workload, struct bh_err *err)
{
    int viewer = (p->scopes & BH_AUTH_SCOPE_VIEWER) != 0;
    if (need == BH_AUTH_PUBLIC || need == BH_AUTH_ANY || (p->scopes & BH_AUTH_SCOPE_ADMIN))
        return 0;
    switch (need) {
    case BH_AUTH_READ:
        return viewer ? 0 : auth_forbid(p, "reads beyond its tenant (needs viewer or admin)", err);
    case BH_AUTH_TENANT_READ:
        return viewer ? 0 : auth_tenant_ok(p, tenant, NULL, err);
    case BH_AUTH_INSTANCE_READ:
        return viewer ? 0 : auth_tenant_ok(p, tenant, workload, err);
    case BH_AUTH_CLAIM:
        if (!p->n_tenants)
            return auth_forbid(p, "claims (read-only; needs tenant:<id> or admin)", err);
        return auth_tenant_ok(p, tenant, workload, err);
    default:
        return auth_forbid(p, "changes (needs admin)", err);
    }
}

int bh_auth_ws_tenant(const struct bh_principal *p, const char *asked, const char **tenant,
                      struct bh_err *err)
{
    *tenant = NULL;
    if (p->scopes & (BH_AUTH_SCOPE_ADMIN | BH_AUTH_SCOPE_VIEWER))
        return 0;
    if (asked && !*asked) /* "?tenant=" asks for nothing in particular */
        asked = NULL;
    if (!asked && p->n_tenants == 1)
        asked = p->tenants[0];
    if (!asked)
        return auth_forbid(p, "events of every tenant (pick one with ?tenant=)", err);
    if (auth_tenant_ok(p, asked, NULL, err) < 0)
        return -1;
    *tenant = asked;
    return 0;
}

cJSON *bh_auth_whoami(const struct bh_principal *p)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "actor", p->actor);
    cJSON *s = cJSON_AddArrayToObject(o, "scopes");
    if (p->scopes & BH_AUTH_SCOPE_ADMIN)
        cJSON_AddItemToArray(s, cJSON_CreateString("admin"));
    if (p->scopes & BH_AUTH_SCOPE_VIEWER)
        cJSON_AddItemToArray(s, cJSON_CreateString("viewer"));
    for (int i = 0; i < p->n_tenants; i++) {
        bh_autofree char *t = bh_xasprintf("tenant:%s", p->tenants[i]);
        cJSON_AddItemToArray(s, cJSON_CreateString(t));
    }
    if (p->workload[0])
        cJSON_AddStringToObject(o, "workload", p->workload);
    return o;
}
