/* Benchmark of the egress engine (not run by ctest; scripts/bench-egress.sh runs it):
 * latency p50/p99 on one keep-alive connection, and req/s with several, for direct requests
 * to a fake upstream and through the proxy: transparent HTTP, TLS passthrough, TLS
 * interception with header injection. Everything on 127.0.0.x, in one process. */
#include "../../plugins/network/restricted/egress.h"
#include "fake_upstream.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct target {
    const char *label;
    const char *ip;
    int port;
    int tls;
    const char *ca; /* trust for the client */
};

struct conn {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
};

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int conn_open(struct conn *c, const struct target *t)
{
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)t->port)};
    inet_pton(AF_INET, t->ip, &a.sin_addr);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) < 0)
        return -1;
    if (!t->tls)
        return 0;
    c->ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_load_verify_locations(c->ctx, t->ca, NULL);
    c->ssl = SSL_new(c->ctx);
    SSL_set_tlsext_host_name(c->ssl, "api.example.test");
    SSL_set_fd(c->ssl, c->fd);
    return SSL_connect(c->ssl) == 1 ? 0 : -1;
}

static void conn_close(struct conn *c)
{
    SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
    close(c->fd);
}

/* One request/response (the fake answers with a small Content-Length body). */
static int exchange(struct conn *c)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: api.example.test\r\n\r\n";
    char buf[4096];
    size_t len = 0;
    if ((c->ssl ? SSL_write(c->ssl, req, sizeof(req) - 1)
                : (int)send(c->fd, req, sizeof(req) - 1, 0)) <= 0)
        return -1;
    for (;;) {
        int r = c->ssl ? SSL_read(c->ssl, buf + len, (int)(sizeof(buf) - len - 1))
                       : (int)recv(c->fd, buf + len, sizeof(buf) - len - 1, 0);
        if (r <= 0)
            return -1;
        len += (size_t)r;
        buf[len] = '\0';
        char *end = strstr(buf, "\r\n\r\n"), *cl = strcasestr(buf, "content-length:");
        if (end && cl && len >= (size_t)(end - buf) + 4 + strtoul(cl + 15, NULL, 10))
            return 0;
    }
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

struct worker {
    const struct target *t;
    double until;
    long done;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct conn c;
    if (conn_open(&c, w->t) == 0)
        while (now_us() < w->until && exchange(&c) == 0)
            w->done++;
    conn_close(&c);
    return NULL;
}

static void run(const struct target *t, int n_lat, int conns, double secs, double *p50_out)
{
    double *lat = calloc((size_t)n_lat, sizeof(double));
    struct conn c;
    if (conn_open(&c, t) < 0) {
        printf("%-28s connect failed\n", t->label);
        return;
    }
    for (int i = 0; i < 200; i++) /* warm up */
        exchange(&c);
    for (int i = 0; i < n_lat; i++) {
        double s = now_us();
        if (exchange(&c) < 0)
            break;
        lat[i] = now_us() - s;
    }
    conn_close(&c);
    qsort(lat, (size_t)n_lat, sizeof(double), cmp);
    pthread_t th[64];
    struct worker w[64];
    double start = now_us();
    for (int i = 0; i < conns; i++) {
        w[i] = (struct worker){t, start + secs * 1e6, 0};
        pthread_create(&th[i], NULL, worker_main, &w[i]);
    }
    long total = 0;
    for (int i = 0; i < conns; i++) {
        pthread_join(th[i], NULL);
        total += w[i].done;
    }
    double p50 = lat[n_lat / 2], p99 = lat[n_lat * 99 / 100];
    if (*p50_out == 0) /* the first run of a pair is the direct baseline */
        *p50_out = p50;
    printf("%-28s p50 %7.1f us  p99 %7.1f us  added p50 %7.1f us  %8.0f req/s (%d conns)\n",
           t->label, p50, p99, p50 - *p50_out, total / secs, conns);
    free(lat);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "."; /* holds testca.crt, srv.crt/key, hosts */
    int conns = argc > 2 ? atoi(argv[2]) : 8;
    double secs = argc > 3 ? atof(argv[3]) : 3;
    char p[6][512];
    snprintf(p[0], sizeof(p[0]), "%s/srv.crt", dir);
    snprintf(p[1], sizeof(p[1]), "%s/srv.key", dir);
    snprintf(p[2], sizeof(p[2]), "%s/testca.crt", dir);
    snprintf(p[3], sizeof(p[3]), "%s/hosts", dir);
    snprintf(p[4], sizeof(p[4]), "%s/ca", dir);
    SSL_CTX *sctx = SSL_CTX_new(TLS_server_method());
    if (SSL_CTX_use_certificate_file(sctx, p[0], SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_use_PrivateKey_file(sctx, p[1], SSL_FILETYPE_PEM) != 1) {
        fprintf(stderr, "bench: cannot load %s\n", p[0]);
        return 1;
    }
    struct fake https, http;
    struct egress *eg;
    struct bh_err err;
    fake_start(&https, "127.0.0.2", 0, sctx);
    fake_start(&http, "127.0.0.2", 0, NULL);
    struct egress_config cfg = {
        .listen_ip = "127.0.0.1", .ca_dir = p[4], .trust_bundle = p[2], .hosts_file = p[3]};
    if (egress_start(&cfg, &eg, &err) < 0) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return 1;
    }
    int pe, ph, pt, pd;
    egress_ports(eg, &pe, &ph, &pt, &pd);
    egress_set_upstream_ports(eg, http.port, https.port);
    const char *allow[] = {"api.example.test"};
    const struct egress_header hdr[] = {{"X-Api-Key", "bench-secret"}};
    const struct egress_credential cred[] = {{"api.example.test", hdr, 1}};
    struct egress_policy pass = {"bench", allow, 1, NULL, 0}, icpt = {"bench", allow, 1, cred, 1};
    egress_set_policy(eg, "127.0.0.1", &pass, &err);
    const char *wca = egress_ca_cert(eg, "bench", &err);
    struct target direct_http = {"direct http", "127.0.0.2", http.port, 0, NULL};
    struct target proxy_http = {"proxy http (transparent)", "127.0.0.1", ph, 0, NULL};
    struct target direct_tls = {"direct https", "127.0.0.2", https.port, 1, p[2]};
    struct target proxy_pass = {"proxy tls passthrough", "127.0.0.1", pt, 1, p[2]};
    struct target proxy_icpt = {"proxy tls intercept+inject", "127.0.0.1", pt, 1, wca};
    double base_http = 0, base_tls = 0;
    run(&direct_http, 5000, conns, secs, &base_http);
    run(&proxy_http, 5000, conns, secs, &base_http);
    run(&direct_tls, 5000, conns, secs, &base_tls);
    run(&proxy_pass, 5000, conns, secs, &base_tls);
    egress_set_policy(eg, "127.0.0.1", &icpt, &err);
    run(&proxy_icpt, 5000, conns, secs, &base_tls);
    egress_stop(eg);
    fake_stop(&https);
    fake_stop(&http);
    SSL_CTX_free(sctx);
    return 0;
}
