/* The egress sidecar's config parser (plugins/network/restricted/sidecar): the JSON the Pod
 * builder writes becomes the engine's policy, credential values come from the environment,
 * and every mismatch is an error naming the field. Also the control endpoint's parsers: the
 * body of a push of the tenant's values, and its token file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "sidecar.h"

/* The environment of the tests: two credential variables. */
static const char *fake_env(const char *name)
{
    if (strcmp(name, "BOILERHOUSE_EGRESS_CRED_0") == 0)
        return "sk-from-secret";
    if (strcmp(name, "BOILERHOUSE_EGRESS_CRED_1") == 0)
        return "second";
    return NULL;
}

/* As core/kube/objects_egress.c renders it (three kinds of header). */
static const char GOOD[] =
    "{\"workload\":\"web\",\"allowlist\":[\"api.example.com\",\"*.cdn.example\"],"
    "\"credentials\":[{\"domain\":\"api.example.com\",\"headers\":["
    "{\"name\":\"x-api-key\",\"env\":\"BOILERHOUSE_EGRESS_CRED_0\"},"
    "{\"name\":\"x-plain\",\"value\":\"visible\"},"
    "{\"name\":\"x-tenant\",\"tenantSecretKeyRef\":{\"name\":\"own\",\"key\":\"k\"}}]}],"
    "\"ports\":{\"http\":15080,\"tls\":15443,\"dns\":15053},"
    "\"caDir\":\"/etc/boilerhouse/egress-ca-key\","
    "\"control\":{\"port\":15091,\"tokenFile\":\"/etc/boilerhouse/egress-token/token\"}}";

static void test_parses_what_the_builder_writes(void **state)
{
    (void)state;
    struct sidecar_config c;
    struct bh_err err = {0};
    assert_int_equal(sidecar_config_parse(GOOD, fake_env, &c, &err), 0);
    assert_string_equal(c.workload, "web");
    assert_int_equal(c.n_allow, 2);
    assert_string_equal(c.allow[1], "*.cdn.example");
    assert_int_equal(c.http_port, 15080);
    assert_int_equal(c.tls_port, 15443);
    assert_int_equal(c.dns_port, 15053);
    assert_string_equal(c.ca_dir, "/etc/boilerhouse/egress-ca-key");
    assert_int_equal(c.n_creds, 1);
    assert_string_equal(c.creds[0].domain, "api.example.com");
    /* the tenant's header is not in the policy: its value comes through the control port */
    assert_int_equal(c.creds[0].n_headers, 2);
    assert_string_equal(c.creds[0].headers[0].name, "x-api-key");
    assert_string_equal(c.creds[0].headers[0].value, "sk-from-secret");
    assert_string_equal(c.creds[0].headers[1].value, "visible");
    assert_int_equal(c.n_tenant, 1);
    assert_int_equal(c.tenant[0].cred, 0);
    assert_string_equal(c.tenant[0].name, "x-tenant");
    assert_int_equal(c.control_port, 15091);
    assert_string_equal(c.control_token, "/etc/boilerhouse/egress-token/token");
    struct egress_policy p = sidecar_config_policy(&c);
    assert_string_equal(p.workload, "web");
    assert_int_equal(p.n_allow, 2);
    assert_int_equal(p.n_credentials, 1);
    sidecar_config_free(&c);
}

static void test_no_credentials(void **state)
{
    (void)state;
    struct sidecar_config c;
    struct bh_err err = {0};
    assert_int_equal(sidecar_config_parse("{\"workload\":\"w\",\"allowlist\":[],"
                                          "\"ports\":{\"http\":1,\"tls\":2,\"dns\":3},"
                                          "\"caDir\":\"/ca\"}",
                                          fake_env, &c, &err),
                     0);
    assert_int_equal(c.n_allow, 0);
    assert_int_equal(c.n_creds, 0);
    sidecar_config_free(&c);
}

/* Replaces the first `from` of GOOD with `to`. */
static void mutate(char *out, size_t cap, const char *from, const char *to)
{
    const char *at = strstr(GOOD, from);
    assert_non_null(at);
    snprintf(out, cap, "%.*s%s%s", (int)(at - GOOD), GOOD, to, at + strlen(from));
}

