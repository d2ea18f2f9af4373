/* Drivers: how an event reaches the claimed instance. `http` (the default) POSTs the event
 * JSON to the claim's endpoint, {host, port}, or over a unix socket in the instance's socket
 * directory for workloads without a network; `openclaw` (trigger_openclaw.c) speaks chat
 * completions over the same transport. The claim is Active only once the instance passed its
 * health check, so the first delivery never races the boot. */
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "mem.h"
#include "name.h"
#include "trigger_int.h"

#define DRIVER_TIMEOUT_S 30
#define DRIVER_MAX_REPLY (1 << 20)

struct driver_buf {
    char *data;
    size_t len;
    int too_large;
};

static size_t driver_write(char *ptr, size_t size, size_t n, void *ud)
{
    struct driver_buf *b = ud;
    size_t add = size * n;
    if (b->len + add > DRIVER_MAX_REPLY) {
        b->too_large = 1;
        return 0;
    }
    b->data = bh_xrealloc(b->data, b->len + add + 1);
    memcpy(b->data + b->len, ptr, add);
    b->len += add;
    b->data[b->len] = '\0';
    return add;
}

/* The path is appended to a URL: a plain absolute path, no query or fragment tricks. */
static int driver_path_ok(const char *p)
{
    return p[0] == '/' && strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                    "0123456789/-._~") == strlen(p);
}

/* The driverOptions keys every driver over HTTP takes. */
static int driver_check_common(const cJSON *o, const char *driver, const char *known,
                               struct bh_err *err)
{
    const char *k = o->string;
    if (strcmp(k, "path") == 0 && !(cJSON_IsString(o) && driver_path_ok(o->valuestring)))
        return bh_err_set(err, BH_EINVAL,
                          "spec.driverOptions.path: must be an absolute path of "
                          "[A-Za-z0-9/-._~]");
    if (strcmp(k, "socket") == 0 && !(cJSON_IsString(o) && bh_name_tenant_valid(o->valuestring)))
        return bh_err_set(err, BH_EINVAL,
                          "spec.driverOptions.socket: must be a file name [A-Za-z0-9._-]");
    if (strcmp(k, "timeoutSeconds") == 0 &&
        !(cJSON_IsNumber(o) && o->valuedouble >= 1 && o->valuedouble <= 3600))
        return bh_err_set(err, BH_EINVAL, "spec.driverOptions.timeoutSeconds: 1..3600");
    if (strcmp(k, "path") != 0 && strcmp(k, "socket") != 0 && strcmp(k, "timeoutSeconds") != 0)
        return bh_err_set(err, BH_EINVAL, "spec.driverOptions.%.64s: unknown (%s: %s)", k, driver,
                          known);
    return 0;
}

int trigger_driver_check(const cJSON *spec, struct bh_err *err)
{
    const char *driver = bh_json_str(spec, "driver");
    int openclaw = driver && strcmp(driver, "openclaw") == 0;
    if (driver && strcmp(driver, "http") != 0 && !openclaw)
        return bh_err_set(err, BH_EINVAL,
                          "spec.driver: \"%.32s\" is not available (drivers: http, openclaw)",
                          driver);
    const cJSON *opts = bh_json_get(spec, "driverOptions");
    if (opts && !cJSON_IsObject(opts))
        return bh_err_set(err, BH_EINVAL, "spec.driverOptions: must be an object");
    const cJSON *o;
    cJSON_ArrayForEach(o, opts)
    {
        int rc = openclaw ? trigger_openclaw_check_option(o, err) : 1;
        if (rc < 0 || (rc == 1 && driver_check_common(o, openclaw ? "openclaw" : "http",
                                                      openclaw ? "path, socket, timeoutSeconds, "
                                                                 "model, gatewayTokenSecretRef"
                                                               : "path, socket, timeoutSeconds",
                                                      err) < 0))
            return -1;
    }
    return 0;
}

/* The URL (and unix socket path, if any) for the claim's endpoint. */
static int driver_target(const cJSON *spec, const cJSON *claim, const char *default_path,
                         char **url, char **sock, struct bh_err *err)
{
    const cJSON *ep = bh_json_get(claim, "status.endpoint");
    const char *host = bh_json_str(ep, "host");
    const char *dir = bh_json_str(ep, "socket");
    const char *path = bh_json_str(spec, "driverOptions.path");
    const char *sockname = bh_json_str(spec, "driverOptions.socket");
    path = path ? path : default_path;
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
    if (driver_target(spec, claim, default_path, &url, &sock, err) < 0)
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

int trigger_driver_deliver(struct trigger *t, const cJSON *claim, const char *event_json,
                           char **out, size_t *out_len, struct bh_err *err)
{
    const char *driver = bh_json_str(t->spec, "driver");
    if (driver && strcmp(driver, "openclaw") == 0)
        return trigger_openclaw_deliver(t, claim, event_json, out, out_len, err);
    struct driver_buf buf = {0};
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    int rc = trigger_driver_post(t->spec, claim, "/", hdrs, event_json, driver_write, &buf, err);
    curl_slist_free_all(hdrs);
    if (rc < 0) {
        if (buf.too_large)
            bh_err_set(err, BH_ETOOLARGE, "the instance answered more than %d bytes",
                       DRIVER_MAX_REPLY);
        free(buf.data);
        return -1;
    }
    *out = buf.data ? buf.data : bh_xstrdup("");
    *out_len = buf.len;
    return 0;
}
