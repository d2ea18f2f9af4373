/* The claim controller: gives a (tenant, workload) pair its one instance.
 *
 * Sources, in order: `existing` (an instance this tenant already holds) then `cold` (boot).
 * The reconciler runs one reconcile per claim at a time and the claim's name is derived
 * from (tenant, workload), so concurrent claims for one pair meet on one object and yield
 * one instance. */
#include "claim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admit.h"
#include "audit.h"
#include "boots.h"
#include "claim_index.h"
#include "clock.h"
#include "crashpoint.h"
#include "crypto.h"
#include "events.h"
#include "ctx.h"
#include "hibernate.h"
#include "idle.h"
#include "instance.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "name.h"
#include "pool.h"
#include "queue.h"
#include "resource.h"
#include "runtime.h"
#include "store.h"
#include "token.h"
#include "workload.h"

#define CLAIM_KIND "BoilerhouseClaim"
#define CLAIM_WAIT_WORKLOAD_MS 500
#define CLAIM_DEFAULT_PROBE_S 10
/* Set by a forced release: the finalizer destroys the instance without saving. */
#define CLAIM_RELEASE_ANNOTATION "boilerhouse.dev/release"
#define CLAIM_TENANT_RETRY_S 10
/* How often a deleted claim whose boot is still running looks again. */
#define CLAIM_BOOT_POLL_MS 50

static const char *claim_phase(const cJSON *claim)
{
    const char *phase = bh_json_str(claim, "status.phase");
    return phase ? phase : BH_CLAIM_PENDING;
}

/* Writes status (the controller owns it; no resourceVersion check) and wakes REST waiters.
 * Lazy (not fsynced): a claim's status and its instance live no longer than this machine's
 * uptime. A daemon crash loses no committed write (it is in the OS page cache); a power loss
 * loses the instances too, and recovery reboots what their claims still ask for. What must
 * survive a power loss (resource specs, snapshot records) is written with fsync. */
static int claim_write_status(struct bh_ctx *ctx, cJSON *claim, struct bh_err *err)
{
    cJSON_DeleteItemFromObjectCaseSensitive(bh_json_obj(claim, "metadata"), "resourceVersion");
    return bh_store_update_status_lazy(ctx->store, claim, NULL, err);
}

static int claim_set_phase(struct bh_ctx *ctx, cJSON *claim, const char *phase, const char *detail,
                           struct bh_err *err)
{
    cJSON *status = bh_json_obj(claim, "status");
    const char *old_phase = bh_json_str(status, "phase");
    const char *old_detail = bh_json_str(status, "detail");
    if (old_phase && strcmp(old_phase, phase) == 0 &&
        ((!detail && !old_detail) || (detail && old_detail && strcmp(detail, old_detail) == 0)))
        return 0;
    bh_json_set_str(status, "phase", phase);
    bh_json_set_str(status, "detail", detail);
    return claim_write_status(ctx, claim, err);
}

static int claim_activate(struct bh_ctx *ctx, cJSON *claim, const cJSON *inst, const char *source,
                          struct bh_err *err)
{
    cJSON *status = bh_json_obj(claim, "status");
    char now[32];
    bh_clock_rfc3339(now);
    bh_json_set_str(status, "phase", BH_CLAIM_ACTIVE);
    bh_json_set_str(status, "detail", NULL);
    bh_json_set_str(status, "releaseReason", NULL);
    bh_json_set_str(status, "instanceId", bh_json_str(inst, "metadata.name"));
    bh_json_set_str(status, "source", source);
    bh_json_set_str(status, "claimedAt", now);
    cJSON_DeleteItemFromObjectCaseSensitive(status, "endpoint");
    const cJSON *ep = bh_json_get(inst, "status.endpoint");
    cJSON_AddItemToObject(status, "endpoint", ep ? cJSON_Duplicate(ep, 1) : cJSON_CreateObject());
    return claim_write_status(ctx, claim, err);
}

/* ---- per-claim tokens ---- */

/* Records a per-claim token's mint or revocation (ids and names only) in the audit log. */
static void claim_audit_token(struct bh_ctx *ctx, const cJSON *claim, const char *action,
                              const char *what)
{
    if (!ctx->audit)
        return;
    bh_autofree char *target =
        bh_xasprintf("%s (claim %s)", what, bh_json_str(claim, "metadata.name") ?: "?");
    struct bh_audit_rec rec = {.actor = "controller:claim",
                               .action = action,
                               .tenant = bh_json_str(claim, "spec.tenantId"),
                               .target = target,
                               .outcome = "ok"};
    struct bh_err err;
    if (bh_audit_append(ctx->audit, &rec, &err) < 0)
        bh_error("audit", "%s not recorded: %s", action, err.msg);
}

/* Revokes the claim's API tokens: at once, before its instance is saved or destroyed. */
static void claim_revoke_tokens(struct bh_ctx *ctx, const cJSON *claim)
{
    struct bh_err err;
    const char *name = bh_json_str(claim, "metadata.name");
    int n = 0;
    if (name && bh_token_revoke_claim(ctx->store, name, &n, &err) < 0)
        bh_error("claim", "claim %s: revoking its API token: %s", name, err.msg);
    else if (n) {
        bh_info("claim", "claim %s: API token revoked", name);
        claim_audit_token(ctx, claim, "token.revoke", "per-claim token");
    }
    const char *id = bh_json_str(claim, "status.instanceId");
    if (id)
        bh_instance_api_clear(ctx, id);
}

/* A workload asking for API access gets a token per claim, scoped to the claim's tenant and
 * workload, written into the instance (pool and cold alike) before the claim turns Active. */
static int claim_grant_token(struct bh_ctx *ctx, const cJSON *claim, const cJSON *wl,
                             const cJSON *inst, struct bh_err *err)
{
    if (!bh_instance_api_wanted(wl))
        return 0;
    const char *name = bh_json_str(claim, "metadata.name");
    const char *tenant = bh_json_str(claim, "spec.tenantId");
    bh_autofree char *scope = bh_xasprintf("tenant:%s", tenant);
    const char *scopes[] = {scope};
    struct bh_token_spec spec = {.name = "claim",
                                 .scopes = scopes,
                                 .n_scopes = 1,
                                 .workload = bh_json_str(wl, "metadata.name"),
                                 .claim = name,
                                 .created_by = "claim"};
    char id[BH_TOKEN_ID_LEN];
    char *secret = NULL;
    if (bh_token_revoke_claim(ctx->store, name, NULL, err) < 0 ||
        bh_token_mint(ctx->store, &spec, &secret, id, err) < 0)
        return bh_err_wrap(err, "API token");
    int rc = bh_instance_api_grant(ctx, bh_json_str(inst, "metadata.name"), secret, err);
    bh_crypto_wipe(secret, strlen(secret));
    free(secret);
    if (rc < 0)
        BH_IGNORE(bh_token_revoke(ctx->store, id, NULL)); /* the error says what failed */
    else
        claim_audit_token(ctx, claim, "token.mint", id);
    return rc;
}

/* An instance this tenant already holds for the workload, if one runs. Owned or NULL. */
static cJSON *claim_find_existing(struct bh_ctx *ctx, const char *tenant, const char *workload)
{
    bh_autofree char *sel =
        bh_xasprintf("boilerhouse.dev/tenant=%s,boilerhouse.dev/workload=%s", tenant, workload);
    cJSON *list = NULL, *found = NULL;
    struct bh_err err;
    if (bh_store_list(ctx->store, "Instance", sel, &list, NULL, &err) < 0)
        return NULL;
    const cJSON *inst;
    cJSON_ArrayForEach(inst, list) {
        const char *phase = bh_json_str(inst, "status.phase");
        if (phase && strcmp(phase, "Running") == 0 && !bh_json_label(inst, BH_LABEL_RESTORING) &&
            bh_instance_alive(ctx, inst)) {
            found = cJSON_Duplicate(inst, 1);
            break;
        }
    }
    cJSON_Delete(list);
    return found;
}

/* The claim's workload as its claim policy adjusted it (bh_admit_apply). Owned or NULL. */
static cJSON *claim_workload(struct bh_ctx *ctx, const cJSON *claim)
{
    cJSON *wl = NULL;
    struct bh_err gerr;
    if (bh_store_get(ctx->store, "BoilerhouseWorkload", bh_json_str(claim, "spec.workloadRef"), &wl,
                     &gerr) < 0)
        return NULL;
    bh_admit_apply(claim, wl);
    return wl;
}

/* Loads the workload a claim refers to, once it is Ready. Sets the claim's phase and returns
 * NULL when it is missing, failed, or still being prepared (then *requeue_ms is set). */
