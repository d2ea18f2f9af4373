/* The `websocket` driver: the claude-code / pi message protocol (reference §6.5) over one
 * persistent WebSocket session per tenant and trigger, reused across events.
 *
 *   claude-code: on connect {"type":"init","tenantId"} -> {"type":"ready"} (10 s); then per
 *                event {"type":"prompt","text"} -> {"type":"output","text"}* -> "idle".
 *   pi:          no init; the same prompt/output/idle exchange.
 * "exit" ends the event with the text so far (or, with none, an error naming the exit code
 * and stderr); "error" fails it. The reply is {"text": <the outputs concatenated>}.
 *
 * libcurl connects (TCP to the endpoint, or the unix socket in the instance's socket dir for
 * workloads without a network) with CONNECT_ONLY: Debian's libcurl 7.88 is built without
 * its experimental ws:// support, so the upgrade request is written here and the frames
 * come from util/wsframe (the /ws server's framing). Events of one tenant reach the driver
 * one at a time (the pipeline's lanes), so a session is never shared by two deliveries. The
 * claim is Active only once the instance passed its health check, so the first connect never
 * races the boot. A session follows its instance: a claim on another instance (after a
 * release, a hibernation) reconnects, and a reused session the instance dropped is reopened
 * once before anything was sent. */
#include <curl/curl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clock.h"
#include "crypto.h"
#include "json.h"
#include "mem.h"
#include "store.h"
#include "trigger_int.h"
#include "wsframe.h"

#define WS_DEFAULT_PATH "/ws"
#define WS_TIMEOUT_S 300      /* a whole exchange, as the reference's bridges allow */
#define WS_READY_MS 10000     /* init -> ready */
#define WS_CONNECT_S 10       /* connect and handshake */
#define WS_MAX_MSG (1 << 20)  /* one message from the instance, and the whole reply */
#define WS_MAX_HEAD (8 << 10) /* the handshake's answer */

struct trigger_ws {
    char *tenant;
    char *instance; /* the instance the session is connected to */
    CURL *curl;
    curl_socket_t fd;
    unsigned char *in; /* received, not yet parsed */
    size_t in_len;
    char *msg; /* the message being reassembled from fragments */
    size_t msg_len;
    int busy;     /* a delivery uses it (under ts->lock) */
    int orphaned; /* the trigger stopped meanwhile: its user frees it */
    struct trigger_ws *next;
};

/* ---- sessions ---- */

static void ws_disconnect(struct trigger_ws *s)
{
    if (s->curl)
        curl_easy_cleanup(s->curl);
    s->curl = NULL;
    s->fd = CURL_SOCKET_BAD;
    free(s->instance);
    s->instance = NULL;
    free(s->in);
    s->in = NULL;
    s->in_len = 0;
    free(s->msg);
    s->msg = NULL;
    s->msg_len = 0;
}

static void ws_free(struct trigger_ws *s)
{
    ws_disconnect(s);
    free(s->tenant);
    free(s);
}

/* Whether an idle session's peer has gone (the instance stopped or was released). */
static int ws_peer_gone(const struct trigger_ws *s)
{
    struct pollfd p = {s->fd, POLLRDHUP, 0};
    return s->fd == CURL_SOCKET_BAD ||
           (poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)));
}

/* The tenant's session, marked busy; idle sessions whose instance went away are dropped on
 * the way, so sessions of released tenants do not pile up. */
static struct trigger_ws *ws_acquire(struct trigger *t, const char *tenant)
{
    struct trigger_ws *found = NULL;
    pthread_mutex_lock(&t->ts->lock);
    for (struct trigger_ws **p = &t->ws; *p;) {
        struct trigger_ws *s = *p;
        if (strcmp(s->tenant, tenant) == 0) {
            found = s;
        } else if (!s->busy && ws_peer_gone(s)) {
            *p = s->next;
            ws_free(s);
            continue;
        }
        p = &s->next;
    }
    if (found && found->busy) {
        found = NULL; /* the lanes make this unreachable; a second session is harmless */
    } else if (!found) {
        found = bh_xcalloc(1, sizeof(*found));
        found->tenant = bh_xstrdup(tenant);
        found->fd = CURL_SOCKET_BAD;
        found->next = t->ws;
        t->ws = found;
    }
    if (found)
        found->busy = 1;
    pthread_mutex_unlock(&t->ts->lock);
    return found;
}

