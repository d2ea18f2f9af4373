/* Bridge, veth and nftables plumbing shared by the bridged network plugins; see bridge.h.
 * Nothing here spawns a process: links, addresses and routes go over rtnetlink (netlink.c),
 * nftables changes through libnftables (nft.c). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bridge.h"

const struct bh_host_api *bhn_host;
struct bh_plugin_handle *bhn_handle;

#define BHN_ID_MAX 63

/* ---- config ------------------------------------------------------------------------------ */

static int bhn_parse_subnet(struct bhn_bridge *b, const char *subnet, struct bh_err *err)
{
    char addr[32];
    const char *slash = strchr(subnet, '/');
    struct in_addr in;
    if (!slash || (size_t)(slash - subnet) >= sizeof(addr))
        return bhn_host->err_set(bhn_handle, err, BH_EINVAL, "subnet \"%s\" is not a.b.c.d/prefix",
                                 subnet);
    memcpy(addr, subnet, (size_t)(slash - subnet));
    addr[slash - subnet] = '\0';
    char *end = NULL;
    long prefix = strtol(slash + 1, &end, 10);
    /* /30 is the smallest subnet with a gateway and one instance. */
    if (inet_pton(AF_INET, addr, &in) != 1 || !slash[1] || *end || prefix < 8 || prefix > 30)
        return bhn_host->err_set(bhn_handle, err, BH_EINVAL, "subnet \"%s\" is not a.b.c.d/8..30",
                                 subnet);
    b->net = ntohl(in.s_addr);
    b->prefix = (int)prefix;
    if (b->net & ((1u << (32 - prefix)) - 1))
        return bhn_host->err_set(bhn_handle, err, BH_EINVAL, "subnet \"%s\" has host bits set",
                                 subnet);
    snprintf(b->subnet, sizeof(b->subnet), "%s/%d", addr, b->prefix);
    bhn_ip_text(b->net + 1, b->gateway);
    return 0;
}

static int bhn_ifname_ok(const char *name)
{
    size_t n = strlen(name);
    /* The table name boilerhouse_<bridge> must stay an nft identifier: no '.' or '-'. */
    return n > 0 && n < 16 &&
           strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == n;
}

int bhn_configure(struct bhn_bridge *b, const char *plugin, struct bh_err *err)
{
    b->plugin = plugin;
    const char *bridge = bhn_host->config_string(bhn_handle, "bridge");
    if (!bhn_ifname_ok(bridge))
        return bhn_host->err_set(bhn_handle, err, BH_EINVAL,
                                 "bridge \"%s\" is not [A-Za-z0-9_]{1,15}", bridge);
    snprintf(b->bridge, sizeof(b->bridge), "%s", bridge);
    snprintf(b->table, sizeof(b->table), "boilerhouse_%s", bridge);
    long long mtu = bhn_host->config_int(bhn_handle, "mtu");
    if (mtu < 576 || mtu > 65535)
        return bhn_host->err_set(bhn_handle, err, BH_EINVAL, "mtu %lld is outside 576..65535", mtu);
    b->mtu = (int)mtu;
    snprintf(b->dir, sizeof(b->dir), "%s", bhn_host->state_dir(bhn_handle));
    snprintf(b->leases, sizeof(b->leases), "%s/leases", b->dir);
    if (bhn_parse_subnet(b, bhn_host->config_string(bhn_handle, "subnet"), err) < 0)
        return -1;
    return bhn_nft_open(&b->nft, err);
}

void bhn_close(struct bhn_bridge *b)
{
    bhn_nft_close(b->nft);
    b->nft = NULL;
}

/* ---- bridge ------------------------------------------------------------------------------ */

static int bhn_mkdirs(const char *path, struct bh_err *err)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, 0700) < 0 && errno != EEXIST)
            return bhn_host->err_set(bhn_handle, err, BH_EIO, "mkdir %s: %s", buf, strerror(errno));
        if (c == '\0')
            return 0;
        *p = c;
    }
}

