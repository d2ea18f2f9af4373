/* What a Pod says (runtime_kube.h): its status about a boot, its labels and annotations about
 * the instance it runs. Pure, so every case is unit-tested. */
#include <stdio.h>
#include <string.h>

#include "json.h"
#include "mem.h"
#include "name.h"
#include "objects.h"
#include "runtime_kube.h"
#include "runtime_kube_int.h"

/* Waiting reasons after which a container never starts without a change to the Pod (the
 * kubelet keeps retrying, but a boot must not wait out its deadline for them). An image pull
 * backing off is not among them: a registry may come back. */
static const char *const pod_fatal_waits[] = {"CrashLoopBackOff", "CreateContainerConfigError",
                                              "CreateContainerError", "InvalidImageName",
                                              "RunContainerError"};

static int pod_fatal_wait(const char *reason)
{
    for (size_t i = 0; reason && i < sizeof(pod_fatal_waits) / sizeof(pod_fatal_waits[0]); i++)
        if (strcmp(reason, pod_fatal_waits[i]) == 0)
            return 1;
    return 0;
}

static const char *pod_or(const char *s, const char *dflt)
{
    return s && *s ? s : dflt;
}

/* A container's state: FAILED when it ended (restartPolicy Never: ended is for good) or waits
 * on a fatal reason; else PENDING, with why set to a waiting reason if any. */
static enum bh_runtime_kube_pod pod_container(const cJSON *cs, char *why, size_t n)
{
    const char *name = pod_or(bh_json_str(cs, "name"), "?");
    const cJSON *term = bh_json_get(cs, "state.terminated");
    if (term) {
        snprintf(why, n, "container %s terminated: %s (exit code %lld)%s%s", name,
                 pod_or(bh_json_str(term, "reason"), "no reason"),
                 bh_json_int(term, "exitCode", -1), bh_json_str(term, "message") ? ": " : "",
                 pod_or(bh_json_str(term, "message"), ""));
        return BH_RUNTIME_KUBE_POD_FAILED;
    }
    const char *reason = bh_json_str(cs, "state.waiting.reason");
    if (!reason)
        return BH_RUNTIME_KUBE_POD_PENDING;
    const char *msg = bh_json_str(cs, "state.waiting.message");
    snprintf(why, n, "container %s waiting: %s%s%s", name, reason, msg ? ": " : "",
             pod_or(msg, ""));
    return pod_fatal_wait(reason) ? BH_RUNTIME_KUBE_POD_FAILED : BH_RUNTIME_KUBE_POD_PENDING;
}

static int pod_ready(const cJSON *pod)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, bh_json_get(pod, "status.conditions")) {
        const char *type = bh_json_str(c, "type"), *status = bh_json_str(c, "status");
        if (type && status && strcmp(type, "Ready") == 0)
            return strcmp(status, "True") == 0;
    }
    return 0;
}

enum bh_runtime_kube_pod bh_runtime_kube_pod_state(const cJSON *pod, char *why, size_t n)
{
    const char *phase = pod_or(bh_json_str(pod, "status.phase"), "Pending");
    snprintf(why, n, "Pod phase %s, not Ready", phase);
    if (bh_json_get(pod, "metadata.deletionTimestamp")) {
        snprintf(why, n, "Pod is being deleted");
        return BH_RUNTIME_KUBE_POD_FAILED;
    }
    /* The containers first: they say why better than the Pod's phase does. */
    const cJSON *cs;
    cJSON_ArrayForEach(cs, bh_json_get(pod, "status.containerStatuses")) {
        if (pod_container(cs, why, n) == BH_RUNTIME_KUBE_POD_FAILED)
            return BH_RUNTIME_KUBE_POD_FAILED;
    }
    if (strcmp(phase, "Failed") == 0 || strcmp(phase, "Succeeded") == 0) {
        snprintf(why, n, "Pod %s: %s%s%s", strcmp(phase, "Failed") == 0 ? "failed" : "exited",
                 pod_or(bh_json_str(pod, "status.reason"), "no reason"),
                 bh_json_str(pod, "status.message") ? ": " : "",
                 pod_or(bh_json_str(pod, "status.message"), ""));
        return BH_RUNTIME_KUBE_POD_FAILED;
    }
    return pod_ready(pod) ? BH_RUNTIME_KUBE_POD_READY : BH_RUNTIME_KUBE_POD_PENDING;
}

