/* The egress proxy: listeners, per-source policies, upstream resolution, and one thread per
 * client connection (keep-alive, so no thread per request) serving transparent HTTP,
 * transparent TLS (passthrough or interception) and the explicit proxy. HTTP/1.1 messages
 * are framed properly in both directions (Content-Length, chunked, close-delimited), so
 * connections stay alive across requests and every request is checked on its own. */
#include "egress_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define EG_IO_BUF 16384
#define EG_MAX_HEADERS 100
#define EG_MAX_CONNS 4096
#define EG_MAX_CONNS_PER_SRC 512 /* one tenant cannot take every slot */
#define EG_IO_TIMEOUT_MS 30000
#define EG_CONNECT_TIMEOUT_MS 5000
#define EG_HELLO_TIMEOUT_MS 5000

enum eg_kind { EG_EXPLICIT, EG_HTTP, EG_TLS, EG_DNS_TCP, EG_N_LISTEN };

struct eg_src {
    char ip[INET6_ADDRSTRLEN];
    struct eg_policy *pol;
};

struct eg_hosts_entry {
    char *name;
    struct eg_addr addr;
};

struct eg_conn {
    struct egress *eg;
    enum eg_kind kind;
    int cfd, ufd; /* client and upstream sockets; shut down by egress_stop */
    char src[INET6_ADDRSTRLEN];
    struct eg_conn *prev, *next;
};

struct egress {
    const struct bh_host_api *host;
    struct bh_plugin_handle *handle;
    char *listen_ip;
    int ports[EG_N_LISTEN];
    int lfd[EG_N_LISTEN];
    int udp_fd;
    pthread_t threads[EG_N_LISTEN + 1];
    int n_threads;
    int stop_pipe[2];
    atomic_int stopping;
    int up_http_port, up_tls_port;

    pthread_rwlock_t lock; /* policies */
    struct eg_src *srcs;
    size_t n_srcs;
    struct eg_policy *dflt; /* of every source not in srcs; NULL: those are refused */

    struct eg_hosts_entry *hosts;
    size_t n_hosts;
    struct eg_tls *tls;

    pthread_mutex_t conn_mu;
    pthread_cond_t conn_cv;
    struct eg_conn *conns;
    int n_conns;

    pthread_mutex_t stats_mu; /* per-workload counters (egress_stats) */
    struct eg_stat *stats;
    int n_stats;
};

/* What the proxy did for one workload; "_unknown" is a source without a policy, "_other"
 * every workload past EG_MAX_STATS (the series a scrape shows stay bounded). */
struct eg_stat {
    char workload[64];
    unsigned long long requests, bytes, denials;
    struct eg_stat *next;
};
#define EG_MAX_STATS 256

/* ---- small helpers ----------------------------------------------------------------------- */

void eg_log(struct egress *eg, uint32_t lvl, const char *fmt, ...)
{
    if (!eg->host || !eg->host->log)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    eg->host->log(eg->handle, lvl, "egress: %s", line);
}

int eg_stopping(struct egress *eg)
{
    return atomic_load(&eg->stopping);
}

int eg_fail(struct bh_err *err, int code, const char *fmt, ...)
{
    if (!err)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    err->code = code;
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return -1;
}

static void set_timeouts(int fd, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

char *eg_xstrdup(const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d)
        abort();
    return d;
}

void *eg_xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz);
    if (!p)
        abort();
    return p;
}

/* ---- names ------------------------------------------------------------------------------- */

int eg_name_norm(const char *in, size_t len, char *out, size_t cap)
{
    if (len > 0 && in[len - 1] == '.')
        len--;
    if (len == 0 || len > 253 || len + 1 > cap)
        return -1;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        char c = (char)tolower((unsigned char)in[i]);
        if (c == '.') {
            if (label == 0)
                return -1;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_') {
            if (++label > 63)
                return -1;
        } else {
            return -1;
        }
        out[i] = c;
    }
    if (label == 0)
        return -1;
    out[len] = '\0';
    return 0;
}

/* IP literals in any spelling: [v6], dotted quads, and names whose last label is a number
 * (decimal, octal or 0x-hex: "2130706433", "0x7f.1"), which resolvers treat as addresses. */
static int is_ip_literal(const char *host)
{
    unsigned char tmp[16];
    if (host[0] == '[' || strchr(host, ':') || inet_pton(AF_INET, host, tmp) == 1)
        return 1;
    const char *last = strrchr(host, '.');
    last = last && last[1] ? last + 1 : host;
    if (last[0] == '0' && (last[1] == 'x' || last[1] == 'X'))
        return 1;
    if (!*last)
        return 0;
    for (const char *c = last; *c && *c != '.'; c++)
        if (!isdigit((unsigned char)*c))
            return 0;
    return 1;
}

static int pattern_match(const char *pat, const char *name)
{
    if (pat[0] == '*' && pat[1] == '.') {
        size_t pl = strlen(pat + 1), nl = strlen(name); /* ".example.com" */
        return nl > pl && strcmp(name + nl - pl, pat + 1) == 0;
    }
    return strcmp(pat, name) == 0;
}

int eg_policy_allows(const struct eg_policy *p, const char *name)
{
    for (size_t i = 0; i < p->n_allow; i++)
        if (pattern_match(p->allow[i], name))
            return 1;
    return eg_policy_cred(p, name) != NULL;
}

const struct eg_cred *eg_policy_cred(const struct eg_policy *p, const char *name)
{
    for (size_t i = 0; i < p->n_creds; i++)
        if (pattern_match(p->creds[i].domain, name))
            return &p->creds[i];
    return NULL;
}

/* ---- policies ---------------------------------------------------------------------------- */

static void policy_free(struct eg_policy *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n_allow; i++)
        free(p->allow[i]);
    for (size_t i = 0; i < p->n_creds; i++) {
        struct eg_cred *c = &p->creds[i];
        for (size_t j = 0; j < c->n; j++) {
            free(c->names[j]);
            if (c->values[j])
                OPENSSL_cleanse(c->values[j], strlen(c->values[j]));
            free(c->values[j]);
        }
        free(c->names);
        free(c->values);
        free(c->domain);
    }
    free(p->allow);
    free(p->creds);
    free(p->workload);
    free(p);
}

void eg_policy_put(struct eg_policy *p)
{
    if (p && atomic_fetch_sub(&p->refs, 1) == 1)
        policy_free(p);
}

struct eg_policy *eg_policy_get(struct egress *eg, const char *src_ip)
{
    struct eg_policy *p = NULL;
    pthread_rwlock_rdlock(&eg->lock);
    for (size_t i = 0; i < eg->n_srcs && !p; i++)
        if (strcmp(eg->srcs[i].ip, src_ip) == 0)
            p = eg->srcs[i].pol;
    if (!p)
        p = eg->dflt;
    if (p)
        atomic_fetch_add(&p->refs, 1);
    pthread_rwlock_unlock(&eg->lock);
    return p;
}

/* "name" or "*.name", normalized into a fresh string. */
static char *pattern_copy(const char *pat)
{
    char norm[EG_NAME_MAX];
    int wild = pat && pat[0] == '*' && pat[1] == '.';
    const char *rest = wild ? pat + 2 : pat;
    if (!rest || eg_name_norm(rest, strlen(rest), norm, sizeof(norm)) < 0 || is_ip_literal(norm))
        return NULL;
    char *out = eg_xcalloc(1, strlen(norm) + 3);
    sprintf(out, "%s%s", wild ? "*." : "", norm);
    return out;
}

static int header_name_valid(const char *s)
{
    if (!s || !*s)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
            return 0;
    return 1;
}

