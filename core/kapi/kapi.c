/* The Kubernetes-compatible API's listener: libmicrohttpd with TLS, bearer auth with the
 * admin key, body limits, routing by path type, and the watch stream. */
#include "kapi.h"

#include <microhttpd.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "clock.h"
#include "crypto.h"
#include "json.h"
#include "kapi_int.h"
#include "listen.h"
#include "log.h"
#include "mem.h"
#include "ratelimit.h"
#include "resource.h"
#include "store.h"
#include "tls.h"

#define KAPI_WATCH_WAIT_MS 5000 /* an idle watch sends a keepalive (or a bookmark) this often */
#define KAPI_WATCH_MAX_S 1800

struct bh_kapi {
    struct bh_ctx *ctx;
    struct bh_kapi_fanout *fan; /* what every watch reads */
    struct bh_listen *listener;
    char *cert, *key;
};

struct kapi_conn {
    char *body;
    size_t len;
    int too_large;
};

const char *bh_kapi_query(const struct bh_kapi_req *req, const char *key)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, key);
}

void bh_kapi_json(struct bh_kapi_resp *resp, int status, cJSON *body)
{
    resp->status = status;
    cJSON_Delete(resp->json);
    resp->json = body;
}

/* The caller's principal (auth.h), the failure slow-down and the rate limit (ratelimit.h,
 * shared with the REST API), and whether the principal may use this method: viewers get, list
 * and watch (all GET); tenant scopes have no part of this API (it lists every tenant's
 * claims). 0 to go on, else resp is set. */
static int kapi_gate(struct bh_kapi *k, struct MHD_Connection *conn, const char *method,
                     struct bh_kapi_resp *resp)
{
    struct bh_principal who;
    struct bh_err err = {0};
    const char *cred = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    char addr[64];
    bh_listen_client_addr(conn, addr);
    int ok = bh_auth_principal(k->ctx, cred, BH_AUTH_VIA_LISTENER, &who, &err) == 0;
    if (!ok && err.code != BH_EAUTH) {
        bh_kapi_status(resp, 500, "InternalError", "%s", err.msg);
        return -1;
    }
    switch (bh_ratelimit_check(k->ctx->ratelimit, addr, k->ctx->cfg.api_key ? cred : NULL, ok,
                               &resp->retry_after, &k->ctx->kapi_stats)) {
    case BH_RATELIMIT_OK:
        break;
    case BH_RATELIMIT_UNAUTHORIZED:
        bh_kapi_status(resp, 401, "Unauthorized", "Unauthorized");
        return -1;
    default:
        bh_kapi_status(resp, 429, "TooManyRequests", "too many requests: retry in %d s",
                       resp->retry_after);
        return -1;
    }
    int read = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    if (bh_auth_allow(&who, read ? BH_AUTH_READ : BH_AUTH_ADMIN, NULL, NULL, &err) < 0) {
        bh_kapi_status(resp, 403, "Forbidden", "%s", err.msg);
        return -1;
    }
    return 0;
}

/* ---- watch stream ---- */

struct kapi_stream {
    struct bh_ctx *ctx;
    struct bh_kapi_fanout *fan;
    struct bh_kapi_watch *w;
    char *buf; /* pending bytes */
    size_t len, off;
    int done;
    int had_columns; /* a Table sent with its columnDefinitions (bh_kapi_fanout_lines) */
};

static void stream_append(struct kapi_stream *s, const char *type, cJSON *object)
{
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "type", type);
    cJSON_AddItemToObject(ev, "object", object);
    bh_autofree char *line = cJSON_PrintUnformatted(ev);
    cJSON_Delete(ev);
    size_t n = strlen(line);
    s->buf = bh_xrealloc(s->buf, s->len + n + 2);
    memcpy(s->buf + s->len, line, n);
    s->len += n;
    s->buf[s->len++] = '\n';
}

