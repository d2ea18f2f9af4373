/* The /ws transport (ws.h): the RFC 6455 handshake through libmicrohttpd's upgrade, then a
 * loop on the connection's own thread (thread-per-connection mode) that polls the socket,
 * the event reader's descriptor and, for a watcher, the instance's log (ws_log.h). The outgoing
 * queue holds whole frames and is refilled with one event only when empty, so a client costs at
 * most one event of memory; how far it lags is the reader's business (events.h). */
#include "ws.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <limits.h>
#include <time.h>

#include "clock.h"
#include "crypto.h"
#include "events.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "name.h"
#include "num.h"
#include "store.h"
#include "ws_log.h"
#include "wsframe.h"

#define WS_IN_MAX 4096          /* client frames we accept: control frames and small texts */
#define WS_CLOSE_GRACE_MS 10000 /* how long a close frame may take to leave */
#define WS_SNDBUF (32 << 10)    /* kernel memory a stalled client may pin (doubled by Linux) */

struct ws_conn {
    struct bh_ws_env *env;
    int fd;
    struct bh_events_reader *reader;
    struct bh_ws_log *log; /* the watched instance's log, or NULL */
    char *out;             /* whole frames waiting to be sent */
    size_t out_len, out_off;
    unsigned char in[WS_IN_MAX];
    size_t in_len;
    long long next_ping, last_heard, close_deadline; /* bh_clock_ms; deadline 0: open */
    int done;
};

/* ---- handshake and tokens ---- */

static int ws_header_has(struct MHD_Connection *conn, const char *name, const char *token)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
    size_t n = strlen(token);
    for (const char *p = v; p && *p; p++)
        if (strncasecmp(p, token, n) == 0 && (p == v || p[-1] == ' ' || p[-1] == ',') &&
            (p[n] == '\0' || p[n] == ',' || p[n] == ' '))
            return 1;
    return 0;
}

int bh_ws_wanted(struct MHD_Connection *conn)
{
    return ws_header_has(conn, "Upgrade", "websocket");
}