/* ---- an instance as its Pod describes it ---- */

void krt_endpoint_of(const cJSON *svc, const cJSON *pod, struct bh_runtime_endpoint *ep)
{
    const char *ip = svc ? bh_json_str(svc, "spec.clusterIP") : bh_json_str(pod, "status.podIP");
    long long port =
        svc ? bh_json_int(cJSON_GetArrayItem(bh_json_get(svc, "spec.ports"), 0), "port", 0)
            : bh_json_int(
                  cJSON_GetArrayItem(
                      bh_json_get(cJSON_GetArrayItem(bh_json_get(pod, "spec.containers"), 0),
                                  "ports"),
                      0),
                  "containerPort", 0);
    memset(ep, 0, sizeof(*ep));
    snprintf(ep->host, sizeof(ep->host), "%s", ip ? ip : "");
    ep->port = (int)port;
}

static const char *found_annotation(const cJSON *pod, const char *key)
{
    return cJSON_GetStringValue(
        cJSON_GetObjectItemCaseSensitive(bh_json_get(pod, "metadata.annotations"), key));
}

/* A positive decimal without sign or leading zero, as the builders write a generation. */
static long long found_generation(const char *v)
{
    if (!v || !*v || *v == '0' || strlen(v) > 18)
        return 0;
    long long g = 0;
    for (const char *p = v; *p; p++) {
        if (*p < '0' || *p > '9')
            return 0;
        g = g * 10 + (*p - '0');
    }
    return g;
}