static int header_value_valid(const char *s)
{
    if (!s)
        return 0;
    for (; *s; s++)
        if (*s == '\r' || *s == '\n')
            return 0;
    return 1;
}

static int cred_copy(struct eg_cred *dst, const struct egress_credential *src, struct bh_err *err)
{
    if (!(dst->domain = pattern_copy(src->domain)))
        return eg_fail(err, BH_EINVAL, "egress: invalid credentials domain");
    dst->names = eg_xcalloc(src->n_headers, sizeof(char *));
    dst->values = eg_xcalloc(src->n_headers, sizeof(char *));
    for (size_t j = 0; j < src->n_headers; j++) {
        const struct egress_header *h = &src->headers[j];
        if (!header_name_valid(h->name) || !header_value_valid(h->value))
            return eg_fail(err, BH_EINVAL, "egress: invalid header for %s", dst->domain);
        dst->names[j] = eg_xstrdup(h->name);
        dst->values[j] = eg_xstrdup(h->value);
        dst->n = j + 1;
    }
    return 0;
}

static struct eg_policy *policy_copy(const struct egress_policy *src, struct bh_err *err)
{
    struct eg_policy *p = eg_xcalloc(1, sizeof(*p));
    atomic_init(&p->refs, 1);
    p->workload = eg_xstrdup(src->workload);
    if (src->n_credentials && !eg_workload_valid(p->workload)) {
        eg_fail(err, BH_EINVAL, "egress: invalid workload name");
        goto bad;
    }
    p->allow = eg_xcalloc(src->n_allow, sizeof(char *));
    for (; p->n_allow < src->n_allow; p->n_allow++)
        if (!(p->allow[p->n_allow] = pattern_copy(src->allowlist[p->n_allow]))) {
            eg_fail(err, BH_EINVAL, "egress: invalid allowlist entry \"%s\"",
                    src->allowlist[p->n_allow] ? src->allowlist[p->n_allow] : "");
            goto bad;
        }
    p->creds = eg_xcalloc(src->n_credentials, sizeof(*p->creds));
    for (; p->n_creds < src->n_credentials; p->n_creds++)
        if (cred_copy(&p->creds[p->n_creds], &src->credentials[p->n_creds], err) < 0) {
            p->n_creds++; /* free the partial entry too */
            goto bad;
        }
    return p;
bad:
    policy_free(p);
    return NULL;
}

static int ip_canon(const char *ip, char *out)
{
    unsigned char a[16];
    if (inet_pton(AF_INET, ip, a) == 1)
        return inet_ntop(AF_INET, a, out, INET6_ADDRSTRLEN) ? 0 : -1;
    if (inet_pton(AF_INET6, ip, a) == 1)
        return inet_ntop(AF_INET6, a, out, INET6_ADDRSTRLEN) ? 0 : -1;
    return -1;
}

int egress_set_policy(struct egress *eg, const char *src_ip, const struct egress_policy *p,
                      struct bh_err *err)
{
    char ip[INET6_ADDRSTRLEN];
    if (!src_ip || ip_canon(src_ip, ip) < 0)
        return eg_fail(err, BH_EINVAL, "egress: invalid source address");
    struct eg_policy *copy = policy_copy(p, err);
    if (!copy)
        return -1;
    struct eg_policy *old = NULL;
    pthread_rwlock_wrlock(&eg->lock);
    size_t i = 0;
    while (i < eg->n_srcs && strcmp(eg->srcs[i].ip, ip) != 0)
        i++;
    if (i == eg->n_srcs) {
        struct eg_src *n = realloc(eg->srcs, (eg->n_srcs + 1) * sizeof(*n));
        if (!n)
            abort();
        eg->srcs = n;
        snprintf(eg->srcs[i].ip, sizeof(eg->srcs[i].ip), "%s", ip);
        eg->srcs[i].pol = NULL;
        eg->n_srcs++;
    }
    old = eg->srcs[i].pol;
    eg->srcs[i].pol = copy;
    pthread_rwlock_unlock(&eg->lock);
    eg_policy_put(old);
    eg_log(eg, BH_LOG_DEBUG, "policy for %s: %zu allowed, %zu credential domains", ip,
           copy->n_allow, copy->n_creds);
    return 0;
}

int egress_set_default_policy(struct egress *eg, const struct egress_policy *p, struct bh_err *err)
{
    struct eg_policy *copy = NULL;
    if (p && !(copy = policy_copy(p, err)))
        return -1;
    pthread_rwlock_wrlock(&eg->lock);
    struct eg_policy *old = eg->dflt;
    eg->dflt = copy;
    pthread_rwlock_unlock(&eg->lock);
    eg_policy_put(old);
    if (copy)
        eg_log(eg, BH_LOG_DEBUG, "default policy: %zu allowed, %zu credential domains",
               copy->n_allow, copy->n_creds);
    return 0;
}

void egress_clear_policy(struct egress *eg, const char *src_ip)
{
    char ip[INET6_ADDRSTRLEN];
    struct eg_policy *old = NULL;
    if (!src_ip || ip_canon(src_ip, ip) < 0)
        return;
    pthread_rwlock_wrlock(&eg->lock);
    for (size_t i = 0; i < eg->n_srcs; i++)
        if (strcmp(eg->srcs[i].ip, ip) == 0) {
            old = eg->srcs[i].pol;
            eg->srcs[i] = eg->srcs[--eg->n_srcs];
            break;
        }
    pthread_rwlock_unlock(&eg->lock);
    eg_policy_put(old);
}

const char *egress_ca_cert(struct egress *eg, const char *workload, struct bh_err *err)
{
    return eg_tls_ca_path(eg->tls, workload, err);
}

int egress_ca_load(struct egress *eg, const char *workload, const char *crt_path,
                   const char *key_path, struct bh_err *err)
{
    return eg_tls_ca_add(eg->tls, workload, crt_path, key_path, err);
}

/* ---- resolution -------------------------------------------------------------------------- */

static void hosts_add(struct egress *eg, const struct eg_addr *a, const char *name)
{
    char norm[EG_NAME_MAX];
    if (eg_name_norm(name, strlen(name), norm, sizeof(norm)) < 0)
        return;
    struct eg_hosts_entry *n = realloc(eg->hosts, (eg->n_hosts + 1) * sizeof(*n));
    if (!n)
        abort();
    eg->hosts = n;
    eg->hosts[eg->n_hosts].name = eg_xstrdup(norm);
    eg->hosts[eg->n_hosts].addr = *a;
    eg->n_hosts++;
}

static void hosts_load(struct egress *eg, const char *path)
{
    FILE *f = path ? fopen(path, "re") : NULL;
    char line[1024];
    while (f && fgets(line, sizeof(line), f)) {
        char *save = NULL, *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *ip = strtok_r(line, " \t\r\n", &save);
        struct eg_addr a = {0};
        if (!ip)
            continue;
        if (inet_pton(AF_INET, ip, a.bytes) == 1)
            a.family = AF_INET;
        else if (inet_pton(AF_INET6, ip, a.bytes) == 1)
            a.family = AF_INET6;
        else
            continue;
        for (char *n = strtok_r(NULL, " \t\r\n", &save); n; n = strtok_r(NULL, " \t\r\n", &save))
            hosts_add(eg, &a, n);
    }
    if (f)
        fclose(f);
}

