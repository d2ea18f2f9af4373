/* The network plugin of the controller tests, loaded as bh-network-none.so: no namespace to
 * wire (the fake runtime has none), an address so claims report an endpoint. Stateless, so
 * the ABI is all it depends on. */
#include <boilerhouse/plugin.h>
#include <stdio.h>

static int fk_prepare(void *state, const struct bh_net_request *req, struct bh_net_result *res,
                      struct bh_err *err)
{
    res->flags = 0;
    return 0;
}

static int fk_attach(void *state, const struct bh_net_request *req, struct bh_net_result *res,
                     struct bh_err *err)
{
    snprintf(res->host, sizeof(res->host), "10.0.0.1");
    return 0;
}

static int fk_detach(void *state, const struct bh_net_request *req, struct bh_err *err)
{
    return 0;
}

static const struct bh_network_ops fk_ops = {
    .size = sizeof(struct bh_network_ops),
    .prepare = fk_prepare,
    .attach = fk_attach,
    .detach = fk_detach,
};

static const struct bh_plugin_info fk_info = {
    .size = sizeof(struct bh_plugin_info),
    .abi_major = BH_PLUGIN_ABI_MAJOR,
    .abi_minor = BH_PLUGIN_ABI_MINOR,
    .build_sig = BH_PLUGIN_BUILD_SIG,
    .kind = BH_PLUGIN_NETWORK,
    .flags = BH_PLUGIN_THREADSAFE, /* no state */
    .name = "none",
    .version = "0.0.1",
    .field_size = sizeof(struct bh_config_field),
    .serves = "none",
    .ops = &fk_ops,
};

BH_PLUGIN_EXPORT const struct bh_plugin_info *bh_plugin_entry(const struct bh_host_api *host)
{
    return &fk_info;
}
