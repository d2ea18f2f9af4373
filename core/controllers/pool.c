/* The pool controller: keeps `size` healthy warm instances of a workload, boots at most
 * maxFillConcurrency at once (in their own threads, so a slow boot never blocks the
 * reconciler), drains instances built from an older workload generation or image (a rebuilt
 * Dockerfile keeps its tag, so the digest tells), removes failed ones with backoff, and never
 * touches instances tenants hold.
 *
 * Pool instances carry labels boilerhouse.dev/pool=<pool> and pool-status=warming|ready.
 * Acquiring one is an optimistic-concurrency update of its record (resourceVersion checked),
 * so two claims can never take the same instance. */
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "boots.h"
#include "clock.h"
#include "ctx.h"
#include "instance.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "queue.h"
#include "store.h"
#include "workload.h"

#define POOL_KIND "BoilerhousePool"
#define POOL_RESYNC_MS 10000
#define POOL_BACKOFF_MIN_MS 1000
#define POOL_BACKOFF_MAX_MS 60000
#define POOL_REFILL_DELAY_MS 100

struct pool_boot {
    struct bh_ctx *ctx;
    cJSON *workload;
    char *pool;
    char *id; /* reserved before the thread starts, so the next reconcile counts it */
};

static void pool_enqueue(struct bh_ctx *ctx, const char *pool)
{
    bh_autofree char *key = bh_xasprintf("%s/%s", POOL_KIND, pool);
    if (ctx->queue)
        bh_queue_add(ctx->queue, key);
}

/* When a claim last took a member of any pool (bh_clock_ms). Refill boots (mkfs, mounts,
 * runc: tens of ms of CPU each) start only POOL_REFILL_DELAY_MS after it, so that they do
 * not compete with the claims of a burst being answered; the pool's status (ready, warming)
 * is recounted at once all the same. Process-wide: a burst on one pool delays the others'
 * refills as well, which is the point (they share the CPU). */
static _Atomic long long pool_last_take_ms;

/* How long refill boots must still wait for the last take (0: none). */
static long long pool_refill_hold_ms(void)
{
    long long left = atomic_load(&pool_last_take_ms) + POOL_REFILL_DELAY_MS - bh_clock_ms();
    return left > 0 ? left : 0;
}

/* Status changes of the pool made beside its reconcile (a boot thread's failure, a recovery):
 * read-modify-write with the resourceVersion checked, again on a conflict, so two boot
 * threads failing at once both count. */
#define POOL_NOTE_TRIES 16

/* Records the last boot failure on the pool (status.failures/detail) for backoff; NULL
 * failure resets the count. */
static void pool_note_boot(struct bh_ctx *ctx, const char *pool, const char *failure)
{
    struct bh_err err = {0};
    long long failures = 0;
    for (int i = 0; i < POOL_NOTE_TRIES; i++) {
        cJSON *obj = NULL;
        if (bh_store_get(ctx->store, POOL_KIND, pool, &obj, &err) < 0)
            return;
        cJSON *status = bh_json_obj(obj, "status");
        failures = failure ? bh_json_int(status, "failures", 0) + 1 : 0;
        bh_json_set_num(status, "failures", (double)failures);
        bh_json_set_num(status, "lastFailureAt", failure ? (double)bh_clock_ms() : 0);
        bh_json_set_str(status, "lastFailure", failure);
        int rc = bh_store_update_status(ctx->store, obj, NULL, &err);
        cJSON_Delete(obj);
        if (rc == 0 || err.code != BH_ECONFLICT)
            break;
    }
    /* The backoff reads this count: a lost write must at least be seen. */
    if (err.code)
        bh_warn("pool", "pool %s: boot failure %lld not recorded, backoff cannot see it: %s", pool,
                failures, err.msg);
}

static void pool_boot_failed(struct bh_ctx *ctx, const struct bh_boot_req *req, const char *why)
{
    bh_warn("pool", "pool %s: warm instance failed: %s", req->pool, why);
    pool_note_boot(ctx, req->pool, why);
}

