/* The pool controller: keeps spec.size warm, healthy instances of a workload, built from its
 * current generation, and hands them to claims. */
#ifndef BH_POOL_H
#define BH_POOL_H

#include <cjson/cJSON.h>

#include "ctx.h"
#include "err.h"

int bh_pool_reconcile(struct bh_ctx *ctx, const char *name, long *requeue_ms, struct bh_err *err);
/* Takes a ready, current pool instance of the workload for tenant/claim (atomically: two
 * claims never get the same one). *out owned, or NULL when none is ready. */
int bh_pool_acquire(struct bh_ctx *ctx, const cJSON *workload, const char *tenant,
                    const char *claim, int restoring, cJSON **out, struct bh_err *err);

#endif