/* The MAC of a browser token: over its expiry and the tenant its stream is held to. */
static int ws_token_mac(struct bh_ctx *ctx, long long expires, const char *tenant, char hex[65])
{
    uint8_t key[BH_KEY_LEN], mac[32];
    unsigned int n = 0;
    struct bh_err err;
    if (bh_crypto_derive(ctx->master_key, NULL, 0, "ws-token", key, &err) < 0)
        return -1;
    bh_autofree char *msg =
        tenant[0] ? bh_xasprintf("ws:%lld:%s", expires, tenant) : bh_xasprintf("ws:%lld", expires);
    HMAC(EVP_sha256(), key, sizeof(key), (const unsigned char *)msg, strlen(msg), mac, &n);
    bh_crypto_wipe(key, sizeof(key));
    for (unsigned int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    return 0;
}

int bh_ws_token_mint(struct bh_ctx *ctx, const char *tenant, char **out, long long *expires,
                     struct bh_err *err)
{
    char hex[65];
    tenant = tenant ? tenant : "";
    *expires = (long long)time(NULL) + BH_WS_TOKEN_TTL_S;
    if (ws_token_mac(ctx, *expires, tenant, hex) < 0)
        return bh_err_set(err, BH_EIO, "cannot derive the token key");
    *out = tenant[0] ? bh_xasprintf("%lld.%s.%s", *expires, hex, tenant)
                     : bh_xasprintf("%lld.%s", *expires, hex);
    return 0;
}

int bh_ws_token_check(struct bh_ctx *ctx, const char *token, char tenant[64])
{
    char *dot = NULL;
    char hex[65];
    tenant[0] = '\0';
    if (!token)
        return 0;
    long long expires = strtoll(token, &dot, 10);
    long long now = (long long)time(NULL);
    if (!dot || *dot != '.' || strlen(dot + 1) < 64 || (dot[65] && dot[65] != '.') ||
        strlen(dot + 65) > 64 || expires < now || expires > now + BH_WS_TOKEN_TTL_S)
        return 0;
    if (dot[65] == '.')
        snprintf(tenant, 64, "%s", dot + 66);
    if (ws_token_mac(ctx, expires, tenant, hex) < 0 || CRYPTO_memcmp(hex, dot + 1, 64) != 0) {
        tenant[0] = '\0';
        return 0;
    }
    return 1;
}

/* ---- frames ---- */

/* Appends one unmasked server frame to the outgoing queue. */
static void ws_queue_frame(struct ws_conn *c, int opcode, const void *data, size_t len)
{
    bh_wsframe_append(&c->out, &c->out_len, opcode, data, len, 0);
}

static void ws_queue_json(struct ws_conn *c, cJSON *msg)
{
    bh_autofree char *text = bh_json_print(msg);
    ws_queue_frame(c, BH_WS_OP_TEXT, text, strlen(text));
    cJSON_Delete(msg);
}

/* Queues a close frame and gives it WS_CLOSE_GRACE_MS to leave. */
static void ws_begin_close(struct ws_conn *c, int code, const char *reason)
{
    unsigned char body[125];
    size_t n = strlen(reason) > 120 ? 120 : strlen(reason);
    if (c->close_deadline)
        return;
    body[0] = (unsigned char)(code >> 8);
    body[1] = (unsigned char)code;
    memcpy(body + 2, reason, n);
    ws_queue_frame(c, BH_WS_OP_CLOSE, body, n + 2);
    c->close_deadline = bh_clock_ms() + WS_CLOSE_GRACE_MS;
}

/* Handles one complete client frame (payload unmasked). */
static void ws_on_frame(struct ws_conn *c, int opcode, const unsigned char *p, size_t len)
{
    c->last_heard = bh_clock_ms();
    if (opcode == BH_WS_OP_PING) {
        ws_queue_frame(c, BH_WS_OP_PONG, p, len);
    } else if (opcode == BH_WS_OP_CLOSE) {
        int code = len >= 2 ? (p[0] << 8 | p[1]) : 1000;
        if (c->close_deadline) /* theirs answers ours: done once ours has left */
            c->done = c->out_len == 0;
        else
            ws_begin_close(c, code == 1005 ? 1000 : code, "");
    }
}

/* Parses the complete frames at the start of c->in; returns -1 on a protocol error. */
static int ws_parse(struct ws_conn *c)
{
    struct bh_wsframe f;
    ssize_t used;
    /* Nothing a client sends us is larger than what the buffer holds. */
    while ((used = bh_wsframe_parse(c->in, c->in_len, WS_IN_MAX - 14, 1, &f)) > 0) {
        ws_on_frame(c, f.opcode, f.payload, f.len);
        memmove(c->in, c->in + used, c->in_len - (size_t)used);
        c->in_len -= (size_t)used;
    }
    return used < 0 ? -1 : 0;
}

/* ---- the connection loop ---- */

static void ws_read(struct ws_conn *c)
{
    ssize_t n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        c->done = 1; /* the peer is gone */
        return;
    }
    if (n > 0) {
        c->in_len += (size_t)n;
        if (ws_parse(c) < 0) {
            ws_begin_close(c, 1002, "protocol error");
            c->in_len = 0;
        }
    }
}

static void ws_write(struct ws_conn *c)
{
    ssize_t n =
        send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
        c->done = 1;
        return;
    }
    if (n > 0)
        c->out_off += (size_t)n;
    if (c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
        if (c->close_deadline)
            c->done = 1; /* the close frame has left */
    }
}

static void ws_cut_slow(struct ws_conn *c)
{
    if (c->close_deadline)
        return;
    bh_info("ws", "client cut: more than %zu events or %d log bytes behind",
            c->env->ctx->cfg.ws_queue, BH_WS_LOG_LAG_MAX);
    bh_events_reader_cut(c->reader);
    ws_begin_close(c, BH_WS_CLOSE_SLOW, "slow consumer");
}