static void *pool_boot_thread(void *arg)
{
    struct pool_boot *pb = arg;
    struct bh_boot_req req = {
        .workload = pb->workload, .pool = pb->pool, .id = pb->id, .on_failure = pool_boot_failed};
    struct bh_err err = {0};
    cJSON *inst = NULL;
    if (bh_instance_boot(pb->ctx, &req, &inst, &err) == 0) {
        /* Running and healthy: hand it to the pool. */
        cJSON *labels = bh_json_obj(inst, "metadata.labels");
        bh_json_set_str(labels, "boilerhouse.dev/pool-status", "ready");
        /* resourceVersion checked: if the pool started draining it meanwhile, that wins. */
        if (bh_store_update_lazy(pb->ctx->store, inst, NULL, &err) < 0)
            bh_debug("pool", "pool %s: mark ready: %s", pb->pool, err.msg);
    }
    cJSON_Delete(inst);
    pool_enqueue(pb->ctx, pb->pool);
    struct bh_ctx *ctx = pb->ctx;
    cJSON_Delete(pb->workload);
    free(pb->pool);
    free(pb->id);
    free(pb);
    bh_boots_thread_done(ctx);
    return NULL;
}

static void pool_start_boot(struct bh_ctx *ctx, const cJSON *workload, const char *pool)
{
    struct bh_boot_req req = {.workload = workload, .pool = pool};
    struct bh_err err;
    char *id = bh_instance_reserve(ctx, &req, &err);
    if (!id) {
        bh_warn("pool", "pool %s: cannot record a new instance: %s", pool, err.msg);
        return;
    }
    struct pool_boot *pb = bh_xcalloc(1, sizeof(*pb));
    pb->id = id;
    pb->ctx = ctx;
    pb->workload = cJSON_Duplicate(workload, 1);
    pb->pool = bh_xstrdup(pool);
    if (bh_boots_thread(ctx, pool_boot_thread, pb) < 0) {
        bh_error("pool", "pool %s: cannot start a boot thread", pool);
        bh_instance_destroy(ctx, id, &err);
        free(pb->id);
        cJSON_Delete(pb->workload);
        free(pb->pool);
        free(pb);
    }
}

/* Unclaimed instances of the pool (warming or ready). Owned array. */
static cJSON *pool_members(struct bh_ctx *ctx, const char *pool)
{
    bh_autofree char *sel =
        bh_xasprintf("boilerhouse.dev/pool=%s,boilerhouse.dev/pool-status", pool);
    cJSON *list = NULL;
    struct bh_err err;
    if (bh_store_list(ctx->store, "Instance", sel, &list, NULL, &err) < 0)
        return cJSON_CreateArray();
    return list;
}

/* Removes a member, but only if it is still unclaimed: the listed record's resourceVersion
 * guards the take, so a claim that acquired it a moment ago wins and keeps it. */
static void pool_destroy_member(struct bh_ctx *ctx, const cJSON *inst, const char *why)
{
    const char *id = bh_json_str(inst, "metadata.name");
    cJSON *taken = cJSON_Duplicate(inst, 1);
    bh_json_set_str(bh_json_obj(taken, "metadata.labels"), "boilerhouse.dev/pool-status",
                    "draining");
    struct bh_err err;
    int rc = bh_store_update(ctx->store, taken, NULL, &err);
    cJSON_Delete(taken);
    if (rc < 0) {
        bh_debug("pool", "not removing %s: %s", id, err.msg);
        return;
    }
    bh_info("pool", "removing pool instance %s: %s", id, why);
    if (bh_instance_destroy(ctx, id, &err) < 0)
        bh_warn("pool", "remove %s: %s", id, err.msg);
}

/* Relabels a member that finished booting as ready; false if it changed meanwhile. */
static int pool_mark_ready(struct bh_ctx *ctx, const cJSON *inst)
{
    cJSON *copy = cJSON_Duplicate(inst, 1);
    bh_json_set_str(bh_json_obj(copy, "metadata.labels"), "boilerhouse.dev/pool-status", "ready");
    struct bh_err err;
    int rc = bh_store_update_lazy(ctx->store, copy, NULL, &err);
    cJSON_Delete(copy);
    return rc == 0;
}

