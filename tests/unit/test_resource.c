#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "fs.h"
#include "mem.h"
#include "name.h"
#include "resource.h"

#define WORKLOAD_FULL                                                                              \
    "apiVersion: boilerhouse.dev/v1alpha1\n"                                                       \
    "kind: BoilerhouseWorkload\n"                                                                  \
    "metadata:\n"                                                                                  \
    "  name: web\n"                                                                                \
    "  labels: {team: a}\n"                                                                        \
    "spec:\n"                                                                                      \
    "  version: \"0.1.0\"\n"                                                                       \
    "  image: {ref: alpine:3.19}\n"                                                                \
    "  resources: {vcpus: 0.5, memoryMb: 128, diskGb: 1}\n"                                        \
    "  network:\n"                                                                                 \
    "    access: restricted\n"                                                                     \
    "    expose: [{guest: 8080, host: 18080}]\n"                                                   \
    "    allowlist: [api.example.com, '*.github.com']\n"                                           \
    "    websocket: /ws\n"                                                                         \
    "    credentials:\n"                                                                           \
    "      - domain: api.example.com\n"                                                            \
    "        headers:\n"                                                                           \
    "          - {name: X-Plain, value: v}\n"                                                      \
    "          - name: Authorization\n"                                                            \
    "            valueFrom: {secretKeyRef: {name: s, key: k}}\n"                                   \
    "          - name: X-Tenant\n"                                                                 \
    "            valueFrom: {tenantSecretKeyRef: {name: s, key: k}}\n"                             \
    "  filesystem: {overlayDirs: [/home/agent], encryptOverlays: true}\n"                          \
    "  idle: {timeoutSeconds: 300, watchDirs: [/home/agent]}\n"                                    \
    "  health:\n"                                                                                  \
    "    intervalSeconds: 5\n"                                                                     \
    "    unhealthyThreshold: 3\n"                                                                  \
    "    timeoutSeconds: 2\n"                                                                      \
    "    httpGet: {path: /healthz, port: 8080}\n"                                                  \
    "    exec: {command: [/bin/true]}\n"                                                           \
    "  entrypoint: {cmd: /bin/sh, args: [-c, run], env: {A: '1'}, workdir: /w}\n"                  \
    "  apiAccess: {scopes: [none]}\n"

#define WORKLOAD_MIN                                                                               \
    "{\"apiVersion\":\"boilerhouse.dev/v1alpha1\",\"kind\":\"BoilerhouseWorkload\","               \
    "\"metadata\":{\"name\":\"web\"},\"spec\":{\"version\":\"1\",\"image\":{\"ref\":\"a\"},"       \
    "\"resources\":{\"vcpus\":1,\"memoryMb\":64,\"diskGb\":0}}}"

#define POOL_MIN                                                                                   \
    "{\"apiVersion\":\"boilerhouse.dev/v1alpha1\",\"kind\":\"BoilerhousePool\","                   \
    "\"metadata\":{\"name\":\"p\"},\"spec\":{\"workloadRef\":\"web\",\"size\":0}}"

#define CLAIM_MIN                                                                                  \
    "{\"apiVersion\":\"boilerhouse.dev/v1alpha1\",\"kind\":\"BoilerhouseClaim\","                  \
    "\"metadata\":{\"name\":\"c\"},\"spec\":{\"tenantId\":\"alice\",\"workloadRef\":\"web\"}}"

#define TRIGGER_MIN                                                                                \
    "{\"apiVersion\":\"boilerhouse.dev/v1alpha1\",\"kind\":\"BoilerhouseTrigger\","                \
    "\"metadata\":{\"name\":\"t\"},\"spec\":{\"type\":\"cron\",\"workloadRef\":\"web\"}}"

static cJSON *parse_ok(const char *text)
{
    cJSON *o = NULL;
    struct bh_err err = {0};
    int rc = bh_resource_parse(text, strlen(text), &o, &err);
    if (rc < 0)
        fail_msg("parse: %s", err.msg);
    return o;
}

