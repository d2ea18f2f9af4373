/* The daemon: one context that owns the store, image store, runtime, plugins and the
 * reconciler, and the controllers that run on it. */
#ifndef BH_DAEMON_H
#define BH_DAEMON_H

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdint.h>

#include "err.h"

struct bh_store;
struct bh_image_store;
struct bh_runtime;
struct bh_plugins;
struct bh_queue;
struct bh_secrets;
struct bh_store_event;

struct bh_daemon_config {
    char *state_dir;   /* absolute */
    char *listen_host; /* "127.0.0.1" */
    int port;          /* 3000 */
    char *api_key;     /* NULL: no auth (only allowed on loopback) */
    char *plugin_dir;
    char *plugin_config;        /* JSON/YAML file path or NULL */
    char *registry_config;      /* JSON file path or NULL */
    char *workloads_dir;        /* applied at startup, or NULL */
    char *runtime;              /* "runc", "crun" or NULL (auto) */
    int claim_timeout_ms;       /* how long REST claims wait for Active */
    int workers;                /* reconciler threads */
    size_t max_body;            /* request body limit */
    size_t log_cap;             /* container log cap, bytes */
    uint32_t uid_base;          /* host uid that container root maps to */
    char *storage;              /* snapshot storage plugin name ("local") */
    char *snapshot_compression; /* "zstd" or "gzip" */
};

struct bh_daemon {
    struct bh_daemon_config cfg;
    struct bh_store *store;
    struct bh_image_store *images;
    struct bh_runtime *runtime;
    struct bh_plugins *plugins;
    struct bh_queue *queue;
    struct bh_secrets *secrets;
    uint8_t master_key[32]; /* snapshot encryption and secrets; wiped on close */
    /* Broadcast on every Claim change, so REST claims can wait for a phase. */
    pthread_mutex_t claim_lock;
    pthread_cond_t claim_cond;
    uint64_t claim_seq;
    int boots_running; /* pool boot threads alive (under claim_lock); close waits for 0 */
};

/* Fills cfg with defaults, then the environment (BOILERHOUSE_*). Owned strings. */
void bh_daemon_config_defaults(struct bh_daemon_config *cfg);
void bh_daemon_config_free(struct bh_daemon_config *cfg);

/* Opens everything under cfg (taken over), recovers what a previous run left, starts the
 * reconciler. */
int bh_daemon_open(struct bh_daemon_config *cfg, struct bh_daemon **out, struct bh_err *err);
void bh_daemon_close(struct bh_daemon *d);
/* Creates or updates every object in the YAML files of dir. */
int bh_daemon_apply_dir(struct bh_daemon *d, const char *dir, struct bh_err *err);
/* Creates or updates one validated object (borrowed). *out optional, owned. */
int bh_daemon_apply(struct bh_daemon *d, cJSON *obj, cJSON **out, struct bh_err *err);

/* Waits until the claim seq moves past *seq or deadline_ms (CLOCK_MONOTONIC) passes. */
void bh_daemon_wait_claim_change(struct bh_daemon *d, uint64_t *seq, long long deadline_ms);
long long bh_now_ms(void);
/* RFC3339 UTC "YYYY-MM-DDTHH:MM:SSZ" for now, into buf[32]. */
void bh_now_rfc3339(char buf[32]);

/* ---- controllers (controllers.c, claim.c, workload.c) ---- */

/* The reconcile function the queue calls: routes "Kind/name" to its controller. */
int bh_controller_reconcile(void *daemon, const char *key, long *requeue_ms, struct bh_err *err);
/* Ready for the generation in its spec (status.observedGeneration caught up): only then may
 * instances be built from it, or they would carry the new generation and the old image. */
int bh_workload_ready(const cJSON *wl);
int bh_workload_reconcile(struct bh_daemon *d, const char *name, long *requeue_ms,
                          struct bh_err *err);
int bh_claim_reconcile(struct bh_daemon *d, const char *name, long *requeue_ms, struct bh_err *err);
/* Claim object name for (tenant, workload): "<workload>-<sanitised tenant>-<hash8>", a valid
 * DNS-1123 label, unique per pair. Owned. */
char *bh_claim_name(const char *tenant, const char *workload);
/* True if a claim or snapshot record really is (tenant, workload)'s: checked wherever one is
 * found by its derived name. */
int bh_claim_is_for(const cJSON *obj, const char *tenant, const char *workload);

/* Test hook: when BOILERHOUSE_CRASH_AT names this point, the daemon kills itself (SIGKILL) there,
 * so tests can prove that every crash point converges on restart. */
void bh_crashpoint(const char *name);

/* ---- idle detection (idle.c) ---- */

/* Samples the instance's activity (CPU, network, watched dirs), records it in its status and
 * sets *idle_ms to the time since the last activity. */
int bh_idle_sample(struct bh_daemon *d, cJSON *inst, const cJSON *workload, long long *idle_ms,
                   struct bh_err *err);
