/* Network mode `unrestricted`: each instance gets its own network namespace joined to a host
 * bridge by a veth pair, with an address leased from the configured subnet, so the host (and
 * the instance's outbound traffic, once forwarding and NAT are set up by the operator) reach
 * it. Hardening (cloud metadata blocking, nftables) comes later. All commands go through
 * host->run: argv, never a shell. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "unrestricted.h"

const struct bh_host_api *ur_host;

#define UR_NAME "unrestricted"
#define UR_ID_MAX 63

struct ur_state {
    char bridge[16]; /* IFNAMSIZ */
    uint32_t net;    /* subnet address, host byte order */
    int prefix;
    char mtu[8];
    char leases[PATH_MAX];
};

/* The veth names derive from the leased address, which is unique among live instances by
 * construction, so two instance ids can never collide on an interface name. */
struct ur_names {
    char host_if[16]; /* bhv<hex ip>, the host side */
    char peer_if[16]; /* bhp<hex ip>, until it is renamed eth0 inside the namespace */
    char ip[16];
    char cidr[20];
    char gateway[16];
};

static int ur_run(const char *const argv[], struct bh_err *err)
{
    return ur_host->run(argv, NULL, 0, err);
}

static void ur_names_for(const struct ur_state *s, uint32_t addr, struct ur_names *n)
{
    snprintf(n->host_if, sizeof(n->host_if), "bhv%08x", addr);
    snprintf(n->peer_if, sizeof(n->peer_if), "bhp%08x", addr);
    ur_ip_text(addr, n->ip);
    snprintf(n->cidr, sizeof(n->cidr), "%s/%d", n->ip, s->prefix);
    ur_ip_text(s->net + 1, n->gateway);
}

/* ---- config and init ---------------------------------------------------------------------- */

static int ur_parse_subnet(struct ur_state *s, const char *subnet, struct bh_err *err)
{
    char addr[32];
    const char *slash = strchr(subnet, '/');
    struct in_addr in;
    if (!slash || (size_t)(slash - subnet) >= sizeof(addr))
        return ur_host->err_set(err, BH_EINVAL, "subnet \"%s\" is not a.b.c.d/prefix", subnet);
    memcpy(addr, subnet, (size_t)(slash - subnet));
    addr[slash - subnet] = '\0';
    char *end = NULL;
    long prefix = strtol(slash + 1, &end, 10);
    /* /30 is the smallest subnet with a gateway and one instance. */
    if (inet_pton(AF_INET, addr, &in) != 1 || !slash[1] || *end || prefix < 8 || prefix > 30)
        return ur_host->err_set(err, BH_EINVAL, "subnet \"%s\" is not a.b.c.d/8..30", subnet);
    s->net = ntohl(in.s_addr);
    s->prefix = (int)prefix;
    if (s->net & ((1u << (32 - prefix)) - 1))
        return ur_host->err_set(err, BH_EINVAL, "subnet \"%s\" has host bits set", subnet);
    return 0;
}

static int ur_ifname_ok(const char *name)
{
    size_t n = strlen(name);
    return n > 0 && n < 16 &&
           strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n;
}

static int ur_configure(struct ur_state *s, const struct bh_config *cfg, struct bh_err *err)
{
    const char *bridge = ur_host->config_string(cfg, "bridge");
    if (!ur_ifname_ok(bridge))
        return ur_host->err_set(err, BH_EINVAL, "bridge \"%s\" is not an interface name", bridge);
    snprintf(s->bridge, sizeof(s->bridge), "%s", bridge);
    long long mtu = ur_host->config_int(cfg, "mtu");
    if (mtu < 576 || mtu > 65535)
        return ur_host->err_set(err, BH_EINVAL, "mtu %lld is outside 576..65535", mtu);
    snprintf(s->mtu, sizeof(s->mtu), "%lld", mtu);
    snprintf(s->leases, sizeof(s->leases), "%s/net/" UR_NAME "/leases", ur_host->state_dir());
    return ur_parse_subnet(s, ur_host->config_string(cfg, "subnet"), err);
}

