/* The Pod runtime's pure parts and its place in the runtime seam: what a Pod's status says
 * about a boot (every phase, condition and container state the kubelet writes), the seam's
 * capability split (a host driver has no remote ops, the kube driver no host-only ones), and
 * the driver's answers when the API server cannot be reached. Against a real API server:
 * tests/integration/test_kube_pods.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "fake_runtime.h"
#include "mem.h"
#include "objects.h"
#include "runtime.h"
#include "runtime_kube.h"
#include "tls.h"

static const struct {
    const char *status; /* the Pod's status object, JSON */
    const char *extra;  /* more of metadata, JSON members, or "" */
    enum bh_runtime_kube_pod want;
    const char *why; /* a part of the reason */
} pod_cases[] = {
    {"{}", "", BH_RUNTIME_KUBE_POD_PENDING, "phase Pending"},
    {"{\"phase\":\"Pending\",\"containerStatuses\":[{\"name\":\"main\",\"state\":{\"waiting\":"
     "{\"reason\":\"ContainerCreating\"}}}]}",
     "", BH_RUNTIME_KUBE_POD_PENDING, "waiting: ContainerCreating"},
    {"{\"phase\":\"Pending\",\"containerStatuses\":[{\"name\":\"main\",\"state\":{\"waiting\":"
     "{\"reason\":\"ImagePullBackOff\",\"message\":\"no such host\"}}}]}",
     "", BH_RUNTIME_KUBE_POD_PENDING, "ImagePullBackOff: no such host"},
    {"{\"phase\":\"Running\",\"conditions\":[{\"type\":\"Ready\",\"status\":\"False\"}]}", "",
     BH_RUNTIME_KUBE_POD_PENDING, "phase Running, not Ready"},
    {"{\"phase\":\"Running\",\"conditions\":[{\"type\":\"PodScheduled\",\"status\":\"True\"},"
     "{\"type\":\"Ready\",\"status\":\"True\"}],\"podIP\":\"10.1.2.3\"}",
     "", BH_RUNTIME_KUBE_POD_READY, ""},
    {"{\"phase\":\"Running\",\"containerStatuses\":[{\"name\":\"main\",\"state\":{\"waiting\":"
     "{\"reason\":\"CrashLoopBackOff\",\"message\":\"back-off 10s\"}}}]}",
     "", BH_RUNTIME_KUBE_POD_FAILED, "container main waiting: CrashLoopBackOff: back-off 10s"},
    {"{\"phase\":\"Running\",\"containerStatuses\":[{\"name\":\"egress-proxy\",\"state\":"
     "{\"running\":{}}},{\"name\":\"main\",\"state\":{\"terminated\":{\"reason\":\"Error\","
     "\"exitCode\":3}}}]}",
     "", BH_RUNTIME_KUBE_POD_FAILED, "container main terminated: Error (exit code 3)"},
    {"{\"phase\":\"Pending\",\"containerStatuses\":[{\"name\":\"main\",\"state\":{\"waiting\":"
     "{\"reason\":\"InvalidImageName\"}}}]}",
     "", BH_RUNTIME_KUBE_POD_FAILED, "InvalidImageName"},
    {"{\"phase\":\"Failed\",\"reason\":\"Evicted\",\"message\":\"low on ephemeral-storage\"}", "",
     BH_RUNTIME_KUBE_POD_FAILED, "Pod failed: Evicted: low on ephemeral-storage"},
    {"{\"phase\":\"Succeeded\"}", "", BH_RUNTIME_KUBE_POD_FAILED, "Pod exited"},
    /* Failed with a container's reason: the container's is the one told. */
    {"{\"phase\":\"Failed\",\"containerStatuses\":[{\"name\":\"main\",\"state\":"
     "{\"terminated\":{\"reason\":\"OOMKilled\",\"exitCode\":137}}}]}",
     "", BH_RUNTIME_KUBE_POD_FAILED, "container main terminated: OOMKilled (exit code 137)"},
    /* Ready as last written, but going: never handed out. */
    {"{\"phase\":\"Running\",\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}",
     ",\"deletionTimestamp\":\"2026-01-01T00:00:00Z\"", BH_RUNTIME_KUBE_POD_FAILED,
     "being deleted"},
};