/* Records activity now (API claim, exec, keepalive). */
int bh_idle_touch(struct bh_daemon *d, const char *id, struct bh_err *err);
/* Milliseconds until the instance counts as idle, -1 if the workload has no idle timeout. */
long long bh_idle_left_ms(const cJSON *inst, const cJSON *workload);
long long bh_idle_sample_interval_ms(void);

/* ---- pools (pool.c) ---- */

int bh_pool_reconcile(struct bh_daemon *d, const char *name, long *requeue_ms, struct bh_err *err);
/* Takes a ready, current pool instance of the workload for tenant/claim (atomically: two
 * claims never get the same one). *out owned, or NULL when none is ready. */
int bh_pool_acquire(struct bh_daemon *d, const cJSON *workload, const char *tenant,
                    const char *claim, int restoring, cJSON **out, struct bh_err *err);

/* Set on an instance while a tenant's snapshot is restored into it. Such an instance is
 * never anyone's "existing" instance, and a restart destroys it: a half-restored instance
 * must not be handed out, nor hibernated over the tenant's good snapshot. */
#define BH_LABEL_RESTORING "boilerhouse.dev/restoring"

/* ---- snapshots (hibernate.c) ---- */

/* Whether releasing instances of this workload saves their overlay dirs. */
int bh_hibernate_wanted(const cJSON *workload);
/* Freezes the instance, archives its overlay dirs, stores them durably and records the
 * snapshot; on failure the instance is thawed and left running. */
int bh_hibernate_save(struct bh_daemon *d, const cJSON *workload, const char *tenant,
                      const char *id, struct bh_err *err);
/* Fetches, verifies and extracts a snapshot into rootfs (a host path). */
int bh_hibernate_restore(struct bh_daemon *d, const cJSON *workload, const cJSON *snapshot,
                         const char *rootfs, struct bh_err *err);
/* Deletes the tenant's snapshot for workload, if any. */
int bh_hibernate_forget(struct bh_daemon *d, const char *tenant, const char *workload,
                        struct bh_err *err);
/* The Snapshot record of (tenant, workload); BH_ENOTFOUND if none. */
int bh_snapshot_get(struct bh_daemon *d, const char *tenant, const char *workload, cJSON **out,
                    struct bh_err *err);
char *bh_snapshot_name(const char *tenant, const char *workload);

/* ---- instances (instance.c) ---- */

struct bh_boot_req {
    const cJSON *workload;
    const char *tenant;    /* NULL for a pool instance */
    const char *claim;     /* NULL for a pool instance */
    const char *pool;      /* pool name for a pool instance */
    const cJSON *snapshot; /* restored into the rootfs before the container starts */
    const char *id;        /* a record made by bh_instance_reserve, or NULL for a new one */
};

/* Creates the Starting record of an instance (so it counts, and a crash leaves it to clean
 * up) before the boot itself runs elsewhere. Owned id, NULL on error. */
char *bh_instance_reserve(struct bh_daemon *d, const struct bh_boot_req *req, struct bh_err *err);

/* Creates the Instance record first (so a crash leaves something to clean up), then its
 * rootfs, network, container; waits until healthy. *out (owned) is the Running instance. */
int bh_instance_boot(struct bh_daemon *d, const struct bh_boot_req *req, cJSON **out,
                     struct bh_err *err);
/* The instance now belongs to tenant: tells its network plugin (per-tenant credentials). */
int bh_instance_bind_tenant(struct bh_daemon *d, const cJSON *instance, const cJSON *workload,
                            const char *tenant, struct bh_err *err);
/* Host path of the instance's merged rootfs (owned). */
char *bh_instance_rootfs(struct bh_daemon *d, const char *id);
/* Tears down container, network, mounts and files, then deletes the record. Idempotent. */
int bh_instance_destroy(struct bh_daemon *d, const char *id, struct bh_err *err);
/* Startup recovery: adopts Running instances whose container runs; destroys the rest and
 * anything the runtime or the instances dir holds that no record accounts for. */
int bh_instance_recover(struct bh_daemon *d, struct bh_err *err);
/* True if the instance's container is running now. */
int bh_instance_alive(struct bh_daemon *d, const cJSON *instance);
/* One probe of the workload's health check against the instance (pid: its init, whose
 * network namespace HTTP probes enter). */
int bh_instance_probe(struct bh_daemon *d, const cJSON *workload, const char *id, int pid,
                      struct bh_err *err);
/* Runs argv in the instance (exec API). */
int bh_instance_exec(struct bh_daemon *d, const char *id, char *const *argv, int timeout_ms,
                     cJSON **out, struct bh_err *err);
/* Path of the instance's container log (owned). */
char *bh_instance_log_path(struct bh_daemon *d, const char *id);

/* ---- REST API (api.c) ---- */

struct bh_api;
int bh_api_start(struct bh_daemon *d, struct bh_api **out, struct bh_err *err);
void bh_api_stop(struct bh_api *api);

#endif