static void test_bad_config_names_the_field(void **state)
{
    (void)state;
    static const struct {
        const char *from, *to, *want;
    } cases[] = {
        {"\"workload\":\"web\",", "", "workload: must be a non-empty string"},
        {"\"workload\":\"web\"", "\"workload\":\"web\",\"extra\":1", "extra: unknown field"},
        {"[\"api.example.com\",", "[7,", "allowlist[0]: must be a non-empty string"},
        {"\"allowlist\":[", "\"allowlist\":{\"a\":[", "not valid JSON"},
        {"\"http\":15080", "\"http\":0", "ports.http: must be a port number"},
        {"\"dns\":15053", "\"dns\":\"53\"", "ports.dns: must be a port number"},
        {"\"dns\":15053", "\"dns\":1e300", "ports.dns: must be a port number"},
        {"\"tls\":15443", "\"tls\":443.5", "ports.tls: must be a port number"},
        {"\"tls\":15443", "\"tls\":15443,\"proxy\":3128", "ports.proxy: unknown field"},
        {"\"ports\":{\"http\":15080,\"tls\":15443,\"dns\":15053},", "", "ports: must be an object"},
        {"/etc/boilerhouse", "etc/boilerhouse", "caDir: must be an absolute path"},
        {"CRED_0", "CRED_9", "credentials[0].headers[0].env: BOILERHOUSE_EGRESS_CRED_9 is not set"},
        {"\"env\":\"BOILERHOUSE_EGRESS_CRED_0\"", "\"env\":\"HOME\"",
         "credentials[0].headers[0].env: must name a BOILERHOUSE_EGRESS_CRED_* variable"},
        {"\"value\":\"visible\"", "\"value\":\"visible\",\"env\":\"BOILERHOUSE_EGRESS_CRED_1\"",
         "credentials[0].headers[1]: needs exactly one of value, env, tenantSecretKeyRef"},
        {"\"value\":\"visible\"", "\"value\":5", "credentials[0].headers[1].value: must be a"},
        {"{\"name\":\"x-plain\",", "{", "credentials[0].headers[1].name: must be a non-empty"},
        {"\"domain\":\"api.example.com\",", "", "credentials[0].domain: must be a non-empty"},
        {"\"domain\"", "\"secret\":1,\"domain\"", "credentials[0].secret: unknown field"},
        {",\"control\":{\"port\":15091,\"tokenFile\":\"/etc/boilerhouse/egress-token/token\"}", "",
         "control: needed for the tenantSecretKeyRef headers"},
        {"15091", "0", "control.port: must be a port number"},
        {"\"tokenFile\":\"/etc", "\"tokenFile\":\"etc", "control.tokenFile: must be an absolute"},
        {"\"tokenFile\"", "\"token\":\"x\",\"tokenFile\"", "control.token: unknown field"},
        {"{\"name\":\"x-tenant\",\"tenantSecretKeyRef\":{\"name\":\"own\",\"key\":\"k\"}}",
         "{\"name\":\"x-tenant\",\"value\":\"v\"}",
         "control: no tenantSecretKeyRef header needs it"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char json[2048];
        mutate(json, sizeof(json), cases[i].from, cases[i].to);
        struct sidecar_config c;
        struct bh_err err = {0};
        int rc = sidecar_config_parse(json, fake_env, &c, &err);
        sidecar_config_free(&c);
        if (rc != -1 || !strstr(err.msg, cases[i].want) ||
            strncmp(err.msg, SIDECAR_CONFIG_ENV ": ", strlen(SIDECAR_CONFIG_ENV) + 2) != 0)
            fail_msg("case %zu: rc %d, \"%s\", want \"%s\"", i, rc, err.msg, cases[i].want);
        assert_int_equal(err.code, BH_EINVAL);
    }
}

static void test_missing_config(void **state)
{
    (void)state;
    struct sidecar_config c;
    struct bh_err err = {0};
    assert_int_equal(sidecar_config_parse(NULL, fake_env, &c, &err), -1);
    assert_string_equal(err.msg, "BOILERHOUSE_EGRESS_CONFIG is not set");
    sidecar_config_free(&c);
    assert_int_equal(sidecar_config_parse("[]", fake_env, &c, &err), -1);
    assert_non_null(strstr(err.msg, "must be an object"));
    sidecar_config_free(&c);
}

/* ---- the control endpoint's push ---- */

static void parse_good(struct sidecar_config *c)
{
    struct bh_err err = {0};
    assert_int_equal(sidecar_config_parse(GOOD, fake_env, c, &err), 0);
}

static void test_push_takes_every_tenant_header(void **state)
{
    (void)state;
    struct sidecar_config c;
    parse_good(&c);
    static const char body[] = "{\"headers\":[{\"domain\":\"api.example.com\",\"name\":\"x-"
                               "tenant\",\"value\":\"t1-key\"}]}";
    struct sidecar_values v;
    struct bh_err err = {0};
    assert_int_equal(sidecar_values_parse(body, strlen(body), &c, &v, &err), 0);
    assert_int_equal(v.n, 1);
    assert_string_equal(v.v[0], "t1-key");
    sidecar_values_free(&v);
    assert_null(v.v);
    sidecar_config_free(&c);
}

static void test_bad_push_names_what_is_wrong(void **state)
{
    (void)state;
    static const struct {
        const char *body, *want;
    } cases[] = {
        {"", "the body must be a JSON object"},
        {"{\"headers\":[", "the body must be a JSON object"},
        {"[]", "the body must be a JSON object"},
        {"{}", "headers: must be an array"},
        {"{\"headers\":[],\"tenant\":\"t\"}", "tenant: unknown field"},
        {"{\"headers\":[]}", "headers: api.example.com x-tenant is missing"},
        {"{\"headers\":[7]}", "headers[0]: must be an object"},
        {"{\"headers\":[{\"domain\":\"api.example.com\",\"name\":\"x-tenant\",\"value\":\"v\","
         "\"extra\":1}]}",
         "headers[0].extra: unknown field"},
        {"{\"headers\":[{\"domain\":\"api.example.com\",\"name\":\"x-tenant\",\"value\":5}]}",
         "headers[0]: domain, name and value must be strings"},
        {"{\"headers\":[{\"domain\":\"api.example.com\",\"name\":\"x-tenant\\r\\nx-evil: 1\","
         "\"value\":\"v\"}]}",
         "headers[0]: a control character in the domain or name"},
        {"{\"headers\":[{\"domain\":\"api.example.com\",\"name\":\"x-tenant\","
         "\"value\":\"v\\r\\nx-evil: 1\"}]}",
         "headers[0] (api.example.com x-tenant): a control character in the value"},
        {"{\"headers\":[{\"domain\":\"api.example.com\",\"name\":\"x-api-key\",\"value\":\"v\"}]}",
         "headers[0]: api.example.com x-api-key is not a tenantSecretKeyRef header"},
        {"{\"headers\":[{\"domain\":\"evil.example\",\"name\":\"x-tenant\",\"value\":\"v\"}]}",
         "headers[0]: evil.example x-tenant is not a tenantSecretKeyRef header"},
        {"{\"headers\":[{\"domain\":\"api.example.com\",\"name\":\"x-tenant\",\"value\":\"a\"},"
         "{\"domain\":\"api.example.com\",\"name\":\"x-tenant\",\"value\":\"b\"}]}",
         "headers[1]: api.example.com x-tenant given twice"},
    };
    struct sidecar_config c;
    parse_good(&c);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sidecar_values v = {.n = 99};
        struct bh_err err = {0};
        int rc = sidecar_values_parse(cases[i].body, strlen(cases[i].body), &c, &v, &err);
        if (rc != -1 || !strstr(err.msg, cases[i].want))
            fail_msg("case %zu: rc %d, \"%s\", want \"%s\"", i, rc, err.msg, cases[i].want);
        assert_int_equal(err.code, BH_EINVAL);
        assert_null(v.v); /* nothing taken */
    }
    sidecar_config_free(&c);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_token_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/bh-sidecar-token-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/token", dir);
    char *tok = NULL;
    struct bh_err err = {0};
    write_file(path, "0123456789abcdef0123456789abcdef\n");
    assert_int_equal(sidecar_token_read(path, &tok, &err), 0);
    assert_string_equal(tok, "0123456789abcdef0123456789abcdef");
    free(tok);
    static const char *const bad[] = {"short\n", "0123456789abcdef 0123456789abcdef\n", ""};
    for (size_t i = 0; i < 3; i++) {
        write_file(path, bad[i]);
        assert_int_equal(sidecar_token_read(path, &tok, &err), -1);
        assert_non_null(strstr(err.msg, "expected 32 to 4096 characters without whitespace"));
        assert_null(tok);
    }
    unlink(path);
    assert_int_equal(sidecar_token_read(path, &tok, &err), -1);
    assert_non_null(strstr(err.msg, "No such file"));
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parses_what_the_builder_writes),
        cmocka_unit_test(test_no_credentials),
        cmocka_unit_test(test_bad_config_names_the_field),
        cmocka_unit_test(test_missing_config),
        cmocka_unit_test(test_push_takes_every_tenant_header),
        cmocka_unit_test(test_bad_push_names_what_is_wrong),
        cmocka_unit_test(test_token_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