static int ur_mkdirs(const char *path, struct bh_err *err)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, 0700) < 0 && errno != EEXIST)
            return ur_host->err_set(err, BH_EIO, "mkdir %s: %s", buf, strerror(errno));
        if (c == '\0')
            return 0;
        *p = c;
    }
}

/* Idempotent: a daemon restart finds the bridge from last time and keeps it. */
static int ur_ensure_bridge(const struct ur_state *s, struct bh_err *err)
{
    char gw[16], cidr[20];
    ur_ip_text(s->net + 1, gw);
    snprintf(cidr, sizeof(cidr), "%s/%d", gw, s->prefix);
    const char *show[] = {"ip", "link", "show", "dev", s->bridge, NULL};
    const char *add[] = {"ip", "link", "add", "name", s->bridge, "type", "bridge", NULL};
    const char *addr[] = {"ip", "addr", "replace", cidr, "dev", s->bridge, NULL};
    const char *up[] = {"ip", "link", "set", "dev", s->bridge, "up", NULL};
    struct bh_err ignored;
    if (ur_run(show, &ignored) < 0 && ur_run(add, err) < 0)
        return -1;
    if (ur_run(addr, err) < 0 || ur_run(up, err) < 0)
        return -1;
    return 0;
}

static int ur_init(void **state, const struct bh_config *cfg, struct bh_err *err)
{
    struct ur_state *s = calloc(1, sizeof(*s));
    if (!s)
        return ur_host->err_set(err, BH_EIO, "out of memory");
    if (ur_configure(s, cfg, err) < 0 || ur_mkdirs(s->leases, err) < 0 ||
        ur_lease_clean(s->leases, err) < 0 || ur_ensure_bridge(s, err) < 0) {
        free(s);
        return -1;
    }
    ur_host->log(BH_LOG_INFO, UR_NAME, "bridge %s up, leases in %s", s->bridge, s->leases);
    *state = s;
    return 0;
}

static void ur_fini(void *state)
{
    free(state);
}

/* ---- attach / detach ---------------------------------------------------------------------- */

static int ur_prepare(void *state, const struct bh_net_request *req, struct bh_net_result *res,
                      struct bh_err *err)
{
    res->flags = BH_NET_NEW_NETNS;
    res->env[0] = '\0';
    return 0;
}

/* Instance ids become file contents and log text; refuse anything but the documented form. */
static int ur_check_id(const char *id, struct bh_err *err)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > UR_ID_MAX || strspn(id, "abcdefghijklmnopqrstuvwxyz0123456789-") != n)
        return ur_host->err_set(err, BH_EINVAL, "instance id \"%.80s\" is not [a-z0-9-]{1,%d}",
                                id ? id : "(null)", UR_ID_MAX);
    return 0;
}

/* Deletes a host-side veth (its peer goes with it); one that is already gone is fine. */
static int ur_link_del(const char *ifname, struct bh_err *err)
{
    const char *del[] = {"ip", "link", "del", "dev", ifname, NULL};
    struct bh_err local;
    if (ur_run(del, &local) == 0 || strstr(local.msg, "Cannot find device"))
        return 0;
    if (err)
        *err = local;
    return -1;
}

/* Inside the instance's namespace: the peer becomes eth0 with the leased address. */
static int ur_wire_inside(const struct ur_names *n, const char *netns_path, struct bh_err *err)
{
    char netns[PATH_MAX + 8];
    snprintf(netns, sizeof(netns), "--net=%s", netns_path);
    const char *const cmds[][9] = {
        {"nsenter", netns, "ip", "link", "set", "dev", n->peer_if, "name", "eth0"},
        {"nsenter", netns, "ip", "addr", "add", n->cidr, "dev", "eth0", NULL},
        {"nsenter", netns, "ip", "link", "set", "dev", "eth0", "up", NULL},
        {"nsenter", netns, "ip", "link", "set", "dev", "lo", "up", NULL},
        {"nsenter", netns, "ip", "route", "add", "default", "via", n->gateway, NULL},
    };
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        const char *argv[10] = {0};
        memcpy(argv, cmds[i], sizeof(cmds[i]));
        if (ur_run(argv, err) < 0)
            return -1;
    }
    return 0;
}