static void test_pod_state(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(pod_cases) / sizeof(pod_cases[0]); i++) {
        bh_autofree char *text =
            bh_xasprintf("{\"metadata\":{\"name\":\"bh-web-0123456789ab\"%s},\"status\":%s}",
                         pod_cases[i].extra, pod_cases[i].status);
        cJSON *pod = cJSON_Parse(text);
        assert_non_null(pod);
        char why[256];
        enum bh_runtime_kube_pod got = bh_runtime_kube_pod_state(pod, why, sizeof(why));
        if (got != pod_cases[i].want || !strstr(why, pod_cases[i].why))
            fail_msg("case %zu: got %d (%s), want %d (%s)", i, got, why, pod_cases[i].want,
                     pod_cases[i].why);
        cJSON_Delete(pod);
    }
}

/* A reason longer than the buffer is cut, never overrun. */
static void test_pod_state_truncates(void **state)
{
    (void)state;
    char big[600];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    bh_autofree char *text =
        bh_xasprintf("{\"status\":{\"phase\":\"Failed\",\"message\":\"%s\"}}", big);
    cJSON *pod = cJSON_Parse(text);
    char why[32];
    memset(why, 'z', sizeof(why));
    assert_int_equal(bh_runtime_kube_pod_state(pod, why, sizeof(why)), BH_RUNTIME_KUBE_POD_FAILED);
    assert_int_equal(strlen(why), sizeof(why) - 1);
    cJSON_Delete(pod);
}

/* ---- an instance as its Pod describes it (what a new leader adopts) ---- */

/* A Pod as the builders label a tenant's Pod taken from pool p; the tenant label is the hash
 * of "t1". */
static cJSON *found_pod(void)
{
    bh_autofree char *hashed = bh_kube_tenant_label("t1");
    bh_autofree char *text = bh_xasprintf(
        "{\"metadata\":{\"name\":\"bh-web-0123456789ab\",\"labels\":{"
        "\"boilerhouse.dev/managed\":\"true\",\"boilerhouse.dev/workload\":\"web\","
        "\"boilerhouse.dev/instance\":\"bh-web-0123456789ab\","
        "\"boilerhouse.dev/generation\":\"3\",\"boilerhouse.dev/pool\":\"p\","
        "\"boilerhouse.dev/pool-status\":\"acquired\",\"boilerhouse.dev/tenant\":\"%s\","
        "\"boilerhouse.dev/claim\":\"c1\"},\"annotations\":{"
        "\"boilerhouse.dev/tenant-id\":\"t1\",\"boilerhouse.dev/image-digest\":"
        "\"sha256:00ff\"}},"
        "\"spec\":{\"containers\":[{\"name\":\"main\",\"ports\":[{\"containerPort\":8080}]}]},"
        "\"status\":{\"phase\":\"Running\",\"podIP\":\"10.1.2.3\",\"conditions\":"
        "[{\"type\":\"Ready\",\"status\":\"True\"}]}}",
        hashed);
    cJSON *pod = cJSON_Parse(text);
    assert_non_null(pod);
    return pod;
}

/* Sets (or with v NULL removes) metadata.<map>.<key>, or the name with map NULL. */
static void found_set(cJSON *pod, const char *map, const char *key, const char *v)
{
    cJSON *meta = cJSON_GetObjectItem(pod, "metadata");
    cJSON *m = map ? cJSON_GetObjectItem(meta, map) : meta;
    cJSON_DeleteItemFromObjectCaseSensitive(m, map ? key : "name");
    if (v)
        cJSON_AddStringToObject(m, map ? key : "name", v);
}

