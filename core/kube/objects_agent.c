/* The snapshot agent's parts of a Pod (core/snapshot/agent.h has the protocol). All overlay
 * directories live in one emptyDir, which the workload mounts once per directory with a
 * subPath and the agent mounts whole: a restore then exchanges plain directories inside one
 * filesystem, as local mode does, where it could not rename mount points. The sidecar serves
 * hibernation for the Pod's life; a Pod that resumes a tenant's snapshot also gets an init
 * container that takes the archive in before the workload starts (so the workload never sees
 * half a restore, and its subPath mounts bind the restored directories). */
#include "objects_int.h"

#include <stdio.h>
#include <string.h>

#include "crypto.h"
#include "json.h"
#include "mem.h"

#define AGENT_VOLUME "overlays"
#define AGENT_TOKEN_VOLUME "agent-token"
#define AGENT_TOKEN_DIR "/etc/boilerhouse/agent"
#define AGENT_MIN_TOKEN 32
#define AGENT_HOST_IP_ENV "BOILERHOUSE_HOST_IP"

/* It reads every file whatever its owner and restores owners and modes: root with only the
 * capabilities for that (its container has no other use for root). */
static cJSON *agent_security(void)
{
    static const char *const caps[] = {"CHOWN",  "DAC_OVERRIDE", "DAC_READ_SEARCH",
                                       "FOWNER", "FSETID",       NULL};
    return kube_security(0, caps);
}

/* A subPath must be relative and clean: "/", "a//b", "./" and trailing slashes are refused
 * here with the field's name, not by the kubelet after the Pod was accepted. */
static int agent_dir_check(const char *d, int i, struct bh_err *err)
{
    int ok = d[0] == '/' && d[1] && d[strlen(d) - 1] != '/' && !strstr(d, "//");
    for (const char *c = d; ok && c; c = strchr(c + 1, '/'))
        ok = strncmp(c, "/./", 3) && strcmp(c, "/.") && strncmp(c, "/../", 4) && strcmp(c, "/..");
    if (!ok)
        return bh_err_set(err, BH_EINVAL,
                          "spec.filesystem.overlayDirs[%d]: %s: a Pod needs a clean absolute "
                          "path below / (no empty, '.' or '..' parts)",
                          i, d);
    return 0;
}

/* Whether dir is one of the overlay directories or below one (all the agent sees), written
 * as the agent takes it (clean). */
static int agent_sees(const cJSON *workload, const char *dir)
{
    struct bh_err err = {0};
    if (agent_dir_check(dir, 0, &err) < 0)
        return 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, bh_json_get(workload, "spec.filesystem.overlayDirs")) {
        size_t n = strlen(d->valuestring);
        if (!strncmp(dir, d->valuestring, n) && (dir[n] == '\0' || dir[n] == '/'))
            return 1;
    }
    return 0;
}

/* What the sidecar tells idle detection (agent.h GET /v1/activity): mtimes under the
 * watchDirs it can see, and the Pod's connections but the kubelet's probes, which come from
 * the node's address (the downward API gives it; the kubelet expands $(VAR) in args). */
static void agent_activity_args(cJSON *c, cJSON *cmd, const cJSON *workload)
{
    const cJSON *w;
    cJSON_ArrayForEach(w, bh_json_get(workload, "spec.idle.watchDirs")) {
        if (!cJSON_IsString(w) || !agent_sees(workload, w->valuestring))
            continue;
        cJSON_AddItemToArray(cmd, cJSON_CreateString("--watch"));
        cJSON_AddItemToArray(cmd, cJSON_CreateString(w->valuestring));
    }
    cJSON_AddItemToArray(cmd, cJSON_CreateString("--probe-peer"));
    cJSON_AddItemToArray(cmd, cJSON_CreateString("$(" AGENT_HOST_IP_ENV ")"));
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "name", AGENT_HOST_IP_ENV);
    cJSON *ref = cJSON_AddObjectToObject(cJSON_AddObjectToObject(e, "valueFrom"), "fieldRef");
    cJSON_AddStringToObject(ref, "fieldPath", "status.hostIP");
    cJSON *env = cJSON_GetObjectItem(c, "env");
    if (!env)
        env = cJSON_AddArrayToObject(c, "env");
    cJSON_AddItemToArray(env, e);
}

