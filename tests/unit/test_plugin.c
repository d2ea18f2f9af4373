#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "plugin.h"

static const struct bh_plugin_env test_env = {.state_dir = "/tmp/bh-state"};

static char *fixture(const char *file)
{
    return bh_xasprintf("%s/%s", BH_TEST_PLUGIN_DIR, file);
}

/* Loads a fixture with config given as JSON text; returns the load result. */
static int load_with(const char *file, const char *config_json, struct bh_plugin **p,
                     struct bh_err *err)
{
    bh_autofree char *path = fixture(file);
    cJSON *cfg = config_json ? cJSON_Parse(config_json) : NULL;
    if (config_json)
        assert_non_null(cfg);
    int rc = bh_plugin_load(&test_env, path, cfg, p, err);
    cJSON_Delete(cfg);
    return rc;
}

static void assert_refused(const char *file, const char *config_json, const char *reason)
{
    bh_autofree char *path = fixture(file);
    struct bh_plugin *p = NULL;
    struct bh_err err;
    assert_int_equal(load_with(file, config_json, &p, &err), -1);
    assert_null(p);
    if (strncmp(err.msg, path, strlen(path)) != 0 || !strstr(err.msg, reason))
        fail_msg("want \"%s: ...%s...\", got \"%s\"", path, reason, err.msg);
}

static void test_good_loads_with_defaults(void **state)
{
    const struct bh_host_api *host = bh_plugin_host_api();
    struct bh_plugin *p = NULL;
    struct bh_err err;
    int rc = load_with("bh-network-good.so", "{\"greeting\": \"hi\"}", &p, &err);
    if (rc < 0)
        fail_msg("%s", err.msg);
    assert_string_equal(p->info->name, "good");
    assert_string_equal(host->config_string(p->handle, "greeting"), "hi");
    assert_int_equal(host->config_int(p->handle, "retries"), 3);
    assert_int_equal(host->config_bool(p->handle, "verbose"), 0);
    assert_null(host->config_string(p->handle, "undeclared"));
    const struct bh_network_ops *ops = p->info->ops;
    struct bh_net_result res = {.size = sizeof(res)};
    assert_int_equal(ops->prepare(p->state, NULL, &res, &err), 0);
    assert_int_equal(res.flags, BH_NET_NEW_NETNS);
    bh_plugin_unload(p);
}

static void test_given_config_overrides_defaults(void **state)
{
    const struct bh_host_api *host = bh_plugin_host_api();
    struct bh_plugin *p = NULL;
    struct bh_err err;
    const char *cfg = "{\"greeting\": \"yo\", \"retries\": 7, \"verbose\": true}";
    assert_int_equal(load_with("bh-network-good.so", cfg, &p, &err), 0);
    assert_int_equal(host->config_int(p->handle, "retries"), 7);
    assert_int_equal(host->config_bool(p->handle, "verbose"), 1);
    bh_plugin_unload(p);
}

static void test_bad_plugins_refused(void **state)
{
    assert_refused("bh-network-badabi.so", NULL, "ABI major 3, daemon supports 2");
    assert_refused("bh-network-badsig.so", NULL, "build signature \"bh-abi-1-ptr4-1234\"");
    assert_refused("bh-network-small.so", NULL, "info size");
    assert_refused("bh-network-mismatch.so", NULL, "the file must be bh-network-other.so");
    assert_refused("bh-network-noentry.so", NULL, "no bh_plugin_entry symbol");
    assert_refused("bh-network-absent.so", NULL, "dlopen");
}

static void test_bad_config_refused(void **state)
{
    const char *good = "bh-network-good.so";
    assert_refused(good, "{\"greeting\": \"hi\", \"colour\": 1}", "unknown config key \"colour\"");
    assert_refused(good, NULL, "missing required config key \"greeting\"");
    assert_refused(good, "{}", "missing required config key \"greeting\"");
    /* Not set up at all (no config object) is not a mistake in one: the loader says so at
     * info level; an object without the key is a mistake. */
    struct bh_plugin *none = NULL;
    struct bh_err nerr;
    assert_int_equal(load_with(good, NULL, &none, &nerr), -1);
    assert_int_equal(nerr.code, BH_EUNAVAIL);
    assert_int_equal(load_with(good, "{}", &none, &nerr), -1);
    assert_int_equal(nerr.code, BH_EINVAL);
    assert_refused(good, "{\"greeting\": 5}", "\"greeting\" must be a string");
    assert_refused(good, "{\"greeting\": \"hi\", \"retries\": \"3\"}",
                   "\"retries\" must be an int");
    assert_refused(good, "{\"greeting\": \"hi\", \"retries\": 1.5}", "\"retries\" must be an int");
    assert_refused(good, "{\"greeting\": \"hi\", \"verbose\": 1}", "\"verbose\" must be a bool");
    assert_refused(good, "[1]", "config must be an object");
    assert_refused(good, "{\"greeting\": \"a\", \"greeting\": \"b\"}", "\"greeting\" given twice");
}

