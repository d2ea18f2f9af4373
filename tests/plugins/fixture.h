/* Shared body of the loader's test plugins. A fixture defines the FX_* macros it wants to
 * differ from a well-formed network plugin, then includes this file; each .c becomes its
 * own .so, so every fixture carries a private copy. */
#include <boilerhouse/plugin.h>
#include <unistd.h>

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
/* The ops table's type; a fixture built against an older minor names its own shorter one. */
#ifndef FX_OPS_TYPE
#define FX_OPS_TYPE struct bh_network_ops
#endif

static const struct bh_host_api *fx_host;

/* The state proves what the host handed over: validated config, the instance's handle. */
struct fx_state {
    struct bh_plugin_handle *h;
    const char *greeting;
    int inside; /* calls in prepare right now: > 1 means the host did not serialise */
};

static struct fx_state fx_state;

static int fx_init(struct bh_plugin_handle *h, void **state, struct bh_err *err)
{
    const char *greeting = fx_host->config_string(h, "greeting");
    if (!greeting)
        return fx_host->err_set(h, err, BH_EINVAL, "greeting missing despite the schema");
    fx_host->log(h, BH_LOG_DEBUG, "init: greeting=%s", greeting);
    fx_state = (struct fx_state){.h = h, .greeting = greeting};
    *state = &fx_state;
    return 0;
}

/* Slow on purpose; fails if another call is inside it at the same time. */
static int fx_prepare(void *state, const struct bh_net_request *req, struct bh_net_result *res,
                      struct bh_err *err)
{
    struct fx_state *s = state;
    int overlap = __atomic_add_fetch(&s->inside, 1, __ATOMIC_SEQ_CST) > 1;
    usleep(2000);
    __atomic_sub_fetch(&s->inside, 1, __ATOMIC_SEQ_CST);
    res->flags = BH_NET_NEW_NETNS;
    return overlap ? fx_host->err_set(s->h, err, BH_ECONFLICT, "overlapping calls") : 0;
}

static int fx_attach(void *state, const struct bh_net_request *req, struct bh_net_result *res,
                     struct bh_err *err)
{
    return 0;
}

static int fx_detach(void *state, const struct bh_net_request *req, struct bh_err *err)
{
    return 0;
}

#ifndef FX_NO_BIND_TENANT
static int fx_bind_tenant(void *state, const struct bh_net_request *req, struct bh_err *err)
{
    return 0;
}
#endif

static const struct bh_config_field fx_schema[] = {
    {"greeting", BH_CFG_STRING, 1, NULL, "required text"},
    {"retries", BH_CFG_INT, 0, "3", "an int with a default"},
    {"verbose", BH_CFG_BOOL, 0, "false", "a bool with a default"},
};

/* spec.network keys a workload with access FX_NAME may give. */
static const struct bh_config_field fx_serves[] = {
    {"allowlist", BH_CFG_LIST, 0, NULL, "a list"},
};

static const FX_OPS_TYPE fx_ops = {
    .size = sizeof(FX_OPS_TYPE),
    .init = fx_init,
    .prepare = fx_prepare,
    .attach = fx_attach,
    .detach = fx_detach,
#ifndef FX_NO_BIND_TENANT
    .bind_tenant = fx_bind_tenant,
#endif
};

static const struct bh_plugin_info fx_info = {
    .size = FX_SIZE,
    .abi_major = FX_ABI_MAJOR,
    .abi_minor = BH_PLUGIN_ABI_MINOR,
    .build_sig = FX_SIG,
    .kind = BH_PLUGIN_NETWORK,
    .name = FX_NAME,
    .version = "0.0.1",
    .field_size = sizeof(struct bh_config_field),
    .config_schema = fx_schema,
    .n_config = sizeof(fx_schema) / sizeof(fx_schema[0]),
    .serves = FX_NAME,
    .serves_schema = fx_serves,
    .n_serves_schema = sizeof(fx_serves) / sizeof(fx_serves[0]),
    .ops = &fx_ops,
};

BH_PLUGIN_EXPORT const struct bh_plugin_info *bh_plugin_entry(const struct bh_host_api *host)
{
    fx_host = host;
    return &fx_info;
}
