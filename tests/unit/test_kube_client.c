/* The Kubernetes client's pure parts: kubeconfig parsing, the in-cluster configuration and the
 * watch stream's line decoder fed in every byte split. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "client.h"
#include "crypto.h"
#include "fs.h"
#include "mem.h"

#define CA_PEM "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

static char *kc_with_user(const char *user, const char *cluster_extra)
{
    bh_autofree char *ca = bh_crypto_base64(CA_PEM, strlen(CA_PEM));
    return bh_xasprintf("apiVersion: v1\nkind: Config\ncurrent-context: two\n"
                        "clusters:\n"
                        "- name: c1\n  cluster: {server: 'https://other:1'}\n"
                        "- name: c2\n  cluster:\n    server: https://10.0.0.1:6443/\n"
                        "    certificate-authority-data: %s\n%s"
                        "contexts:\n"
                        "- name: one\n  context: {cluster: c1, user: u1}\n"
                        "- name: two\n  context: {cluster: c2, user: u2, namespace: team-a}\n"
                        "users:\n- name: u1\n  user: {token: wrong}\n"
                        "- name: u2\n  user: %s\n",
                        ca, cluster_extra, user);
}

static void test_kubeconfig_token(void **state)
{
    (void)state;
    bh_autofree char *kc = kc_with_user("{token: abc}", "");
    struct bh_kube_config c;
    struct bh_err err = {0};
    assert_int_equal(bh_kube_config_parse(kc, strlen(kc), "/nonexistent", &c, &err), 0);
    assert_string_equal(c.server, "https://10.0.0.1:6443");
    assert_string_equal(c.token, "abc");
    assert_string_equal(c.namespace, "team-a");
    assert_string_equal(c.ca_pem, CA_PEM);
    assert_null(c.cert_pem);
    assert_int_equal(c.insecure, 0);
    bh_kube_config_free(&c);
}

static char *tmpdir_with(const char *name, const char *content)
{
    char tmpl[] = "/tmp/bh-kube-test-XXXXXX";
    char *dir = bh_xstrdup(mkdtemp(tmpl));
    bh_autofree char *p = bh_xasprintf("%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    fputs(content, f);
    fclose(f);
    return dir;
}

static void rm_dir(char *dir)
{
    struct bh_err err;
    assert_int_equal(bh_fs_rmtree(dir, &err), 0);
    free(dir);
}

static void test_kubeconfig_files_relative(void **state)
{
    (void)state;
    char *dir = tmpdir_with("client.pem", "CERT\n");
    bh_autofree char *key = bh_xasprintf("%s/key.pem", dir);
    FILE *f = fopen(key, "w");
    fputs("KEY\n", f);
    fclose(f);
    bh_autofree char *kc = kc_with_user("{client-certificate: client.pem, client-key: key.pem}",
                                        "    insecure-skip-tls-verify: true\n");
    struct bh_kube_config c;
    struct bh_err err = {0};
    assert_int_equal(bh_kube_config_parse(kc, strlen(kc), dir, &c, &err), 0);
    assert_string_equal(c.cert_pem, "CERT\n");
    assert_string_equal(c.key_pem, "KEY\n");
    assert_null(c.token);
    assert_int_equal(c.insecure, 1);
    bh_kube_config_free(&c);
    rm_dir(dir);
}

static void test_kubeconfig_errors(void **state)
{
    (void)state;
    static const struct {
        const char *user, *want;
    } cases[] = {
        {"{exec: {command: aws}}", "users[u2].user.exec: not supported"},
        {"{client-certificate-data: Q0VSVA==}", "client-certificate and client-key go together"},
        {"{client-key-data: '!!'}", "users[u2].user.client-key-data: not base64"},
        {"{tokenFile: /nonexistent/token}", "users[u2].user.tokenFile"},
    };
    for (size_t i = 0; i < BH_ARRAY_LEN(cases); i++) {
        bh_autofree char *kc = kc_with_user(cases[i].user, "");
        struct bh_kube_config c;
        struct bh_err err = {0};
        assert_int_equal(bh_kube_config_parse(kc, strlen(kc), "/", &c, &err), -1);
        assert_int_not_equal(err.code, 0);
        if (!strstr(err.msg, cases[i].want))
            fail_msg("case %zu: %s", i, err.msg);
        assert_null(c.server); /* nothing is left half-filled */
    }
    static const struct {
        const char *doc, *want;
    } docs[] = {
        {"kind: Config\n", "current-context: not set"},
        {"current-context: x\ncontexts: []\n", "contexts: no entry named \"x\""},
        {"current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\n"
         "clusters: [{name: c, cluster: {server: 'ftp://h'}}]\n",
         "clusters[c].cluster.server: must be an http(s) URL"},
        {"current-context: x\ncontexts: [{name: x, context: {user: u}}]\n",
         "contexts[x].context.cluster: missing"},
        {"{", "kubeconfig"},
    };
    for (size_t i = 0; i < BH_ARRAY_LEN(docs); i++) {
        struct bh_kube_config c;
        struct bh_err err = {0};
        assert_int_equal(bh_kube_config_parse(docs[i].doc, strlen(docs[i].doc), "/", &c, &err), -1);
        assert_int_equal(err.code, BH_EINVAL);
        if (!strstr(err.msg, docs[i].want))
            fail_msg("doc %zu: %s", i, err.msg);
    }
}

