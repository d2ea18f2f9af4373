/* The Kubernetes objects of one instance, as pure functions: a validated BoilerhouseWorkload
 * and an instance's identity in, an owned cJSON object out, the same for the same input. The
 * Pod runtime sends them; `boilerhouse kube render` prints them (docs/kubernetes-mode.md).
 * Nothing here talks to a cluster. Every name is a DNS-1123 label of at most 63 characters
 * (and starts with a letter, so a Service can carry it); every label value is one whatever
 * the input (tenant IDs are hashed into theirs). Bad input is BH_EINVAL naming the field. */
#ifndef BH_KUBE_OBJECTS_H
#define BH_KUBE_OBJECTS_H

#include <cjson/cJSON.h>

#include "err.h"

#define BH_KUBE_LABEL_MANAGED "boilerhouse.dev/managed"
#define BH_KUBE_LABEL_WORKLOAD "boilerhouse.dev/workload"
#define BH_KUBE_LABEL_INSTANCE "boilerhouse.dev/instance"
#define BH_KUBE_LABEL_TENANT "boilerhouse.dev/tenant" /* bh_kube_tenant_label(), not the ID */
#define BH_KUBE_LABEL_POOL "boilerhouse.dev/pool"
#define BH_KUBE_LABEL_POOL_STATUS "boilerhouse.dev/pool-status" /* warming|ready|acquired */
#define BH_KUBE_LABEL_GENERATION "boilerhouse.dev/generation"
#define BH_KUBE_LABEL_CLAIM "boilerhouse.dev/claim"
#define BH_KUBE_ANNOT_TENANT "boilerhouse.dev/tenant-id" /* the real tenant ID */
/* The image digest the workload had resolved when the Pod was made (its status.imageDigest):
 * a new leader adopting a warm Pod compares it as a pool compares its members. */
#define BH_KUBE_ANNOT_IMAGE_DIGEST "boilerhouse.dev/image-digest"
/* Pods of the operator itself carry this label (deploy/kubernetes/): instances accept
 * ingress from them only. */
#define BH_KUBE_OPERATOR_LABEL "app.kubernetes.io/name"
#define BH_KUBE_OPERATOR_VALUE "boilerhouse"

/* The egress sidecar of `restricted` workloads: its user (the in-Pod redirect exempts only
 * it, so the workload's own user must differ) and its transparent ports on 127.0.0.1. */
#define BH_KUBE_PROXY_UID 15532
#define BH_KUBE_PROXY_HTTP_PORT 15080
#define BH_KUBE_PROXY_TLS_PORT 15443
#define BH_KUBE_PROXY_DNS_PORT 15053
/* Where the main container finds the egress CA certificate (never the key). */
#define BH_KUBE_CA_DIR "/etc/boilerhouse/egress-ca"
/* The sidecar's control port (plugins/network/restricted/sidecar/sidecar.h), on the Pod's IP,
 * where the daemon pushes a claim's tenant secrets; only in Pods whose workload has
 * tenantSecretKeyRef credentials. Its bearer token is the snapshot agents' (below). */
#define BH_KUBE_PROXY_CONTROL_PORT 15091
#define BH_KUBE_PROXY_CONTROL_PATH "/v1/credentials"

/* The snapshot agent (core/snapshot/agent.h) in Pods with overlay directories: its port, the
 * Secret in the instances' namespace that holds its bearer token (key "token"; one per
 * namespace, made by the operator), and where it sees the overlay volume. */
#define BH_KUBE_AGENT_PORT 15090
#define BH_KUBE_AGENT_SECRET "boilerhouse-agent"
#define BH_KUBE_AGENT_ROOT "/var/lib/boilerhouse-agent"

/* Operator settings the objects depend on; every pointer borrowed. NULL/0 fields take the
 * defaults bh_kube_opts_defaults() fills. */
struct bh_kube_opts {
    const char *namespace;          /* where instance objects live */
    const char *operator_namespace; /* where the operator's Pods run (their ingress) */
    /* Ranges unrestricted and restricted instances may not reach besides 169.254.0.0/16
     * (the cluster's Pod and Service ranges); NULL-terminated, IPv4 or IPv6 CIDRs. */
    const char *const *cluster_cidrs;
    const char *dns_namespace; /* the cluster resolver's namespace (kube-system) */
    const char *dns_label;     /* its Pods' label, "k8s-app=kube-dns" */
    const char *proxy_image;   /* the daemon/sidecar image (deploy/kubernetes/) */
    int grace_seconds;         /* terminationGracePeriodSeconds */
};

