/* The Kubernetes object builders (core/kube/objects.h): every field of the Pod, Service,
 * NetworkPolicy and CA Secret, each access mode, and bad input. That the API server accepts
 * what they build is tests/integration/test_kube_objects.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "json.h"
#include "mem.h"
#include "name.h"
#include "objects.h"
#include "resource.h"

static const char WORKLOAD[] = "apiVersion: boilerhouse.dev/v1alpha1\n"
                               "kind: BoilerhouseWorkload\n"
                               "metadata: {name: web, generation: 7}\n"
                               "spec:\n"
                               "  version: '1.2'\n"
                               "  image: {ref: registry.example/web:1}\n"
                               "  resources: {vcpus: 1.5, memoryMb: 300, diskGb: 4}\n"
                               "  network:\n"
                               "    access: %s\n"
                               "    expose: [{guest: 8080}, {guest: 9090}]\n"
                               "    allowlist: [api.example.com]\n"
                               "    credentials:\n"
                               "      - domain: api.example.com\n"
                               "        headers:\n"
                               "          - {name: x-api-key, valueFrom: {secretKeyRef: "
                               "{name: %s, key: key}}}\n"
                               "          - {name: x-plain, value: visible}\n"
                               "          - {name: x-tenant, valueFrom: {tenantSecretKeyRef: "
                               "{name: own, key: k}}}\n"
                               "  filesystem: {overlayDirs: [/workspace, /home/u]}\n"
                               "  health: {intervalSeconds: 3, unhealthyThreshold: 4,"
                               " httpGet: {path: /ready, port: 8080}}\n"
                               "  entrypoint:\n"
                               "    cmd: /bin/server\n"
                               "    args: [--port, '8080']\n"
                               "    workdir: /srv\n"
                               "    env: {ZED: z, ALPHA: a, %s: v}\n";

static cJSON *workload_with(const char *access, const char *secret, const char *env_name)
{
    bh_autofree char *text = bh_xasprintf(WORKLOAD, access, secret, env_name);
    cJSON *wl = NULL;
    struct bh_err err = {0};
    assert_int_equal(bh_resource_parse(text, strlen(text), &wl, &err), 0);
    assert_int_equal(bh_resource_validate(wl, &err), 0);
    return wl;
}

static cJSON *workload(const char *access)
{
    return workload_with(access, "api-secret", "MIDDLE");
}

static struct bh_kube_opts opts(void)
{
    static const char *const cidrs[] = {"10.96.0.0/12", "10.244.0.0/16", "fd00:10::/64", NULL};
    struct bh_kube_opts o = {.namespace = "tenants",
                             .operator_namespace = "bh-system",
                             .cluster_cidrs = cidrs,
                             .proxy_image = "reg/boilerhouse:9"};
    bh_kube_opts_defaults(&o);
    return o;
}

static const struct bh_kube_instance CLAIMED = {
    .id = "0123456789ab", .tenant = "alice", .claim = "claim-alice-web", .pool = "web-pool"};

/* A Kubernetes label value: at most 63 of [A-Za-z0-9._-], alphanumeric at both ends. */
static int label_value_ok(const char *v)
{
    return bh_name_tenant_valid(v);
}

static cJSON *pod_of(const cJSON *wl, const struct bh_kube_instance *inst)
{
    struct bh_kube_opts o = opts();
    cJSON *pod = NULL;
    struct bh_err err = {0};
    assert_int_equal(bh_kube_pod(wl, inst, &o, &pod, &err), 0);
    return pod;
}

static cJSON *find_named(const cJSON *arr, const char *name)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
        if (!strcmp(bh_json_str(it, "name"), name))
            return (cJSON *)it;
    return NULL;
}

static const char *label(const cJSON *obj, const char *key)
{
    return bh_json_label(obj, key);
}

/* ---- names and labels -------------------------------------------------------------------- */

static void test_names_are_dns_labels(void **state)
{
    (void)state;
    char wl[64];
    memset(wl, 'w', 63);
    wl[63] = '\0';
    wl[0] = '9'; /* a workload may start with a digit; a Service name may not */
    bh_autofree char *pod = bh_kube_pod_name(wl, "0123456789ab");
    bh_autofree char *ca = bh_kube_ca_secret_name(wl);
    assert_true(bh_name_label_valid(pod));
    assert_true(bh_name_label_valid(ca));
    assert_true(pod[0] >= 'a' && pod[0] <= 'z');
    assert_string_equal(pod + strlen(pod) - 12, "0123456789ab");
    bh_autofree char *short_name = bh_kube_pod_name("web", "0123456789ab");
    assert_string_equal(short_name, "bh-web-0123456789ab");
}

static void test_tenant_labels_are_label_values(void **state)
{
    (void)state;
    char longest[300];
    memset(longest, 'T', sizeof(longest) - 1);
    longest[sizeof(longest) - 1] = '\0';
    const char *tenants[] = {"alice", "Bad Tenant/ü", "..", "-x-", "a\nb", longest};
    for (size_t i = 0; i < sizeof(tenants) / sizeof(tenants[0]); i++) {
        bh_autofree char *l = bh_kube_tenant_label(tenants[i]);
        assert_true(label_value_ok(l));
        bh_autofree char *again = bh_kube_tenant_label(tenants[i]);
        assert_string_equal(l, again);
    }
    bh_autofree char *a = bh_kube_tenant_label("alice");
    bh_autofree char *b = bh_kube_tenant_label("Alice");
    assert_string_not_equal(a, b);
}

/* ---- the Pod ----------------------------------------------------------------------------- */