static void assert_valid(const char *text)
{
    cJSON *o = parse_ok(text);
    struct bh_err err = {0};
    if (bh_resource_validate(o, &err) < 0)
        fail_msg("validate: %s", err.msg);
    cJSON_Delete(o);
}

/* The object holding the last component of a dotted path (created as needed); *last owned. */
static cJSON *walk(cJSON *o, const char *path, char **last)
{
    bh_autofree char *copy = bh_xstrdup(path);
    char *save = NULL, *tok = strtok_r(copy, ".", &save), *next;
    while ((next = strtok_r(NULL, ".", &save))) {
        cJSON *c = cJSON_GetObjectItem(o, tok);
        if (!c)
            c = cJSON_AddObjectToObject(o, tok);
        o = c;
        tok = next;
    }
    *last = bh_xstrdup(tok);
    return o;
}

/* base with the value at path replaced (or removed, when value is NULL) must fail with message. */
struct invalid_case {
    const char *base;
    const char *path;  /* dotted path to set or remove */
    const char *value; /* JSON; NULL removes */
    const char *message;
};

static void check_case(const struct invalid_case *c)
{
    cJSON *o = parse_ok(c->base);
    bh_autofree char *last = NULL;
    cJSON *parent = walk(o, c->path, &last);
    cJSON_DeleteItemFromObject(parent, last);
    if (c->value)
        cJSON_AddItemToObject(parent, last, cJSON_Parse(c->value));
    struct bh_err err = {0};
    int rc = bh_resource_validate(o, &err);
    cJSON_Delete(o);
    if (rc == 0)
        fail_msg("%s=%s: accepted, expected \"%s\"", c->path, c->value, c->message);
    assert_int_equal(err.code, BH_EINVAL);
    if (strcmp(err.msg, c->message))
        fail_msg("%s=%s: got \"%s\", expected \"%s\"", c->path, c->value, err.msg, c->message);
}

static void test_valid_objects(void **state)
{
    assert_valid(WORKLOAD_FULL);
    assert_valid(WORKLOAD_MIN);
    assert_valid(POOL_MIN);
    assert_valid(CLAIM_MIN);
    assert_valid(TRIGGER_MIN);
    assert_valid("apiVersion: boilerhouse.dev/v1alpha1\nkind: BoilerhousePool\n"
                 "metadata: {name: p, namespace: default, uid: x, resourceVersion: '3',\n"
                 "  generation: 2, creationTimestamp: '2024-01-01T00:00:00Z',\n"
                 "  finalizers: [boilerhouse.dev/cleanup], annotations: {a: b}}\n"
                 "spec: {workloadRef: web, size: 2, maxFillConcurrency: 4}\n"
                 "status: {ready: 1, phase: Healthy}\n");
    assert_valid(
        "apiVersion: boilerhouse.dev/v1alpha1\nkind: BoilerhouseClaim\n"
        "metadata: {name: c}\nspec: {tenantId: A.b_c-1, workloadRef: web, resume: true}\n");
    assert_valid("apiVersion: boilerhouse.dev/v1alpha1\nkind: BoilerhouseTrigger\n"
                 "metadata: {name: t}\nspec:\n  type: telegram\n  workloadRef: web\n"
                 "  tenant: {from: chat_id, prefix: tg-}\n  driver: claude-code\n"
                 "  driverOptions: {gatewayToken: x, nested: {a: [1]}}\n"
                 "  guards: [{type: allowlist, config: {tenantIds: [a]}}, {type: api}]\n"
                 "  config: {botToken: x}\n");
}

