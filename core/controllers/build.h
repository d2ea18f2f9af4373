/* Dockerfile builds with buildah: a workload's spec.image.dockerfile is built in its own
 * directory (the context) into boilerhouse/<name>:<version>, and imported into the image
 * store. buildah runs with argv (never a shell), on storage under <state>/buildah, with the
 * daemon's registry config and no network of its own unless the operator allows it. */
#ifndef BH_BUILD_H
#define BH_BUILD_H

#include <cjson/cJSON.h>

#include "ctx.h"
#include "err.h"

/* SHA-256 (hex[65]) of the Dockerfile's path and every entry of its context directory
 * (names, types, modes, file contents, link targets; symlinks are not followed): a
 * workload is rebuilt when this changes. */
BH_MUST_CHECK int bh_build_fingerprint(struct bh_ctx *ctx, const cJSON *wl, char hex[65],
                                       struct bh_err *err);
/* Builds the workload's Dockerfile and imports the result; *ref (owned) is its name in the
 * image store. The build's output goes to bh_build_log_path; on failure err carries its
 * last lines. */
BH_MUST_CHECK int bh_build_run(struct bh_ctx *ctx, const cJSON *wl, char **ref, struct bh_err *err);
/* Where the last build of workload `name` logged (owned; the file may not exist). */
char *bh_build_log_path(struct bh_ctx *ctx, const char *name);

#endif
