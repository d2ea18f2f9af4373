/* The claim controller: gives a (tenant, workload) pair its one instance, and owns the
 * claim's state machine. */
#ifndef BH_CLAIM_H
#define BH_CLAIM_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "ctx.h"
#include "err.h"

/* Phases of a claim (status.phase); a claim without one is Pending.
 *
 *   Pending --> Active --(idle)--> Releasing --> Released --(claimed again)--> Pending
 *      |          |                    |
 *      v          v                    v
 *    Error     Error             ReleaseFailed --(retry)--> Releasing
 *      \--(claimed again)--> Pending
 *
 * Deleting a claim (release) finalizes it from any phase: its instance is hibernated (or
 * destroyed when forced) and the claim disappears; a failed save leaves it ReleaseFailed. */
#define BH_CLAIM_PENDING "Pending"
#define BH_CLAIM_ACTIVE "Active"
#define BH_CLAIM_ERROR "Error"
#define BH_CLAIM_RELEASING "Releasing"
#define BH_CLAIM_RELEASE_FAILED "ReleaseFailed"
#define BH_CLAIM_RELEASED "Released"

/* status.reason of a claim admission control refused (status.retryAfterSeconds says when to
 * try again; nothing was made for it): too many boots and restores at once, or the tenant's
 * instance limit. Front doors answer 503 and 429 with Retry-After. */
#define BH_CLAIM_REASON_OVERLOADED "Overloaded"
#define BH_CLAIM_REASON_TENANT_LIMIT "TenantLimit"

/* The finalizer that keeps a deleted claim until its instance is saved and gone. */
#define BH_CLAIM_FINALIZER "boilerhouse.dev/cleanup"

/* A claim asked for by a front door (REST, a trigger, the Kubernetes-compatible API).
 * Tenant and workload are validated names (bh_name_tenant_valid, bh_name_label_valid). */
struct bh_claim_req {
    const char *tenant;
    const char *workload;
    /* spec.resume: 0 unset (restore the tenant's snapshot, the default), 1 true, -1 false
     * (start clean; the snapshot is kept, and replaced only when this claim's instance is
     * saved at release). */
    int resume;
    /* The workload as the front door just read it (borrowed), or NULL: spares the existing
     * claim's policy check a store read. */
    const cJSON *wl;
};

/* How a claim stands when a front door's call returns. */
struct bh_claim_answer {
    cJSON *claim;  /* owned; NULL once a release removed it */
    int existing;  /* the claim was already Active */
    int timed_out; /* the claim timeout passed first */
};

enum bh_claim_release_mode {
    BH_CLAIM_RELEASE_NORMAL, /* hibernate (or destroy, per the workload) and remove */
    BH_CLAIM_RELEASE_RETRY,  /* again after ReleaseFailed */
    BH_CLAIM_RELEASE_FORCE   /* destroy without saving, and remove */
};

/* The name of (tenant, workload)'s claim: the one it has under any name (kubectl may have
 * made it), else the default (bh_name_claim). Owned. */
char *bh_claim_name(struct bh_ctx *ctx, const char *tenant, const char *workload);
/* Finds or creates (tenant, workload)'s claim without waiting; a claim that ended (Error,
 * Released) starts over as Pending; one still being released is waited out (BH_EUNAVAIL
 * if it outlasts the claim timeout). *out owned. */
int bh_claim_ensure(struct bh_ctx *ctx, const struct bh_claim_req *req, cJSON **out,
                    struct bh_err *err);
/* bh_claim_ensure, then waits until the claim is Active or Error, or the claim timeout
 * passes. An Active claim answers at once and counts as the tenant's activity. Fails only
 * when the claim could not be made (err says why); a claim that ended in Error is an answer. */
int bh_claim_open(struct bh_ctx *ctx, const struct bh_claim_req *req, struct bh_claim_answer *ans,
                  struct bh_err *err);
/* A claim object a front door creates under a name of its choosing (the Kubernetes-compatible
 * API): adds the tenant and workload labels and the cleanup finalizer the controller relies
 * on. BH_EINVAL naming spec.tenantId for a bad tenant ID; BH_ECONFLICT if the pair already has
 * a claim, so there stays one instance per pair whichever door opened it. In place. */
int bh_claim_admit(struct bh_ctx *ctx, cJSON *claim, struct bh_err *err);
/* Begins the release mode asks for and waits until the claim is gone (ans->claim NULL),
 * ReleaseFailed, or the claim timeout passes. BH_ENOTFOUND without a claim; BH_ECONFLICT
 * for a retry of a claim that is not ReleaseFailed. */
int bh_claim_release(struct bh_ctx *ctx, const char *tenant, const char *workload,
                     enum bh_claim_release_mode mode, struct bh_claim_answer *ans,
                     struct bh_err *err);
void bh_claim_answer_free(struct bh_claim_answer *ans);

/* Startup, after bh_instance_recover: an Active claim whose instance did not survive the
 * restart goes back to Pending, so it boots again (a deleted claim's finalizer needs
 * nothing); not on a standby (operator mode), which only fills the claim index. */
int bh_claim_recover(struct bh_ctx *ctx, struct bh_err *err);
/* The same for a replica that has just become the leader, after adopting what runs
 * (bh_adopt_run): Active claims whose instance it has no record of boot again. */
int bh_claim_recover_lost(struct bh_ctx *ctx, struct bh_err *err);
int bh_claim_reconcile(struct bh_ctx *ctx, const char *name, long *requeue_ms, struct bh_err *err);
/* A Claim event from the store: updates the claim index (claim_index.h) and wakes the
 * waiters. */
struct bh_store_event;
void bh_claim_observe(struct bh_ctx *ctx, const struct bh_store_event *ev);
/* Wakes everyone waiting for a claim change (called on every Claim event). */
void bh_claim_notify(struct bh_ctx *ctx);
/* Waits until the claim sequence moves past *seq or deadline_ms (bh_clock_ms) passes. */
void bh_claim_wait_change(struct bh_ctx *ctx, uint64_t *seq, long long deadline_ms);

/* Deletes the tenant's snapshot of workload everywhere (record, hot copy, stored object).
 * BH_ECONFLICT while a claim of the pair is not Released or Error (it could save or restore
 * meanwhile); BH_ENOTFOUND if there is no snapshot. */
int bh_claim_delete_snapshot(struct bh_ctx *ctx, const char *tenant, const char *workload,
                             struct bh_err *err);

#endif
