/* The workload controller: resolves a workload's image (import, pull, or a buildah build)
 * and reports phase Creating / Ready / Error with a detail. */
#include "workload.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "ctx.h"
#include "fs.h"
#include "image.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "proc.h"
#include "store.h"

#define WORKLOAD_KIND "BoilerhouseWorkload"
#define WORKLOAD_RETRY_MS 30000

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

static int workload_find_program(const char *name)
{
    const char *path = getenv("PATH");
    bh_autofree char *copy = bh_xstrdup(path ? path : "/usr/bin:/bin");
    char *save = NULL;
    for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
        bh_autofree char *p = bh_xasprintf("%s/%s", dir, name);
        if (access(p, X_OK) == 0)
            return 1;
    }
    return 0;
}

/* The Dockerfile path is relative to the workloads dir and may not leave it. */
static int workload_dockerfile_path(struct bh_ctx *ctx, const char *rel, char **out,
                                    struct bh_err *err)
{
    if (!ctx->cfg.workloads_dir)
        return bh_err_set(err, BH_EINVAL,
                          "spec.image.dockerfile: no workloads directory is configured");
    if (rel[0] == '/' || strstr(rel, ".."))
        return bh_err_set(err, BH_EINVAL,
                          "spec.image.dockerfile: must be a relative path inside the workloads "
                          "directory");
    *out = bh_xasprintf("%s/%s", ctx->cfg.workloads_dir, rel);
    return 0;
}

/* buildah bud, then push into an OCI layout and import it like any other image. */
static int workload_build(struct bh_ctx *ctx, const cJSON *wl, char **ref, struct bh_err *err)
{
    const char *rel = bh_json_str(wl, "spec.image.dockerfile");
    if (!workload_find_program("buildah"))
        return bh_err_set(err, BH_EUNAVAIL,
                          "spec.image.dockerfile needs buildah, which is not installed on this "
                          "host; install it or use spec.image.ref");
    bh_autofree char *file = NULL;
    if (workload_dockerfile_path(ctx, rel, &file, err) < 0)
        return -1;
    bh_autofree char *context = bh_xstrdup(file);
    *strrchr(context, '/') = '\0';
    bh_autofree char *tag = bh_xasprintf("boilerhouse/%s:%s", bh_json_str(wl, "metadata.name"),
                                         bh_json_str(wl, "spec.version"));
    bh_autofree char *layout =
        bh_xasprintf("%s/builds/%s", ctx->cfg.state_dir, bh_json_str(wl, "metadata.name"));
    bh_autofree char *dest = bh_xasprintf("oci:%s:latest", layout);
    const char *bud[] = {"buildah", "bud", "--quiet", "-f", file, "-t", tag, context, NULL};
    const char *push[] = {"buildah", "push", "--quiet", tag, dest, NULL};
    if (bh_fs_rmtree(layout, err) < 0 || bh_proc_check(bud, err) < 0 ||
        bh_proc_check(push, err) < 0)
        return bh_err_wrap(err, "build %s", rel);
    return bh_image_import(ctx->images, layout, tag, ref, err);
}

static int workload_resolve(struct bh_ctx *ctx, cJSON *wl, struct bh_err *err)
{
    bh_autofree char *built = NULL;
    const char *ref = bh_json_str(wl, "spec.image.ref");
    if (!ref) {
        if (workload_build(ctx, wl, &built, err) < 0)
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
    const char *phase = bh_json_str(wl, "status.phase");
    long long gen = bh_json_int(wl, "metadata.generation", 0);
    int rc = 0;
    if (phase && strcmp(phase, "Ready") == 0 &&
        bh_json_int(wl, "status.observedGeneration", -1) == gen) {
        cJSON_Delete(wl);
        return 0; /* this generation is settled */
    }
    if (!phase || strcmp(phase, "Creating") != 0)
        workload_write_status(ctx, wl, "Creating", "resolving image", err);
    struct bh_err rerr = {0};
    long long t0 = bh_clock_ms();
    if (workload_resolve(ctx, wl, &rerr) < 0) {
        bh_warn("workload", "workload %s: %s", name, rerr.msg);
        rc = workload_write_status(ctx, wl, "Error", rerr.msg, err);
        *requeue_ms = WORKLOAD_RETRY_MS;
    } else {
        bh_info("workload", "workload %s ready (image %s, %lld ms)", name,
                bh_json_str(wl, "status.imageRef"), bh_clock_ms() - t0);
        rc = workload_write_status(ctx, wl, "Ready", NULL, err);
    }
    cJSON_Delete(wl);
    return rc;
}
