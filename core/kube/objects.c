/* The Pod of an instance and what the other builders share: names, labels, input checks. */
#include "objects_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "json.h"
#include "mem.h"
#include "name.h"

#define KUBE_DEFAULT_GRACE 10

void bh_kube_opts_defaults(struct bh_kube_opts *o)
{
    static const char *const no_cidrs[] = {NULL};
    if (!o->namespace)
        o->namespace = "boilerhouse";
    if (!o->operator_namespace)
        o->operator_namespace = o->namespace;
    if (!o->cluster_cidrs)
        o->cluster_cidrs = no_cidrs;
    if (!o->dns_namespace)
        o->dns_namespace = "kube-system";
    if (!o->dns_label)
        o->dns_label = "k8s-app=kube-dns";
    if (!o->proxy_image)
        o->proxy_image = "boilerhouse:latest";
    if (o->grace_seconds <= 0)
        o->grace_seconds = KUBE_DEFAULT_GRACE;
}

/* ---- names and labels -------------------------------------------------------------------- */

/* "bh-" keeps a Service name's first character a letter (DNS-1035); 3 + 46 + 1 + 12 = 62. */
char *bh_kube_pod_name(const char *workload, const char *id)
{
    return bh_xasprintf("bh-%.46s-%s", workload, id);
}

char *bh_kube_ca_secret_name(const char *workload)
{
    return bh_xasprintf("bh-%.50s-egress-ca", workload); /* 3 + 50 + 10 = 63 */
}

char *bh_kube_tenant_label(const char *tenant)
{
    struct bh_sha256 *h = bh_crypto_sha256_new();
    char hex[65];
    bh_crypto_sha256_update(h, tenant, strlen(tenant));
    bh_crypto_sha256_final(h, hex);
    return bh_xasprintf("t-%.32s", hex);
}

cJSON *kube_label_map(const char *key, const char *value)
{
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, key, value);
    return m;
}

cJSON *kube_object(const char *api_version, const char *kind, const char *name,
                   const char *namespace, const char *workload)
{
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddStringToObject(obj, "apiVersion", api_version);
    cJSON_AddStringToObject(obj, "kind", kind);
    cJSON *meta = cJSON_AddObjectToObject(obj, "metadata");
    cJSON_AddStringToObject(meta, "name", name);
    cJSON_AddStringToObject(meta, "namespace", namespace);
    cJSON *labels = cJSON_AddObjectToObject(meta, "labels");
    cJSON_AddStringToObject(labels, BH_KUBE_LABEL_MANAGED, "true");
    if (workload)
        cJSON_AddStringToObject(labels, BH_KUBE_LABEL_WORKLOAD, workload);
    return obj;
}

void kube_add_strings(cJSON *obj, const char *key, const char *const *v)
{
    cJSON *arr = cJSON_AddArrayToObject(obj, key);
    for (; *v; v++)
        cJSON_AddItemToArray(arr, cJSON_CreateString(*v));
}

const char *kube_access(const cJSON *workload)
{
    const char *mode = bh_json_str(workload, "spec.network.access");
    return mode ? mode : "none";
}

cJSON *kube_resources(const char *cpu, const char *mem)
{
    cJSON *res = cJSON_CreateObject();
    cJSON *limits = cJSON_AddObjectToObject(res, "limits");
    cJSON_AddStringToObject(limits, "cpu", cpu);
    cJSON_AddStringToObject(limits, "memory", mem);
    cJSON_AddItemToObject(res, "requests", cJSON_Duplicate(limits, 1));
    return res;
}

cJSON *kube_security(int uid, const char *const *add)
{
    static const char *const drop_all[] = {"ALL", NULL};
    cJSON *sc = cJSON_CreateObject();
    cJSON_AddNumberToObject(sc, "runAsUser", uid);
    cJSON_AddNumberToObject(sc, "runAsGroup", uid);
    cJSON_AddBoolToObject(sc, "runAsNonRoot", uid != 0);
    cJSON_AddBoolToObject(sc, "readOnlyRootFilesystem", 1);
    cJSON_AddBoolToObject(sc, "allowPrivilegeEscalation", 0);
    cJSON_AddBoolToObject(sc, "privileged", 0);
    cJSON *caps = cJSON_AddObjectToObject(sc, "capabilities");
    kube_add_strings(caps, "drop", drop_all);
    if (add)
        kube_add_strings(caps, "add", add);
    return sc;
}