static void test_pod_metadata(void **state)
{
    (void)state;
    cJSON *wl = workload("unrestricted");
    struct bh_kube_instance inst = CLAIMED;
    inst.tenant = "Bad Tenant/ü";
    cJSON *pod = pod_of(wl, &inst);
    assert_string_equal(bh_json_str(pod, "apiVersion"), "v1");
    assert_string_equal(bh_json_str(pod, "kind"), "Pod");
    assert_string_equal(bh_json_str(pod, "metadata.name"), "bh-web-0123456789ab");
    assert_string_equal(bh_json_str(pod, "metadata.namespace"), "tenants");
    assert_string_equal(label(pod, BH_KUBE_LABEL_MANAGED), "true");
    assert_string_equal(label(pod, BH_KUBE_LABEL_WORKLOAD), "web");
    assert_string_equal(label(pod, BH_KUBE_LABEL_INSTANCE), "bh-web-0123456789ab");
    assert_string_equal(label(pod, BH_KUBE_LABEL_GENERATION), "7");
    assert_string_equal(label(pod, BH_KUBE_LABEL_POOL), "web-pool");
    assert_string_equal(label(pod, BH_KUBE_LABEL_POOL_STATUS), "acquired");
    assert_string_equal(label(pod, BH_KUBE_LABEL_CLAIM), "claim-alice-web");
    bh_autofree char *hashed = bh_kube_tenant_label("Bad Tenant/ü");
    assert_string_equal(label(pod, BH_KUBE_LABEL_TENANT), hashed);
    cJSON *annotations = bh_json_get(pod, "metadata.annotations");
    assert_string_equal(cJSON_GetObjectItem(annotations, BH_KUBE_ANNOT_TENANT)->valuestring,
                        "Bad Tenant/ü");
    const cJSON *l;
    cJSON_ArrayForEach(l, bh_json_get(pod, "metadata.labels"))
        assert_true(label_value_ok(l->valuestring));
    cJSON_Delete(pod);

    struct bh_kube_instance warm = {.id = "0123456789ab", .pool = "web-pool"};
    pod = pod_of(wl, &warm);
    assert_string_equal(label(pod, BH_KUBE_LABEL_POOL_STATUS), "warming");
    assert_null(label(pod, BH_KUBE_LABEL_TENANT));
    assert_null(bh_json_get(pod, "metadata.annotations"));
    cJSON_Delete(pod);
    cJSON_Delete(wl);
}

static void test_pod_spec_hardening(void **state)
{
    (void)state;
    cJSON *wl = workload("none");
    cJSON *pod = pod_of(wl, &CLAIMED);
    cJSON *spec = cJSON_GetObjectItem(pod, "spec");
    assert_string_equal(bh_json_str(spec, "restartPolicy"), "Never");
    assert_int_equal(bh_json_int(spec, "terminationGracePeriodSeconds", 0), 10);
    assert_false(bh_json_bool(spec, "automountServiceAccountToken", 1));
    assert_false(bh_json_bool(spec, "enableServiceLinks", 1));
    assert_string_equal(bh_json_str(spec, "securityContext.seccompProfile.type"), "RuntimeDefault");
    assert_null(bh_json_get(spec, "securityContext.runAsNonRoot")); /* image user unknown */
    assert_null(bh_json_get(spec, "initContainers"));
    cJSON *containers = cJSON_GetObjectItem(spec, "containers");
    assert_int_equal(cJSON_GetArraySize(containers), 2); /* main, snapshot-agent */
    cJSON *c = cJSON_GetArrayItem(containers, 0);
    assert_false(bh_json_bool(c, "securityContext.allowPrivilegeEscalation", 1));
    assert_false(bh_json_bool(c, "securityContext.privileged", 1));
    cJSON *drop = bh_json_get(c, "securityContext.capabilities.drop");
    assert_int_equal(cJSON_GetArraySize(drop), 1);
    assert_string_equal(cJSON_GetArrayItem(drop, 0)->valuestring, "ALL");
    assert_null(bh_json_get(c, "securityContext.capabilities.add"));
    cJSON_Delete(pod);

    /* runAsNonRoot only for a numeric non-root image user: the kubelet cannot check names */
    const char *users[] = {"1000", "1000:1000", "0", "root", "app", ""};
    const int nonroot[] = {1, 1, 0, 0, 0, 0};
    for (size_t i = 0; i < sizeof(users) / sizeof(users[0]); i++) {
        struct bh_kube_instance inst = CLAIMED;
        inst.image_user = users[i];
        pod = pod_of(wl, &inst);
        assert_int_equal(bh_json_bool(pod, "spec.securityContext.runAsNonRoot", 0), nonroot[i]);
        cJSON_Delete(pod);
    }
    cJSON_Delete(wl);
}

