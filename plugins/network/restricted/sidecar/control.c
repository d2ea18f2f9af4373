/* The sidecar's control endpoint (sidecar.h has the protocol): how a tenant's secret values
 * reach the egress engine of a Pod that was started before any tenant claimed it.
 *
 * Why it is built this way:
 *  - the workload shares the Pod's network namespace and reaches this port on localhost, so
 *    every request but /healthz carries a bearer token the workload does not have (the
 *    namespace's agent token, mounted in the sidecars only), compared in constant time;
 *  - values live in the engine's policy only: never in a file, the environment or a log line
 *    (what is logged is the header names), and the previous values are wiped on replace;
 *  - a push names every tenant header of the config and nothing else, and replaces the whole
 *    set: a Pod never injects a mix of two tenants' values, and a refused push changes
 *    nothing;
 *  - one request per connection, served one at a time with short socket timeouts: the daemon
 *    sends a few hundred bytes once per claim; a client that stalls only delays the next.
 * Plain HTTP/1.1, no library: the sidecar links OpenSSL and cJSON only. */
#include "sidecar.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "egress_int.h"

#define CTL_HEAD_MAX 8192
#define CTL_BODY_MAX 65536
#define CTL_TOKEN_MAX 4096
#define CTL_TOKEN_MIN 32
#define CTL_IO_TIMEOUT_S 5
#define CTL_BACKLOG 16
#define CTL_IGNORE(call) ((void)!(call))

/* ---- the body of a push ------------------------------------------------------------------ */

void sidecar_values_free(struct sidecar_values *v)
{
    for (size_t i = 0; v->v && i < v->n; i++)
        if (v->v[i]) {
            OPENSSL_cleanse(v->v[i], strlen(v->v[i]));
            free(v->v[i]);
        }
    free(v->v);
    memset(v, 0, sizeof(*v));
}

/* Printable ASCII and tabs: what a header line may carry (no CR, LF, NUL or other controls). */
static int ctl_text_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return 0;
    }
    return 1;
}

/* A client's field name as an error (and so a log line) may show it. */
static const char *ctl_shown(const char *key)
{
    return ctl_text_ok(key, strlen(key)) ? key : "(a name with control characters)";
}

static const char *ctl_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The tenant header (domain, name) names, or -1. */
static long ctl_find(const struct sidecar_config *c, const char *domain, const char *name)
{
    for (size_t i = 0; i < c->n_tenant; i++)
        if (strcmp(c->creds[c->tenant[i].cred].domain, domain) == 0 &&
            strcmp(c->tenant[i].name, name) == 0)
            return (long)i;
    return -1;
}

/* One entry of "headers" into vals. */
static int ctl_entry(const cJSON *e, size_t i, const struct sidecar_config *c, char **vals,
                     struct bh_err *err)
{
    const cJSON *f;
    if (!cJSON_IsObject(e))
        return eg_fail(err, BH_EINVAL, "headers[%zu]: must be an object", i);
    cJSON_ArrayForEach(f, e) {
        if (strcmp(f->string, "domain") && strcmp(f->string, "name") && strcmp(f->string, "value"))
            return eg_fail(err, BH_EINVAL, "headers[%zu].%s: unknown field", i,
                           ctl_shown(f->string));
    }
    const char *domain = ctl_str(e, "domain"), *name = ctl_str(e, "name");
    const cJSON *value = cJSON_GetObjectItemCaseSensitive(e, "value");
    if (!domain || !name || !cJSON_IsString(value))
        return eg_fail(err, BH_EINVAL, "headers[%zu]: domain, name and value must be strings", i);
    if (!ctl_text_ok(name, strlen(name)) || !ctl_text_ok(domain, strlen(domain)))
        return eg_fail(err, BH_EINVAL, "headers[%zu]: a control character in the domain or name",
                       i);
    if (!ctl_text_ok(value->valuestring, strlen(value->valuestring)))
        return eg_fail(err, BH_EINVAL, "headers[%zu] (%s %s): a control character in the value", i,
                       domain, name);
    long at = ctl_find(c, domain, name);
    if (at < 0)
        return eg_fail(err, BH_EINVAL,
                       "headers[%zu]: %s %s is not a tenantSecretKeyRef header "
                       "of this workload",
                       i, domain, name);
    if (vals[at])
        return eg_fail(err, BH_EINVAL, "headers[%zu]: %s %s given twice", i, domain, name);
    vals[at] = eg_xstrdup(value->valuestring);
    return 0;
}