/* Queues what is due while nothing is queued: a ping, else the next event, else the next
 * chunk of a watched log. Checks the lag whatever is queued, so a client that stopped
 * reading is cut. */
static void ws_fill(struct ws_conn *c, int ping_ms)
{
    long long now = bh_clock_ms();
    if (c->close_deadline)
        return;
    if (__atomic_load_n(&c->env->stopping, __ATOMIC_ACQUIRE)) {
        ws_begin_close(c, 1001, "daemon stopping");
        return;
    }
    if (now - c->last_heard > 2LL * ping_ms) {
        ws_begin_close(c, 1001, "no pong");
        return;
    }
    if (c->out_len > 0)
        return;
    if (now >= c->next_ping) {
        ws_queue_frame(c, BH_WS_OP_PING, "bh", 2);
        c->next_ping = now + ping_ms;
        return;
    }
    char *json = NULL;
    enum bh_events_next got = bh_events_reader_next(c->reader, &json);
    if (got == BH_EVENTS_LAGGED)
        ws_cut_slow(c);
    else if (got == BH_EVENTS_NONE && c->log)
        json = bh_ws_log_next(c->log);
    if (json)
        ws_queue_frame(c, BH_WS_OP_TEXT, json, strlen(json));
    free(json);
}

static int ws_poll_timeout(const struct ws_conn *c)
{
    long long until = c->close_deadline ? c->close_deadline : c->next_ping;
    long long left = until - bh_clock_ms();
    return left < 0 ? 0 : (int)left;
}

static void ws_run(struct ws_conn *c, int ping_ms)
{
    while (!c->done) {
        ws_fill(c, ping_ms);
        if (c->close_deadline && bh_clock_ms() >= c->close_deadline)
            break;
        /* A stalled client keeps its frame queued; the reader's descriptor still wakes us,
         * and ws_fill's lag check then cuts it. */
        struct pollfd fds[3] = {
            {c->fd, (short)(POLLIN | (c->out_len ? POLLOUT : 0)), 0},
            {bh_events_reader_fd(c->reader), POLLIN, 0},
            {c->log ? bh_ws_log_fd(c->log) : -1, POLLIN, 0},
        };
        if (poll(fds, 3, ws_poll_timeout(c)) < 0 && errno != EINTR)
            break;
        if (fds[0].revents & (POLLIN | POLLHUP | POLLERR))
            ws_read(c);
        if (!c->done && (fds[0].revents & POLLOUT))
            ws_write(c);
        if (c->out_len && (fds[1].revents & POLLIN) && bh_events_reader_lagging(c->reader))
            ws_cut_slow(c);
        /* The log is read from the file at the client's pace: one that stopped reading
         * while the log grows is cut like one that lags behind the events. */
        if ((fds[2].revents & POLLIN) && bh_ws_log_woken(c->log) > BH_WS_LOG_LAG_MAX && c->out_len)
            ws_cut_slow(c);
    }
}

/* ?since=<event id>: replay what came after it; absent means live events only (-1). */
static int ws_since(struct MHD_Connection *conn, long long *out)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "since");
    *out = -1;
    return v && *v ? bh_num_parse(v, 0, LLONG_MAX, out, NULL) : 0;
}

static void ws_hello(struct ws_conn *c, int resync)
{
    cJSON *hello = cJSON_CreateObject();
    cJSON_AddStringToObject(hello, "type", "hello");
    cJSON_AddNumberToObject(hello, "lastId", (double)bh_events_last_id(c->env->ctx->events));
    ws_queue_json(c, hello);
    if (resync) { /* the ids asked for are gone: the client must re-read the state */
        cJSON *r = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "type", "resync");
        cJSON_AddNumberToObject(r, "lastId", (double)bh_events_last_id(c->env->ctx->events));
        ws_queue_json(c, r);
    }
}

/* Whether the stream follows the watched instance's log: it names one, wants its log, and a
 * stream held to a tenant watches one of that tenant's instances. */
