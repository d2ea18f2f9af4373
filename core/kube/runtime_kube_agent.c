/* The Pod runtime's side of the snapshot agent (core/snapshot/agent.h): the token every agent
 * of the namespace accepts, and the agent's address, which is the Pod's. */
#include "runtime_kube_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "clock.h"
#include "crypto.h"
#include "json.h"
#include "mem.h"
#include "objects.h"
#include "runtime_kube.h"

#define AGENT_TOKEN_BYTES 32
#define AGENT_GAP_MIN_MS 50
#define AGENT_GAP_MAX_MS 1000

/* The token a Secret holds (owned), or NULL with err set. */
static char *agent_secret_token(const cJSON *secret, struct bh_err *err)
{
    const char *b64 = bh_json_str(secret, "data.token");
    size_t len = 0;
    unsigned char *raw = b64 ? bh_crypto_unbase64(b64, &len) : NULL;
    if (!raw || len == 0 || strlen((char *)raw) != len) {
        free(raw);
        bh_err_set(err, BH_EINVAL, "Secret %s: no usable key \"token\"", BH_KUBE_AGENT_SECRET);
        return NULL;
    }
    return (char *)raw;
}

static int agent_secret_create(struct bh_kube_client *c, struct bh_err *err)
{
    uint8_t raw[AGENT_TOKEN_BYTES];
    char hex[2 * AGENT_TOKEN_BYTES + 1];
    if (bh_crypto_random(raw, sizeof(raw), err) < 0)
        return -1;
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    struct bh_kube_opts o = {.namespace = bh_kube_client_namespace(c)};
    bh_kube_opts_defaults(&o);
    cJSON *secret = NULL;
    int rc = bh_kube_agent_secret(hex, &o, &secret, err);
    bh_crypto_wipe(hex, sizeof(hex));
    if (rc < 0)
        return -1;
    bh_autofree char *path = krt_ns_path(c, KRT_CORE, "secrets", NULL);
    rc = bh_kube_request(c, "POST", path, secret, NULL, NULL, NULL, err);
    cJSON_Delete(secret);
    return rc < 0 && err->code != BH_ECONFLICT ? -1 : 0; /* 409: another replica made it */
}

int krt_agent_token(struct bh_kube_client *c, char **token, struct bh_err *err)
{
    bh_autofree char *path = krt_ns_path(c, KRT_CORE, "secrets", BH_KUBE_AGENT_SECRET);
    for (int tries = 0; tries < 2; tries++) {
        cJSON *secret = NULL;
        if (bh_kube_request(c, "GET", path, NULL, NULL, &secret, NULL, err) == 0) {
            *token = agent_secret_token(secret, err);
            cJSON_Delete(secret);
            return *token ? 0 : -1;
        }
        if (err->code != BH_ENOTFOUND || agent_secret_create(c, err) < 0)
            return bh_err_wrap(err, "snapshot agent token");
    }
    return bh_err_set(err, BH_EIO, "snapshot agent token: Secret %s made but not found",
                      BH_KUBE_AGENT_SECRET);
}

/* Whether a Pod that must be Ready is: BH_EUNAVAIL while it is not yet, BH_EIO if never. */
static int agent_pod_ready(const cJSON *obj, const char *pod, struct bh_err *err)
{
    char why[256];
    enum bh_runtime_kube_pod st = bh_runtime_kube_pod_state(obj, why, sizeof(why));
    if (st == BH_RUNTIME_KUBE_POD_READY)
        return 0;
    return bh_err_set(err, st == BH_RUNTIME_KUBE_POD_FAILED ? BH_EIO : BH_EUNAVAIL, "Pod %s: %s",
                      pod, why);
}

char *krt_pod_base(struct bh_kube_client *c, const char *pod, int port, int need_ready,
                   struct bh_err *err)
{
    bh_autofree char *path = krt_ns_path(c, KRT_CORE, "pods", pod);
    cJSON *obj = NULL;
    if (bh_kube_request(c, "GET", path, NULL, NULL, &obj, NULL, err) < 0) {
        bh_err_wrap(err, "Pod %s", pod);
        return NULL;
    }
    const char *ip = bh_json_str(obj, "status.podIP");
    const char *phase = bh_json_str(obj, "status.phase");
    char *base = NULL;
    if (phase && (!strcmp(phase, "Failed") || !strcmp(phase, "Succeeded")))
        bh_err_set(err, BH_EIO, "Pod %s has ended (%s)", pod, phase);
    else if (!ip || !ip[0])
        bh_err_set(err, BH_EUNAVAIL, "Pod %s has no address yet", pod);
    else if (!need_ready || agent_pod_ready(obj, pod, err) == 0)
        base = bh_xasprintf(strchr(ip, ':') ? "http://[%s]:%d" : "http://%s:%d", ip, port);
    cJSON_Delete(obj);
    return base;
}

int krt_agent_save(struct bh_kube_client *c, const char *token, const char *pod,
                   const char *out_path, struct bh_runtime_saved *saved, struct bh_err *err)
{
    bh_autofree char *base = krt_pod_base(c, pod, BH_KUBE_AGENT_PORT, 0, err);
    struct bh_snapshot_info info = {0};
    if (!base || bh_agent_fetch(base, token, out_path, &info, err) < 0)
        return bh_err_wrap(err, "save the data of Pod %s", pod);
    memcpy(saved->digest, info.digest, sizeof(saved->digest));
    saved->size = info.size;
    saved->files = info.files;
    return 0;
}

int krt_pod_retry(struct bh_kube_client *c, const char *pod, int port, int need_ready,
                  int timeout_ms, const char *what, krt_pod_try_fn fn, void *ud, int *tries,
                  struct bh_err *err)
{
    long long deadline = bh_clock_ms() + timeout_ms;
    int gap_ms = AGENT_GAP_MIN_MS;
    for (*tries = 1;; (*tries)++) {
        struct bh_err look = {0};
        bh_autofree char *base = krt_pod_base(c, pod, port, need_ready, &look);
        if (base && fn(base, ud, &look) == 0)
            return 0;
        if (look.code != BH_EUNAVAIL) {
            *err = look;
            return bh_err_wrap(err, "%s Pod %s", what, pod);
        }
        if (bh_clock_ms() > deadline)
            return bh_err_set(err, BH_ETIMEOUT, "%s Pod %s: not taken after %d ms: %s", what, pod,
                              timeout_ms, look.msg);
        usleep((useconds_t)gap_ms * 1000);
        gap_ms = gap_ms * 2 > AGENT_GAP_MAX_MS ? AGENT_GAP_MAX_MS : gap_ms * 2;
    }
}

struct agent_push {
    const char *token, *in_path, *digest;
};

static int agent_push_try(const char *base, void *ud, struct bh_err *err)
{
    const struct agent_push *p = ud;
    return bh_agent_push(base, p->token, p->in_path, p->digest, err);
}

/* Until the Pod has an address and its agent takes the snapshot: a restore agent starts
 * with the Pod, so the first tries may find nothing listening yet (BH_EUNAVAIL). */
int krt_agent_restore(struct bh_kube_client *c, const char *token, const char *pod,
                      const char *in_path, const char *digest, int timeout_ms, struct bh_err *err)
{
    struct agent_push p = {token, in_path, digest};
    int tries;
    return krt_pod_retry(c, pod, BH_KUBE_AGENT_PORT, 0, timeout_ms, "restore into", agent_push_try,
                         &p, &tries, err);
}
