/* Bridge, veth and nftables plumbing shared by the bridged network plugins; see bridge.h.
 * Every command goes through host->run (argv, never a shell). Attach costs three processes:
 * `ip -batch` on the host, `nsenter ... ip -batch` inside, `nft -f` for the port element. */
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
    snprintf(b->mtu, sizeof(b->mtu), "%lld", mtu);
    snprintf(b->dir, sizeof(b->dir), "%s", bhn_host->state_dir(bhn_handle));
    snprintf(b->leases, sizeof(b->leases), "%s/leases", b->dir);
    return bhn_parse_subnet(b, bhn_host->config_string(bhn_handle, "subnet"), err);
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
    char tmp[PATH_MAX + 8], cidr[24];
    snprintf(tmp, sizeof(tmp), "%s/tmp", b->dir);
    snprintf(cidr, sizeof(cidr), "%s/%d", b->gateway, b->prefix);
    if (bhn_mkdirs(b->leases, err) < 0 || bhn_mkdirs(tmp, err) < 0 ||
        bhn_lease_clean(b->leases, err) < 0)
        return -1;
    const char *add[] = {"ip", "link", "add", "name", b->bridge, "type", "bridge", NULL};
    const char *addr[] = {"ip", "addr", "replace", cidr, "dev", b->bridge, NULL};
    const char *up[] = {"ip", "link", "set", "dev", b->bridge, "up", NULL};
    /* A daemon restart finds the bridge from last time and keeps it. */
    if (if_nametoindex(b->bridge) == 0 && bhn_host->run(bhn_handle, add, NULL, 0, err) < 0)
        return -1;
    if (bhn_host->run(bhn_handle, addr, NULL, 0, err) < 0 ||
        bhn_host->run(bhn_handle, up, NULL, 0, err) < 0)
        return -1;
    return bhn_forwarding_on(err);
}

/* ---- helpers ----------------------------------------------------------------------------- */

int bhn_run_with_file(const struct bhn_bridge *b, const char *const argv[], const char *text,
                      struct bh_err *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/tmp/cmd.XXXXXX", b->dir);
    int fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0)
        return bhn_host->err_set(bhn_handle, err, BH_EIO, "create %s: %s", path, strerror(errno));
    size_t len = strlen(text);
    int ok = write(fd, text, len) == (ssize_t)len;
    close(fd);
    if (!ok) {
        unlink(path);
        return bhn_host->err_set(bhn_handle, err, BH_EIO, "write %s: %s", path, strerror(errno));
    }
    const char *av[24] = {0};
    for (size_t i = 0; argv[i] && i < 23; i++)
        av[i] = strcmp(argv[i], "@FILE") == 0 ? path : argv[i];
    int rc = bhn_host->run(bhn_handle, av, NULL, 0, err);
    unlink(path);
    return rc;
}

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
    snprintf(n->peer_if, sizeof(n->peer_if), "bhp%08x", addr);
    bhn_ip_text(addr, n->ip);
    snprintf(n->cidr, sizeof(n->cidr), "%s/%d", n->ip, b->prefix);
}

/* ---- nftables ---------------------------------------------------------------------------- */

static int bhn_nft(const struct bhn_bridge *b, const char *text, struct bh_err *err)
{
    const char *argv[] = {"nft", "-f", "@FILE", NULL};
    return bhn_run_with_file(b, argv, text, err);
}

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
        rc = bhn_nft(b, text, err);
    free(text);
    return rc;
}

int bhn_host_addrs(char *out, size_t outlen, struct bh_err *err)
{
    static char buf[65536];
    const char *argv[] = {"ip", "-o", "-4", "addr", "show", NULL};
    if (bhn_host->run(bhn_handle, argv, buf, sizeof(buf), err) < 0)
        return -1;
    size_t used = 0;
    out[0] = '\0';
    for (char *p = strstr(buf, " inet "); p; p = strstr(p + 1, " inet ")) {
        char addr[20];
        struct in_addr in;
        if (sscanf(p + 6, "%19[0-9.]", addr) != 1 || inet_pton(AF_INET, addr, &in) != 1)
            continue;
        int n = snprintf(out + used, outlen - used, "%s%s", used ? ", " : "", addr);
        if (n < 0 || (size_t)n >= outlen - used)
            return bhn_host->err_set(bhn_handle, err, BH_EIO, "too many host addresses");
        used += (size_t)n;
    }
    return 0;
}

/* ---- attach / detach --------------------------------------------------------------------- */

/* Deletes a host-side veth (its peer goes with it); one that is already gone is fine. */
static int bhn_link_del(const char *ifname, struct bh_err *err)
{
    const char *del[] = {"ip", "link", "del", "dev", ifname, NULL};
    struct bh_err local;
    if (if_nametoindex(ifname) == 0)
        return 0;
    if (bhn_host->run(bhn_handle, del, NULL, 0, &local) == 0 ||
        strstr(local.msg, "Cannot find device"))
        return 0;
    if (err)
        *err = local;
    return -1;
}

static int bhn_wire(const struct bhn_bridge *b, const struct bh_net_request *req,
                    const struct bhn_names *n, struct bh_err *err)
{
    char host[512], inside[512], nft[512], netns[PATH_MAX + 8];
    snprintf(host, sizeof(host),
             "link add %s mtu %s type veth peer name %s mtu %s netns %d\n"
             "link set dev %s master %s\n"
             "link set dev %s type bridge_slave isolated on\n"
             "link set dev %s up\n",
             n->host_if, b->mtu, n->peer_if, b->mtu, req->pid, n->host_if, b->bridge, n->host_if,
             n->host_if);
    snprintf(inside, sizeof(inside),
             "link set dev %s address %s name eth0\naddr add %s dev eth0\n"
             "link set dev eth0 up\nlink set dev lo up\nroute add default via %s\n",
             n->peer_if, n->mac, n->cidr, b->gateway);
    bhn_elements(b, n, "add", nft, sizeof(nft));
    snprintf(netns, sizeof(netns), "--net=%s", req->netns_path);
    const char *ip_host[] = {"ip", "-batch", "@FILE", NULL};
    const char *ip_inside[] = {"nsenter", netns, "ip", "-batch", "@FILE", NULL};
    if (bhn_link_del(n->host_if, err) < 0 || bhn_run_with_file(b, ip_host, host, err) < 0 ||
        bhn_run_with_file(b, ip_inside, inside, err) < 0 || bhn_nft(b, nft, err) < 0)
        return -1;
    return 0;
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
        /* add-then-delete in one transaction: succeeds whether or not the element exists. */
        char nft[1024];
        bhn_elements(b, &n, "add", nft, sizeof(nft) / 2);
        bhn_elements(b, &n, "delete", nft + strlen(nft), sizeof(nft) / 2);
        if (bhn_link_del(n.host_if, err) < 0 || bhn_nft(b, nft, err) < 0 ||
            bhn_lease_release(b->leases, addr, err) < 0)
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
