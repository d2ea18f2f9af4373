/* The workload controller: resolves a workload's image (import, pull, or a buildah build)
 * and reports phase Creating / Ready / Error with a detail. */
#include "workload.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "build.h"
#include "clock.h"
#include "ctx.h"
#include "image.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "store.h"

#define WORKLOAD_KIND "BoilerhouseWorkload"
#define WORKLOAD_RETRY_MS 30000
#define WORKLOAD_WATCH_MS 2000 /* how soon an edited Dockerfile context is rebuilt */

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
    return phase && strcmp(phase, "Ready") == 0 &&
           bh_json_int(wl, "status.observedGeneration", -1) ==
               bh_json_int(wl, "metadata.generation", 0);
}

int bh_workload_reconcile(struct bh_ctx *ctx, const char *name, long *requeue_ms,
                          struct bh_err *err)
{
    cJSON *wl = NULL;
    if (bh_store_get(ctx->store, WORKLOAD_KIND, name, &wl, err) < 0)
        return err->code == BH_ENOTFOUND ? 0 : -1;
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