static int ctl_entries(const cJSON *root, const struct sidecar_config *c, char **vals,
                       struct bh_err *err)
{
    const cJSON *f;
    cJSON_ArrayForEach(f, root) {
        if (strcmp(f->string, "headers") != 0)
            return eg_fail(err, BH_EINVAL, "%s: unknown field", ctl_shown(f->string));
    }
    const cJSON *headers = cJSON_GetObjectItemCaseSensitive(root, "headers");
    if (!cJSON_IsArray(headers))
        return eg_fail(err, BH_EINVAL, "headers: must be an array");
    size_t i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, headers) {
        if (ctl_entry(e, i++, c, vals, err) < 0)
            return -1;
    }
    for (size_t t = 0; t < c->n_tenant; t++)
        if (!vals[t])
            return eg_fail(err, BH_EINVAL, "headers: %s %s is missing",
                           c->creds[c->tenant[t].cred].domain, c->tenant[t].name);
    return 0;
}

int sidecar_values_parse(const char *body, size_t len, const struct sidecar_config *c,
                         struct sidecar_values *out, struct bh_err *err)
{
    memset(out, 0, sizeof(*out));
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return eg_fail(err, BH_EINVAL, "the body must be a JSON object");
    }
    struct sidecar_values v = {.v = eg_xcalloc(c->n_tenant, sizeof(char *)), .n = c->n_tenant};
    int rc = ctl_entries(root, c, v.v, err);
    /* the parsed copy held the values too */
    const cJSON *headers = cJSON_GetObjectItemCaseSensitive(root, "headers"), *h;
    if (!cJSON_IsArray(headers))
        headers = NULL;
    cJSON_ArrayForEach(h, headers) {
        char *val = cJSON_IsObject(h) ? (char *)ctl_str(h, "value") : NULL;
        if (val)
            OPENSSL_cleanse(val, strlen(val));
    }
    cJSON_Delete(root);
    if (rc < 0)
        sidecar_values_free(&v);
    else
        *out = v;
    return rc;
}

/* ---- the policy with the tenant's values ------------------------------------------------- */

int sidecar_apply(struct egress *eg, const struct sidecar_config *c, const struct sidecar_values *v,
                  struct bh_err *err)
{
    struct egress_policy p = sidecar_config_policy(c);
    if (!v)
        return egress_set_default_policy(eg, &p, err);
    /* Each domain's headers: the config's, then the tenant's (borrowed; the engine copies). */
    struct egress_credential *creds = eg_xcalloc(c->n_creds, sizeof(*creds));
    for (size_t i = 0; i < c->n_creds; i++) {
        struct egress_header *hs = eg_xcalloc(c->creds[i].n_headers + c->n_tenant, sizeof(*hs));
        memcpy(hs, c->creds[i].headers, c->creds[i].n_headers * sizeof(*hs));
        creds[i] = (struct egress_credential){
            .domain = c->creds[i].domain, .headers = hs, .n_headers = c->creds[i].n_headers};
        for (size_t t = 0; t < c->n_tenant; t++)
            if (c->tenant[t].cred == i)
                hs[creds[i].n_headers++] =
                    (struct egress_header){.name = c->tenant[t].name, .value = v->v[t]};
    }
    p.credentials = creds;
    int rc = egress_set_default_policy(eg, &p, err);
    for (size_t i = 0; i < c->n_creds; i++)
        free((struct egress_header *)creds[i].headers);
    free(creds);
    return rc;
}

/* ---- the token --------------------------------------------------------------------------- */

