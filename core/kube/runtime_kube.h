/* The Kubernetes driver of the runtime seam (core/runtime/runtime.h, BH_RUNTIME_CAP_REMOTE and
 * BH_RUNTIME_CAP_SHARED): one Pod per instance in the client's namespace, with its ClusterIP
 * Service, its NetworkPolicy and, for `restricted` workloads, the workload's egress CA Secret
 * (objects.h builds them all). Readiness is the Pod's Ready condition; the endpoint is the
 * Service's ClusterIP, or the Pod's IP when the workload exposes nothing; a warm Pod is handed
 * to a tenant by a resourceVersion-checked merge patch (bh_kube_claim_patch).
 *
 * It lives in the kube layer, not in core/runtime/: it needs the Kubernetes client and the
 * object builders, and the runtime layer sits below kube (core/CMakeLists.txt), so it could
 * not include them. The controllers only ever see runtime.h; the daemon's top opens this. */
#ifndef BH_RUNTIME_KUBE_H
#define BH_RUNTIME_KUBE_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "client.h"
#include "err.h"
#include "runtime.h"

/* The operator's settings the objects depend on (objects.h bh_kube_opts); borrowed, NULL
 * fields take the builders' defaults. */
struct bh_runtime_kube_cfg {
    const char *cluster_cidrs; /* the cluster's Pod and Service ranges, comma-separated */
    const char *operator_namespace;
    const char *dns_namespace;
    const char *dns_label;
    const char *proxy_image;
};

/* Opens the driver on client (borrowed: it must outlive the runtime), in the client's
 * namespace; cfg is copied, and refused as the builders would refuse it (BH_EINVAL naming
 * the value). *out owned (bh_runtime_close). */
BH_MUST_CHECK int bh_runtime_kube_open(struct bh_kube_client *client,
                                       const struct bh_runtime_kube_cfg *cfg,
                                       struct bh_runtime **out, struct bh_err *err);

/* What a Pod's status says about a boot. */
enum bh_runtime_kube_pod {
    BH_RUNTIME_KUBE_POD_PENDING, /* not ready yet: keep asking */
    BH_RUNTIME_KUBE_POD_READY,   /* condition Ready=True */
    BH_RUNTIME_KUBE_POD_FAILED,  /* it will never be: failed, exited, crash-looping, deleted */
};

/* Classifies a Pod object (pure); why (n bytes, always terminated) says what it waits for or
 * why it failed, with the kubelet's reason and message. */
enum bh_runtime_kube_pod bh_runtime_kube_pod_state(const cJSON *pod, char *why, size_t n);

/* An instance as its Pod describes it (pure; the inventory's entries): the instance id its
 * name ends with, the labels the builders write (objects.h: managed, workload, instance,
 * generation, pool and pool-status, tenant and claim), the tenant-id and image-digest
 * annotations, its state (bh_runtime_kube_pod_state) and endpoint (svc: its Service, or NULL
 * when it has none). A label or annotation missing, malformed or at odds with another (a
 * tenant label that is not the tenant ID's hash, a workload label that does not name the Pod,
 * a pool Pod acquired without a tenant) is BH_EINVAL naming the Pod and the label, with *out
 * left empty. */
BH_MUST_CHECK int bh_runtime_kube_pod_found(const cJSON *pod, const cJSON *svc,
                                            struct bh_runtime_found *out, struct bh_err *err);

#endif
