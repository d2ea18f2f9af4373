/* The Kubernetes driver of the runtime seam (runtime_kube.h). Each call is one or a few API
 * requests; nothing is cached but which Pod an instance id names (the Pod's name holds the
 * workload's, which a container id does not). */
#include "runtime_kube.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "agent.h"
#include "crypto.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "objects.h"
#include "runtime_kube_int.h"
#include "tls.h"

#define KRT_MANAGED_SELECTOR "labelSelector=boilerhouse.dev%2Fmanaged%3Dtrue"
#define KRT_LIST_PAGE 500
#define KRT_ASSIGN_TRIES 8
/* How long a delete waits for the Pod to be gone beyond its grace period (the kubelet stops
 * it within that); still there after it, the delete fails and its caller retries later. */
#define KRT_DELETE_SLACK_MS 5000
#define KRT_DELETE_POLL_MS 100
#define KRT_MERGE_PATCH "application/merge-patch+json"
#define KRT_ID_LEN 12

struct kube_rt {
    struct bh_runtime base; /* first: the ops see a struct bh_runtime */
    struct bh_kube_client *client;
    struct bh_kube_opts opts; /* its strings are the fields below */
    char *operator_ns, *dns_ns, *dns_label, *proxy_image;
    char **cidrs; /* NULL-terminated */
    pthread_mutex_t lock;
    cJSON *pods;       /* instance id -> Pod name, of the Pods launched or listed; under lock */
    char *agent_token; /* the snapshot agents' token, once read or made; under lock */
    cJSON *agents;     /* Pod name -> its agent's base URL, once asked; under lock */
};

static struct kube_rt *krt(struct bh_runtime *rt)
{
    return (struct kube_rt *)rt;
}

static const char *krt_ns(struct kube_rt *k)
{
    return bh_kube_client_namespace(k->client);
}

/* ---- names ---- */

/* The instance id of a container id, if it is one (12 lowercase hex): nothing else reaches a
 * request path. */
static const char *krt_instance_id(const char *cid)
{
    const char *id = cid ? bh_runtime_instance_id(cid) : NULL;
    if (!id || strlen(id) != KRT_ID_LEN)
        return NULL;
    for (const char *p = id; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return NULL;
    return id;
}

/* The instance id a Pod name ends with ("bh-<workload>-<id>"), or NULL. */
static const char *krt_pod_id(const char *pod)
{
    const char *dash = pod ? strrchr(pod, '-') : NULL;
    if (!dash)
        return NULL;
    bh_autofree char *cid = bh_runtime_container_id(dash + 1);
    return krt_instance_id(cid) ? dash + 1 : NULL;
}

static void krt_remember(struct kube_rt *k, const char *id, const char *pod)
{
    pthread_mutex_lock(&k->lock);
    cJSON_DeleteItemFromObjectCaseSensitive(k->pods, id);
    if (pod)
        cJSON_AddStringToObject(k->pods, id, pod);
    pthread_mutex_unlock(&k->lock);
}

static char *krt_cached(struct kube_rt *k, const char *id)
{
    pthread_mutex_lock(&k->lock);
    const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(k->pods, id));
    char *pod = v ? bh_xstrdup(v) : NULL;
    pthread_mutex_unlock(&k->lock);
    return pod;
}

/* The managed objects of one resource (owned array). */
static int krt_list_managed(struct kube_rt *k, const char *resource, cJSON **items,
                            struct bh_err *err)
{
    bh_autofree char *path =
        bh_xasprintf("/api/v1/namespaces/%s/%s?%s", krt_ns(k), resource, KRT_MANAGED_SELECTOR);
    bh_autofree char *rv = NULL;
    if (bh_kube_list(k->client, path, KRT_LIST_PAGE, items, &rv, err) < 0)
        return bh_err_wrap(err, "list %s", resource);
    return 0;
}

/* The managed Pods of the namespace (owned array); each is remembered by its instance id. */
static int krt_list_pods(struct kube_rt *k, cJSON **items, struct bh_err *err)
{
    if (krt_list_managed(k, "pods", items, err) < 0)
        return -1;
    const cJSON *pod;
    cJSON_ArrayForEach(pod, *items) {
        const char *name = bh_json_str(pod, "metadata.name");
        const char *id = krt_pod_id(name);
        if (id)
            krt_remember(k, id, name);
    }
    return 0;
}