static void test_pod_process_and_resources(void **state)
{
    (void)state;
    cJSON *wl = workload("none");
    cJSON *pod = pod_of(wl, &CLAIMED);
    cJSON *c = bh_json_get(pod, "spec.containers");
    c = cJSON_GetArrayItem(c, 0);
    assert_string_equal(bh_json_str(c, "name"), "main");
    assert_string_equal(bh_json_str(c, "image"), "registry.example/web:1");
    assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(c, "command"), 0)->valuestring,
                        "/bin/server");
    bh_autofree char *args = bh_json_print(cJSON_GetObjectItem(c, "args"));
    assert_string_equal(args, "[\"--port\",\"8080\"]");
    assert_string_equal(bh_json_str(c, "workingDir"), "/srv");
    /* env sorted by name: the same Pod for the same workload */
    bh_autofree char *env = bh_json_print(cJSON_GetObjectItem(c, "env"));
    assert_string_equal(env, "[{\"name\":\"ALPHA\",\"value\":\"a\"},{\"name\":\"MIDDLE\","
                             "\"value\":\"v\"},{\"name\":\"ZED\",\"value\":\"z\"}]");
    assert_null(strstr(env, "secretKeyRef")); /* credentials never reach the workload */
    const char *sides[] = {"limits", "requests"};
    for (int i = 0; i < 2; i++) {
        cJSON *r = bh_json_get(cJSON_GetObjectItem(c, "resources"), sides[i]);
        assert_string_equal(bh_json_str(r, "cpu"), "1500m");
        assert_string_equal(bh_json_str(r, "memory"), "300Mi");
        assert_string_equal(bh_json_str(r, "ephemeral-storage"), "4Gi");
    }
    cJSON *ports = cJSON_GetObjectItem(c, "ports");
    assert_int_equal(cJSON_GetArraySize(ports), 2);
    assert_int_equal(bh_json_int(cJSON_GetArrayItem(ports, 1), "containerPort", 0), 9090);
    assert_string_equal(bh_json_str(cJSON_GetArrayItem(ports, 1), "protocol"), "TCP");
    cJSON_Delete(pod);
    cJSON_Delete(wl);

    /* the server's canonical forms, so what comes back equals what was sent */
    cJSON *whole = workload("none");
    cJSON_SetNumberValue(bh_json_get(whole, "spec.resources.vcpus"), 2);
    cJSON_SetNumberValue(bh_json_get(whole, "spec.resources.memoryMb"), 4096);
    cJSON_SetNumberValue(bh_json_get(whole, "spec.resources.diskGb"), 2048);
    pod = pod_of(whole, &CLAIMED);
    c = cJSON_GetArrayItem(bh_json_get(pod, "spec.containers"), 0);
    assert_string_equal(bh_json_str(c, "resources.limits.cpu"), "2");
    assert_string_equal(bh_json_str(c, "resources.limits.memory"), "4Gi");
    assert_string_equal(bh_json_str(c, "resources.requests.ephemeral-storage"), "2Ti");
    cJSON_Delete(pod);
    cJSON_Delete(whole);

    /* diskGb 0 is unbounded: no ephemeral-storage at all */
    cJSON *unbounded = workload("none");
    cJSON_SetNumberValue(bh_json_get(unbounded, "spec.resources.diskGb"), 0);
    pod = pod_of(unbounded, &CLAIMED);
    c = cJSON_GetArrayItem(bh_json_get(pod, "spec.containers"), 0);
    assert_null(bh_json_get(c, "resources.limits.ephemeral-storage"));
    assert_null(bh_json_get(c, "resources.requests.ephemeral-storage"));
    cJSON_Delete(pod);
    cJSON_Delete(unbounded);
}

static void test_pod_overlays_and_probe(void **state)
{
    (void)state;
    cJSON *wl = workload("none");
    cJSON *pod = pod_of(wl, &CLAIMED);
    cJSON *volumes = bh_json_get(pod, "spec.volumes");
    cJSON *c = cJSON_GetArrayItem(bh_json_get(pod, "spec.containers"), 0);
    cJSON *mounts = cJSON_GetObjectItem(c, "volumeMounts");
    assert_int_equal(cJSON_GetArraySize(volumes), 2); /* overlays, agent-token */
    assert_non_null(bh_json_get(find_named(volumes, "overlays"), "emptyDir"));
    /* one volume, a subPath per directory: the agent restores by exchanging directories */
    assert_int_equal(cJSON_GetArraySize(mounts), 2);
    const char *paths[] = {"/workspace", "/home/u"}, *subs[] = {"workspace", "home/u"};
    for (int i = 0; i < 2; i++) {
        cJSON *m = cJSON_GetArrayItem(mounts, i);
        assert_string_equal(bh_json_str(m, "name"), "overlays");
        assert_string_equal(bh_json_str(m, "mountPath"), paths[i]);
        assert_string_equal(bh_json_str(m, "subPath"), subs[i]);
        assert_false(bh_json_bool(m, "readOnly", 0));
    }
    cJSON *probe = cJSON_GetObjectItem(c, "readinessProbe");
    assert_string_equal(bh_json_str(probe, "httpGet.path"), "/ready");
    assert_int_equal(bh_json_int(probe, "httpGet.port", 0), 8080);
    assert_int_equal(bh_json_int(probe, "periodSeconds", 0), 3);
    assert_int_equal(bh_json_int(probe, "failureThreshold", 0), 4);
    assert_null(cJSON_GetObjectItem(probe, "exec"));
    cJSON_Delete(pod);

    /* exec, when the workload has no httpGet; no health at all: no probe */
    cJSON *health = bh_json_get(wl, "spec.health");
    cJSON_DeleteItemFromObject(health, "httpGet");
    cJSON *exec = cJSON_AddObjectToObject(health, "exec");
    cJSON *cmd = cJSON_AddArrayToObject(exec, "command");
    cJSON_AddItemToArray(cmd, cJSON_CreateString("test"));
    cJSON_AddItemToArray(cmd, cJSON_CreateString("-f"));
    pod = pod_of(wl, &CLAIMED);
    c = cJSON_GetArrayItem(bh_json_get(pod, "spec.containers"), 0);
    bh_autofree char *got = bh_json_print(bh_json_get(c, "readinessProbe.exec.command"));
    assert_string_equal(got, "[\"test\",\"-f\"]");
    cJSON_Delete(pod);
    cJSON_DeleteItemFromObject(bh_json_get(wl, "spec"), "health");
    cJSON_DeleteItemFromObject(bh_json_get(wl, "spec"), "filesystem");
    pod = pod_of(wl, &CLAIMED);
    c = cJSON_GetArrayItem(bh_json_get(pod, "spec.containers"), 0);
    assert_null(cJSON_GetObjectItem(c, "readinessProbe"));
    assert_null(cJSON_GetObjectItem(c, "volumeMounts"));
    assert_null(bh_json_get(pod, "spec.volumes"));
    cJSON_Delete(pod);
    cJSON_Delete(wl);
}

