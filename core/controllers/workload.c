/* The workload controller: resolves a workload's image (import, pull, or a buildah build)
 * and reports phase Creating / Ready / Error with a detail. */
#include "workload.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "build.h"
#include "clock.h"
#include "ctx.h"
#include "image.h"
#include "json.h"
#include "log.h"
#include "instance.h"
#include "mem.h"
#include "resource.h"
#include "store.h"

#define WORKLOAD_KIND "BoilerhouseWorkload"
#define WORKLOAD_RETRY_MS 30000
#define WORKLOAD_WATCH_MS 2000 /* how soon an edited Dockerfile context is rebuilt */
#define WORKLOAD_TERMINATING "Terminating"
/* How often a deleted workload looks again at what is left of it: claim releases and pool
 * drains do not wake it (they are not its events). */
#define WORKLOAD_TERMINATE_POLL_MS 200

static int workload_write_status(struct bh_ctx *ctx, cJSON *wl, const char *phase,
                                 const char *detail, struct bh_err *err)
{
    cJSON *status = bh_json_obj(wl, "status");
    bh_json_set_str(status, "phase", phase);
    bh_json_set_str(status, "detail", detail);
    bh_json_set_num(status, "observedGeneration",
                    (double)bh_json_int(wl, "metadata.generation", 0));
    cJSON_DeleteItemFromObjectCaseSensitive(bh_json_obj(wl, "metadata"), "resourceVersion");
    return bh_store_update_status(ctx->store, wl, NULL, err);
}

/* Builds the Dockerfile; status.build records what it was built from. */
static int workload_build(struct bh_ctx *ctx, cJSON *wl, const char *fingerprint, char **ref,
                          struct bh_err *err)
{
    long long t0 = bh_clock_ms();
    cJSON *build = bh_json_obj(bh_json_obj(wl, "status"), "build");
    bh_json_set_str(build, "contextHash", fingerprint); /* failed builds too: see waiting */
    if (bh_build_run(ctx, wl, ref, err) < 0)
        return -1;
    bh_json_set_num(build, "durationMs", (double)(bh_clock_ms() - t0));
    return 0;
}

static int workload_resolve(struct bh_ctx *ctx, cJSON *wl, const char *fingerprint,
                            struct bh_err *err)
{
    bh_autofree char *built = NULL;
    const char *ref = bh_json_str(wl, "spec.image.ref");
    if (!ref) {
        if (workload_build(ctx, wl, fingerprint, &built, err) < 0)
            return -1;
        ref = built;
    }
    struct bh_image *img = NULL;
    if (bh_image_resolve(ctx->images, ref, &img, err) < 0)
        return bh_err_wrap(err, "image %s", ref);
    cJSON *status = bh_json_obj(wl, "status");
    bh_json_set_str(status, "imageRef", ref);
    bh_json_set_str(status, "imageDigest", img->digest);
    bh_image_free(img);
    return 0;
}

/* A Dockerfile workload's context fingerprint; "" for image refs (nothing to watch), or when
 * it cannot be read (the build then reports why). */
static void workload_fingerprint(struct bh_ctx *ctx, const cJSON *wl, char hex[65])
{
    struct bh_err ignored;
    hex[0] = '\0';
    if (bh_json_str(wl, "spec.image.dockerfile") &&
        bh_build_fingerprint(ctx, wl, hex, &ignored) < 0)
        hex[0] = '\0';
}

/* Settled: Ready for this generation and, for a Dockerfile, built from the context as it
 * is now. */
static int workload_settled(const cJSON *wl, const char *fingerprint)
{
    const char *built = bh_json_str(wl, "status.build.contextHash");
    return bh_workload_ready(wl) && (!fingerprint[0] || (built && strcmp(built, fingerprint) == 0));
}

/* A failure of this generation and context less than WORKLOAD_RETRY_MS ago: retried only
 * then, since its own status writes wake the controller again. *wait_ms: what is left. */
static int workload_backing_off(const cJSON *wl, const char *fingerprint, long *wait_ms)
{
    const char *phase = bh_json_str(wl, "status.phase");
    const char *tried = bh_json_str(wl, "status.build.contextHash");
    if (!phase || strcmp(phase, "Error") != 0 ||
        bh_json_int(wl, "status.observedGeneration", -1) !=
            bh_json_int(wl, "metadata.generation", 0) ||
        (fingerprint[0] && (!tried || strcmp(tried, fingerprint) != 0)))
        return 0;
    long long since = (long long)time(NULL) - bh_json_int(wl, "status.failedAt", 0);
    if (since < 0 || since * 1000 >= WORKLOAD_RETRY_MS)
        return 0;
    *wait_ms = WORKLOAD_RETRY_MS - (long)since * 1000;
    return 1;
}

int bh_workload_ready(const cJSON *wl)
{
    const char *phase = bh_json_str(wl, "status.phase");
    return phase && strcmp(phase, "Ready") == 0 && !bh_workload_terminating(wl) &&
           bh_json_int(wl, "status.observedGeneration", -1) ==
               bh_json_int(wl, "metadata.generation", 0);
}

