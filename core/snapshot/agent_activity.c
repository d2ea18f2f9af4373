/* What the snapshot agent tells the daemon's idle detection about its Pod (agent.h, GET
 * /v1/activity). The daemon cannot see a Pod's counters (no kubelet stats in the API it
 * speaks), but the agent shares the Pod's network namespace: it lists the namespace's TCP
 * sockets through sock_diag (what `ss -ti` reads; no privilege needed) and counts as activity
 * every byte a socket acknowledged or received since the last look and every connection it
 * had not seen (a short one still shows as TIME-WAIT). Its own port is left out (the daemon's
 * questions would keep every Pod awake; a client of that port inside the Pod too), and so is the
 * kubelet's address (probes are activity no more than local mode's probes over loopback are).
 * Sampling runs every second so that a connection opened and closed between two questions is still
 * seen. The files side is the newest mtime under the watched directories, which the agent has
 * mounted. */
#include "agent_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fs.h"
#include "log.h"
#include "mem.h"

#define ACT_SAMPLE_MS 1000
#define ACT_SCAN_MAX_ENTRIES 20000
#define ACT_RECV_BUF 32768
#define ACT_TCP_LISTEN 10 /* TCP_LISTEN of the kernel's TCP states */

struct act_list {
    struct bh_agent_socket *v;
    size_t n, cap;
};

static void act_list_add(struct act_list *l, uint64_t cookie, uint64_t bytes)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->v = bh_xrealloc(l->v, l->cap * sizeof(*l->v));
    }
    l->v[l->n++] = (struct bh_agent_socket){cookie, bytes};
}

static int act_cmp(const void *a, const void *b)
{
    uint64_t x = ((const struct bh_agent_socket *)a)->cookie;
    uint64_t y = ((const struct bh_agent_socket *)b)->cookie;
    return x < y ? -1 : x > y;
}

/* Sockets of the agent itself and the kubelet's probes are not the workload's activity. */
static int act_counts(const struct bh_agent_activity *t, const struct inet_diag_msg *m)
{
    if (m->idiag_state == ACT_TCP_LISTEN || ntohs(m->id.idiag_sport) == t->own_port ||
        ntohs(m->id.idiag_dport) == t->own_port)
        return 0;
    if (t->probe_family == AF_INET && m->idiag_family == AF_INET)
        return memcmp(m->id.idiag_dst, &t->probe, 4) != 0;
    if (t->probe_family == AF_INET6 && m->idiag_family == AF_INET6)
        return memcmp(m->id.idiag_dst, &t->probe, 16) != 0;
    return 1;
}

static uint64_t act_bytes(const struct nlmsghdr *h, const struct inet_diag_msg *m)
{
    int len = (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof(*m));
    for (const struct rtattr *a = (const struct rtattr *)(m + 1); RTA_OK(a, len);
         a = RTA_NEXT(a, len)) {
        if (a->rta_type != INET_DIAG_INFO ||
            RTA_PAYLOAD(a) <
                (int)(offsetof(struct tcp_info, tcpi_bytes_received) + sizeof(uint64_t)))
            continue;
        const struct tcp_info *ti = RTA_DATA(a);
        return ti->tcpi_bytes_acked + ti->tcpi_bytes_received;
    }
    return 0; /* TIME-WAIT: no counters left, it counts as a connection seen */
}

/* Reads one dump's answer into l; 1 when the dump is complete. */
static int act_read(int fd, const struct bh_agent_activity *t, struct act_list *l,
                    struct bh_err *err)
{
    char buf[ACT_RECV_BUF] __attribute__((aligned(__alignof__(struct nlmsghdr))));
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0)
        return errno == EINTR ? 0 : bh_err_errno(err, BH_EIO, "sock_diag: recv");
    int len = (int)n;
    for (const struct nlmsghdr *h = (const struct nlmsghdr *)buf; NLMSG_OK(h, len);
         h = NLMSG_NEXT(h, len)) {
        if (h->nlmsg_type == NLMSG_DONE)
            return 1;
        if (h->nlmsg_type == NLMSG_ERROR) {
            const struct nlmsgerr *e = NLMSG_DATA(h);
            errno = -e->error;
            return bh_err_errno(err, BH_EIO, "sock_diag: dump");
        }
        const struct inet_diag_msg *m = NLMSG_DATA(h);
        if (h->nlmsg_len >= NLMSG_LENGTH(sizeof(*m)) && act_counts(t, m))
            act_list_add(l, (uint64_t)m->id.idiag_cookie[0] | (uint64_t)m->id.idiag_cookie[1] << 32,
                         act_bytes(h, m));
    }
    return 0;
}