/* Whether member m runs wl as it is now: its generation, and the image the workload resolved
 * last (a member that recorded none predates the check: stale too). */
static int pool_member_current(const cJSON *m, const cJSON *wl)
{
    const char *want = bh_json_str(wl, "status.imageDigest");
    const char *has = bh_json_str(m, "status.imageDigest");
    return bh_json_int(m, "spec.workloadGeneration", -2) ==
               bh_json_int(wl, "metadata.generation", 0) &&
           (!want || (has && strcmp(want, has) == 0));
}

/* Drains members that are stale, dead or surplus; counts the rest. */
static void pool_prune(struct bh_ctx *ctx, const cJSON *pool, const cJSON *wl, int *ready,
                       int *warming)
{
    const char *name = bh_json_str(pool, "metadata.name");
    long long size = bh_json_int(pool, "spec.size", 0);
    cJSON *members = pool_members(ctx, name);
    const cJSON *m;
    *ready = *warming = 0;
    cJSON_ArrayForEach(m, members) {
        const char *st = bh_json_label(m, "boilerhouse.dev/pool-status");
        int is_ready = st && strcmp(st, "ready") == 0;
        struct bh_err derr;
        if (st && strcmp(st, "draining") == 0) { /* a removal that failed before: retry */
            if (bh_instance_destroy(ctx, bh_json_str(m, "metadata.name"), &derr) < 0)
                bh_warn("pool", "remove %s: %s", bh_json_str(m, "metadata.name"), derr.msg);
            continue;
        }
        /* Booted but never relabelled (a crash between the two writes): it is ready. */
        if (!is_ready && bh_json_str(m, "status.phase") &&
            strcmp(bh_json_str(m, "status.phase"), "Running") == 0 && pool_mark_ready(ctx, m))
            is_ready = 1;
        /* Warming members finish booting first (their boot thread owns them until then). */
        if (is_ready && (!wl || !pool_member_current(m, wl)))
            pool_destroy_member(ctx, m,
                                wl ? "built from an older workload spec or image"
                                   : "its workload is not ready, or is being deleted");
        else if (is_ready && !bh_instance_alive(ctx, m)) {
            /* Counts as a failed boot, so a workload that dies right after starting backs
             * off instead of being restarted in a tight loop. */
            bh_autofree char *why =
                bh_xasprintf("instance %s exited after start", bh_json_str(m, "metadata.name"));
            pool_destroy_member(ctx, m, why);
            pool_note_boot(ctx, name, why);
        } else if (is_ready && *ready + *warming >= size)
            pool_destroy_member(ctx, m, "pool scaled down");
        else
            *(is_ready ? ready : warming) += 1;
    }
    cJSON_Delete(members);
}

static int pool_write_status(struct bh_ctx *ctx, cJSON *pool, int ready, int warming,
                             const char *phase, const char *detail, struct bh_err *err)
{
    cJSON *status = bh_json_obj(pool, "status");
    if (bh_json_int(status, "ready", -1) == ready &&
        bh_json_int(status, "warming", -1) == warming && bh_json_str(status, "phase") &&
        strcmp(bh_json_str(status, "phase"), phase) == 0)
        return 0;
    bh_json_set_num(status, "ready", ready);
    bh_json_set_num(status, "warming", warming);
    bh_json_set_str(status, "phase", phase);
    bh_json_set_str(status, "detail", detail);
    /* resourceVersion checked: a failure a boot thread recorded since this copy was read must
     * not be overwritten; that write queued another reconcile, which sees both. Not fsynced:
     * counts any reconcile recomputes (the first after a restart too), written after every
     * take, under the store's lock that the claims being answered wait for. */
    int rc = bh_store_update_status_lazy(ctx->store, pool, NULL, err);
    return rc < 0 && err->code == BH_ECONFLICT ? 0 : rc;
}

