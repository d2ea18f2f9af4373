#include "dispatch.h"

#include <string.h>

#include "adopt.h"
#include "claim.h"
#include "ctx.h"
#include "hibernate.h"
#include "json.h"
#include "mem.h"
#include "pool.h"
#include "queue.h"
#include "store.h"
#include "trigger.h"
#include "workload.h"

typedef int (*dispatch_fn)(struct bh_ctx *ctx, const char *name, long *requeue_ms,
                           struct bh_err *err);

/* Kinds with a controller; any other kind is stored only. */
static const struct {
    const char *kind;
    dispatch_fn reconcile;
} dispatch_table[] = {
    {"BoilerhouseWorkload", bh_workload_reconcile}, {"BoilerhouseClaim", bh_claim_reconcile},
    {"BoilerhousePool", bh_pool_reconcile},         {"BoilerhouseTrigger", bh_trigger_reconcile},
    {"SnapshotGC", bh_hibernate_gc_reconcile}, /* one key, "SnapshotGC/all": periodic */
    {BH_ADOPT_ORPHAN_KIND, bh_adopt_reap},     /* queued by bh_adopt_run */
};

int bh_dispatch_reconcile(void *ctx, const char *key, long *requeue_ms, struct bh_err *err)
{
    const char *slash = strchr(key, '/');
    if (!slash)
        return bh_err_set(err, BH_EINVAL, "bad queue key %s", key);
    size_t klen = (size_t)(slash - key);
    for (size_t i = 0; i < BH_ARRAY_LEN(dispatch_table); i++) {
        const char *kind = dispatch_table[i].kind;
        if (strlen(kind) == klen && strncmp(key, kind, klen) == 0)
            return dispatch_table[i].reconcile(ctx, slash + 1, requeue_ms, err);
    }
    return 0;
}

static void dispatch_enqueue(struct bh_ctx *ctx, const char *kind, const char *name)
{
    if (ctx->standby)
        return; /* operator mode: the leader reconciles (bh_dispatch_all when this one leads) */
    bh_autofree char *key = bh_xasprintf("%s/%s", kind, name);
    bh_queue_add(ctx->queue, key);
}

/* Enqueues the objects of kind that match selector (may be NULL) and, when ref_field is set,
 * whose ref_field equals ref. */
static void dispatch_enqueue_list(struct bh_ctx *ctx, const char *kind, const char *selector,
                                  const char *ref_field, const char *ref)
{
    cJSON *list = NULL;
    struct bh_err err;
    if (bh_store_list(ctx->store, kind, selector, &list, NULL, &err) < 0)
        return;
    const cJSON *o;
    cJSON_ArrayForEach(o, list) {
        const char *v = ref_field ? bh_json_str(o, ref_field) : NULL;
        if (!ref_field || (v && strcmp(v, ref) == 0))
            dispatch_enqueue(ctx, kind, bh_json_str(o, "metadata.name"));
    }
    cJSON_Delete(list);
}

/* Maps a change to the keys whose desired state it may affect (level-triggered: extra
 * reconciles are harmless, missing ones are bugs). */
void bh_dispatch_event(const struct bh_store_event *ev, void *ud)
{
    struct bh_ctx *ctx = ud;
    if (strcmp(ev->kind, "Instance") == 0) {
        const char *pool = bh_json_label(ev->object, "boilerhouse.dev/pool");
        if (pool)
            dispatch_enqueue(ctx, "BoilerhousePool", pool);
        return;
    }
    if (strcmp(ev->kind, "BoilerhouseClaim") == 0)
        bh_claim_observe(ctx, ev);
    if (strcmp(ev->kind, "Snapshot") == 0)
        return;
    /* A deleted pool still has instances to drain; a deleted trigger an adapter to stop. */
    if (ev->type != BH_EV_DELETED || strcmp(ev->kind, "BoilerhousePool") == 0 ||
        strcmp(ev->kind, "BoilerhouseTrigger") == 0)
        dispatch_enqueue(ctx, ev->kind, ev->name);
    if (strcmp(ev->kind, "BoilerhouseWorkload") == 0) {
        const char *phase = bh_json_str(ev->object, "status.phase");
        if (phase && strcmp(phase, "Creating") != 0) {
            bh_autofree char *sel = bh_xasprintf("boilerhouse.dev/workload=%s", ev->name);
            dispatch_enqueue_list(ctx, "BoilerhouseClaim", sel, NULL, NULL);
        }
        dispatch_enqueue_list(ctx, "BoilerhousePool", NULL, "spec.workloadRef", ev->name);
    }
}

void bh_dispatch_all(struct bh_ctx *ctx)
{
    for (size_t i = 0; i < BH_ARRAY_LEN(dispatch_table); i++)
        dispatch_enqueue_list(ctx, dispatch_table[i].kind, NULL, NULL, NULL);
    bh_queue_add_after(ctx->queue, "SnapshotGC/all", 60 * 1000L);
}
