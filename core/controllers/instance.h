/* Instances: the records and lifecycles of containers (boot, probe, exec, destroy, startup
 * recovery) over the runtime and the network plugin. */
#ifndef BH_INSTANCE_H
#define BH_INSTANCE_H

#include <cjson/cJSON.h>

#include "ctx.h"
#include "err.h"
#include "runtime.h"

/* Set on an instance while a tenant's snapshot is restored into it. Such an instance is
 * never anyone's "existing" instance, and a restart destroys it: a half-restored instance
 * must not be handed out, nor hibernated over the tenant's good snapshot. */
#define BH_LABEL_RESTORING "boilerhouse.dev/restoring"

struct bh_boot_req {
    const cJSON *workload;
    const char *tenant;    /* NULL for a pool instance */
    const char *claim;     /* NULL for a pool instance */
    const char *pool;      /* pool name for a pool instance */
    const cJSON *snapshot; /* restored into the rootfs before the container starts */
    const char *id;        /* a record made by bh_instance_reserve, or NULL for a new one */
    /* Called when the boot fails, before its record is removed, so whoever keeps a failure
     * count (a pool's backoff) has it by the time the record's deletion wakes its
     * reconcile. May be NULL. */
    void (*on_failure)(struct bh_ctx *ctx, const struct bh_boot_req *req, const char *why);
};

/* Creates the Starting record of an instance (so it counts, and a crash leaves it to clean
 * up) before the boot itself runs elsewhere. Owned id, NULL on error. */
char *bh_instance_reserve(struct bh_ctx *ctx, const struct bh_boot_req *req, struct bh_err *err);

/* Creates the Instance record first (so a crash leaves something to clean up), then its
 * rootfs, network, container; waits until healthy. With a remote runtime, the runtime
 * launches it from the workload and is asked until it is ready (the claim timeout bounds
 * both). *out (owned) is the Running instance. */
int bh_instance_boot(struct bh_ctx *ctx, const struct bh_boot_req *req, cJSON **out,
                     struct bh_err *err);
/* Hands a warm instance (its record already relabelled as the tenant's) over where it runs:
 * with a remote runtime, its atomic, version-checked relabel (bh_runtime_assign: BH_ECONFLICT
 * when another taker has it); nothing more on a host runtime. */
BH_MUST_CHECK int bh_instance_assign(struct bh_ctx *ctx, const cJSON *instance,
                                     const cJSON *workload, const char *tenant, const char *claim,
                                     struct bh_err *err);
/* Records an instance a shared runtime holds, as it describes itself (bh_runtime_inventory),
 * as Running: a new leader's view of what its predecessor ran. A pool's unclaimed one is its
 * ready member; its idle time starts now. BH_ECONFLICT when a record of it exists. */
BH_MUST_CHECK int bh_instance_adopt(struct bh_ctx *ctx, const struct bh_runtime_found *f,
                                    const cJSON *workload, struct bh_err *err);
/* Deletes the record only, leaving whatever runs it to the runtime (another taker's now). */
BH_MUST_CHECK int bh_instance_forget(struct bh_ctx *ctx, const char *id, struct bh_err *err);
/* The instance now belongs to tenant: tells its network plugin (per-tenant credentials); with
 * a remote runtime, resolves the tenant's credentials and hands them to the instance
 * (bh_instance_creds_*) within the claim timeout. */
int bh_instance_bind_tenant(struct bh_ctx *ctx, const cJSON *instance, const cJSON *workload,
                            const char *tenant, struct bh_err *err);
/* A claim's tenant secrets for a remote instance (instance_creds.c): the values of the
 * workload's tenantSecretKeyRef credential headers for tenant, from the daemon's secret store
 * (none without a tenant or for another access than restricted). A missing secret fails,
 * naming the header, the secret and the key. Values owned, wiped by _free; domains and header
 * names borrowed from the workload. */
struct bh_instance_creds {
    struct bh_runtime_credential *v;
    size_t n;
};
BH_MUST_CHECK int bh_instance_creds_resolve(struct bh_ctx *ctx, const cJSON *workload,
                                            const char *tenant, struct bh_instance_creds *out,
                                            struct bh_err *err);
/* Hands them to instance id where it runs (bh_runtime_credentials); nothing to do when n is 0. */
BH_MUST_CHECK int bh_instance_creds_push(struct bh_ctx *ctx, const char *id,
                                         const struct bh_instance_creds *c, int timeout_ms,
                                         struct bh_err *err);
void bh_instance_creds_free(struct bh_instance_creds *c);
/* Host path of the instance's merged rootfs (owned). */
char *bh_instance_rootfs(struct bh_ctx *ctx, const char *id);
/* Tears down container, network, mounts and files, then deletes the record. Idempotent. */
int bh_instance_destroy(struct bh_ctx *ctx, const char *id, struct bh_err *err);
/* Startup recovery: adopts Running instances whose container runs; destroys the rest and
 * anything the runtime or the instances dir holds that no record accounts for. With a shared
 * runtime (BH_RUNTIME_CAP_SHARED) it only forgets the records: the leader adopts what runs
 * (adopt.h), and a replica that does not lead acts on nothing. */
int bh_instance_recover(struct bh_ctx *ctx, struct bh_err *err);
/* True if the instance's container is running now. */
int bh_instance_alive(struct bh_ctx *ctx, const cJSON *instance);
/* One probe of the workload's health check against the instance (pid: its init, whose
 * network namespace HTTP probes enter). */
int bh_instance_probe(struct bh_ctx *ctx, const cJSON *workload, const char *id, int pid,
                      struct bh_err *err);
/* Runs argv in the instance (exec API). */
int bh_instance_exec(struct bh_ctx *ctx, const char *id, char *const *argv, int timeout_ms,
                     cJSON **out, struct bh_err *err);
/* Path of the instance's container log (owned). */
char *bh_instance_log_path(struct bh_ctx *ctx, const char *id);
/* Where the instance writes outside tmpfs (owned): the runtime may make it a disk. */
char *bh_instance_disk_path(struct bh_ctx *ctx, const char *id);

/* Per-claim API access (docs/architecture.md "Per-claim tokens"): whether the workload asks
 * for it (spec.apiAccess.scopes holds "tenant" and not "none"); the daemon's instance socket
 * (owned path); writing a claim's token into the instance's API dir (token and an env file,
 * seen read-only inside at BH_RUNTIME_API_DIR) and removing it. */
int bh_instance_api_wanted(const cJSON *workload);
char *bh_instance_api_socket(struct bh_ctx *ctx);
BH_MUST_CHECK int bh_instance_api_grant(struct bh_ctx *ctx, const char *id, const char *token,
                                        struct bh_err *err);
void bh_instance_api_clear(struct bh_ctx *ctx, const char *id);

#endif