/* A deleted pool: its unclaimed instances go; instances tenants hold are not members. */
static int pool_drain_deleted(struct bh_ctx *ctx, const char *name)
{
    cJSON *members = pool_members(ctx, name);
    const cJSON *m;
    cJSON_ArrayForEach(m, members) {
        /* A member still booting is its boot thread's; once ready it comes back here. */
        const char *st = bh_json_label(m, "boilerhouse.dev/pool-status");
        if (!st || strcmp(st, "warming") != 0)
            pool_destroy_member(ctx, m, "pool deleted");
    }
    cJSON_Delete(members);
    return 0;
}

int bh_pool_reconcile(struct bh_ctx *ctx, const char *name, long *requeue_ms, struct bh_err *err)
{
    cJSON *pool = NULL, *wl = NULL;
    if (bh_store_get(ctx->store, POOL_KIND, name, &pool, err) < 0)
        return err->code == BH_ENOTFOUND ? pool_drain_deleted(ctx, name) : -1;
    struct bh_err gerr;
    /* Owned: the pool object is re-read below, and the name is still needed after that. */
    const char *ref = bh_json_str(pool, "spec.workloadRef");
    bh_autofree char *wname = ref ? bh_xstrdup(ref) : NULL;
    int have_wl = bh_store_get(ctx->store, "BoilerhouseWorkload", wname, &wl, &gerr) == 0;
    int wl_ready = have_wl && bh_workload_ready(wl);
    int ready = 0, warming = 0, rc;
    pool_prune(ctx, pool, wl_ready ? wl : NULL, &ready, &warming);
    /* Pruning may have recorded failures in the pool's status: work from the fresh copy. */
    cJSON_Delete(pool);
    pool = NULL;
    if (bh_store_get(ctx->store, POOL_KIND, name, &pool, err) < 0) {
        cJSON_Delete(wl);
        return err->code == BH_ENOTFOUND ? pool_drain_deleted(ctx, name) : -1;
    }
    long long size = bh_json_int(pool, "spec.size", 0);
    long long max_fill = bh_json_int(pool, "spec.maxFillConcurrency", 2);
    long long failures = bh_json_int(pool, "status.failures", 0);
    *requeue_ms = POOL_RESYNC_MS;
    if (!wl_ready) {
        bh_autofree char *msg = bh_xasprintf("workload %s is %s", wname,
                                             !have_wl                      ? "not found"
                                             : bh_workload_terminating(wl) ? "being deleted"
                                                                           : "not ready");
        rc = pool_write_status(ctx, pool, ready, warming, "Error", msg, err);
    } else {
        long long gap = size - ready - warming, room = max_fill - warming;
        long long start = gap < room ? gap : room;
        /* After failures, wait out the backoff, then try one at a time. */
        long long wait =
            failures ? bh_json_int(pool, "status.lastFailureAt", 0) +
                           bh_clock_backoff_ms(failures, POOL_BACKOFF_MIN_MS, POOL_BACKOFF_MAX_MS) -
                           bh_clock_ms()
                     : 0;
        long long hold = pool_refill_hold_ms();
        if (failures && (wait > 0 || warming > 0))
            start = 0;
        else if (failures && start > 1)
            start = 1;
        if (hold > 0 && start > 0) { /* claims are being answered: refill right after */
            start = 0;
            wait = wait > hold ? wait : hold;
        }
        for (long long i = 0; i < start; i++, warming++)
            pool_start_boot(ctx, wl, name);
        if (wait > 0)
            *requeue_ms = (long)wait;
        if (failures && ready >= size) {
            pool_note_boot(ctx, name, NULL); /* healthy again: the backoff starts over */
            failures = 0;
            cJSON_Delete(pool);
            pool = NULL;
            if (bh_store_get(ctx->store, POOL_KIND, name, &pool, err) < 0) {
                cJSON_Delete(wl);
                return -1;
            }
        }
        const char *detail = failures ? bh_json_str(pool, "status.lastFailure")
                                      : (ready < size ? "warming instances" : NULL);
        rc = pool_write_status(ctx, pool, ready, warming, ready >= size ? "Healthy" : "Degraded",
                               detail, err);
    }
    cJSON_Delete(wl);
    cJSON_Delete(pool);
    return rc;
}