cJSON *kube_container(const char *name, const char *image, const char *const *command)
{
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "name", name);
    cJSON_AddStringToObject(c, "image", image);
    cJSON_AddStringToObject(c, "imagePullPolicy", "IfNotPresent");
    kube_add_strings(c, "command", command);
    return c;
}

void kube_mount(cJSON *c, const char *volume, const char *path, const char *sub_path, int read_only)
{
    cJSON *mounts = cJSON_GetObjectItem(c, "volumeMounts");
    if (!mounts)
        mounts = cJSON_AddArrayToObject(c, "volumeMounts");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "name", volume);
    cJSON_AddStringToObject(m, "mountPath", path);
    if (sub_path)
        cJSON_AddStringToObject(m, "subPath", sub_path);
    if (read_only)
        cJSON_AddBoolToObject(m, "readOnly", 1);
    cJSON_AddItemToArray(mounts, m);
}

static int kube_id_valid(const char *id)
{
    return id && strlen(id) == 12 && strspn(id, "0123456789abcdef") == 12;
}

/* A label value as given (pool, claim): bh_name_tenant_valid is exactly that rule. */
static int kube_label_value_check(const char *v, const char *what, struct bh_err *err)
{
    if (v && !bh_name_tenant_valid(v))
        return bh_err_set(err, BH_EINVAL, "%s: must be a Kubernetes label value", what);
    return 0;
}

int kube_instance_check(const cJSON *workload, const struct bh_kube_instance *inst, char **name,
                        struct bh_err *err)
{
    const char *wl = bh_json_str(workload, "metadata.name");
    if (!bh_name_label_valid(wl))
        return bh_err_set(err, BH_EINVAL, "metadata.name: must be a DNS-1123 label");
    if (!cJSON_IsObject(bh_json_get(workload, "spec")))
        return bh_err_set(err, BH_EINVAL, "spec: required");
    if (!kube_id_valid(inst->id))
        return bh_err_set(err, BH_EINVAL, "instance id: must be 12 lowercase hex characters");
    if (inst->tenant && !inst->tenant[0])
        return bh_err_set(err, BH_EINVAL, "tenant: must not be empty");
    if (kube_label_value_check(inst->pool, "pool", err) < 0 ||
        kube_label_value_check(inst->claim, "claim", err) < 0)
        return -1;
    *name = bh_kube_pod_name(wl, inst->id);
    return 0;
}

/* ---- the claim relabel ------------------------------------------------------------------- */

static void kube_tenant_meta(cJSON *meta, const char *tenant, const char *claim)
{
    cJSON *labels = bh_json_obj(meta, "labels");
    bh_autofree char *hashed = bh_kube_tenant_label(tenant);
    bh_json_set_str(labels, BH_KUBE_LABEL_TENANT, hashed);
    if (claim)
        bh_json_set_str(labels, BH_KUBE_LABEL_CLAIM, claim);
    bh_json_set_str(bh_json_obj(meta, "annotations"), BH_KUBE_ANNOT_TENANT, tenant);
}

cJSON *bh_kube_claim_patch(const char *tenant, const char *claim, const char *resource_version)
{
    cJSON *patch = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(patch, "metadata");
    cJSON_AddStringToObject(meta, "resourceVersion", resource_version);
    kube_tenant_meta(meta, tenant, claim);
    bh_json_set_str(bh_json_obj(meta, "labels"), BH_KUBE_LABEL_POOL_STATUS, "acquired");
    return patch;
}

/* ---- the Pod ----------------------------------------------------------------------------- */