static void test_pod_found(void **state)
{
    (void)state;
    struct bh_runtime_found f;
    struct bh_err err = {0};
    cJSON *pod = found_pod();
    /* A tenant's Pod: everything its record needs; no Service: the Pod's IP and port. */
    assert_int_equal(bh_runtime_kube_pod_found(pod, NULL, &f, &err), 0);
    assert_string_equal(f.id, "bh-0123456789ab");
    assert_string_equal(f.instance_id, "0123456789ab");
    assert_string_equal(f.workload, "web");
    assert_int_equal(f.generation, 3);
    assert_string_equal(f.tenant, "t1");
    assert_string_equal(f.claim, "c1");
    assert_string_equal(f.pool, "p");
    assert_string_equal(f.image_digest, "sha256:00ff");
    assert_int_equal(f.state, BH_RUNTIME_FOUND_READY);
    assert_string_equal(f.endpoint.host, "10.1.2.3");
    assert_int_equal(f.endpoint.port, 8080);
    bh_runtime_found_clear(&f);
    /* A warm one (no tenant), being deleted, with its Service: the ClusterIP. */
    found_set(pod, "labels", "boilerhouse.dev/tenant", NULL);
    found_set(pod, "labels", "boilerhouse.dev/claim", NULL);
    found_set(pod, "annotations", "boilerhouse.dev/tenant-id", NULL);
    found_set(pod, "annotations", "boilerhouse.dev/image-digest", NULL);
    found_set(pod, "labels", "boilerhouse.dev/pool-status", "ready");
    found_set(pod, NULL, NULL, "bh-web-0123456789ab");
    cJSON_AddStringToObject(cJSON_GetObjectItem(pod, "metadata"), "deletionTimestamp", "x");
    cJSON *svc =
        cJSON_Parse("{\"spec\":{\"clusterIP\":\"10.96.0.7\",\"ports\":[{\"port\":8080}]}}");
    assert_int_equal(bh_runtime_kube_pod_found(pod, svc, &f, &err), 0);
    assert_null(f.tenant);
    assert_null(f.claim);
    assert_null(f.image_digest);
    assert_int_equal(f.state, BH_RUNTIME_FOUND_ENDED);
    assert_string_equal(f.endpoint.host, "10.96.0.7");
    bh_runtime_found_clear(&f);
    cJSON_Delete(svc);
    cJSON_Delete(pod);
}

/* Every label or annotation missing, malformed or contradicting another: refused naming the
 * Pod and what is wrong, and nothing comes out to adopt. */