static cJSON *claim_ready_workload(struct bh_ctx *ctx, cJSON *claim, long *requeue_ms,
                                   struct bh_err *err)
{
    const char *name = bh_json_str(claim, "spec.workloadRef");
    cJSON *wl = NULL;
    struct bh_err gerr;
    if (bh_store_get(ctx->store, "BoilerhouseWorkload", name, &wl, &gerr) < 0) {
        bh_autofree char *msg = bh_xasprintf("workload %s not found", name);
        claim_set_phase(ctx, claim, BH_CLAIM_ERROR, msg, err);
        return NULL;
    }
    if (bh_workload_ready(wl))
        return wl;
    const char *phase = bh_json_str(wl, "status.phase");
    if (bh_workload_terminating(wl)) {
        bh_autofree char *msg = bh_xasprintf("workload %s is being deleted", name);
        claim_set_phase(ctx, claim, BH_CLAIM_ERROR, msg, err);
    } else if (phase && strcmp(phase, "Error") == 0) {
        bh_autofree char *msg =
            bh_xasprintf("workload %s is not ready: %s", name, bh_json_str(wl, "status.detail"));
        claim_set_phase(ctx, claim, BH_CLAIM_ERROR, msg, err);
    } else {
        claim_set_phase(ctx, claim, BH_CLAIM_PENDING, "waiting for the workload to become ready",
                        err);
        *requeue_ms = CLAIM_WAIT_WORKLOAD_MS;
    }
    cJSON_Delete(wl);
    return NULL;
}

/* Takes a warm pool instance and, if the tenant has a snapshot, restores it while the
 * instance runs (frozen meanwhile). A failed restore never reports success: the instance is
 * destroyed and the claim says why. */
static int claim_from_pool(struct bh_ctx *ctx, cJSON *claim, const cJSON *wl, const cJSON *snap,
                           cJSON **inst, const char **source, struct bh_err *err)
{
    const char *tenant = bh_json_str(claim, "spec.tenantId");
    if (bh_pool_acquire(ctx, wl, tenant, bh_json_str(claim, "metadata.name"), snap != NULL, inst,
                        err) < 0)
        return -1;
    if (!*inst)
        return 0;
    const char *id = bh_json_str(*inst, "metadata.name");
    *source = "pool";
    int rc = bh_instance_bind_tenant(ctx, *inst, wl, tenant, err);
    if (rc == 0 && snap) {
        *source = "pool+data";
        bh_autofree char *cid = bh_runtime_container_id(id);
        bh_autofree char *rootfs = bh_instance_rootfs(ctx, id);
        struct bh_err rerr;
        rc = bh_runtime_pause(ctx->runtime, cid, err);
        if (rc == 0) {
            bh_crashpoint("restore.pool");
            rc = bh_hibernate_restore(ctx, wl, snap, rootfs, err);
            if (bh_runtime_resume(ctx->runtime, cid, &rerr) < 0 && rc == 0)
                rc = (*err = rerr, -1);
        }
        if (rc == 0) { /* the data is in: now it is the tenant's instance */
            cJSON_DeleteItemFromObjectCaseSensitive(bh_json_obj(*inst, "metadata.labels"),
                                                    BH_LABEL_RESTORING);
            rc = bh_store_update_lazy(ctx->store, *inst, NULL, err);
        }
    }
    if (rc < 0) {
        struct bh_err derr;
        bh_instance_destroy(ctx, id, &derr);
        cJSON_Delete(*inst);
        *inst = NULL;
    }
    return rc;
}

/* Tells operators how a claim was served (or why not) and how long the controller took. */
static void claim_publish(struct bh_ctx *ctx, const cJSON *claim, const char *source, long long t0,
                          const char *error)
{
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "claim", bh_json_str(claim, "metadata.name"));
    cJSON_AddStringToObject(d, "source", source);
    cJSON_AddNumberToObject(d, "latencyMs", (double)(bh_clock_ms() - t0));
    if (error)
        cJSON_AddStringToObject(d, "error", error);
    else
        cJSON_AddStringToObject(d, "instanceId", bh_json_str(claim, "status.instanceId"));
    bh_events_publish(ctx->events, error ? BH_EVT_CLAIM_FAILED : BH_EVT_CLAIMED,
                      bh_json_str(claim, "spec.workloadRef"), bh_json_str(claim, "spec.tenantId"),
                      d);
}

/* Stamps the labels a policy asked for on the claim (metadata, so selectors find it). */
static int claim_stamp_labels(struct bh_ctx *ctx, cJSON *claim, const cJSON *labels,
                              struct bh_err *err)
{
    if (!labels || !labels->child)
        return 0;
    cJSON *md = bh_json_obj(claim, "metadata");
    cJSON *mine = bh_json_obj(md, "labels");
    for (const cJSON *l = labels->child; l; l = l->next)
        bh_json_set_str(mine, l->string, l->valuestring);
    cJSON_DeleteItemFromObjectCaseSensitive(md, "resourceVersion");
    return bh_store_update_lazy(ctx->store, claim, NULL, err);
}

/* Ends a claim that admission control refused: Error with a reason and a retry hint; nothing
 * was made for it, and it boots nothing until it is claimed again. */
static int claim_refuse(struct bh_ctx *ctx, cJSON *claim, const char *reason, int retry_s,
                        const char *detail, struct bh_err *err)
{
    bh_info("claim", "claim %s refused: %s", bh_json_str(claim, "metadata.name"), detail);
    cJSON *status = bh_json_obj(claim, "status");
    bh_json_set_str(status, "reason", reason);
    bh_json_set_num(status, "retryAfterSeconds", retry_s);
    cJSON_DeleteItemFromObjectCaseSensitive(status, "policy"); /* not admitted */
    return claim_set_phase(ctx, claim, BH_CLAIM_ERROR, detail, err);
}

/* Claims of the tenant other than claim that hold an instance or are admitted to get one. */
static int claim_tenant_holding(struct bh_ctx *ctx, const cJSON *claim)
{
    static const char *const holding[] = {BH_CLAIM_PENDING, BH_CLAIM_ACTIVE, BH_CLAIM_RELEASING,
                                          BH_CLAIM_RELEASE_FAILED};
    bh_autofree char *sel =
        bh_xasprintf("boilerhouse.dev/tenant=%s", bh_json_str(claim, "spec.tenantId"));
    cJSON *list = NULL;
    struct bh_err err;
    if (bh_store_list(ctx->store, CLAIM_KIND, sel, &list, NULL, &err) < 0)
        return 0;
    const char *me = bh_json_str(claim, "metadata.name");
    int n = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, list) {
        const char *phase = claim_phase(c);
        /* A Pending claim counts once admitted: the ones not yet admitted come after us. */
        int counts = strcmp(phase, BH_CLAIM_PENDING) != 0 || bh_json_get(c, "status.policy");
        for (size_t i = 0; counts && i < BH_ARRAY_LEN(holding); i++)
            if (strcmp(phase, holding[i]) == 0 && strcmp(bh_json_str(c, "metadata.name"), me)) {
                n++;
                break;
            }
    }
    cJSON_Delete(list);
    return n;
}

/* The claim policy's decision, taken once per claim (Pending, before anything is spent on it)
 * whatever front door made it: kubectl's claims arrive only here. Returns 1 admitted (the
 * decision is on the claim in memory, status.policy), 0 denied (the claim is in Error, the
 * reason in its detail), -1 on error. The tenant's admissions run one at a time, so that its
 * limit and its policy count the claims admitted before; claim policies run one at a time.
 *
 * An admitted claim's record is not written here: *held is the tenant's admission lock, left
 * held, and the claim's next status write carries the record (claim_admit_record, or the
 * Active or Error of a claim answered at once: one write instead of two on the pool path).
 * The tenant's next admission waits for that write, so it counts this claim. */