static void test_pod_restricted_egress(void **state)
{
    (void)state;
    cJSON *wl = workload("restricted");
    cJSON *pod = pod_of(wl, &CLAIMED);
    cJSON *spec = cJSON_GetObjectItem(pod, "spec");
    cJSON *containers = cJSON_GetObjectItem(spec, "containers");
    cJSON *main = find_named(containers, "main");
    cJSON *proxy = find_named(containers, "egress-proxy");
    cJSON *init = cJSON_GetArrayItem(cJSON_GetObjectItem(spec, "initContainers"), 0);
    assert_non_null(proxy);
    assert_non_null(init);
    /* NET_ADMIN in the init container only */
    bh_autofree char *add = bh_json_print(bh_json_get(init, "securityContext.capabilities.add"));
    assert_string_equal(add, "[\"NET_ADMIN\"]");
    assert_null(bh_json_get(proxy, "securityContext.capabilities.add"));
    assert_null(bh_json_get(main, "securityContext.capabilities.add"));
    assert_string_equal(bh_json_str(init, "image"), "reg/boilerhouse:9");
    assert_string_equal(bh_json_str(proxy, "image"), "reg/boilerhouse:9");
    assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(init, "command"), 0)->valuestring,
                        "nft");
    assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(init, "command"), 1)->valuestring,
                        bh_kube_redirect_rules());
    assert_int_equal(bh_json_int(proxy, "securityContext.runAsUser", 0), BH_KUBE_PROXY_UID);
    assert_true(bh_json_bool(proxy, "securityContext.readOnlyRootFilesystem", 0));
    /* the secret reaches the sidecar's env, not the workload's */
    cJSON *penv = cJSON_GetObjectItem(proxy, "env");
    cJSON *cred = find_named(penv, "BOILERHOUSE_EGRESS_CRED_0");
    assert_string_equal(bh_json_str(cred, "valueFrom.secretKeyRef.name"), "api-secret");
    assert_string_equal(bh_json_str(cred, "valueFrom.secretKeyRef.key"), "key");
    bh_autofree char *menv = bh_json_print(cJSON_GetObjectItem(main, "env"));
    assert_null(strstr(menv, "secretKeyRef"));
    assert_null(strstr(menv, "visible"));
    assert_non_null(strstr(menv, "NODE_EXTRA_CA_CERTS"));
    cJSON *config =
        cJSON_Parse(bh_json_str(find_named(penv, "BOILERHOUSE_EGRESS_CONFIG"), "value"));
    assert_non_null(config);
    cJSON *headers =
        bh_json_get(cJSON_GetArrayItem(bh_json_get(config, "credentials"), 0), "headers");
    assert_string_equal(bh_json_str(cJSON_GetArrayItem(headers, 0), "env"),
                        "BOILERHOUSE_EGRESS_CRED_0");
    assert_string_equal(bh_json_str(cJSON_GetArrayItem(headers, 1), "value"), "visible");
    assert_string_equal(bh_json_str(cJSON_GetArrayItem(headers, 2), "tenantSecretKeyRef.name"),
                        "own");
    assert_string_equal(cJSON_GetArrayItem(bh_json_get(config, "allowlist"), 0)->valuestring,
                        "api.example.com");
    /* the sidecar's CA and log lines are the workload's; it mounts the key where caDir says */
    assert_string_equal(bh_json_str(config, "workload"), "web");
    assert_string_equal(
        bh_json_str(find_named(cJSON_GetObjectItem(proxy, "volumeMounts"), "egress-ca-key"),
                    "mountPath"),
        bh_json_str(config, "caDir"));
    bh_autofree char *cmd = bh_json_print(cJSON_GetObjectItem(proxy, "command"));
    assert_string_equal(cmd, "[\"boilerhouse\",\"egress-proxy\"]");
    /* a tenantSecretKeyRef header: the control port, its token mounted in the sidecar alone
     * (readable by its uid), never in the workload; no value anywhere in the Pod */
    assert_int_equal(bh_kube_tenant_headers(wl), 1);
    assert_int_equal(bh_json_int(config, "control.port", 0), BH_KUBE_PROXY_CONTROL_PORT);
    const char *token_file = bh_json_str(config, "control.tokenFile");
    const char *token_dir = bh_json_str(
        find_named(cJSON_GetObjectItem(proxy, "volumeMounts"), "egress-token"), "mountPath");
    assert_non_null(token_dir);
    assert_int_equal(strncmp(token_file, token_dir, strlen(token_dir)), 0);
    assert_string_equal(token_file + strlen(token_dir), "/token");
    cJSON *tv = find_named(cJSON_GetObjectItem(spec, "volumes"), "egress-token");
    assert_string_equal(bh_json_str(tv, "secret.secretName"), BH_KUBE_AGENT_SECRET);
    assert_int_equal(bh_json_int(tv, "secret.defaultMode", 0), 0444);
    assert_null(find_named(cJSON_GetObjectItem(main, "volumeMounts"), "egress-token"));
    assert_int_equal(
        bh_json_int(cJSON_GetArrayItem(cJSON_GetObjectItem(proxy, "ports"), 0), "containerPort", 0),
        BH_KUBE_PROXY_CONTROL_PORT);
    cJSON_Delete(config);
    /* the CA: the whole Secret in the sidecar, the certificate alone in the workload */
    cJSON *volumes = cJSON_GetObjectItem(spec, "volumes");
    assert_string_equal(bh_json_str(find_named(volumes, "egress-ca-key"), "secret.secretName"),
                        "bh-web-egress-ca");
    cJSON *cert = find_named(volumes, "egress-ca-cert");
    bh_autofree char *items = bh_json_print(bh_json_get(cert, "secret.items"));
    assert_string_equal(items, "[{\"key\":\"tls.crt\",\"path\":\"ca.crt\"}]");
    assert_non_null(find_named(cJSON_GetObjectItem(main, "volumeMounts"), "egress-ca-cert"));
    assert_null(find_named(cJSON_GetObjectItem(main, "volumeMounts"), "egress-ca-key"));
    assert_non_null(find_named(cJSON_GetObjectItem(proxy, "volumeMounts"), "egress-ca-key"));
    cJSON_Delete(pod);

    /* the workload may not run as the sidecar's uid: the redirect exempts it */
    struct bh_kube_instance inst = CLAIMED;
    char uid[16];
    snprintf(uid, sizeof(uid), "%d", BH_KUBE_PROXY_UID);
    inst.image_user = uid;
    struct bh_kube_opts o = opts();
    struct bh_err err = {0};
    pod = NULL;
    assert_int_equal(bh_kube_pod(wl, &inst, &o, &pod, &err), -1);
    assert_null(pod);
    assert_non_null(strstr(err.msg, "reserved for the egress proxy"));
    cJSON_Delete(wl);
}