int sidecar_token_read(const char *path, char **out, struct bh_err *err)
{
    *out = NULL;
    FILE *f = fopen(path, "re");
    if (!f)
        return eg_fail(err, BH_EINVAL, "control token %s: %s", path, strerror(errno));
    char *buf = eg_xcalloc(CTL_TOKEN_MAX + 1, 1);
    size_t n = fread(buf, 1, CTL_TOKEN_MAX + 1, f);
    fclose(f);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    if (n < CTL_TOKEN_MIN || n > CTL_TOKEN_MAX || strlen(buf) != n ||
        strcspn(buf, " \t\r\n") != n) {
        OPENSSL_cleanse(buf, CTL_TOKEN_MAX + 1);
        free(buf);
        return eg_fail(err, BH_EINVAL,
                       "control token %s: expected %d to %d characters without whitespace", path,
                       CTL_TOKEN_MIN, CTL_TOKEN_MAX);
    }
    *out = buf;
    return 0;
}

/* ---- HTTP -------------------------------------------------------------------------------- */

struct sidecar_control {
    const struct sidecar_config *cfg;
    struct egress *eg;
    const struct bh_host_api *host;
    char *token;
    int fd, stop[2];
    int running; /* the thread was started */
    int set;     /* a push has been applied (only the thread touches it) */
    pthread_t thread;
};

struct ctl_req {
    char head[CTL_HEAD_MAX + 1];
    size_t have;    /* bytes in head (the body's first bytes may follow the blank line) */
    size_t body_at; /* where the body starts in head */
    char method[8], path[64];
    const char *authz; /* into head, NUL-terminated */
    long length;       /* Content-Length; -1 if absent */
    int chunked;
};

static void ctl_answer(int fd, int status, const char *reason, const char *type, const char *text)
{
    char buf[1024];
    int n = snprintf(buf, sizeof(buf),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     status, reason, type, strlen(text), text);
    if (n > 0)
        CTL_IGNORE(
            send(fd, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1, MSG_NOSIGNAL));
}

static void ctl_error(struct sidecar_control *ctl, int fd, int status, const char *reason,
                      const char *why)
{
    char text[600];
    snprintf(text, sizeof(text), "%s\n", why);
    ctl_answer(fd, status, reason, "text/plain", text);
    ctl->host->log(NULL, BH_LOG_WARN, "control: refused (%d): %s", status, why);
}