static int claim_admit(struct bh_ctx *ctx, cJSON *claim, const cJSON *wl, pthread_mutex_t **held,
                       struct bh_err *err)
{
    *held = NULL;
    if (bh_json_get(claim, "status.policy"))
        return 1;
    struct bh_admit a = {0};
    pthread_mutex_t *tenant_lock = bh_admit_tenant_lock(ctx, bh_json_str(claim, "spec.tenantId"));
    pthread_mutex_lock(tenant_lock);
    int limit = ctx->cfg.max_tenant_instances,
        holding = limit > 0 ? claim_tenant_holding(ctx, claim) : 0;
    if (limit > 0 && holding >= limit) {
        bh_autofree char *msg = bh_xasprintf(
            "tenant %s already holds %d instances (the limit per tenant is %d): release one first",
            bh_json_str(claim, "spec.tenantId"), holding, limit);
        int rc =
            claim_refuse(ctx, claim, BH_CLAIM_REASON_TENANT_LIMIT, CLAIM_TENANT_RETRY_S, msg, err);
        pthread_mutex_unlock(tenant_lock);
        return rc < 0 ? -1 : 0;
    }
    pthread_mutex_lock(&ctx->admit_lock);
    int rc = bh_admit_decide(ctx, claim, wl, &a, err);
    pthread_mutex_unlock(&ctx->admit_lock);
    if (rc == 0 && a.allow) {
        rc = claim_stamp_labels(ctx, claim, bh_json_get(a.record, "overrides.labels"), err);
        cJSON_AddItemToObject(bh_json_obj(claim, "status"), "policy", BH_STEAL(a.record));
        if (rc == 0) {
            bh_admit_free(&a);
            *held = tenant_lock;
            return 1;
        }
    } else if (rc == 0) {
        bh_warn("claim", "claim %s denied: %s", bh_json_str(claim, "metadata.name"), a.reason);
        bh_json_set_str(bh_json_obj(claim, "status"), "reason",
                        a.failed ? "PolicyFailed" : "PolicyDenied");
        rc = claim_set_phase(ctx, claim, BH_CLAIM_ERROR, a.reason, err);
    }
    pthread_mutex_unlock(tenant_lock);
    bh_admit_free(&a);
    return rc;
}

/* Writes the admission record claim_admit left for a later write (*held set) and lets the
 * tenant's next admission go: before a step that takes long (a boot, a restore). */
static int claim_admit_record(struct bh_ctx *ctx, cJSON *claim, pthread_mutex_t **held,
                              struct bh_err *err)
{
    if (!*held)
        return 0;
    int rc = claim_write_status(ctx, claim, err);
    pthread_mutex_unlock(*held);
    *held = NULL;
    return rc;
}

/* The end of a claim's Pending step: Active on inst (rc 0), or Error saying why (cerr). */
static int claim_conclude(struct bh_ctx *ctx, cJSON *claim, const cJSON *wl, int rc,
                          const cJSON *inst, const char *source, long long t0, struct bh_err *cerr,
                          struct bh_err *err)
{
    struct bh_err serr;
    if (rc == 0 && claim_grant_token(ctx, claim, wl, inst, cerr) < 0) {
        rc = -1;
        if (strcmp(source, "existing") != 0) /* an instance made for this claim goes with it */
            BH_IGNORE(bh_instance_destroy(ctx, bh_json_str(inst, "metadata.name"), &serr));
    }
    if (rc < 0) {
        bh_warn("claim", "claim %s: %s", bh_json_str(claim, "metadata.name"), cerr->msg);
        rc = claim_set_phase(ctx, claim, BH_CLAIM_ERROR, cerr->msg, err);
        claim_publish(ctx, claim, source, t0, cerr->msg);
        return rc;
    }
    /* A pool take stamped the activity in its own write (pool.c). */
    if (strcmp(source, "pool") != 0)
        bh_idle_touch(ctx, bh_json_str(inst, "metadata.name"), &serr);
    rc = claim_activate(ctx, claim, inst, source, err);
    claim_publish(ctx, claim, source, t0, rc < 0 ? err->msg : NULL);
    return rc;
}

/* The claim's cold boot on its own thread (boots.c): 0 none; 1 it runs, or it finished and
 * the claim took its outcome (*rc). */
static int claim_boot_outcome(struct bh_ctx *ctx, cJSON *claim, int *rc, struct bh_err *err)
{
    cJSON *inst = NULL;
    bh_autofree char *error = NULL;
    bh_autofree char *source = NULL;
    long long t0 = 0;
    int state = bh_boots_result(ctx->boots, bh_json_str(claim, "metadata.name"), &inst, &error,
                                &source, &t0);
    *rc = 0;
    if (state == 2) {
        struct bh_err cerr = {0};
        if (!inst)
            bh_err_set(&cerr, BH_EIO, "%s", error ? error : "boot failed");
        cJSON *wl = claim_workload(ctx, claim);
        *rc = claim_conclude(ctx, claim, wl, inst ? 0 : -1, inst, source, t0, &cerr, err);
        cJSON_Delete(wl);
        cJSON_Delete(inst);
    }
    return state != 0;
}

/* Takes a boot slot for this claim, or refuses the claim (returns 0; *rc its outcome). */
static int claim_take_slot(struct bh_ctx *ctx, cJSON *claim, int *rc, struct bh_err *err)
{
    int retry_s, busy;
    if (bh_boots_take(ctx->boots, &retry_s, &busy))
        return 1;
    bh_autofree char *msg = bh_xasprintf(
        "%d instances are booting or restoring, the most this daemon runs at once: retry in %d s",
        busy, retry_s);
    *rc = claim_refuse(ctx, claim, BH_CLAIM_REASON_OVERLOADED, retry_s, msg, err);
    return 0;
}

/* Boots a fresh instance for the claim, holding a slot: on a thread of its own when there is
 * a boot registry (the claim stays Pending until it is done), else here. Returns 1 when the
 * boot went off to its thread. */
static int claim_boot(struct bh_ctx *ctx, cJSON *claim, const cJSON *wl, const cJSON *snap,
                      const char *source, cJSON **inst, struct bh_err *cerr, int *rc)
{
    struct bh_err serr;
    claim_set_phase(ctx, claim, BH_CLAIM_PENDING, "booting an instance", &serr);
    struct bh_boot_req req = {.workload = wl,
                              .tenant = bh_json_str(claim, "spec.tenantId"),
                              .claim = bh_json_str(claim, "metadata.name"),
                              .snapshot = snap};
    if (ctx->boots) {
        bh_boots_start(ctx, &req, source);
        return 1;
    }
    *rc = bh_instance_boot(ctx, &req, inst, cerr);
    return 0;
}

static int claim_pending(struct bh_ctx *ctx, cJSON *claim, long *requeue_ms, struct bh_err *err)
{
    long long t0 = bh_clock_ms();
    int rc = 0;
    if (claim_boot_outcome(ctx, claim, &rc, err))
        return rc;
    cJSON *wl = claim_ready_workload(ctx, claim, requeue_ms, err);
    pthread_mutex_t *held = NULL; /* the admission record is still to be written */
    int admitted = wl ? claim_admit(ctx, claim, wl, &held, err) : 0;
    if (admitted <= 0) {
        cJSON_Delete(wl);
        return admitted;
    }
    bh_admit_apply(claim, wl);
    const char *tenant = bh_json_str(claim, "spec.tenantId");
    const char *wname = bh_json_str(wl, "metadata.name");
    const char *source = "existing";
    cJSON *snap = NULL;
    struct bh_err serr, cerr = {0};
    cJSON *inst = claim_find_existing(ctx, tenant, wname);
    /* resume: false starts clean: the snapshot is neither restored nor deleted. */
    int clean = cJSON_IsFalse(bh_json_get(claim, "spec.resume"));
    int unreadable = 0;
    if (!inst && !clean && bh_hibernate_record(ctx, tenant, wname, &snap, &serr) < 0) {
        snap = NULL;
        /* A record in shared storage that cannot be read now: starting clean would let the
         * next hibernate replace the tenant's data. The claim fails and can be retried. */
        unreadable = serr.code == BH_EUNAVAIL;
    }
    const char *want = bh_admit_source(claim);
    /* A restore (into a pool instance or a fresh one) takes a slot from the start. */
    if (!inst && snap && claim_admit_record(ctx, claim, &held, err) < 0) {
        rc = -1;
        goto out;
    }
    int slot = !inst && snap ? claim_take_slot(ctx, claim, &rc, err) : 0;
    if (!inst && snap && !slot)
        goto out;
    /* Some snapshots only go in as an instance boots (bh_hibernate_at_boot): no pool then. */
    rc = unreadable ? (cerr = serr, -1)
         : inst || (want && strcmp(want, "cold") == 0) || bh_hibernate_at_boot(ctx, snap)
             ? 0
             : claim_from_pool(ctx, claim, wl, snap, &inst, &source, &cerr);
    if (rc == 0 && !inst) {
        source = snap ? "cold+data" : "cold";
        if (claim_admit_record(ctx, claim, &held, err) < 0) {
            rc = -1;
            goto out;
        }
        if (!slot && !(slot = claim_take_slot(ctx, claim, &rc, err)))
            goto out;
        if (claim_boot(ctx, claim, wl, snap, source, &inst, &cerr, &rc))
            goto out; /* the slot went with the boot */
    }
    if (slot)
        bh_boots_give(ctx->boots, bh_clock_ms() - t0);
    /* Answered at once (existing, pool): the Active or Error write carries the record. */
    rc = claim_conclude(ctx, claim, wl, rc, inst, source, t0, &cerr, err);
out:
    if (held)
        pthread_mutex_unlock(held);
    cJSON_Delete(inst);
    cJSON_Delete(snap);
    cJSON_Delete(wl);
    return rc;
}