static int stream_wanted(const struct bh_kapi_watch *w, const cJSON *obj)
{
    if (!obj)
        return 0;
    if (w->name[0] && strcmp(bh_json_str(obj, "metadata.name") ?: "", w->name) != 0)
        return 0;
    return bh_kapi_sel_match_labels(&w->labels, obj) && bh_kapi_sel_match_fields(&w->fields, obj);
}

static void stream_event(struct kapi_stream *s, const char *type, cJSON *obj)
{
    bh_kapi_decorate(obj);
    if (!stream_wanted(s->w, obj))
        return;
    if (!s->w->table) {
        stream_append(s, type, cJSON_Duplicate(obj, 1));
        return;
    }
    cJSON *one = cJSON_CreateArray();
    cJSON_AddItemToArray(one, cJSON_Duplicate(obj, 1));
    cJSON *t = bh_kapi_table(s->w->kind, one, s->w->rv);
    cJSON_Delete(one);
    if (s->had_columns) /* the stream's first Table had them, as from the fan-out's lines */
        cJSON_ReplaceItemInObjectCaseSensitive(t, "columnDefinitions", cJSON_CreateNull());
    s->had_columns = 1;
    stream_append(s, type, t);
}

static void stream_bookmark(struct kapi_stream *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "kind", s->w->kind);
    cJSON_AddStringToObject(o, "apiVersion", "boilerhouse.dev/v1alpha1");
    char rv[24];
    snprintf(rv, sizeof(rv), "%lld", (long long)s->w->rv);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "metadata"), "resourceVersion", rv);
    stream_append(s, "BOOKMARK", o);
}

/* An expired resourceVersion: the Status kubectl and client-go answer by listing again. */
static void stream_gone(struct kapi_stream *s, const char *msg)
{
    struct bh_kapi_resp r = {0};
    bh_kapi_status(&r, 410, "Expired", "too old resource version: %s", msg);
    stream_append(s, "ERROR", r.json);
    s->done = 1;
}

/* A watch from no version starts with the objects there are, then goes on from the list. */
static void stream_initial(struct kapi_stream *s)
{
    cJSON *all = NULL, *o;
    struct bh_err err;
    s->w->initial = 0;
    if (bh_store_list(s->ctx->store, s->w->kind, NULL, &all, &s->w->rv, &err) < 0) {
        s->done = 1;
        return;
    }
    cJSON_ArrayForEach(o, all)
        stream_event(s, "ADDED", o);
    cJSON_Delete(all);
}

static int stream_match(const cJSON *obj, void *ud)
{
    return stream_wanted(ud, obj);
}

/* A watch (JSON or Table) takes the lines the fan-out printed once for every watcher. 0 when
 * it must read events itself (they are older than memory holds). */
static int stream_fill_lines(struct kapi_stream *s, int wait)
{
    struct bh_kapi_fanout_lines r = {.kind = s->w->kind,
                                     .table = s->w->table,
                                     .had_columns = s->had_columns,
                                     .since = s->w->rv,
                                     .match = stream_match,
                                     .ud = s->w};
    struct bh_kapi_buf out = {0};
    if (bh_kapi_fanout_lines(s->fan, &r, wait, &out) != 0) {
        free(out.data);
        return 0;
    }
    s->w->rv = r.since;
    s->had_columns = r.had_columns;
    s->buf = out.data;
    s->len = out.len;
    if (s->len == 0 && s->w->bookmarks)
        stream_bookmark(s);
    else if (s->len == 0)
        s->buf = bh_xstrdup("\n"), s->len = 1; /* keepalive: finds a gone client */
    return 1;
}