/* Without a tenantSecretKeyRef header the sidecar has no control port and no token. */
static void test_pod_restricted_without_tenant_secrets(void **state)
{
    (void)state;
    cJSON *wl = workload("restricted");
    cJSON *headers =
        bh_json_get(cJSON_GetArrayItem(bh_json_get(wl, "spec.network.credentials"), 0), "headers");
    cJSON_DeleteItemFromArray(headers, 2);
    assert_int_equal(bh_kube_tenant_headers(wl), 0);
    cJSON *pod = pod_of(wl, &CLAIMED);
    cJSON *proxy = find_named(bh_json_get(pod, "spec.containers"), "egress-proxy");
    assert_null(cJSON_GetObjectItem(proxy, "ports"));
    assert_null(find_named(cJSON_GetObjectItem(proxy, "volumeMounts"), "egress-token"));
    assert_null(find_named(bh_json_get(pod, "spec.volumes"), "egress-token"));
    cJSON *config = cJSON_Parse(bh_json_str(
        find_named(cJSON_GetObjectItem(proxy, "env"), "BOILERHOUSE_EGRESS_CONFIG"), "value"));
    assert_null(cJSON_GetObjectItem(config, "control"));
    cJSON_Delete(config);
    cJSON_Delete(pod);
    cJSON_Delete(wl);
    /* and for another access mode, whatever its credentials say */
    wl = workload("unrestricted");
    assert_int_equal(bh_kube_tenant_headers(wl), 0);
    cJSON_Delete(wl);
}

static void test_redirect_rules(void **state)
{
    (void)state;
    const char *r = bh_kube_redirect_rules();
    char want[64];
    snprintf(want, sizeof(want), "meta skuid %d return", BH_KUBE_PROXY_UID);
    assert_non_null(strstr(r, want));
    snprintf(want, sizeof(want), "tcp dport 443 redirect to :%d", BH_KUBE_PROXY_TLS_PORT);
    assert_non_null(strstr(r, want));
    snprintf(want, sizeof(want), "th dport 53 redirect to :%d", BH_KUBE_PROXY_DNS_PORT);
    assert_non_null(strstr(r, want));
    assert_non_null(strstr(r, "policy drop;"));
    assert_non_null(strstr(r, "ct status dnat accept")); /* what was redirected passes */
    assert_non_null(strstr(r, "ip daddr 169.254.0.0/16 drop"));
}

/* ---- Service, NetworkPolicy, Secret ------------------------------------------------------ */

static void test_service(void **state)
{
    (void)state;
    cJSON *wl = workload("none");
    struct bh_kube_opts o = opts();
    struct bh_err err = {0};
    cJSON *svc = NULL;
    assert_int_equal(bh_kube_service(wl, &CLAIMED, &o, &svc, &err), 0);
    assert_string_equal(bh_json_str(svc, "kind"), "Service");
    assert_string_equal(bh_json_str(svc, "metadata.name"), "bh-web-0123456789ab");
    assert_string_equal(bh_json_str(svc, "spec.type"), "ClusterIP");
    assert_string_equal(bh_json_label(svc, BH_KUBE_LABEL_INSTANCE), "bh-web-0123456789ab");
    bh_autofree char *sel = bh_json_print(bh_json_get(svc, "spec.selector"));
    assert_string_equal(sel, "{\"boilerhouse.dev/instance\":\"bh-web-0123456789ab\"}");
    bh_autofree char *ports = bh_json_print(bh_json_get(svc, "spec.ports"));
    assert_string_equal(ports, "[{\"name\":\"port-8080\",\"protocol\":\"TCP\",\"port\":8080,"
                               "\"targetPort\":8080},{\"name\":\"port-9090\",\"protocol\":"
                               "\"TCP\",\"port\":9090,\"targetPort\":9090}]");
    cJSON_Delete(svc);
    cJSON_DeleteItemFromObject(bh_json_get(wl, "spec.network"), "expose");
    svc = (cJSON *)1;
    assert_int_equal(bh_kube_service(wl, &CLAIMED, &o, &svc, &err), 0);
    assert_null(svc);
    cJSON_Delete(wl);
}

static cJSON *policy_of(const char *access)
{
    cJSON *wl = workload(access);
    struct bh_kube_opts o = opts();
    struct bh_err err = {0};
    cJSON *np = NULL;
    assert_int_equal(bh_kube_network_policy(wl, &CLAIMED, &o, &np, &err), 0);
    cJSON_Delete(wl);
    return np;
}

