/* Listeners with connection hygiene (listen.h). The caps are enforced here rather than with
 * MHD_OPTION_CONNECTION_LIMIT and MHD_OPTION_PER_IP_CONNECTION_LIMIT: at its own global
 * limit libmicrohttpd stops polling the listening socket, so new clients wait in the kernel
 * backlog (a stall); refusing in the accept policy closes them at once, and lets us count
 * why. libmicrohttpd's own limit is kept above ours as a backstop. */
#include "listen.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#include "clock.h"
#include "hash.h"
#include "log.h"
#include "mem.h"

#define LISTEN_BUCKETS 1024
#define LISTEN_MEMORY_PER_CONN (64 * 1024) /* request head and buffers per connection */
#define LISTEN_BACKSTOP_SLACK 64
#define LISTEN_OPTS_MAX 16

/* Open connections from one client address. */
struct listen_peer {
    struct listen_peer *next;
    unsigned char addr[16];
    socklen_t len;
    int open;
};

/* One open connection: its peer entry, its socket, and since when (bh_clock_ms) it has been
 * waiting for a request head; 0 while a request is served or after an upgrade (/ws). */
struct listen_conn {
    struct listen_conn *prev, *next;
    struct listen_peer *peer;
    int fd;
    long long head_since; /* atomic: written by the connection's thread, read by the reaper */
};

struct bh_listen {
    struct MHD_Daemon *mhd;
    struct bh_listen_limits limits;
    struct bh_listen_stats *stats;
    struct bh_listen_stats own_stats; /* when the caller keeps none */
    MHD_AccessHandlerCallback handler;
    void *handler_cls;
    MHD_RequestCompletedCallback completed;
    void *completed_cls;
    pthread_mutex_t lock; /* peers, conns, open, stopping */
    int open;
    struct listen_peer *peers[LISTEN_BUCKETS];
    struct listen_conn conns; /* list head */
    pthread_cond_t wake;      /* the reaper's tick; signalled to stop it */
    pthread_t reaper;
    int reaper_running, stopping;
};

/* The address bytes of a client: IPv4-mapped IPv6 counts as its IPv4 address. */
static socklen_t listen_key(const struct sockaddr *sa, unsigned char out[16])
{
    if (sa && sa->sa_family == AF_INET) {
        memcpy(out, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return 4;
    }
    if (sa && sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            memcpy(out, a->s6_addr + 12, 4);
            return 4;
        }
        memcpy(out, a->s6_addr, 16);
        return 16;
    }
    return 0;
}

static unsigned listen_hash(const unsigned char *k, socklen_t n)
{
    return bh_hash_bytes(BH_HASH_SEED, k, n) % LISTEN_BUCKETS;
}

/* The peer entry for an address, or NULL; lock held. With create, made when missing. */
static struct listen_peer *listen_peer(struct bh_listen *l, const struct sockaddr *sa, int create)
{
    unsigned char k[16];
    socklen_t n = listen_key(sa, k);
    struct listen_peer **slot = &l->peers[listen_hash(k, n)];
    for (struct listen_peer *p = *slot; p; p = p->next)
        if (p->len == n && memcmp(p->addr, k, n) == 0)
            return p;
    if (!create)
        return NULL;
    struct listen_peer *p = bh_xcalloc(1, sizeof(*p));
    memcpy(p->addr, k, n);
    p->len = n;
    p->next = *slot;
    *slot = p;
    return p;
}

static void listen_peer_drop(struct bh_listen *l, struct listen_peer *gone)
{
    struct listen_peer **slot = &l->peers[listen_hash(gone->addr, gone->len)];
    while (*slot != gone)
        slot = &(*slot)->next;
    *slot = gone->next;
    free(gone);
}

/* Runs on the accept thread before libmicrohttpd takes a new connection. */
static enum MHD_Result listen_admit(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    struct bh_listen *l = cls;
    pthread_mutex_lock(&l->lock);
    struct listen_peer *p = listen_peer(l, addr, 0);
    int global = l->open >= l->limits.max_conns;
    int per_ip = p && p->open >= l->limits.max_per_ip;
    pthread_mutex_unlock(&l->lock);
    if (global)
        __atomic_add_fetch(&l->stats->refused_global, 1, __ATOMIC_RELAXED);
    else if (per_ip)
        __atomic_add_fetch(&l->stats->refused_per_ip, 1, __ATOMIC_RELAXED);
    return global || per_ip ? MHD_NO : MHD_YES;
}

static void listen_started(struct bh_listen *l, struct MHD_Connection *conn, void **ctx)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const union MHD_ConnectionInfo *fd =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct listen_conn *c = bh_xcalloc(1, sizeof(*c));
    c->fd = fd ? fd->connect_fd : -1;
    c->head_since = bh_clock_ms();
    pthread_mutex_lock(&l->lock);
    c->peer = listen_peer(l, ci ? ci->client_addr : NULL, 1);
    c->peer->open++;
    l->open++;
    c->next = l->conns.next;
    c->prev = &l->conns;
    c->next->prev = c;
    l->conns.next = c;
    pthread_mutex_unlock(&l->lock);
    *ctx = c;
    __atomic_add_fetch(&l->stats->accepted, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&l->stats->open, 1, __ATOMIC_RELAXED);
}