static void ws_release(struct trigger *t, struct trigger_ws *s, int failed)
{
    if (failed)
        ws_disconnect(s); /* the next event starts from a clean connection */
    pthread_mutex_lock(&t->ts->lock);
    s->busy = 0;
    int orphaned = s->orphaned;
    pthread_mutex_unlock(&t->ts->lock);
    if (orphaned)
        ws_free(s);
}

void trigger_ws_close_all(struct trigger *t)
{
    pthread_mutex_lock(&t->ts->lock);
    struct trigger_ws *s = t->ws;
    t->ws = NULL;
    while (s) {
        struct trigger_ws *next = s->next;
        if (s->busy)
            s->orphaned = 1;
        else
            ws_free(s);
        s = next;
    }
    pthread_mutex_unlock(&t->ts->lock);
}

/* ---- transport ---- */

static int ws_wait(struct trigger_ws *s, short events, long long deadline, struct bh_err *err)
{
    long long left = deadline - bh_clock_ms();
    struct pollfd p = {s->fd, events, 0};
    if (left <= 0 || poll(&p, 1, (int)left) == 0)
        return bh_err_set(err, BH_ETIMEOUT, "the instance did not answer in time");
    return 0;
}

static int ws_send_all(struct trigger_ws *s, const char *buf, size_t len, long long deadline,
                       struct bh_err *err)
{
    size_t off = 0;
    while (off < len) {
        size_t n = 0;
        CURLcode rc = curl_easy_send(s->curl, buf + off, len - off, &n);
        if (rc == CURLE_AGAIN) {
            if (ws_wait(s, POLLOUT, deadline, err) < 0)
                return -1;
            continue;
        }
        if (rc != CURLE_OK)
            return bh_err_set(err, BH_EIO, "send: %s", curl_easy_strerror(rc));
        off += n;
    }
    return 0;
}

/* Reads what the socket has into s->in (at least one byte, or an error). */
static int ws_fill(struct trigger_ws *s, long long deadline, struct bh_err *err)
{
    char buf[16384];
    for (;;) {
        size_t n = 0;
        CURLcode rc = curl_easy_recv(s->curl, buf, sizeof(buf), &n);
        if (rc == CURLE_AGAIN) {
            if (ws_wait(s, POLLIN, deadline, err) < 0)
                return -1;
            continue;
        }
        if (rc != CURLE_OK)
            return bh_err_set(err, BH_EIO, "receive: %s", curl_easy_strerror(rc));
        if (n == 0)
            return bh_err_set(err, BH_EIO, "the instance closed the connection");
        if (s->in_len + n > WS_MAX_MSG + WS_MAX_HEAD)
            return bh_err_set(err, BH_ETOOLARGE, "the instance sent a frame over %d bytes",
                              WS_MAX_MSG);
        s->in = bh_xrealloc(s->in, s->in_len + n);
        memcpy(s->in + s->in_len, buf, n);
        s->in_len += n;
        return 0;
    }
}

static int ws_send_frame(struct trigger_ws *s, int opcode, const void *data, size_t len,
                         long long deadline, struct bh_err *err)
{
    bh_autofree char *frame = NULL;
    size_t flen = 0;
    bh_wsframe_append(&frame, &flen, opcode, data, len, 1);
    return ws_send_all(s, frame, flen, deadline, err);
}

static int ws_send_json(struct trigger_ws *s, cJSON *msg, long long deadline, struct bh_err *err)
{
    bh_autofree char *text = bh_json_print(msg);
    cJSON_Delete(msg);
    return ws_send_frame(s, BH_WS_OP_TEXT, text, strlen(text), deadline, err);
}