static void check_operator_ingress(const cJSON *np)
{
    cJSON *ingress = bh_json_get(np, "spec.ingress");
    assert_int_equal(cJSON_GetArraySize(ingress), 1);
    bh_autofree char *from =
        bh_json_print(cJSON_GetObjectItem(cJSON_GetArrayItem(ingress, 0), "from"));
    assert_string_equal(from, "[{\"namespaceSelector\":{\"matchLabels\":{\"kubernetes.io/"
                              "metadata.name\":\"bh-system\"}},\"podSelector\":{\"matchLabels\":"
                              "{\"app.kubernetes.io/name\":\"boilerhouse\"}}}]");
    bh_autofree char *types = bh_json_print(bh_json_get(np, "spec.policyTypes"));
    assert_string_equal(types, "[\"Ingress\",\"Egress\"]");
    bh_autofree char *sel = bh_json_print(bh_json_get(np, "spec.podSelector"));
    assert_string_equal(sel,
                        "{\"matchLabels\":{\"boilerhouse.dev/instance\":\"bh-web-0123456789ab\"}}");
}

static void check_world(const cJSON *rule)
{
    bh_autofree char *to = bh_json_print(cJSON_GetObjectItem(rule, "to"));
    assert_string_equal(to, "[{\"ipBlock\":{\"cidr\":\"0.0.0.0/0\",\"except\":[\"169.254.0.0/16\","
                            "\"10.96.0.0/12\",\"10.244.0.0/16\"]}},{\"ipBlock\":{\"cidr\":\"::/0\","
                            "\"except\":[\"fd00:ec2::254/128\",\"fd00:10::/64\"]}}]");
}

static void test_network_policy_modes(void **state)
{
    (void)state;
    cJSON *np = policy_of("none");
    assert_string_equal(bh_json_str(np, "apiVersion"), "networking.k8s.io/v1");
    check_operator_ingress(np);
    /* policyTypes names Egress, no rule allows any: nothing goes out */
    cJSON *egress = bh_json_get(np, "spec.egress");
    assert_null(egress);
    cJSON_Delete(np);

    np = policy_of("unrestricted");
    check_operator_ingress(np);
    egress = bh_json_get(np, "spec.egress");
    assert_int_equal(cJSON_GetArraySize(egress), 2);
    bh_autofree char *dns = bh_json_print(cJSON_GetArrayItem(egress, 0));
    assert_string_equal(dns, "{\"to\":[{\"namespaceSelector\":{\"matchLabels\":{\"kubernetes.io/"
                             "metadata.name\":\"kube-system\"}},\"podSelector\":{\"matchLabels\":"
                             "{\"k8s-app\":\"kube-dns\"}}}],\"ports\":[{\"protocol\":\"UDP\","
                             "\"port\":53},{\"protocol\":\"TCP\",\"port\":53}]}");
    check_world(cJSON_GetArrayItem(egress, 1));
    assert_null(cJSON_GetObjectItem(cJSON_GetArrayItem(egress, 1), "ports")); /* any port */
    cJSON_Delete(np);

    np = policy_of("restricted");
    check_operator_ingress(np);
    egress = bh_json_get(np, "spec.egress");
    assert_int_equal(cJSON_GetArraySize(egress), 2);
    check_world(cJSON_GetArrayItem(egress, 1));
    bh_autofree char *web =
        bh_json_print(cJSON_GetObjectItem(cJSON_GetArrayItem(egress, 1), "ports"));
    assert_string_equal(web,
                        "[{\"protocol\":\"TCP\",\"port\":80},{\"protocol\":\"TCP\",\"port\":443}]");
    cJSON_Delete(np);
}

static void test_network_policy_errors(void **state)
{
    (void)state;
    cJSON *wl = workload("custom-mode");
    struct bh_kube_opts o = opts();
    struct bh_err err = {0};
    cJSON *np = NULL;
    assert_int_equal(bh_kube_network_policy(wl, &CLAIMED, &o, &np, &err), -1);
    assert_non_null(strstr(err.msg, "spec.network.access: mode custom-mode"));
    assert_null(np);
    cJSON_Delete(wl);

    wl = workload("unrestricted");
    const char *bad_cidrs[] = {"10.0.0.0", NULL};
    o.cluster_cidrs = bad_cidrs;
    assert_int_equal(bh_kube_network_policy(wl, &CLAIMED, &o, &np, &err), -1);
    assert_non_null(strstr(err.msg, "cluster range 10.0.0.0"));
    o = opts();
    o.dns_label = "kube-dns";
    assert_int_equal(bh_kube_network_policy(wl, &CLAIMED, &o, &np, &err), -1);
    assert_non_null(strstr(err.msg, "DNS pod label"));
    assert_null(np);
    cJSON_Delete(wl);
}

static void test_ca_secret(void **state)
{
    (void)state;
    cJSON *wl = workload("restricted");
    struct bh_kube_opts o = opts();
    struct bh_err err = {0};
    cJSON *s = NULL;
    const char *crt = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    const char *key = "-----BEGIN PRIVATE KEY-----\nBBBB\n-----END PRIVATE KEY-----\n";
    assert_int_equal(bh_kube_ca_secret(wl, crt, key, &o, &s, &err), 0);
    assert_string_equal(bh_json_str(s, "kind"), "Secret");
    assert_string_equal(bh_json_str(s, "type"), "kubernetes.io/tls");
    assert_string_equal(bh_json_str(s, "metadata.name"), "bh-web-egress-ca");
    assert_string_equal(bh_json_str(s, "metadata.namespace"), "tenants");
    size_t n = 0;
    cJSON *data = cJSON_GetObjectItem(s, "data");
    bh_autofree unsigned char *dk =
        bh_crypto_unbase64(cJSON_GetObjectItem(data, "tls.key")->valuestring, &n);
    assert_non_null(dk);
    assert_string_equal((char *)dk, key);
    bh_autofree unsigned char *dc =
        bh_crypto_unbase64(cJSON_GetObjectItem(data, "tls.crt")->valuestring, &n);
    assert_string_equal((char *)dc, crt);
    cJSON_Delete(s);
    s = NULL;
    assert_int_equal(bh_kube_ca_secret(wl, crt, "not a key", &o, &s, &err), -1);
    assert_non_null(strstr(err.msg, "CA key: not PEM"));
    assert_null(s);
    cJSON_Delete(wl);
}