static size_t resolve_system(const char *name, int family, struct eg_addr *out, size_t cap)
{
    struct addrinfo hints = {.ai_family = family, .ai_socktype = SOCK_STREAM}, *res = NULL;
    size_t n = 0;
    if (getaddrinfo(name, NULL, &hints, &res) != 0)
        return 0;
    for (struct addrinfo *ai = res; ai && n < cap; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET) {
            out[n].family = AF_INET;
            memcpy(out[n].bytes, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, 4);
        } else if (ai->ai_family == AF_INET6) {
            out[n].family = AF_INET6;
            memcpy(out[n].bytes, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, 16);
        } else {
            continue;
        }
        n++;
    }
    freeaddrinfo(res);
    return n;
}

size_t eg_resolve(struct egress *eg, const char *name, int family, struct eg_addr *out, size_t cap)
{
    size_t n = 0;
    int listed = 0;
    for (size_t i = 0; i < eg->n_hosts; i++)
        if (strcmp(eg->hosts[i].name, name) == 0) {
            listed = 1;
            if (n < cap && (family == AF_UNSPEC || family == eg->hosts[i].addr.family))
                out[n++] = eg->hosts[i].addr;
        }
    return listed ? n : resolve_system(name, family, out, cap);
}

static int connect_addr(const struct eg_addr *a, int port)
{
    struct sockaddr_storage ss = {0};
    socklen_t len;
    if (a->family == AF_INET) {
        struct sockaddr_in *s = (struct sockaddr_in *)&ss;
        s->sin_family = AF_INET;
        s->sin_port = htons((uint16_t)port);
        memcpy(&s->sin_addr, a->bytes, 4);
        len = sizeof(*s);
    } else {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
        s->sin6_family = AF_INET6;
        s->sin6_port = htons((uint16_t)port);
        memcpy(&s->sin6_addr, a->bytes, 16);
        len = sizeof(*s);
    }
    int fd = socket(a->family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    int rc = connect(fd, (struct sockaddr *)&ss, len), soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (rc < 0 && errno == EINPROGRESS) {
        struct pollfd p = {fd, POLLOUT, 0};
        rc = poll(&p, 1, EG_CONNECT_TIMEOUT_MS) == 1 &&
                     getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0
                 ? 0
                 : -1;
    }
    if (rc < 0 || fcntl(fd, F_SETFL, 0) < 0) {
        close(fd);
        return -1;
    }
    set_timeouts(fd, EG_IO_TIMEOUT_MS);
    return fd;
}

/* ---- connections ------------------------------------------------------------------------- */

static void conn_set_upstream(struct eg_conn *c, int fd)
{
    pthread_mutex_lock(&c->eg->conn_mu);
    int old = c->ufd;
    c->ufd = fd;
    pthread_mutex_unlock(&c->eg->conn_mu);
    if (old >= 0)
        close(old);
}

static int upstream_connect(struct eg_conn *c, const char *name, int port)
{
    struct eg_addr addrs[8];
    size_t n = eg_resolve(c->eg, name, AF_UNSPEC, addrs, 8);
    for (size_t i = 0; i < n; i++) {
        int fd = connect_addr(&addrs[i], port);
        if (fd >= 0) {
            conn_set_upstream(c, fd);
            return fd;
        }
    }
    eg_log(c->eg, BH_LOG_INFO, "cannot reach %s:%d", name, port);
    return -1;
}

/* Buffered reader/writer over a socket or a TLS session. */
struct eg_io {
    int fd;
    SSL *ssl;
    unsigned long long bytes; /* read and written, for the workload's counters */
    size_t off, len;
    char buf[EG_IO_BUF];
};

static ssize_t io_raw_read(struct eg_io *io, void *p, size_t n)
{
    if (io->ssl) {
        int r = SSL_read(io->ssl, p, (int)(n > 65536 ? 65536 : n));
        if (r > 0)
            io->bytes += (unsigned long long)r;
        if (r > 0)
            return r;
        return SSL_get_error(io->ssl, r) == SSL_ERROR_ZERO_RETURN ? 0 : -1;
    }
    ssize_t r;
    do
        r = recv(io->fd, p, n, 0);
    while (r < 0 && errno == EINTR);
    io->bytes += r > 0 ? (unsigned long long)r : 0;
    return r;
}

static int io_write(struct eg_io *io, const void *p, size_t n)
{
    io->bytes += n;
    if (!io->ssl)
        return send_all(io->fd, p, n);
    while (n > 0) {
        int w = SSL_write(io->ssl, p, (int)(n > 65536 ? 65536 : n));
        if (w <= 0)
            return -1;
        p = (const char *)p + w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads more into the buffer: >0 bytes, 0 EOF, -1 error or full. */
static ssize_t io_fill(struct eg_io *io)
{
    if (io->off > 0) {
        memmove(io->buf, io->buf + io->off, io->len);
        io->off = 0;
    }
    if (io->len == sizeof(io->buf))
        return -1;
    ssize_t r = io_raw_read(io, io->buf + io->len, sizeof(io->buf) - io->len);
    if (r > 0)
        io->len += (size_t)r;
    return r;
}

static ssize_t io_read(struct eg_io *io, void *p, size_t n)
{
    if (io->len == 0)
        return io_raw_read(io, p, n);
    size_t k = n < io->len ? n : io->len;
    memcpy(p, io->buf + io->off, k);
    io->off += k;
    io->len -= k;
    return (ssize_t)k;
}

/* Copies exactly n bytes from src to dst. */
static int io_copy(struct eg_io *src, struct eg_io *dst, unsigned long long n)
{
    char tmp[EG_IO_BUF];
    while (n > 0) {
        ssize_t r = io_read(src, tmp, n < sizeof(tmp) ? n : sizeof(tmp));
        if (r <= 0 || io_write(dst, tmp, (size_t)r) < 0)
            return -1;
        n -= (unsigned long long)r;
    }
    return 0;
}

static int io_copy_to_eof(struct eg_io *src, struct eg_io *dst)
{
    char tmp[EG_IO_BUF];
    for (;;) {
        ssize_t r = io_read(src, tmp, sizeof(tmp));
        if (r == 0)
            return 0;
        if (r < 0 || io_write(dst, tmp, (size_t)r) < 0)
            return -1;
    }
}

/* Finds `delim` in the buffer, reading more as needed; returns the length up to and
 * including it, 0 on a clean EOF before any byte, -1 on error or overflow. */
static ssize_t io_until(struct eg_io *io, const char *delim)
{
    size_t dl = strlen(delim);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t); /* a head or line trickled in too slowly */
        if ((t.tv_sec - t0.tv_sec) * 1000 > EG_IO_TIMEOUT_MS)
            return -1;
        char *hit = memmem(io->buf + io->off, io->len, delim, dl);
        if (hit)
            return hit - (io->buf + io->off) + (ssize_t)dl;
        ssize_t r = io_fill(io);
        if (r == 0 && io->len == 0)
            return 0;
        if (r <= 0)
            return -1;
    }
}

/* Reads one line (CRLF-terminated, at most cap-1 bytes) into out, CRLF stripped. */
static int io_line(struct eg_io *io, char *out, size_t cap)
{
    ssize_t n = io_until(io, "\r\n");
    if (n < 2 || (size_t)n - 2 >= cap)
        return -1;
    memcpy(out, io->buf + io->off, (size_t)n - 2);
    out[n - 2] = '\0';
    io->off += (size_t)n;
    io->len -= (size_t)n;
    return 0;
}

/* ---- HTTP messages ----------------------------------------------------------------------- */

struct http_head {
    char raw[EG_IO_BUF + 1];
    char *start[3]; /* method target version, or version status reason */
    size_t nh;
    char *name[EG_MAX_HEADERS], *value[EG_MAX_HEADERS];
};

enum body_kind { BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_EOF };

static const char *head_get(const struct http_head *h, const char *name)
{
    for (size_t i = 0; i < h->nh; i++)
        if (strcasecmp(h->name[i], name) == 0)
            return h->value[i];
    return NULL;
}

static int head_line(struct http_head *h, char *line)
{
    char *colon = strchr(line, ':');
    if (!colon || colon == line || h->nh == EG_MAX_HEADERS)
        return -1;
    *colon = '\0';
    for (char *c = line; *c; c++)
        if (!isalnum((unsigned char)*c) && !strchr("!#$%&'*+-.^_`|~", *c))
            return -1;
    char *v = colon + 1, *end = v + strlen(v);
    while (*v == ' ' || *v == '\t')
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        *--end = '\0';
    for (char *c = v; *c; c++)
        if ((unsigned char)*c < 0x20 && *c != '\t')
            return -1;
    h->name[h->nh] = line;
    h->value[h->nh++] = v;
    return 0;
}

/* Reads and splits one message head: 1 ok, 0 clean EOF, -1 error. */
static int head_read(struct eg_io *io, struct http_head *h)
{
    ssize_t n = io_until(io, "\r\n\r\n");
    if (n <= 0)
        return (int)n;
    memcpy(h->raw, io->buf + io->off, (size_t)n);
    h->raw[n - 2] = '\0'; /* ends the last header line; the empty line goes */
    io->off += (size_t)n;
    io->len -= (size_t)n;
    if (memchr(h->raw, '\0', (size_t)n - 2))
        return -1;
    char *save = NULL, *line = strtok_r(h->raw, "\n", &save);
    h->nh = 0;
    for (int i = 0; i < 3; i++) { /* the reason phrase may be empty or absent */
        char *sp = line ? strsep(&line, i < 2 ? " \r" : "\r") : NULL;
        if ((!sp || !*sp) && i < 2)
            return -1;
        h->start[i] = sp ? sp : (char *)"";
    }
    while ((line = strtok_r(NULL, "\n", &save))) {
        size_t l = strlen(line);
        if (l == 0 || line[l - 1] != '\r' || line[0] == ' ' || line[0] == '\t')
            return -1; /* bare LF or obsolete folding */
        line[l - 1] = '\0';
        if (head_line(h, line) < 0)
            return -1;
    }
    return 1;
}

/* Framing of a message body by its headers; -1 for an ambiguous or unsupported one. */
static int body_framing(const struct http_head *h, enum body_kind *kind, unsigned long long *len)
{
    const char *te = NULL, *cl = NULL;
    for (size_t i = 0; i < h->nh; i++) {
        if (strcasecmp(h->name[i], "Transfer-Encoding") == 0) {
            if (te)
                return -1;
            te = h->value[i];
        } else if (strcasecmp(h->name[i], "Content-Length") == 0) {
            if (cl && strcmp(cl, h->value[i]) != 0)
                return -1;
            cl = h->value[i];
        }
    }
    if (te && cl)
        return -1;
    if (te) {
        *kind = BODY_CHUNKED;
        return strcasecmp(te, "chunked") == 0 ? 0 : -1;
    }
    if (!cl) {
        *kind = BODY_NONE;
        return 0;
    }
    char *end;
    if (!isdigit((unsigned char)cl[0]) || strlen(cl) > 18)
        return -1;
    *len = strtoull(cl, &end, 10);
    *kind = BODY_LENGTH;
    return *end ? -1 : 0;
}

static int copy_chunked(struct eg_io *src, struct eg_io *dst)
{
    char line[4096];
    for (;;) {
        if (io_line(src, line, sizeof(line) - 2) < 0)
            return -1;
        char *end;
        size_t digits = strspn(line, "0123456789abcdefABCDEF");
        if (digits == 0 || digits > 15)
            return -1;
        unsigned long long size = strtoull(line, &end, 16);
        if (*end && *end != ';' && *end != ' ' && *end != '\t')
            return -1;
        strcat(line, "\r\n");
        if (io_write(dst, line, strlen(line)) < 0)
            return -1;
        if (size == 0)
            break;
        if (io_copy(src, dst, size) < 0 || io_line(src, line, 3) < 0 || line[0] ||
            io_write(dst, "\r\n", 2) < 0)
            return -1;
    }
    do { /* trailers, then the empty line */
        if (io_line(src, line, sizeof(line) - 2) < 0)
            return -1;
        size_t l = strlen(line);
        memcpy(line + l, "\r\n", 3);
        if (io_write(dst, line, l + 2) < 0)
            return -1;
    } while (line[0] != '\r');
    return 0;
}

static int copy_body(struct eg_io *src, struct eg_io *dst, enum body_kind kind,
                     unsigned long long len)
{
    switch (kind) {
    case BODY_LENGTH:
        return io_copy(src, dst, len);
    case BODY_CHUNKED:
        return copy_chunked(src, dst);
    case BODY_EOF:
        return io_copy_to_eof(src, dst);
    default:
        return 0;
    }
}

struct sbuf {
    char p[EG_IO_BUF + 8192];
    size_t n;
    int overflow;
};

static void sb_add(struct sbuf *b, const char *a, const char *c, const char *d)
{
    const char *parts[3] = {a, c, d};
    for (int i = 0; i < 3; i++) {
        size_t l = parts[i] ? strlen(parts[i]) : 0;
        if (b->n + l >= sizeof(b->p)) {
            b->overflow = 1;
            return;
        }
        memcpy(b->p + b->n, parts[i] ? parts[i] : "", l);
        b->n += l;
    }
}

static int hop_by_hop(const char *name)
{
    static const char *const hop[] = {"Connection",          "Keep-Alive", "Proxy-Connection",
                                      "Proxy-Authorization", "TE",         "Upgrade"};
    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
        if (strcasecmp(name, hop[i]) == 0)
            return 1;
    return 0;
}

static int wants_close(const struct http_head *h)
{
    const char *c = head_get(h, "Connection");
    if (c && strcasestr(c, "close"))
        return 1;
    if (strcmp(h->start[0], "HTTP/1.0") == 0 || strcmp(h->start[2], "HTTP/1.0") == 0)
        return !(c && strcasestr(c, "keep-alive"));
    return 0;
}

/* ---- refusals ---------------------------------------------------------------------------- */

static void send_status(struct eg_io *io, int code, const char *reason, const char *body)
{
    char msg[1024];
    int n = snprintf(msg, sizeof(msg),
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     code, reason, strlen(body), body);
    io_write(io, msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1);
}

/* ---- per-workload counters ---------------------------------------------------------------- */

static void eg_count(struct egress *eg, const char *workload, unsigned long long requests,
                     unsigned long long bytes, unsigned long long denials)
{
    if (!workload || !workload[0])
        workload = "_unknown";
    pthread_mutex_lock(&eg->stats_mu);
    struct eg_stat *s = eg->stats;
    while (s && strcmp(s->workload, workload) != 0)
        s = s->next;
    if (!s && eg->n_stats >= EG_MAX_STATS)
        for (s = eg->stats; s && strcmp(s->workload, "_other") != 0; s = s->next)
            ;
    if (!s) {
        s = eg_xcalloc(1, sizeof(*s));
        snprintf(s->workload, sizeof(s->workload), "%s",
                 eg->n_stats >= EG_MAX_STATS ? "_other" : workload);
        s->next = eg->stats;
        eg->stats = s;
        eg->n_stats++;
    }
    s->requests += requests;
    s->bytes += bytes;
    s->denials += denials;
    pthread_mutex_unlock(&eg->stats_mu);
}

/* The workload of a source's policy, into out ("" without one). */
static void eg_workload_of(struct egress *eg, const char *src, char *out, size_t cap)
{
    struct eg_policy *p = eg_policy_get(eg, src);
    snprintf(out, cap, "%s", p && p->workload ? p->workload : "");
    eg_policy_put(p);
}

int egress_stats(struct egress *eg, char *json, size_t cap)
{
    size_t n = (size_t)snprintf(json, cap, "{");
    pthread_mutex_lock(&eg->stats_mu);
    for (struct eg_stat *s = eg->stats; s && n < cap; s = s->next)
        n += (size_t)snprintf(
            json + n, cap - n, "%s\"%s\":{\"requests\":%llu,\"bytes\":%llu,\"denials\":%llu}",
            s == eg->stats ? "" : ",", s->workload, s->requests, s->bytes, s->denials);
    pthread_mutex_unlock(&eg->stats_mu);
    if (n + 2 > cap)
        return -1;
    memcpy(json + n, "}", 2);
    return 0;
}

static void refuse(struct eg_conn *c, struct eg_io *io, const char *host, const char *why)
{
    char workload[64];
    eg_workload_of(c->eg, c->src, workload, sizeof(workload));
    eg_count(c->eg, workload, 0, 0, 1);
    char body[600];
    snprintf(body, sizeof(body), "egress to %.300s %s\n", host, why);
    eg_log(c->eg, BH_LOG_INFO, "refused %s -> %.300s: %s", c->src, host, why);
    send_status(io, 403, "Forbidden", body);
}

static const unsigned char tls_alert[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28};

/* ---- serving HTTP ------------------------------------------------------------------------ */

enum serve_mode { SERVE_TRANSPARENT, SERVE_EXPLICIT, SERVE_INTERCEPT };

struct upstream {
    char name[EG_NAME_MAX];
    int tls;
    struct eg_io *io;
};

static void upstream_close(struct eg_conn *c, struct upstream *u)
{
    if (!u->io)
        return;
    if (u->io->ssl) {
        SSL_shutdown(u->io->ssl);
        SSL_free(u->io->ssl);
    }
    free(u->io);
    u->io = NULL;
    conn_set_upstream(c, -1);
}

static int upstream_open(struct eg_conn *c, struct upstream *u, const char *name, int tls)
{
    if (u->io && u->tls == tls && strcmp(u->name, name) == 0)
        return 0;
    upstream_close(c, u);
    int fd = upstream_connect(c, name, tls ? c->eg->up_tls_port : c->eg->up_http_port);
    if (fd < 0)
        return -1;
    u->io = eg_xcalloc(1, sizeof(*u->io));
    u->io->fd = fd;
    snprintf(u->name, sizeof(u->name), "%s", name);
    u->tls = tls;
    if (!tls)
        return 0;
    SSL *ssl = SSL_new(eg_tls_upstream_ctx(c->eg->tls));
    u->io->ssl = ssl;
    if (!ssl || !SSL_set_tlsext_host_name(ssl, name) || !SSL_set1_host(ssl, name) ||
        !SSL_set_fd(ssl, fd) || SSL_connect(ssl) != 1 || SSL_get_verify_result(ssl) != X509_V_OK) {
        eg_log(c->eg, BH_LOG_WARN, "TLS to %s failed verification or handshake", name);
        upstream_close(c, u);
        return -1;
    }
    return 0;
}

/* The request head as sent upstream: origin-form target, hop-by-hop headers dropped,
 * credential headers replaced by the configured ones. */
static int build_request(struct sbuf *b, const struct http_head *h, const char *target,
                         const char *host, const struct eg_cred *cred)
{
    sb_add(b, h->start[0], " ", target);
    sb_add(b, " ", h->start[2], "\r\n");
    sb_add(b, "Host: ", host, "\r\n"); /* the checked name, never the client's spelling */
    for (size_t i = 0; i < h->nh; i++) {
        int drop = hop_by_hop(h->name[i]) || strcasecmp(h->name[i], "Host") == 0 ||
                   strcasecmp(h->name[i], "Expect") == 0;
        for (size_t j = 0; cred && j < cred->n && !drop; j++)
            drop = strcasecmp(h->name[i], cred->names[j]) == 0;
        if (!drop)
            sb_add(b, h->name[i], ": ", h->value[i]), sb_add(b, "\r\n", NULL, NULL);
    }
    for (size_t j = 0; cred && j < cred->n; j++)
        sb_add(b, cred->names[j], ": ", cred->values[j]), sb_add(b, "\r\n", NULL, NULL);
    sb_add(b, "\r\n", NULL, NULL);
    return b->overflow ? -1 : 0;
}

static int no_body_status(int status, const char *method)
{
    return strcmp(method, "HEAD") == 0 || (status >= 100 && status < 200) || status == 204 ||
           status == 304;
}

/* Relays one response; returns 1 if the client connection may stay open, 0 if it must
 * close, -1 on error. */
static int relay_response(struct eg_io *up, struct eg_io *client, const char *method,
                          int client_close, int *up_keep)
{
    struct http_head *h = eg_xcalloc(1, sizeof(*h));
    int rc = -1, status = 0;
    enum body_kind kind = BODY_NONE;
    unsigned long long len = 0;
    do {
        if (head_read(up, h) != 1 || strncmp(h->start[0], "HTTP/1.", 7) != 0)
            goto out;
        status = atoi(h->start[1]);
        if (status < 100 || status > 999 || status == 101)
            goto out;
        if (no_body_status(status, method))
            kind = BODY_NONE;
        else if (body_framing(h, &kind, &len) < 0)
            goto out;
        else if (kind == BODY_NONE)
            kind = BODY_EOF;
        int keep = !client_close && kind != BODY_EOF;
        *up_keep = kind != BODY_EOF && !wants_close(h);
        struct sbuf *b = eg_xcalloc(1, sizeof(*b));
        sb_add(b, h->start[0], " ", h->start[1]);
        sb_add(b, " ", h->start[2], "\r\n");
        for (size_t i = 0; i < h->nh; i++)
            if (!hop_by_hop(h->name[i]))
                sb_add(b, h->name[i], ": ", h->value[i]), sb_add(b, "\r\n", NULL, NULL);
        if (status >= 200)
            sb_add(b, "Connection: ", keep ? "keep-alive" : "close", "\r\n");
        sb_add(b, "\r\n", NULL, NULL);
        int bad = b->overflow || io_write(client, b->p, b->n) < 0;
        free(b);
        if (bad || copy_body(up, client, kind, len) < 0)
            goto out;
        rc = keep;
    } while (status < 200);
out:
    free(h);
    return rc;
}

/* Parses "http://host[:port]/path" in place: host and path point into target. */
static int absolute_uri(char *target, char **host, char **path)
{
    if (strncasecmp(target, "http://", 7) != 0)
        return -1;
    char *h = target + 7, *slash = strchr(h, '/');
    static char root[] = "/";
    if (slash == h) /* "http:///path": no host */
        return -1;
    if (slash) {
        size_t hl = (size_t)(slash - h);
        memmove(h - 1, h, hl); /* make room for the NUL */
        h[hl - 1] = '\0';
        *host = h - 1;
        *path = slash;
    } else {
        *host = h;
        *path = root;
    }
    return **host ? 0 : -1;
}

/* Splits "host[:port]"; refuses IP literals in every spelling and any other port. */
static int split_authority(char *auth, int want_port, char *name, size_t cap, const char **why)
{
    char *colon = strchr(auth, ':');
    *why = "is refused: IP-literal destinations are not allowed";
    if (auth[0] == '[' || (colon && strchr(colon + 1, ':')))
        return -1;
    if (colon) {
        *colon = '\0';
        const char *port = colon + 1;
        if (!*port || strspn(port, "0123456789") != strlen(port) || strlen(port) > 5 ||
            atoi(port) != want_port) {
            *why = "is refused: only the standard port is allowed";
            return -1;
        }
    }
    if (is_ip_literal(auth))
        return -1;
    if (eg_name_norm(auth, strlen(auth), name, cap) < 0) {
        *why = "is refused: not a valid host name";
        return -1;
    }
    return 0;
}

struct serve {
    struct eg_conn *c;
    struct eg_io *client;
    char workload[64]; /* of the policy that admitted the last request */
    enum serve_mode mode;
    const char *fixed; /* SNI name for SERVE_INTERCEPT */
    struct upstream up;
    char connect_host[EG_NAME_MAX]; /* set when an explicit CONNECT was accepted */
};

/* Checks policy for name; on refusal answers 403 and returns -1. */
static struct eg_policy *admit(struct serve *s, const char *name, const char *shown)
{
    struct eg_policy *p = eg_policy_get(s->c->eg, s->c->src);
    if (!p) {
        refuse(s->c, s->client, shown, "is refused: this source has no egress policy");
        return NULL;
    }
    if (!eg_policy_allows(p, name)) {
        eg_policy_put(p);
        refuse(s->c, s->client, shown, "is not on this workload's allowlist");
        return NULL;
    }
    snprintf(s->workload, sizeof(s->workload), "%s", p->workload ? p->workload : "");
    eg_count(s->c->eg, s->workload, 1, 0, 0);
    return p;
}

static int serve_connect(struct serve *s, struct http_head *h)
{
    const char *why = NULL;
    char name[EG_NAME_MAX];
    if (split_authority(h->start[1], 443, name, sizeof(name), &why) < 0) {
        refuse(s->c, s->client, h->start[1], why);
        return -1;
    }
    struct eg_policy *p = admit(s, name, name);
    if (!p)
        return -1;
    eg_policy_put(p);
    if (s->client->len > 0) /* pipelined bytes after CONNECT: not supported */
        return -1;
    static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
    if (io_write(s->client, ok, sizeof(ok) - 1) < 0)
        return -1;
    snprintf(s->connect_host, sizeof(s->connect_host), "%s", name);
    return 0;
}

/* Works out the upstream name of one request: 0 ok, -1 refused/answered. */
static int request_target(struct serve *s, struct http_head *h, char *name, char **target)
{
    const char *why = "is refused: no Host header";
    char *host = (char *)head_get(h, "Host");
    *target = h->start[1];
    if (s->mode == SERVE_EXPLICIT && absolute_uri(h->start[1], &host, target) < 0) {
        send_status(s->client, 400, "Bad Request", "absolute-form http:// URI required\n");
        return -1;
    }
    if (!host ||
        split_authority(host, s->mode == SERVE_INTERCEPT ? 443 : 80, name, EG_NAME_MAX, &why) < 0) {
        refuse(s->c, s->client, host ? host : "(none)", why);
        return -1;
    }
    if (s->mode == SERVE_INTERCEPT && strcmp(name, s->fixed) != 0) {
        refuse(s->c, s->client, name, "is refused: Host does not match the TLS server name");
        return -1;
    }
    return 0;
}

/* One request/response exchange: 1 keep going, 0 done. */
static int serve_one(struct serve *s, struct http_head *h)
{
    int r = head_read(s->client, h);
    if (r <= 0) {
        if (r < 0)
            send_status(s->client, 400, "Bad Request", "malformed request\n");
        return 0;
    }
    if (s->mode == SERVE_EXPLICIT && strcmp(h->start[0], "CONNECT") == 0)
        return serve_connect(s, h), 0;
    char name[EG_NAME_MAX], *target;
    enum body_kind kind;
    unsigned long long len = 0;
    if ((strcmp(h->start[2], "HTTP/1.1") != 0 && strcmp(h->start[2], "HTTP/1.0") != 0) ||
        body_framing(h, &kind, &len) < 0) {
        send_status(s->client, 400, "Bad Request", "malformed request\n");
        return 0;
    }
    if (request_target(s, h, name, &target) < 0)
        return 0;
    struct eg_policy *p = admit(s, name, name);
    if (!p)
        return 0;
    const struct eg_cred *cred = eg_policy_cred(p, name);
    struct sbuf *b = eg_xcalloc(1, sizeof(*b));
    int ok = build_request(b, h, target, name, cred) == 0;
    int tls = cred || s->mode == SERVE_INTERCEPT;
    eg_policy_put(p); /* b holds the only copy of the secrets now */
    if (!ok || upstream_open(s->c, &s->up, name, tls) < 0) {
        OPENSSL_cleanse(b->p, b->n);
        free(b);
        send_status(s->client, 502, "Bad Gateway", ok ? "upstream unreachable\n" : "bad request\n");
        return 0;
    }
    /* Expect is dropped upstream and answered here, so the body never waits on a 100 */
    const char *expect = head_get(h, "Expect");
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    ok = io_write(s->up.io, b->p, b->n) == 0 &&
         (!expect || kind == BODY_NONE || io_write(s->client, cont, sizeof(cont) - 1) == 0) &&
         copy_body(s->client, s->up.io, kind, len) == 0;
    OPENSSL_cleanse(b->p, b->n);
    free(b);
    int up_keep = 0;

    int keep = ok ? relay_response(s->up.io, s->client, h->start[0], wants_close(h), &up_keep) : -1;
    if (!up_keep)
        upstream_close(s->c, &s->up);
    return keep == 1;
}

static void serve_http(struct serve *s)
{
    struct http_head *h = eg_xcalloc(1, sizeof(*h));
    while (!eg_stopping(s->c->eg) && serve_one(s, h))
        ;
    upstream_close(s->c, &s->up);
    free(h);
    /* The client side's bytes both ways (headers included), once the connection is done. */
    if (s->workload[0])
        eg_count(s->c->eg, s->workload, 0, s->client->bytes, 0);
}

/* ---- TLS --------------------------------------------------------------------------------- */

/* Peeks the first TLS record (the ClientHello) without consuming it; 1 SNI found, 0 none or
 * malformed. */
static int peek_sni(int fd, char *sni, size_t cap)
{
    unsigned char buf[16384 + 5];
    for (int waited = 0; waited < EG_HELLO_TIMEOUT_MS; waited += 2) {
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return 0;
        if (n > 0) {
            long need = eg_tls_record_need(buf, (size_t)n);
            if (need < 0)
                return 0;
            if (n >= need)
                return eg_sni_parse(buf, (size_t)n, sni, cap) == 1;
        }
        struct pollfd p = {fd, POLLIN, 0};
        if (n < 0)
            poll(&p, 1, 2);
        else
            usleep(2000);
    }
    return 0;
}

/* Copies bytes both ways until both sides are done or idle too long; how many it copied. */
static unsigned long long splice_fds(int a, int b)
{
    char buf[EG_IO_BUF];
    struct pollfd p[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
    int open_dirs = 2;
    unsigned long long copied = 0;
    while (open_dirs > 0 && poll(p, 2, EG_IO_TIMEOUT_MS) > 0) {
        for (int i = 0; i < 2; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t r = recv(p[i].fd, buf, sizeof(buf), 0);
            if (r > 0 && send_all(p[1 - i].fd, buf, (size_t)r) == 0) {
                copied += (unsigned long long)r;
                continue;
            }
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0 || r > 0)
                return copied;
            shutdown(p[1 - i].fd, SHUT_WR);
            p[i].fd = -1;
            open_dirs--;
        }
    }
    return copied;
}

static void serve_tls(struct eg_conn *c, const char *connect_host)
{
    char sni[EG_NAME_MAX];
    struct eg_policy *p = NULL;
    int ok = peek_sni(c->cfd, sni, sizeof(sni)) && !is_ip_literal(sni) &&
             (!connect_host || strcmp(connect_host, sni) == 0) &&
             (p = eg_policy_get(c->eg, c->src)) && eg_policy_allows(p, sni);
    if (!ok) {
        eg_log(c->eg, BH_LOG_INFO, "refused TLS from %s (SNI %s)", c->src,
               p ? "not allowed" : "missing, bad or no policy");
        eg_count(c->eg, p ? p->workload : NULL, 0, 0, 1);
        eg_policy_put(p);
        send_all(c->cfd, tls_alert, sizeof(tls_alert));
        return;
    }
    int intercept = eg_policy_cred(p, sni) != NULL;
    char workload[64];
    snprintf(workload, sizeof(workload), "%s", p->workload);
    eg_policy_put(p);
    if (!intercept) {
        int ufd = upstream_connect(c, sni, c->eg->up_tls_port);
        /* A CONNECT's request was counted when it was admitted. */
        unsigned long long copied = ufd >= 0 ? splice_fds(c->cfd, ufd) : 0;
        if (ufd < 0)
            send_all(c->cfd, tls_alert, sizeof(tls_alert));
        eg_count(c->eg, workload, connect_host ? 0 : 1, copied, 0);
        return;
    }
    SSL_CTX *ctx = eg_tls_leaf_ctx(c->eg->tls, workload, sni, NULL);
    SSL *ssl = ctx ? SSL_new(ctx) : NULL;
    SSL_CTX_free(ctx);
    struct serve s = {.c = c, .mode = SERVE_INTERCEPT, .fixed = sni};
    s.client = eg_xcalloc(1, sizeof(*s.client));
    s.client->fd = c->cfd;
    s.client->ssl = ssl;
    if (ssl && SSL_set_fd(ssl, c->cfd) == 1 && SSL_accept(ssl) == 1) {
        serve_http(&s);
        SSL_shutdown(ssl);
    }
    SSL_free(ssl);
    free(s.client);
}

/* ---- connection threads ------------------------------------------------------------------ */

static void serve_plain(struct eg_conn *c, enum serve_mode mode)
{
    struct serve s = {.c = c, .mode = mode};
    s.client = eg_xcalloc(1, sizeof(*s.client));
    s.client->fd = c->cfd;
    serve_http(&s);
    free(s.client);
    if (s.connect_host[0])
        serve_tls(c, s.connect_host);
}

static void serve_dns_tcp(struct eg_conn *c)
{
    unsigned char q[4096], out[4096 + 2];
    struct eg_io *io = eg_xcalloc(1, sizeof(*io));
    io->fd = c->cfd;
    for (;;) {
        unsigned char lb[2];
        if (io_read(io, lb, 1) != 1 || io_read(io, lb + 1, 1) != 1)
            break;
        size_t len = ((size_t)lb[0] << 8) | lb[1], got = 0;
        if (len > sizeof(q))
            break;
        while (got < len) {
            ssize_t r = io_read(io, q + got, len - got);
            if (r <= 0)
                goto out;
            got += (size_t)r;
        }
        size_t n = eg_dns_answer(c->eg, c->src, q, len, out + 2, sizeof(out) - 2);
        if (n == 0)
            break;
        out[0] = (unsigned char)(n >> 8);
        out[1] = (unsigned char)n;
        if (send_all(c->cfd, out, n + 2) < 0)
            break;
    }
out:
    free(io);
}

static void *conn_main(void *arg)
{
    struct eg_conn *c = arg;
    struct egress *eg = c->eg;
    switch (c->kind) {
    case EG_HTTP:
        serve_plain(c, SERVE_TRANSPARENT);
        break;
    case EG_EXPLICIT:
        serve_plain(c, SERVE_EXPLICIT);
        break;
    case EG_TLS:
        serve_tls(c, NULL);
        break;
    case EG_DNS_TCP:
        serve_dns_tcp(c);
        break;
    default: /* thread creation failed: clean up only */
        break;
    }
    pthread_mutex_lock(&eg->conn_mu);
    if (c->prev)
        c->prev->next = c->next;
    else
        eg->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (--eg->n_conns == 0)
        pthread_cond_broadcast(&eg->conn_cv);
    pthread_mutex_unlock(&eg->conn_mu);
    if (c->ufd >= 0)
        close(c->ufd);
    close(c->cfd);
    free(c);
    ERR_clear_error();
    return NULL;
}

static int peer_ip(int fd, char *out)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, INET6_ADDRSTRLEN)
                   ? 0
                   : -1;
    struct in6_addr *a6 = &((struct sockaddr_in6 *)&ss)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a6))
        return inet_ntop(AF_INET, &a6->s6_addr[12], out, INET6_ADDRSTRLEN) ? 0 : -1;
    return inet_ntop(AF_INET6, a6, out, INET6_ADDRSTRLEN) ? 0 : -1;
}

