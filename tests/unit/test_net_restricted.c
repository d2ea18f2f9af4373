/* Drives the real bh-network-restricted.so (with its egress engine) against real namespaces:
 * a test bridge bhtr<pid%1000>, `unshare --net sleep` processes standing in for containers.
 * Wiring-level checks: environment, nft state after attach/detach, redirects reaching the
 * engine on the gateway, everything else dropped. Removes all it makes, even on failure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bh_test.h"
#include "fs.h"
#include "mem.h"
#include "net_test.h"
#include "plugin.h"
#include "proc.h"

#define GW "10.216.0.1"
#define NET_JSON "{\"access\":\"restricted\",\"allowlist\":[\"allowed.test\"]}"

struct rs_fixture {
    char dir[64];
    char bridge[16];
    char table[32];
    pid_t sleeper;
    pid_t server;
    struct bh_plugin *plugin;
};

static int teardown(void **state)
{
    struct rs_fixture *f = *state;
    if (!f)
        return 0;
    nt_reap(&f->sleeper);
    nt_reap(&f->server);
    bh_plugin_unload(f->plugin);
    nt_link_del(f->bridge);
    nt_nft_table_del("inet", f->table);
    nt_nft_table_del("bridge", f->table);
    struct bh_err err;
    if (f->dir[0])
        BH_IGNORE(bh_fs_rmtree(f->dir, &err)); /* teardown: best effort */
    free(f);
    *state = NULL;
    return 0;
}

static int setup(void **state)
{
    bh_autofree char *so = bh_xasprintf("%s/bh-network-restricted.so", BH_PLUGIN_DIR);
    struct rs_fixture *f = bh_xcalloc(1, sizeof(*f));
    *state = f;
    snprintf(f->bridge, sizeof(f->bridge), "bhtr%d", (int)(getpid() % 1000));
    snprintf(f->table, sizeof(f->table), "boilerhouse_%s", f->bridge);
    snprintf(f->dir, sizeof(f->dir), "/tmp/bh-test-rnet-XXXXXX");
    int ok = mkdtemp(f->dir) != NULL;
    if (!ok)
        f->dir[0] = '\0';
    ok = ok && (f->sleeper = nt_sleeper_start()) > 0;
    cJSON *cfg = cJSON_CreateObject();
    cJSON_AddStringToObject(cfg, "bridge", f->bridge);
    cJSON_AddStringToObject(cfg, "subnet", "10.216.0.0/24");
    cJSON_AddNumberToObject(cfg, "explicit_port", 13128);
    cJSON_AddNumberToObject(cfg, "http_port", 13129);
    cJSON_AddNumberToObject(cfg, "tls_port", 13130);
    cJSON_AddNumberToObject(cfg, "dns_port", 10053);
    struct bh_err err;
    if (ok && bh_plugin_load(&(struct bh_plugin_env){.state_dir = f->dir}, so, cfg, &f->plugin,
                             &err) < 0) {
        print_error("load: %s\n", err.msg);
        ok = 0;
    }
    cJSON_Delete(cfg);
    if (!ok)
        teardown(state);
    return ok ? 0 : -1;
}

static const struct bh_network_ops *ops_of(struct rs_fixture *f)
{
    return f->plugin->info->ops;
}

static void attach_ok(struct rs_fixture *f, const char *json, char ip[64])
{
    char netns[64];
    snprintf(netns, sizeof(netns), "/proc/%d/ns/net", (int)f->sleeper);
    struct bh_net_request req = {.size = sizeof(req),
                                 .instance_id = "inst-r",
                                 .workload = "w",
                                 .network_json = json,
                                 .netns_path = netns,
                                 .pid = f->sleeper};
    struct bh_net_result res = {.size = sizeof(res)};
    struct bh_err err;
    if (ops_of(f)->attach(f->plugin->state, &req, &res, &err) < 0)
        fail_msg("attach: %s", err.msg);
    memcpy(ip, res.host, 64);
}

static void detach_ok(struct rs_fixture *f)
{
    struct bh_net_request req = {.size = sizeof(req), .instance_id = "inst-r", .workload = "w"};
    struct bh_err err;
    if (ops_of(f)->detach(f->plugin->state, &req, &err) < 0)
        fail_msg("detach: %s", err.msg);
}

static char *nft_list(struct rs_fixture *f, const char *family)
{
    static char out[16384];
    const char *argv[] = {"nft", "list", "table", family, f->table, NULL};
    struct bh_err err;
    out[0] = '\0';
    if (bh_plugin_host_api()->run(NULL, argv, out, sizeof(out), &err) < 0)
        fail_msg("nft list: %s", err.msg);
    return out;
}