/* Blocks until there is something to send: events, a keepalive or bookmark, or the end. */
static void stream_fill(struct kapi_stream *s)
{
    cJSON *evs = NULL;
    struct bh_err err;
    long long left = s->w->deadline_ms - bh_clock_ms();
    if (left <= 0) {
        s->done = 1;
        return;
    }
    if (s->w->initial) {
        stream_initial(s);
        if (s->len)
            return;
    }
    int wait = left < KAPI_WATCH_WAIT_MS ? (int)left : KAPI_WATCH_WAIT_MS;
    if (stream_fill_lines(s, wait))
        return;
    if (bh_kapi_fanout_since(s->fan, s->w->kind, s->w->rv, wait, &evs, &err) < 0) {
        if (err.code == BH_ECONFLICT)
            stream_gone(s, err.msg);
        else
            s->done = 1;
        return;
    }
    cJSON *ev;
    cJSON_ArrayForEach(ev, evs) {
        cJSON *obj = cJSON_GetObjectItemCaseSensitive(ev, "object");
        const char *rv = bh_json_str(obj, "metadata.resourceVersion");
        if (rv)
            s->w->rv = strtoll(rv, NULL, 10);
        stream_event(s, bh_json_str(ev, "type"), obj);
    }
    if (cJSON_GetArraySize(evs) == 0 && s->w->bookmarks)
        stream_bookmark(s);
    else if (s->len == 0)
        s->buf = bh_xstrdup("\n"), s->len = 1; /* keepalive: finds a gone client */
    cJSON_Delete(evs);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
    struct kapi_stream *s = cls;
    while (s->off == s->len) {
        free(s->buf);
        s->buf = NULL;
        s->len = s->off = 0;
        if (s->done)
            return MHD_CONTENT_READER_END_OF_STREAM;
        stream_fill(s);
    }
    size_t n = s->len - s->off < max ? s->len - s->off : max;
    memcpy(out, s->buf + s->off, n);
    s->off += n;
    return (ssize_t)n;
}

static void stream_free(void *cls)
{
    struct kapi_stream *s = cls;
    free(s->buf);
    free(s->w);
    free(s);
}

/* ---- requests ---- */

static void kapi_route(const struct bh_kapi_req *req, struct bh_kapi_resp *resp)
{
    switch (req->path->type) {
    case BH_KAPI_P_OPENAPI_V2:
    case BH_KAPI_P_OPENAPI_V3:
    case BH_KAPI_P_OPENAPI_GV:
        bh_kapi_openapi(req, resp);
        return;
    case BH_KAPI_P_OBJECT:
        if (req->path->group[0])
            bh_kapi_objects(req, resp);
        else
            bh_kapi_core(req, resp);
        return;
    default:
        bh_kapi_discovery(req, resp);
    }
}

static int kapi_wants_table(struct MHD_Connection *conn)
{
    const char *accept = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Accept");
    return accept && strstr(accept, "as=Table") != NULL;
}

static void kapi_dispatch(struct bh_kapi *k, struct MHD_Connection *conn, const char *method,
                          const char *url, struct kapi_conn *kc, struct bh_kapi_resp *resp)
{
    struct bh_kapi_path path;
    struct bh_err err;
    if (kapi_gate(k, conn, method, resp) < 0)
        return;
    if (bh_kapi_path_parse(url, &path, &err) < 0) {
        bh_kapi_status(resp, 404, "NotFound", "the server could not find the requested resource");
        return;
    }
    struct bh_kapi_req req = {
        .ctx = k->ctx,
        .conn = conn,
        .method = method,
        .path = &path,
        .body = kc->body,
        .body_len = kc->len,
        .content_type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type"),
        .want_table = kapi_wants_table(conn),
    };
    kapi_route(&req, resp);
}

/* RFC 7234 warn-code 299 with the text quoted, as the API server sends it. */
static char *kapi_warning_header(const char *text)
{
    size_t n = strlen(text), w = 0;
    char *q = bh_xmalloc(2 * n + 1);
    for (size_t i = 0; i < n; i++) {
        if (text[i] == '"' || text[i] == '\\')
            q[w++] = '\\';
        q[w++] = (text[i] == '\r' || text[i] == '\n') ? ' ' : text[i];
    }
    q[w] = '\0';
    char *h = bh_xasprintf("299 - \"%s\"", q);
    free(q);
    return h;
}