static void test_defaults(void **state)
{
    cJSON *w = parse_ok(WORKLOAD_MIN);
    struct bh_err err;
    assert_int_equal(bh_resource_validate(w, &err), 0);
    cJSON *spec = cJSON_GetObjectItem(w, "spec");
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(spec, "network"), "access")->valuestring, "none");
    assert_null(cJSON_GetObjectItem(spec, "idle"));
    cJSON_AddItemToObject(spec, "idle", cJSON_Parse("{\"timeoutSeconds\":5}"));
    assert_int_equal(bh_resource_validate_spec("BoilerhouseWorkload", spec, &err), 0);
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(spec, "idle"), "action")->valuestring, "hibernate");
    cJSON_Delete(w);

    cJSON *p = parse_ok(POOL_MIN);
    assert_int_equal(bh_resource_validate(p, &err), 0);
    assert_int_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(p, "spec"), "maxFillConcurrency")->valueint, 2);
    cJSON_Delete(p);
}

static const struct invalid_case cases[] = {
    /* top level and metadata */
    {WORKLOAD_MIN, "apiVersion", "\"v1\"", "apiVersion: must be \"boilerhouse.dev/v1alpha1\""},
    {WORKLOAD_MIN, "apiVersion", NULL, "apiVersion: required"},
    {WORKLOAD_MIN, "kind", "\"Pod\"",
     "kind: must be one of: BoilerhouseWorkload, BoilerhousePool, BoilerhouseClaim, "
     "BoilerhouseTrigger"},
    {WORKLOAD_MIN, "extra", "1", "extra: unknown field"},
    {WORKLOAD_MIN, "spec", NULL, "spec: required"},
    {WORKLOAD_MIN, "status", "\"x\"", "status: must be an object"},
    {WORKLOAD_MIN, "metadata.name", NULL, "metadata.name: required"},
    {WORKLOAD_MIN, "metadata.name", "\"Web\"",
     "metadata.name: must be a DNS-1123 label (lowercase letters, digits and '-', at most 63 "
     "characters)"},
    {WORKLOAD_MIN, "metadata.name", "\"-web\"",
     "metadata.name: must be a DNS-1123 label (lowercase letters, digits and '-', at most 63 "
     "characters)"},
    {WORKLOAD_MIN, "metadata.generateName", "\"x\"", "metadata.generateName: unknown field"},
    {WORKLOAD_MIN, "metadata.labels", "{\"a\":1}", "metadata.labels.a: must be a string"},
    {WORKLOAD_MIN, "metadata.annotations", "[]", "metadata.annotations: must be an object"},
    /* workload */
    {WORKLOAD_MIN, "spec.foo", "1", "spec.foo: unknown field"},
    {WORKLOAD_MIN, "spec.version", NULL, "spec.version: required"},
    {WORKLOAD_MIN, "spec.version", "1", "spec.version: must be a string"},
    {WORKLOAD_MIN, "spec.image", "{}", "spec.image: exactly one of ref or dockerfile is required"},
    {WORKLOAD_MIN, "spec.image.dockerfile", "\"D\"",
     "spec.image: exactly one of ref or dockerfile is required"},
    {WORKLOAD_MIN, "spec.resources.vcpus", "0", "spec.resources.vcpus: must be greater than 0"},
    {WORKLOAD_MIN, "spec.resources.vcpus", "\"1\"", "spec.resources.vcpus: must be a number"},
    {WORKLOAD_MIN, "spec.resources.memoryMb", "1.5", "spec.resources.memoryMb: must be an integer"},
    {WORKLOAD_MIN, "spec.resources.memoryMb", "0",
     "spec.resources.memoryMb: must be greater than 0"},
    {WORKLOAD_MIN, "spec.resources.memoryMb", NULL, "spec.resources.memoryMb: required"},
    {WORKLOAD_MIN, "spec.resources.diskGb", "-1",
     "spec.resources.diskGb: must be greater than or equal to 0"},
    {WORKLOAD_MIN, "spec.resources.diskGb", "65537",
     "spec.resources.diskGb: must be less than or equal to 65536"},
    {WORKLOAD_MIN, "spec.network.access", "\"Open!\"",
     "spec.network.access: must be a DNS-1123 label (lowercase letters, digits and '-', at most "
     "63 characters)"},
    {WORKLOAD_MIN, "spec.network.expose", "[{\"guest\":0}]",
     "spec.network.expose[0].guest: must be greater than or equal to 1"},
    {WORKLOAD_MIN, "spec.network.expose", "[{\"guest\":80},{\"guest\":65536}]",
     "spec.network.expose[1].guest: must be less than or equal to 65535"},
    {WORKLOAD_MIN, "spec.network.expose", "[{\"host\":80}]",
     "spec.network.expose[0].guest: required"},
    {WORKLOAD_MIN, "spec.network.allowlist", "[\"ok.com\",\"bad host\"]",
     "spec.network.allowlist[1]: must be a hostname or a *.domain wildcard"},
    {WORKLOAD_MIN, "spec.network.allowlist", "[\"a.*.com\"]",
     "spec.network.allowlist[0]: must be a hostname or a *.domain wildcard"},
    {WORKLOAD_MIN, "spec.network.allowlist", "\"x.com\"",
     "spec.network.allowlist: must be an array"},
    {WORKLOAD_MIN, "spec.network.credentials",
     "[{\"domain\":\"a.com\",\"headers\":[{\"name\":\"A\",\"value\":\"v\"},{\"value\":\"v\"}]}]",
     "spec.network.credentials[0].headers[1].name: required"},
    {WORKLOAD_MIN, "spec.network.credentials",
     "[{\"domain\":\"a.com\",\"headers\":[{\"name\":\"A\"}]}]",
     "spec.network.credentials[0].headers[0]: exactly one of value or valueFrom is required"},
    {WORKLOAD_MIN, "spec.network.credentials",
     "[{\"domain\":\"a.com\",\"headers\":[{\"name\":\"A\",\"value\":\"v\","
     "\"valueFrom\":{\"secretKeyRef\":{\"name\":\"s\",\"key\":\"k\"}}}]}]",
     "spec.network.credentials[0].headers[0]: exactly one of value or valueFrom is required"},
    {WORKLOAD_MIN, "spec.network.credentials",
     "[{\"domain\":\"a.com\",\"headers\":[{\"name\":\"A\",\"valueFrom\":{}}]}]",
     "spec.network.credentials[0].headers[0].valueFrom: exactly one of secretKeyRef or "
     "tenantSecretKeyRef is required"},
    {WORKLOAD_MIN, "spec.network.credentials",
     "[{\"domain\":\"a.com\",\"headers\":[{\"name\":\"A\",\"valueFrom\":{\"secretKeyRef\":"
     "{\"name\":\"s\"}}}]}]",
     "spec.network.credentials[0].headers[0].valueFrom.secretKeyRef.key: required"},
    {WORKLOAD_MIN, "spec.network.credentials",
     "[{\"domain\":\"a.com\",\"headers\":[{\"name\":\"A\\r\\nB: c\",\"value\":\"v\"}]}]",
     "spec.network.credentials[0].headers[0].name: must be an HTTP header name"},
    {WORKLOAD_MIN, "spec.network.credentials",
     "[{\"domain\":\"a.com\",\"headers\":[{\"name\":\"A\",\"value\":\"v\\r\\nB: c\"}]}]",
     "spec.network.credentials[0].headers[0].value: must not contain line breaks"},
    {WORKLOAD_MIN, "spec.network.credentials", "[{\"headers\":[]}]",
     "spec.network.credentials[0].domain: required"},
    {WORKLOAD_MIN, "spec.filesystem.overlayDirs", "[\"home\"]",
     "spec.filesystem.overlayDirs[0]: must be an absolute path without '..'"},
    {WORKLOAD_MIN, "spec.filesystem.overlayDirs", "[\"/home/../etc\"]",
     "spec.filesystem.overlayDirs[0]: must be an absolute path without '..'"},
    {WORKLOAD_MIN, "spec.filesystem.encryptOverlays", "\"yes\"",
     "spec.filesystem.encryptOverlays: must be a boolean"},
    {WORKLOAD_MIN, "spec.idle.watchDirs", "[\"/a\",\"/b/..\"]",
     "spec.idle.watchDirs[1]: must be an absolute path without '..'"},
    {WORKLOAD_MIN, "spec.idle.timeoutSeconds", "-1",
     "spec.idle.timeoutSeconds: must be greater than or equal to 0"},
    {WORKLOAD_MIN, "spec.idle.action", "\"sleep\"",
     "spec.idle.action: must be one of: hibernate, destroy"},
    {WORKLOAD_MIN, "spec.health.httpGet", "{\"port\":70000}",
     "spec.health.httpGet.port: must be less than or equal to 65535"},
    {WORKLOAD_MIN, "spec.health.httpGet", "{\"path\":\"/\"}", "spec.health.httpGet.port: required"},
    {WORKLOAD_MIN, "spec.health.timeoutSeconds", "0",
     "spec.health.timeoutSeconds: must be greater than or equal to 1"},
    {WORKLOAD_MIN, "spec.health.exec", "{\"command\":[1]}",
     "spec.health.exec.command[0]: must be a string"},
    {WORKLOAD_MIN, "spec.entrypoint.env", "{\"A\":1}", "spec.entrypoint.env.A: must be a string"},
    {WORKLOAD_MIN, "spec.entrypoint.env", "{\"A=B\":\"1\"}",
     "spec.entrypoint.env.A=B: invalid environment variable name"},
    {WORKLOAD_MIN, "spec.apiAccess.scopes", "[true]", "spec.apiAccess.scopes[0]: must be a string"},
    /* pool */
    {POOL_MIN, "spec.size", "-1", "spec.size: must be greater than or equal to 0"},
    {POOL_MIN, "spec.size", NULL, "spec.size: required"},
    {POOL_MIN, "spec.maxFillConcurrency", "0",
     "spec.maxFillConcurrency: must be greater than or equal to 1"},
    {POOL_MIN, "spec.workloadRef", NULL, "spec.workloadRef: required"},
    /* claim */
    {CLAIM_MIN, "spec.tenantId", "\"../x\"",
     "spec.tenantId: must be 1-63 characters of [A-Za-z0-9._-], beginning and ending with a letter "
     "or digit"},
    {CLAIM_MIN, "spec.resume", "1", "spec.resume: must be a boolean"},
    {CLAIM_MIN, "spec.workloadRef", "\"a/b\"",
     "spec.workloadRef: must be a DNS-1123 label (lowercase letters, digits and '-', at most 63 "
     "characters)"},
    /* trigger */
    {TRIGGER_MIN, "spec.type", "\"email\"",
     "spec.type: must be one of: webhook, slack, telegram, cron"},
    {TRIGGER_MIN, "spec.tenant", "{\"prefix\":\"x\"}",
     "spec.tenant: one of static or from is required"},
    {TRIGGER_MIN, "spec.tenant", "{\"static\":\"..\"}",
     "spec.tenant.static: must be 1-63 characters of [A-Za-z0-9._-], beginning and ending with a "
     "letter or digit"},
    {TRIGGER_MIN, "spec.guards", "[{\"config\":{}}]", "spec.guards[0].type: required"},
    {TRIGGER_MIN, "spec.driverOptions", "[]", "spec.driverOptions: must be an object"},
    {TRIGGER_MIN, "spec.config", "\"x\"", "spec.config: must be an object"},
};