int bh_workload_terminating(const cJSON *wl)
{
    return bh_json_get(wl, "metadata.deletionTimestamp") != NULL;
}

/* ---- deletion: the cascade behind the finalizer ---- */

static int workload_has_finalizer(const cJSON *wl)
{
    const cJSON *f;
    cJSON_ArrayForEach(f, bh_json_get(wl, "metadata.finalizers")) {
        if (cJSON_IsString(f) && strcmp(f->valuestring, BH_RESOURCE_FINALIZER) == 0)
            return 1;
    }
    return 0;
}

/* A workload stored without the finalizer (made before there was one, or a client dropped it
 * in a full update) gets it back, so that deleting it still waits for the cascade. */
static int workload_keep_finalizer(struct bh_ctx *ctx, cJSON *wl, struct bh_err *err)
{
    if (workload_has_finalizer(wl))
        return 0;
    cJSON *md = bh_json_obj(wl, "metadata");
    cJSON *fin = cJSON_GetObjectItemCaseSensitive(md, "finalizers");
    if (!cJSON_IsArray(fin)) {
        cJSON_DeleteItemFromObjectCaseSensitive(md, "finalizers");
        fin = cJSON_AddArrayToObject(md, "finalizers");
    }
    cJSON_AddItemToArray(fin, cJSON_CreateString(BH_RESOURCE_FINALIZER));
    /* resourceVersion kept: a concurrent edit wins, and its event brings us back. */
    int rc = bh_store_update(ctx->store, wl, NULL, err);
    return rc < 0 && err->code == BH_ECONFLICT ? 0 : rc;
}

/* Claims of the workload that hold or may still get an instance, or are being finalized
 * (their save needs the workload's spec). The claim controller releases them: the workload's
 * own change enqueued them (dispatch.c). */
static int workload_live_claims(struct bh_ctx *ctx, const char *name)
{
    /* claim.h's phases (claim.h includes this controller's header, not the reverse) */
    static const char *const live[] = {"Pending", "Active", "Releasing", "ReleaseFailed"};
    bh_autofree char *sel = bh_xasprintf("boilerhouse.dev/workload=%s", name);
    cJSON *list = NULL;
    const cJSON *c;
    struct bh_err err;
    int n = 0;
    if (bh_store_list(ctx->store, "BoilerhouseClaim", sel, &list, NULL, &err) < 0)
        return 1; /* unknown: wait, never cut a release short */
    cJSON_ArrayForEach(c, list) {
        const char *phase = bh_json_str(c, "status.phase");
        int counts = bh_json_get(c, "metadata.deletionTimestamp") != NULL;
        for (size_t i = 0; !counts && i < BH_ARRAY_LEN(live); i++)
            counts = strcmp(phase ? phase : "Pending", live[i]) == 0;
        n += counts;
    }
    cJSON_Delete(list);
    return n;
}

/* Instances of the workload still there, once its claims are released. A pool member is its
 * pool's to drain (a pool does not refill a terminating workload) and a warming one its boot
 * thread's; any other outlived its claim and is destroyed here. */
static int workload_drain(struct bh_ctx *ctx, const char *name)
{
    bh_autofree char *sel = bh_xasprintf("boilerhouse.dev/workload=%s", name);
    cJSON *list = NULL;
    const cJSON *inst;
    struct bh_err err;
    if (bh_store_list(ctx->store, "Instance", sel, &list, NULL, &err) < 0)
        return 1;
    int n = cJSON_GetArraySize(list);
    cJSON_ArrayForEach(inst, list) {
        const char *id = bh_json_str(inst, "metadata.name");
        if (bh_json_label(inst, "boilerhouse.dev/pool") ||
            bh_json_label(inst, "boilerhouse.dev/pool-status"))
            continue;
        bh_info("workload", "workload %s is being deleted: removing instance %s", name, id);
        if (bh_instance_destroy(ctx, id, &err) < 0)
            bh_warn("workload", "remove %s: %s", id, err.msg);
    }
    cJSON_Delete(list);
    return n;
}

/* Drops our finalizer: the store then removes the workload (unless others remain). */
static int workload_release_finalizer(struct bh_ctx *ctx, cJSON *wl, struct bh_err *err)
{
    cJSON *fin = bh_json_get(wl, "metadata.finalizers");
    for (cJSON *f = fin ? fin->child : NULL, *next; f; f = next) {
        next = f->next;
        if (cJSON_IsString(f) && strcmp(f->valuestring, BH_RESOURCE_FINALIZER) == 0)
            cJSON_Delete(cJSON_DetachItemViaPointer(fin, f));
    }
    bh_info("workload", "workload %s: claims released, instances drained; deleted",
            bh_json_str(wl, "metadata.name"));
    int rc = bh_store_update(ctx->store, wl, NULL, err);
    return rc < 0 && err->code == BH_ECONFLICT ? 0 : rc; /* its event brings us back */
}

