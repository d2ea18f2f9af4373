/* Links, addresses and routes over rtnetlink (libnl-route-3), in process: attach used to run
 * `ip -batch` on the host and `nsenter ... ip -batch` inside, two processes per claim. Also
 * the bridge at init and the host's address list.
 *
 * The host end is created on the bridge with the peer already in the instance's namespace,
 * named eth0 and carrying its MAC; the port is isolated before it goes up. Inside, addresses,
 * links and routes are set through a socket opened in that namespace by a throwaway thread
 * (setns moves only the calling thread, and the daemon's other threads must never see a
 * changed namespace; a socket stays in the namespace it was created in). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/route.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bridge.h"

/* ---- sockets ----------------------------------------------------------------------------- */

struct bhn_nl_open {
    int netns_fd; /* -1: the caller's namespace */
    struct nl_sock *sk;
    int error; /* -NLE_* of nl_connect, or 0 */
    int sys_errno;
};

static void *bhn_nl_open_thread(void *arg)
{
    struct bhn_nl_open *o = arg;
    if (o->netns_fd >= 0 && setns(o->netns_fd, CLONE_NEWNET) < 0) {
        o->sys_errno = errno;
        return NULL;
    }
    o->error = nl_connect(o->sk, NETLINK_ROUTE);
    return NULL;
}

/* A route socket in the caller's namespace (netns_fd -1) or in netns_fd's; where names it. */
static int bhn_nl_connect(int netns_fd, const char *where, struct nl_sock **out, struct bh_err *err)
{
    struct bhn_nl_open o = {.netns_fd = netns_fd, .sk = nl_socket_alloc()};
    if (!o.sk)
        return bhn_host->err_set(bhn_handle, err, BH_EIO, "out of memory");
    pthread_t t;
    if (netns_fd < 0) {
        bhn_nl_open_thread(&o);
    } else if ((o.sys_errno = pthread_create(&t, NULL, bhn_nl_open_thread, &o)) == 0) {
        pthread_join(t, NULL);
    }
    if (o.sys_errno || o.error < 0) {
        nl_socket_free(o.sk);
        return bhn_host->err_set(bhn_handle, err, BH_EIO, "netlink socket in %s: %s", where,
                                 o.sys_errno ? strerror(o.sys_errno) : nl_geterror(o.error));
    }
    *out = o.sk;
    return 0;
}

static void bhn_nl_close(struct nl_sock **sk)
{
    nl_socket_free(*sk);
}

#define BHN_NL_AUTO __attribute__((cleanup(bhn_nl_close)))

static int bhn_nl_fail(const char *what, const char *ifname, const char *where, int nlerr,
                       struct bh_err *err)
{
    return bhn_host->err_set(bhn_handle, err, BH_EIO, "%s %s in %s: %s", what, ifname, where,
                             nl_geterror(nlerr));
}

/* ---- links ------------------------------------------------------------------------------- */

/* Sets a link up by name; isolated also makes it an isolated bridge port (IFLA_BRPORT_ISOLATED,
 * which libnl 3.7 has no setter for) in the same message, so the port is never up unisolated:
 * the bridge applies the slave data before the flags. */
static int bhn_nl_up(struct nl_sock *sk, const char *ifname, int isolated)
{
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC, .ifi_flags = IFF_UP, .ifi_change = IFF_UP};
    struct nl_msg *msg = nlmsg_alloc_simple(RTM_NEWLINK, NLM_F_REQUEST);
    if (!msg)
        return -NLE_NOMEM;
    struct nlattr *info, *data;
    if (nlmsg_append(msg, &ifi, sizeof(ifi), NLMSG_ALIGNTO) < 0 ||
        nla_put_string(msg, IFLA_IFNAME, ifname) < 0)
        goto toolong;
    if (isolated) {
        if (!(info = nla_nest_start(msg, IFLA_LINKINFO)) ||
            nla_put_string(msg, IFLA_INFO_SLAVE_KIND, "bridge") < 0 ||
            !(data = nla_nest_start(msg, IFLA_INFO_SLAVE_DATA)) ||
            nla_put_u8(msg, IFLA_BRPORT_ISOLATED, 1) < 0)
            goto toolong;
        nla_nest_end(msg, data);
        nla_nest_end(msg, info);
    }
    return nl_send_sync(sk, msg); /* frees msg */
toolong:
    nlmsg_free(msg);
    return -NLE_MSGSIZE;
}

static int bhn_nl_link_del(struct nl_sock *sk, const char *ifname, struct bh_err *err)
{
    struct rtnl_link *link = rtnl_link_alloc();
    if (!link)
        return bhn_host->err_set(bhn_handle, err, BH_EIO, "out of memory");
    rtnl_link_set_name(link, ifname);
    int rc = rtnl_link_delete(sk, link);
    rtnl_link_put(link);
    /* Gone already (or between the caller's check and now) is what we wanted. */
    if (rc == 0 || rc == -NLE_NODEV || rc == -NLE_OBJ_NOTFOUND)
        return 0;
    return bhn_nl_fail("delete", ifname, "the host", rc, err);
}

