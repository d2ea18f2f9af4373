/* Network mode `none`: the instance gets a fresh network namespace with only loopback, and
 * talks to the host through unix sockets in a per-instance directory that the host creates
 * and bind-mounts at /run/boilerhouse. Nothing to wire, so attach and detach do nothing. */
#include <boilerhouse/plugin.h>

static int none_prepare(void *state, const struct bh_net_request *req, struct bh_net_result *res,
                        struct bh_err *err)
{
    res->flags = BH_NET_SOCKET_DIR | BH_NET_NEW_NETNS;
    res->env[0] = '\0';
    /* No resolver at all: a lookup fails at once instead of waiting for a timeout. */
    if (BH_HAS_FIELD(res, struct bh_net_result, nameservers)) {
        res->flags |= BH_NET_RESOLVER;
        res->nameservers[0] = '\0';
    }
    return 0;
}

static int none_attach(void *state, const struct bh_net_request *req, struct bh_net_result *res,
                       struct bh_err *err)
{
    res->host[0] = '\0';
    return 0;
}

static int none_detach(void *state, const struct bh_net_request *req, struct bh_err *err)
{
    return 0;
}

static const struct bh_network_ops none_ops = {
    .size = sizeof(struct bh_network_ops),
    .prepare = none_prepare,
    .attach = none_attach,
    .detach = none_detach,
};

static const struct bh_plugin_info none_info = {
    .size = sizeof(struct bh_plugin_info),
    .abi_major = BH_PLUGIN_ABI_MAJOR,
    .abi_minor = BH_PLUGIN_ABI_MINOR,
    .build_sig = BH_PLUGIN_BUILD_SIG,
    .kind = BH_PLUGIN_NETWORK,
    .flags = BH_PLUGIN_THREADSAFE, /* no state */
    .name = "none",
    .version = "0.1.0",
    .field_size = sizeof(struct bh_config_field),
    .serves = "none", /* no other key of spec.network: nothing to expose or filter */
    .ops = &none_ops,
};

BH_PLUGIN_EXPORT const struct bh_plugin_info *bh_plugin_entry(const struct bh_host_api *host)
{
    return &none_info;
}