/* Handles one frame; 1 when it completed a data message (then in s->msg). */
static int ws_on_frame(struct trigger_ws *s, const struct bh_wsframe *f, long long deadline,
                       struct bh_err *err)
{
    switch (f->opcode) {
    case BH_WS_OP_PING:
        return ws_send_frame(s, BH_WS_OP_PONG, f->payload, f->len, deadline, err);
    case BH_WS_OP_PONG:
        return 0;
    case BH_WS_OP_CLOSE:
        return bh_err_set(err, BH_EIO, "the instance closed the session (code %d)",
                          f->len >= 2 ? f->payload[0] << 8 | f->payload[1] : 1005);
    case BH_WS_OP_TEXT:
    case BH_WS_OP_BINARY:
    case BH_WS_OP_CONT:
        if (s->msg_len + f->len > WS_MAX_MSG)
            return bh_err_set(err, BH_ETOOLARGE, "the instance sent a message over %d bytes",
                              WS_MAX_MSG);
        s->msg = bh_xrealloc(s->msg, s->msg_len + f->len + 1);
        memcpy(s->msg + s->msg_len, f->payload, f->len);
        s->msg_len += f->len;
        s->msg[s->msg_len] = '\0';
        return f->fin ? 1 : 0;
    default:
        return bh_err_set(err, BH_EIO, "the instance sent a frame of unknown opcode %d", f->opcode);
    }
}

/* The next data message from the instance, parsed as JSON (owned). */
static int ws_next(struct trigger_ws *s, long long deadline, cJSON **out, struct bh_err *err)
{
    for (;;) {
        struct bh_wsframe f;
        ssize_t used = bh_wsframe_parse(s->in, s->in_len, WS_MAX_MSG, 0, &f);
        if (used < 0)
            return bh_err_set(err, BH_EIO, "the instance broke the WebSocket framing");
        if (used == 0) {
            if (ws_fill(s, deadline, err) < 0)
                return -1;
            continue;
        }
        int rc = ws_on_frame(s, &f, deadline, err);
        memmove(s->in, s->in + used, s->in_len - (size_t)used);
        s->in_len -= (size_t)used;
        if (rc < 0)
            return -1;
        if (rc == 1) {
            *out = cJSON_Parse(s->msg);
            s->msg_len = 0;
            if (!*out || !cJSON_IsObject(*out)) {
                cJSON_Delete(*out);
                return bh_err_set(err, BH_EIO,
                                  "the instance sent a message that is not a JSON "
                                  "object");
            }
            return 0;
        }
    }
}

/* ---- connect ---- */

/* Reads the answer to the upgrade request and checks it accepted our key. */
static int ws_handshake_answer(struct trigger_ws *s, const char *key, long long deadline,
                               struct bh_err *err)
{
    char *end = NULL;
    while (!(end = s->in ? memmem(s->in, s->in_len, "\r\n\r\n", 4) : NULL)) {
        if (s->in_len > WS_MAX_HEAD)
            return bh_err_set(err, BH_EIO, "the upgrade answer is over %d bytes", WS_MAX_HEAD);
        if (ws_fill(s, deadline, err) < 0)
            return -1;
    }
    size_t head_len = (size_t)(end - (char *)s->in) + 4;
    bh_autofree char *head = bh_xstrndup((char *)s->in, head_len);
    memmove(s->in, s->in + head_len, s->in_len - head_len); /* frames that came along */
    s->in_len -= head_len;
    if (strncmp(head, "HTTP/1.1 101", 12) != 0) {
        head[strcspn(head, "\r\n")] = '\0';
        return bh_err_set(err, BH_EIO, "the instance refused the WebSocket upgrade: %.120s", head);
    }
    char accept[29];
    bh_wsframe_accept_key(key, accept);
    for (char *line = strstr(head, "\r\n"); line; line = strstr(line + 2, "\r\n"))
        if (strncasecmp(line + 2, "Sec-WebSocket-Accept:", 21) == 0) {
            const char *v = line + 23;
            v += strspn(v, " \t");
            if (strncmp(v, accept, 28) == 0)
                return 0;
        }
    return bh_err_set(err, BH_EIO,
                      "the instance answered the upgrade without the right "
                      "Sec-WebSocket-Accept");
}