static void test_invalid_cases(void **state)
{
    for (size_t i = 0; i < BH_ARRAY_LEN(cases); i++)
        check_case(&cases[i]);
}

static void test_yaml_types(void **state)
{
    cJSON *o = parse_ok("a: 1\nb: '1'\nc: \"true\"\nd: true\ne: 1.5\nf: ~\ng: null\nh: 0x10\n"
                        "i: 0o17\nj: 007\nk: -3\nl: 1e3\nm: .inf\nn: hello world\no: False\n"
                        "p: !!str 12\nq:\n");
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(o, "a")));
    assert_string_equal(cJSON_GetObjectItem(o, "b")->valuestring, "1");
    assert_string_equal(cJSON_GetObjectItem(o, "c")->valuestring, "true");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(o, "d")));
    assert_true(cJSON_GetObjectItem(o, "e")->valuedouble == 1.5);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "f")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "g")));
    assert_int_equal(cJSON_GetObjectItem(o, "h")->valueint, 16);
    assert_int_equal(cJSON_GetObjectItem(o, "i")->valueint, 15);
    assert_int_equal(cJSON_GetObjectItem(o, "j")->valueint, 7);
    assert_int_equal(cJSON_GetObjectItem(o, "k")->valueint, -3);
    assert_int_equal(cJSON_GetObjectItem(o, "l")->valueint, 1000);
    assert_string_equal(cJSON_GetObjectItem(o, "m")->valuestring, ".inf");
    assert_string_equal(cJSON_GetObjectItem(o, "n")->valuestring, "hello world");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(o, "o")));
    assert_string_equal(cJSON_GetObjectItem(o, "p")->valuestring, "12");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "q")));
    cJSON_Delete(o);
}