static int act_dump(int fd, int family, const struct bh_agent_activity *t, struct act_list *l,
                    struct bh_err *err)
{
    struct {
        struct nlmsghdr h;
        struct inet_diag_req_v2 r;
    } req = {.h = {.nlmsg_len = sizeof(req),
                   .nlmsg_type = SOCK_DIAG_BY_FAMILY,
                   .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP},
             .r = {.sdiag_family = (uint8_t)family,
                   .sdiag_protocol = IPPROTO_TCP,
                   .idiag_ext = 1 << (INET_DIAG_INFO - 1),
                   .idiag_states = ~0U}};
    if (send(fd, &req, sizeof(req), 0) < 0)
        return bh_err_errno(err, BH_EIO, "sock_diag: send");
    int rc;
    while ((rc = act_read(fd, t, l, err)) == 0)
        ;
    return rc < 0 ? -1 : 0;
}

/* Every TCP socket of the namespace that counts, sorted by cookie. */
static int act_scan(const struct bh_agent_activity *t, struct act_list *l, struct bh_err *err)
{
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0)
        return bh_err_errno(err, BH_EIO, "sock_diag: socket");
    int rc = act_dump(fd, AF_INET, t, l, err);
    if (rc == 0)
        rc = act_dump(fd, AF_INET6, t, l, err);
    close(fd);
    if (rc == 0 && l->n > 1)
        qsort(l->v, l->n, sizeof(*l->v), act_cmp);
    return rc;
}

/* Locked. Adds what moved since the last scan to the counter and keeps this scan. */
static void act_account(struct bh_agent_activity *t, struct act_list *now)
{
    for (size_t i = 0; i < now->n; i++) {
        const struct bh_agent_socket *was =
            t->n_seen ? bsearch(&now->v[i], t->seen, t->n_seen, sizeof(*t->seen), act_cmp) : NULL;
        if (!was)
            t->net += 1 + now->v[i].bytes;
        else if (now->v[i].bytes > was->bytes)
            t->net += now->v[i].bytes - was->bytes;
    }
    free(t->seen);
    t->seen = now->v;
    t->n_seen = now->n;
    *now = (struct act_list){0};
}

int bh_agent_activity_sample(struct bh_agent_activity *t, struct bh_err *err)
{
    struct act_list now = {0};
    if (act_scan(t, &now, err) < 0) {
        free(now.v);
        return -1;
    }
    pthread_mutex_lock(&t->mu);
    act_account(t, &now);
    pthread_mutex_unlock(&t->mu);
    return 0;
}

static void *act_loop(void *arg)
{
    struct bh_agent_activity *t = arg;
    struct pollfd p = {.fd = t->stop[0], .events = POLLIN};
    int warned = 0;
    for (;;) {
        int r = poll(&p, 1, ACT_SAMPLE_MS);
        if (r > 0)
            return NULL; /* stopping */
        struct bh_err err = {0};
        if (r == 0 && bh_agent_activity_sample(t, &err) < 0 && !warned++)
            bh_warn("agent", "activity: %s", err.msg);
    }
}

int bh_agent_activity_start(struct bh_agent_activity *t, const struct bh_agent_cfg *cfg, int port,
                            struct bh_err *err)
{
    memset(t, 0, sizeof(*t));
    t->cfg = cfg;
    t->own_port = (uint16_t)port;
    t->stop[0] = t->stop[1] = -1;
    if (cfg->probe_peer && inet_pton(AF_INET, cfg->probe_peer, &t->probe) == 1)
        t->probe_family = AF_INET;
    else if (cfg->probe_peer && inet_pton(AF_INET6, cfg->probe_peer, &t->probe) == 1)
        t->probe_family = AF_INET6;
    else if (cfg->probe_peer)
        return bh_err_set(err, BH_EINVAL, "probe peer %s: not an IP address", cfg->probe_peer);
    pthread_mutex_init(&t->mu, NULL);
    if (bh_agent_activity_sample(t, err) < 0 || pipe2(t->stop, O_CLOEXEC) < 0 ||
        pthread_create(&t->thread, NULL, act_loop, t) != 0) {
        if (!err->code)
            bh_err_errno(err, BH_EIO, "activity sampler");
        bh_agent_activity_stop(t);
        return -1;
    }
    t->running = 1;
    return 0;
}

void bh_agent_activity_stop(struct bh_agent_activity *t)
{
    if (t->running) {
        BH_IGNORE(write(t->stop[1], "x", 1));
        pthread_join(t->thread, NULL);
        t->running = 0;
    }
    for (int i = 0; i < 2; i++)
        if (t->stop[i] >= 0)
            close(t->stop[i]);
    t->stop[0] = t->stop[1] = -1;
    free(t->seen);
    t->seen = NULL;
    t->n_seen = 0;
    pthread_mutex_destroy(&t->mu);
}

long long bh_agent_activity_net(struct bh_agent_activity *t)
{
    pthread_mutex_lock(&t->mu);
    long long n = (long long)t->net;
    pthread_mutex_unlock(&t->mu);
    return n;
}

long long bh_agent_activity_newest_mtime(const struct bh_agent_activity *t)
{
    long long newest = 0;
    for (char *const *w = t->cfg->watch; w && *w; w++) {
        long long ms = bh_fs_newest_mtime_in_root(t->cfg->root, *w, ACT_SCAN_MAX_ENTRIES);
        if (ms > newest)
            newest = ms;
    }
    return newest;
}