static void pod_meta(cJSON *pod, const cJSON *workload, const struct bh_kube_instance *inst)
{
    cJSON *meta = cJSON_GetObjectItem(pod, "metadata");
    cJSON *labels = cJSON_GetObjectItem(meta, "labels");
    char gen[32];
    snprintf(gen, sizeof(gen), "%lld", bh_json_int(workload, "metadata.generation", 0));
    cJSON_AddStringToObject(labels, BH_KUBE_LABEL_INSTANCE, bh_json_str(meta, "name"));
    cJSON_AddStringToObject(labels, BH_KUBE_LABEL_GENERATION, gen);
    if (inst->pool) {
        cJSON_AddStringToObject(labels, BH_KUBE_LABEL_POOL, inst->pool);
        cJSON_AddStringToObject(labels, BH_KUBE_LABEL_POOL_STATUS,
                                inst->tenant ? "acquired" : "warming");
    }
    if (inst->tenant)
        kube_tenant_meta(meta, inst->tenant, inst->claim);
    const char *digest = bh_json_str(workload, "status.imageDigest");
    if (digest)
        bh_json_set_str(bh_json_obj(meta, "annotations"), BH_KUBE_ANNOT_IMAGE_DIGEST, digest);
}

/* An image reference as a tag may spell it: [A-Za-z0-9_.-]. */
static int pod_tag_valid(const char *v)
{
    size_t n = strlen(v);
    return n && n <= 128 && v[0] != '.' && v[0] != '-' &&
           strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n;
}

static int pod_image(const cJSON *workload, const struct bh_kube_instance *inst, char **out,
                     struct bh_err *err)
{
    const char *ref = inst->image ? inst->image : bh_json_str(workload, "spec.image.ref");
    const char *version = bh_json_str(workload, "spec.version");
    if (ref) {
        if (!ref[0] || strpbrk(ref, " \t\r\n"))
            return bh_err_set(err, BH_EINVAL, "spec.image.ref: not an image reference");
        *out = bh_xstrdup(ref);
        return 0;
    }
    /* A Dockerfile build (docs: what `buildah bud -t` names it); the cluster must have it. */
    if (!version || !pod_tag_valid(version))
        return bh_err_set(err, BH_EINVAL,
                          "spec.version: must be an image tag for a dockerfile-built workload "
                          "(or give its image)");
    *out = bh_xasprintf("boilerhouse/%s:%s", bh_json_str(workload, "metadata.name"), version);
    return 0;
}

/* A quantity of MiB as the API server writes it back (its canonical form: the largest binary
 * suffix that keeps it whole), so what the mirror reads equals what was sent. */
static void pod_mib(char *buf, size_t n, long long mib)
{
    static const char *const suffix[] = {"Mi", "Gi", "Ti", "Pi"};
    size_t i = 0;
    while (i + 1 < sizeof(suffix) / sizeof(suffix[0]) && mib && mib % 1024 == 0) {
        mib /= 1024;
        i++;
    }
    snprintf(buf, n, "%lld%s", mib, suffix[i]);
}

/* requests = limits (Guaranteed QoS): CPU in cores or millicores, memory and disk in binary
 * units, each in the server's canonical form. */
static cJSON *pod_resources(const cJSON *workload)
{
    char cpu[32], mem[32], disk[32];
    long long milli = (long long)(bh_json_num(workload, "spec.resources.vcpus", 1) * 1000 + 0.5);
    long long disk_gb = bh_json_int(workload, "spec.resources.diskGb", 0);
    if (milli < 1)
        milli = 1;
    if (milli % 1000 == 0)
        snprintf(cpu, sizeof(cpu), "%lld", milli / 1000);
    else
        snprintf(cpu, sizeof(cpu), "%lldm", milli);
    pod_mib(mem, sizeof(mem), bh_json_int(workload, "spec.resources.memoryMb", 0));
    pod_mib(disk, sizeof(disk), disk_gb * 1024);
    cJSON *res = cJSON_CreateObject();
    cJSON *limits = cJSON_AddObjectToObject(res, "limits");
    cJSON_AddStringToObject(limits, "cpu", cpu);
    cJSON_AddStringToObject(limits, "memory", mem);
    if (disk_gb > 0) /* 0 is unbounded */
        cJSON_AddStringToObject(limits, "ephemeral-storage", disk);
    cJSON_AddItemToObject(res, "requests", cJSON_Duplicate(limits, 1));
    return res;
}