void bh_kube_opts_defaults(struct bh_kube_opts *o);
/* The checks the builders make of the settings (cluster ranges are CIDRs, the DNS label is
 * key=value), for a daemon to refuse them at start. */
BH_MUST_CHECK int bh_kube_opts_check(const struct bh_kube_opts *o, struct bh_err *err);

/* Who one instance is; every pointer borrowed. */
struct bh_kube_instance {
    const char *id;         /* the instance id: 12 lowercase hex characters */
    const char *tenant;     /* NULL for a warm pool instance */
    const char *claim;      /* its claim's name, or NULL */
    const char *pool;       /* the pool that made it, or NULL */
    const char *image;      /* image to run; NULL: spec.image.ref, or boilerhouse/<name>:<version>
                             * for a dockerfile-built workload */
    const char *image_user; /* the image config's User, NULL if unknown: a numeric non-zero
                             * uid makes the Pod runAsNonRoot */
    int restore;            /* the tenant has a snapshot: an init container takes it in before
                             * the workload starts (objects_agent.c) */
};

/* Names: the Pod, its Service and NetworkPolicy share one, "bh-<workload>-<id>"; the egress
 * CA Secret of a workload is "bh-<workload>-egress-ca". Owned. */
char *bh_kube_pod_name(const char *workload, const char *id);
char *bh_kube_ca_secret_name(const char *workload);
/* The value of BH_KUBE_LABEL_TENANT for tenant: "t-" and 32 hex of its SHA-256, so any ID
 * (a label has 63 characters of [A-Za-z0-9._-]) selects its Pods. Owned. */
char *bh_kube_tenant_label(const char *tenant);

/* The Pod of an instance: labels, hardened security context, requests = limits, overlay
 * volumes, readiness probe, and for `restricted` the egress init container and sidecar. */
BH_MUST_CHECK int bh_kube_pod(const cJSON *workload, const struct bh_kube_instance *inst,
                              const struct bh_kube_opts *o, cJSON **out, struct bh_err *err);
/* A JSON merge patch that hands a warm Pod to tenant (labels, annotation), carrying
 * resource_version so the API server refuses it (409) if the Pod changed since it was read. */
cJSON *bh_kube_claim_patch(const char *tenant, const char *claim, const char *resource_version);
/* The ClusterIP Service of an instance's exposed ports; *out NULL when it exposes none. */
BH_MUST_CHECK int bh_kube_service(const cJSON *workload, const struct bh_kube_instance *inst,
                                  const struct bh_kube_opts *o, cJSON **out, struct bh_err *err);
/* The NetworkPolicy of an instance for spec.network.access (none, unrestricted, restricted;
 * another mode is an error: it has no policy on a cluster). */
BH_MUST_CHECK int bh_kube_network_policy(const cJSON *workload, const struct bh_kube_instance *inst,
                                         const struct bh_kube_opts *o, cJSON **out,
                                         struct bh_err *err);
/* The Secret (type kubernetes.io/tls) holding a `restricted` workload's egress CA, from PEM
 * text. */
BH_MUST_CHECK int bh_kube_ca_secret(const cJSON *workload, const char *cert_pem,
                                    const char *key_pem, const struct bh_kube_opts *o, cJSON **out,
                                    struct bh_err *err);

/* The Secret BH_KUBE_AGENT_SECRET holding the snapshot agents' bearer token (printable, at
 * least 32 characters). */
BH_MUST_CHECK int bh_kube_agent_secret(const char *token, const struct bh_kube_opts *o, cJSON **out,
                                       struct bh_err *err);

/* How many tenantSecretKeyRef headers a `restricted` workload's credentials have (0 for any
 * other access): its Pods' sidecars then take the tenant's values on the control port. */
int bh_kube_tenant_headers(const cJSON *workload);

/* The nftables ruleset the egress init container loads (exported for tests: `nft -c`). */
const char *bh_kube_redirect_rules(void);

/* `boilerhouse kube render ...` (objects_cli.c). */
int bh_kube_cli_main(int argc, char **argv);

#endif