/* The Pod name of container id cid (owned), from memory or a listing; NULL with err set
 * (BH_ENOTFOUND when no Pod is this instance's). */
static char *krt_pod_name(struct kube_rt *k, const char *cid, struct bh_err *err)
{
    const char *id = krt_instance_id(cid);
    if (!id) {
        bh_err_set(err, BH_ENOTFOUND, "%s is not an instance's container id", cid ? cid : "?");
        return NULL;
    }
    char *pod = krt_cached(k, id);
    cJSON *items = NULL;
    if (pod || krt_list_pods(k, &items, err) < 0)
        return pod;
    cJSON_Delete(items);
    if (!(pod = krt_cached(k, id)))
        bh_err_set(err, BH_ENOTFOUND, "no Pod of instance %s", id);
    return pod;
}

/* ---- requests ---- */

char *krt_ns_path(struct bh_kube_client *c, const char *group, const char *resource,
                  const char *name)
{
    return bh_xasprintf("%s/namespaces/%s/%s%s%s", group, bh_kube_client_namespace(c), resource,
                        name ? "/" : "", name ? name : "");
}

static char *krt_path(struct kube_rt *k, const char *group, const char *resource, const char *name)
{
    return krt_ns_path(k->client, group, resource, name);
}

static int krt_get(struct kube_rt *k, const char *group, const char *resource, const char *name,
                   cJSON **out, struct bh_err *err)
{
    bh_autofree char *path = krt_path(k, group, resource, name);
    return bh_kube_request(k->client, "GET", path, NULL, NULL, out, NULL, err);
}

/* Creates obj (owned, consumed); one already there by that name counts (a retried launch). */
static int krt_create(struct kube_rt *k, const char *group, const char *resource, cJSON *obj,
                      struct bh_err *err)
{
    bh_autofree char *path = krt_path(k, group, resource, NULL);
    bh_autofree char *name = bh_xstrdup(bh_json_str(obj, "metadata.name"));
    int rc = bh_kube_request(k->client, "POST", path, obj, NULL, NULL, NULL, err);
    cJSON_Delete(obj);
    if (rc < 0 && err->code == BH_ECONFLICT)
        return 0;
    return rc < 0 ? bh_err_wrap(err, "create %s %s", resource, name) : 0;
}

/* Deletes one object; an absent one counts. *grace_s (optional): the grace period the
 * server gave it (0: it is gone already). */
static int krt_delete_one(struct kube_rt *k, const char *group, const char *resource,
                          const char *name, long long *grace_s, struct bh_err *err)
{
    bh_autofree char *path = krt_path(k, group, resource, name);
    cJSON *out = NULL;
    int rc = bh_kube_request(k->client, "DELETE", path, NULL, NULL, &out, NULL, err);
    /* A graceful delete answers the object, being deleted; an immediate one a Status. */
    if (grace_s)
        *grace_s = bh_json_get(out, "metadata.deletionTimestamp")
                       ? bh_json_int(out, "metadata.deletionGracePeriodSeconds", 0)
                       : 0;
    cJSON_Delete(out);
    if (rc < 0 && err->code != BH_ENOTFOUND)
        return bh_err_wrap(err, "delete %s %s", resource, name);
    return 0;
}

static int krt_patch(struct kube_rt *k, const char *pod, const cJSON *patch, struct bh_err *err)
{
    bh_autofree char *path = krt_path(k, KRT_CORE, "pods", pod);
    return bh_kube_request(k->client, "PATCH", path, patch, KRT_MERGE_PATCH, NULL, NULL, err);
}

/* ---- launch ---- */

static struct bh_kube_instance krt_identity(const struct bh_runtime_instance *inst)
{
    return (struct bh_kube_instance){.id = inst->instance_id,
                                     .tenant = inst->tenant,
                                     .claim = inst->claim,
                                     .pool = inst->pool,
                                     .restore = inst->restore,
                                     .image_user = inst->image_user};
}

/* A `restricted` workload's egress CA: made once per workload, kept in a Secret (never a
 * ConfigMap: it holds the key). An existing one is kept, so every Pod of the workload trusts
 * the same CA; two launches racing to make it both succeed (409 counts as made). */