/* Connections open from src; conn_mu held. */
static int conns_from(struct egress *eg, const char *src)
{
    int n = 0;
    for (struct eg_conn *c = eg->conns; c; c = c->next)
        n += strcmp(c->src, src) == 0;
    return n;
}

static void conn_start(struct egress *eg, int fd, enum eg_kind kind)
{
    struct eg_conn *c = eg_xcalloc(1, sizeof(*c));
    c->eg = eg;
    c->kind = kind;
    c->cfd = fd;
    c->ufd = -1;
    set_timeouts(fd, EG_IO_TIMEOUT_MS);
    pthread_mutex_lock(&eg->conn_mu);
    int full = eg->n_conns >= EG_MAX_CONNS || peer_ip(fd, c->src) < 0 ||
               conns_from(eg, c->src) >= EG_MAX_CONNS_PER_SRC;
    if (!full) {
        c->next = eg->conns;
        if (eg->conns)
            eg->conns->prev = c;
        eg->conns = c;
        eg->n_conns++;
    }
    pthread_mutex_unlock(&eg->conn_mu);
    pthread_attr_t attr;
    pthread_t t;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    if (full) {
        close(fd);
        free(c);
    } else if (pthread_create(&t, &attr, conn_main, c) != 0) {
        c->kind = EG_N_LISTEN; /* run the cleanup inline: unlink, close, free */
        shutdown(fd, SHUT_RDWR);
        conn_main(c);
    }
    pthread_attr_destroy(&attr);
}