static int bhn_forwarding_on(struct bh_err *err)
{
    const char *path = "/proc/sys/net/ipv4/ip_forward";
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    int ok = fd >= 0 && write(fd, "1", 1) == 1;
    if (!ok)
        bhn_host->err_set(bhn_handle, err, BH_EIO, "enable %s: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    return ok ? 0 : -1;
}

int bhn_bridge_up(const struct bhn_bridge *b, struct bh_err *err)
{
    if (bhn_mkdirs(b->leases, err) < 0 || bhn_lease_clean(b->leases, err) < 0 ||
        bhn_bridge_link(b, err) < 0)
        return -1;
    return bhn_forwarding_on(err);
}

/* ---- helpers ----------------------------------------------------------------------------- */

int bhn_check_id(const char *id, struct bh_err *err)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > BHN_ID_MAX || strspn(id, "abcdefghijklmnopqrstuvwxyz0123456789-") != n)
        return bhn_host->err_set(bhn_handle, err, BH_EINVAL,
                                 "instance id \"%.80s\" is not [a-z0-9-]{1,%d}", id ? id : "(null)",
                                 BHN_ID_MAX);
    return 0;
}

/* The instance's MAC follows from its address, so an address reused by the next instance keeps
 * the MAC the host's neighbour cache holds for it; with a fresh random MAC the host went on
 * sending to the gone instance's MAC until the entry expired (connects from the daemon to a
 * new instance timed out for up to half a minute). */
static void bhn_names_for(const struct bhn_bridge *b, uint32_t addr, struct bhn_names *n)
{
    snprintf(n->mac, sizeof(n->mac), "02:42:%02x:%02x:%02x:%02x", addr >> 24, (addr >> 16) & 255,
             (addr >> 8) & 255, addr & 255);
    snprintf(n->host_if, sizeof(n->host_if), "bhv%08x", addr);
    bhn_ip_text(addr, n->ip);
    snprintf(n->cidr, sizeof(n->cidr), "%s/%d", n->ip, b->prefix);
}

/* ---- nftables ---------------------------------------------------------------------------- */

/* The nft lines that add (or remove) an instance's port elements. */
static void bhn_elements(const struct bhn_bridge *b, const struct bhn_names *n, const char *verb,
                         char *out, size_t outlen)
{
    snprintf(out, outlen,
             "%s element bridge %s ifaces { \"%s\" }\n"
             "%s element bridge %s ports { \"%s\" . %s }\n",
             verb, b->table, n->host_if, verb, b->table, n->host_if, n->ip);
}

struct bhn_restore {
    const struct bhn_bridge *b;
    FILE *out;
};

static int bhn_restore_one(uint32_t addr, const char *id, void *ctx, struct bh_err *err)
{
    struct bhn_restore *r = ctx;
    struct bhn_names n;
    bhn_names_for(r->b, addr, &n);
    char text[512];
    bhn_elements(r->b, &n, "add", text, sizeof(text));
    if (if_nametoindex(n.host_if) != 0)
        fputs(text, r->out);
    return 0;
}

int bhn_tables_apply(const struct bhn_bridge *b, const char *inet_body, struct bh_err *err)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (!out)
        return bhn_host->err_set(bhn_handle, err, BH_EIO, "out of memory");
    const char *t = b->table;
    /* "table X {}" then "delete table X" makes the rebuild idempotent and atomic. A bridge
     * hook sees every bridge on the host (and this kernel lacks `meta ibrname`): only frames
     * entering this bridge's ports (set ifaces) are filtered. */
    fprintf(out,
            "table bridge %s {}\ndelete table bridge %s\n"
            "table bridge %s {\n"
            "  set ifaces {\n    type ifname\n  }\n"
            "  set ports {\n    type ifname . ipv4_addr\n  }\n"
            "  chain prerouting {\n"
            "    type filter hook prerouting priority filter; policy accept;\n"
            "    iifname . ip saddr @ports accept\n"
            "    iifname . arp saddr ip @ports accept\n"
            "    iifname @ifaces drop\n  }\n}\n"
            "table inet %s {}\ndelete table inet %s\ntable inet %s {\n%s"
            "  map expose {\n    type inet_service : ipv4_addr . inet_service\n  }\n"
            "  chain expose {\n"
            "    type nat hook prerouting priority dstnat - 5; policy accept;\n"
            "    iifname != \"%s\" fib daddr type local dnat ip to tcp dport map @expose\n  }\n"
            "}\n",
            t, t, t, t, t, t, inet_body, b->bridge);
    struct bhn_restore r = {.b = b, .out = out};
    int rc = bhn_lease_each(b->leases, bhn_restore_one, &r, err);
    fclose(out);
    if (rc == 0)
        rc = bhn_nft_run(b->nft, text, err);
    free(text);
    return rc;
}