static void test_kubeconfig_default_namespace_and_token_file(void **state)
{
    (void)state;
    char *dir = tmpdir_with("tok", "from-file\n");
    const char *kc = "current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
                     "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:8080'}}]\n"
                     "users: [{name: u, user: {tokenFile: tok}}]\n";
    struct bh_kube_config c;
    struct bh_err err = {0};
    assert_int_equal(bh_kube_config_parse(kc, strlen(kc), dir, &c, &err), 0);
    assert_string_equal(c.namespace, "default");
    assert_string_equal(c.token, "from-file");
    assert_null(c.ca_pem);
    bh_kube_config_free(&c);
    rm_dir(dir);
}

static void test_in_cluster(void **state)
{
    (void)state;
    char *dir = tmpdir_with("token", "sa-token\n");
    const char *files[][2] = {{"ca.crt", CA_PEM}, {"namespace", "ops"}};
    for (size_t i = 0; i < 2; i++) {
        bh_autofree char *p = bh_xasprintf("%s/%s", dir, files[i][0]);
        FILE *f = fopen(p, "w");
        fputs(files[i][1], f);
        fclose(f);
    }
    struct bh_kube_config c;
    struct bh_err err = {0};
    unsetenv("KUBERNETES_SERVICE_HOST");
    assert_int_equal(bh_kube_config_in_cluster(dir, &c, &err), -1);
    assert_non_null(strstr(err.msg, "KUBERNETES_SERVICE_HOST"));
    setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    assert_int_equal(bh_kube_config_in_cluster(dir, &c, &err), 0);
    assert_string_equal(c.server, "https://[fd00::1]:443");
    assert_string_equal(c.token, "sa-token");
    assert_string_equal(c.namespace, "ops");
    assert_non_null(strstr(c.ca_pem, "BEGIN CERTIFICATE"));
    bh_kube_config_free(&c);
    rm_dir(dir);
}

/* ---- the watch decoder ---- */

struct seen {
    char log[4096];
    int n, stop_at;
};

static int on_event(const char *type, const cJSON *obj, void *ud)
{
    struct seen *s = ud;
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
    const cJSON *rv = cJSON_GetObjectItemCaseSensitive(md, "resourceVersion");
    size_t at = strlen(s->log);
    snprintf(s->log + at, sizeof(s->log) - at, "%s:%s;", type,
             cJSON_IsString(rv) ? rv->valuestring : "-");
    return ++s->n == s->stop_at;
}

static const char STREAM[] =
    "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"11\"}}}\n"
    "\n"
    "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"a \\u00e9\\n\","
    "\"resourceVersion\":\"12\"}}}\r\n"
    "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"15\"}}}\n"
    "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":410}}\n";
static const char WANT[] = "ADDED:11;MODIFIED:12;BOOKMARK:15;ERROR:-;";