/* Whether m is a ready member of a pool of workload wname (as the take's listing asked). */
static int pool_member_ready(const cJSON *m, const char *wname)
{
    const char *st = bh_json_label(m, "boilerhouse.dev/pool-status");
    const char *wl = bh_json_label(m, "boilerhouse.dev/workload");
    return st && strcmp(st, "ready") == 0 && wl && wname && strcmp(wl, wname) == 0;
}

/* Where concurrent takers start in the list of ready members: each its own, so that ten
 * claims at once try ten different members instead of all racing for the first (each lost
 * race is a failed write transaction under the store's lock). Only a hint: the
 * resourceVersion-checked update decides who gets a member. */
static atomic_uint pool_take_turn;

/* Takes member m (the listed copy, its resourceVersion the listed one) for the claim:
 * relabelled as the tenant's in one resourceVersion-checked write, so a concurrent taker or a
 * drain conflicts. The same write stamps its activity (status.lastActivity: claimed now), so
 * the claim needs no touch of its own; the check makes the listed status the current one.
 * Not fsynced: lost in a crash, the instance is simply unclaimed again; kept without the
 * claim's Active status, the claim finds it as its tenant's existing instance. *taken owned
 * on success. */
static int pool_take(struct bh_ctx *ctx, const cJSON *m, const char *tenant, const char *claim,
                     int restoring, cJSON **taken, struct bh_err *err)
{
    cJSON *copy = cJSON_Duplicate(m, 1);
    cJSON *labels = bh_json_obj(copy, "metadata.labels");
    cJSON_DeleteItemFromObjectCaseSensitive(labels, "boilerhouse.dev/pool-status");
    cJSON_DeleteItemFromObjectCaseSensitive(labels, "boilerhouse.dev/pool");
    bh_json_set_str(labels, "boilerhouse.dev/tenant", tenant);
    if (restoring) /* not the tenant's until its data is in: see bh_instance_restored */
        bh_json_set_str(labels, BH_LABEL_RESTORING, "true");
    cJSON *spec = bh_json_obj(copy, "spec");
    bh_json_set_str(spec, "tenantId", tenant);
    bh_json_set_str(spec, "claim", claim);
    char now[32];
    bh_clock_rfc3339_ms(bh_clock_wall_ms(), now);
    bh_json_set_str(bh_json_obj(copy, "status"), "lastActivity", now);
    int rc = bh_store_update_all_lazy(ctx->store, copy, taken, err);
    cJSON_Delete(copy);
    return rc;
}

/* After a take: whether the workload as stored now still matches what was taken. The
 * caller's copy of the workload may be older than the store's (read before the take), and the
 * pool drains stale members only after the workload's change: checking after the take makes
 * handing out atomic. Generations only grow, so a member current now was current when it was
 * taken. *fresh (owned) is the workload as read, for the next candidates. */
static int pool_still_current(struct bh_ctx *ctx, const cJSON *taken, const cJSON *workload,
                              cJSON **fresh)
{
    struct bh_err err;
    cJSON *wl = NULL;
    if (bh_store_get(ctx->store, "BoilerhouseWorkload", bh_json_str(workload, "metadata.name"), &wl,
                     &err) < 0) {
        cJSON_Delete(*fresh); /* unreadable or gone: nothing of it is handed out */
        *fresh = NULL;
        return 0;
    }
    int ok = pool_member_current(taken, wl);
    cJSON_Delete(*fresh);
    *fresh = wl;
    return ok;
}

/* Where the instance runs, it becomes the tenant's too (a remote runtime relabels it, checked
 * against its version). Refused because another taker has it: only the record goes, the
 * instance is theirs; refused otherwise (stale, gone): destroyed, like a stale take. */