int bhn_link_del(const char *ifname, struct bh_err *err)
{
    if (if_nametoindex(ifname) == 0)
        return 0;
    BHN_NL_AUTO struct nl_sock *sk = NULL;
    if (bhn_nl_connect(-1, "the host", &sk, err) < 0)
        return -1;
    return bhn_nl_link_del(sk, ifname, err);
}

/* The pair: host end n->host_if on the bridge (down), peer eth0 with n->mac in netns_fd. */
static int bhn_veth_add(struct nl_sock *sk, const struct bhn_bridge *b, const struct bhn_names *n,
                        int netns_fd, const char *where, struct bh_err *err)
{
    unsigned int master = if_nametoindex(b->bridge);
    if (master == 0)
        return bhn_host->err_set(bhn_handle, err, BH_EIO, "bridge %s: %s", b->bridge,
                                 strerror(errno));
    struct rtnl_link *veth = rtnl_link_veth_alloc();
    struct nl_addr *mac = NULL;
    if (!veth || nl_addr_parse(n->mac, AF_LLC, &mac) < 0) {
        rtnl_link_put(veth);
        return bhn_host->err_set(bhn_handle, err, BH_EIO, "veth %s: out of memory", n->host_if);
    }
    struct rtnl_link *peer = rtnl_link_veth_get_peer(veth);
    rtnl_link_set_name(veth, n->host_if);
    rtnl_link_set_mtu(veth, (unsigned int)b->mtu);
    rtnl_link_set_master(veth, (int)master);
    rtnl_link_set_name(peer, "eth0");
    rtnl_link_set_mtu(peer, (unsigned int)b->mtu);
    rtnl_link_set_addr(peer, mac);
    rtnl_link_set_ns_fd(peer, netns_fd);
    int rc = rtnl_link_add(sk, veth, NLM_F_CREATE | NLM_F_EXCL);
    nl_addr_put(mac);
    rtnl_link_put(peer);
    rtnl_link_put(veth);
    if (rc < 0)
        return bhn_host->err_set(bhn_handle, err, BH_EIO, "create veth %s (peer eth0 in %s): %s",
                                 n->host_if, where, nl_geterror(rc));
    if ((rc = bhn_nl_up(sk, n->host_if, 1)) < 0)
        return bhn_nl_fail("isolate and up", n->host_if, "the host", rc, err);
    return 0;
}

/* ---- addresses and routes ---------------------------------------------------------------- */

/* cidr on ifname, in the namespace sk was opened in (where names it); flags NLM_F_REPLACE
 * keeps an address already there. */
static int bhn_addr_add(struct nl_sock *sk, const char *ifname, const char *cidr, int flags,
                        const char *where, struct bh_err *err)
{
    struct rtnl_link *link = NULL;
    int rc = rtnl_link_get_kernel(sk, 0, ifname, &link);
    if (rc < 0)
        return bhn_nl_fail("find", ifname, where, rc, err);
    int ifindex = rtnl_link_get_ifindex(link);
    rtnl_link_put(link);
    struct rtnl_addr *addr = rtnl_addr_alloc();
    struct nl_addr *local = NULL;
    if (!addr || nl_addr_parse(cidr, AF_INET, &local) < 0) {
        rtnl_addr_put(addr);
        return bhn_host->err_set(bhn_handle, err, BH_EIO, "address %s: out of memory", cidr);
    }
    rtnl_addr_set_ifindex(addr, ifindex);
    rc = rtnl_addr_set_local(addr, local);
    if (rc == 0)
        rc = rtnl_addr_add(sk, addr, flags);
    nl_addr_put(local);
    rtnl_addr_put(addr);
    if (rc < 0)
        return bhn_host->err_set(bhn_handle, err, BH_EIO, "address %s on %s in %s: %s", cidr,
                                 ifname, where, nl_geterror(rc));
    return 0;
}

static int bhn_default_route(struct nl_sock *sk, const struct bhn_bridge *b, const char *where,
                             struct bh_err *err)
{
    struct rtnl_route *route = rtnl_route_alloc();
    struct rtnl_nexthop *nh = rtnl_route_nh_alloc();
    struct nl_addr *dst = NULL, *gw = NULL;
    int rc = -NLE_NOMEM;
    if (route && nh && nl_addr_parse("default", AF_INET, &dst) == 0 &&
        nl_addr_parse(b->gateway, AF_INET, &gw) == 0) {
        rtnl_route_set_family(route, AF_INET);
        rtnl_route_set_protocol(route, RTPROT_BOOT); /* as `ip route add` marks it */
        rtnl_route_set_dst(route, dst);
        rtnl_route_nh_set_gateway(nh, gw);
        rtnl_route_add_nexthop(route, nh); /* the route owns nh now */
        nh = NULL;
        rc = rtnl_route_add(sk, route, NLM_F_EXCL);
    }
    nl_addr_put(dst);
    nl_addr_put(gw);
    if (nh)
        rtnl_route_nh_free(nh);
    rtnl_route_put(route);
    if (rc < 0)
        return bhn_host->err_set(bhn_handle, err, BH_EIO, "default route via %s in %s: %s",
                                 b->gateway, where, nl_geterror(rc));
    return 0;
}

