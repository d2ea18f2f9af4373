/* bh-guard-api: asks a policy service. Each event is POSTed as {trigger, tenantId, payload}
 * to `url` with `Authorization: Bearer <secret>` (from the secret store) and a timeout; the
 * service answers {"allow": true} or {"allow": false, "reason": "..."}. Anything else (no
 * answer in time, a non-2xx status, a body that is not that JSON) is an error, which refuses
 * the event: fail closed. The reason reaches the sender, so it is capped and stripped of
 * control characters; what went wrong with the service is logged, not told to the sender. */
#include <boilerhouse/plugin.h>
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define API_MAX_ANSWER 65536
#define API_REASON_MAX 300 /* characters of a deny reason shown to the sender */

static const struct bh_host_api *host;

struct api_guard {
    struct bh_plugin_handle *h;
    const char *url;
    char *auth; /* "Authorization: Bearer <token>", owned; wiped when freed; NULL for none */
    long timeout_ms;
};

struct api_buf {
    char data[API_MAX_ANSWER + 1];
    size_t len;
    int too_large;
};

static size_t api_write(char *ptr, size_t size, size_t n, void *ud)
{
    struct api_buf *b = ud;
    size_t add = size * n;
    if (b->len + add > API_MAX_ANSWER) {
        b->too_large = 1;
        return 0;
    }
    memcpy(b->data + b->len, ptr, add);
    b->len += add;
    b->data[b->len] = '\0';
    return add;
}

static void api_wipe_free(char *s)
{
    if (!s)
        return;
    volatile char *p = s;
    while (*p)
        *p++ = '\0';
    free(s);
}

/* ---- open and close ---- */

static int api_url_ok(const char *u)
{
    if (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0)
        return 0;
    for (const char *p = u; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return 0;
    return strlen(u) < 1024;
}

static int api_secret(struct api_guard *g, struct bh_err *err)
{
    const char *name = host->config_string(g->h, "secretName");
    char *value = NULL;
    if (!name)
        return 0; /* a service on loopback may need no token */
    if (host->secret_get(g->h, name, host->config_string(g->h, "secretKey"), NULL, &value, err) < 0)
        return -1;
    size_t n = strlen(value) + 32;
    g->auth = malloc(n);
    if (g->auth)
        snprintf(g->auth, n, "Authorization: Bearer %s", value);
    host->free(g->h, value);
    if (!g->auth)
        return host->err_set(g->h, err, BH_EIO, "out of memory");
    if (strpbrk(g->auth, "\r\n"))
        return host->err_set(g->h, err, BH_EINVAL,
                             "secret %s: the token holds a line break (it goes in a header)", name);
    return 0;
}

static void api_close(void *inst)
{
    struct api_guard *g = inst;
    if (!g)
        return;
    api_wipe_free(g->auth);
    free(g);
}

static int api_open(void *state, struct bh_plugin_handle *h, void **inst, struct bh_err *err)
{
    struct api_guard *g = calloc(1, sizeof(*g));
    if (!g)
        return host->err_set(h, err, BH_EIO, "out of memory");
    g->h = h;
    g->url = host->config_string(h, "url");
    g->timeout_ms = (long)host->config_int(h, "timeoutMs");
    int rc = 0;
    if (!api_url_ok(g->url))
        rc = host->err_set(h, err, BH_EINVAL,
                           "config.url: an http:// or https:// URL without spaces or controls");
    else if (g->timeout_ms < 1 || g->timeout_ms >= BH_GUARD_DEADLINE_MS)
        rc = host->err_set(h, err, BH_EINVAL, "config.timeoutMs: 1..%d (the host's deadline)",
                           BH_GUARD_DEADLINE_MS - 1);
    else
        rc = api_secret(g, err);
    if (rc < 0) {
        api_close(g);
        return -1;
    }
    *inst = g;
    return 0;
}

/* ---- evaluate ---- */

static char *api_request_body(const struct bh_event *ev)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "trigger", ev->trigger ? ev->trigger : "");
    cJSON_AddStringToObject(o, "tenantId", ev->tenant ? ev->tenant : "");
    cJSON *payload = ev->raw_json ? cJSON_Parse(ev->raw_json) : NULL;
    cJSON_AddItemToObject(o, "payload", payload ? payload : cJSON_CreateNull());
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

/* POSTs body; 0 with the answer in *b and the status in *status, or -1 (err says why). */
static int api_post(struct api_guard *g, const char *body, struct api_buf *b, long *status,
                    struct bh_err *err)
{
    CURL *c = curl_easy_init();
    if (!c)
        return host->err_set(g->h, err, BH_EIO, "the policy service is unavailable");
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    if (g->auth)
        hdrs = curl_slist_append(hdrs, g->auth);
    curl_easy_setopt(c, CURLOPT_URL, g->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, g->timeout_ms);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, api_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    if (rc == CURLE_OK)
        return 0;
    host->log(g->h, BH_LOG_WARN, "POST %s: %s", g->url,
              b->too_large ? "answer too large" : curl_easy_strerror(rc));
    if (rc == CURLE_OPERATION_TIMEDOUT)
        return host->err_set(g->h, err, BH_ETIMEOUT,
                             "the policy service did not answer within %ld ms", g->timeout_ms);
    return host->err_set(g->h, err, BH_EIO, "the policy service could not be asked");
}