/* Wires from scratch: a veth left by an earlier or half-done attach is deleted first, which
 * makes attach idempotent and also repairs an interrupted one. */
static int ur_wire(const struct ur_state *s, const struct bh_net_request *req,
                   const struct ur_names *n, struct bh_err *err)
{
    char pid[16];
    snprintf(pid, sizeof(pid), "%d", req->pid);
    const char *add[] = {"ip",   "link", "add",  n->host_if, "mtu", s->mtu, "type",
                         "veth", "peer", "name", n->peer_if, "mtu", s->mtu, NULL};
    const char *move[] = {"ip", "link", "set", "dev", n->peer_if, "netns", pid, NULL};
    const char *plug[] = {"ip", "link", "set", "dev", n->host_if, "master", s->bridge, "up", NULL};
    if (ur_link_del(n->host_if, err) < 0 || ur_run(add, err) < 0 || ur_run(move, err) < 0 ||
        ur_wire_inside(n, req->netns_path, err) < 0 || ur_run(plug, err) < 0)
        return -1;
    return 0;
}

static int ur_detach(void *state, const struct bh_net_request *req, struct bh_err *err)
{
    const struct ur_state *s = state;
    if (ur_check_id(req->instance_id, err) < 0)
        return -1;
    uint32_t addr;
    int found;
    /* Normally one lease; a loop also sweeps any extra a racing double attach made. */
    while ((found = ur_lease_lookup(s->leases, req->instance_id, &addr, err)) == 1) {
        struct ur_names n;
        ur_names_for(s, addr, &n);
        if (ur_link_del(n.host_if, err) < 0 || ur_lease_release(s->leases, addr, err) < 0)
            return -1;
    }
    return found;
}

static int ur_attach(void *state, const struct bh_net_request *req, struct bh_net_result *res,
                     struct bh_err *err)
{
    const struct ur_state *s = state;
    if (ur_check_id(req->instance_id, err) < 0)
        return -1;
    if (!req->netns_path || req->pid <= 0)
        return ur_host->err_set(err, BH_EINVAL, "attach %s: netns_path and pid are required",
                                req->instance_id);
    uint32_t addr;
    if (ur_lease_acquire(s->leases, s->net, s->prefix, req->instance_id, &addr, err) < 0)
        return -1;
    struct ur_names n;
    ur_names_for(s, addr, &n);
    if (ur_wire(s, req, &n, err) < 0) {
        /* Leave nothing behind: a failed attach must not hold an address or a veth. */
        struct bh_err ignored;
        ur_detach(state, req, &ignored);
        return -1;
    }
    snprintf(res->host, sizeof(res->host), "%s", n.ip);
    ur_host->log(BH_LOG_DEBUG, UR_NAME, "%s attached at %s via %s", req->instance_id, n.ip,
                 n.host_if);
    return 0;
}

static const struct bh_config_field ur_schema[] = {
    {"bridge", BH_CFG_STRING, 0, "bh0", "host bridge the instances join"},
    {"subnet", BH_CFG_STRING, 0, "10.213.0.0/16", "instance addresses; the bridge gets .1"},
    {"mtu", BH_CFG_INT, 0, "1500", "MTU of the veth pairs"},
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
    .name = UR_NAME,
    .version = "0.1.0",
    .config_schema = ur_schema,
    .n_config = sizeof(ur_schema) / sizeof(ur_schema[0]),
    .ops = &ur_ops,
};

BH_PLUGIN_EXPORT const struct bh_plugin_info *bh_plugin_entry(const struct bh_host_api *host)
{
    ur_host = host;
    return &ur_info;
}
