/* The REST API (/api/v1) on libmicrohttpd: routing, bearer auth, body limits, JSON errors.
 * Handlers live in api_routes.c; this file is the HTTP plumbing. */
#include "api.h"

#include <arpa/inet.h>
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
#include "json.h"
#include "log.h"
#include "mem.h"
#include "num.h"
#include "ui.h"
#include "ws.h"

#define API_MAX_PARAMS 4
#define API_CONNECTION_LIMIT 512
#define API_CONNECTION_TIMEOUT_S 300

struct bh_api {
    struct bh_ctx *ctx;
    struct MHD_Daemon *mhd;
    struct bh_ws_env ws;
    enum bh_auth_via via; /* the TCP listener, or the socket instances reach */
    struct bh_api *inst;  /* the listener on the instance socket (owned by the TCP one) */
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

/* Frees what a failed match captured, so callers own params only on success. */
static int api_match(const char *pattern, const char *path, char **params, int *n_params)
{
    if (api_match_into(pattern, path, params, n_params))
        return 1;
    api_free_params(params, *n_params);
    *n_params = 0;
    return 0;
}

/* The caller's principal (auth.h); on failure resp holds the 401 (or 500). */
static int api_principal(struct bh_api *api, struct MHD_Connection *conn, struct bh_principal *who,
                         struct bh_api_resp *resp)
{
    struct bh_err err;
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    if (bh_auth_principal(api->ctx, h, api->via, who, &err) == 0)
        return 0;
    bh_api_from_err(resp, &err);
    return -1;
}

/* Whether the route's need is met: the tenant is the first parameter of the tenant routes,
 * the workload a claim's body names. On refusal resp holds the 403. */
static int api_allowed(const struct bh_api_route *r, const struct bh_api_req *req,
                       struct bh_api_resp *resp)
{
    struct bh_err err;
    int tenant_route = r->need == BH_AUTH_CLAIM || r->need == BH_AUTH_TENANT_READ;
    const char *tenant = tenant_route && req->n_params > 0 ? req->params[0] : NULL;
    bh_autofree char *workload = r->need == BH_AUTH_CLAIM ? bh_api_body_workload(req) : NULL;
    if (bh_auth_allow(req->who, r->need, tenant, workload, &err) == 0)
        return 1;
    bh_api_from_err(resp, &err);
    return 0;
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
    if (r->retry_after > 0) {
        char secs[16];
        snprintf(secs, sizeof(secs), "%d", r->retry_after);
        MHD_add_response_header(resp, "Retry-After", secs);
    }
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
        if (r->need == BH_AUTH_PUBLIC) {
            r->handler(&req, resp);
        } else if (api_principal(api, conn, &who, resp) == 0) {
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
 * viewer or admin: it reads every event). A tenant-scoped caller's stream is filtered to its
 * tenant, whatever the query asks. */
static enum MHD_Result api_ws(struct bh_api *api, struct MHD_Connection *conn, struct api_conn *ac)
{
    const char *token = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "token");
    const char *asked = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "tenant");
    struct bh_api_resp resp = {0};
    struct bh_principal who;
    const char *tenant = NULL;
    struct bh_err err;
    int browser = api->via == BH_AUTH_VIA_LISTENER && bh_ws_token_valid(api->ctx, token);
    if (!browser && api_principal(api, conn, &who, &resp) < 0)
        return api_send(conn, &resp);
    if (!browser && bh_auth_ws_tenant(&who, asked, &tenant, &err) < 0)
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

static int api_is_loopback(const char *host)
{
    return strcmp(host, "127.0.0.1") == 0 || strcmp(host, "localhost") == 0 ||
           strncmp(host, "127.", 4) == 0;
}

static struct MHD_Daemon *api_mhd_start(struct bh_api *api, struct sockaddr_in *sa, int fd)
{
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_ERROR_LOG | MHD_ALLOW_UPGRADE;
    struct MHD_OptionItem common[] = {
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)api_completed, api},
        {MHD_OPTION_CONNECTION_LIMIT, API_CONNECTION_LIMIT, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, API_CONNECTION_TIMEOUT_S, NULL},
        {MHD_OPTION_UNESCAPE_CALLBACK, (intptr_t)api_unescape, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    /* The listeners differ only in where they listen: an address, or a socket made already. */
    if (fd >= 0)
        return MHD_start_daemon(flags, 0, NULL, NULL, api_handle, api, MHD_OPTION_LISTEN_SOCKET,
                                (MHD_socket)fd, MHD_OPTION_ARRAY, common, MHD_OPTION_END);
    return MHD_start_daemon(flags, 0, NULL, NULL, api_handle, api, MHD_OPTION_SOCK_ADDR,
                            (struct sockaddr *)sa, MHD_OPTION_ARRAY, common, MHD_OPTION_END);
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
    inst->mhd = api_mhd_start(inst, NULL, fd);
    if (!inst->mhd) {
        close(fd);
        free(inst);
        return bh_err_set(err, BH_EIO, "cannot serve the instance API socket %s", path);
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
    MHD_stop_daemon(api->mhd);
    free(api);
}

int bh_api_start(struct bh_ctx *ctx, struct bh_api **out, struct bh_err *err)
{
    const char *host = ctx->cfg.listen_host;
    if (!api_is_loopback(host) && !ctx->cfg.api_key)
        return bh_err_set(err, BH_EINVAL,
                          "refusing to listen on %s without an API key: set BOILERHOUSE_API_KEY "
                          "or listen on 127.0.0.1",
                          host);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)ctx->cfg.port)};
    if (inet_pton(AF_INET, strcmp(host, "localhost") == 0 ? "127.0.0.1" : host, &sa.sin_addr) != 1)
        return bh_err_set(err, BH_EINVAL, "listen address %s is not an IPv4 address", host);
    struct bh_api *api = bh_xcalloc(1, sizeof(*api));
    api->ctx = ctx;
    api->ws.ctx = ctx;
    api->via = BH_AUTH_VIA_LISTENER;
    api->mhd = api_mhd_start(api, &sa, -1);
    if (!api->mhd) {
        free(api);
        return bh_err_set(err, BH_EIO, "cannot listen on %s:%d (in use?)", host, ctx->cfg.port);
    }
    if (api_start_instance_socket(api, err) < 0) {
        api_stop_one(api);
        return -1;
    }
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
