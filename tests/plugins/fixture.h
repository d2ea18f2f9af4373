/* Shared body of the loader's test plugins. A fixture defines the FX_* macros it wants to
 * differ from a well-formed network plugin, then includes this file; each .c becomes its
 * own .so, so every fixture carries a private copy. */
#include <boilerhouse/plugin.h>

#ifndef FX_SIZE
#define FX_SIZE sizeof(struct bh_plugin_info)
#endif
#ifndef FX_ABI_MAJOR
#define FX_ABI_MAJOR BH_PLUGIN_ABI_MAJOR
#endif
#ifndef FX_SIG
#define FX_SIG BH_PLUGIN_BUILD_SIG
#endif
#ifndef FX_NAME
#error "a fixture must define FX_NAME"
#endif

static const struct bh_host_api *fx_host;

/* Proves the host hands over validated config: the required key is always there. */
static int fx_init(void **state, const struct bh_config *cfg, struct bh_err *err)
{
    const char *greeting = fx_host->config_string(cfg, "greeting");
    if (!greeting)
        return fx_host->err_set(err, BH_EINVAL, "greeting missing despite the schema");
    fx_host->log(BH_LOG_DEBUG, FX_NAME, "init: greeting=%s", greeting);
    *state = (void *)greeting;
    return 0;
}

static int fx_prepare(void *state, const struct bh_net_request *req, struct bh_net_result *res,
                      struct bh_err *err)
{
    res->flags = BH_NET_NEW_NETNS;
    return 0;
}

static const struct bh_config_field fx_schema[] = {
    {"greeting", BH_CFG_STRING, 1, NULL, "required text"},
    {"retries", BH_CFG_INT, 0, "3", "an int with a default"},
    {"verbose", BH_CFG_BOOL, 0, "false", "a bool with a default"},
};

static const struct bh_network_ops fx_ops = {
    .size = sizeof(struct bh_network_ops),
    .init = fx_init,
    .prepare = fx_prepare,
};

static const struct bh_plugin_info fx_info = {
    .size = FX_SIZE,
    .abi_major = FX_ABI_MAJOR,
    .abi_minor = BH_PLUGIN_ABI_MINOR,
    .build_sig = FX_SIG,
    .kind = BH_PLUGIN_NETWORK,
    .name = FX_NAME,
    .version = "0.0.1",
    .config_schema = fx_schema,
    .n_config = sizeof(fx_schema) / sizeof(fx_schema[0]),
    .ops = &fx_ops,
};

BH_PLUGIN_EXPORT const struct bh_plugin_info *bh_plugin_entry(const struct bh_host_api *host)
{
    fx_host = host;
    return &fx_info;
}