static int krt_ensure_ca(struct kube_rt *k, const cJSON *wl, const struct bh_kube_opts *o,
                         struct bh_err *err)
{
    bh_autofree char *name = bh_kube_ca_secret_name(bh_json_str(wl, "metadata.name"));
    cJSON *have = NULL;
    int rc = krt_get(k, KRT_CORE, "secrets", name, &have, err);
    cJSON_Delete(have);
    if (rc == 0 || err->code != BH_ENOTFOUND)
        return rc < 0 ? bh_err_wrap(err, "egress CA Secret %s", name) : 0;
    char *cert = NULL, *key = NULL;
    cJSON *secret = NULL;
    rc = bh_tls_ca_new("boilerhouse-egress", &cert, &key, err);
    if (rc == 0)
        rc = bh_kube_ca_secret(wl, cert, key, o, &secret, err);
    if (key)
        bh_crypto_wipe(key, strlen(key));
    free(cert);
    free(key);
    return rc < 0 ? -1 : krt_create(k, KRT_CORE, "secrets", secret, err);
}

/* The snapshot agents' token (borrowed: kept until close), read or made on first use; not
 * under the lock while the API server is asked (two first uses both ask: the same answer). */
static const char *krt_token(struct kube_rt *k, struct bh_err *err)
{
    pthread_mutex_lock(&k->lock);
    const char *t = k->agent_token;
    pthread_mutex_unlock(&k->lock);
    char *fresh = NULL;
    if (t || krt_agent_token(k->client, &fresh, err) < 0)
        return t;
    pthread_mutex_lock(&k->lock);
    if (!k->agent_token)
        k->agent_token = fresh;
    else
        bh_crypto_wipe(fresh, strlen(fresh));
    t = k->agent_token;
    pthread_mutex_unlock(&k->lock);
    if (t != fresh)
        free(fresh);
    return t;
}

/* A Pod with overlay directories (the agent) or tenant credentials (the egress sidecar's
 * control port) mounts the agents' token Secret: it must exist first, or the kubelet would
 * not start the Pod. */
static int krt_ensure_agent(struct kube_rt *k, const cJSON *wl, struct bh_err *err)
{
    if (cJSON_GetArraySize(bh_json_get(wl, "spec.filesystem.overlayDirs")) == 0 &&
        bh_kube_tenant_headers(wl) == 0)
        return 0;
    return krt_token(k, err) ? 0 : -1;
}

/* The NetworkPolicy first and the Pod last: the Pod never runs a moment without its policy,
 * and a launch that fails midway leaves what delete removes. */
static int krt_launch(struct bh_runtime *rt, const struct bh_runtime_instance *inst,
                      struct bh_err *err)
{
    struct kube_rt *k = krt(rt);
    const struct bh_kube_opts *o = &k->opts;
    struct bh_kube_instance ki = krt_identity(inst);
    const char *access = bh_json_str(inst->workload, "spec.network.access");
    cJSON *np = NULL, *svc = NULL, *pod = NULL;
    if ((access && strcmp(access, "restricted") == 0 && krt_ensure_ca(k, inst->workload, o, err)) ||
        krt_ensure_agent(k, inst->workload, err) < 0 ||
        bh_kube_network_policy(inst->workload, &ki, o, &np, err) < 0 ||
        krt_create(k, KRT_NET, "networkpolicies", np, err) < 0 ||
        bh_kube_service(inst->workload, &ki, o, &svc, err) < 0 ||
        (svc && krt_create(k, KRT_CORE, "services", svc, err) < 0) ||
        bh_kube_pod(inst->workload, &ki, o, &pod, err) < 0)
        return -1;
    bh_autofree char *name = bh_xstrdup(bh_json_str(pod, "metadata.name"));
    krt_remember(k, inst->instance_id, name);
    return krt_create(k, KRT_CORE, "pods", pod, err);
}

/* ---- readiness, endpoint ---- */

/* A warm Pod found ready says so in its pool-status label (what claims select on), checked
 * against the version read: a conflict only means "look again". */
