/* Failover adoption (adopt.h). It runs on the Lease's thread, which must renew in time: two
 * listings of the runtime and local store writes; deletions go to the reconciler's queue
 * (retried with backoff there) instead of waiting here for Pods to stop. */
#include "adopt.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "claim.h"
#include "instance.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "queue.h"
#include "runtime.h"
#include "store.h"

#define ADOPT_TRIES 3
#define ADOPT_RETRY_MS 500

static int adopt_recorded(struct bh_ctx *ctx, const char *id)
{
    cJSON *obj = NULL;
    struct bh_err err;
    int found = bh_store_get(ctx->store, "Instance", id, &obj, &err) == 0;
    cJSON_Delete(obj);
    return found;
}

/* A store read that failed: 0 (delete) only when the object is really not there; -1 (leave
 * the instance alone, as nothing is known) for any other failure. */
static int adopt_missing(const struct bh_err *err, char *why, size_t n, const char *what,
                         const char *name)
{
    if (err->code == BH_ENOTFOUND) {
        snprintf(why, n, "its %s %s does not exist", what, name);
        return 0;
    }
    snprintf(why, n, "its %s %s cannot be read: %s", what, name, err->msg);
    return -1;
}

/* Whether f's claim still holds it: that tenant's claim of that workload naming it. */
static int adopt_claim_holds(struct bh_ctx *ctx, const struct bh_runtime_found *f, char *why,
                             size_t n)
{
    cJSON *c = NULL;
    struct bh_err err;
    if (bh_store_get(ctx->store, "BoilerhouseClaim", f->claim, &c, &err) < 0)
        return adopt_missing(&err, why, n, "claim", f->claim);
    const char *tenant = bh_json_str(c, "spec.tenantId");
    const char *wl = bh_json_str(c, "spec.workloadRef");
    const char *id = bh_json_str(c, "status.instanceId");
    int holds = 0;
    if (!tenant || strcmp(tenant, f->tenant) != 0 || !wl || strcmp(wl, f->workload) != 0)
        snprintf(why, n, "claim %s is another tenant's or workload's", f->claim);
    else if (!id || strcmp(id, f->instance_id) != 0)
        snprintf(why, n, "claim %s does not name it (a boot that did not finish)", f->claim);
    else
        holds = 1;
    cJSON_Delete(c);
    return holds;
}

/* Whether f may join its pool: the pool is there for f's workload, f is ready and current. */
static int adopt_pool_holds(struct bh_ctx *ctx, const struct bh_runtime_found *f, const cJSON *wl,
                            char *why, size_t n)
{
    cJSON *pool = NULL;
    struct bh_err err;
    long long gen = bh_json_int(wl, "metadata.generation", 0);
    if (bh_store_get(ctx->store, "BoilerhousePool", f->pool, &pool, &err) < 0)
        return adopt_missing(&err, why, n, "pool", f->pool);
    const char *ref = bh_json_str(pool, "spec.workloadRef");
    int holds = 0;
    if (!ref || strcmp(ref, f->workload) != 0 || bh_json_get(pool, "metadata.deletionTimestamp"))
        snprintf(why, n, "pool %s is being deleted or is another workload's", f->pool);
    else if (f->generation != gen)
        snprintf(why, n, "built from generation %lld of workload %s, which is at %lld",
                 f->generation, f->workload, gen);
    else if (f->state != BH_RUNTIME_FOUND_READY)
        snprintf(why, n, "a warm boot that did not finish");
    else
        holds = 1;
    cJSON_Delete(pool);
    return holds;
}

/* 1: adopt f (*wl its workload, owned); 0: delete it; -1: leave it (a store read failed);
 * why says why. */
static int adopt_judge(struct bh_ctx *ctx, const struct bh_runtime_found *f, cJSON **wl, char *why,
                       size_t n)
{
    struct bh_err err;
    if (bh_store_get(ctx->store, "BoilerhouseWorkload", f->workload, wl, &err) < 0)
        return adopt_missing(&err, why, n, "workload", f->workload);
    if (f->state == BH_RUNTIME_FOUND_ENDED) {
        snprintf(why, n, "it has ended");
        return 0;
    }
    if (f->tenant)
        return adopt_claim_holds(ctx, f, why, n);
    return adopt_pool_holds(ctx, f, *wl, why, n);
}

