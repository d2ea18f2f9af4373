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
struct bh_store_event;

struct bh_daemon_config {
    char *state_dir;   /* absolute */
    char *listen_host; /* "127.0.0.1" */
    int port;          /* 3000 */
    char *api_key;     /* NULL: no auth (only allowed on loopback) */
    char *plugin_dir;
    char *plugin_config;   /* JSON/YAML file path or NULL */
    char *registry_config; /* JSON file path or NULL */
    char *workloads_dir;   /* applied at startup, or NULL */
    char *runtime;         /* "runc", "crun" or NULL (auto) */
    int claim_timeout_ms;  /* how long REST claims wait for Active */
    int workers;           /* reconciler threads */
    size_t max_body;       /* request body limit */
    size_t log_cap;        /* container log cap, bytes */
    uint32_t uid_base;     /* host uid that container root maps to */
};

struct bh_daemon {
    struct bh_daemon_config cfg;
    struct bh_store *store;
    struct bh_image_store *images;
    struct bh_runtime *runtime;
    struct bh_plugins *plugins;
    struct bh_queue *queue;
    /* Broadcast on every Claim change, so REST claims can wait for a phase. */
    pthread_mutex_t claim_lock;
    pthread_cond_t claim_cond;
    uint64_t claim_seq;
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
int bh_workload_reconcile(struct bh_daemon *d, const char *name, long *requeue_ms,
                          struct bh_err *err);
int bh_claim_reconcile(struct bh_daemon *d, const char *name, long *requeue_ms, struct bh_err *err);
/* Claim object name for (tenant, workload): "<workload>-<sanitised tenant>-<hash8>", a valid
 * DNS-1123 label, unique per pair. Owned. */
char *bh_claim_name(const char *tenant, const char *workload);

/* ---- instances (instance.c) ---- */

/* Creates the Instance record first (so a crash leaves something to clean up), then its
 * rootfs, network, container; waits until healthy. *out (owned) is the Running instance. */
int bh_instance_boot(struct bh_daemon *d, const cJSON *workload, const char *tenant,
                     const char *claim, cJSON **out, struct bh_err *err);
/* Tears down container, network, mounts and files, then deletes the record. Idempotent. */
int bh_instance_destroy(struct bh_daemon *d, const char *id, struct bh_err *err);
/* Startup recovery: adopts Running instances whose container runs; destroys the rest and
 * anything the runtime or the instances dir holds that no record accounts for. */
int bh_instance_recover(struct bh_daemon *d, struct bh_err *err);
/* True if the instance's container is running now. */
int bh_instance_alive(struct bh_daemon *d, const cJSON *instance);
/* One probe of the workload's health check against the instance (pid for its netns, host
 * its address or NULL). */
int bh_instance_probe(struct bh_daemon *d, const cJSON *workload, const char *id, int pid,
                      const char *host, struct bh_err *err);
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
