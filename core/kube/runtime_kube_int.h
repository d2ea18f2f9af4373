/* Shared by the Pod runtime's files (runtime_kube.c, runtime_kube_agent.c,
 * runtime_kube_egress.c); not for other modules. */
#ifndef BH_RUNTIME_KUBE_INT_H
#define BH_RUNTIME_KUBE_INT_H

#include "client.h"
#include "err.h"
#include "runtime.h"

#define KRT_CORE "/api/v1"
#define KRT_NET "/apis/networking.k8s.io/v1"

/* The API path (owned) of resource in group (KRT_CORE, KRT_NET) in the client's namespace;
 * of the object name when not NULL. */
char *krt_ns_path(struct bh_kube_client *c, const char *group, const char *resource,
                  const char *name);

/* The snapshot agents' bearer token (owned), from the namespace's Secret
 * BH_KUBE_AGENT_SECRET, which is made with a fresh random token when absent (two replicas
 * racing to make it both end up with the one that won). */
BH_MUST_CHECK int krt_agent_token(struct bh_kube_client *c, char **token, struct bh_err *err);
/* The overlay directories of Pod pod, from its snapshot agent, into out_path. */
BH_MUST_CHECK int krt_agent_save(struct bh_kube_client *c, const char *token, const char *pod,
                                 const char *out_path, struct bh_runtime_saved *saved,
                                 struct bh_err *err);
/* Sends in_path to the restore agent of Pod pod once it has an address and answers, within
 * timeout_ms. */
BH_MUST_CHECK int krt_agent_restore(struct bh_kube_client *c, const char *token, const char *pod,
                                    const char *in_path, const char *digest, int timeout_ms,
                                    struct bh_err *err);

/* "http://IP:PORT" of Pod pod at port (owned), or NULL with err set: BH_EUNAVAIL while the
 * Pod has no address (or, with need_ready, is not Ready yet), BH_EIO once it has ended (or,
 * with need_ready, failed for good: a container terminated). */
char *krt_pod_base(struct bh_kube_client *c, const char *pod, int port, int need_ready,
                   struct bh_err *err);
/* One try at Pod pod (base "http://IP:PORT"): 0 done; BH_EUNAVAIL asks again. */
typedef int (*krt_pod_try_fn)(const char *base, void *ud, struct bh_err *err);
/* Calls fn at Pod pod's port until it succeeds, fails with anything but BH_EUNAVAIL (no
 * address yet, or with need_ready not Ready yet, or nothing listening), or timeout_ms has
 * passed, with backoff between tries (50 ms to 1 s); errors say "<what> Pod <pod>".
 * *tries says how many were made. */
BH_MUST_CHECK int krt_pod_retry(struct bh_kube_client *c, const char *pod, int port, int need_ready,
                                int timeout_ms, const char *what, krt_pod_try_fn fn, void *ud,
                                int *tries, struct bh_err *err);
/* Sends the tenant's credential values to the egress sidecar of Pod pod (its control port,
 * authenticated with token), asking again while it cannot be reached, within timeout_ms. */
BH_MUST_CHECK int krt_egress_push(struct bh_kube_client *c, const char *token, const char *pod,
                                  const struct bh_runtime_credential *creds, size_t n,
                                  int timeout_ms, struct bh_err *err);
/* Where clients reach an instance: its Service's ClusterIP and first port, or without a
 * Service (svc NULL: nothing exposed) its Pod's IP and first containerPort; host "" while
 * there is none. */
void krt_endpoint_of(const cJSON *svc, const cJSON *pod, struct bh_runtime_endpoint *ep);

#endif