static int krt_mark_warm_ready(struct kube_rt *k, const cJSON *pod, struct bh_err *err)
{
    const char *status = bh_json_label(pod, BH_KUBE_LABEL_POOL_STATUS);
    if (!status || strcmp(status, "warming") != 0)
        return 1;
    cJSON *patch = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(patch, "metadata");
    cJSON_AddStringToObject(meta, "resourceVersion", bh_json_str(pod, "metadata.resourceVersion"));
    cJSON_AddStringToObject(cJSON_AddObjectToObject(meta, "labels"), BH_KUBE_LABEL_POOL_STATUS,
                            "ready");
    int rc = krt_patch(k, bh_json_str(pod, "metadata.name"), patch, err);
    cJSON_Delete(patch);
    return rc < 0 ? 0 : 1;
}

static int krt_ready(struct bh_runtime *rt, const char *id, struct bh_err *err)
{
    struct kube_rt *k = krt(rt);
    bh_autofree char *name = krt_pod_name(k, id, err);
    cJSON *pod = NULL;
    if (!name || krt_get(k, KRT_CORE, "pods", name, &pod, err) < 0) {
        if (err->code == BH_ENOTFOUND)
            return bh_err_set(err, BH_EIO, "Pod %s is gone", name ? name : id);
        return 0; /* the API server did not answer: ask again */
    }
    char why[512];
    enum bh_runtime_kube_pod st = bh_runtime_kube_pod_state(pod, why, sizeof(why));
    int rc = st == BH_RUNTIME_KUBE_POD_FAILED ? bh_err_set(err, BH_EIO, "Pod %s: %s", name, why)
             : st == BH_RUNTIME_KUBE_POD_PENDING
                 ? (bh_err_set(err, BH_EUNAVAIL, "Pod %s: %s", name, why), 0)
                 : krt_mark_warm_ready(k, pod, err);
    cJSON_Delete(pod);
    return rc;
}

/* The Service's ClusterIP and first port; without a Service (nothing exposed), the Pod's IP. */
static int krt_endpoint(struct bh_runtime *rt, const char *id, struct bh_runtime_endpoint *ep,
                        struct bh_err *err)
{
    struct kube_rt *k = krt(rt);
    bh_autofree char *name = krt_pod_name(k, id, err);
    cJSON *obj = NULL;
    memset(ep, 0, sizeof(*ep));
    if (!name)
        return -1;
    if (krt_get(k, KRT_CORE, "services", name, &obj, err) == 0)
        krt_endpoint_of(obj, NULL, ep);
    else if (err->code != BH_ENOTFOUND || krt_get(k, KRT_CORE, "pods", name, &obj, err) < 0)
        return bh_err_wrap(err, "endpoint of %s", name);
    else
        krt_endpoint_of(NULL, obj, ep);
    cJSON_Delete(obj);
    return ep->host[0] ? 0 : bh_err_set(err, BH_EUNAVAIL, "%s has no address yet", name);
}

/* ---- assign ---- */

/* Whether the warm Pod as read may be handed to inst: still unclaimed and ready (else
 * BH_ECONFLICT: another taker's), not going and built from the workload's generation (else
 * BH_EUNAVAIL). */
static int krt_assignable(const cJSON *pod, const struct bh_runtime_instance *inst,
                          struct bh_err *err)
{
    const char *name = bh_json_str(pod, "metadata.name");
    const char *status = bh_json_label(pod, BH_KUBE_LABEL_POOL_STATUS);
    const char *gen = bh_json_label(pod, BH_KUBE_LABEL_GENERATION);
    char want[32];
    snprintf(want, sizeof(want), "%lld", bh_json_int(inst->workload, "metadata.generation", 0));
    if (bh_json_label(pod, BH_KUBE_LABEL_CLAIM) || !status || strcmp(status, "ready") != 0)
        return bh_err_set(err, BH_ECONFLICT, "Pod %s was taken (pool-status %s)", name,
                          status ? status : "none");
    if (bh_json_get(pod, "metadata.deletionTimestamp"))
        return bh_err_set(err, BH_EUNAVAIL, "Pod %s is being deleted", name);
    if (!gen || strcmp(gen, want) != 0)
        return bh_err_set(err, BH_EUNAVAIL, "Pod %s runs generation %s, the workload is at %s",
                          name, gen ? gen : "?", want);
    return 0;
}

/* The resourceVersion in the patch makes the server refuse it (409) if anything changed the
 * Pod since it was read; a change that leaves it assignable (a status write) is tried again. */
