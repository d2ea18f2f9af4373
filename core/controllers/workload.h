/* The workload controller: resolves (pulls or builds) a workload's image and reports whether
 * instances may be built from its current generation. */
#ifndef BH_WORKLOAD_H
#define BH_WORKLOAD_H

#include <cjson/cJSON.h>

#include "ctx.h"
#include "err.h"

/* Ready for the generation in its spec (status.observedGeneration caught up): only then may
 * instances be built from it, or they would carry the new generation and the old image. */
int bh_workload_ready(const cJSON *wl);
int bh_workload_reconcile(struct bh_ctx *ctx, const char *name, long *requeue_ms,
                          struct bh_err *err);

#endif