static void expect_parse_error(const char *text, const char *needle)
{
    cJSON *o = NULL;
    struct bh_err err = {0};
    assert_int_equal(bh_resource_parse(text, strlen(text), &o, &err), -1);
    assert_int_equal(err.code, BH_EINVAL);
    if (!strstr(err.msg, needle))
        fail_msg("\"%s\" does not contain \"%s\"", err.msg, needle);
}

static void test_parse_errors(void **state)
{
    expect_parse_error("", "request body is empty");
    expect_parse_error("  \n\t", "request body is empty");
    expect_parse_error("# only a comment\n", "request body is empty");
    expect_parse_error("a: 1\nb: [1, 2\nc: 3\n", "invalid YAML at line 3, column 2");
    expect_parse_error("a: 1\n  b: 2\n", "line 2, column 4");
    expect_parse_error("a: &x 1\nb: *x\n", "anchors and aliases are not supported");
    expect_parse_error("a: 1\na: 2\n", "line 2, column 1: duplicate key \"a\"");
    expect_parse_error("? [a]\n: 1\n", "mapping keys must be scalars");
    expect_parse_error("a: 1\n---\nb: 2\n", "expected one YAML document, found 2");
    expect_parse_error("{\"a\": 1,}", "invalid JSON at line 1, column 9");
    expect_parse_error("{\"a\":\n 1} x", "invalid JSON at line 2, column 5");
    expect_parse_error("[1, 2", "invalid JSON");

    char deep[300];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    deep[200] = '\0';
    expect_parse_error(deep, "nested deeper than 64 levels");
    char ydeep[400] = "a: ";
    for (int i = 0; i < 70; i++)
        strcat(ydeep, "[");
    for (int i = 0; i < 70; i++)
        strcat(ydeep, "]");
    expect_parse_error(ydeep, "nested too deeply");
}