/* Length of the UTF-8 sequence a lead byte starts (1 for anything else). */
static size_t api_utf8_len(unsigned char c)
{
    return c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
}

/* The reason as the sender sees it: at most API_REASON_MAX bytes, no control bytes, not cut
 * inside a UTF-8 sequence. */
static void api_reason(const char *in, char *out, size_t outlen)
{
    size_t cap = outlen - 1 < API_REASON_MAX ? outlen - 1 : API_REASON_MAX, n = 0;
    for (size_t i = 0; in[i] && i + api_utf8_len((unsigned char)in[i]) <= cap;) {
        size_t len = api_utf8_len((unsigned char)in[i]);
        for (size_t k = 0; k < len && in[i]; k++, i++)
            out[n++] = (unsigned char)in[i] < ' ' || in[i] == 0x7f ? ' ' : in[i];
    }
    out[n] = '\0';
}

static int api_verdict(struct api_guard *g, const struct api_buf *b, long status,
                       struct bh_guard_verdict *v, struct bh_err *err)
{
    if (status < 200 || status > 299) {
        host->log(g->h, BH_LOG_WARN, "POST %s: answered %ld", g->url, status);
        return host->err_set(g->h, err, BH_EIO, "the policy service answered %ld", status);
    }
    cJSON *o = cJSON_ParseWithLength(b->data, b->len);
    const cJSON *allow = cJSON_GetObjectItemCaseSensitive(o, "allow");
    const cJSON *reason = cJSON_GetObjectItemCaseSensitive(o, "reason");
    int rc = 0;
    if (!cJSON_IsBool(allow)) {
        host->log(g->h, BH_LOG_WARN, "POST %s: answer without a boolean \"allow\": %.200s", g->url,
                  b->data);
        rc = host->err_set(g->h, err, BH_EIO, "the policy service gave no verdict");
    } else {
        v->verdict = cJSON_IsTrue(allow) ? BH_GUARD_ALLOW : BH_GUARD_DENY;
        if (v->verdict == BH_GUARD_DENY)
            api_reason(cJSON_IsString(reason) && reason->valuestring[0] ? reason->valuestring
                                                                        : "refused by policy",
                       v->reason, sizeof(v->reason));
    }
    cJSON_Delete(o);
    return rc;
}

static int api_evaluate(void *inst, const struct bh_event *ev, struct bh_guard_verdict *v,
                        struct bh_err *err)
{
    struct api_guard *g = inst;
    char *body = api_request_body(ev);
    struct api_buf *b = calloc(1, sizeof(*b));
    long status = 0;
    int rc = !body || !b ? host->err_set(g->h, err, BH_EIO, "out of memory")
                         : api_post(g, body, b, &status, err);
    if (rc == 0)
        rc = api_verdict(g, b, status, v, err);
    free(b);
    free(body);
    return rc;
}

static const struct bh_config_field api_schema[] = {
    {"url", BH_CFG_STRING, 1, NULL, "the policy service: POST {trigger, tenantId, payload}"},
    {"secretName", BH_CFG_STRING, 0, NULL, "secret store entry holding the bearer token"},
    {"secretKey", BH_CFG_STRING, 0, "token", "key within that secret"},
    {"timeoutMs", BH_CFG_INT, 0, "2000", "no answer within this is an error (refused)"},
};

static const struct bh_guard_ops api_ops = {
    .size = sizeof(struct bh_guard_ops),
    .open = api_open,
    .close = api_close,
    .evaluate = api_evaluate,
};

static const struct bh_plugin_info api_info = {
    .size = sizeof(struct bh_plugin_info),
    .abi_major = BH_PLUGIN_ABI_MAJOR,
    .abi_minor = BH_PLUGIN_ABI_MINOR,
    .build_sig = BH_PLUGIN_BUILD_SIG,
    .kind = BH_PLUGIN_GUARD,
    .flags = BH_PLUGIN_THREADSAFE,
    .name = "api",
    .version = "0.1.0",
    .field_size = sizeof(struct bh_config_field),
    .serves_schema = api_schema,
    .n_serves_schema = sizeof(api_schema) / sizeof(api_schema[0]),
    .ops = &api_ops,
};

BH_PLUGIN_EXPORT const struct bh_plugin_info *bh_plugin_entry(const struct bh_host_api *h)
{
    if (!BH_HAS_OP(h, struct bh_host_api, config_json))
        return NULL;
    host = h;
    return &api_info;
}