/* Probes an active claim's instance; after unhealthyThreshold consecutive failures the
 * instance is torn down and the claim reports why. Returns 1 if it did that. */
static int claim_check_health(struct bh_ctx *ctx, cJSON *claim, cJSON *inst, const cJSON *wl,
                              struct bh_err *err)
{
    const char *id = bh_json_str(inst, "metadata.name");
    bh_autofree char *log = bh_instance_log_path(ctx, id);
    struct bh_err rerr;
    if (bh_runtime_log_rotate(log, ctx->cfg.log_cap, &rerr) < 0)
        bh_warn("claim", "log rotation for %s: %s", id, rerr.msg);
    if (!bh_json_get(wl, "spec.health"))
        return 0;
    struct bh_err perr = {0};
    int healthy =
        bh_instance_probe(ctx, wl, id, (int)bh_json_int(inst, "status.pid", 0), &perr) == 0;
    cJSON *status = bh_json_obj(inst, "status");
    long long fails = healthy ? 0 : bh_json_int(status, "consecutiveFailures", 0) + 1;
    bh_json_set_num(status, "consecutiveFailures", (double)fails);
    long long threshold = bh_json_int(wl, "spec.health.unhealthyThreshold", 3);
    if (fails < threshold)
        return 0;
    bh_autofree char *msg =
        bh_xasprintf("instance %s failed %lld health checks: %s", id, fails, perr.msg);
    claim_revoke_tokens(ctx, claim);
    if (bh_instance_destroy(ctx, id, err) < 0)
        return -1;
    return claim_set_phase(ctx, claim, BH_CLAIM_ERROR, msg, err) < 0 ? -1 : 1;
}

/* The instance a claim holds: its recorded one, or, when the claim never recorded it (a
 * crash or failure between taking an instance and turning Active), the one made or taken
 * for this claim. Owned or NULL. */
static char *claim_held_instance(struct bh_ctx *ctx, const cJSON *claim)
{
    const char *id = bh_json_str(claim, "status.instanceId");
    if (id)
        return bh_xstrdup(id);
    bh_autofree char *sel =
        bh_xasprintf("boilerhouse.dev/tenant=%s,boilerhouse.dev/workload=%s",
                     bh_json_str(claim, "spec.tenantId"), bh_json_str(claim, "spec.workloadRef"));
    cJSON *list = NULL, *inst;
    char *found = NULL;
    struct bh_err err;
    if (bh_store_list(ctx->store, "Instance", sel, &list, NULL, &err) < 0)
        return NULL;
    const char *name = bh_json_str(claim, "metadata.name");
    cJSON_ArrayForEach(inst, list) {
        const char *owner = bh_json_str(inst, "spec.claim");
        if (!found && owner && strcmp(owner, name) == 0)
            found = bh_xstrdup(bh_json_str(inst, "metadata.name"));
    }
    cJSON_Delete(list);
    return found;
}

/* Hibernates (or destroys) the claim's instance. force skips saving. */
static int claim_release_instance(struct bh_ctx *ctx, cJSON *claim, int force, struct bh_err *err)
{
    claim_revoke_tokens(ctx, claim);
    bh_autofree char *id = claim_held_instance(ctx, claim);
    const char *tenant = bh_json_str(claim, "spec.tenantId");
    cJSON *inst = NULL;
    struct bh_err gerr;
    /* A deleted workload is released without saving; a failed read is not "deleted": the
     * release fails (retried with backoff) rather than destroying unsaved tenant data. */
    cJSON *wl = NULL;
    int rc = bh_store_get(ctx->store, "BoilerhouseWorkload", bh_json_str(claim, "spec.workloadRef"),
                          &wl, err);
    if (rc < 0 && err->code == BH_ENOTFOUND)
        rc = 0;
    bh_admit_apply(claim, wl);
    int live = id && bh_store_get(ctx->store, "Instance", id, &inst, &gerr) == 0 &&
               bh_instance_alive(ctx, inst);
    /* A half-restored instance is never saved over the tenant's good snapshot. */
    if (rc == 0 && live && wl && !force && bh_hibernate_wanted(wl) &&
        !bh_json_label(inst, BH_LABEL_RESTORING))
        rc = bh_hibernate_save(ctx, wl, tenant, id, err);
    const char *action = bh_json_str(wl, "spec.idle.action");
    if (rc == 0 && action && strcmp(action, "destroy") == 0)
        rc = bh_hibernate_forget(ctx, tenant, bh_json_str(claim, "spec.workloadRef"), err);
    if (rc == 0)
        bh_crashpoint("release.before-destroy");
    if (rc == 0 && id)
        rc = bh_instance_destroy(ctx, id, err);
    cJSON_Delete(wl);
    cJSON_Delete(inst);
    if (rc < 0) {
        struct bh_err serr;
        claim_set_phase(ctx, claim, BH_CLAIM_RELEASE_FAILED, err->msg, &serr);
    }
    return rc; /* a failure is retried with backoff; the instance keeps running meanwhile */
}

/* Releases but keeps the claim (phase Released) so the tenant's next claim restores; detail
 * says why, reason (status.releaseReason: BH_RELEASE_*) says it for the events and the
 * metric's variant. */
static int claim_release_keep(struct bh_ctx *ctx, cJSON *claim, const char *reason,
                              const char *detail, struct bh_err *err)
{
    if (claim_set_phase(ctx, claim, BH_CLAIM_RELEASING, detail, err) < 0 ||
        claim_release_instance(ctx, claim, 0, err) < 0)
        return -1;
    cJSON *status = bh_json_obj(claim, "status");
    cJSON_DeleteItemFromObjectCaseSensitive(status, "instanceId");
    cJSON_DeleteItemFromObjectCaseSensitive(status, "endpoint");
    bh_json_set_str(status, "releaseReason", reason);
    bh_info("claim", "claim %s released after %s", bh_json_str(claim, "metadata.name"), detail);
    return claim_set_phase(ctx, claim, BH_CLAIM_RELEASED, detail, err);
}

/* Idle timeout: released, kept. */
static int claim_release_idle(struct bh_ctx *ctx, cJSON *claim, const cJSON *wl, struct bh_err *err)
{
    const char *action = bh_json_str(wl, "spec.idle.action");
    bh_autofree char *detail = bh_xasprintf("idle timeout (%s)", action ? action : "hibernate");
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "claim", bh_json_str(claim, "metadata.name"));
    cJSON_AddStringToObject(d, "action", action ? action : "hibernate");
    bh_events_publish(ctx->events, BH_EVT_IDLE_TIMEOUT, bh_json_str(claim, "spec.workloadRef"),
                      bh_json_str(claim, "spec.tenantId"), d);
    return claim_release_keep(ctx, claim, BH_RELEASE_IDLE, detail, err);
}

/* The workload is being deleted: its claim is released as an idle one would be (saved or
 * destroyed per spec.idle.action) and kept, Released, with the tenant's snapshot. */
static int claim_release_terminating(struct bh_ctx *ctx, cJSON *claim, const cJSON *wl,
                                     struct bh_err *err)
{
    const char *action = bh_json_str(wl, "spec.idle.action");
    bh_autofree char *detail =
        bh_xasprintf("workload %s is being deleted (%s)", bh_json_str(wl, "metadata.name"),
                     action ? action : "hibernate");
    return claim_release_keep(ctx, claim, BH_RELEASE_WORKLOAD_DELETED, detail, err);
}

/* A claim that turned Active less than one check period ago (the shortest of its health
 * interval, its idle timeout and the idle sampling period) is not probed or sampled yet:
 * its instance was healthy when handed out (a pool member is ready, a boot waits for its
 * probe), and the reconcile its own Active write queued would otherwise probe it at once,
 * beside the claims of a burst being answered. Returns 1 and sets *requeue_ms to the rest of
 * the period if so. claimedAt has whole seconds: the wait errs short, never long. */
static int claim_checks_wait(const cJSON *claim, const cJSON *wl, long *requeue_ms)
{
    long long period = bh_json_int(wl, "spec.health.intervalSeconds", CLAIM_DEFAULT_PROBE_S) * 1000;
    long long timeout = bh_json_int(wl, "spec.idle.timeoutSeconds", 0) * 1000;
    if (timeout > 0 && timeout < period)
        period = timeout;
    if (bh_idle_sample_interval_ms() < period)
        period = bh_idle_sample_interval_ms();
    long long at = bh_clock_parse_rfc3339(bh_json_str(claim, "status.claimedAt"));
    long long since = at < 0 ? period : bh_clock_wall_ms() - at;
    if (since < 0 || since >= period)
        return 0;
    *requeue_ms = (long)(period - since);
    return 1;
}