/* claude-code's init -> ready. */
static int ws_init(struct trigger_ws *s, long long deadline, struct bh_err *err)
{
    cJSON *init = cJSON_CreateObject();
    cJSON_AddStringToObject(init, "type", "init");
    cJSON_AddStringToObject(init, "tenantId", s->tenant);
    if (ws_send_json(s, init, deadline, err) < 0)
        return -1;
    long long ready_by = bh_clock_ms() + WS_READY_MS;
    for (;;) {
        cJSON *msg = NULL;
        if (ws_next(s, ready_by < deadline ? ready_by : deadline, &msg, err) < 0)
            return -1;
        const char *type = bh_json_str(msg, "type");
        int ready = type && strcmp(type, "ready") == 0;
        int failed = type && strcmp(type, "error") == 0;
        if (failed)
            bh_err_set(err, BH_EIO, "init: %.200s",
                       bh_json_str(msg, "message") ? bh_json_str(msg, "message") : "error");
        cJSON_Delete(msg);
        if (ready || failed)
            return failed ? -1 : 0;
    }
}

static int ws_connect(struct trigger_ws *s, const struct trigger_delivery *d, const char *path,
                      const char *instance, long long deadline, struct bh_err *err)
{
    bh_autofree char *url = NULL;
    bh_autofree char *sock = NULL;
    if (trigger_driver_target(d->t->spec, d->claim, path, &url, &sock, err) < 0)
        return -1;
    s->curl = curl_easy_init();
    if (!s->curl)
        return bh_err_set(err, BH_EIO, "curl_easy_init failed");
    curl_easy_setopt(s->curl, CURLOPT_URL, url);
    if (sock)
        curl_easy_setopt(s->curl, CURLOPT_UNIX_SOCKET_PATH, sock);
    curl_easy_setopt(s->curl, CURLOPT_CONNECT_ONLY, 1L);
    curl_easy_setopt(s->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(s->curl, CURLOPT_CONNECTTIMEOUT, (long)WS_CONNECT_S);
    CURLcode rc = curl_easy_perform(s->curl);
    if (rc != CURLE_OK)
        return bh_err_set(err, BH_EIO, "connect %s: %s", url, curl_easy_strerror(rc));
    curl_easy_getinfo(s->curl, CURLINFO_ACTIVESOCKET, &s->fd);
    s->instance = bh_xstrdup(instance);
    unsigned char nonce[16];
    if (bh_crypto_random(nonce, sizeof(nonce), err) < 0)
        return -1;
    bh_autofree char *key = bh_crypto_base64(nonce, sizeof(nonce));
    bh_autofree char *req = bh_xasprintf("GET %s HTTP/1.1\r\nHost: instance\r\n"
                                         "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                                         "Sec-WebSocket-Key: %s\r\n"
                                         "Sec-WebSocket-Version: 13\r\n\r\n",
                                         path, key);
    long long by = bh_clock_ms() + WS_CONNECT_S * 1000LL;
    by = by < deadline ? by : deadline;
    if (ws_send_all(s, req, strlen(req), by, err) < 0 || ws_handshake_answer(s, key, by, err) < 0)
        return -1;
    const char *protocol = bh_json_str(d->t->spec, "driverOptions.protocol");
    if (!protocol || strcmp(protocol, "claude-code") == 0)
        return ws_init(s, deadline, err);
    return 0;
}

/* ---- one event ---- */

static int ws_fail_message(const cJSON *msg, const char *type, struct bh_err *err)
{
    const char *m = bh_json_str(msg, "message");
    if (strcmp(type, "error") == 0)
        return bh_err_set(err, BH_EIO, "the agent reported an error: %.300s", m ? m : "");
    const char *stderr_text = bh_json_str(msg, "stderr");
    return bh_err_set(err, BH_EIO, "the agent exited with code %lld%s%.300s",
                      bh_json_int(msg, "code", -1), stderr_text ? ": " : "",
                      stderr_text ? stderr_text : "");
}

/* Sends the prompt and gathers the outputs until idle (or exit). *heard: the instance sent
 * something after the prompt, so the event must not be sent again. */
static int ws_exchange(struct trigger_ws *s, const char *text, long long deadline, char **out,
                       int *heard, struct bh_err *err)
{
    cJSON *prompt = cJSON_CreateObject();
    cJSON_AddStringToObject(prompt, "type", "prompt");
    cJSON_AddStringToObject(prompt, "text", text);
    if (ws_send_json(s, prompt, deadline, err) < 0)
        return -1;
    bh_autofree char *acc = bh_xstrdup("");
    size_t acc_len = 0;
    for (;;) {
        cJSON *msg = NULL;
        if (ws_next(s, deadline, &msg, err) < 0)
            return -1;
        *heard = 1;
        const char *type = bh_json_str(msg, "type");
        const char *chunk = bh_json_str(msg, "text");
        type = type ? type : "";
        size_t n = chunk ? strlen(chunk) : 0;
        int done = strcmp(type, "idle") == 0 || (strcmp(type, "exit") == 0 && acc_len > 0);
        int rc = 0;
        if (strcmp(type, "output") == 0 && acc_len + n > WS_MAX_MSG) {
            rc = bh_err_set(err, BH_ETOOLARGE, "the agent answered more than %d bytes", WS_MAX_MSG);
        } else if (strcmp(type, "output") == 0) {
            acc = bh_xrealloc(acc, acc_len + n + 1);
            memcpy(acc + acc_len, chunk ? chunk : "", n + 1);
            acc_len += n;
        } else if (!done && (strcmp(type, "exit") == 0 || strcmp(type, "error") == 0)) {
            rc = ws_fail_message(msg, type, err);
        }
        cJSON_Delete(msg);
        if (rc < 0)
            return -1;
        if (done)
            break;
    }
    cJSON *reply = cJSON_CreateObject();
    cJSON_AddStringToObject(reply, "text", acc);
    *out = bh_json_print(reply);
    cJSON_Delete(reply);
    return 0;
}

/* driverOptions.path, else the workload's network.websocket, else /ws. */
static char *ws_path(const struct trigger_delivery *d)
{
    const char *opt = bh_json_str(d->t->spec, "driverOptions.path");
    if (opt)
        return bh_xstrdup(opt);
    cJSON *wl = NULL;
    struct bh_err err = {0};
    char *path = NULL;
    if (bh_store_get(d->t->ts->ctx->store, "BoilerhouseWorkload",
                     bh_json_str(d->t->spec, "workloadRef"), &wl, &err) == 0) {
        const char *w = bh_json_str(wl, "spec.network.websocket");
        path = w && trigger_driver_path_ok(w) ? bh_xstrdup(w) : NULL;
    }
    cJSON_Delete(wl);
    return path ? path : bh_xstrdup(WS_DEFAULT_PATH);
}

int trigger_ws_deliver(const struct trigger_delivery *d, char **out, size_t *out_len,
                       struct bh_err *err)
{
    const char *instance = bh_json_str(d->claim, "status.instanceId");
    if (!instance)
        return bh_err_set(err, BH_EUNAVAIL, "the claim has no instance");
    struct trigger_ws *s = ws_acquire(d->t, d->tenant);
    if (!s)
        return bh_err_set(err, BH_EUNAVAIL, "the tenant's session is in use");
    long long deadline =
        bh_clock_ms() +
        1000LL * bh_json_int(d->t->spec, "driverOptions.timeoutSeconds", WS_TIMEOUT_S);
    bh_autofree char *path = ws_path(d);
    if (s->curl && strcmp(s->instance, instance) != 0)
        ws_disconnect(s); /* the tenant's claim moved to another instance */
    int reused = s->curl != NULL, heard = 0;
    int rc = reused ? 0 : ws_connect(s, d, path, instance, deadline, err);
    if (rc == 0)
        rc = ws_exchange(s, d->text, deadline, out, &heard, err);
    /* The instance dropped the idle session (a failure, not a slow answer): once more. */
    if (rc < 0 && reused && !heard && err->code == BH_EIO) {
        ws_disconnect(s);
        rc = ws_connect(s, d, path, instance, deadline, err);
        if (rc == 0)
            rc = ws_exchange(s, d->text, deadline, out, &heard, err);
    }
    ws_release(d->t, s, rc < 0);
    if (rc == 0)
        *out_len = strlen(*out);
    return rc;
}