static void test_prepare_env(void **state)
{
    struct rs_fixture *f = *state;
    struct bh_net_request req = {
        .size = sizeof(req), .instance_id = "a", .workload = "w", .network_json = NET_JSON};
    struct bh_net_result res = {.size = sizeof(res)};
    struct bh_err err;
    assert_int_equal(ops_of(f)->prepare(f->plugin->state, &req, &res, &err), 0);
    assert_int_equal(res.flags, BH_NET_NEW_NETNS | BH_NET_RESOLVER);
    assert_string_equal(res.nameservers, GW);
    assert_non_null(strstr(res.env, "HTTP_PROXY=http://" GW ":13128\n"));
    assert_non_null(strstr(res.env, "https_proxy=http://" GW ":13128\n"));
    assert_non_null(strstr(res.env, "NO_PROXY=localhost,127.0.0.1\n"));
    assert_string_equal(res.ca_pem_path, "");
    req.network_json = "{\"credentials\":[{\"domain\":\"api.test\",\"headers\":"
                       "[{\"name\":\"x-api-key\",\"value\":\"k\"}]}]}";
    assert_int_equal(ops_of(f)->prepare(f->plugin->state, &req, &res, &err), 0);
    assert_true(res.ca_pem_path[0] && bh_fs_exists(res.ca_pem_path));
}

static void test_rules_follow_the_instance(void **state)
{
    struct rs_fixture *f = *state;
    char ip[64];
    assert_non_null(strstr(nft_list(f, "inet"), "dnat ip to " GW ":13129"));
    attach_ok(f, NET_JSON, ip);
    assert_string_equal(ip, "10.216.0.2");
    assert_non_null(strstr(nft_list(f, "bridge"), "10.216.0.2"));
    detach_ok(f);
    assert_null(strstr(nft_list(f, "bridge"), "10.216.0.2"));
    assert_false(nt_link_exists("bhv0ad80002"));
    detach_ok(f); /* idempotent */
}

static void test_traffic(void **state)
{
    struct rs_fixture *f = *state;
    char ip[64], netns[64];
    attach_ok(f, NET_JSON, ip);
    snprintf(netns, sizeof(netns), "--net=/proc/%d/ns/net", (int)f->sleeper);
    /* A host service on the gateway, arbitrary port: answers the host, not the instance. */
    bh_autofree char *doc = bh_xasprintf("%s", f->dir);
    bh_autofree char *index = bh_xasprintf("%s/index.html", f->dir);
    struct bh_err err;
    assert_int_equal(bh_fs_write_atomic(index, "ok\n", 3, 0644, &err), 0);
    f->server = nt_httpd(0, GW ":8081", doc);
    assert_true(nt_wait_http("http://" GW ":8081/"));
    assert_false(nt_http_ok(f->sleeper, "http://" GW ":8081/"));
    /* TCP 80 to anywhere lands on the engine, which refuses an IP literal with a 403. */
    const char *wget[] = {"nsenter", netns, "timeout", "2",         "busybox",
                          "wget",    "-q",  "-O",      "/dev/null", "http://198.51.100.7/",
                          NULL};
    assert_int_equal(bh_proc_check(wget, &err), -1);
    if (!strstr(err.msg, "403"))
        fail_msg("expected the engine's 403, got: %s", err.msg);
    /* DNS to anywhere lands on the filter: an answer (NXDOMAIN), not a timeout. */
    const char *dns[] = {"nsenter",  netns,         "timeout",      "3", "busybox",
                         "nslookup", "denied.test", "198.51.100.7", NULL};
    assert_int_equal(bh_proc_check(dns, &err), -1);
    if (strstr(err.msg, "timed out") || strstr(err.msg, "exited 124"))
        fail_msg("DNS was not redirected: %s", err.msg);
    detach_ok(f);
}

#define RS_TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    bh_autofree char *so = bh_xasprintf("%s/bh-network-restricted.so", BH_PLUGIN_DIR);
    if (geteuid() != 0)
        bh_test_skip_or_fail("needs root (namespaces, bridges, nftables)");
    if (!bh_fs_exists(so))
        bh_test_skip_or_fail("bh-network-restricted.so is not built (needs libssl-dev)");
    const struct CMUnitTest tests[] = {
        RS_TEST(test_prepare_env),
        RS_TEST(test_rules_follow_the_instance),
        RS_TEST(test_traffic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