static int claim_active(struct bh_ctx *ctx, cJSON *claim, long *requeue_ms, struct bh_err *err)
{
    const char *id = bh_json_str(claim, "status.instanceId");
    cJSON *inst = NULL, *wl = NULL;
    struct bh_err gerr;
    /* Just turned Active (the reconcile its own write queued): the instance was alive when it
     * was handed out, so neither it nor its liveness is read yet; a deleted workload is. */
    if ((wl = claim_workload(ctx, claim)) != NULL && !bh_workload_terminating(wl) &&
        claim_checks_wait(claim, wl, requeue_ms)) {
        cJSON_Delete(wl);
        return 0;
    }
    cJSON_Delete(wl);
    wl = NULL;
    if (!id || bh_store_get(ctx->store, "Instance", id, &inst, &gerr) < 0 ||
        !bh_instance_alive(ctx, inst)) {
        bh_autofree char *msg = bh_xasprintf("instance %s is no longer running", id ? id : "?");
        claim_revoke_tokens(ctx, claim);
        if (inst)
            bh_instance_destroy(ctx, id, &gerr);
        cJSON_Delete(inst);
        return claim_set_phase(ctx, claim, BH_CLAIM_ERROR, msg, err);
    }
    int rc = 0;
    if ((wl = claim_workload(ctx, claim)) != NULL && bh_workload_terminating(wl)) {
        rc = claim_release_terminating(ctx, claim, wl, err);
    } else if (wl) {
        rc = claim_check_health(ctx, claim, inst, wl, err);
        long long next =
            bh_json_int(wl, "spec.health.intervalSeconds", CLAIM_DEFAULT_PROBE_S) * 1000;
        long long timeout = bh_json_int(wl, "spec.idle.timeoutSeconds", 0) * 1000;
        long long idle_ms = 0;
        if (rc == 0 && timeout > 0 && bh_idle_sample(ctx, inst, wl, &idle_ms, err) == 0) {
            if (idle_ms >= timeout)
                rc = claim_release_idle(ctx, claim, wl, err);
            else if (timeout - idle_ms < next)
                next = timeout - idle_ms;
            if (bh_idle_sample_interval_ms() < next)
                next = bh_idle_sample_interval_ms();
        } else if (rc == 0 && bh_store_update_status_lazy(ctx->store, inst, NULL, err) < 0) {
            /* A concurrent touch moved the record on; the next check recounts. */
            rc = err->code == BH_ECONFLICT ? 0 : -1;
        }
        *requeue_ms = next;
    }
    cJSON_Delete(wl);
    cJSON_Delete(inst);
    return rc < 0 ? -1 : 0;
}

/* Release: save/destroy the instance, then drop our finalizer so the store removes the
 * claim. A save that fails keeps the finalizer (and the instance), and is retried. */
static int claim_finalize(struct bh_ctx *ctx, cJSON *claim, struct bh_err *err)
{
    const cJSON *ann = bh_json_get(claim, "metadata.annotations");
    const cJSON *force = cJSON_GetObjectItemCaseSensitive(ann, CLAIM_RELEASE_ANNOTATION);
    int forced = cJSON_IsString(force) && strcmp(force->valuestring, "force") == 0;
    if (claim_release_instance(ctx, claim, forced, err) < 0)
        return -1;
    cJSON *md = bh_json_obj(claim, "metadata");
    cJSON_DeleteItemFromObjectCaseSensitive(md, "finalizers");
    cJSON_DeleteItemFromObjectCaseSensitive(md, "resourceVersion");
    return bh_store_update(ctx->store, claim, NULL, err);
}

/* An idle release that failed or was cut short by a restart: finish it. */
static int claim_releasing(struct bh_ctx *ctx, cJSON *claim, long *requeue_ms, struct bh_err *err)
{
    cJSON *wl = claim_workload(ctx, claim);
    if (!wl)
        return 0; /* the workload's return re-enqueues its claims */
    int rc = bh_workload_terminating(wl) ? claim_release_terminating(ctx, claim, wl, err)
                                         : claim_release_idle(ctx, claim, wl, err);
    cJSON_Delete(wl);
    return rc;
}

static int claim_has_finalizer(const cJSON *claim)
{
    const cJSON *f;
    cJSON_ArrayForEach(f, bh_json_get(claim, "metadata.finalizers")) {
        if (cJSON_IsString(f) && strcmp(f->valuestring, BH_CLAIM_FINALIZER) == 0)
            return 1;
    }
    return 0;
}

static int claim_label_is(const cJSON *claim, const char *label, const char *value)
{
    const char *v = bh_json_label(claim, label);
    return v && strcmp(v, value) == 0;
}

/* A claim that never passed bh_claim_admit (made in the cluster, in operator mode) gets the
 * pair's labels and the finalizer before anything boots for it, as the Kubernetes-compatible
 * API's admission gives them: the finalizer makes its deletion wait for the release, the
 * labels let the pair's selectors find it. 1 when it was written (its event brings the claim
 * back here), 0 when it had them. */
static int claim_keep_marks(struct bh_ctx *ctx, cJSON *claim, struct bh_err *err)
{
    const char *tenant = bh_json_str(claim, "spec.tenantId");
    const char *workload = bh_json_str(claim, "spec.workloadRef");
    if (!tenant || !workload ||
        (claim_has_finalizer(claim) && claim_label_is(claim, "boilerhouse.dev/tenant", tenant) &&
         claim_label_is(claim, "boilerhouse.dev/workload", workload)))
        return 0;
    cJSON *md = bh_json_obj(claim, "metadata");
    cJSON *labels = bh_json_obj(md, "labels");
    bh_json_set_str(labels, "boilerhouse.dev/tenant", tenant);
    bh_json_set_str(labels, "boilerhouse.dev/workload", workload);
    cJSON *fin = cJSON_GetObjectItemCaseSensitive(md, "finalizers");
    if (!cJSON_IsArray(fin)) {
        cJSON_DeleteItemFromObjectCaseSensitive(md, "finalizers");
        fin = cJSON_AddArrayToObject(md, "finalizers");
    }
    if (!claim_has_finalizer(claim))
        cJSON_AddItemToArray(fin, cJSON_CreateString(BH_CLAIM_FINALIZER));
    /* resourceVersion kept: a concurrent edit wins, and its event brings us back. */
    if (bh_store_update(ctx->store, claim, NULL, err) < 0 && err->code != BH_ECONFLICT)
        return -1;
    return 1;
}

/* What the controller does in each phase. Error and Released wait for a front door to claim
 * again (bh_claim_ensure); a deleted claim is finalized whatever its phase. */
static const struct {
    const char *phase;
    int (*step)(struct bh_ctx *ctx, cJSON *claim, long *requeue_ms, struct bh_err *err);
} claim_steps[] = {
    {BH_CLAIM_PENDING, claim_pending},
    {BH_CLAIM_ACTIVE, claim_active},
    {BH_CLAIM_RELEASING, claim_releasing},
    {BH_CLAIM_RELEASE_FAILED, claim_releasing},
};

/* A claim the front door has just created, handed to the first step it runs itself on this
 * thread (bh_claim_open): that reconcile starts from it instead of reading it back. The key
 * was reserved before the write, so no other reconcile of it ran since; a change by another
 * writer meanwhile requeues the key, as it would after a read. */
static __thread cJSON *claim_fresh;

/* The claim to reconcile (owned): claim_fresh if it is name's, else as stored. */
static int claim_load(struct bh_ctx *ctx, const char *name, cJSON **claim, struct bh_err *err)
{
    cJSON *fresh = BH_STEAL(claim_fresh);
    if (fresh && strcmp(bh_json_str(fresh, "metadata.name"), name) == 0) {
        *claim = fresh;
        return 0;
    }
    cJSON_Delete(fresh);
    return bh_store_get(ctx->store, CLAIM_KIND, name, claim, err);
}

int bh_claim_reconcile(struct bh_ctx *ctx, const char *name, long *requeue_ms, struct bh_err *err)
{
    cJSON *claim = NULL;
    if (claim_load(ctx, name, &claim, err) < 0)
        return err->code == BH_ENOTFOUND ? 0 : -1;
    const char *phase = claim_phase(claim);
    int rc = 0, booting = 0;
    if (bh_json_get(claim, "metadata.deletionTimestamp")) {
        /* An admitted boot completes first; then the release takes its instance down. */
        cJSON *inst = NULL;
        char *error = NULL, *source = NULL;
        long long t0;
        booting = bh_boots_result(ctx->boots, name, &inst, &error, &source, &t0) == 1;
        cJSON_Delete(inst);
        free(error);
        free(source);
    }
    if (booting)
        *requeue_ms = CLAIM_BOOT_POLL_MS;
    else if (bh_json_get(claim, "metadata.deletionTimestamp"))
        rc = claim_finalize(ctx, claim, err);
    else if ((rc = claim_keep_marks(ctx, claim, err)) != 0)
        rc = rc < 0 ? -1 : 0;
    else
        for (size_t i = 0; i < BH_ARRAY_LEN(claim_steps); i++)
            if (strcmp(phase, claim_steps[i].phase) == 0) {
                /* One step per pass: a step may replace status.phase, which phase borrows. */
                rc = claim_steps[i].step(ctx, claim, requeue_ms, err);
                break;
            }
    cJSON_Delete(claim);
    return rc;
}