struct listener {
    struct egress *eg;
    enum eg_kind kind;
};

static void *accept_main(void *arg)
{
    struct listener *l = arg;
    struct egress *eg = l->eg;
    int lfd = eg->lfd[l->kind];
    struct pollfd p[2] = {{lfd, POLLIN, 0}, {eg->stop_pipe[0], POLLIN, 0}};
    while (!eg_stopping(eg)) {
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            break;
        if (!(p[0].revents & POLLIN))
            continue;
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0)
            conn_start(eg, fd, l->kind);
        else if (errno == EMFILE || errno == ENFILE)
            usleep(10000);
    }
    free(l);
    return NULL;
}

static void *udp_main(void *arg)
{
    struct egress *eg = arg;
    unsigned char q[4096], out[512];
    struct pollfd p[2] = {{eg->udp_fd, POLLIN, 0}, {eg->stop_pipe[0], POLLIN, 0}};
    while (!eg_stopping(eg)) {
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            break;
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        ssize_t n = recvfrom(eg->udp_fd, q, sizeof(q), MSG_DONTWAIT, (struct sockaddr *)&ss, &sl);
        if (n <= 0)
            continue;
        char src[INET6_ADDRSTRLEN];
        void *a = ss.ss_family == AF_INET ? (void *)&((struct sockaddr_in *)&ss)->sin_addr
                                          : (void *)&((struct sockaddr_in6 *)&ss)->sin6_addr;
        if (!inet_ntop(ss.ss_family, a, src, sizeof(src)))
            continue;
        size_t r = eg_dns_answer(eg, src, q, (size_t)n, out, sizeof(out));
        if (r > 0)
            sendto(eg->udp_fd, out, r, MSG_DONTWAIT, (struct sockaddr *)&ss, sl);
    }
    return NULL;
}

