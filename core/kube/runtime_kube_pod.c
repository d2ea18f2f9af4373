/* What a Pod's status says about a boot (runtime_kube.h): pure, so every case is unit-tested. */
#include <stdio.h>
#include <string.h>

#include "json.h"
#include "runtime_kube.h"

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