/* Kubernetes 1.20's rule for an env name: [-._a-zA-Z][-._a-zA-Z0-9]*. */
static int pod_env_name_valid(const char *n)
{
    static const char first[] = "-._abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    return n[0] && strchr(first, n[0]) &&
           strspn(n, "0123456789-._abcdefghijklmnopqrstuvwxyz"
                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ") == strlen(n);
}

static int pod_env_cmp(const void *a, const void *b)
{
    return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

/* The workload's env, sorted by name (the same Pod for the same workload). */
static int pod_env(cJSON *c, const cJSON *workload, struct bh_err *err)
{
    const cJSON *env = bh_json_get(workload, "spec.entrypoint.env");
    int n = cJSON_GetArraySize(env);
    if (n <= 0)
        return 0;
    const cJSON **items = bh_xcalloc((size_t)n, sizeof(*items));
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, env)
        items[i++] = e;
    qsort(items, (size_t)n, sizeof(*items), pod_env_cmp);
    cJSON *out = cJSON_AddArrayToObject(c, "env");
    int rc = 0;
    for (i = 0; i < n; i++) {
        if (!pod_env_name_valid(items[i]->string) || !cJSON_IsString(items[i])) {
            rc = bh_err_set(err, BH_EINVAL, "spec.entrypoint.env.%s: invalid environment variable",
                            items[i]->string);
            break;
        }
        cJSON *var = cJSON_CreateObject();
        cJSON_AddStringToObject(var, "name", items[i]->string);
        cJSON_AddStringToObject(var, "value", items[i]->valuestring);
        cJSON_AddItemToArray(out, var);
    }
    free(items);
    return rc;
}

static void pod_process(cJSON *c, const cJSON *workload)
{
    const char *cmd = bh_json_str(workload, "spec.entrypoint.cmd");
    const cJSON *args = bh_json_get(workload, "spec.entrypoint.args");
    const char *workdir = bh_json_str(workload, "spec.entrypoint.workdir");
    if (cmd) {
        cJSON *command = cJSON_AddArrayToObject(c, "command");
        cJSON_AddItemToArray(command, cJSON_CreateString(cmd));
    }
    if (cJSON_GetArraySize(args) > 0)
        cJSON_AddItemToObject(c, "args", cJSON_Duplicate(args, 1));
    if (workdir)
        cJSON_AddStringToObject(c, "workingDir", workdir);
}

static void pod_ports(cJSON *c, const cJSON *workload)
{
    const cJSON *expose = bh_json_get(workload, "spec.network.expose");
    if (cJSON_GetArraySize(expose) <= 0)
        return;
    cJSON *ports = cJSON_AddArrayToObject(c, "ports");
    const cJSON *e;
    cJSON_ArrayForEach(e, expose) {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddNumberToObject(p, "containerPort", bh_json_num(e, "guest", 0));
        cJSON_AddStringToObject(p, "protocol", "TCP");
        cJSON_AddItemToArray(ports, p);
    }
}

/* spec.health as a readiness probe: httpGet wins over exec, as in local mode. */
static void pod_probe(cJSON *c, const cJSON *workload)
{
    const cJSON *health = bh_json_get(workload, "spec.health");
    const cJSON *http = cJSON_GetObjectItem(health, "httpGet");
    const cJSON *exec = cJSON_GetObjectItem(health, "exec");
    if (!http && !exec)
        return;
    cJSON *probe = cJSON_AddObjectToObject(c, "readinessProbe");
    if (http) {
        const char *path = bh_json_str(http, "path");
        cJSON *get = cJSON_AddObjectToObject(probe, "httpGet");
        cJSON_AddStringToObject(get, "path", path && path[0] ? path : "/");
        cJSON_AddNumberToObject(get, "port", bh_json_num(http, "port", 0));
    } else {
        cJSON *e = cJSON_AddObjectToObject(probe, "exec");
        cJSON_AddItemToObject(e, "command",
                              cJSON_Duplicate(cJSON_GetObjectItem(exec, "command"), 1));
    }
    cJSON_AddNumberToObject(probe, "periodSeconds", bh_json_num(health, "intervalSeconds", 2));
    cJSON_AddNumberToObject(probe, "failureThreshold",
                            bh_json_num(health, "unhealthyThreshold", 3));
    cJSON_AddNumberToObject(probe, "timeoutSeconds", bh_json_num(health, "timeoutSeconds", 2));
}

/* A numeric uid of the image's User ("1000" or "1000:1000"), or -1. */
static long pod_image_uid(const char *user)
{
    if (!user || !user[0])
        return -1;
    char *end = NULL;
    long uid = strtol(user, &end, 10);
    return (end != user && (*end == '\0' || *end == ':') && uid >= 0) ? uid : -1;
}

static int pod_security(cJSON *spec, cJSON *c, const cJSON *workload,
                        const struct bh_kube_instance *inst, struct bh_err *err)
{
    static const char *const drop_all[] = {"ALL", NULL};
    long uid = pod_image_uid(inst->image_user);
    if (uid == BH_KUBE_PROXY_UID && !strcmp(kube_access(workload), "restricted"))
        return bh_err_set(err, BH_EINVAL,
                          "image user %ld: reserved for the egress proxy of restricted workloads",
                          uid);
    cJSON *psc = cJSON_AddObjectToObject(spec, "securityContext");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(psc, "seccompProfile"), "type",
                            "RuntimeDefault");
    if (uid > 0) /* a named user cannot be checked by the kubelet: runAsNonRoot would refuse it */
        cJSON_AddBoolToObject(psc, "runAsNonRoot", 1);
    cJSON *sc = cJSON_AddObjectToObject(c, "securityContext");
    cJSON_AddBoolToObject(sc, "allowPrivilegeEscalation", 0);
    cJSON_AddBoolToObject(sc, "privileged", 0);
    kube_add_strings(cJSON_AddObjectToObject(sc, "capabilities"), "drop", drop_all);
    return 0;
}