static int ws_may_follow(struct bh_ctx *ctx, const struct bh_events_filter *f,
                         const struct bh_ws_req *wr)
{
    if (!f->instance || !*f->instance || !bh_events_type_wanted(f->types, BH_EVT_INSTANCE_LOG))
        return 0;
    if (!wr || !wr->tenant[0])
        return 1;
    cJSON *inst = NULL;
    struct bh_err err;
    if (bh_store_get(ctx->store, "Instance", f->instance, &inst, &err) < 0)
        return 0;
    const char *tenant = bh_json_str(inst, "spec.tenantId");
    int mine = tenant && strcmp(tenant, wr->tenant) == 0;
    cJSON_Delete(inst);
    return mine;
}

static void ws_upgraded(void *cls, struct MHD_Connection *conn, void *con_cls, const char *extra,
                        size_t extra_len, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
    struct ws_conn c = {.env = cls, .fd = sock};
    int sndbuf = WS_SNDBUF;
    setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    struct bh_ctx *ctx = c.env->ctx;
    const struct bh_ws_req *wr = con_cls;
    const struct bh_events_filter filter = {
        MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "types"),
        MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "workload"),
        wr && wr->tenant[0] ? wr->tenant
                            : MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "tenant"),
        MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "instance")};
    int resync = 0;
    long long since;
    BH_IGNORE(ws_since(conn, &since)); /* bh_ws_answer refused a malformed one */
    c.reader = bh_events_reader_open(ctx->events, since, &filter, &resync);
    c.last_heard = bh_clock_ms();
    c.next_ping = c.last_heard + ctx->cfg.ws_ping_ms;
    memcpy(c.in, extra, extra_len < WS_IN_MAX ? extra_len : WS_IN_MAX);
    c.in_len = extra_len < WS_IN_MAX ? extra_len : WS_IN_MAX;
    if (ws_may_follow(ctx, &filter, wr))
        c.log = bh_ws_log_open(ctx, filter.instance);
    ws_hello(&c, resync);
    bh_debug("ws", "client connected (since %lld%s)", since, resync ? ", resync" : "");
    ws_run(&c, ctx->cfg.ws_ping_ms);
    bh_events_reader_close(c.reader);
    bh_ws_log_close(c.log);
    free(c.out);
    MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
}

static enum MHD_Result ws_refuse(struct MHD_Connection *conn, const char *msg)
{
    bh_autofree char *body = bh_xasprintf("{\"error\":\"%s\"}", msg);
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(conn, 400, r);
    MHD_destroy_response(r);
    return ret;
}

enum MHD_Result bh_ws_answer(struct bh_ws_env *env, struct MHD_Connection *conn)
{
    const char *key = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Sec-WebSocket-Key");
    const char *ver = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Sec-WebSocket-Version");
    if (!ws_header_has(conn, "Connection", "upgrade") || !key || strlen(key) != 24)
        return ws_refuse(conn, "not a WebSocket handshake (Connection: Upgrade and a 16-byte "
                               "Sec-WebSocket-Key are required)");
    if (!ver || strcmp(ver, "13") != 0)
        return ws_refuse(conn, "unsupported Sec-WebSocket-Version: 13 is required");
    long long since;
    if (ws_since(conn, &since) < 0)
        return ws_refuse(conn, "since: must be an event id (a non-negative integer)");
    const char *inst = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "instance");
    if (inst && *inst && !bh_name_label_valid(inst))
        return ws_refuse(conn, "instance: must be an instance id");
    char accept[29];
    bh_wsframe_accept_key(key, accept);
    struct MHD_Response *r = MHD_create_response_for_upgrade(ws_upgraded, env);
    MHD_add_response_header(r, "Upgrade", "websocket");
    MHD_add_response_header(r, "Sec-WebSocket-Accept", accept);
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_SWITCHING_PROTOCOLS, r);
    MHD_destroy_response(r);
    return ret;
}