static int krt_assign(struct bh_runtime *rt, const struct bh_runtime_instance *inst,
                      struct bh_err *err)
{
    struct kube_rt *k = krt(rt);
    bh_autofree char *name =
        bh_kube_pod_name(bh_json_str(inst->workload, "metadata.name"), inst->instance_id);
    for (int i = 0; i < KRT_ASSIGN_TRIES; i++) {
        cJSON *pod = NULL;
        if (krt_get(k, KRT_CORE, "pods", name, &pod, err) < 0)
            return bh_err_wrap(err, "Pod %s", name);
        if (krt_assignable(pod, inst, err) < 0) {
            cJSON_Delete(pod);
            return -1;
        }
        cJSON *patch = bh_kube_claim_patch(inst->tenant, inst->claim,
                                           bh_json_str(pod, "metadata.resourceVersion"));
        int rc = krt_patch(k, name, patch, err);
        cJSON_Delete(patch);
        cJSON_Delete(pod);
        if (rc == 0 || err->code != BH_ECONFLICT)
            return rc < 0 ? bh_err_wrap(err, "claim Pod %s", name) : 0;
    }
    return bh_err_set(err, BH_ECONFLICT, "Pod %s kept changing while being claimed", name);
}

/* ---- the host-shaped ops a remote driver answers ---- */

/* Alive unless the Pod is gone, ended or being deleted. An API server that does not answer
 * cannot tell: alive, so that nobody destroys a tenant's instance on a network blip. */
static int krt_alive(struct bh_runtime *rt, const char *id, int pid)
{
    (void)pid;
    struct kube_rt *k = krt(rt);
    struct bh_err err;
    bh_autofree char *name = krt_pod_name(k, id, &err);
    cJSON *pod = NULL;
    if (!name)
        return err.code != BH_ENOTFOUND;
    if (krt_get(k, KRT_CORE, "pods", name, &pod, &err) < 0)
        return err.code != BH_ENOTFOUND;
    const char *phase = bh_json_str(pod, "status.phase");
    int alive = !bh_json_get(pod, "metadata.deletionTimestamp") &&
                !(phase && (strcmp(phase, "Failed") == 0 || strcmp(phase, "Succeeded") == 0));
    cJSON_Delete(pod);
    return alive;
}

/* Until the Pod is gone (its finalizers and the kubelet done), or BH_EUNAVAIL once its grace
 * period and some slack have passed. */
/* A Pod's address does not change while it runs: its agent's is asked of the API server
 * once, not at every idle sample. */
static void krt_agent_remember(struct kube_rt *k, const char *pod, const char *base)
{
    pthread_mutex_lock(&k->lock);
    cJSON_DeleteItemFromObjectCaseSensitive(k->agents, pod);
    if (base)
        cJSON_AddStringToObject(k->agents, pod, base);
    pthread_mutex_unlock(&k->lock);
}

static char *krt_agent_addr(struct kube_rt *k, const char *pod, struct bh_err *err)
{
    pthread_mutex_lock(&k->lock);
    const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(k->agents, pod));
    char *base = v ? bh_xstrdup(v) : NULL;
    pthread_mutex_unlock(&k->lock);
    if (!base && (base = krt_pod_base(k->client, pod, BH_KUBE_AGENT_PORT, 0, err)))
        krt_agent_remember(k, pod, base);
    return base;
}

static int krt_wait_gone(struct kube_rt *k, const char *name, long long grace_s, struct bh_err *err)
{
    long long deadline = bh_clock_ms() + grace_s * 1000 + KRT_DELETE_SLACK_MS;
    for (;;) {
        cJSON *pod = NULL;
        int rc = krt_get(k, KRT_CORE, "pods", name, &pod, err);
        cJSON_Delete(pod);
        if (rc < 0 && err->code == BH_ENOTFOUND)
            return 0;
        if (bh_clock_ms() > deadline)
            return bh_err_set(err, BH_EUNAVAIL, "Pod %s is still terminating", name);
        usleep(KRT_DELETE_POLL_MS * 1000);
    }
}