/* What the claim index keeps: the claim is Active and not being released. */
static int claim_indexed_active(const cJSON *claim)
{
    return strcmp(claim_phase(claim), BH_CLAIM_ACTIVE) == 0 &&
           !bh_json_get(claim, "metadata.deletionTimestamp");
}

void bh_claim_observe(struct bh_ctx *ctx, const struct bh_store_event *ev)
{
    bh_claim_index_observe(ctx->claim_index, ev->object, ev->rv,
                           ev->type != BH_EV_DELETED && claim_indexed_active(ev->object));
    bh_claim_notify(ctx);
}

void bh_claim_notify(struct bh_ctx *ctx)
{
    pthread_mutex_lock(&ctx->claim_lock);
    ctx->claim_seq++;
    pthread_cond_broadcast(&ctx->claim_cond);
    pthread_mutex_unlock(&ctx->claim_lock);
}

void bh_claim_wait_change(struct bh_ctx *ctx, uint64_t *seq, long long deadline_ms)
{
    pthread_mutex_lock(&ctx->claim_lock);
    while (ctx->claim_seq == *seq) {
        long long left = deadline_ms - bh_clock_ms();
        if (left <= 0)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += left / 1000;
        ts.tv_nsec += (left % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&ctx->claim_cond, &ctx->claim_lock, &ts);
    }
    *seq = ctx->claim_seq;
    pthread_mutex_unlock(&ctx->claim_lock);
}

/* ---- startup recovery ---- */

/* A claim whose instance a restart or a failover lost (its record is gone) boots again, as a
 * new claim would (from the tenant's last snapshot if any). Returns 1 if it changed the claim. */
static int claim_recover_one(struct bh_ctx *ctx, cJSON *claim)
{
    const char *phase = claim_phase(claim);
    const char *id = bh_json_str(claim, "status.instanceId");
    cJSON *inst = NULL;
    struct bh_err err;
    if (strcmp(phase, BH_CLAIM_ACTIVE) != 0 ||
        bh_store_get(ctx->store, "Instance", id ? id : "", &inst, &err) == 0) {
        cJSON_Delete(inst);
        return 0;
    }
    /* Before the status changes: id is borrowed from it. */
    bh_info("claim", "claim %s: instance %s lost in a daemon restart or failover; booting again",
            bh_json_str(claim, "metadata.name"), id ? id : "?");
    cJSON *status = bh_json_obj(claim, "status");
    bh_json_set_str(status, "phase", BH_CLAIM_PENDING);
    bh_json_set_str(status, "detail",
                    "instance lost in a daemon restart or failover; booting again");
    cJSON_DeleteItemFromObjectCaseSensitive(status, "instanceId");
    cJSON_DeleteItemFromObjectCaseSensitive(status, "endpoint");
    cJSON_DeleteItemFromObjectCaseSensitive(bh_json_obj(claim, "metadata"), "resourceVersion");
    if (bh_store_update_status(ctx->store, claim, NULL, &err) < 0)
        bh_warn("claim", "recover claim %s: %s", bh_json_str(claim, "metadata.name"), err.msg);
    return 1;
}

/* Every claim, with lost ones booting again when recover is set. */
static int claim_recover_all(struct bh_ctx *ctx, int recover, int index, struct bh_err *err)
{
    cJSON *list = NULL, *claim;
    if (bh_store_list(ctx->store, CLAIM_KIND, NULL, &list, NULL, err) < 0)
        return -1;
    cJSON_ArrayForEach(claim, list) {
        if (recover && !bh_json_get(claim, "metadata.deletionTimestamp") &&
            claim_recover_one(ctx, claim))
            continue;
        if (!index)
            continue;
        /* Before the store's events reach the index: it starts from what survived. */
        const char *rv = bh_json_str(claim, "metadata.resourceVersion");
        bh_claim_index_observe(ctx->claim_index, claim, rv ? strtoll(rv, NULL, 10) : 0,
                               claim_indexed_active(claim));
    }
    cJSON_Delete(list);
    return 0;
}

/* A standby (operator mode) changes nothing: its claims are the leader's, whose instances it
 * does not know; bh_claim_recover_lost runs once it leads and has adopted them. */
int bh_claim_recover(struct bh_ctx *ctx, struct bh_err *err)
{
    return claim_recover_all(ctx, !ctx->standby, 1, err);
}

int bh_claim_recover_lost(struct bh_ctx *ctx, struct bh_err *err)
{
    return claim_recover_all(ctx, 1, 0, err);
}

/* ---- the front door: what REST, triggers and the Kubernetes-compatible API call ---- */

/* Waits for the claim to reach one of phases (NULL-terminated; NULL: until it is gone).
 * A claim being deleted counts only with while_deleting. Returns the claim (owned) or NULL
 * when it is gone; on timeout the claim as it stands, with *timed_out set. */
static cJSON *claim_wait(struct bh_ctx *ctx, const char *name, const char *const *phases,
                         int while_deleting, int *timed_out)
{
    long long deadline = bh_clock_ms() + ctx->cfg.claim_timeout_ms;
    uint64_t seq = 0;
    bh_claim_wait_change(ctx, &seq, 0); /* snapshot the sequence before reading */
    *timed_out = 0;
    for (;;) {
        cJSON *c = NULL;
        struct bh_err err;
        if (bh_store_get(ctx->store, CLAIM_KIND, name, &c, &err) < 0)
            return NULL;
        const char *phase = claim_phase(c);
        for (const char *const *p = phases; p && *p; p++)
            if (strcmp(phase, *p) == 0 &&
                (while_deleting || !bh_json_get(c, "metadata.deletionTimestamp")))
                return c;
        if (bh_clock_ms() >= deadline) {
            *timed_out = 1;
            return c;
        }
        cJSON_Delete(c);
        bh_claim_wait_change(ctx, &seq, deadline);
    }
}

static cJSON *claim_new(const char *name, const struct bh_claim_req *req)
{
    cJSON *obj = bh_resource_new(CLAIM_KIND, name);
    cJSON *md = bh_json_obj(obj, "metadata");
    cJSON *labels = bh_json_obj(md, "labels");
    cJSON_AddStringToObject(labels, "boilerhouse.dev/tenant", req->tenant);
    cJSON_AddStringToObject(labels, "boilerhouse.dev/workload", req->workload);
    cJSON_AddItemToObject(md, "finalizers",
                          cJSON_CreateStringArray(&(const char *){BH_CLAIM_FINALIZER}, 1));
    cJSON *spec = cJSON_AddObjectToObject(obj, "spec");
    cJSON_AddStringToObject(spec, "tenantId", req->tenant);
    cJSON_AddStringToObject(spec, "workloadRef", req->workload);
    if (req->resume)
        cJSON_AddBoolToObject(spec, "resume", req->resume > 0);
    return obj;
}

/* The name of a claim of (tenant, workload) other than the pair-named one, or NULL. */
static char *claim_other_for_pair(struct bh_ctx *ctx, const char *tenant, const char *workload)
{
    bh_autofree char *sel = bh_xasprintf("boilerhouse.dev/tenant=%s", tenant);
    cJSON *list = NULL, *c;
    struct bh_err err;
    char *found = NULL;
    if (bh_store_list(ctx->store, CLAIM_KIND, sel, &list, NULL, &err) < 0)
        return NULL;
    cJSON_ArrayForEach(c, list)
        if (!found && bh_name_is_pair(c, tenant, workload))
            found = bh_xstrdup(bh_json_str(c, "metadata.name"));
    cJSON_Delete(list);
    return found;
}

/* A workload being deleted takes no new claims (given: the workload as the caller read it,
 * else it is read here). A missing one is the controller's to report. */
static int claim_workload_open(struct bh_ctx *ctx, const char *workload, const cJSON *given,
                               struct bh_err *err)
{
    cJSON *wl = NULL;
    struct bh_err gerr;
    if (!given && bh_store_get(ctx->store, "BoilerhouseWorkload", workload, &wl, &gerr) < 0)
        return 0;
    int closing = bh_workload_terminating(given ? given : wl);
    cJSON_Delete(wl);
    return closing ? bh_err_set(err, BH_ECONFLICT,
                                "workload %s is being deleted: it takes no new claims", workload)
                   : 0;
}