static void test_json_body_not_terminated(void **state)
{
    /* a body straight from the network has no terminating NUL */
    const char body[] = "{\"a\": 1}garbage";
    cJSON *o = NULL;
    struct bh_err err;
    assert_int_equal(bh_resource_parse(body, 8, &o, &err), 0);
    assert_int_equal(cJSON_GetObjectItem(o, "a")->valueint, 1);
    cJSON_Delete(o);
}

static void test_parse_all(void **state)
{
    const char *y = "---\na: 1\n---\n---\n# empty\n---\nb: 2\n...\n";
    cJSON *docs = NULL;
    struct bh_err err;
    assert_int_equal(bh_resource_parse_all(y, strlen(y), &docs, &err), 0);
    assert_int_equal(cJSON_GetArraySize(docs), 2);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(docs, 1), "b")->valueint, 2);
    cJSON_Delete(docs);
    assert_int_equal(bh_resource_parse_all("[{\"a\":1},{}]", 12, &docs, &err), 0);
    assert_int_equal(cJSON_GetArraySize(docs), 2);
    cJSON_Delete(docs);
    assert_int_equal(bh_resource_parse_all("{\"a\":1}", 7, &docs, &err), 0);
    assert_int_equal(cJSON_GetArraySize(docs), 1);
    cJSON_Delete(docs);
    assert_int_equal(bh_resource_parse_all("[1]", 3, &docs, &err), -1);
}