static int pod_main(cJSON *spec, const cJSON *workload, const struct bh_kube_instance *inst,
                    struct bh_err *err)
{
    bh_autofree char *image = NULL;
    if (pod_image(workload, inst, &image, err) < 0)
        return -1;
    cJSON *c = cJSON_CreateObject();
    cJSON_AddItemToArray(cJSON_GetObjectItem(spec, "containers"), c);
    cJSON_AddStringToObject(c, "name", "main");
    cJSON_AddStringToObject(c, "image", image);
    cJSON_AddStringToObject(c, "imagePullPolicy", "IfNotPresent");
    pod_process(c, workload);
    if (pod_env(c, workload, err) < 0)
        return -1;
    pod_ports(c, workload);
    cJSON_AddItemToObject(c, "resources", pod_resources(workload));
    cJSON_AddArrayToObject(c, "volumeMounts");
    pod_probe(c, workload);
    return pod_security(spec, c, workload, inst, err);
}

int bh_kube_pod(const cJSON *workload, const struct bh_kube_instance *inst,
                const struct bh_kube_opts *o, cJSON **out, struct bh_err *err)
{
    bh_autofree char *name = NULL;
    if (kube_instance_check(workload, inst, &name, err) < 0)
        return -1;
    cJSON *pod =
        kube_object("v1", "Pod", name, o->namespace, bh_json_str(workload, "metadata.name"));
    pod_meta(pod, workload, inst);
    cJSON *spec = cJSON_AddObjectToObject(pod, "spec");
    cJSON_AddStringToObject(spec, "restartPolicy", "Never");
    cJSON_AddNumberToObject(spec, "terminationGracePeriodSeconds", o->grace_seconds);
    cJSON_AddBoolToObject(spec, "automountServiceAccountToken", 0);
    cJSON_AddBoolToObject(spec, "enableServiceLinks", 0);
    cJSON_AddArrayToObject(spec, "containers");
    cJSON_AddArrayToObject(spec, "volumes");
    int rc = pod_main(spec, workload, inst, err);
    cJSON *main = cJSON_GetArrayItem(cJSON_GetObjectItem(spec, "containers"), 0);
    if (rc == 0 && !strcmp(kube_access(workload), "restricted"))
        rc = kube_egress_add(spec, main, workload, o, err);
    if (rc == 0)
        rc = kube_agent_add(spec, main, workload, inst, o, err);
    if (rc == 0 && cJSON_GetArraySize(cJSON_GetObjectItem(spec, "volumes")) == 0)
        cJSON_DeleteItemFromObject(spec, "volumes");
    if (rc == 0 && main && cJSON_GetArraySize(cJSON_GetObjectItem(main, "volumeMounts")) == 0)
        cJSON_DeleteItemFromObject(main, "volumeMounts");
    if (rc < 0) {
        cJSON_Delete(pod);
        return -1;
    }
    *out = pod;
    return 0;
}
