/* An out-of-tree network plugin: serves spec.network.access "example" and behaves like the
 * shipped `none` (a fresh network namespace with loopback only, a socket dir for the host).
 * Built with only the installed SDK header (pkg-config boilerhouse-plugin). */
#include <boilerhouse/plugin.h>

static int ex_prepare(void *state, const struct bh_net_request *req, struct bh_net_result *res,
                      struct bh_err *err)
{
    res->flags = BH_NET_SOCKET_DIR | BH_NET_NEW_NETNS;
    res->env[0] = '\0';
    return 0;
}

static int ex_attach(void *state, const struct bh_net_request *req, struct bh_net_result *res,
                     struct bh_err *err)
{
    res->host[0] = '\0';
    return 0;
}

static int ex_detach(void *state, const struct bh_net_request *req, struct bh_err *err)
{
    return 0;
}

static const struct bh_network_ops ex_ops = {
    .size = sizeof(struct bh_network_ops),
    .prepare = ex_prepare,
    .attach = ex_attach,
    .detach = ex_detach,
};

static const struct bh_plugin_info ex_info = {
    .size = sizeof(struct bh_plugin_info),
    .abi_major = BH_PLUGIN_ABI_MAJOR,
    .abi_minor = BH_PLUGIN_ABI_MINOR,
    .build_sig = BH_PLUGIN_BUILD_SIG,
    .kind = BH_PLUGIN_NETWORK,
    .flags = BH_PLUGIN_THREADSAFE, /* no state */
    .name = "example",
    .version = "0.1.0",
    .field_size = sizeof(struct bh_config_field),
    .serves = "example",
    .ops = &ex_ops,
};

BH_PLUGIN_EXPORT const struct bh_plugin_info *bh_plugin_entry(const struct bh_host_api *host)
{
    return &ex_info;
}
