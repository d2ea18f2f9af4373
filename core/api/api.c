/* The REST API (/api/v1) on libmicrohttpd: routing, bearer auth, body limits, JSON errors.
 * Handlers live in api_routes.c; this file is the HTTP plumbing. */
#include "api.h"

#include <microhttpd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "crypto.h"
#include "ctx.h"
#include "events.h"
#include "instance.h"
#include "fs.h"
#include "json.h"
#include "listen.h"
#include "log.h"
#include "mem.h"
#include "num.h"
#include "ui.h"
#include "ratelimit.h"
#include "store.h"
#include "tls.h"
#include "ws.h"

#define API_MAX_PARAMS 4

struct bh_api {
    struct bh_ctx *ctx;
    struct bh_listen *listener;
    struct bh_ws_env ws;
    enum bh_auth_via via; /* the TCP listener, or the socket instances reach */
    struct bh_api *inst;  /* the listener on the instance socket (owned by the TCP one) */
    char *cert, *key;     /* PEM when serving TLS; the key wiped on stop */
};

/* Per-request state kept by libmicrohttpd between upload callbacks. ws first: an upgraded
 * connection's ws.c reads it (ws.h). */
struct api_conn {
    struct bh_ws_req ws;
    char *body;
    size_t len;
    int too_large;
};

void bh_api_json(struct bh_api_resp *resp, int status, cJSON *body)
{
    resp->status = status;
    cJSON_Delete(resp->json);
    resp->json = body;
}

void bh_api_error(struct bh_api_resp *resp, int status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", msg);
    bh_api_json(resp, status, o);
}

void bh_api_from_err(struct bh_api_resp *resp, const struct bh_err *err)
{
    bh_api_error(resp, bh_err_http_status(err->code), "%s", err->msg);
}

int bh_api_query_int(const struct bh_api_req *req, struct bh_api_resp *resp, const char *name,
                     long long def, long long min, long long max, long long *out)
{
    const char *v = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
    struct bh_err err;
    *out = def;
    if (v && bh_num_parse(v, min, max, out, &err) < 0) {
        bh_api_error(resp, 400, "%s: %s", name, err.msg);
        return -1;
    }
    return 0;
}

/* Matches path segments against a pattern: "*" is one segment, "**" one or more (greedy up to
 * the remaining fixed segments), captured into params (owned by the caller). */
static void api_free_params(char **params, int n)
{
    for (int i = 0; i < n; i++)
        free(params[i]);
}

static int api_match_into(const char *pattern, const char *path, char **params, int *n_params)
{
    char pat[256], pth[2048];
    char *ps[16], *xs[64];
    int np = 0, nx = 0;
    *n_params = 0;
    /* A path too long to hold whole matches nothing, rather than a truncated prefix of it. */
    if (strlen(path) >= sizeof(pth))
        return 0;
    snprintf(pat, sizeof(pat), "%s", pattern);
    snprintf(pth, sizeof(pth), "%s", path);
    char *save = NULL;
    for (char *t = strtok_r(pat, "/", &save); t && np < 16; t = strtok_r(NULL, "/", &save))
        ps[np++] = t;
    /* Keep empty segments in the path: "/tenants//claim" must not match "*". */
    char *p = pth + (pth[0] == '/');
    while (p && nx < 64) {
        char *slash = strchr(p, '/');
        if (slash)
            *slash = '\0';
        xs[nx++] = p;
        p = slash ? slash + 1 : NULL;
    }
    if (p) /* more segments than we hold: no route has that many */
        return 0;
    *n_params = 0;
    int xi = 0;
    for (int pi = 0; pi < np; pi++) {
        if (strcmp(ps[pi], "**") == 0) {
            int take = nx - xi - (np - pi - 1);
            if (take < 1)
                return 0;
            char joined[2048] = "";
            for (int k = 0; k < take; k++)
                snprintf(joined + strlen(joined), sizeof(joined) - strlen(joined), "%s%s",
                         k ? "/" : "", xs[xi + k]);
            params[(*n_params)++] = bh_xstrdup(joined);
            xi += take;
            continue;
        }
        if (xi >= nx)
            return 0;
        if (strcmp(ps[pi], "*") == 0) {
            if (!xs[xi][0])
                return 0;
            params[(*n_params)++] = bh_xstrdup(xs[xi]);
        } else if (strcmp(ps[pi], xs[xi]) != 0) {
            return 0;
        }
        xi++;
    }
    return xi == nx;
}