/* Every split of the stream into three pieces decodes to the same events. */
static void test_lines_every_split(void **state)
{
    (void)state;
    size_t n = strlen(STREAM);
    for (size_t i = 0; i <= n; i += 3) {
        for (size_t j = i; j <= n; j += 5) {
            struct seen s = {.stop_at = -1};
            struct bh_kube_lines *d = bh_kube_lines_new(4096, on_event, &s);
            struct bh_err err = {0};
            assert_int_equal(bh_kube_lines_feed(d, STREAM, i, &err), 0);
            assert_int_equal(bh_kube_lines_feed(d, STREAM + i, j - i, &err), 0);
            assert_int_equal(bh_kube_lines_feed(d, STREAM + j, n - j, &err), 0);
            if (strcmp(s.log, WANT) != 0)
                fail_msg("split %zu/%zu: %s", i, j, s.log);
            bh_kube_lines_free(d);
        }
    }
    /* Byte by byte. */
    struct seen s = {.stop_at = -1};
    struct bh_kube_lines *d = bh_kube_lines_new(4096, on_event, &s);
    struct bh_err err = {0};
    for (size_t i = 0; i < n; i++)
        assert_int_equal(bh_kube_lines_feed(d, STREAM + i, 1, &err), 0);
    assert_string_equal(s.log, WANT);
    bh_kube_lines_free(d);
}

static void test_lines_partial_line_waits(void **state)
{
    (void)state;
    struct seen s = {.stop_at = -1};
    struct bh_kube_lines *d = bh_kube_lines_new(4096, on_event, &s);
    struct bh_err err = {0};
    const char *first = strchr(STREAM, '\n');
    assert_int_equal(bh_kube_lines_feed(d, STREAM, (size_t)(first - STREAM), &err), 0);
    assert_int_equal(s.n, 0); /* no newline yet: nothing decoded */
    assert_int_equal(bh_kube_lines_feed(d, first, 1, &err), 0);
    assert_string_equal(s.log, "ADDED:11;");
    bh_kube_lines_free(d);
}

static void test_lines_stop_and_errors(void **state)
{
    (void)state;
    struct seen s = {.stop_at = 2};
    struct bh_kube_lines *d = bh_kube_lines_new(4096, on_event, &s);
    struct bh_err err = {0};
    assert_int_equal(bh_kube_lines_feed(d, STREAM, strlen(STREAM), &err), 1);
    assert_string_equal(s.log, "ADDED:11;MODIFIED:12;");
    bh_kube_lines_free(d);

    static const char *const bad[] = {"not json\n", "{\"type\":\"ADDED\"}\n", "{\"object\":{}}\n",
                                      "[1,2]\n"};
    for (size_t i = 0; i < BH_ARRAY_LEN(bad); i++) {
        struct seen s2 = {.stop_at = -1};
        d = bh_kube_lines_new(4096, on_event, &s2);
        assert_int_equal(bh_kube_lines_feed(d, bad[i], strlen(bad[i]), &err), -1);
        assert_int_equal(err.code, BH_EINVAL);
        assert_int_equal(s2.n, 0);
        bh_kube_lines_free(d);
    }
    /* A line longer than the limit fails before it is complete (no unbounded buffering). */
    struct seen s3 = {.stop_at = -1};
    d = bh_kube_lines_new(16, on_event, &s3);
    assert_int_equal(bh_kube_lines_feed(d, "{\"type\":\"ADDED\",", 16, &err), 0);
    assert_int_equal(bh_kube_lines_feed(d, "\"object\"", 8, &err), -1);
    assert_non_null(strstr(err.msg, "longer than 16 bytes"));
    bh_kube_lines_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kubeconfig_token),
        cmocka_unit_test(test_kubeconfig_files_relative),
        cmocka_unit_test(test_kubeconfig_errors),
        cmocka_unit_test(test_kubeconfig_default_namespace_and_token_file),
        cmocka_unit_test(test_in_cluster),
        cmocka_unit_test(test_lines_every_split),
        cmocka_unit_test(test_lines_partial_line_waits),
        cmocka_unit_test(test_lines_stop_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
