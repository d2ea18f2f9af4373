/* The claim controller: gives a (tenant, workload) pair its one instance, and owns the
 * claim's state machine. */
#ifndef BH_CLAIM_H
#define BH_CLAIM_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "ctx.h"
#include "err.h"

int bh_claim_reconcile(struct bh_ctx *ctx, const char *name, long *requeue_ms, struct bh_err *err);
/* Wakes everyone waiting for a claim change (called on every Claim event). */
void bh_claim_notify(struct bh_ctx *ctx);
/* Waits until the claim sequence moves past *seq or deadline_ms (bh_clock_ms) passes. */
void bh_claim_wait_change(struct bh_ctx *ctx, uint64_t *seq, long long deadline_ms);

#endif