/* A deleted workload: releases, then drains, then lets go. Polled while anything is left. */
static int workload_terminate(struct bh_ctx *ctx, cJSON *wl, long *requeue_ms, struct bh_err *err)
{
    const char *name = bh_json_str(wl, "metadata.name");
    if (!workload_has_finalizer(wl))
        return 0; /* another finalizer holds it: not ours to wait for */
    int claims = workload_live_claims(ctx, name);
    int instances = claims ? 0 : workload_drain(ctx, name);
    if (!claims && !instances)
        return workload_release_finalizer(ctx, wl, err);
    bh_autofree char *detail =
        claims ? bh_xasprintf("being deleted: releasing %d claim%s", claims, claims > 1 ? "s" : "")
               : bh_xasprintf("being deleted: draining %d instance%s", instances,
                              instances > 1 ? "s" : "");
    *requeue_ms = WORKLOAD_TERMINATE_POLL_MS;
    const char *phase = bh_json_str(wl, "status.phase"), *old = bh_json_str(wl, "status.detail");
    if (phase && strcmp(phase, WORKLOAD_TERMINATING) == 0 && old && strcmp(old, detail) == 0)
        return 0;
    return workload_write_status(ctx, wl, WORKLOAD_TERMINATING, detail, err);
}

int bh_workload_wait_gone(struct bh_ctx *ctx, const char *name, long long timeout_ms, cJSON **left)
{
    long long deadline = bh_clock_ms() + timeout_ms;
    *left = NULL;
    for (;;) {
        cJSON *wl = NULL, *events = NULL;
        struct bh_err err;
        if (bh_store_get(ctx->store, WORKLOAD_KIND, name, &wl, &err) < 0)
            return err.code == BH_ENOTFOUND ? 1 : 0;
        long long wait = deadline - bh_clock_ms();
        if (wait <= 0) {
            *left = wl;
            return 0;
        }
        /* Woken by the next workload change, the last one removing it. */
        const char *rv = bh_json_str(wl, "metadata.resourceVersion");
        int64_t since = rv ? strtoll(rv, NULL, 10) : 0;
        cJSON_Delete(wl);
        if (bh_store_events_since(ctx->store, WORKLOAD_KIND, since, (int)wait, &events, &err) < 0)
            usleep(WORKLOAD_TERMINATE_POLL_MS * 1000); /* compacted log: look again */
        cJSON_Delete(events);
    }
}

int bh_workload_reconcile(struct bh_ctx *ctx, const char *name, long *requeue_ms,
                          struct bh_err *err)
{
    cJSON *wl = NULL;
    if (bh_store_get(ctx->store, WORKLOAD_KIND, name, &wl, err) < 0)
        return err->code == BH_ENOTFOUND ? 0 : -1;
    if (bh_workload_terminating(wl) || workload_keep_finalizer(ctx, wl, err) < 0) {
        int rc = bh_workload_terminating(wl) ? workload_terminate(ctx, wl, requeue_ms, err) : -1;
        cJSON_Delete(wl);
        return rc;
    }
    char fingerprint[65];
    workload_fingerprint(ctx, wl, fingerprint);
    int rc = 0;
    if (workload_settled(wl, fingerprint) || workload_backing_off(wl, fingerprint, requeue_ms)) {
        if (fingerprint[0] && (*requeue_ms == 0 || *requeue_ms > WORKLOAD_WATCH_MS))
            *requeue_ms = WORKLOAD_WATCH_MS; /* no inotify: a context is polled */
        cJSON_Delete(wl);
        return 0;
    }
    /* A changed context rebuilds while instances keep starting from the last image. */
    if (!bh_workload_ready(wl))
        workload_write_status(ctx, wl, "Creating",
                              fingerprint[0] ? "building the Dockerfile" : "resolving image", err);
    struct bh_err rerr = {0};
    long long t0 = bh_clock_ms();
    if (workload_resolve(ctx, wl, fingerprint, &rerr) < 0) {
        bh_warn("workload", "workload %s: %s", name, rerr.msg);
        bh_json_set_num(bh_json_obj(wl, "status"), "failedAt", (double)time(NULL));
        rc = workload_write_status(ctx, wl, "Error", rerr.msg, err);
        *requeue_ms = WORKLOAD_RETRY_MS;
    } else {
        bh_info("workload", "workload %s ready (image %s, %lld ms)", name,
                bh_json_str(wl, "status.imageRef"), bh_clock_ms() - t0);
        bh_autofree char *detail =
            fingerprint[0]
                ? bh_xasprintf("built in %lld ms; build log: GET /api/v1/workloads/%s/logs",
                               bh_clock_ms() - t0, name)
                : NULL;
        rc = workload_write_status(ctx, wl, "Ready", detail, err);
        if (fingerprint[0])
            *requeue_ms = WORKLOAD_WATCH_MS;
    }
    cJSON_Delete(wl);
    return rc;
}