static int pool_hand_over(struct bh_ctx *ctx, const cJSON *taken, const cJSON *wl,
                          const char *tenant, const char *claim)
{
    struct bh_err err, derr;
    const char *id = bh_json_str(taken, "metadata.name");
    if (bh_instance_assign(ctx, taken, wl, tenant, claim, &err) == 0)
        return 0;
    bh_info("pool", "not handing out %s: %s", id, err.msg);
    int rc = err.code == BH_ECONFLICT ? bh_instance_forget(ctx, id, &derr)
                                      : bh_instance_destroy(ctx, id, &derr);
    if (rc < 0)
        bh_warn("pool", "remove %s: %s", id, derr.msg);
    return -1;
}

/* One candidate: 1 handed out (*out); 0 taken but stale or dead, so destroyed; -1 not taken
 * (stale as listed, or another taker won). */
static int pool_try(struct bh_ctx *ctx, const cJSON *m, const char *tenant, const char *claim,
                    int restoring, cJSON **want, cJSON **out)
{
    struct bh_err err;
    cJSON *taken = NULL;
    if (!pool_member_current(m, *want) ||
        pool_take(ctx, m, tenant, claim, restoring, &taken, &err) < 0)
        return -1;
    /* Running as far as the pool knows; the pid check is a few /proc reads, no runtime call.
     * A dead or stale member taken is destroyed here: it is no longer the pool's to drain. */
    if (!pool_still_current(ctx, taken, *want, want) || !bh_instance_alive(ctx, taken)) {
        bh_info("pool", "not handing out %s: %s", bh_json_str(taken, "metadata.name"),
                *want ? "built from an older workload spec or image" : "workload gone");
        if (bh_instance_destroy(ctx, bh_json_str(taken, "metadata.name"), &err) < 0)
            bh_warn("pool", "remove %s: %s", bh_json_str(taken, "metadata.name"), err.msg);
        cJSON_Delete(taken);
        return 0;
    }
    if (pool_hand_over(ctx, taken, *want, tenant, claim) < 0) {
        cJSON_Delete(taken);
        return 0;
    }
    *out = taken;
    return 1;
}

int bh_pool_acquire(struct bh_ctx *ctx, const cJSON *workload, const char *tenant,
                    const char *claim, int restoring, cJSON **out, struct bh_err *err)
{
    const char *wname = bh_json_str(workload, "metadata.name");
    bh_autofree char *sel =
        bh_xasprintf("boilerhouse.dev/pool-status=ready,boilerhouse.dev/workload=%s", wname);
    cJSON *names = NULL;
    *out = NULL;
    /* Names only: the one member taken is read, not every ready one. */
    if (bh_store_list_names(ctx->store, "Instance", sel, &names, err) < 0)
        return -1;
    int n = cJSON_GetArraySize(names);
    unsigned start = n ? atomic_fetch_add(&pool_take_turn, 1) % (unsigned)n : 0;
    cJSON *want = cJSON_Duplicate(workload, 1); /* replaced by the store's once re-read */
    for (int i = 0; i < n && want && !*out; i++) {
        const char *id =
            cJSON_GetArrayItem(names, (int)((start + (unsigned)i) % (unsigned)n))->valuestring;
        cJSON *m = NULL;
        struct bh_err gerr;
        /* Read after the listing: it may have been taken or drained since. */
        if (bh_store_get(ctx->store, "Instance", id, &m, &gerr) < 0 ||
            !pool_member_ready(m, wname)) {
            cJSON_Delete(m);
            continue;
        }
        const char *pool = bh_json_label(m, "boilerhouse.dev/pool");
        bh_autofree char *pool_name = bh_xstrdup(pool ? pool : "");
        int rc = pool_try(ctx, m, tenant, claim, restoring, &want, out);
        cJSON_Delete(m);
        if (rc < 0)
            continue;
        atomic_store(&pool_last_take_ms, bh_clock_ms());
        if (pool_name[0])
            pool_enqueue(ctx, pool_name); /* it lost a member: recount, refill */
    }
    cJSON_Delete(want);
    cJSON_Delete(names);
    return 0;
}