/* Reads until the blank line after the head. 0, or the status to answer. */
static int ctl_read_head(int fd, struct ctl_req *r)
{
    for (;;) {
        char *end = r->have >= 4 ? strstr(r->head, "\r\n\r\n") : NULL;
        if (end) {
            r->body_at = (size_t)(end - r->head) + 4;
            end[2] = '\0'; /* the head's lines end with \r\n; the body (if any) stays after */
            return 0;
        }
        if (r->have == CTL_HEAD_MAX)
            return 431;
        ssize_t n = recv(fd, r->head + r->have, CTL_HEAD_MAX - r->have, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return 400;
        if (memchr(r->head + r->have, '\0', (size_t)n))
            return 400;
        r->have += (size_t)n;
        r->head[r->have] = '\0';
    }
}

/* The request line and the headers this endpoint reads. 0 or the status to answer. */
static int ctl_parse_head(struct ctl_req *r)
{
    char version[16];
    if (sscanf(r->head, "%7s %63s %15s", r->method, r->path, version) != 3 ||
        strncmp(version, "HTTP/1.", 7) != 0)
        return 400;
    r->length = -1;
    char *save = NULL;
    strtok_r(r->head, "\r\n", &save); /* the request line */
    for (char *line = strtok_r(NULL, "\r\n", &save); line; line = strtok_r(NULL, "\r\n", &save)) {
        char *colon = strchr(line, ':');
        if (!colon)
            return 400;
        *colon = '\0';
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        if (strcasecmp(line, "Authorization") == 0)
            r->authz = v;
        else if (strcasecmp(line, "Content-Length") == 0) {
            char *end = NULL;
            r->length = strtol(v, &end, 10);
            if (end == v || *end || r->length < 0)
                return 400;
        } else if (strcasecmp(line, "Transfer-Encoding") == 0)
            r->chunked = 1;
    }
    return 0;
}

static int ctl_authorized(const struct sidecar_control *ctl, const struct ctl_req *r)
{
    size_t n = strlen(ctl->token);
    if (!r->authz || strncmp(r->authz, "Bearer ", 7) != 0)
        return 0;
    const char *given = r->authz + 7;
    return strlen(given) == n && CRYPTO_memcmp(given, ctl->token, n) == 0;
}

/* The body of r (length bytes; the first ones may be in head already). Owned, wiped by the
 * caller; NULL on a short read. */
static char *ctl_read_body(int fd, const struct ctl_req *r)
{
    size_t len = (size_t)r->length, have = r->have - r->body_at;
    if (have > len)
        have = len;
    char *body = eg_xcalloc(len + 1, 1);
    memcpy(body, r->head + r->body_at, have);
    while (have < len) {
        ssize_t n = recv(fd, body + have, len - have, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            OPENSSL_cleanse(body, len);
            free(body);
            return NULL;
        }
        have += (size_t)n;
    }
    return body;
}

/* The push itself; NULL, or the refusal as status and reason with err saying why. */
static int ctl_put_apply(struct sidecar_control *ctl, int fd, const struct ctl_req *r,
                         struct bh_err *err)
{
    if (r->chunked || r->length < 0)
        return eg_fail(err, 411, "a Content-Length is required");
    if (r->length > CTL_BODY_MAX)
        return eg_fail(err, 413, "the body is larger than 64 KiB");
    char *body = ctl_read_body(fd, r);
    if (!body)
        return eg_fail(err, 400, "the body ended early");
    struct sidecar_values v;
    int rc = sidecar_values_parse(body, (size_t)r->length, ctl->cfg, &v, err);
    OPENSSL_cleanse(body, (size_t)r->length);
    free(body);
    if (rc == 0) {
        rc = sidecar_apply(ctl->eg, ctl->cfg, &v, err);
        sidecar_values_free(&v);
    }
    if (rc < 0 && err->code < 400)
        err->code = 422;
    return rc;
}

static void ctl_put(struct sidecar_control *ctl, int fd, const struct ctl_req *r)
{
    static const struct {
        int status;
        const char *reason;
    } reasons[] = {{400, "Bad Request"},
                   {411, "Length Required"},
                   {413, "Payload Too Large"},
                   {422, "Unprocessable Entity"}};
    struct bh_err err = {0};
    if (ctl_put_apply(ctl, fd, r, &err) == 0) {
        ctl->set = 1;
        ctl_answer(fd, 204, "No Content", "text/plain", "");
        ctl->host->log(NULL, BH_LOG_INFO, "control: the tenant's %zu credential headers are set",
                       ctl->cfg->n_tenant);
        return;
    }
    size_t i = 0;
    while (i + 1 < sizeof(reasons) / sizeof(reasons[0]) && reasons[i].status != err.code)
        i++;
    ctl_error(ctl, fd, reasons[i].status, reasons[i].reason, err.msg);
}

/* Which tenant headers the endpoint takes and whether a push set them; never their values. */
static void ctl_get(struct sidecar_control *ctl, int fd)
{
    cJSON *root = cJSON_CreateObject(), *hs = cJSON_AddArrayToObject(root, "headers");
    for (size_t t = 0; t < ctl->cfg->n_tenant; t++) {
        cJSON *h = cJSON_CreateObject();
        cJSON_AddStringToObject(h, "domain", ctl->cfg->creds[ctl->cfg->tenant[t].cred].domain);
        cJSON_AddStringToObject(h, "name", ctl->cfg->tenant[t].name);
        cJSON_AddItemToArray(hs, h);
    }
    cJSON_AddBoolToObject(root, "set", ctl->set);
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    ctl_answer(fd, 200, "OK", "application/json", text ? text : "{}");
    free(text);
}

static void ctl_serve(struct sidecar_control *ctl, int fd)
{
    struct ctl_req *r = eg_xcalloc(1, sizeof(*r));
    int st = ctl_read_head(fd, r);
    if (st == 0)
        st = ctl_parse_head(r);
    if (st)
        ctl_error(ctl, fd, st, st == 431 ? "Request Header Fields Too Large" : "Bad Request",
                  st == 431 ? "the request head is larger than 8 KiB" : "a malformed request");
    else if (strcmp(r->path, "/healthz") == 0)
        ctl_answer(fd, 200, "OK", "text/plain", "ok\n");
    else if (strcmp(r->path, SIDECAR_CONTROL_PATH) != 0)
        ctl_error(ctl, fd, 404, "Not Found", "no such path (" SIDECAR_CONTROL_PATH ")");
    else if (!ctl_authorized(ctl, r))
        ctl_error(ctl, fd, 401, "Unauthorized", "a valid bearer token is required");
    else if (strcmp(r->method, "PUT") == 0)
        ctl_put(ctl, fd, r);
    else if (strcmp(r->method, "GET") == 0)
        ctl_get(ctl, fd);
    else
        ctl_error(ctl, fd, 405, "Method Not Allowed", "GET or PUT");
    OPENSSL_cleanse(r, sizeof(*r));
    free(r);
}

/* Answered: reads what the client still sends (a refused body) before closing, so that the
 * close does not reset the connection under the answer. Bounded in bytes and time. */
static void ctl_linger(int fd)
{
    char buf[4096];
    struct timeval tv = {.tv_sec = 1};
    shutdown(fd, SHUT_WR);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    for (size_t total = 0; total < 4 * CTL_BODY_MAX;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n <= 0)
            break;
        total += (size_t)n;
    }
}