static void test_claim_patch(void **state)
{
    (void)state;
    cJSON *p = bh_kube_claim_patch("Bob@example", "claim-bob", "4242");
    assert_string_equal(bh_json_str(p, "metadata.resourceVersion"), "4242");
    bh_autofree char *hashed = bh_kube_tenant_label("Bob@example");
    assert_string_equal(bh_json_label(p, BH_KUBE_LABEL_TENANT), hashed);
    assert_string_equal(bh_json_label(p, BH_KUBE_LABEL_CLAIM), "claim-bob");
    assert_string_equal(bh_json_label(p, BH_KUBE_LABEL_POOL_STATUS), "acquired");
    cJSON *ann = bh_json_get(p, "metadata.annotations");
    assert_string_equal(cJSON_GetObjectItem(ann, BH_KUBE_ANNOT_TENANT)->valuestring, "Bob@example");
    cJSON_Delete(p);
}

/* ---- bad input --------------------------------------------------------------------------- */

static void expect_pod_error(const cJSON *wl, const struct bh_kube_instance *inst, const char *msg)
{
    struct bh_kube_opts o = opts();
    struct bh_err err = {0};
    cJSON *pod = NULL;
    assert_int_equal(bh_kube_pod(wl, inst, &o, &pod, &err), -1);
    assert_null(pod);
    if (!strstr(err.msg, msg))
        fail_msg("error \"%s\" does not name \"%s\"", err.msg, msg);
}

/* The snapshot agent: a sidecar always (hibernation), the restore init container only for a
 * tenant with a snapshot; root with the file capabilities only, whatever the Pod's user. */
static void test_pod_snapshot_agent(void **state)
{
    (void)state;
    cJSON *wl = workload("restricted");
    struct bh_kube_instance inst = CLAIMED;
    inst.image_user = "1000"; /* runAsNonRoot for the Pod: the agent must override it */
    /* watched: what the agent has of the files (an overlay dir or below, written cleanly) */
    cJSON *watch = cJSON_AddArrayToObject(bh_json_obj(wl, "spec.idle"), "watchDirs");
    static const char *const dirs[] = {"/workspace/proj", "/etc", "/home/u/", "/workspacex",
                                       "/home/u"};
    for (size_t i = 0; i < BH_ARRAY_LEN(dirs); i++)
        cJSON_AddItemToArray(watch, cJSON_CreateString(dirs[i]));
    cJSON *pod = pod_of(wl, &inst);
    cJSON *agent = find_named(bh_json_get(pod, "spec.containers"), "snapshot-agent");
    assert_non_null(agent);
    assert_null(find_named(bh_json_get(pod, "spec.initContainers"), "snapshot-restore"));
    bh_autofree char *cmd = bh_json_print(cJSON_GetObjectItem(agent, "command"));
    assert_string_equal(cmd,
                        "[\"boilerhouse\",\"snapshot-agent\",\"--root\",\"" BH_KUBE_AGENT_ROOT
                        "\",\"--listen\",\"0.0.0.0:15090\","
                        "\"--token-file\",\"/etc/boilerhouse/agent/token\",\"--dir\","
                        "\"/workspace\",\"--dir\",\"/home/u\",\"--watch\",\"/workspace/proj\","
                        "\"--watch\",\"/home/u\",\"--probe-peer\",\"$(BOILERHOUSE_HOST_IP)\"]");
    /* the kubelet's address, for the agent to tell its probes from the workload's traffic */
    bh_autofree char *env = bh_json_print(cJSON_GetObjectItem(agent, "env"));
    assert_string_equal(env, "[{\"name\":\"BOILERHOUSE_HOST_IP\",\"valueFrom\":{\"fieldRef\":{"
                             "\"fieldPath\":\"status.hostIP\"}}}]");
    assert_int_equal(
        bh_json_int(cJSON_GetArrayItem(cJSON_GetObjectItem(agent, "ports"), 0), "containerPort", 0),
        BH_KUBE_AGENT_PORT);
    assert_int_equal(bh_json_int(agent, "securityContext.runAsUser", -1), 0);
    assert_false(bh_json_bool(agent, "securityContext.runAsNonRoot", 1));
    assert_false(bh_json_bool(agent, "securityContext.allowPrivilegeEscalation", 1));
    bh_autofree char *caps = bh_json_print(bh_json_get(agent, "securityContext.capabilities"));
    assert_string_equal(caps, "{\"drop\":[\"ALL\"],\"add\":[\"CHOWN\",\"DAC_OVERRIDE\","
                              "\"DAC_READ_SEARCH\",\"FOWNER\",\"FSETID\"]}");
    assert_string_equal(
        bh_json_str(cJSON_GetArrayItem(cJSON_GetObjectItem(agent, "volumeMounts"), 0), "mountPath"),
        BH_KUBE_AGENT_ROOT);
    cJSON *token = find_named(bh_json_get(pod, "spec.volumes"), "agent-token");
    assert_string_equal(bh_json_str(token, "secret.secretName"), BH_KUBE_AGENT_SECRET);
    assert_int_equal(bh_json_int(token, "secret.defaultMode", 0), 0400);
    cJSON_Delete(pod);

    inst.restore = 1;
    pod = pod_of(wl, &inst);
    cJSON *init = bh_json_get(pod, "spec.initContainers");
    assert_int_equal(cJSON_GetArraySize(init), 2); /* the egress rules first, then the restore */
    assert_string_equal(bh_json_str(cJSON_GetArrayItem(init, 0), "name"), "egress-init");
    cJSON *restore = cJSON_GetArrayItem(init, 1);
    assert_string_equal(bh_json_str(restore, "name"), "snapshot-restore");
    cJSON *rcmd = cJSON_GetObjectItem(restore, "command");
    assert_string_equal(cJSON_GetArrayItem(rcmd, cJSON_GetArraySize(rcmd) - 1)->valuestring,
                        "--restore-once");
    assert_null(cJSON_GetObjectItem(restore, "ports"));
    bh_autofree char *rtext = bh_json_print(restore);
    assert_null(strstr(rtext, "--watch")); /* nothing to measure before the workload runs */
    assert_null(strstr(rtext, "--probe-peer"));
    cJSON_Delete(pod);

    /* no overlay directories: nothing to save, no agent */
    cJSON_DeleteItemFromObject(bh_json_get(wl, "spec.filesystem"), "overlayDirs");
    pod = pod_of(wl, &inst);
    assert_null(find_named(bh_json_get(pod, "spec.containers"), "snapshot-agent"));
    assert_null(find_named(bh_json_get(pod, "spec.volumes"), "agent-token"));
    cJSON_Delete(pod);
    cJSON_Delete(wl);
}