static void test_tenant_ids(void **state)
{
    static const char *const bad[] = {"../x", "",    ".", "..", "a;rm -rf /", "$(id)", "a b",
                                      "a/b",  "x\n", "-", "-a", "a.",         "_x"};
    for (size_t i = 0; i < BH_ARRAY_LEN(bad); i++)
        assert_false(bh_name_tenant_valid(bad[i]));
    char long_id[65];
    memset(long_id, 'a', 64);
    long_id[64] = '\0';
    assert_false(bh_name_tenant_valid(long_id));
    long_id[63] = '\0';
    assert_true(bh_name_tenant_valid(long_id));
    assert_false(bh_name_tenant_valid(NULL));
    assert_true(bh_name_tenant_valid("alice"));
    assert_true(bh_name_tenant_valid("A.b_c-1"));
    assert_true(bh_name_label_valid("web-1"));
    assert_false(bh_name_label_valid("web_1"));
}

/* claim-<tenant>-<workload> whenever the tenant is written as it is; else lower-cased with
 * a hash of the exact pair, so pairs that look alike never share a name. */
static void test_claim_names(void **state)
{
    bh_autofree char *plain = bh_name_claim("alice", "my-agent");
    assert_string_equal(plain, "claim-alice-my-agent");
    bh_autofree char *upper = bh_name_claim("Alice", "my-agent");
    bh_autofree char *dash = bh_name_claim("a-b", "c");
    bh_autofree char *other = bh_name_claim("a", "b-c");
    assert_string_equal(other, "claim-a-b-c");
    assert_string_not_equal(dash, other); /* "claim-a-b-c" twice would be one claim */
    assert_int_equal(strncmp(upper, "claim-alice-my-agent-", 21), 0);
    assert_int_equal(strlen(upper), 21 + 16);
    const char *odd[] = {"Alice", "a-b", "a.b", "a_b", "A.b_c-1", "x"};
    char long_id[64];
    memset(long_id, 'z', 63);
    long_id[63] = '\0';
    for (size_t i = 0; i < BH_ARRAY_LEN(odd); i++) {
        bh_autofree char *n = bh_name_claim(odd[i], "a-long-workload-name-that-goes-on");
        assert_true(bh_name_label_valid(n));
        bh_autofree char *l = bh_name_claim(long_id, odd[i][0] == 'x' ? "w" : "my-agent");
        assert_true(bh_name_label_valid(l));
    }
    bh_autofree char *a1 = bh_name_claim("A", "w"), *a2 = bh_name_claim("a", "w");
    assert_string_not_equal(a1, a2);
}

static void test_kind_names(void **state)
{
    assert_string_equal(bh_resource_plural("BoilerhouseClaim"), "boilerhouseclaims");
    assert_string_equal(bh_resource_short_name("BoilerhouseTrigger"), "bht");
    assert_string_equal(bh_resource_kind_for_plural("boilerhousepools"), "BoilerhousePool");
    assert_null(bh_resource_kind_for_plural("pods"));
    assert_null(bh_resource_spec_schema("Pod"));
}

/* ---- crds/ against the C tables --------------------------------------------------------- */

/* Keys that only the CRD has: documentation, and the CEL/pattern forms of checks that the C
 * side does in functions. */