static void *ctl_loop(void *arg)
{
    struct sidecar_control *ctl = arg;
    struct pollfd fds[2] = {{.fd = ctl->fd, .events = POLLIN},
                            {.fd = ctl->stop[0], .events = POLLIN}};
    for (;;) {
        if (poll(fds, 2, -1) < 0 && errno != EINTR)
            break;
        if (fds[1].revents)
            break;
        if (!(fds[0].revents & POLLIN))
            continue;
        int fd = accept4(ctl->fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        struct timeval tv = {.tv_sec = CTL_IO_TIMEOUT_S};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        ctl_serve(ctl, fd);
        ctl_linger(fd);
        close(fd);
    }
    return NULL;
}

/* 0.0.0.0: the daemon reaches it at the Pod's IP. Taken already (by the workload, which
 * shares the namespace and could start first), the sidecar fails rather than run without. */
static int ctl_listen(int port, int *out, struct bh_err *err)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return eg_fail(err, BH_EIO, "control: socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, CTL_BACKLOG) < 0) {
        int e = errno;
        close(fd);
        return eg_fail(err, BH_EIO, "control: listen on 0.0.0.0:%d: %s", port, strerror(e));
    }
    *out = fd;
    return 0;
}

int sidecar_control_start(const struct sidecar_config *c, struct egress *eg,
                          const struct bh_host_api *log, struct sidecar_control **out,
                          struct bh_err *err)
{
    struct sidecar_control *ctl = eg_xcalloc(1, sizeof(*ctl));
    *ctl = (struct sidecar_control){.cfg = c, .eg = eg, .host = log, .fd = -1, .stop = {-1, -1}};
    if (sidecar_token_read(c->control_token, &ctl->token, err) < 0 ||
        ctl_listen(c->control_port, &ctl->fd, err) < 0)
        goto bad;
    if (pipe2(ctl->stop, O_CLOEXEC) < 0) {
        eg_fail(err, BH_EIO, "control: pipe: %s", strerror(errno));
        goto bad;
    }
    if (pthread_create(&ctl->thread, NULL, ctl_loop, ctl) != 0) {
        eg_fail(err, BH_EIO, "control: cannot start its thread");
        goto bad;
    }
    ctl->running = 1;
    *out = ctl;
    return 0;
bad:
    sidecar_control_stop(ctl);
    return -1;
}

void sidecar_control_stop(struct sidecar_control *ctl)
{
    if (!ctl)
        return;
    if (ctl->running) {
        CTL_IGNORE(write(ctl->stop[1], "x", 1));
        pthread_join(ctl->thread, NULL);
    }
    if (ctl->fd >= 0)
        close(ctl->fd);
    if (ctl->stop[0] >= 0)
        close(ctl->stop[0]);
    if (ctl->stop[1] >= 0)
        close(ctl->stop[1]);
    if (ctl->token) {
        OPENSSL_cleanse(ctl->token, strlen(ctl->token));
        free(ctl->token);
    }
    free(ctl);
}
