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
 * Name resolution: instances get the host's resolvers (resolv_conf) that they may reach; a
 * loopback resolver or one on a host address is never handed out: if that leaves none, a
 * forwarding resolver on the gateway (common/dnsfwd.h) relays to the first of them, and the
 * input chain admits UDP 53 to the gateway, nothing else.
 * No process is spawned: links and nftables go through libnl and libnftables (common/). */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/bridge.h"
#include "../common/dnsfwd.h"

#define UR_NAME "unrestricted"

struct ur_state {
    struct bhn_bridge b;
    char nameservers[128];  /* what instances' resolv.conf lists */
    struct bhn_dnsfwd *fwd; /* set when nameservers is the gateway */
};

/* ---- resolvers --------------------------------------------------------------------------- */

/* 1 if an instance can reach ip: not loopback, not link-local, not one of the host's own
 * addresses (the forward chain drops those). */
static int ur_reachable(const char *ip, const char *host_addrs)
{
    struct in_addr a;
    if (inet_pton(AF_INET, ip, &a) != 1)
        return 0;
    uint32_t h = ntohl(a.s_addr);
    if ((h >> 24) == 127 || (h >> 16) == 0xa9fe || h == 0)
        return 0;
    size_t n = strlen(ip);
    for (const char *p = strstr(host_addrs, ip); p; p = strstr(p + 1, ip))
        if ((p == host_addrs || p[-1] == ' ') && (p[n] == ',' || p[n] == '\0'))
            return 0;
    return 1;
}

/* Splits the IPv4 nameservers of the resolv.conf into those instances reach (appended to
 * s->nameservers) and the first they do not (*hidden; glibc's 127.0.0.1 if none is named).
 * IPv6 resolvers are skipped: instances have IPv4 only. */
static void ur_parse_resolv(struct ur_state *s, FILE *f, const char *host_addrs, char hidden[16])
{
    char line[512], ip[64];
    snprintf(hidden, 16, "127.0.0.1");
    int hidden_set = 0;
    while (fgets(line, sizeof(line), f)) {
        struct in_addr a;
        if (sscanf(line, " nameserver %63s", ip) != 1 || inet_pton(AF_INET, ip, &a) != 1)
            continue;
        if (!ur_reachable(ip, host_addrs)) {
            if (!hidden_set++)
                snprintf(hidden, 16, "%s", ip);
            continue;
        }
        size_t used = strlen(s->nameservers);
        if (used + strlen(ip) + 2 < sizeof(s->nameservers))
            snprintf(s->nameservers + used, sizeof(s->nameservers) - used, "%s%s", used ? " " : "",
                     ip);
    }
}

static int ur_resolvers(struct ur_state *s, const char *host_addrs, struct bh_err *err)
{
    const char *path = bhn_host->config_string(bhn_handle, "resolv_conf");
    char hidden[16];
    FILE *f = fopen(path, "re");
    if (f) {
        ur_parse_resolv(s, f, host_addrs, hidden);
        fclose(f);
    } else {
        snprintf(hidden, sizeof(hidden), "127.0.0.1");
    }
    if (s->nameservers[0])
        return 0;
    if (bhn_dnsfwd_start(s->b.gateway, hidden, &s->fwd, err) < 0)
        return -1;
    snprintf(s->nameservers, sizeof(s->nameservers), "%s", s->b.gateway);
    bhn_host->log(bhn_handle, BH_LOG_INFO,
                  "host resolver %s is not reachable from instances: "
                  "forwarding to it from %s:53",
                  hidden, s->b.gateway);
    return 0;
}

/* addrs: the host's addresses (bhn_host_addrs); dns: the gateway runs the forwarder. */
static int ur_tables(const struct bhn_bridge *b, const char *addrs, int dns, struct bh_err *err)
{
    char body[8192], dns_rule[128] = "";
    const char *br = b->bridge;
    if (dns)
        snprintf(dns_rule, sizeof(dns_rule), "    iifname \"%s\" ip daddr %s udp dport 53 accept\n",
                 br, b->gateway);
    snprintf(body, sizeof(body),
             "  set host_addrs {\n    type ipv4_addr; flags interval; auto-merge\n"
             "    elements = { 169.254.0.0/16%s%s }\n  }\n"
             "  chain input {\n"
             "    type filter hook input priority filter - 10; policy accept;\n"
             "    iifname \"%s\" ct state established,related accept\n"
             "%s"
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
             addrs[0] ? ", " : "", addrs, br, dns_rule, br, br, br, br, br, br, b->subnet, br);
    return bhn_tables_apply(b, body, err);
}

static int ur_init(struct bh_plugin_handle *h, void **state, struct bh_err *err)
{
    bhn_handle = h;
    struct ur_state *s = calloc(1, sizeof(*s));
    if (!s)
        return bhn_host->err_set(bhn_handle, err, BH_EIO, "out of memory");
    char addrs[4096];
    if (bhn_configure(&s->b, UR_NAME, err) < 0 || bhn_bridge_up(&s->b, err) < 0 ||
        bhn_host_addrs(addrs, sizeof(addrs), err) < 0 || ur_resolvers(s, addrs, err) < 0 ||
        ur_tables(&s->b, addrs, s->fwd != NULL, err) < 0) {
        bhn_dnsfwd_stop(s->fwd);
        bhn_close(&s->b);
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
    struct ur_state *s = state;
    if (s) {
        bhn_dnsfwd_stop(s->fwd);
        bhn_close(&s->b);
    }
    free(s);
}

static int ur_prepare(void *state, const struct bh_net_request *req, struct bh_net_result *res,
                      struct bh_err *err)
{
    const struct ur_state *s = state;
    res->flags = BH_NET_NEW_NETNS;
    res->env[0] = '\0';
    if (BH_HAS_FIELD(res, struct bh_net_result, nameservers)) {
        res->flags |= BH_NET_RESOLVER;
        snprintf(res->nameservers, sizeof(res->nameservers), "%s", s->nameservers);
    }
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
    {"resolv_conf", BH_CFG_STRING, 0, "/etc/resolv.conf",
     "the host's resolvers, handed to instances (or forwarded to, if loopback)"},
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
