#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "mem.h"
#include "plugin.h"

static void test_none_asks_for_netns_and_socket_dir(void **state)
{
    bh_autofree char *path = bh_xasprintf("%s/bh-network-none.so", BH_PLUGIN_DIR);
    struct bh_plugin *p = NULL;
    struct bh_err err;
    if (bh_plugin_load(NULL, path, NULL, &p, &err) < 0)
        fail_msg("%s", err.msg);
    const struct bh_network_ops *ops = p->info->ops;
    struct bh_net_request req = {.size = sizeof(req),
                                 .instance_id = "i1",
                                 .workload = "w",
                                 .network_json = "{}",
                                 .netns_path = "/proc/1/ns/net",
                                 .pid = 1};
    struct bh_net_result res;
    memset(&res, 'x', sizeof(res));
    res.size = sizeof(res);
    assert_int_equal(ops->prepare(p->state, &req, &res, &err), 0);
    assert_int_equal(res.flags, BH_NET_SOCKET_DIR | BH_NET_NEW_NETNS | BH_NET_RESOLVER);
    assert_string_equal(res.env, "");
    assert_string_equal(res.nameservers, "");
    assert_int_equal(ops->attach(p->state, &req, &res, &err), 0);
    assert_string_equal(res.host, "");
    assert_int_equal(ops->detach(p->state, &req, &err), 0);
    assert_int_equal(ops->detach(p->state, &req, &err), 0);
    bh_plugin_unload(p);
}

static void test_none_takes_no_config(void **state)
{
    bh_autofree char *path = bh_xasprintf("%s/bh-network-none.so", BH_PLUGIN_DIR);
    cJSON *cfg = cJSON_Parse("{\"bridge\": \"bh0\"}");
    struct bh_plugin *p = NULL;
    struct bh_err err;
    assert_int_equal(bh_plugin_load(NULL, path, cfg, &p, &err), -1);
    assert_non_null(strstr(err.msg, "unknown config key \"bridge\""));
    cJSON_Delete(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_none_asks_for_netns_and_socket_dir),
        cmocka_unit_test(test_none_takes_no_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
