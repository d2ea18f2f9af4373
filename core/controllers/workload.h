/* The workload controller: resolves (pulls or builds) a workload's image and reports whether
 * instances may be built from its current generation.
 *
 * Deleting a workload is a cascade behind its finalizer (BH_RESOURCE_FINALIZER, which
 * validation adds and the controller restores): the store sets metadata.deletionTimestamp and
 * the workload turns Terminating; it takes no new claims (bh_workload_terminating); its live
 * claims are released (hibernated or destroyed as spec.idle.action says, and kept, Released)
 * by the claim controller; once none is left its pools stop refilling and drain, and any
 * other instance of it is destroyed; then the finalizer goes and the store removes it. */
#ifndef BH_WORKLOAD_H
#define BH_WORKLOAD_H

#include <cjson/cJSON.h>

#include "ctx.h"
#include "err.h"

/* Ready for the generation in its spec (status.observedGeneration caught up): only then may
 * instances be built from it, or they would carry the new generation and the old image. */
int bh_workload_ready(const cJSON *wl);
/* Being deleted: no new claims, no new instances; its claims are being released. */
int bh_workload_terminating(const cJSON *wl);
/* Waits up to timeout_ms for a deleted workload's cascade to finish. 1 when it is gone; 0 when
 * it is still there, *left (owned) the workload as it stands (status.detail says what it
 * waits for). */
int bh_workload_wait_gone(struct bh_ctx *ctx, const char *name, long long timeout_ms, cJSON **left);
int bh_workload_reconcile(struct bh_ctx *ctx, const char *name, long *requeue_ms,
                          struct bh_err *err);

#endif