static void test_pod_found_refused(void **state)
{
    (void)state;
    static const struct {
        const char *map, *key, *value; /* map NULL: the Pod's name */
        const char *msg;
    } cases[] = {
        {NULL, NULL, "bh-web-0123456789", "its name does not end with an instance id"},
        {NULL, NULL, "bh-web-0123456789AB", "its name does not end with an instance id"},
        {NULL, NULL, NULL, "a Pod without a name"},
        {"labels", "boilerhouse.dev/managed", NULL, "managed: must be true"},
        {"labels", "boilerhouse.dev/managed", "false", "managed: must be true"},
        {"labels", "boilerhouse.dev/workload", NULL, "workload: missing, a workload name"},
        {"labels", "boilerhouse.dev/workload", "Web!", "workload: not a workload name"},
        {"labels", "boilerhouse.dev/workload", "api", "workload: api does not name this Pod"},
        {"labels", "boilerhouse.dev/instance", "bh-web-000000000000", "instance: must be the"},
        {"labels", "boilerhouse.dev/generation", NULL, "generation: missing, a positive"},
        {"labels", "boilerhouse.dev/generation", "0", "generation: not a positive integer"},
        {"labels", "boilerhouse.dev/generation", "03", "generation: not a positive integer"},
        {"labels", "boilerhouse.dev/generation", "-1", "generation: not a positive integer"},
        {"labels", "boilerhouse.dev/generation", "99999999999999999999", "not a positive"},
        {"annotations", "boilerhouse.dev/tenant-id", NULL, "tenant-id: missing beside"},
        {"annotations", "boilerhouse.dev/tenant-id", "t2", "tenant: not the hash of its tenant"},
        {"annotations", "boilerhouse.dev/tenant-id", "../x", "tenant-id: not a tenant ID"},
        {"labels", "boilerhouse.dev/tenant", NULL, "tenant: not the hash of its tenant ID"},
        {"labels", "boilerhouse.dev/claim", NULL, "claim: missing beside its tenant"},
        {"labels", "boilerhouse.dev/claim", "a b", "claim: not a claim name"},
        {"labels", "boilerhouse.dev/pool-status", "ready", "ready beside a tenant's label"},
        {"labels", "boilerhouse.dev/pool-status", "draining", "must be warming, ready or acq"},
        {"labels", "boilerhouse.dev/pool-status", NULL, "must be warming, ready or acquired"},
        {"labels", "boilerhouse.dev/pool", NULL, "pool: missing beside its pool-status"},
        {"annotations", "boilerhouse.dev/image-digest", "sha256:../x", "not an image digest"},
        {"annotations", "boilerhouse.dev/image-digest", "", "not an image digest"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *pod = found_pod();
        found_set(pod, cases[i].map, cases[i].key, cases[i].value);
        struct bh_runtime_found f;
        struct bh_err err = {0};
        int rc = bh_runtime_kube_pod_found(pod, NULL, &f, &err);
        if (rc == 0 || !strstr(err.msg, cases[i].msg) ||
            (cases[i].value && cases[i].map && !strstr(err.msg, "Pod bh-web-0123456789ab")))
            fail_msg("case %zu: rc %d, \"%s\"", i, rc, err.msg);
        assert_null(f.id);
        assert_null(f.instance_id);
        assert_null(f.workload);
        assert_null(f.tenant);
        cJSON_Delete(pod);
    }
    /* A warm Pod acquired without a tenant, and a Pod neither a pool's nor a tenant's. */
    cJSON *pod = found_pod();
    found_set(pod, "labels", "boilerhouse.dev/tenant", NULL);
    found_set(pod, "labels", "boilerhouse.dev/claim", NULL);
    found_set(pod, "annotations", "boilerhouse.dev/tenant-id", NULL);
    struct bh_runtime_found f;
    struct bh_err err = {0};
    assert_int_equal(bh_runtime_kube_pod_found(pod, NULL, &f, &err), -1);
    assert_non_null(strstr(err.msg, "acquired without a tenant's label"));
    found_set(pod, "labels", "boilerhouse.dev/pool", NULL);
    found_set(pod, "labels", "boilerhouse.dev/pool-status", NULL);
    assert_int_equal(bh_runtime_kube_pod_found(pod, NULL, &f, &err), -1);
    assert_non_null(strstr(err.msg, "neither a pool's nor a tenant's"));
    assert_null(f.instance_id);
    cJSON_Delete(pod);
}

/* The fake is a host driver: the remote ops refuse by name, the host ones work. */
static void test_seam_host_driver(void **state)
{
    (void)state;
    struct bh_runtime *rt = fake_rt_new();
    assert_false(bh_runtime_has(rt, BH_RUNTIME_CAP_REMOTE));
    assert_false(bh_runtime_has(rt, BH_RUNTIME_CAP_SHARED));
    struct bh_err err = {0};
    struct bh_runtime_instance inst = {.id = "bh-0123456789ab"};
    assert_int_equal(bh_runtime_launch(rt, &inst, &err), -1);
    assert_int_equal(err.code, BH_EUNAVAIL);
    assert_non_null(strstr(err.msg, "the fake runtime cannot launch"));
    struct bh_runtime_endpoint ep;
    assert_int_equal(bh_runtime_endpoint(rt, "bh-0123456789ab", &ep, &err), -1);
    assert_int_equal(bh_runtime_ready(rt, "bh-0123456789ab", &err), -1);
    assert_int_equal(bh_runtime_assign(rt, &inst, &err), -1);
    struct bh_runtime_saved saved;
    assert_int_equal(bh_runtime_save(rt, "bh-0123456789ab", "/nonexistent/x", &saved, &err), -1);
    assert_int_equal(err.code, BH_EUNAVAIL);
    assert_non_null(strstr(err.msg, "the fake runtime cannot save"));
    assert_int_equal(bh_runtime_restore(rt, "bh-0123456789ab", "/nonexistent/x", "0", 10, &err),
                     -1);
    assert_int_equal(err.code, BH_EUNAVAIL);
    const struct bh_runtime_credential cred = {"api.example.com", "x-key", "v"};
    assert_int_equal(bh_runtime_credentials(rt, "bh-0123456789ab", &cred, 1, 10, &err), -1);
    assert_int_equal(err.code, BH_EUNAVAIL);
    assert_non_null(strstr(err.msg, "the fake runtime cannot hand an instance its tenant's"));
    struct bh_runtime_found *found = NULL;
    size_t n = 1;
    assert_int_equal(bh_runtime_inventory(rt, &found, &n, &err), -1);
    assert_non_null(strstr(err.msg, "the fake runtime cannot list the instances it holds"));
    assert_null(found);
    assert_int_equal(n, 0);
    bh_runtime_close(rt);
}

/* A client to a port nothing listens on: what the kube driver says without its API server. */
static struct bh_kube_client *unreachable_client(void)
{
    struct bh_kube_config cfg = {.server = bh_xstrdup("https://127.0.0.1:1"),
                                 .token = bh_xstrdup("t"),
                                 .namespace = bh_xstrdup("ns1")};
    return bh_kube_client_new(&cfg);
}

static void test_seam_kube_driver(void **state)
{
    (void)state;
    struct bh_kube_client *c = unreachable_client();
    struct bh_runtime *rt = NULL;
    struct bh_err err = {0};
    const struct bh_runtime_kube_cfg cfg = {0};
    assert_int_equal(bh_runtime_kube_open(c, &cfg, &rt, &err), 0);
    assert_string_equal(bh_runtime_name(rt), "kube");
    assert_true(bh_runtime_has(rt, BH_RUNTIME_CAP_REMOTE | BH_RUNTIME_CAP_SHARED));
    /* Host-only ops: refused by name, never a crash on a missing op. */
    assert_int_equal(bh_runtime_pause(rt, "bh-0123456789ab", &err), -1);
    assert_int_equal(err.code, BH_EUNAVAIL);
    assert_non_null(strstr(err.msg, "the kube runtime cannot pause"));
    struct bh_runtime_spec spec = {.id = "bh-0123456789ab"};
    int pid = 0;
    assert_int_equal(bh_runtime_create(rt, &spec, &pid, &err), -1);
    assert_null(bh_runtime_netns_path(rt, "bh-0123456789ab", 0));
    /* Without an answer it cannot tell: alive (nobody destroys a tenant's Pod on a blip);
     * a delete or a readiness look fails and is retried. */
    assert_true(bh_runtime_alive(rt, "bh-0123456789ab", 0));
    assert_int_equal(bh_runtime_delete(rt, "bh-0123456789ab", &err), -1);
    assert_int_equal(err.code, BH_EUNAVAIL);
    assert_int_equal(bh_runtime_ready(rt, "bh-0123456789ab", &err), 0);
    /* Overlay data: no Pod can be found without an API server, and nothing is written. */
    struct bh_runtime_saved saved;
    assert_int_equal(bh_runtime_save(rt, "bh-0123456789ab", "/tmp/bh-never-made", &saved, &err),
                     -1);
    assert_false(access("/tmp/bh-never-made", F_OK) == 0);
    /* Tenant credentials: no Pod to send them to without an API server. */
    const struct bh_runtime_credential cred = {"api.example.com", "x-key", "v"};
    assert_int_equal(bh_runtime_credentials(rt, "bh-0123456789ab", &cred, 1, 10, &err), -1);
    assert_int_equal(bh_runtime_credentials(rt, "bh-../../x", &cred, 1, 10, &err), -1);
    assert_int_equal(err.code, BH_ENOTFOUND);
    /* Without an answer nothing is known: the inventory fails rather than come back empty. */
    struct bh_runtime_found *found = NULL;
    size_t n = 0;
    assert_int_equal(bh_runtime_inventory(rt, &found, &n, &err), -1);
    assert_int_equal(n, 0);
    bh_runtime_found_free(found, n);
    /* A container id that names no instance never reaches a request path. */
    assert_int_equal(bh_runtime_delete(rt, "bh-../../x", &err), 0);
    assert_false(bh_runtime_alive(rt, "bh-../../x", 0));
    bh_runtime_close(rt);
    bh_kube_client_free(c);
}

/* Settings the builders would refuse are refused when the driver opens, naming the value. */
static void test_kube_driver_settings(void **state)
{
    (void)state;
    struct bh_kube_client *c = unreachable_client();
    static const struct {
        struct bh_runtime_kube_cfg cfg;
        const char *msg; /* NULL: accepted */
    } cases[] = {
        {{.cluster_cidrs = "10.96.0.0/12, 10.244.0.0/16,fd00::/48"}, NULL},
        {{.cluster_cidrs = "10.96.0.0/12,;rm -rf"}, "cluster range ;rm: must be a CIDR"},
        {{.cluster_cidrs = "10.96.0.0"}, "cluster range 10.96.0.0: must be a CIDR"},
        {{.dns_label = "k8s-app"}, "DNS pod label k8s-app: must be key=value"},
        {{.dns_label = "app=coredns", .dns_namespace = "dns"}, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct bh_runtime *rt = NULL;
        struct bh_err err = {0};
        int rc = bh_runtime_kube_open(c, &cases[i].cfg, &rt, &err);
        if (!cases[i].msg) {
            assert_int_equal(rc, 0);
            bh_runtime_close(rt);
        } else if (rc == 0 || !strstr(err.msg, cases[i].msg)) {
            fail_msg("case %zu: rc %d, \"%s\"", i, rc, err.msg);
        }
    }
    bh_kube_client_free(c);
}

/* The egress CA: a CA certificate and its key, fresh each time. */
static void test_ca_new(void **state)
{
    (void)state;
    char *cert = NULL, *key = NULL, *cert2 = NULL, *key2 = NULL;
    struct bh_err err = {0};
    assert_int_equal(bh_tls_ca_new("boilerhouse-egress", &cert, &key, &err), 0);
    assert_int_equal(bh_tls_ca_new("boilerhouse-egress", &cert2, &key2, &err), 0);
    assert_non_null(strstr(cert, "-----BEGIN CERTIFICATE-----"));
    assert_non_null(strstr(key, "PRIVATE KEY-----"));
    assert_string_not_equal(cert, cert2);
    char fp[BH_TLS_FINGERPRINT_LEN];
    assert_int_equal(bh_tls_fingerprint(cert, fp, &err), 0);
    free(cert);
    free(key);
    free(cert2);
    free(key2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pod_state),
        cmocka_unit_test(test_pod_state_truncates),
        cmocka_unit_test(test_pod_found),
        cmocka_unit_test(test_pod_found_refused),
        cmocka_unit_test(test_seam_host_driver),
        cmocka_unit_test(test_seam_kube_driver),
        cmocka_unit_test(test_kube_driver_settings),
        cmocka_unit_test(test_ca_new),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