static void test_load_dir_loads_good_lists_refusals(void **state)
{
    struct bh_plugins *ps = NULL;
    struct bh_err err;
    cJSON *cfg = cJSON_Parse("{\"network/good\": {\"greeting\": \"hi\"}}");
    assert_int_equal(bh_plugins_load_dir(&test_env, BH_TEST_PLUGIN_DIR, cfg, &ps, &err), 0);
    cJSON_Delete(cfg);
    assert_non_null(bh_plugins_find(ps, BH_PLUGIN_NETWORK, "good"));
    assert_null(bh_plugins_find(ps, BH_PLUGIN_NETWORK, "badabi"));
    assert_null(bh_plugins_find(ps, BH_PLUGIN_STORAGE, "good"));
    cJSON *d = bh_plugins_describe(ps);
    cJSON *loaded = cJSON_GetObjectItem(d, "loaded"), *refused = cJSON_GetObjectItem(d, "refused");
    assert_int_equal(cJSON_GetArraySize(loaded), 1);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(loaded, 0), "kind")->valuestring,
                        "network");
    assert_int_equal(cJSON_GetArraySize(refused), 5);
    /* Sorted by file name: badabi comes first. */
    const char *first = cJSON_GetObjectItem(cJSON_GetArrayItem(refused, 0), "error")->valuestring;
    assert_non_null(strstr(first, "bh-network-badabi.so: ABI major 3"));
    cJSON_Delete(d);
    bh_plugins_free(ps);
}

static void test_load_dir_missing_dir_fails(void **state)
{
    struct bh_plugins *ps = NULL;
    struct bh_err err;
    assert_int_equal(bh_plugins_load_dir(&test_env, "/nonexistent/bh-plugins", NULL, &ps, &err),
                     -1);
    assert_non_null(strstr(err.msg, "/nonexistent/bh-plugins"));
}

static void test_host_run_and_state_dir(void **state)
{
    const struct bh_host_api *host = bh_plugin_host_api();
    struct bh_plugin *p = NULL;
    struct bh_err err;
    assert_int_equal(load_with("bh-network-good.so", "{\"greeting\": \"hi\"}", &p, &err), 0);
    struct bh_plugin_handle *h = p->handle;
    char out[8];
    const char *echo[] = {"echo", "hello world", NULL};
    assert_int_equal(host->run(h, echo, out, sizeof(out), &err), 0);
    assert_string_equal(out, "hello w");
    const char *fail[] = {"sh", "-c", "echo no such thing >&2; exit 2", NULL};
    assert_int_equal(host->run(h, fail, NULL, 0, &err), -1);
    assert_int_equal(err.code, BH_EIO);
    assert_non_null(strstr(err.msg, "exited 2: no such thing"));
    assert_int_equal(host->err_set(h, &err, BH_ECONFLICT, "taken %d", 4), -1);
    assert_int_equal(err.code, BH_ECONFLICT);
    assert_string_equal(err.msg, "taken 4");
    /* The instance's own directory, not the daemon's. */
    assert_string_equal(host->state_dir(h), "/tmp/bh-state/net/good");
    /* No secret store lent: a clean error, nothing for the plugin to free. */
    char *secret = NULL;
    assert_int_equal(host->secret_get(h, "s", "k", NULL, &secret, &err), -1);
    assert_int_equal(err.code, BH_EUNAVAIL);
    assert_null(secret);
    host->free(h, NULL);
    bh_plugin_unload(p);
}

/* Built against an older minor: its ops end after detach, so bind_tenant reads as absent. */
static void test_older_minor_loads_optional_ops_absent(void **state)
{
    bh_autofree char *path = bh_xasprintf("%s/minor/bh-network-older.so", BH_TEST_PLUGIN_DIR);
    cJSON *cfg = cJSON_Parse("{\"greeting\": \"hi\"}");
    struct bh_plugin *p = NULL, *good = NULL;
    struct bh_err err;
    if (bh_plugin_load(&test_env, path, cfg, &p, &err) < 0)
        fail_msg("%s", err.msg);
    cJSON_Delete(cfg);
    const struct bh_network_ops *ops = p->info->ops;
    assert_int_equal(ops->size, offsetof(struct bh_network_ops, bind_tenant));
    assert_false(BH_HAS_OP(ops, struct bh_network_ops, bind_tenant));
    struct bh_net_result res = {.size = sizeof(res)};
    assert_int_equal(BH_PLUGIN_CALL(p, ops->prepare(p->state, NULL, &res, &err)), 0);
    assert_int_equal(res.flags, BH_NET_NEW_NETNS);
    /* The same check on a current plugin sees the op. */
    assert_int_equal(load_with("bh-network-good.so", "{\"greeting\": \"hi\"}", &good, &err), 0);
    const struct bh_network_ops *gops = good->info->ops;
    assert_true(BH_HAS_OP(gops, struct bh_network_ops, bind_tenant));
    bh_plugin_unload(good);
    bh_plugin_unload(p);
}