static void test_agent_secret(void **state)
{
    (void)state;
    struct bh_kube_opts o = opts();
    cJSON *s = NULL;
    struct bh_err err = {0};
    const char *token = "0123456789abcdef0123456789abcdef";
    assert_int_equal(bh_kube_agent_secret(token, &o, &s, &err), 0);
    assert_string_equal(bh_json_str(s, "metadata.name"), BH_KUBE_AGENT_SECRET);
    assert_string_equal(bh_json_str(s, "metadata.namespace"), "tenants");
    assert_null(bh_json_get(s, "metadata.labels." BH_KUBE_LABEL_WORKLOAD));
    size_t len = 0;
    bh_autofree unsigned char *raw = bh_crypto_unbase64(bh_json_str(s, "data.token"), &len);
    assert_int_equal(len, strlen(token));
    assert_memory_equal(raw, token, len);
    cJSON_Delete(s);
    const char *bad[] = {"short", "0123456789abcdef 0123456789abcdef", NULL};
    for (int i = 0; i < 3; i++) {
        s = NULL;
        assert_int_equal(bh_kube_agent_secret(bad[i], &o, &s, &err), -1);
        assert_null(s);
        assert_non_null(strstr(err.msg, "agent token"));
    }
}

static void test_bad_input(void **state)
{
    (void)state;
    cJSON *wl = workload("restricted");
    struct bh_kube_instance inst = CLAIMED;
    const char *ids[] = {"0123456789AB", "0123", "../../etc/xx", NULL};
    for (int i = 0; i < 4; i++) {
        inst.id = ids[i];
        expect_pod_error(wl, &inst, "instance id");
    }
    inst = CLAIMED;
    inst.tenant = "";
    expect_pod_error(wl, &inst, "tenant");
    inst = CLAIMED;
    inst.pool = "bad pool";
    expect_pod_error(wl, &inst, "pool");
    inst = CLAIMED;
    inst.claim = "-claim";
    expect_pod_error(wl, &inst, "claim");
    inst = CLAIMED;
    inst.image = "two words";
    expect_pod_error(wl, &inst, "spec.image.ref");
    cJSON_Delete(wl);

    wl = workload_with("restricted", "Bad_Secret", "OK");
    expect_pod_error(wl, &CLAIMED,
                     "spec.network.credentials[0].headers[0].valueFrom."
                     "secretKeyRef.name");
    cJSON_Delete(wl);
    wl = workload_with("none", "s", "'1BAD'");
    expect_pod_error(wl, &CLAIMED, "spec.entrypoint.env.1BAD");
    cJSON_Delete(wl);
    const char *dirs[] = {"/", "/a//b", "/a/./b", "/a/", "/."};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        wl = workload("none");
        cJSON *od = bh_json_get(wl, "spec.filesystem.overlayDirs");
        cJSON_ReplaceItemInArray(od, 1, cJSON_CreateString(dirs[i]));
        expect_pod_error(wl, &CLAIMED, "spec.filesystem.overlayDirs[1]");
        cJSON_Delete(wl);
    }

    wl = workload("none");
    bh_json_set_str(bh_json_get(wl, "metadata"), "name", "Not_A_Label");
    expect_pod_error(wl, &CLAIMED, "metadata.name");
    bh_json_set_str(bh_json_get(wl, "metadata"), "name", "web");
    /* a dockerfile-built workload runs as boilerhouse/<name>:<version> unless told */
    cJSON *image = bh_json_get(wl, "spec.image");
    cJSON_DeleteItemFromObject(image, "ref");
    cJSON_AddStringToObject(image, "dockerfile", "Dockerfile");
    cJSON *pod = pod_of(wl, &CLAIMED);
    assert_string_equal(
        bh_json_str(cJSON_GetArrayItem(bh_json_get(pod, "spec.containers"), 0), "image"),
        "boilerhouse/web:1.2");
    cJSON_Delete(pod);
    bh_json_set_str(bh_json_get(wl, "spec"), "version", "not a tag");
    expect_pod_error(wl, &CLAIMED, "spec.version");
    cJSON_Delete(wl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_are_dns_labels),
        cmocka_unit_test(test_tenant_labels_are_label_values),
        cmocka_unit_test(test_pod_metadata),
        cmocka_unit_test(test_pod_spec_hardening),
        cmocka_unit_test(test_pod_process_and_resources),
        cmocka_unit_test(test_pod_overlays_and_probe),
        cmocka_unit_test(test_pod_restricted_egress),
        cmocka_unit_test(test_pod_restricted_without_tenant_secrets),
        cmocka_unit_test(test_redirect_rules),
        cmocka_unit_test(test_service),
        cmocka_unit_test(test_network_policy_modes),
        cmocka_unit_test(test_network_policy_errors),
        cmocka_unit_test(test_ca_secret),
        cmocka_unit_test(test_claim_patch),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_pod_snapshot_agent),
        cmocka_unit_test(test_agent_secret),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