static enum MHD_Result kapi_send(struct bh_kapi *k, struct MHD_Connection *conn,
                                 struct bh_kapi_resp *r)
{
    struct MHD_Response *resp;
    if (r->watch) {
        struct kapi_stream *s = bh_xcalloc(1, sizeof(*s));
        s->ctx = k->ctx;
        s->fan = k->fan;
        s->w = r->watch;
        resp =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, s, stream_free);
        r->status = 200;
    } else if (r->raw) {
        resp = MHD_create_response_from_buffer(r->raw_len, r->raw, MHD_RESPMEM_MUST_FREE);
        r->raw = NULL;
    } else {
        char *text = r->json ? bh_json_print(r->json) : bh_xstrdup("{}");
        resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    }
    MHD_add_response_header(resp, "Content-Type", r->raw_type ? r->raw_type : "application/json");
    MHD_add_response_header(resp, "Cache-Control", "no-cache, private");
    for (int i = 0; i < r->n_warnings; i++) {
        bh_autofree char *w = kapi_warning_header(r->warnings[i]);
        MHD_add_response_header(resp, "Warning", w);
    }
    bh_listen_retry_after(resp, r->retry_after);
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    cJSON_Delete(r->json);
    return ret;
}

static enum MHD_Result kapi_handle(void *cls, struct MHD_Connection *conn, const char *url,
                                   const char *method, const char *version, const char *upload_data,
                                   size_t *upload_size, void **con_cls)
{
    struct bh_kapi *k = cls;
    struct kapi_conn *kc = *con_cls;
    if (!kc) {
        *con_cls = bh_xcalloc(1, sizeof(struct kapi_conn));
        return MHD_YES;
    }
    if (*upload_size) {
        if (kc->too_large || kc->len + *upload_size > k->ctx->cfg.max_body) {
            kc->too_large = 1;
        } else {
            kc->body = bh_xrealloc(kc->body, kc->len + *upload_size + 1);
            memcpy(kc->body + kc->len, upload_data, *upload_size);
            kc->len += *upload_size;
            kc->body[kc->len] = '\0';
        }
        *upload_size = 0;
        return MHD_YES;
    }
    struct bh_kapi_resp resp = {0};
    long long t0 = bh_clock_ms();
    if (kc->too_large)
        bh_kapi_status(&resp, 413, "RequestEntityTooLarge", "request body exceeds %zu bytes",
                       k->ctx->cfg.max_body);
    else
        kapi_dispatch(k, conn, method, url, kc, &resp);
    int status = resp.status;
    enum MHD_Result ret = kapi_send(k, conn, &resp);
    /* The server's time: the answer made and encoded (a watch: until its stream starts). */
    bh_debug("kapi", "%s %s -> %d (%lld ms)", method, url, status, bh_clock_ms() - t0);
    return ret;
}

static void kapi_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                           enum MHD_RequestTerminationCode toe)
{
    struct kapi_conn *kc = *con_cls;
    if (kc) {
        free(kc->body);
        free(kc);
        *con_cls = NULL;
    }
}

int bh_kapi_body(const struct bh_kapi_req *req, struct bh_kapi_resp *resp, cJSON **out)
{
    struct bh_err err;
    if (!req->body || req->body_len == 0) {
        bh_kapi_status(resp, 400, "BadRequest", "request body is empty");
        return -1;
    }
    const char *ct = req->content_type ? req->content_type : "";
    int proto = strncmp(ct, "application/vnd.kubernetes.protobuf", 35) == 0;
    if (proto && strcmp(req->path->resource, "secrets") != 0) {
        bh_kapi_status(resp, 415, "UnsupportedMediaType",
                       "protobuf bodies are accepted only for secrets; send JSON");
        return -1;
    }
    if ((proto ? bh_kapi_proto_secret(req->body, req->body_len, out, &err)
               : bh_resource_parse(req->body, req->body_len, out, &err)) < 0) {
        bh_kapi_status(resp, 400, "BadRequest", "invalid request body: %s", err.msg);
        return -1;
    }
    return 0;
}