/* Frees what a failed match captured, so callers own params only on success. A path that
 * does not begin with the pattern's fixed part (up to its first "*") is passed over before
 * the segment-by-segment match: the route table is walked on every request. */
static int api_match(const char *pattern, const char *path, char **params, int *n_params)
{
    size_t fixed = strcspn(pattern, "*");
    *n_params = 0;
    if (strncmp(pattern, path, fixed) != 0)
        return 0;
    if (api_match_into(pattern, path, params, n_params))
        return 1;
    api_free_params(params, *n_params);
    *n_params = 0;
    return 0;
}

/* The tenant and workload of the instance an instance route names, for a caller whose scope
 * depends on them (a tenant scope); both stay NULL for an unknown instance, which such a
 * caller may then not read. */
static void api_instance_owner(const struct bh_api_req *req, char **tenant, char **workload)
{
    cJSON *inst = NULL;
    struct bh_err err;
    *tenant = *workload = NULL;
    if (req->who->scopes & (BH_AUTH_SCOPE_ADMIN | BH_AUTH_SCOPE_VIEWER) || req->n_params < 1 ||
        bh_store_get(req->ctx->store, "Instance", req->params[0], &inst, &err) < 0)
        return;
    const char *t = bh_json_str(inst, "spec.tenantId");
    const char *w = bh_json_str(inst, "spec.workload");
    *tenant = t ? bh_xstrdup(t) : NULL;
    *workload = w ? bh_xstrdup(w) : NULL;
    cJSON_Delete(inst);
}

/* Whether the route's need is met: the tenant is the first parameter of the tenant routes,
 * the workload a claim's body names, the instance's owner for an instance route. On refusal resp
 * holds the 403. */
static int api_allowed(const struct bh_api_route *r, const struct bh_api_req *req,
                       struct bh_api_resp *resp)
{
    struct bh_err err;
    int tenant_route = r->need == BH_AUTH_CLAIM || r->need == BH_AUTH_TENANT_READ;
    const char *tenant = tenant_route && req->n_params > 0 ? req->params[0] : NULL;
    bh_autofree char *workload = r->need == BH_AUTH_CLAIM ? bh_api_body_workload(req) : NULL;
    bh_autofree char *owner = NULL;
    if (r->need == BH_AUTH_INSTANCE_READ) {
        api_instance_owner(req, &owner, &workload);
        tenant = owner;
    }
    if (bh_auth_allow(req->who, r->need, tenant, workload, &err) == 0)
        return 1;
    bh_api_from_err(resp, &err);
    return 0;
}

/* Authentication, the failure slow-down and the rate limit of a route that needs a
 * credential. browser: authorized another way (the /ws browser token; *who is then unset).
 * 0 to go on, else resp says why. */
static int api_gate(struct bh_api *api, struct MHD_Connection *conn, int browser,
                    struct bh_principal *who, struct bh_api_resp *resp)
{
    char addr[64];
    struct bh_err err = {0};
    bh_listen_client_addr(conn, addr);
    const char *cred = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    int ok = browser || bh_auth_principal(api->ctx, cred, api->via, who, &err) == 0;
    /* every instance shares the socket's one "address": no bar that would hit them all */
    const char *peer = api->via == BH_AUTH_VIA_INSTANCE ? NULL : addr;
    switch (bh_ratelimit_check(api->ctx->ratelimit, peer, api->ctx->cfg.api_key ? cred : NULL, ok,
                               &resp->retry_after, &api->ctx->api_stats)) {
    case BH_RATELIMIT_OK:
        return 0;
    case BH_RATELIMIT_UNAUTHORIZED:
        bh_api_from_err(resp, &err);
        break;
    case BH_RATELIMIT_AUTH_THROTTLED:
        bh_api_error(resp, 429, "too many failed authentications from %s: retry in %d s", addr,
                     resp->retry_after);
        break;
    case BH_RATELIMIT_RATE_LIMITED:
        bh_api_error(resp, 429, "request rate over %d/s: retry in %d s", api->ctx->cfg.rate_limit,
                     resp->retry_after);
        break;
    }
    return -1;
}

