/* The context the controllers run on: the settings and the parts the daemon opened (store,
 * image store, runtime, plugins, reconciler queue, secrets). The daemon (daemon.c) fills and
 * owns it; controllers and the API borrow it. */
#ifndef BH_CTX_H
#define BH_CTX_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "listen.h"

/* Tenants' admission locks (admit.c): tenants hash onto this many. */
#define BH_ADMIT_STRIPES 64

struct bh_store;
struct bh_image_store;
struct bh_runtime;
struct bh_plugins;
struct bh_queue;
struct bh_secrets;
struct bh_lua_policies;
struct bh_triggers;
struct bh_events;
struct bh_kevents;
struct bh_samples;
struct bh_audit;
struct bh_metrics;
struct bh_claim_index;
struct bh_idle;
struct bh_boots;
struct bh_ratelimit;
struct bh_operator;

/* What an operator sets (environment or flags); strings owned. */
struct bh_settings {
    char *state_dir;            /* absolute */
    char *listen_host;          /* "127.0.0.1" */
    int port;                   /* 3000 */
    char *api_key;              /* NULL: no auth (only allowed on loopback) */
    char *kube_host;            /* the Kubernetes-compatible API: "127.0.0.1" */
    int kube_port;              /* 6443; 0: not served */
    char *plugin_dir;           /* where bh-*.so plugins are loaded from */
    char *ui_dir;               /* the dashboard's built files, served at /ui */
    char *plugin_config;        /* JSON/YAML file path or NULL */
    char *registry_config;      /* JSON file path or NULL */
    char *workloads_dir;        /* applied at startup, or NULL */
    char *runtime;              /* "runc", "crun" or NULL (auto) */
    char *build_network;        /* Dockerfile RUN steps: "none" (default) or "host" */
    int claim_timeout_ms;       /* how long claims wait for Active */
    int workers;                /* reconciler threads */
    size_t max_body;            /* request body limit */
    size_t log_cap;             /* container log cap, bytes */
    uint32_t uid_base;          /* host uid that container root maps to */
    char *storage;              /* snapshot storage plugin name ("local") */
    char *snapshot_compression; /* "zstd" or "gzip" */
    char *policy_dir;           /* Lua claim policies and guards; NULL: <state_dir>/policies */
    int log_level;              /* enum bh_log_level */
    size_t events_buffer;       /* operator events kept for replay */
    size_t ws_queue;            /* events a /ws client may fall behind before it is cut */
    int ws_ping_ms;             /* /ws keepalive ping interval */
    size_t audit_max;           /* audit records kept */
    int audit_flush_ms;         /* queued audit records (existing claims) committed this often */
    int max_boots;              /* claims' boots and restores at once; 0: no bound */
    int max_tenant_instances;   /* instances (claims holding one) per tenant; 0: no bound */
    int http_idle_timeout_s;    /* listeners: close a connection silent this long */
    int http_head_timeout_s;    /* listeners: a request head must be complete within this */
    int http_max_conns;         /* listeners: open connections at most, each */
    int http_max_conns_per_ip;  /* listeners: open connections from one address at most */
    int rate_limit;             /* requests/s per credential (or address); 0: unlimited */
    int rate_burst;             /* requests a credential may make at once */
    int auth_failures;          /* failed authentications from one address before slow-down */
    char *tls;                  /* REST API: "auto" (off loopback), "on" or "off" */
    char *tls_cert, *tls_key;   /* REST API serving certificate and key (PEM files) or NULL */
    int insecure_http;          /* 1: plain HTTP off loopback is allowed */
    size_t snapshot_hot_bytes;  /* budget of the hot tier of parked disks; 0 = none */
    int snapshot_shared;        /* import records other daemons stored beside their objects */
    char *kubeconfig;           /* operator mode: the cluster's kubeconfig, or NULL */
    int kube_in_cluster;        /* operator mode with the Pod's service account */
    int lease_duration_s;       /* operator mode: leader Lease duration */
    char *operator_id;          /* operator mode: Lease holderIdentity; NULL: hostname_pid */
    /* Operator mode, the Pod runtime's objects (core/kube/objects.h; NULL: its defaults). */
    char *kube_cluster_cidrs;      /* the cluster's Pod and Service ranges, comma-separated */
    char *kube_operator_namespace; /* where the operator's Pods run (the instances' ingress) */
    char *kube_dns_namespace;      /* the cluster resolver's namespace */
    char *kube_dns_label;          /* its Pods' label, key=value */
    char *kube_proxy_image;        /* the image of the egress sidecar */
};

/* The connection limits every listener takes from the settings. */
static inline struct bh_listen_limits bh_ctx_listen_limits(const struct bh_settings *cfg)
{
    return (struct bh_listen_limits){.idle_timeout_s = cfg->http_idle_timeout_s,
                                     .max_conns = cfg->http_max_conns,
                                     .max_per_ip = cfg->http_max_conns_per_ip,
                                     .head_timeout_s = cfg->http_head_timeout_s};
}

struct bh_ctx {
    struct bh_settings cfg;
    struct bh_store *store;
    struct bh_image_store *images;
    struct bh_runtime *runtime;
    struct bh_plugins *plugins;
    struct bh_queue *queue;
    struct bh_secrets *secrets;
    struct bh_lua_policies *policies;   /* NULL: no policy dir, every claim is allowed */
    struct bh_triggers *triggers;       /* running trigger adapters (trigger.c) */
    struct bh_events *events;           /* operator events (events.c); NULL in unit tests */
    struct bh_kevents *kevents;         /* Kubernetes Events derived from them (kevents.c) */
    struct bh_metrics *metrics;         /* Prometheus metrics (metrics.c); may be NULL */
    struct bh_samples *samples;         /* chart history (samples.c); may be NULL */
    struct bh_audit *audit;             /* the audit log (store/audit.c); may be NULL */
    struct bh_claim_index *claim_index; /* Active claims by pair (claim_index.c); may be NULL */
    struct bh_idle *idle;               /* activity touches in memory (idle.c); may be NULL */
    struct bh_boots *boots; /* claims' boot slots and threads (boots.c); NULL: boot inline */
    struct bh_ratelimit *ratelimit; /* request limits of the listeners; may be NULL */
    struct bh_operator *op; /* operator mode (operator.c): mirror and lease; NULL: local mode */
    volatile int standby;   /* operator mode, not the leader: controllers are not run */
    struct bh_listen_stats api_stats;  /* the REST listener's counters, for /metrics */
    struct bh_listen_stats kapi_stats; /* the Kubernetes-compatible API's */
    uint8_t master_key[32];            /* snapshot encryption and secrets; wiped on close */
    /* Claim waiters (claim.c): claim_seq moves on every Claim change. */
    pthread_mutex_t claim_lock;
    pthread_cond_t claim_cond;
    uint64_t claim_seq;
    /* Claim admission (claim.c, admit.c): claim policies run one at a time (admit_lock), so a
     * policy keeping a global count in bh.kv sees the decisions before it; and a tenant's
     * admissions run one at a time (admit_tenant, one lock per stripe of tenants), so the
     * tenant limit and a policy's activeClaims count the tenant's claims admitted just
     * before. Claims of different tenants are admitted side by side. */
    pthread_mutex_t admit_lock;
    pthread_mutex_t admit_tenant[BH_ADMIT_STRIPES];
    /* Pool boot threads alive (pool.c); close waits for 0. */
    pthread_mutex_t boot_lock;
    pthread_cond_t boot_cond;
    int boots_running;
};

#endif
