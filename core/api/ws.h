/* GET /ws: the operator event stream over WebSocket (RFC 6455) on the REST listener.
 *
 * Query: since=<last id seen> (replay what was missed, or a "resync" message when it is no
 * longer buffered), types=a,b, workload=, tenant=, instance= (filters), token= (a short-lived
 * token from POST /api/v1/ws/token, for browsers, which cannot set the Authorization header).
 * instance=<id> also makes the client a watcher of that instance: the daemon publishes its
 * instance.stats samples (samples.h) while someone watches, and the stream follows its log
 * (instance.log messages, ws_log.h) unless types= leaves instance.log out.
 * Server to client: text frames of JSON events (events.h), first a {"type":"hello"}.
 * Client to server: only control frames matter; text is ignored. A client more than
 * ws_queue events (or BH_WS_LOG_LAG_MAX log bytes) behind is sent close code 4008 ("slow
 * consumer") and cut; a client that answers no ping for two intervals is cut. */
#ifndef BH_WS_H
#define BH_WS_H

#include <microhttpd.h>
#include <stdint.h>

#include "ctx.h"
#include "err.h"

/* The close code sent to a client that fell too far behind. */
#define BH_WS_CLOSE_SLOW 4008
/* How long a browser token stays valid. */
#define BH_WS_TOKEN_TTL_S 60

/* Shared by the listener and its WebSocket connections. */
struct bh_ws_env {
    struct bh_ctx *ctx;
    int stopping; /* set (atomically) by the listener's stop */
};

/* What the listener decided about an upgraded connection; its per-connection state (con_cls)
 * starts with this. */
struct bh_ws_req {
    char tenant[64]; /* "" or the one tenant the stream is filtered to (a tenant scope) */
};

/* Whether the request asks for a WebSocket upgrade. */
int bh_ws_wanted(struct MHD_Connection *conn);
/* Answers an authorized upgrade request: 101 and then the stream (on this connection's
 * thread), or 400 for a malformed handshake. */
enum MHD_Result bh_ws_answer(struct bh_ws_env *env, struct MHD_Connection *conn);
/* Mints a browser token ("<expiry>.<hmac>[.<tenant>]", *out owned) valid BH_WS_TOKEN_TTL_S
 * seconds; a stream opened with it is held to tenant (NULL or "": none, for a viewer or
 * admin). */
BH_MUST_CHECK int bh_ws_token_mint(struct bh_ctx *ctx, const char *tenant, char **out,
                                   long long *expires, struct bh_err *err);
/* Whether token is one bh_ws_token_mint made and it has not expired; tenant gets the tenant
 * it holds the stream to ("" none). */
int bh_ws_token_check(struct bh_ctx *ctx, const char *token, char tenant[64]);

#endif