static enum MHD_Result api_send(struct MHD_Connection *conn, struct bh_api_resp *r)
{
    char *text = r->text;
    const char *ctype = r->content_type ? r->content_type : "text/plain; charset=utf-8";
    if (!text) {
        text = r->json ? bh_json_print(r->json) : bh_xstrdup("{}");
        ctype = "application/json";
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(resp, "Content-Type", ctype);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    bh_listen_retry_after(resp, r->retry_after);
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    cJSON_Delete(r->json);
    r->text = NULL;
    r->json = NULL;
    return ret;
}

static void api_dispatch(struct bh_api *api, struct MHD_Connection *conn, const char *method,
                         const char *url, struct api_conn *ac, struct bh_api_resp *resp)
{
    int path_matched = 0;
    for (const struct bh_api_route *r = bh_api_routes; r->pattern; r++) {
        char *params[API_MAX_PARAMS];
        int n = 0;
        if (!api_match(r->pattern, url, params, &n))
            continue;
        path_matched = 1;
        if (strcmp(r->method, method) != 0) {
            api_free_params(params, n);
            continue;
        }
        struct bh_principal who;
        struct bh_api_req req = {
            api->ctx, conn, method, url, ac->body, ac->len, (const char *const *)params, n, NULL};
        if (api->ctx->standby && strcmp(method, "GET") != 0) {
            /* Operator mode: a standby serves reads; a write's handler may act at once (a
             * claim boots inline), which only the leader may. */
            bh_api_error(resp, 503,
                         "this replica is a standby (operator mode): send %s to the "
                         "leader",
                         method);
            resp->retry_after = 1;
        } else if (r->need == BH_AUTH_PUBLIC) {
            r->handler(&req, resp);
        } else if (api_gate(api, conn, 0, &who, resp) == 0) {
            req.who = &who;
            if (api_allowed(r, &req, resp))
                r->handler(&req, resp);
            bh_api_audit(&req, who.actor, r->pattern, resp);
        }
        api_free_params(params, n);
        return;
    }
    if (path_matched)
        bh_api_error(resp, 405, "method %s not allowed on %s", method, url);
    else
        bh_api_error(resp, 404, "no route for %s %s", method, url);
}

/* Accumulates the body up to the limit; past it, keeps reading (to answer cleanly) but
 * discards, and the request is answered 413. */
static void api_take_upload(struct bh_api *api, struct api_conn *ac, const char *data, size_t size)
{
    if (ac->too_large || ac->len + size > api->ctx->cfg.max_body) {
        ac->too_large = 1;
        return;
    }
    ac->body = bh_xrealloc(ac->body, ac->len + size + 1);
    memcpy(ac->body + ac->len, data, size);
    ac->len += size;
    ac->body[ac->len] = '\0';
}

/* GET /ws: authorized like every route, or by a browser token in the query (minted by a
 * viewer or admin it reads every event; by a tenant scope, that tenant's). A tenant-scoped
 * caller's stream is filtered to its tenant, whatever the query asks. */
static enum MHD_Result api_ws(struct bh_api *api, struct MHD_Connection *conn, struct api_conn *ac)
{
    const char *token = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "token");
    const char *asked = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "tenant");
    struct bh_api_resp resp = {0};
    struct bh_principal who;
    const char *tenant = NULL;
    struct bh_err err;
    char held[64];
    int browser = api->via == BH_AUTH_VIA_LISTENER && bh_ws_token_check(api->ctx, token, held);
    if (browser && held[0])
        tenant = held; /* minted for a tenant scope: held to it, whatever the query asks */
    if (api_gate(api, conn, browser, &who, &resp) < 0)
        ; /* resp says why */
    else if (!browser && bh_auth_ws_tenant(&who, asked, &tenant, &err) < 0)
        bh_api_from_err(&resp, &err);
    else if (!bh_ws_wanted(conn))
        bh_api_error(&resp, 400, "GET /ws expects a WebSocket upgrade");
    else {
        snprintf(ac->ws.tenant, sizeof(ac->ws.tenant), "%s", tenant ? tenant : "");
        return bh_ws_answer(&api->ws, conn);
    }
    return api_send(conn, &resp);
}