/* "sha256:<hex>", as the image store names digests. */
static int found_digest_valid(const char *v)
{
    const char *colon = strchr(v, ':');
    if (!colon || colon == v || strlen(v) > 128 || !colon[1])
        return 0;
    for (const char *p = v; *p; p++)
        if (p != colon && !((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z')))
            return 0;
    return 1;
}

/* The instance id the Pod's name ends with, and its workload label naming it. */
static int found_name(const cJSON *pod, const char *name, struct bh_err *err)
{
    const char *dash = strrchr(name, '-');
    const char *wl = bh_json_label(pod, BH_KUBE_LABEL_WORKLOAD);
    const char *managed = bh_json_label(pod, BH_KUBE_LABEL_MANAGED);
    const char *inst = bh_json_label(pod, BH_KUBE_LABEL_INSTANCE);
    if (!dash || !bh_runtime_id_valid(dash + 1))
        return bh_err_set(err, BH_EINVAL, "Pod %s: its name does not end with an instance id",
                          name);
    if (!managed || strcmp(managed, "true") != 0)
        return bh_err_set(err, BH_EINVAL, "Pod %s: label " BH_KUBE_LABEL_MANAGED ": must be true",
                          name);
    if (!wl || !bh_name_label_valid(wl))
        return bh_err_set(err, BH_EINVAL,
                          "Pod %s: label " BH_KUBE_LABEL_WORKLOAD ": %s a workload name", name,
                          wl ? "not" : "missing,");
    bh_autofree char *want = bh_kube_pod_name(wl, dash + 1);
    if (strcmp(want, name) != 0)
        return bh_err_set(err, BH_EINVAL,
                          "Pod %s: label " BH_KUBE_LABEL_WORKLOAD ": %s does not name this Pod",
                          name, wl);
    if (!inst || strcmp(inst, name) != 0)
        return bh_err_set(err, BH_EINVAL,
                          "Pod %s: label " BH_KUBE_LABEL_INSTANCE ": must be the Pod's name", name);
    return 0;
}

/* The tenant (annotation, its hash the label) and the claim: all three or none. */
static int found_tenant(const cJSON *pod, const char *name, struct bh_err *err)
{
    const char *tenant = found_annotation(pod, BH_KUBE_ANNOT_TENANT);
    const char *hashed = bh_json_label(pod, BH_KUBE_LABEL_TENANT);
    const char *claim = bh_json_label(pod, BH_KUBE_LABEL_CLAIM);
    if (!tenant && !hashed && !claim)
        return 0;
    if (!tenant || !bh_name_tenant_valid(tenant))
        return bh_err_set(err, BH_EINVAL, "Pod %s: annotation " BH_KUBE_ANNOT_TENANT ": %s", name,
                          tenant ? "not a tenant ID" : "missing beside its tenant or claim label");
    bh_autofree char *want = bh_kube_tenant_label(tenant);
    if (!hashed || strcmp(hashed, want) != 0)
        return bh_err_set(err, BH_EINVAL,
                          "Pod %s: label " BH_KUBE_LABEL_TENANT ": not the hash of its tenant ID",
                          name);
    if (!claim || !bh_name_tenant_valid(claim))
        return bh_err_set(err, BH_EINVAL, "Pod %s: label " BH_KUBE_LABEL_CLAIM ": %s", name,
                          claim ? "not a claim name" : "missing beside its tenant");
    return 0;
}

/* The pool and its status: both or none; acquired exactly when a tenant holds it. */
static int found_pool(const cJSON *pod, const char *name, struct bh_err *err)
{
    const char *pool = bh_json_label(pod, BH_KUBE_LABEL_POOL);
    const char *st = bh_json_label(pod, BH_KUBE_LABEL_POOL_STATUS);
    int held = bh_json_label(pod, BH_KUBE_LABEL_TENANT) != NULL;
    if (!pool && !st)
        return held ? 0
                    : bh_err_set(err, BH_EINVAL, "Pod %s: neither a pool's nor a tenant's", name);
    if (!pool || !bh_name_tenant_valid(pool))
        return bh_err_set(err, BH_EINVAL, "Pod %s: label " BH_KUBE_LABEL_POOL ": %s", name,
                          pool ? "not a pool name" : "missing beside its pool-status");
    int acquired = st && strcmp(st, "acquired") == 0;
    if (!st || (!acquired && strcmp(st, "warming") != 0 && strcmp(st, "ready") != 0))
        return bh_err_set(err, BH_EINVAL,
                          "Pod %s: label " BH_KUBE_LABEL_POOL_STATUS
                          ": must be warming, ready or acquired",
                          name);
    if (acquired != held)
        return bh_err_set(err, BH_EINVAL,
                          "Pod %s: label " BH_KUBE_LABEL_POOL_STATUS ": %s %s a tenant's label",
                          name, st, held ? "beside" : "without");
    return 0;
}

static char *found_dup(const char *s)
{
    return s ? bh_xstrdup(s) : NULL;
}

int bh_runtime_kube_pod_found(const cJSON *pod, const cJSON *svc, struct bh_runtime_found *out,
                              struct bh_err *err)
{
    const char *name = bh_json_str(pod, "metadata.name");
    const char *gen = bh_json_label(pod, BH_KUBE_LABEL_GENERATION);
    const char *digest = found_annotation(pod, BH_KUBE_ANNOT_IMAGE_DIGEST);
    memset(out, 0, sizeof(*out));
    if (!name)
        return bh_err_set(err, BH_EINVAL, "a Pod without a name");
    if (found_name(pod, name, err) < 0 || found_tenant(pod, name, err) < 0 ||
        found_pool(pod, name, err) < 0)
        return -1;
    if (!found_generation(gen))
        return bh_err_set(err, BH_EINVAL,
                          "Pod %s: label " BH_KUBE_LABEL_GENERATION ": %s a positive integer", name,
                          gen ? "not" : "missing,");
    if (digest && !found_digest_valid(digest))
        return bh_err_set(err, BH_EINVAL,
                          "Pod %s: annotation " BH_KUBE_ANNOT_IMAGE_DIGEST ": not an image digest",
                          name);
    char why[256];
    enum bh_runtime_kube_pod st = bh_runtime_kube_pod_state(pod, why, sizeof(why));
    out->instance_id = bh_xstrdup(strrchr(name, '-') + 1);
    out->id = bh_runtime_container_id(out->instance_id);
    out->workload = bh_xstrdup(bh_json_label(pod, BH_KUBE_LABEL_WORKLOAD));
    out->generation = found_generation(gen);
    out->tenant = found_dup(found_annotation(pod, BH_KUBE_ANNOT_TENANT));
    out->claim = found_dup(bh_json_label(pod, BH_KUBE_LABEL_CLAIM));
    out->pool = found_dup(bh_json_label(pod, BH_KUBE_LABEL_POOL));
    out->image_digest = found_dup(digest);
    out->state = st == BH_RUNTIME_KUBE_POD_READY    ? BH_RUNTIME_FOUND_READY
                 : st == BH_RUNTIME_KUBE_POD_FAILED ? BH_RUNTIME_FOUND_ENDED
                                                    : BH_RUNTIME_FOUND_STARTING;
    krt_endpoint_of(svc, pod, &out->endpoint);
    return 0;
}
