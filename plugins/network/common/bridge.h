/* Code shared by the bridged network plugins (`unrestricted`, `restricted`), compiled into
 * each .so (hidden there): a host bridge with a leased subnet, a veth pair per instance, and
 * an nftables ruleset per bridge.
 *
 * nftables layout, per bridge BR (so daemons with their own bridges never clash):
 *  - `table bridge boilerhouse_BR`: sets `ifaces` (veths) and `ports` (veth . address), one per
 * attached instance; a frame entering the bridge from a port must carry that port's leased IPv4
 *    source (IP and ARP), or it is dropped. No instance can spoof another's address, which
 *    matters because the egress policy is keyed by source address.
 *  - `table inet boilerhouse_BR`: the plugin's own policy (NAT, host protection, redirects).
 * Both are rebuilt atomically from generated text at init (one libnftables transaction), after
 * which the elements of instances that still hold a lease are restored. Bridge ports are isolated
 * (bridge_slave isolated on): instances never reach each other at layer 2. */
#ifndef BH_NET_COMMON_BRIDGE_H
#define BH_NET_COMMON_BRIDGE_H

#include <boilerhouse/plugin.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>

/* Set by each plugin's bh_plugin_entry. */
extern const struct bh_host_api *bhn_host;
/* The plugin instance (set by init): a network plugin has one instance per daemon. */
extern struct bh_plugin_handle *bhn_handle;

/* Addresses are host byte order throughout; bhn_ip_text formats one into buf[16]. */
void bhn_ip_text(uint32_t addr, char buf[16]);

struct bhn_nft; /* nft.c */

struct bhn_bridge {
    const char *plugin; /* plugin name, for logs and the state dir */
    char bridge[16];    /* IFNAMSIZ */
    uint32_t net;       /* subnet address */
    int prefix;
    int mtu;
    char subnet[20];  /* a.b.c.d/p */
    char gateway[16]; /* .1, the bridge's address */
    char table[32];   /* boilerhouse_<bridge> */
    char dir[PATH_MAX];
    char leases[PATH_MAX];
    struct bhn_nft *nft; /* owned: bhn_close */
};

/* The host veth's name derives from the leased address, which is unique among live instances
 * (the peer is eth0 in the instance's namespace). */
struct bhn_names {
    char host_if[16]; /* bhv<hex ip> */
    char ip[16];
    char cidr[20];
    char mac[18]; /* 02:42:<ip>, as Docker derives it: see bhn_names_for */
};

/* Reads the `bridge`, `subnet` and `mtu` keys every bridged plugin declares and opens the
 * nftables context; bhn_close releases it (also after a failed configure). */
int bhn_configure(struct bhn_bridge *b, const char *plugin, struct bh_err *err);
void bhn_close(struct bhn_bridge *b);
/* Idempotent: state dirs, leftover temp files, the bridge (kept if it exists) with the
 * gateway address, IPv4 forwarding on. */
int bhn_bridge_up(const struct bhn_bridge *b, struct bh_err *err);
/* Replaces both tables with the bridge table plus inet_body (the inner text of the inet
 * table), in one nftables transaction, then restores the port elements of leased instances
 * whose veth still exists. */
int bhn_tables_apply(const struct bhn_bridge *b, const char *inet_body, struct bh_err *err);
/* The host's own IPv4 addresses ("a, b, c"), over rtnetlink (netlink.c). */
int bhn_host_addrs(char *out, size_t outlen, struct bh_err *err);

/* Instance ids become file contents and log text: [a-z0-9-]{1,63} only. */
int bhn_check_id(const char *id, struct bh_err *err);
/* Leases an address, creates the veth (replacing a stale one), wires the namespace (eth0,
 * lo, default route via the gateway) and registers the port; undoes itself on failure. */
int bhn_attach(const struct bhn_bridge *b, const struct bh_net_request *req, struct bhn_names *n,
               struct bh_err *err);
/* Removes the instance's veth, port element and lease; fine if nothing is left. For each
 * address released, calls on_release first (may be NULL). */
int bhn_detach(const struct bhn_bridge *b, const char *id,
               void (*on_release)(const char *ip, void *ctx), void *ctx, struct bh_err *err);

/* Host ports, spec.network.expose[].host: every inet table has a map `expose` (host port ->
 * instance address . guest port) and a prerouting chain DNATing TCP to any host address on
 * such a port, unless it comes from the plugin's own bridge; the plugin's forward chain must
 * accept `ct status dnat` flows of its bridge. A port is published once per daemon, across
 * plugins (a file per port under <state>/network-expose): publishing a port another instance
 * holds is a BH_ECONFLICT error. Loopback (127.0.0.1:host) is not published. */
int bhn_expose_publish(const struct bhn_bridge *b, const struct bh_net_request *req, const char *ip,
                       struct bh_err *err);
/* Removes every port the instance published through this plugin; fine if none. */
void bhn_expose_unpublish(const struct bhn_bridge *b, const char *id);

/* nftables in process (nft.c): text as `nft -f` reads it, applied as one transaction, with
 * nft's error message in err. Thread-safe: calls on one context are serialised. */
int bhn_nft_open(struct bhn_nft **out, struct bh_err *err);
void bhn_nft_close(struct bhn_nft *nft);
int bhn_nft_run(struct bhn_nft *nft, const char *text, struct bh_err *err);

/* Veths over rtnetlink (netlink.c), no processes. bhn_veth_wire replaces a stale n->host_if,
 * creates the pair on the bridge with the peer in the namespace at netns_path (named eth0,
 * MAC n->mac), isolates the port and sets it up, then inside: n->cidr on eth0, eth0 and lo
 * up, the default route via the gateway. On failure the caller deletes the host end, which
 * takes the peer with it. */
int bhn_veth_wire(const struct bhn_bridge *b, const char *netns_path, const struct bhn_names *n,
                  struct bh_err *err);
/* Deletes a host-side veth (its peer goes with it); one that is already gone is fine. */
int bhn_link_del(const char *ifname, struct bh_err *err);
/* The bridge (created unless it exists), the gateway address on it (replaced), up. */
int bhn_bridge_link(const struct bhn_bridge *b, struct bh_err *err);

/* Leases: one file per address, <dir>/<a.b.c.d>, holding the instance id. The file appears
 * with its content already in place (link() of a written temp file), so a crash never leaves
 * a lease that names nobody, and link()'s EEXIST makes two threads never share an address. */
int bhn_lease_acquire(const char *dir, uint32_t net, int prefix, const char *id, uint32_t *addr,
                      struct bh_err *err);
/* 1 and *addr set if some lease names id, 0 if none. */
int bhn_lease_lookup(const char *dir, const char *id, uint32_t *addr, struct bh_err *err);
int bhn_lease_release(const char *dir, uint32_t addr, struct bh_err *err);
/* Removes temp files a crash left between writing and linking a lease. */
int bhn_lease_clean(const char *dir, struct bh_err *err);
/* Calls fn for every lease; stops at the first non-zero return and returns it. */
typedef int (*bhn_lease_fn)(uint32_t addr, const char *id, void *ctx, struct bh_err *err);
int bhn_lease_each(const char *dir, bhn_lease_fn fn, void *ctx, struct bh_err *err);

#endif