static int krt_delete(struct bh_runtime *rt, const char *id, struct bh_err *err)
{
    struct kube_rt *k = krt(rt);
    bh_autofree char *name = krt_pod_name(k, id, err);
    if (!name)
        return err->code == BH_ENOTFOUND ? 0 : -1;
    long long grace_s = 0;
    if (krt_delete_one(k, KRT_CORE, "pods", name, &grace_s, err) < 0 ||
        krt_delete_one(k, KRT_CORE, "services", name, NULL, err) < 0 ||
        krt_delete_one(k, KRT_NET, "networkpolicies", name, NULL, err) < 0 ||
        krt_wait_gone(k, name, grace_s, err) < 0)
        return -1;
    krt_remember(k, krt_instance_id(id), NULL);
    krt_agent_remember(k, name, NULL);
    return 0;
}

static int krt_list(struct bh_runtime *rt, char ***ids, struct bh_err *err)
{
    cJSON *items = NULL;
    *ids = NULL;
    if (krt_list_pods(krt(rt), &items, err) < 0)
        return -1;
    size_t n = 0;
    *ids = bh_xcalloc((size_t)cJSON_GetArraySize(items) + 1, sizeof(char *));
    const cJSON *pod;
    cJSON_ArrayForEach(pod, items) {
        const char *id = krt_pod_id(bh_json_str(pod, "metadata.name"));
        if (id)
            (*ids)[n++] = bh_runtime_container_id(id);
    }
    cJSON_Delete(items);
    return 0;
}

/* ---- what a new leader adopts ---- */

/* Two listings (Pods, Services), whatever the number of instances. */
static int krt_inventory(struct bh_runtime *rt, struct bh_runtime_found **found, size_t *n,
                         struct bh_err *err)
{
    struct kube_rt *k = krt(rt);
    cJSON *pods = NULL, *svcs = NULL;
    if (krt_list_pods(k, &pods, err) < 0 || krt_list_managed(k, "services", &svcs, err) < 0) {
        cJSON_Delete(pods);
        return -1;
    }
    *found = bh_xcalloc((size_t)cJSON_GetArraySize(pods) + 1, sizeof(**found));
    const cJSON *pod, *svc;
    cJSON_ArrayForEach(pod, pods) {
        const char *name = bh_json_str(pod, "metadata.name");
        const cJSON *mine = NULL;
        cJSON_ArrayForEach(svc, svcs) {
            const char *sname = bh_json_str(svc, "metadata.name");
            if (!mine && name && sname && strcmp(sname, name) == 0)
                mine = svc;
        }
        struct bh_err perr;
        if (bh_runtime_kube_pod_found(pod, mine, &(*found)[*n], &perr) == 0)
            (*n)++;
        else
            bh_warn("runtime", "not adopting or deleting it: %s", perr.msg);
    }
    cJSON_Delete(pods);
    cJSON_Delete(svcs);
    return 0;
}

/* ---- overlay data, through the Pod's snapshot agent ---- */

static int krt_save(struct bh_runtime *rt, const char *id, const char *out_path,
                    struct bh_runtime_saved *saved, struct bh_err *err)
{
    struct kube_rt *k = krt(rt);
    bh_autofree char *name = krt_pod_name(k, id, err);
    const char *token = name ? krt_token(k, err) : NULL;
    return token ? krt_agent_save(k->client, token, name, out_path, saved, err) : -1;
}

static int krt_restore(struct bh_runtime *rt, const char *id, const char *in_path,
                       const char *digest, int timeout_ms, struct bh_err *err)
{
    struct kube_rt *k = krt(rt);
    bh_autofree char *name = krt_pod_name(k, id, err);
    const char *token = name ? krt_token(k, err) : NULL;
    return token ? krt_agent_restore(k->client, token, name, in_path, digest, timeout_ms, err) : -1;
}

/* Idle detection's counters come from the Pod's snapshot agent (agent.h GET /v1/activity):
 * the API server has no kubelet stats to give. CPU and memory stay unknown (-1). */
static int krt_stats(struct bh_runtime *rt, const char *id, int pid, struct bh_runtime_stats *st,
                     struct bh_err *err)
{
    (void)pid;
    struct kube_rt *k = krt(rt);
    bh_autofree char *name = krt_pod_name(k, id, err);
    const char *token = name ? krt_token(k, err) : NULL;
    bh_autofree char *base = token ? krt_agent_addr(k, name, err) : NULL;
    struct bh_agent_counters c = {0};
    if (!base)
        return -1;
    if (bh_agent_activity(base, token, &c, err) < 0) {
        krt_agent_remember(k, name, NULL); /* asked again next time */
        return bh_err_wrap(err, "activity of Pod %s", name);
    }
    st->cpu_ns = st->mem_bytes = st->mem_limit = -1;
    st->net_bytes = c.net;
    st->newest_mtime_ms = c.newest_mtime_ms;
    return 0;
}

