/* Drivers: how an event reaches the claimed instance. `http` (the default) POSTs the event
 * JSON to the claim's endpoint, {host, port}, or over a unix socket in the instance's socket
 * directory for workloads without a network; `openclaw` (trigger_openclaw.c) speaks chat
 * completions over the same transport; `websocket` speaks the agents' message protocol over a
 * session per tenant (trigger_ws.c). The claim is Active only once the instance passed its
 * health check, so the first delivery never races the boot. */
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#include "bodybuf.h"
#include "json.h"
#include "mem.h"
#include "name.h"
#include "trigger_int.h"

#define DRIVER_TIMEOUT_S 30
#define DRIVER_MAX_REPLY (1 << 20)
int trigger_driver_path_ok(const char *p)
{
    return p[0] == '/' && strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                    "0123456789/-._~") == strlen(p);
}

/* The drivers and the driverOptions keys each takes; own_option checks a driver's own keys
 * first (0 valid, -1 invalid, 1 not its own: the common checks below decide). */
static const struct driver_kind {
    const char *name;
    const char *const keys[6];
    int (*own_option)(const cJSON *o, struct bh_err *err);
} driver_kinds[] = {
    {"http", {"path", "socket", "timeoutSeconds", NULL}, NULL},
    {"websocket", {"path", "socket", "timeoutSeconds", "protocol", NULL}, NULL},
    {"openclaw",
     {"path", "socket", "timeoutSeconds", "model", "gatewayTokenSecretRef", NULL},
     trigger_openclaw_check_option},
};

static const struct driver_kind *driver_kind_find(const char *name)
{
    for (size_t i = 0; i < BH_ARRAY_LEN(driver_kinds); i++)
        if (strcmp(driver_kinds[i].name, name) == 0)
            return &driver_kinds[i];
    return NULL;
}

static int driver_opt_known(const struct driver_kind *d, const char *k, char list[128])
{
    int known = 0;
    list[0] = '\0';
    for (const char *const *key = d->keys; *key; key++) {
        known |= strcmp(*key, k) == 0;
        snprintf(list + strlen(list), 128 - strlen(list), "%s%s", key == d->keys ? "" : ", ", *key);
    }
    return known;
}

static int driver_opt_check(const struct driver_kind *d, const cJSON *o, struct bh_err *err)
{
    const char *k = o->string;
    char list[128];
    int own = d->own_option ? d->own_option(o, err) : 1;
    if (own <= 0)
        return own;
    if (!driver_opt_known(d, k, list))
        return bh_err_set(err, BH_EINVAL, "spec.driverOptions.%.64s: unknown (%s: %s)", k, d->name,
                          list);
    if (strcmp(k, "path") == 0 && !(cJSON_IsString(o) && trigger_driver_path_ok(o->valuestring)))
        return bh_err_set(err, BH_EINVAL,
                          "spec.driverOptions.path: must be an absolute path of "
                          "[A-Za-z0-9/-._~]");
    if (strcmp(k, "socket") == 0 && !(cJSON_IsString(o) && bh_name_tenant_valid(o->valuestring)))
        return bh_err_set(err, BH_EINVAL,
                          "spec.driverOptions.socket: must be a file name [A-Za-z0-9._-]");
    if (strcmp(k, "timeoutSeconds") == 0 &&
        !(cJSON_IsNumber(o) && o->valuedouble >= 1 && o->valuedouble <= 3600))
        return bh_err_set(err, BH_EINVAL, "spec.driverOptions.timeoutSeconds: 1..3600");
    if (strcmp(k, "protocol") == 0 &&
        !(cJSON_IsString(o) &&
          (strcmp(o->valuestring, "claude-code") == 0 || strcmp(o->valuestring, "pi") == 0)))
        return bh_err_set(err, BH_EINVAL,
                          "spec.driverOptions.protocol: \"claude-code\" (init, then prompts) "
                          "or \"pi\" (prompts only)");
    return 0;
}