int bh_claim_admit(struct bh_ctx *ctx, cJSON *claim, struct bh_err *err)
{
    const char *tenant = bh_json_str(claim, "spec.tenantId");
    const char *workload = bh_json_str(claim, "spec.workloadRef");
    if (!tenant || !bh_name_tenant_valid(tenant))
        return bh_err_set(err, BH_EINVAL,
                          "spec.tenantId: must be 1-63 characters of [A-Za-z0-9._-], beginning "
                          "and ending with a letter or digit");
    if (claim_workload_open(ctx, workload, NULL, err) < 0)
        return -1;
    bh_autofree char *pair = bh_name_claim(tenant, workload);
    cJSON *held = NULL;
    struct bh_err gerr;
    bh_autofree char *other = NULL;
    if (bh_store_get(ctx->store, CLAIM_KIND, pair, &held, &gerr) == 0 &&
        bh_name_is_pair(held, tenant, workload))
        other = bh_xstrdup(pair);
    else
        other = claim_other_for_pair(ctx, tenant, workload);
    cJSON_Delete(held);
    if (other)
        return bh_err_set(err, BH_ECONFLICT,
                          "tenant %s already has a claim of workload %s (%s): one per pair", tenant,
                          workload, other);
    cJSON *md = bh_json_obj(claim, "metadata");
    cJSON *labels = bh_json_obj(md, "labels");
    bh_json_set_str(labels, "boilerhouse.dev/tenant", tenant);
    bh_json_set_str(labels, "boilerhouse.dev/workload", workload);
    cJSON_DeleteItemFromObjectCaseSensitive(md, "finalizers");
    cJSON_AddItemToObject(md, "finalizers",
                          cJSON_CreateStringArray(&(const char *){BH_CLAIM_FINALIZER}, 1));
    return 0;
}

/* The pair's claim as stored, once no release of it is finishing; NULL if there is none.
 * *out on entry: the claim as just read (owned), or NULL to read it. */
static int claim_get_settled(struct bh_ctx *ctx, const char *name, cJSON **out, struct bh_err *err)
{
    cJSON *c = *out;
    *out = NULL;
    if (!c && bh_store_get(ctx->store, CLAIM_KIND, name, &c, err) < 0)
        return err->code == BH_ENOTFOUND ? 0 : -1;
    if (!bh_json_get(c, "metadata.deletionTimestamp")) {
        *out = c;
        return 0;
    }
    cJSON_Delete(c);
    int timed_out;
    c = claim_wait(ctx, name, NULL, 0, &timed_out); /* a release is finishing */
    if (c) {
        cJSON_Delete(c);
        return bh_err_set(err, BH_EUNAVAIL, "the previous claim is still being released");
    }
    return 0;
}

/* An ended claim (Error, Released) starts over. */
static int claim_restart(struct bh_ctx *ctx, cJSON *c, struct bh_err *err)
{
    const char *phase = claim_phase(c);
    if (strcmp(phase, BH_CLAIM_ERROR) != 0 && strcmp(phase, BH_CLAIM_RELEASED) != 0)
        return 0;
    cJSON *status = bh_json_obj(c, "status");
    bh_json_set_str(status, "phase", BH_CLAIM_PENDING);
    bh_json_set_str(status, "detail", "claimed again");
    /* A new claim, a new decision. */
    cJSON_DeleteItemFromObjectCaseSensitive(status, "policy");
    cJSON_DeleteItemFromObjectCaseSensitive(status, "reason");
    cJSON_DeleteItemFromObjectCaseSensitive(bh_json_obj(c, "metadata"), "resourceVersion");
    return bh_store_update_status(ctx->store, c, NULL, err);
}

/* The name of (tenant, workload)'s claim: the default (bh_name_claim), unless another door
 * (kubectl) already made the pair's claim under a name of its choosing. Owned. *pair_claim
 * (owned) is the default-named claim as read here, so the caller need not read it again;
 * else NULL, and *absent (optional) set if the pair has no claim at all. */
static char *claim_name_for(struct bh_ctx *ctx, const char *tenant, const char *workload,
                            cJSON **pair_claim, int *absent)
{
    char *pair = bh_name_claim(tenant, workload);
    struct bh_err err;
    *pair_claim = NULL;
    if (absent)
        *absent = 0;
    if (bh_store_get(ctx->store, CLAIM_KIND, pair, pair_claim, &err) == 0)
        return pair;
    int missing = err.code == BH_ENOTFOUND;
    char *other = claim_other_for_pair(ctx, tenant, workload);
    if (!other) {
        if (absent)
            *absent = missing;
        return pair;
    }
    free(pair);
    return other;
}

char *bh_claim_name(struct bh_ctx *ctx, const char *tenant, const char *workload)
{
    cJSON *c = NULL;
    char *name = claim_name_for(ctx, tenant, workload, &c, NULL);
    cJSON_Delete(c);
    return name;
}

/* The pair's claim named name, settled (c: as read, owned, or NULL): made if there is none,
 * started over if it ended. *out owned. */
static int claim_make(struct bh_ctx *ctx, const struct bh_claim_req *req, const char *name,
                      cJSON *c, cJSON **out, struct bh_err *err)
{
    if (!c) {
        cJSON *obj = claim_new(name, req);
        /* Not fsynced: if it is lost in a crash, the caller never got an answer and claims
         * again; the claim's Active status is durable before any answer. */
        int rc = bh_store_create_lazy(ctx->store, obj, &c, err);
        cJSON_Delete(obj);
        if (rc < 0 && err->code == BH_ECONFLICT) /* a concurrent claim made it first */
            rc = bh_store_get(ctx->store, CLAIM_KIND, name, &c, err);
        if (rc < 0)
            return -1;
    }
    if (!bh_name_is_pair(c, req->tenant, req->workload)) {
        cJSON_Delete(c);
        return bh_err_set(err, BH_ECONFLICT, "claim %s belongs to another tenant or workload",
                          name);
    }
    if (claim_restart(ctx, c, err) < 0) {
        cJSON_Delete(c);
        return -1;
    }
    *out = c;
    return 0;
}

/* bh_claim_ensure; with reserved, the claim's reconcile is reserved for the caller before the
 * claim is written, unless it is Active, so that the caller runs its next step itself: *reserved
 * 1 on success means bh_queue_run_reserved must follow (on failure it is ended here). */
static int claim_ensure(struct bh_ctx *ctx, const struct bh_claim_req *req, cJSON **out,
                        int *reserved, struct bh_err *err)
{
    if (claim_workload_open(ctx, req->workload, req->wl, err) < 0)
        return -1;
    cJSON *c = NULL;
    int absent;
    bh_autofree char *name = claim_name_for(ctx, req->tenant, req->workload, &c, &absent);
    /* Not before: a release finishing (claim_get_settled waits for it) needs the key. None
     * was found just now: a new one has nothing to settle. */
    if (!absent && claim_get_settled(ctx, name, &c, err) < 0)
        return -1;
    bh_autofree char *key = bh_xasprintf("%s/%s", CLAIM_KIND, name);
    int mine = reserved && ctx->queue && (!c || strcmp(claim_phase(c), BH_CLAIM_ACTIVE) != 0) &&
               bh_queue_reserve(ctx->queue, key);
    if (claim_make(ctx, req, name, c, out, err) < 0) {
        if (mine) /* a run it took over goes back to a worker */
            bh_queue_run_reserved(ctx->queue, key, 0);
        return -1;
    }
    if (reserved)
        *reserved = mine;
    return 0;
}

int bh_claim_ensure(struct bh_ctx *ctx, const struct bh_claim_req *req, cJSON **out,
                    struct bh_err *err)
{
    return claim_ensure(ctx, req, out, NULL, err);
}

/* A claim of an Active claim is a claim too: the policy runs again (a quota or business hours
 * may say no now; BH_EFORBIDDEN). The instance keeps running and its first overrides stay. */
static int claim_admit_again(struct bh_ctx *ctx, const cJSON *claim, const cJSON *given,
                             struct bh_err *err)
{
    cJSON *wl = NULL;
    if (!ctx->policies ||
        (!given && bh_store_get(ctx->store, "BoilerhouseWorkload",
                                bh_json_str(claim, "spec.workloadRef"), &wl, err) < 0))
        return 0; /* no policies; or the workload went away, which the controller reports */
    struct bh_admit a;
    int rc = bh_admit_decide(ctx, claim, given ? given : wl, &a, err);
    if (rc == 0 && !a.allow)
        rc = bh_err_set(err, BH_EFORBIDDEN, "%s", a.reason);
    bh_admit_free(&a);
    cJSON_Delete(wl);
    return rc;
}

/* The answer for a claim that is already Active (ans->claim): the policy again, the activity
 * touch, the operator event. */
