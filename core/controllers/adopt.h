/* Failover: a new leader takes over the instances its predecessor ran (operator mode,
 * docs/kubernetes-mode.md "Failover"). Instance records are each daemon's own, while a shared
 * runtime's instances (Pods) are seen by every replica: the replica that becomes the leader
 * rebuilds its records from what the runtime holds (bh_runtime_inventory) before any
 * controller runs, and deletes what nothing references any more. */
#ifndef BH_ADOPT_H
#define BH_ADOPT_H

#include "ctx.h"
#include "err.h"

/* The queue kind of an unreferenced instance to delete ("InstanceOrphan/<instance id>"). */
#define BH_ADOPT_ORPHAN_KIND "InstanceOrphan"

/* Call when this replica has become the leader, before its controllers run (ctx->standby
 * still set). Each instance the runtime holds that no record of this daemon names is:
 *  - adopted (bh_instance_adopt) when the claim it was made or taken for still names it in
 *    status.instanceId (an Active claim keeps it, a deleted or releasing one releases it
 *    through it), or when it is a ready warm member of an existing pool of its workload, built
 *    from the workload's current generation (it joins the pool);
 *  - queued for deletion (BH_ADOPT_ORPHAN_KIND) otherwise: its claim or pool or workload is
 *    gone, it is stale, it ended, or it is a boot its predecessor did not finish;
 *  - left alone when it has a record (this replica led before: nothing is adopted twice).
 * Then Active claims whose instance has no record boot again (bh_claim_recover_lost), as after
 * a restart in local mode. With a runtime that is not shared, only that last step. -1 when
 * the runtime could not be asked: nothing was changed. */
BH_MUST_CHECK int bh_adopt_run(struct bh_ctx *ctx, struct bh_err *err);

/* The reconcile of BH_ADOPT_ORPHAN_KIND keys: deletes the instance (its Pod, Service and
 * NetworkPolicy) unless a record of it has appeared since. */
int bh_adopt_reap(struct bh_ctx *ctx, const char *id, long *requeue_ms, struct bh_err *err);

#endif
