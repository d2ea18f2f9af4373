/* Network mode `unrestricted`: each instance gets its own network namespace joined to a host
 * bridge by a veth pair, with an address leased from the configured subnet, and reaches the
 * internet through NAT (masquerade to whatever interface routes the destination). Refused
 * (nftables table `inet boilerhouse_<bridge>`):
 *  - the host itself: nothing arriving from the bridge is delivered locally unless it belongs
 *    to a connection the host opened (health checks), so neither the gateway address nor any
 *    other host address exposes host services;
 *  - link-local 169.254.0.0/16 (cloud metadata) and every host address, when forwarded;
 *  - other instances, whatever their tenant: nothing new is forwarded into the bridge, and
 *    its ports are isolated (each bridged plugin's table guards its own bridge the same way);
 *  - spoofed source addresses (the bridge table, see common/bridge.h).
 * All commands go through host->run: argv, never a shell. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/bridge.h"

#define UR_NAME "unrestricted"

struct ur_state {
    struct bhn_bridge b;
};

static int ur_tables(const struct bhn_bridge *b, struct bh_err *err)
{
    char addrs[4096], body[8192];
    if (bhn_host_addrs(addrs, sizeof(addrs), err) < 0)
        return -1;
    const char *br = b->bridge;
    snprintf(body, sizeof(body),
             "  set host_addrs {\n    type ipv4_addr; flags interval; auto-merge\n"
             "    elements = { 169.254.0.0/16%s%s }\n  }\n"
             "  chain input {\n"
             "    type filter hook input priority filter - 10; policy accept;\n"
             "    iifname \"%s\" ct state established,related accept\n"
             "    iifname \"%s\" drop\n  }\n"
             "  chain forward {\n"
             "    type filter hook forward priority filter - 10; policy accept;\n"
             "    iifname \"%s\" ip daddr @host_addrs drop\n"
             "    iifname \"%s\" meta nfproto ipv6 drop\n"
             "    oifname \"%s\" ct status dnat accept\n"
             "    oifname \"%s\" ct state established,related accept\n"
             "    oifname \"%s\" drop\n  }\n"
             "  chain postrouting {\n"
             "    type nat hook postrouting priority srcnat; policy accept;\n"
             "    ip saddr %s oifname != \"%s\" masquerade\n  }\n",
             addrs[0] ? ", " : "", addrs, br, br, br, br, br, br, br, b->subnet, br);
    return bhn_tables_apply(b, body, err);
}

static int ur_init(struct bh_plugin_handle *h, void **state, struct bh_err *err)
{
    bhn_handle = h;
    struct ur_state *s = calloc(1, sizeof(*s));
    if (!s)
        return bhn_host->err_set(bhn_handle, err, BH_EIO, "out of memory");
    if (bhn_configure(&s->b, UR_NAME, err) < 0 || bhn_bridge_up(&s->b, err) < 0 ||
        ur_tables(&s->b, err) < 0) {
        free(s);
        return -1;
    }
    bhn_host->log(bhn_handle, BH_LOG_INFO, "bridge %s up, table inet %s, leases in %s", s->b.bridge,
                  s->b.table, s->b.leases);
    *state = s;
    return 0;
}

static void ur_fini(void *state)
{
    free(state);
}

static int ur_prepare(void *state, const struct bh_net_request *req, struct bh_net_result *res,
                      struct bh_err *err)
{
    res->flags = BH_NET_NEW_NETNS;
    res->env[0] = '\0';
    return 0;
}

static int ur_detach(void *state, const struct bh_net_request *req, struct bh_err *err)
{
    const struct ur_state *s = state;
    return bhn_detach(&s->b, req->instance_id, NULL, NULL, err);
}

static int ur_attach(void *state, const struct bh_net_request *req, struct bh_net_result *res,
                     struct bh_err *err)
{
    const struct ur_state *s = state;
    struct bhn_names n;
    if (bhn_attach(&s->b, req, &n, err) < 0)
        return -1;
    snprintf(res->host, sizeof(res->host), "%s", n.ip);
    bhn_host->log(bhn_handle, BH_LOG_DEBUG, "%s attached at %s via %s", req->instance_id, n.ip,
                  n.host_if);
    return 0;
}

static const struct bh_config_field ur_schema[] = {
    {"bridge", BH_CFG_STRING, 0, "bh0", "host bridge the instances join"},
    {"subnet", BH_CFG_STRING, 0, "10.213.0.0/16", "instance addresses; the bridge gets .1"},
    {"mtu", BH_CFG_INT, 0, "1500", "MTU of the veth pairs"},
};

/* The keys of spec.network this access reads. */
static const struct bh_config_field ur_serves[] = {
    {"expose", BH_CFG_LIST, 0, NULL, "host ports published to the instance"},
};

static const struct bh_network_ops ur_ops = {
    .size = sizeof(struct bh_network_ops),
    .init = ur_init,
    .fini = ur_fini,
    .prepare = ur_prepare,
    .attach = ur_attach,
    .detach = ur_detach,
};

static const struct bh_plugin_info ur_info = {
    .size = sizeof(struct bh_plugin_info),
    .abi_major = BH_PLUGIN_ABI_MAJOR,
    .abi_minor = BH_PLUGIN_ABI_MINOR,
    .build_sig = BH_PLUGIN_BUILD_SIG,
    .kind = BH_PLUGIN_NETWORK,
    /* Leases and ports are claimed by exclusive file creation, nft updates are atomic:
     * calls may overlap, as they did under ABI 1. */
    .flags = BH_PLUGIN_THREADSAFE,
    .name = UR_NAME,
    .version = "0.2.0",
    .field_size = sizeof(struct bh_config_field),
    .config_schema = ur_schema,
    .n_config = sizeof(ur_schema) / sizeof(ur_schema[0]),
    .serves = UR_NAME,
    .serves_schema = ur_serves,
    .n_serves_schema = sizeof(ur_serves) / sizeof(ur_serves[0]),
    .ops = &ur_ops,
};

BH_PLUGIN_EXPORT const struct bh_plugin_info *bh_plugin_entry(const struct bh_host_api *host)
{
    bhn_host = host;
    return &ur_info;
}