/* libmicrohttpd reports the close before it closes the socket, so once the entry is unlinked
 * under the lock the reaper can no longer shut down a descriptor number reused by then. */
static void listen_closed(struct bh_listen *l, void **ctx)
{
    struct listen_conn *c = *ctx;
    if (!c)
        return;
    pthread_mutex_lock(&l->lock);
    c->prev->next = c->next;
    c->next->prev = c->prev;
    if (--c->peer->open == 0)
        listen_peer_drop(l, c->peer);
    l->open--;
    pthread_mutex_unlock(&l->lock);
    free(c);
    *ctx = NULL;
    __atomic_sub_fetch(&l->stats->open, 1, __ATOMIC_RELAXED);
}

static void listen_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    if (code == MHD_CONNECTION_NOTIFY_STARTED)
        listen_started(cls, conn, socket_context);
    else
        listen_closed(cls, socket_context);
}

static void listen_head_clock(struct MHD_Connection *conn, long long since)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct listen_conn *c = ci ? ci->socket_context : NULL;
    if (c)
        __atomic_store_n(&c->head_since, since, __ATOMIC_RELAXED);
}

/* Every request passes here: its head has arrived, so the head deadline stops. */
static enum MHD_Result listen_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **req_ctx)
{
    struct bh_listen *l = cls;
    listen_head_clock(conn, 0);
    return l->handler(l->handler_cls, conn, url, method, version, upload_data, upload_data_size,
                      req_ctx);
}

/* A request ended: on a kept-alive connection the next head's clock starts now. An upgraded
 * connection (101, /ws) is reported complete too, but lives on: it has no next head. */
static void listen_completed(void *cls, struct MHD_Connection *conn, void **req_ctx,
                             enum MHD_RequestTerminationCode toe)
{
    struct bh_listen *l = cls;
    const union MHD_ConnectionInfo *st =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_HTTP_STATUS);
    if (!st || st->http_status != MHD_HTTP_SWITCHING_PROTOCOLS)
        listen_head_clock(conn, bh_clock_ms());
    if (l->completed)
        l->completed(l->completed_cls, conn, req_ctx, toe);
}

/* Shuts down (lock held) every connection whose request head is overdue; libmicrohttpd then
 * sees the end of the stream and closes it on its own thread. */
static void listen_reap(struct bh_listen *l, long long now)
{
    long long limit = (long long)l->limits.head_timeout_s * 1000;
    for (struct listen_conn *c = l->conns.next; c != &l->conns; c = c->next) {
        long long since = __atomic_load_n(&c->head_since, __ATOMIC_RELAXED);
        if (!since || now - since < limit || c->fd < 0)
            continue;
        shutdown(c->fd, SHUT_RDWR);
        __atomic_store_n(&c->head_since, 0, __ATOMIC_RELAXED);
        __atomic_add_fetch(&l->stats->head_timeouts, 1, __ATOMIC_RELAXED);
    }
}

/* The head deadline: libmicrohttpd's own timeout is per inactivity, so a client sending one
 * byte at a time could hold a connection forever without ever finishing its request. */
static void *listen_reaper(void *arg)
{
    struct bh_listen *l = arg;
    pthread_mutex_lock(&l->lock);
    while (!l->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&l->wake, &l->lock, &ts);
        listen_reap(l, bh_clock_ms());
    }
    pthread_mutex_unlock(&l->lock);
    return NULL;
}

static void listen_reaper_start(struct bh_listen *l)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&l->wake, &a);
    pthread_condattr_destroy(&a);
    if (l->limits.head_timeout_s > 0)
        l->reaper_running = pthread_create(&l->reaper, NULL, listen_reaper, l) == 0;
    if (l->limits.head_timeout_s > 0 && !l->reaper_running)
        bh_warn("listen", "no head-deadline thread: request heads are bounded by inactivity only");
}

static void listen_reaper_stop(struct bh_listen *l)
{
    pthread_mutex_lock(&l->lock);
    l->stopping = 1;
    pthread_cond_signal(&l->wake);
    pthread_mutex_unlock(&l->lock);
    if (l->reaper_running)
        pthread_join(l->reaper, NULL);
    l->reaper_running = 0;
}

static int listen_addr(const struct bh_listen_cfg *cfg, struct sockaddr_in *sa, struct bh_err *err)
{
    const char *host = strcmp(cfg->host, "localhost") == 0 ? "127.0.0.1" : cfg->host;
    *sa = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)cfg->port)};
    if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
        return bh_err_set(err, BH_EINVAL, "%s address %s is not an IPv4 address", cfg->what,
                          cfg->host);
    return 0;
}

static void listen_opt(struct MHD_OptionItem *o, int *n, enum MHD_OPTION opt, intptr_t v, void *p)
{
    o[(*n)++] = (struct MHD_OptionItem){opt, v, p};
}

