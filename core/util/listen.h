/* One way to open a libmicrohttpd listener with connection hygiene, shared by every listener
 * the daemon owns (the REST API with /ws and /hooks, and the Kubernetes-compatible API):
 *  - the accept loop runs on its own thread and only accepts: each connection gets a thread
 *    (handlers may block: claims wait for their instance, /ws and watches stream), so a slow
 *    client costs one idle thread and never holds up anyone else's request;
 *  - an inactivity deadline: a connection that sends nothing for idle_timeout_s (half a
 *    request head, a stalled body, an idle keep-alive) is closed;
 *  - a request-head deadline: a request head not complete head_timeout_s after the
 *    connection opened (or its previous answer was sent) is cut, however slowly it trickles;
 *  - a global cap and a per-client-address cap on open connections: a connection over
 *    either is refused at once (closed after accept), never queued behind the others;
 *  - a bound on each connection's memory (request head and buffers).
 * Counters for /metrics are kept in the caller's struct bh_listen_stats. */
#ifndef BH_LISTEN_H
#define BH_LISTEN_H

#include <microhttpd.h>
#include <stdint.h>

#include "err.h"

/* Written by the listener (and the rate limiter), read at scrape time; atomics. */
struct bh_listen_stats {
    int64_t open;            /* connections open now */
    uint64_t accepted;       /* connections admitted */
    uint64_t refused_global; /* refused: the listener's cap was reached */
    uint64_t refused_per_ip; /* refused: the client address's cap was reached */
    uint64_t rate_limited;   /* requests answered 429: over the credential's rate */
    uint64_t auth_throttled; /* requests answered 429: the address failed to authenticate */
    uint64_t auth_failures;  /* requests with a missing or wrong credential */
    uint64_t head_timeouts;  /* connections cut: no complete request head in time */
};

struct bh_listen_limits {
    int idle_timeout_s; /* close a connection silent this long; 0: never */
    int max_conns;      /* open connections at most */
    int max_per_ip;     /* open connections from one client address at most */
    int head_timeout_s; /* cut a connection whose request head is not complete by then; 0: never */
};

/* What to listen on and how to answer. Borrowed for the call; tls_cert/tls_key (PEM) and
 * stats must outlive the listener. */
struct bh_listen_cfg {
    const char *what; /* for messages: "REST API", "kube API" */
    const char *host; /* IPv4 address or "localhost"; with listen_fd, only for messages */
    int port;
    int has_listen_fd;    /* 1: listen_fd, a listening socket made already (a unix socket), is */
    int listen_fd;        /* used instead of host:port, and owned by the listener once started */
    unsigned extra_flags; /* e.g. MHD_ALLOW_UPGRADE */
    const char *tls_cert, *tls_key;
    MHD_AccessHandlerCallback handler;
    void *handler_cls;
    MHD_RequestCompletedCallback completed; /* may be NULL */
    void *completed_cls;
    /* URL unescaping (MHD_OPTION_UNESCAPE_CALLBACK's signature); may be NULL */
    size_t (*unescape)(void *cls, struct MHD_Connection *conn, char *s);
    struct bh_listen_limits limits;
    struct bh_listen_stats *stats; /* may be NULL */
};

struct bh_listen;
/* Starts listening; *out owned (bh_listen_stop). */
BH_MUST_CHECK int bh_listen_start(const struct bh_listen_cfg *cfg, struct bh_listen **out,
                                  struct bh_err *err);
/* The port the listener is bound to (what port 0 became). */
int bh_listen_port(const struct bh_listen *l);
/* Stops accepting, closes every connection (joining their threads) and frees. NULL ok. */
void bh_listen_stop(struct bh_listen *l);

/* Adds Retry-After: secs to resp when secs > 0. */
void bh_listen_retry_after(struct MHD_Response *resp, int secs);
/* 1 for "localhost" and 127.0.0.0/8. */
int bh_listen_is_loopback(const char *host);
/* The connection's client address as text ("127.0.0.1"), or "?" when unknown. */
void bh_listen_client_addr(struct MHD_Connection *conn, char out[64]);
/* Raises the soft RLIMIT_NOFILE to the hard limit, so the caps, not the fd limit, bound how
 * many clients are served; returns the soft limit now in force. */
long bh_listen_raise_nofile(void);

#endif