static enum MHD_Result api_handle(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls)
{
    struct bh_api *api = cls;
    struct api_conn *ac = *con_cls;
    if (!ac) {
        *con_cls = bh_xcalloc(1, sizeof(struct api_conn));
        return MHD_YES;
    }
    if (*upload_size) {
        api_take_upload(api, ac, upload_data, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (strcmp(url, "/ws") == 0 && strcmp(method, "GET") == 0)
        return api_ws(api, conn, ac);
    if (bh_ui_wanted(url))
        return bh_ui_answer(api->ctx->cfg.ui_dir, conn, url, method);
    struct bh_api_resp resp = {0};
    long long t0 = bh_clock_ms();
    if (ac->too_large)
        bh_api_error(&resp, 413, "request body exceeds %zu bytes", api->ctx->cfg.max_body);
    else
        api_dispatch(api, conn, method, url, ac, &resp);
    bh_debug("api", "%s %s -> %d (%lld ms)", method, url, resp.status, bh_clock_ms() - t0);
    return api_send(conn, &resp);
}

static void api_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                          enum MHD_RequestTerminationCode toe)
{
    struct api_conn *ac = *con_cls;
    if (ac) {
        free(ac->body);
        free(ac);
        *con_cls = NULL;
    }
}

static int api_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

/* URL unescaping that keeps "%00" encoded: a decoded NUL would silently cut the path short
 * (".../tenants/%00/claim" would reach us as ".../tenants/"), and the literal "%00" is then
 * rejected by whatever validates that segment. */
static size_t api_unescape(void *cls, struct MHD_Connection *conn, char *s)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        int hi, lo;
        if (r[0] == '%' && (hi = api_hexval(r[1])) >= 0 && (lo = api_hexval(r[2])) >= 0 &&
            (hi | lo) != 0) {
            *w++ = (char)(hi * 16 + lo);
            r += 2;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

/* Whether the REST API serves TLS, or an error if the settings would send the key in
 * cleartext off loopback. */
static int api_tls_wanted(const struct bh_settings *cfg, int *tls, struct bh_err *err)
{
    int loopback = bh_listen_is_loopback(cfg->listen_host);
    *tls = strcmp(cfg->tls, "on") == 0 ||
           (strcmp(cfg->tls, "auto") == 0 && (!loopback || cfg->tls_cert));
    if (!*tls && !loopback && !cfg->insecure_http)
        return bh_err_set(err, BH_EINVAL,
                          "refusing plain HTTP on %s: the API key would travel in cleartext; "
                          "serve TLS (--tls auto, the default, or on) or pass --insecure-http 1",
                          cfg->listen_host);
    if (!cfg->tls_cert != !cfg->tls_key)
        return bh_err_set(err, BH_EINVAL, "--tls-cert and --tls-key go together");
    return 0;
}

/* The certificate and key: the operator's files, or made once under STATE_DIR/tls with a CA
 * of its own. Logs the fingerprint a client checks (of the CA, or of the given certificate). */
static int api_tls_load(struct bh_api *api, const struct bh_settings *cfg, struct bh_err *err)
{
    size_t len;
    bh_autofree char *ca = NULL;
    bh_autofree char *dir = bh_xasprintf("%s/tls", cfg->state_dir);
    if (cfg->tls_cert ? bh_fs_read_all(cfg->tls_cert, 1 << 20, &api->cert, &len, err) < 0 ||
                            bh_fs_read_all(cfg->tls_key, 1 << 20, &api->key, &len, err) < 0
                      : bh_tls_ensure(dir, cfg->listen_host, &ca, &api->cert, &api->key, err) < 0)
        return -1;
    char fp[BH_TLS_FINGERPRINT_LEN];
    if (bh_tls_fingerprint(ca ? ca : api->cert, fp, err) < 0)
        return bh_err_set(err, BH_EINVAL, "%s: %s", cfg->tls_cert, err->msg);
    if (ca)
        bh_info("api", "TLS with the daemon's CA %s/ca.crt, SHA-256 fingerprint %s", dir, fp);
    else
        bh_info("api", "TLS with %s, SHA-256 fingerprint %s", cfg->tls_cert, fp);
    return 0;
}

static void api_free(struct bh_api *api)
{
    if (api->key)
        bh_crypto_wipe(api->key, strlen(api->key));
    free(api->key);
    free(api->cert);
    free(api);
}

/* What the REST listeners share; the caller sets where they listen. */
static struct bh_listen_cfg api_listen_cfg(struct bh_api *api, const char *what)
{
    return (struct bh_listen_cfg){
        .what = what,
        .extra_flags = MHD_ALLOW_UPGRADE,
        .handler = api_handle,
        .handler_cls = api,
        .completed = api_completed,
        .completed_cls = api,
        .unescape = api_unescape,
        .limits = bh_ctx_listen_limits(&api->ctx->cfg),
        .stats = &api->ctx->api_stats,
    };
}

/* The unix socket instances that asked for API access reach the API through
 * (<state>/api.sock, bind-mounted into them). World-connectable, because a container's root is
 * an unprivileged host uid; the state dir around it is not, and every call on it needs a token
 * (no open access, even without an admin key). */
static int api_unix_listen(const char *path, struct bh_err *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return bh_err_set(err, BH_EINVAL, "instance API socket path %s is too long", path);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return bh_err_errno(err, BH_EIO, "socket");
    unlink(path); /* a stale socket from an earlier run */
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0666) < 0 ||
        listen(fd, 128) < 0) {
        bh_err_errno(err, BH_EIO, "instance API socket %s", path);
        close(fd);
        return -1;
    }
    return fd;
}