int trigger_driver_check(const cJSON *spec, struct bh_err *err)
{
    const char *driver = bh_json_str(spec, "driver");
    const struct driver_kind *d = driver_kind_find(driver ? driver : "http");
    if (!d)
        return bh_err_set(err, BH_EINVAL,
                          "spec.driver: \"%.32s\" is not available (drivers: http, websocket, "
                          "openclaw)",
                          driver);
    const cJSON *opts = bh_json_get(spec, "driverOptions");
    if (opts && !cJSON_IsObject(opts))
        return bh_err_set(err, BH_EINVAL, "spec.driverOptions: must be an object");
    const cJSON *o;
    cJSON_ArrayForEach(o, opts) {
        if (driver_opt_check(d, o, err) < 0)
            return -1;
    }
    return 0;
}

int trigger_driver_target(const cJSON *spec, const cJSON *claim, const char *path, char **url,
                          char **sock, struct bh_err *err)
{
    const cJSON *ep = bh_json_get(claim, "status.endpoint");
    const char *host = bh_json_str(ep, "host");
    const char *dir = bh_json_str(ep, "socket");
    const char *sockname = bh_json_str(spec, "driverOptions.socket");
    *sock = NULL;
    if (host) {
        *url = bh_xasprintf("http://%s:%lld%s", host, bh_json_int(ep, "port", 80), path);
        return 0;
    }
    if (dir) {
        *sock = bh_xasprintf("%s/%s", dir, sockname ? sockname : "http.sock");
        *url = bh_xasprintf("http://instance%s", path);
        return 0;
    }
    return bh_err_set(err, BH_EUNAVAIL, "the claim has no endpoint to deliver to");
}

int trigger_driver_post(const cJSON *spec, const cJSON *claim, const char *default_path,
                        struct curl_slist *hdrs, const char *body,
                        size_t (*write)(char *, size_t, size_t, void *), void *ud,
                        struct bh_err *err)
{
    bh_autofree char *url = NULL;
    bh_autofree char *sock = NULL;
    const char *path = bh_json_str(spec, "driverOptions.path");
    if (trigger_driver_target(spec, claim, path ? path : default_path, &url, &sock, err) < 0)
        return -1;
    CURL *c = curl_easy_init();
    if (!c)
        return bh_err_set(err, BH_EIO, "curl_easy_init failed");
    curl_easy_setopt(c, CURLOPT_URL, url);
    if (sock)
        curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, sock);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT,
                     (long)bh_json_int(spec, "driverOptions.timeoutSeconds", DRIVER_TIMEOUT_S));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, ud);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    if (rc == CURLE_WRITE_ERROR)
        return bh_err_set(err, BH_ETOOLARGE, "POST %s: the answer was too large or malformed", url);
    if (rc != CURLE_OK)
        return bh_err_set(err, rc == CURLE_OPERATION_TIMEDOUT ? BH_ETIMEOUT : BH_EIO, "POST %s: %s",
                          url, curl_easy_strerror(rc));
    if (status < 200 || status > 299)
        return bh_err_set(err, BH_EIO, "POST %s: the instance answered %ld", url, status);
    return 0;
}

static int driver_http(const struct trigger_delivery *d, char **out, size_t *out_len,
                       struct bh_err *err)
{
    struct bh_bodybuf buf = {.max = DRIVER_MAX_REPLY};
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    int rc = trigger_driver_post(d->t->spec, d->claim, "/", hdrs, d->event_json, bh_bodybuf_write,
                                 &buf, err);
    curl_slist_free_all(hdrs);
    if (rc < 0) {
        if (buf.over)
            bh_err_set(err, BH_ETOOLARGE, "the instance answered more than %d bytes",
                       DRIVER_MAX_REPLY);
        free(buf.data);
        return -1;
    }
    *out = buf.data ? buf.data : bh_xstrdup("");
    *out_len = buf.len;
    return 0;
}

int trigger_driver_deliver(const struct trigger_delivery *d, char **out, size_t *out_len,
                           struct bh_err *err)
{
    const char *driver = bh_json_str(d->t->spec, "driver");
    if (driver && strcmp(driver, "websocket") == 0)
        return trigger_ws_deliver(d, out, out_len, err);
    if (driver && strcmp(driver, "openclaw") == 0)
        return trigger_openclaw_deliver(d, out, out_len, err);
    return driver_http(d, out, out_len, err);
}