static int kapi_listen(struct bh_kapi *k, const char *host, int port, struct bh_err *err)
{
    /* The idle deadline does not cut watches: an idle watch writes every KAPI_WATCH_WAIT_MS. */
    struct bh_listen_cfg lc = {
        .what = "kube API",
        .host = host,
        .port = port,
        .tls_cert = k->cert,
        .tls_key = k->key,
        .handler = kapi_handle,
        .handler_cls = k,
        .completed = kapi_completed,
        .completed_cls = k,
        .limits = bh_ctx_listen_limits(&k->ctx->cfg),
        .stats = &k->ctx->kapi_stats,
    };
    return bh_listen_start(&lc, &k->listener, err);
}

int bh_kapi_start(struct bh_ctx *ctx, const char *host, int port, struct bh_kapi **out,
                  struct bh_err *err)
{
    if (!bh_listen_is_loopback(host) && !ctx->cfg.api_key)
        return bh_err_set(err, BH_EINVAL,
                          "refusing to serve the kube API on %s without an API key: set "
                          "BOILERHOUSE_API_KEY or listen on 127.0.0.1",
                          host);
    struct bh_kapi *k = bh_xcalloc(1, sizeof(*k));
    k->ctx = ctx;
    bh_autofree char *dir = bh_xasprintf("%s/kapi", ctx->cfg.state_dir);
    k->fan = bh_kapi_fanout_start(ctx->store);
    if (bh_tls_ensure(dir, host, NULL, &k->cert, &k->key, err) < 0 ||
        kapi_listen(k, host, port, err) < 0) {
        bh_kapi_stop(k);
        return -1;
    }
    bh_info("kapi", "Kubernetes-compatible API on https://%s:%d", host, port);
    *out = k;
    return 0;
}

void bh_kapi_stop(struct bh_kapi *k)
{
    if (!k)
        return;
    bh_listen_stop(k->listener);
    bh_kapi_fanout_stop(k->fan); /* after the watches it feeds */
    if (k->key)
        OPENSSL_cleanse(k->key, strlen(k->key));
    free(k->key);
    free(k->cert);
    free(k);
}

int bh_kapi_kubeconfig(const char *state_dir, const char *host, int port, const char *token,
                       char **out, struct bh_err *err)
{
    bh_autofree char *dir = bh_xasprintf("%s/kapi", state_dir);
    bh_autofree char *ca = NULL;
    if (bh_tls_ensure(dir, host, &ca, NULL, NULL, err) < 0)
        return -1;
    bh_autofree char *ca64 = bh_crypto_base64(ca, strlen(ca));
    const char *server = strcmp(host, "0.0.0.0") == 0 ? "127.0.0.1" : host;
    /* Without a key the listener is open (loopback only), but kubectl asks for a user name
     * when a user has no credentials at all: it gets a token the listener ignores. */
    bh_autofree char *user = bh_xasprintf("    token: %s\n", token ? token : "local-mode");
    *out = bh_xasprintf("apiVersion: v1\n"
                        "kind: Config\n"
                        "clusters:\n"
                        "- name: boilerhouse\n"
                        "  cluster:\n"
                        "    server: https://%s:%d\n"
                        "    certificate-authority-data: %s\n"
                        "users:\n"
                        "- name: boilerhouse\n"
                        "  user:\n%s"
                        "contexts:\n"
                        "- name: boilerhouse\n"
                        "  context:\n"
                        "    cluster: boilerhouse\n"
                        "    user: boilerhouse\n"
                        "    namespace: " BH_KAPI_NAMESPACE "\n"
                        "current-context: boilerhouse\n",
                        server, port, ca64, user);
    return 0;
}