static int api_start_instance_socket(struct bh_api *api, struct bh_err *err)
{
    bh_autofree char *path = bh_instance_api_socket(api->ctx);
    int fd = api_unix_listen(path, err);
    if (fd < 0)
        return -1;
    struct bh_api *inst = bh_xcalloc(1, sizeof(*inst));
    inst->ctx = api->ctx;
    inst->ws.ctx = api->ctx;
    inst->via = BH_AUTH_VIA_INSTANCE;
    struct bh_listen_cfg lc = api_listen_cfg(inst, "instance API socket");
    lc.host = path;
    lc.has_listen_fd = 1;
    lc.listen_fd = fd;
    if (bh_listen_start(&lc, &inst->listener, err) < 0) {
        close(fd);
        free(inst);
        return -1;
    }
    api->inst = inst;
    return 0;
}

static void api_stop_one(struct bh_api *api)
{
    /* WebSocket streams run on connection threads the stop joins: end them first. */
    __atomic_store_n(&api->ws.stopping, 1, __ATOMIC_RELEASE);
    if (api->ctx->events)
        bh_events_wake(api->ctx->events);
    bh_listen_stop(api->listener);
    api_free(api);
}

int bh_api_start(struct bh_ctx *ctx, struct bh_api **out, struct bh_err *err)
{
    const char *host = ctx->cfg.listen_host;
    int tls = 0;
    if (!bh_listen_is_loopback(host) && !ctx->cfg.api_key)
        return bh_err_set(err, BH_EINVAL,
                          "refusing to listen on %s without an API key: set BOILERHOUSE_API_KEY "
                          "or listen on 127.0.0.1",
                          host);
    if (api_tls_wanted(&ctx->cfg, &tls, err) < 0)
        return -1;
    struct bh_api *api = bh_xcalloc(1, sizeof(*api));
    api->ctx = ctx;
    api->ws.ctx = ctx;
    api->via = BH_AUTH_VIA_LISTENER;
    struct bh_listen_cfg lc = api_listen_cfg(api, "REST API");
    lc.host = host;
    lc.port = ctx->cfg.port;
    if (tls && api_tls_load(api, &ctx->cfg, err) < 0) {
        api_free(api);
        return -1;
    }
    lc.tls_cert = api->cert;
    lc.tls_key = api->key;
    if (bh_listen_start(&lc, &api->listener, err) < 0) {
        api_free(api);
        return -1;
    }
    if (api_start_instance_socket(api, err) < 0) {
        api_stop_one(api);
        return -1;
    }
    bh_info("api", "listening on %s://%s:%d (auth %s)", tls ? "https" : "http", host, ctx->cfg.port,
            ctx->cfg.api_key ? "bearer" : "off");
    *out = api;
    return 0;
}

void bh_api_stop(struct bh_api *api)
{
    if (!api)
        return;
    if (api->inst)
        api_stop_one(api->inst);
    api_stop_one(api);
}
