/* Claim admission through the Lua host; see admit.h. */
#include "admit.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "lua_host.h"
#include "mem.h"
#include "metrics.h"

int bh_admit_decide(struct bh_ctx *ctx, const cJSON *claim, const cJSON *wl, struct bh_admit *a,
                    struct bh_err *err)
{
    memset(a, 0, sizeof(*a));
    a->allow = 1;
    a->record = cJSON_CreateObject();
    if (!ctx->policies)
        return 0;
    cJSON *ev = bh_lua_claim_event(bh_json_str(claim, "spec.tenantId"), wl,
                                   bh_json_get(claim, "metadata.labels"));
    struct bh_lua_decision d;
    double t0 = bh_metrics_clock();
    int rc = bh_lua_policy_decide(ctx->policies, wl, ev, &d, err);
    cJSON_Delete(ev);
    if (rc < 0) {
        bh_metrics_policy_run(ctx->metrics, BH_METRICS_CLAIM_POLICY, BH_METRICS_ERROR,
                              bh_metrics_clock() - t0);
        return -1;
    }
    if (!d.script) /* no policy applies */
        return 0;
    bh_metrics_policy_run(ctx->metrics, BH_METRICS_CLAIM_POLICY,
                          d.failed  ? BH_METRICS_ERROR
                          : d.allow ? BH_METRICS_ALLOW
                                    : BH_METRICS_DENY,
                          bh_metrics_clock() - t0);
    a->allow = d.allow;
    a->failed = d.failed;
    a->reason = BH_STEAL(d.reason);
    cJSON_AddStringToObject(a->record, "script", d.script);
    if (d.overrides)
        cJSON_AddItemToObject(a->record, "overrides", BH_STEAL(d.overrides));
    bh_lua_decision_free(&d);
    return 0;
}

void bh_admit_locks_init(struct bh_ctx *ctx)
{
    pthread_mutex_init(&ctx->admit_lock, NULL);
    for (size_t i = 0; i < BH_ADMIT_STRIPES; i++)
        pthread_mutex_init(&ctx->admit_tenant[i], NULL);
}

void bh_admit_locks_destroy(struct bh_ctx *ctx)
{
    pthread_mutex_destroy(&ctx->admit_lock);
    for (size_t i = 0; i < BH_ADMIT_STRIPES; i++)
        pthread_mutex_destroy(&ctx->admit_tenant[i]);
}

pthread_mutex_t *bh_admit_tenant_lock(struct bh_ctx *ctx, const char *tenant)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *c = tenant ? tenant : ""; *c; c++)
        h = (h ^ (unsigned char)*c) * 16777619u;
    return &ctx->admit_tenant[h % BH_ADMIT_STRIPES];
}

void bh_admit_free(struct bh_admit *a)
{
    free(a->reason);
    cJSON_Delete(a->record);
    memset(a, 0, sizeof(*a));
}

/* Sets wl's spec.<obj>.<key> to a copy of v, if v is set. */
static void admit_set(cJSON *wl, const char *obj, const char *key, const cJSON *v)
{
    if (!v)
        return;
    cJSON *o = bh_json_obj(bh_json_obj(wl, "spec"), obj);
    cJSON_DeleteItemFromObjectCaseSensitive(o, key);
    cJSON_AddItemToObject(o, key, cJSON_Duplicate(v, 1));
}

void bh_admit_apply(const cJSON *claim, cJSON *wl)
{
    const cJSON *o = bh_json_get(claim, "status.policy.overrides");
    if (!o || !wl)
        return;
    admit_set(wl, "idle", "timeoutSeconds", bh_json_get(o, "idleTimeoutSeconds"));
    admit_set(wl, "idle", "action", bh_json_get(o, "idleAction"));
    admit_set(wl, "resources", "vcpus", bh_json_get(o, "resources.vcpus"));
    admit_set(wl, "resources", "memoryMb", bh_json_get(o, "resources.memoryMb"));
}

const char *bh_admit_source(const cJSON *claim)
{
    const cJSON *o = bh_json_get(claim, "status.policy.overrides");
    return bh_json_get(o, "resources") ? "cold" : bh_json_str(o, "source");
}
