/* Claim admission: the workload's claim policy (a Lua script, core/lua) decides whether a
 * claim may go ahead and with which overrides; the claim controller records the decision on
 * the claim (status.policy) and applies it. */
#ifndef BH_ADMIT_H
#define BH_ADMIT_H

#include <cjson/cJSON.h>

#include "ctx.h"
#include "err.h"

struct bh_admit {
    int allow;
    int failed;    /* the script failed: denied, fail closed */
    char *reason;  /* owned; why not */
    cJSON *record; /* owned; status.policy of an admitted claim: {script, overrides} */
};

/* Runs the policy for claim (borrowed) on workload wl (borrowed, as stored). No policy
 * applies: allowed, with an empty record. */
int bh_admit_decide(struct bh_ctx *ctx, const cJSON *claim, const cJSON *wl, struct bh_admit *a,
                    struct bh_err *err);
void bh_admit_free(struct bh_admit *a);
/* The admission locks of ctx (ctx.h): set up, and torn down. */
void bh_admit_locks_init(struct bh_ctx *ctx);
void bh_admit_locks_destroy(struct bh_ctx *ctx);
/* The lock that keeps tenant's admissions one at a time (shared with the tenants of its
 * stripe). */
pthread_mutex_t *bh_admit_tenant_lock(struct bh_ctx *ctx, const char *tenant);
/* Overlays the overrides recorded on claim (status.policy.overrides) on wl, a private copy:
 * idle timeout and action, resource caps. */
void bh_admit_apply(const cJSON *claim, cJSON *wl);
/* The source the policy asked for ("pool" or "cold"), or NULL. Resource caps mean "cold": a
 * warm pool instance already has the workload's full resources. */
const char *bh_admit_source(const cJSON *claim);

#endif