/* The option list: everything but the address goes through MHD_OPTION_ARRAY. */
static void listen_options(struct bh_listen *l, const struct bh_listen_cfg *cfg,
                           struct MHD_OptionItem o[LISTEN_OPTS_MAX])
{
    int n = 0;
    listen_opt(o, &n, MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)listen_notify, l);
    listen_opt(o, &n, MHD_OPTION_CONNECTION_LIMIT,
               (intptr_t)cfg->limits.max_conns + LISTEN_BACKSTOP_SLACK, NULL);
    listen_opt(o, &n, MHD_OPTION_CONNECTION_TIMEOUT, cfg->limits.idle_timeout_s, NULL);
    listen_opt(o, &n, MHD_OPTION_CONNECTION_MEMORY_LIMIT, LISTEN_MEMORY_PER_CONN, NULL);
    listen_opt(o, &n, MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)listen_completed, l);
    if (cfg->unescape)
        listen_opt(o, &n, MHD_OPTION_UNESCAPE_CALLBACK, (intptr_t)cfg->unescape, NULL);
    if (cfg->tls_cert) {
        listen_opt(o, &n, MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)cfg->tls_cert);
        listen_opt(o, &n, MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)cfg->tls_key);
    }
    listen_opt(o, &n, MHD_OPTION_END, 0, NULL);
}

int bh_listen_start(const struct bh_listen_cfg *cfg, struct bh_listen **out, struct bh_err *err)
{
    struct sockaddr_in sa;
    if (!cfg->has_listen_fd && listen_addr(cfg, &sa, err) < 0)
        return -1;
    if (cfg->tls_cert && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
        return bh_err_set(err, BH_EIO, "libmicrohttpd was built without TLS");
    struct bh_listen *l = bh_xcalloc(1, sizeof(*l));
    pthread_mutex_init(&l->lock, NULL);
    l->limits = cfg->limits;
    l->stats = cfg->stats ? cfg->stats : &l->own_stats;
    l->handler = cfg->handler;
    l->handler_cls = cfg->handler_cls;
    l->completed = cfg->completed;
    l->completed_cls = cfg->completed_cls;
    l->conns.next = l->conns.prev = &l->conns;
    listen_reaper_start(l);
    struct MHD_OptionItem opts[LISTEN_OPTS_MAX];
    listen_options(l, cfg, opts);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL_INTERNAL_THREAD |
                     MHD_USE_ERROR_LOG | cfg->extra_flags | (cfg->tls_cert ? MHD_USE_TLS : 0);
    if (cfg->has_listen_fd)
        l->mhd =
            MHD_start_daemon(flags, 0, listen_admit, l, listen_handler, l, MHD_OPTION_LISTEN_SOCKET,
                             (MHD_socket)cfg->listen_fd, MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    else
        l->mhd =
            MHD_start_daemon(flags, 0, listen_admit, l, listen_handler, l, MHD_OPTION_SOCK_ADDR,
                             (struct sockaddr *)&sa, MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    if (!l->mhd) {
        bh_listen_stop(l);
        if (cfg->has_listen_fd)
            return bh_err_set(err, BH_EIO, "cannot serve the %s on %s", cfg->what, cfg->host);
        return bh_err_set(err, BH_EIO, "cannot listen on %s:%d for the %s (in use?)", cfg->host,
                          cfg->port, cfg->what);
    }
    *out = l;
    return 0;
}

int bh_listen_port(const struct bh_listen *l)
{
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(l->mhd, MHD_DAEMON_INFO_BIND_PORT);
    return i ? i->port : -1;
}

void bh_listen_stop(struct bh_listen *l)
{
    if (!l)
        return;
    /* First the reaper: it must not shut down descriptors while libmicrohttpd closes them. */
    listen_reaper_stop(l);
    if (l->mhd)
        MHD_stop_daemon(l->mhd);
    for (int i = 0; i < LISTEN_BUCKETS; i++) {
        while (l->peers[i]) {
            struct listen_peer *p = l->peers[i];
            l->peers[i] = p->next;
            free(p);
        }
    }
    pthread_cond_destroy(&l->wake);
    pthread_mutex_destroy(&l->lock);
    free(l);
}

void bh_listen_retry_after(struct MHD_Response *resp, int secs)
{
    if (secs <= 0)
        return;
    char v[16];
    snprintf(v, sizeof(v), "%d", secs);
    MHD_add_response_header(resp, "Retry-After", v);
}

int bh_listen_is_loopback(const char *host)
{
    return strcmp(host, "localhost") == 0 || strncmp(host, "127.", 4) == 0;
}

void bh_listen_client_addr(struct MHD_Connection *conn, char out[64])
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    unsigned char k[16];
    socklen_t n = listen_key(ci ? ci->client_addr : NULL, k);
    if (!n || !inet_ntop(n == 4 ? AF_INET : AF_INET6, k, out, 64))
        snprintf(out, 64, "?");
}

long bh_listen_raise_nofile(void)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) < 0)
        return -1;
    if (r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &r) < 0)
            bh_warn("listen", "cannot raise the open-file limit to %llu",
                    (unsigned long long)r.rlim_max);
        getrlimit(RLIMIT_NOFILE, &r);
    }
    return r.rlim_cur == RLIM_INFINITY ? 1L << 30 : (long)r.rlim_cur;
}