static void strip_crd_only(cJSON *node)
{
    static const char *const keys[] = {"description", "x-kubernetes-validations", "pattern",
                                       "maxLength"};
    if (!cJSON_IsObject(node) && !cJSON_IsArray(node))
        return;
    for (size_t i = 0; cJSON_IsObject(node) && i < BH_ARRAY_LEN(keys); i++)
        cJSON_DeleteItemFromObjectCaseSensitive(node, keys[i]);
    cJSON *c;
    cJSON_ArrayForEach(c, node)
        strip_crd_only(c);
}

static cJSON *path_get(cJSON *o, const char *const *path)
{
    for (; o && *path; path++)
        o = cJSON_IsArray(o) ? cJSON_GetArrayItem(o, atoi(*path))
                             : cJSON_GetObjectItemCaseSensitive(o, *path);
    return o;
}

/* Every field of a CRD says what it is, its units and default: kubectl explain prints it
 * (local mode serves these descriptions too). metadata is the API server's to describe (a
 * CRD that does is refused). */
static void assert_described(const cJSON *schema, const char *path)
{
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(schema, "properties")) {
        bh_autofree char *child = bh_xasprintf("%s%s%s", path, *path ? "." : "", p->string);
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(p, "description");
        /* A CRD's metadata may say nothing but its type: the API server describes it. */
        if (!strcmp(child, "metadata"))
            continue;
        if (!cJSON_IsString(d) || strlen(d->valuestring) < 8)
            fail_msg("%s: no description", child);
        assert_described(p, child);
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(p, "items");
        if (items)
            assert_described(items, child);
    }
}

static void check_crd(const char *kind)
{
    bh_autofree char *path =
        bh_xasprintf("%s/crds/%s.boilerhouse.dev.yaml", BH_SOURCE_DIR, bh_resource_plural(kind));
    bh_autofree char *text = NULL;
    size_t len = 0;
    struct bh_err err;
    assert_int_equal(bh_fs_read_all(path, 1 << 20, &text, &len, &err), 0);
    cJSON *crd = parse_ok(text);
    assert_string_equal(cJSON_GetObjectItem(crd, "kind")->valuestring, "CustomResourceDefinition");
    static const char *const short_path[] = {"spec", "names", "shortNames", "0", NULL};
    static const char *const scope_path[] = {"spec", "scope", NULL};
    static const char *const status_path[] = {"spec",         "versions", "0",
                                              "subresources", "status",   NULL};
    static const char *const spec_path[] = {
        "spec", "versions", "0", "schema", "openAPIV3Schema", "properties", "spec", NULL};
    assert_string_equal(path_get(crd, short_path)->valuestring, bh_resource_short_name(kind));
    assert_string_equal(path_get(crd, scope_path)->valuestring, "Namespaced");
    assert_non_null(path_get(crd, status_path));
    static const char *const root_path[] = {"spec",   "versions",        "0",
                                            "schema", "openAPIV3Schema", NULL};
    assert_described(path_get(crd, root_path), "");
    cJSON *spec = path_get(crd, spec_path);
    assert_non_null(spec);
    strip_crd_only(spec);
    cJSON *want = bh_resource_spec_schema(kind);
    if (!cJSON_Compare(spec, want, 1)) {
        bh_autofree char *a = cJSON_Print(spec);
        bh_autofree char *b = cJSON_Print(want);
        fail_msg("%s: CRD spec schema differs from the C tables\nCRD: %s\nC: %s", kind, a, b);
    }
    cJSON_Delete(want);
    cJSON_Delete(crd);
}

static void test_crds_match_tables(void **state)
{
    check_crd("BoilerhouseWorkload");
    check_crd("BoilerhousePool");
    check_crd("BoilerhouseClaim");
    check_crd("BoilerhouseTrigger");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_objects),     cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_invalid_cases),     cmocka_unit_test(test_yaml_types),
        cmocka_unit_test(test_parse_errors),      cmocka_unit_test(test_json_body_not_terminated),
        cmocka_unit_test(test_parse_all),         cmocka_unit_test(test_tenant_ids),
        cmocka_unit_test(test_claim_names),       cmocka_unit_test(test_kind_names),
        cmocka_unit_test(test_crds_match_tables),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