static int claim_answer_existing(struct bh_ctx *ctx, const struct bh_claim_req *req,
                                 struct bh_claim_answer *ans, long long t0, struct bh_err *err)
{
    ans->existing = 1;
    if (claim_admit_again(ctx, ans->claim, req->wl, err) < 0) {
        bh_claim_answer_free(ans);
        return -1;
    }
    struct bh_err terr; /* activity is best effort: the idle check re-samples anyway */
    bh_idle_touch(ctx, bh_json_str(ans->claim, "status.instanceId"), &terr);
    /* Served by the instance the tenant holds: a claim like any other for operators. */
    claim_publish(ctx, ans->claim, "existing", t0, NULL);
    return 0;
}

int bh_claim_open(struct bh_ctx *ctx, const struct bh_claim_req *req, struct bh_claim_answer *ans,
                  struct bh_err *err)
{
    static const char *const settled[] = {BH_CLAIM_ACTIVE, BH_CLAIM_ERROR, BH_CLAIM_RELEASED, NULL};
    long long t0 = bh_clock_ms();
    memset(ans, 0, sizeof(*ans));
    if (req->wl && claim_workload_open(ctx, req->workload, req->wl, err) < 0)
        return -1;
    /* The pair's claim is Active: answered from the index, without a store read. */
    ans->claim = bh_claim_index_active(ctx->claim_index, req->tenant, req->workload);
    if (ans->claim)
        return claim_answer_existing(ctx, req, ans, t0, err);
    int reserved = 0;
    if (claim_ensure(ctx, req, &ans->claim, &reserved, err) < 0)
        return -1;
    const char *name = bh_json_str(ans->claim, "metadata.name");
    bh_autofree char *key = bh_xstrdup(name);
    bh_autofree char *qkey = bh_xasprintf("%s/%s", CLAIM_KIND, key);
    /* A new claim's first step runs here rather than after a queue hop: a pool instance (or
     * a refusal) is the answer at once; a cold boot goes off to its own thread either way.
     * Reserved before the claim was written, so its write's event cannot give it to a worker
     * first (this thread would wait for that worker). */
    int pending = strcmp(claim_phase(ans->claim), BH_CLAIM_PENDING) == 0;
    if (reserved && pending && bh_json_get(ans->claim, "metadata.resourceVersion"))
        claim_fresh = BH_STEAL(ans->claim); /* as the store answered its creation */
    if (reserved)
        bh_queue_run_reserved(ctx->queue, qkey, pending);
    else if (ctx->queue && pending)
        bh_queue_run_here(ctx->queue, qkey);
    cJSON_Delete(BH_STEAL(claim_fresh)); /* not taken: the run was not this claim's */
    if (ans->claim && strcmp(claim_phase(ans->claim), BH_CLAIM_ACTIVE) == 0)
        return claim_answer_existing(ctx, req, ans, t0, err);
    cJSON_Delete(ans->claim);
    /* Made Active by the run on this thread (a pool claim): its Active write's event put it in
     * the index before the run returned, so it is answered without reading it back. */
    ans->claim =
        reserved ? bh_claim_index_active(ctx->claim_index, req->tenant, req->workload) : NULL;
    if (!ans->claim)
        ans->claim = claim_wait(ctx, key, settled, 0, &ans->timed_out);
    /* An idle release was finishing when the tenant came back: claim again, once. */
    if (ans->claim && !ans->timed_out && strcmp(claim_phase(ans->claim), BH_CLAIM_RELEASED) == 0) {
        cJSON_Delete(ans->claim);
        ans->claim = NULL;
        if (bh_claim_ensure(ctx, req, &ans->claim, err) < 0)
            return -1;
        cJSON_Delete(ans->claim);
        ans->claim = claim_wait(ctx, key, settled, 0, &ans->timed_out);
    }
    if (!ans->claim)
        return bh_err_set(err, BH_ECONFLICT, "claim %s was released while it was being made", key);
    return 0;
}

/* Marks a ReleaseFailed claim Releasing again, so the controller retries the save. */
static int claim_retry_release(struct bh_ctx *ctx, cJSON *c, struct bh_err *err)
{
    const char *phase = claim_phase(c);
    if (strcmp(phase, BH_CLAIM_RELEASE_FAILED) != 0)
        return bh_err_set(err, BH_ECONFLICT, "claim is %s, not %s: nothing to retry", phase,
                          BH_CLAIM_RELEASE_FAILED);
    bh_json_set_str(bh_json_obj(c, "status"), "phase", BH_CLAIM_RELEASING);
    bh_json_set_str(bh_json_obj(c, "status"), "detail", "release retried");
    cJSON_DeleteItemFromObjectCaseSensitive(bh_json_obj(c, "metadata"), "resourceVersion");
    return bh_store_update_status(ctx->store, c, NULL, err);
}

/* Starts the release mode asks for on the stored claim c. */
static int claim_begin_release(struct bh_ctx *ctx, cJSON *c, enum bh_claim_release_mode mode,
                               struct bh_err *err)
{
    const char *name = bh_json_str(c, "metadata.name");
    if (mode == BH_CLAIM_RELEASE_RETRY) {
        if (claim_retry_release(ctx, c, err) < 0)
            return -1;
        /* An idle release that failed keeps its claim: the controller finishes it. */
        if (!bh_json_get(c, "metadata.deletionTimestamp")) {
            bh_autofree char *key = bh_xasprintf("%s/%s", CLAIM_KIND, name);
            bh_queue_add(ctx->queue, key);
            return 0;
        }
    } else if (mode == BH_CLAIM_RELEASE_FORCE) {
        bh_json_set_str(bh_json_obj(c, "metadata.annotations"), CLAIM_RELEASE_ANNOTATION, "force");
        cJSON_DeleteItemFromObjectCaseSensitive(bh_json_obj(c, "metadata"), "resourceVersion");
        if (bh_store_update(ctx->store, c, NULL, err) < 0)
            return -1;
    }
    /* Deleting ends the claim; its finalizer keeps it until the instance is saved and gone. */
    return bh_store_delete(ctx->store, CLAIM_KIND, name, err);
}

int bh_claim_release(struct bh_ctx *ctx, const char *tenant, const char *workload,
                     enum bh_claim_release_mode mode, struct bh_claim_answer *ans,
                     struct bh_err *err)
{
    static const char *const ended[] = {BH_CLAIM_RELEASE_FAILED, BH_CLAIM_RELEASED, NULL};
    memset(ans, 0, sizeof(*ans));
    cJSON *c = NULL;
    bh_autofree char *name = claim_name_for(ctx, tenant, workload, &c, NULL);
    if ((!c && bh_store_get(ctx->store, CLAIM_KIND, name, &c, err) < 0) ||
        !bh_name_is_pair(c, tenant, workload)) {
        cJSON_Delete(c);
        return bh_err_set(err, BH_ENOTFOUND, "claim not found for tenant %s", tenant);
    }
    int rc = claim_begin_release(ctx, c, mode, err);
    cJSON_Delete(c);
    if (rc < 0)
        return -1;
    ans->claim = claim_wait(ctx, name, ended, 1, &ans->timed_out);
    /* An idle-released claim that a retry finished stays, Released: it is done too. */
    if (ans->claim && !ans->timed_out && strcmp(claim_phase(ans->claim), BH_CLAIM_RELEASED) == 0) {
        cJSON_Delete(ans->claim);
        ans->claim = NULL;
    }
    return 0;
}

void bh_claim_answer_free(struct bh_claim_answer *ans)
{
    cJSON_Delete(ans->claim);
    ans->claim = NULL;
}

int bh_claim_delete_snapshot(struct bh_ctx *ctx, const char *tenant, const char *workload,
                             struct bh_err *err)
{
    bh_autofree char *name = bh_claim_name(ctx, tenant, workload);
    cJSON *claim = NULL, *snap = NULL;
    struct bh_err gerr;
    if (name && bh_store_get(ctx->store, CLAIM_KIND, name, &claim, &gerr) == 0) {
        const char *phase = bh_json_str(claim, "status.phase");
        int ended =
            phase && (strcmp(phase, BH_CLAIM_RELEASED) == 0 || strcmp(phase, BH_CLAIM_ERROR) == 0);
        int rc = ended ? 0
                       : bh_err_set(err, BH_ECONFLICT,
                                    "tenant %s has a %s claim on %s: release it first", tenant,
                                    phase ? phase : "new", workload);
        cJSON_Delete(claim);
        if (rc < 0)
            return -1;
    }
    if (bh_hibernate_record(ctx, tenant, workload, &snap, err) < 0)
        return -1;
    cJSON_Delete(snap);
    return bh_hibernate_forget(ctx, tenant, workload, err);
}
