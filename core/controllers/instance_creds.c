/* A claim's tenant secrets for an instance that runs elsewhere (a remote runtime: Pods). On a
 * host, the restricted network plugin resolves a workload's tenantSecretKeyRef credentials
 * itself when the instance is attached or bound to its tenant; a remote instance's egress
 * proxy is not in this process, so the daemon resolves them here, from the same secret store,
 * and the runtime hands the values to the instance (bh_runtime_credentials). The values are
 * held only for the call and wiped. */
#include "instance.h"

#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "json.h"
#include "mem.h"
#include "runtime.h"
#include "secret.h"

void bh_instance_creds_free(struct bh_instance_creds *c)
{
    for (size_t i = 0; i < c->n; i++) {
        char *v = (char *)c->v[i].value;
        if (v) {
            bh_crypto_wipe(v, strlen(v));
            free(v);
        }
    }
    free(c->v);
    memset(c, 0, sizeof(*c));
}

/* Header j of credential i (h), if its value is the tenant's, into c. */
static int creds_header(struct bh_ctx *ctx, const cJSON *cred, const cJSON *h, int i, int j,
                        const char *tenant, struct bh_instance_creds *c, struct bh_err *err)
{
    const cJSON *ref = bh_json_get(h, "valueFrom.tenantSecretKeyRef");
    if (!ref)
        return 0;
    const char *name = bh_json_str(ref, "name"), *key = bh_json_str(ref, "key");
    char *value = NULL;
    if (!ctx->secrets)
        return bh_err_set(err, BH_EUNAVAIL, "the daemon has no secret store");
    if (!name || !key || bh_secrets_get(ctx->secrets, tenant, name, key, &value, err) < 0)
        return bh_err_wrap(err,
                           "spec.network.credentials[%d].headers[%d] (%s %s): tenantSecretKeyRef "
                           "%s key %s",
                           i, j, bh_json_str(cred, "domain"), bh_json_str(h, "name"),
                           name ? name : "?", key ? key : "?");
    c->v = bh_xrealloc(c->v, (c->n + 1) * sizeof(*c->v));
    c->v[c->n++] = (struct bh_runtime_credential){
        .domain = bh_json_str(cred, "domain"), .header = bh_json_str(h, "name"), .value = value};
    return 0;
}

int bh_instance_creds_resolve(struct bh_ctx *ctx, const cJSON *workload, const char *tenant,
                              struct bh_instance_creds *out, struct bh_err *err)
{
    memset(out, 0, sizeof(*out));
    const char *access = bh_json_str(workload, "spec.network.access");
    if (!tenant || !access || strcmp(access, "restricted") != 0)
        return 0;
    int i = 0;
    const cJSON *cred, *h;
    cJSON_ArrayForEach(cred, bh_json_get(workload, "spec.network.credentials")) {
        int j = 0;
        cJSON_ArrayForEach(h, cJSON_GetObjectItem(cred, "headers")) {
            if (creds_header(ctx, cred, h, i, j++, tenant, out, err) < 0) {
                bh_instance_creds_free(out);
                return -1;
            }
        }
        i++;
    }
    return 0;
}

int bh_instance_creds_push(struct bh_ctx *ctx, const char *id, const struct bh_instance_creds *c,
                           int timeout_ms, struct bh_err *err)
{
    if (c->n == 0)
        return 0;
    bh_autofree char *cid = bh_runtime_container_id(id);
    return bh_runtime_credentials(ctx->runtime, cid, c->v, c->n, timeout_ms, err);
}
