#include "fake_upstream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct fconn {
    struct fake *f;
    int fd, slot;
};

static int rd(SSL *ssl, int fd, char *p, size_t n)
{
    return ssl ? SSL_read(ssl, p, (int)n) : (int)recv(fd, p, n, 0);
}

static int wr(SSL *ssl, int fd, const char *p, size_t n)
{
    return ssl ? SSL_write(ssl, p, (int)n) : (int)send(fd, p, n, MSG_NOSIGNAL);
}

static void record(struct fake *f, SSL *ssl, const char *head, size_t n)
{
    pthread_mutex_lock(&f->mu);
    f->n_reqs++;
    snprintf(f->last_head, sizeof(f->last_head), "%.*s", (int)n, head);
    const char *sni = ssl ? SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) : NULL;
    snprintf(f->last_sni, sizeof(f->last_sni), "%s", sni ? sni : "");
    pthread_mutex_unlock(&f->mu);
}

/* Serves requests on one connection until EOF. */
static void serve(struct fake *f, SSL *ssl, int fd)
{
    char buf[65536];
    size_t len = 0;
    for (;;) {
        char *end = memmem(buf, len, "\r\n\r\n", 4);
        if (!end) {
            if (len == sizeof(buf))
                return;
            int r = rd(ssl, fd, buf + len, sizeof(buf) - len);
            if (r <= 0)
                return;
            len += (size_t)r;
            continue;
        }
        size_t hl = (size_t)(end - buf) + 4, body = 0;
        record(f, ssl, buf, hl);
        char *cl = strcasestr(buf, "\r\ncontent-length:");
        if (cl && cl < end)
            body = strtoul(cl + 17, NULL, 10);
        while (len < hl + body && len < sizeof(buf)) {
            int r = rd(ssl, fd, buf + len, sizeof(buf) - len);
            if (r <= 0)
                return;
            len += (size_t)r;
        }
        char host[256] = "", out[1024];
        char *h = strcasestr(buf, "\r\nhost:");
        if (h && h < end)
            sscanf(h + 7, " %255[^\r]", host);
        int chunked = strncmp(buf, "GET /chunked ", 13) == 0, n;
        if (chunked)
            n = snprintf(out, sizeof(out),
                         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "3\r\nok \r\n%zx\r\n%s\n\r\n0\r\n\r\n",
                         strlen(host) + 1, host);
        else
            n = snprintf(out, sizeof(out),
                         "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                         "\r\nok %s\n",
                         strlen(host) + 4, host);
        if (wr(ssl, fd, out, (size_t)n) <= 0)
            return;
        size_t used = hl + body < len ? hl + body : len;
        memmove(buf, buf + used, len - used);
        len -= used;
    }
}

static void *conn_main(void *arg)
{
    struct fconn *c = arg;
    struct fake *f = c->f;
    SSL *ssl = NULL;
    if (f->ctx) {
        ssl = SSL_new(f->ctx);
        SSL_set_fd(ssl, c->fd);
        if (SSL_accept(ssl) != 1) {
            SSL_free(ssl);
            ssl = NULL;
            goto out;
        }
    }
    serve(f, ssl, c->fd);
out:
    if (ssl) {
        SSL_shutdown(ssl);
        SSL_free(ssl);
    }
    pthread_mutex_lock(&f->mu);
    f->fds[c->slot] = -1;
    f->active--;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    close(c->fd);
    free(c);
    return NULL;
}

static void accept_one(struct fake *f)
{
    int fd = accept(f->lfd, NULL, NULL);
    if (fd < 0)
        return;
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    pthread_mutex_lock(&f->mu);
    int slot = 0;
    while (slot < FAKE_MAX_CONNS && f->fds[slot] >= 0)
        slot++;
    if (slot == FAKE_MAX_CONNS) {
        pthread_mutex_unlock(&f->mu);
        close(fd);
        return;
    }
    f->fds[slot] = fd;
    f->active++;
    f->n_conns++;
    pthread_mutex_unlock(&f->mu);
    struct fconn *c = calloc(1, sizeof(*c));
    c->f = f;
    c->fd = fd;
    c->slot = slot;
    pthread_t t;
    pthread_create(&t, NULL, conn_main, c);
    pthread_detach(t);
}

static void *accept_main(void *arg)
{
    struct fake *f = arg;
    while (!atomic_load(&f->stop)) {
        struct pollfd p = {f->lfd, POLLIN, 0};
        if (poll(&p, 1, 50) == 1)
            accept_one(f);
    }
    return NULL;
}

int fake_start(struct fake *f, const char *ip, int port, SSL_CTX *ctx)
{
    memset(f, 0, sizeof(*f));
    for (int i = 0; i < FAKE_MAX_CONNS; i++)
        f->fds[i] = -1;
    f->ctx = ctx;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    int one = 1;
    f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    setsockopt(f->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    socklen_t sl = sizeof(a);
    if (bind(f->lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(f->lfd, 512) < 0 ||
        getsockname(f->lfd, (struct sockaddr *)&a, &sl) < 0) {
        close(f->lfd);
        pthread_mutex_destroy(&f->mu);
        pthread_cond_destroy(&f->cv);
        return -1;
    }
    f->port = ntohs(a.sin_port);
    return pthread_create(&f->thread, NULL, accept_main, f) == 0 ? 0 : -1;
}

void fake_stop(struct fake *f)
{
    atomic_store(&f->stop, 1);
    pthread_join(f->thread, NULL);
    pthread_mutex_lock(&f->mu);
    for (int i = 0; i < FAKE_MAX_CONNS; i++)
        if (f->fds[i] >= 0)
            shutdown(f->fds[i], SHUT_RDWR);
    while (f->active > 0)
        pthread_cond_wait(&f->cv, &f->mu);
    pthread_mutex_unlock(&f->mu);
    close(f->lfd);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
}

void fake_snapshot(struct fake *f, int *n_conns, char *head, size_t cap)
{
    pthread_mutex_lock(&f->mu);
    if (n_conns)
        *n_conns = f->n_conns;
    if (head)
        snprintf(head, cap, "%s", f->last_head);
    pthread_mutex_unlock(&f->mu);
}