/* ---- start / stop ------------------------------------------------------------------------ */

static int bind_socket(struct egress *eg, int type, int port, int *out_port)
{
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_PASSIVE, .ai_socktype = type}, *ai;
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", port);
    if (getaddrinfo(eg->listen_ip, ps, &hints, &ai) != 0)
        return -1;
    int fd = socket(ai->ai_family, type | SOCK_CLOEXEC, 0), one = 1;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
        (type == SOCK_STREAM && listen(fd, 1024) < 0) ||
        getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
        if (fd >= 0)
            close(fd);
        fd = -1;
    } else {
        *out_port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                                  : ((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    freeaddrinfo(ai);
    return fd;
}

static int open_listeners(struct egress *eg, const struct egress_config *cfg, struct bh_err *err)
{
    const int want[EG_N_LISTEN] = {cfg->explicit_port, cfg->http_port, cfg->tls_port,
                                   cfg->dns_port};
    for (int k = 0; k < EG_N_LISTEN; k++) {
        if (k == EG_EXPLICIT && want[k] < 0) {
            eg->ports[k] = -1;
            continue;
        }
        eg->lfd[k] = bind_socket(eg, SOCK_STREAM, want[k], &eg->ports[k]);
        if (eg->lfd[k] < 0)
            return eg_fail(err, BH_EIO, "egress: cannot listen on %s:%d: %s", eg->listen_ip,
                           want[k], strerror(errno));
    }
    int udp_port = 0;
    eg->udp_fd = bind_socket(eg, SOCK_DGRAM, eg->ports[EG_DNS_TCP], &udp_port);
    if (eg->udp_fd < 0)
        return eg_fail(err, BH_EIO, "egress: cannot bind DNS %s:%d/udp: %s", eg->listen_ip,
                       eg->ports[EG_DNS_TCP], strerror(errno));
    return 0;
}

static int start_threads(struct egress *eg, struct bh_err *err)
{
    for (int k = 0; k < EG_N_LISTEN; k++) {
        if (eg->lfd[k] < 0)
            continue; /* not asked for */
        struct listener *l = eg_xcalloc(1, sizeof(*l));
        l->eg = eg;
        l->kind = (enum eg_kind)k;
        if (pthread_create(&eg->threads[eg->n_threads], NULL, accept_main, l) != 0) {
            free(l);
            return eg_fail(err, BH_EIO, "egress: cannot start a listener thread");
        }
        eg->n_threads++;
    }
    if (pthread_create(&eg->threads[eg->n_threads], NULL, udp_main, eg) != 0)
        return eg_fail(err, BH_EIO, "egress: cannot start the DNS thread");
    eg->n_threads++;
    return 0;
}

int egress_start(const struct egress_config *cfg, struct egress **out, struct bh_err *err)
{
    if (!cfg || !cfg->listen_ip)
        return eg_fail(err, BH_EINVAL, "egress: listen_ip is required");
    struct egress *eg = eg_xcalloc(1, sizeof(*eg));
    eg->host = cfg->host;
    eg->handle = cfg->handle;
    eg->listen_ip = eg_xstrdup(cfg->listen_ip);
    eg->up_http_port = 80;
    eg->up_tls_port = 443;
    eg->udp_fd = -1;
    eg->stop_pipe[0] = eg->stop_pipe[1] = -1;
    for (int k = 0; k < EG_N_LISTEN; k++)
        eg->lfd[k] = -1;
    pthread_rwlock_init(&eg->lock, NULL);
    pthread_mutex_init(&eg->conn_mu, NULL);
    pthread_mutex_init(&eg->stats_mu, NULL);
    pthread_cond_init(&eg->conn_cv, NULL);
    hosts_load(eg, cfg->hosts_file);
    if (eg_tls_init(&eg->tls, cfg->ca_dir, cfg->trust_bundle, err) < 0 ||
        pipe2(eg->stop_pipe, O_CLOEXEC) < 0 || open_listeners(eg, cfg, err) < 0 ||
        start_threads(eg, err) < 0) {
        egress_stop(eg);
        return -1;
    }
    eg_log(eg, BH_LOG_INFO, "listening on %s: proxy %d (-1: none), http %d, tls %d, dns %d",
           eg->listen_ip, eg->ports[EG_EXPLICIT], eg->ports[EG_HTTP], eg->ports[EG_TLS],
           eg->ports[EG_DNS_TCP]);
    *out = eg;
    return 0;
}

void egress_ports(struct egress *eg, int *explicit_port, int *http_port, int *tls_port,
                  int *dns_port)
{
    *explicit_port = eg->ports[EG_EXPLICIT];
    *http_port = eg->ports[EG_HTTP];
    *tls_port = eg->ports[EG_TLS];
    *dns_port = eg->ports[EG_DNS_TCP];
}

void egress_set_upstream_ports(struct egress *eg, int http_port, int tls_port)
{
    eg->up_http_port = http_port;
    eg->up_tls_port = tls_port;
}

void egress_stop(struct egress *eg)
{
    if (!eg)
        return;
    atomic_store(&eg->stopping, 1);
    if (eg->stop_pipe[1] >= 0 && write(eg->stop_pipe[1], "x", 1) < 0)
        eg_log(eg, BH_LOG_WARN, "stop pipe: %s", strerror(errno));
    for (int i = 0; i < eg->n_threads; i++)
        pthread_join(eg->threads[i], NULL);
    pthread_mutex_lock(&eg->conn_mu);
    for (struct eg_conn *c = eg->conns; c; c = c->next) {
        shutdown(c->cfd, SHUT_RDWR);
        if (c->ufd >= 0)
            shutdown(c->ufd, SHUT_RDWR);
    }
    while (eg->n_conns > 0)
        pthread_cond_wait(&eg->conn_cv, &eg->conn_mu);
    pthread_mutex_unlock(&eg->conn_mu);
    for (int k = 0; k < EG_N_LISTEN; k++)
        if (eg->lfd[k] >= 0)
            close(eg->lfd[k]);
    if (eg->udp_fd >= 0)
        close(eg->udp_fd);
    for (int i = 0; i < 2; i++)
        if (eg->stop_pipe[i] >= 0)
            close(eg->stop_pipe[i]);
    for (size_t i = 0; i < eg->n_srcs; i++)
        eg_policy_put(eg->srcs[i].pol);
    eg_policy_put(eg->dflt);
    for (size_t i = 0; i < eg->n_hosts; i++)
        free(eg->hosts[i].name);
    free(eg->hosts);
    free(eg->srcs);
    eg_tls_fini(eg->tls);
    pthread_rwlock_destroy(&eg->lock);
    pthread_mutex_destroy(&eg->conn_mu);
    pthread_cond_destroy(&eg->conn_cv);
    for (struct eg_stat *s = eg->stats, *n; s; s = n) {
        n = s->next;
        free(s);
    }
    pthread_mutex_destroy(&eg->stats_mu);
    free(eg->listen_ip);
    free(eg);
}