static cJSON *agent_container(const char *name, const cJSON *workload, const struct bh_kube_opts *o,
                              int restore_once)
{
    char listen[32];
    snprintf(listen, sizeof(listen), "0.0.0.0:%d", BH_KUBE_AGENT_PORT);
    const char *const argv[] = {
        "boilerhouse",  "snapshot-agent",         "--root", BH_KUBE_AGENT_ROOT, "--listen", listen,
        "--token-file", AGENT_TOKEN_DIR "/token", NULL};
    cJSON *c = kube_container(name, o->proxy_image, argv);
    cJSON *cmd = cJSON_GetObjectItem(c, "command");
    const cJSON *d;
    cJSON_ArrayForEach(d, bh_json_get(workload, "spec.filesystem.overlayDirs")) {
        cJSON_AddItemToArray(cmd, cJSON_CreateString("--dir"));
        cJSON_AddItemToArray(cmd, cJSON_CreateString(d->valuestring));
    }
    if (restore_once)
        cJSON_AddItemToArray(cmd, cJSON_CreateString("--restore-once"));
    else
        agent_activity_args(c, cmd, workload);
    cJSON *port = cJSON_CreateObject();
    cJSON_AddStringToObject(port, "name", "bh-agent");
    cJSON_AddNumberToObject(port, "containerPort", BH_KUBE_AGENT_PORT);
    cJSON_AddStringToObject(port, "protocol", "TCP");
    if (!restore_once) /* an init container may not declare what a sidecar serves twice */
        cJSON_AddItemToArray(cJSON_AddArrayToObject(c, "ports"), port);
    else
        cJSON_Delete(port);
    cJSON_AddItemToObject(c, "resources", kube_resources("100m", "64Mi"));
    cJSON_AddItemToObject(c, "securityContext", agent_security());
    kube_mount(c, AGENT_VOLUME, BH_KUBE_AGENT_ROOT, NULL, 0);
    kube_mount(c, AGENT_TOKEN_VOLUME, AGENT_TOKEN_DIR, NULL, 1);
    return c;
}

static void agent_volumes(cJSON *spec)
{
    cJSON *volumes = cJSON_GetObjectItem(spec, "volumes");
    cJSON *v = cJSON_CreateObject();
    cJSON_AddStringToObject(v, "name", AGENT_VOLUME);
    cJSON_AddObjectToObject(v, "emptyDir");
    cJSON_AddItemToArray(volumes, v);
    v = cJSON_CreateObject();
    cJSON_AddStringToObject(v, "name", AGENT_TOKEN_VOLUME);
    cJSON *s = cJSON_AddObjectToObject(v, "secret");
    cJSON_AddStringToObject(s, "secretName", BH_KUBE_AGENT_SECRET);
    cJSON_AddNumberToObject(s, "defaultMode", 0400);
    cJSON_AddItemToArray(volumes, v);
}

int kube_agent_add(cJSON *spec, cJSON *main, const cJSON *workload,
                   const struct bh_kube_instance *inst, const struct bh_kube_opts *o,
                   struct bh_err *err)
{
    const cJSON *dirs = bh_json_get(workload, "spec.filesystem.overlayDirs");
    if (cJSON_GetArraySize(dirs) == 0)
        return 0;
    int i = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, dirs)
        if (agent_dir_check(d->valuestring, i++, err) < 0)
            return -1;
    agent_volumes(spec);
    cJSON_ArrayForEach(d, dirs)
        kube_mount(main, AGENT_VOLUME, d->valuestring, d->valuestring + 1, 0);
    cJSON_AddItemToArray(cJSON_GetObjectItem(spec, "containers"),
                         agent_container("snapshot-agent", workload, o, 0));
    if (!inst->restore)
        return 0;
    cJSON *init = cJSON_GetObjectItem(spec, "initContainers");
    if (!init)
        init = cJSON_AddArrayToObject(spec, "initContainers");
    /* After the egress rules (if any): they only drop what the Pod sends, not the replies. */
    cJSON_AddItemToArray(init, agent_container("snapshot-restore", workload, o, 1));
    return 0;
}

int bh_kube_agent_secret(const char *token, const struct bh_kube_opts *o, cJSON **out,
                         struct bh_err *err)
{
    if (!token || strlen(token) < AGENT_MIN_TOKEN || strcspn(token, " \t\r\n") != strlen(token))
        return bh_err_set(err, BH_EINVAL,
                          "agent token: expected at least %d characters without whitespace",
                          AGENT_MIN_TOKEN);
    cJSON *s = kube_object("v1", "Secret", BH_KUBE_AGENT_SECRET, o->namespace, NULL);
    cJSON_AddStringToObject(s, "type", "Opaque");
    bh_autofree char *b64 = bh_crypto_base64(token, strlen(token));
    cJSON_AddStringToObject(cJSON_AddObjectToObject(s, "data"), "token", b64);
    *out = s;
    return 0;
}