/* ---- attach / detach --------------------------------------------------------------------- */

static int bhn_wire(const struct bhn_bridge *b, const struct bh_net_request *req,
                    const struct bhn_names *n, struct bh_err *err)
{
    char nft[512];
    bhn_elements(b, n, "add", nft, sizeof(nft));
    if (bhn_veth_wire(b, req->netns_path, n, err) < 0 || bhn_nft_run(b->nft, nft, err) < 0)
        return -1;
    return 0;
}

/* Removes the veth, the port elements and the lease of addr. Each step runs even if one before
 * failed (a table deleted behind our back must not pin the lease): the element and the veth
 * name derive from the address, so its next holder re-adds the same element and replaces a
 * veth left over. The first error is reported. */
static int bhn_release(const struct bhn_bridge *b, uint32_t addr, const struct bhn_names *n,
                       struct bh_err *err)
{
    /* add-then-delete in one transaction: succeeds whether or not the element exists. */
    char nft[1024];
    bhn_elements(b, n, "add", nft, sizeof(nft) / 2);
    bhn_elements(b, n, "delete", nft + strlen(nft), sizeof(nft) / 2);
    struct bh_err later;
    int rc = bhn_link_del(n->host_if, err);
    if (bhn_nft_run(b->nft, nft, rc < 0 ? &later : err) < 0)
        rc = -1;
    if (bhn_lease_release(b->leases, addr, rc < 0 ? &later : err) < 0)
        rc = -1;
    return rc;
}

int bhn_detach(const struct bhn_bridge *b, const char *id,
               void (*on_release)(const char *ip, void *ctx), void *ctx, struct bh_err *err)
{
    if (bhn_check_id(id, err) < 0)
        return -1;
    bhn_expose_unpublish(b, id);
    uint32_t addr;
    int found;
    /* Normally one lease; a loop also sweeps any extra a racing double attach made. */
    while ((found = bhn_lease_lookup(b->leases, id, &addr, err)) == 1) {
        struct bhn_names n;
        bhn_names_for(b, addr, &n);
        if (on_release)
            on_release(n.ip, ctx);
        if (bhn_release(b, addr, &n, err) < 0)
            return -1;
    }
    return found;
}

int bhn_attach(const struct bhn_bridge *b, const struct bh_net_request *req, struct bhn_names *n,
               struct bh_err *err)
{
    if (bhn_check_id(req->instance_id, err) < 0)
        return -1;
    if (!req->netns_path || req->pid <= 0)
        return bhn_host->err_set(bhn_handle, err, BH_EINVAL,
                                 "attach %s: netns_path and pid are required", req->instance_id);
    uint32_t addr;
    if (bhn_lease_acquire(b->leases, b->net, b->prefix, req->instance_id, &addr, err) < 0)
        return -1;
    bhn_names_for(b, addr, n);
    if (bhn_wire(b, req, n, err) < 0) {
        /* Leave nothing behind: a failed attach must not hold an address or a veth. */
        struct bh_err ignored;
        bhn_detach(b, req->instance_id, NULL, NULL, &ignored);
        return -1;
    }
    if (bhn_expose_publish(b, req, n->ip, err) < 0) {
        struct bh_err ignored;
        bhn_detach(b, req->instance_id, NULL, NULL, &ignored);
        return -1;
    }
    return 0;
}