static void adopt_queue_reap(struct bh_ctx *ctx, const char *id)
{
    bh_autofree char *key = bh_xasprintf("%s/%s", BH_ADOPT_ORPHAN_KIND, id);
    if (ctx->queue)
        bh_queue_add(ctx->queue, key);
}

/* Adopts or queues the deletion of one instance; counts what it did. */
static void adopt_one(struct bh_ctx *ctx, const struct bh_runtime_found *f, int *adopted, int *warm,
                      int *reaped)
{
    char why[768];
    cJSON *wl = NULL;
    struct bh_err err;
    int verdict = adopt_judge(ctx, f, &wl, why, sizeof(why));
    if (verdict < 0) {
        bh_warn("adopt", "instance %s of workload %s left alone: %s", f->instance_id, f->workload,
                why);
    } else if (verdict == 0) {
        bh_info("adopt", "deleting instance %s of workload %s: %s", f->instance_id, f->workload,
                why);
        adopt_queue_reap(ctx, f->instance_id);
        (*reaped)++;
    } else if (bh_instance_adopt(ctx, f, wl, &err) < 0) {
        bh_warn("adopt", "instance %s: %s", f->instance_id, err.msg);
    } else {
        bh_info("adopt", "adopted instance %s of workload %s (%s %s)", f->instance_id, f->workload,
                f->tenant ? "claim" : "pool", f->tenant ? f->claim : f->pool);
        /* A warm one is marked ready where it runs, if its predecessor had not yet. */
        if (!f->tenant && bh_runtime_ready(ctx->runtime, f->id, &err) < 0)
            bh_warn("adopt", "instance %s: %s", f->instance_id, err.msg);
        (*adopted)++;
        *warm += !f->tenant;
    }
    cJSON_Delete(wl);
}

static int adopt_inventory(struct bh_ctx *ctx, struct bh_runtime_found **found, size_t *n,
                           struct bh_err *err)
{
    for (int i = 1;; i++) {
        if (bh_runtime_inventory(ctx->runtime, found, n, err) == 0)
            return 0;
        if (i == ADOPT_TRIES)
            return bh_err_wrap(err, "what the %s runtime holds", bh_runtime_name(ctx->runtime));
        usleep(ADOPT_RETRY_MS * 1000);
    }
}

int bh_adopt_run(struct bh_ctx *ctx, struct bh_err *err)
{
    if (!bh_runtime_has(ctx->runtime, BH_RUNTIME_CAP_SHARED | BH_RUNTIME_CAP_REMOTE))
        return bh_claim_recover_lost(ctx, err);
    struct bh_runtime_found *found = NULL;
    size_t n = 0;
    if (adopt_inventory(ctx, &found, &n, err) < 0)
        return -1;
    int adopted = 0, warm = 0, reaped = 0, kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (adopt_recorded(ctx, found[i].instance_id))
            kept++; /* this replica led before and knows it */
        else
            adopt_one(ctx, &found[i], &adopted, &warm, &reaped);
    }
    bh_runtime_found_free(found, n);
    bh_info("adopt", "%zu instance%s found: %d adopted (%d warm), %d to delete, %d known", n,
            n == 1 ? "" : "s", adopted, warm, reaped, kept);
    return bh_claim_recover_lost(ctx, err);
}

int bh_adopt_reap(struct bh_ctx *ctx, const char *id, long *requeue_ms, struct bh_err *err)
{
    (void)requeue_ms;
    if (adopt_recorded(ctx, id))
        return 0;
    bh_autofree char *cid = bh_runtime_container_id(id);
    if (bh_runtime_delete(ctx->runtime, cid, err) < 0)
        return bh_err_wrap(err, "delete unreferenced instance %s", id);
    bh_info("adopt", "unreferenced instance %s deleted", id);
    return 0;
}