/* eth0 addressed and up, lo up, the default route via the gateway. */
static int bhn_inside(const struct bhn_bridge *b, const struct bhn_names *n, int netns_fd,
                      const char *where, struct bh_err *err)
{
    BHN_NL_AUTO struct nl_sock *sk = NULL;
    int rc;
    if (bhn_nl_connect(netns_fd, where, &sk, err) < 0 ||
        bhn_addr_add(sk, "eth0", n->cidr, 0, where, err) < 0)
        return -1;
    if ((rc = bhn_nl_up(sk, "eth0", 0)) < 0)
        return bhn_nl_fail("up", "eth0", where, rc, err);
    if ((rc = bhn_nl_up(sk, "lo", 0)) < 0)
        return bhn_nl_fail("up", "lo", where, rc, err);
    return bhn_default_route(sk, b, where, err);
}

/* ---- the bridge -------------------------------------------------------------------------- */

int bhn_bridge_link(const struct bhn_bridge *b, struct bh_err *err)
{
    BHN_NL_AUTO struct nl_sock *sk = NULL;
    if (bhn_nl_connect(-1, "the host", &sk, err) < 0)
        return -1;
    int rc = 0;
    /* A daemon restart finds the bridge from last time and keeps it. */
    if (if_nametoindex(b->bridge) == 0) {
        struct rtnl_link *br = rtnl_link_alloc();
        if (!br)
            return bhn_host->err_set(bhn_handle, err, BH_EIO, "out of memory");
        rtnl_link_set_name(br, b->bridge);
        if ((rc = rtnl_link_set_type(br, "bridge")) == 0)
            rc = rtnl_link_add(sk, br, NLM_F_CREATE);
        rtnl_link_put(br);
        if (rc < 0)
            return bhn_nl_fail("create bridge", b->bridge, "the host", rc, err);
    }
    char cidr[24];
    snprintf(cidr, sizeof(cidr), "%s/%d", b->gateway, b->prefix);
    if (bhn_addr_add(sk, b->bridge, cidr, NLM_F_REPLACE, "the host", err) < 0)
        return -1;
    if ((rc = bhn_nl_up(sk, b->bridge, 0)) < 0)
        return bhn_nl_fail("up", b->bridge, "the host", rc, err);
    return 0;
}

struct bhn_addr_list {
    char *out;
    size_t outlen, used;
    int full;
};

static void bhn_addr_list_one(struct nl_object *obj, void *arg)
{
    struct bhn_addr_list *l = arg;
    struct nl_addr *local = rtnl_addr_get_local((struct rtnl_addr *)obj);
    char ip[INET_ADDRSTRLEN];
    if (l->full || !local || nl_addr_get_family(local) != AF_INET ||
        !inet_ntop(AF_INET, nl_addr_get_binary_addr(local), ip, sizeof(ip)))
        return;
    int n = snprintf(l->out + l->used, l->outlen - l->used, "%s%s", l->used ? ", " : "", ip);
    if (n < 0 || (size_t)n >= l->outlen - l->used)
        l->full = 1;
    else
        l->used += (size_t)n;
}

int bhn_host_addrs(char *out, size_t outlen, struct bh_err *err)
{
    BHN_NL_AUTO struct nl_sock *sk = NULL;
    struct nl_cache *cache = NULL;
    if (bhn_nl_connect(-1, "the host", &sk, err) < 0)
        return -1;
    int rc = rtnl_addr_alloc_cache(sk, &cache);
    if (rc < 0)
        return bhn_host->err_set(bhn_handle, err, BH_EIO, "list the host's addresses: %s",
                                 nl_geterror(rc));
    struct bhn_addr_list l = {.out = out, .outlen = outlen};
    out[0] = '\0';
    nl_cache_foreach(cache, bhn_addr_list_one, &l);
    nl_cache_free(cache);
    if (l.full)
        return bhn_host->err_set(bhn_handle, err, BH_EIO, "too many host addresses");
    return 0;
}

/* ---- attach ------------------------------------------------------------------------------ */

int bhn_veth_wire(const struct bhn_bridge *b, const char *netns_path, const struct bhn_names *n,
                  struct bh_err *err)
{
    int fd = open(netns_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return bhn_host->err_set(bhn_handle, err, BH_EIO, "network namespace %s: %s", netns_path,
                                 strerror(errno));
    BHN_NL_AUTO struct nl_sock *sk = NULL;
    /* A stale veth of a crashed instance that held this address goes first. */
    int rc = bhn_nl_connect(-1, "the host", &sk, err);
    if (rc == 0 && if_nametoindex(n->host_if) != 0)
        rc = bhn_nl_link_del(sk, n->host_if, err);
    if (rc == 0)
        rc = bhn_veth_add(sk, b, n, fd, netns_path, err);
    if (rc == 0)
        rc = bhn_inside(b, n, fd, netns_path, err);
    close(fd);
    return rc;
}
