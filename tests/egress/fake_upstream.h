/* A fake internet for the egress tests and benchmark: an HTTP/1.1 keep-alive server (plain or
 * TLS) that answers "ok <host>\n" (chunked for /chunked) and records what it received. */
#ifndef BH_FAKE_UPSTREAM_H
#define BH_FAKE_UPSTREAM_H

#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>

#define FAKE_MAX_CONNS 256

struct fake {
    int lfd, port;
    SSL_CTX *ctx; /* NULL: plain HTTP */
    pthread_t thread;
    atomic_int stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int fds[FAKE_MAX_CONNS];
    int active;
    int n_conns, n_reqs; /* totals */
    char last_head[8192];
    char last_sni[256];
};

/* Binds ip:port (0 = ephemeral) and serves until fake_stop. */
int fake_start(struct fake *f, const char *ip, int port, SSL_CTX *ctx);
void fake_stop(struct fake *f);
/* Copies of the counters and the last request head, taken under the lock. */
void fake_snapshot(struct fake *f, int *n_conns, char *head, size_t cap);

#endif