/* ---- a claim's tenant credentials, to the Pod's egress sidecar ---- */

static int krt_credentials(struct bh_runtime *rt, const char *id,
                           const struct bh_runtime_credential *creds, size_t n, int timeout_ms,
                           struct bh_err *err)
{
    struct kube_rt *k = krt(rt);
    bh_autofree char *name = krt_pod_name(k, id, err);
    const char *token = name ? krt_token(k, err) : NULL;
    return token ? krt_egress_push(k->client, token, name, creds, n, timeout_ms, err) : -1;
}

static void krt_close(struct bh_runtime *rt)
{
    struct kube_rt *k = krt(rt);
    free(k->operator_ns);
    free(k->dns_ns);
    free(k->dns_label);
    free(k->proxy_image);
    bh_strv_free(k->cidrs);
    if (k->agent_token)
        bh_crypto_wipe(k->agent_token, strlen(k->agent_token));
    free(k->agent_token);
    cJSON_Delete(k->pods);
    cJSON_Delete(k->agents);
    pthread_mutex_destroy(&k->lock);
    free(k);
}

static const struct bh_runtime_remote_ops krt_remote_ops = {
    .launch = krt_launch,
    .ready = krt_ready,
    .endpoint = krt_endpoint,
    .assign = krt_assign,
    .save = krt_save,
    .restore = krt_restore,
    .credentials = krt_credentials,
    .inventory = krt_inventory,
};

static const struct bh_runtime_ops krt_ops = {
    .alive = krt_alive,
    .stats = krt_stats,
    .delete = krt_delete,
    .list = krt_list,
    .close = krt_close,
    .caps = BH_RUNTIME_CAP_REMOTE | BH_RUNTIME_CAP_SHARED,
    .remote = &krt_remote_ops,
};

static char *krt_dup(const char *s)
{
    return s ? bh_xstrdup(s) : NULL;
}

/* "a, b,c" as an owned NULL-terminated list, empty items dropped. */
static char **krt_split(const char *list)
{
    bh_autofree char *copy = bh_xstrdup(list ? list : "");
    char **v = bh_xcalloc(strlen(copy) / 2 + 2, sizeof(char *));
    size_t n = 0;
    char *save = NULL;
    for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save))
        v[n++] = bh_xstrdup(t);
    return v;
}

/* The objects' settings, as owned copies the opts point into. */
static void krt_configure(struct kube_rt *k, const struct bh_runtime_kube_cfg *cfg)
{
    k->operator_ns = krt_dup(cfg->operator_namespace);
    k->dns_ns = krt_dup(cfg->dns_namespace);
    k->dns_label = krt_dup(cfg->dns_label);
    k->proxy_image = krt_dup(cfg->proxy_image);
    k->cidrs = krt_split(cfg->cluster_cidrs);
    k->opts = (struct bh_kube_opts){.namespace = krt_ns(k),
                                    .operator_namespace = k->operator_ns,
                                    .cluster_cidrs = (const char *const *)k->cidrs,
                                    .dns_namespace = k->dns_ns,
                                    .dns_label = k->dns_label,
                                    .proxy_image = k->proxy_image};
    bh_kube_opts_defaults(&k->opts);
}

int bh_runtime_kube_open(struct bh_kube_client *client, const struct bh_runtime_kube_cfg *cfg,
                         struct bh_runtime **out, struct bh_err *err)
{
    struct kube_rt *k = bh_xcalloc(1, sizeof(*k));
    k->base.ops = &krt_ops;
    k->base.name = "kube";
    k->client = client;
    k->pods = cJSON_CreateObject();
    k->agents = cJSON_CreateObject();
    pthread_mutex_init(&k->lock, NULL);
    krt_configure(k, cfg);
    if (bh_kube_opts_check(&k->opts, err) < 0) {
        krt_close(&k->base);
        return -1;
    }
    *out = &k->base;
    bh_info("runtime", "instances run as Pods in namespace %s", krt_ns(k));
    return 0;
}