static int serial_failures;

static void *serial_worker(void *arg)
{
    struct bh_plugin *p = arg;
    const struct bh_network_ops *ops = p->info->ops;
    struct bh_net_result res = {.size = sizeof(res)};
    struct bh_err err;
    for (int i = 0; i < 10; i++)
        if (BH_PLUGIN_CALL(p, ops->prepare(p->state, NULL, &res, &err)) < 0)
            __atomic_add_fetch(&serial_failures, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

/* The fixture is not BH_PLUGIN_THREADSAFE: concurrent callers must reach it one at a time
 * (its prepare fails when another call is inside). */
static void test_calls_serialised_without_threadsafe_flag(void **state)
{
    struct bh_plugin *p = NULL;
    struct bh_err err;
    assert_int_equal(load_with("bh-network-good.so", "{\"greeting\": \"hi\"}", &p, &err), 0);
    assert_false(p->info->flags & BH_PLUGIN_THREADSAFE);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, serial_worker, p), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(serial_failures, 0);
    bh_plugin_unload(p);
}

static cJSON *workload_with_network(const char *network_json)
{
    cJSON *obj = cJSON_Parse("{\"kind\": \"BoilerhouseWorkload\", \"spec\": {}}");
    cJSON_AddItemToObject(cJSON_GetObjectItem(obj, "spec"), "network", cJSON_Parse(network_json));
    return obj;
}

static void assert_workload(struct bh_plugins *ps, const char *network_json, const char *want)
{
    cJSON *obj = workload_with_network(network_json);
    struct bh_err err;
    int rc = bh_plugins_check_resource(ps, obj, &err);
    cJSON_Delete(obj);
    if (!want && rc < 0)
        fail_msg("%s: %s", network_json, err.msg);
    if (want && (rc == 0 || !strstr(err.msg, want)))
        fail_msg("%s: want \"%s\", got \"%s\"", network_json, want, rc == 0 ? "ok" : err.msg);
}

/* Workloads are checked against what the loaded network plugins serve. */
static void test_workload_checked_against_served_values(void **state)
{
    struct bh_plugins *ps = NULL;
    struct bh_err err;
    cJSON *cfg = cJSON_Parse("{\"network/good\": {\"greeting\": \"hi\"}}");
    assert_int_equal(bh_plugins_load_dir(&test_env, BH_TEST_PLUGIN_DIR, cfg, &ps, &err), 0);
    cJSON_Delete(cfg);
    assert_workload(ps, "{\"access\": \"good\"}", NULL);
    assert_workload(ps, "{\"access\": \"good\", \"allowlist\": [], \"websocket\": \"/ws\"}", NULL);
    assert_workload(ps, "{\"access\": \"open\"}", "spec.network.access: must be one of: good");
    assert_workload(ps, "{}", "spec.network.access: must be one of: good");
    assert_workload(ps, "{\"access\": \"good\", \"allowlist\": \"x\"}",
                    "spec.network.allowlist: must be a list");
    assert_workload(ps, "{\"access\": \"good\", \"expose\": []}",
                    "spec.network.expose: not used by access good");
    cJSON *pool = cJSON_Parse("{\"kind\": \"BoilerhousePool\", \"spec\": {}}");
    assert_int_equal(bh_plugins_check_resource(ps, pool, &err), 0);
    cJSON_Delete(pool);
    bh_plugins_free(ps);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_loads_with_defaults),
        cmocka_unit_test(test_given_config_overrides_defaults),
        cmocka_unit_test(test_bad_plugins_refused),
        cmocka_unit_test(test_bad_config_refused),
        cmocka_unit_test(test_load_dir_loads_good_lists_refusals),
        cmocka_unit_test(test_load_dir_missing_dir_fails),
        cmocka_unit_test(test_host_run_and_state_dir),
        cmocka_unit_test(test_older_minor_loads_optional_ops_absent),
        cmocka_unit_test(test_calls_serialised_without_threadsafe_flag),
        cmocka_unit_test(test_workload_checked_against_served_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
