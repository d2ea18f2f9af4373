/* bh-trigger-webhook: a POST route on the daemon's shared listener per trigger. Verifies the
 * request (GitHub-style X-Hub-Signature-256, or Standard Webhooks with a 5-minute window),
 * refuses replayed delivery ids and bursts over the rate limit, emits the JSON body as the
 * event and answers with the driver's reply (or the refusal as JSON). */
#include <boilerhouse/plugin.h>
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "seen.h"
#include "sig.h"

static const struct bh_host_api *host;

struct webhook {
    struct bh_plugin_handle *h;
    char *secret; /* host memory (host->free); NULL with signature "none" */
    int scheme;   /* WEBHOOK_* */
    long long max_body;
    const char *text_field;
    pthread_mutex_t lock;
    /* Token bucket: rate per minute, refilled continuously. */
    double tokens, rate_per_s, burst;
    double last_refill;
    struct bht_seen seen; /* delivery ids seen within the window */
};

#define WEBHOOK_GITHUB 0
#define WEBHOOK_STANDARD 1
#define WEBHOOK_NONE 2

static double webhook_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void webhook_json(struct bh_http_response *resp, struct webhook *w, uint32_t status,
                         const char *key, const char *msg)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, key, msg);
    char *text = cJSON_PrintUnformatted(o);
    host->http_respond(w->h, resp, status, "application/json", text, strlen(text));
    free(text);
    cJSON_Delete(o);
}

static int webhook_take_token(struct webhook *w)
{
    pthread_mutex_lock(&w->lock);
    double now = webhook_now();
    w->tokens += (now - w->last_refill) * w->rate_per_s;
    if (w->tokens > w->burst)
        w->tokens = w->burst;
    w->last_refill = now;
    int ok = w->tokens >= 1.0;
    if (ok)
        w->tokens -= 1.0;
    pthread_mutex_unlock(&w->lock);
    return ok;
}

static int webhook_replayed(struct webhook *w, const char *id)
{
    pthread_mutex_lock(&w->lock);
    int seen = bht_seen_check(&w->seen, id, (long long)time(NULL), 2 * SIG_WINDOW_S);
    pthread_mutex_unlock(&w->lock);
    return seen;
}

/* Verifies the request; 0, or the HTTP status to refuse with (and *why). */
static uint32_t webhook_verify(struct webhook *w, const struct bh_http_request *req,
                               const char **why)
{
    int rc = SIG_OK;
    const char *id = NULL;
    if (w->scheme == WEBHOOK_GITHUB) {
        rc = sig_github_verify((const uint8_t *)w->secret, strlen(w->secret),
                               req->header(req, "X-Hub-Signature-256"), req->body, req->body_len);
        id = req->header(req, "X-GitHub-Delivery");
    } else if (w->scheme == WEBHOOK_STANDARD) {
        id = req->header(req, "webhook-id");
        rc = sig_standard_verify(w->secret, id, req->header(req, "webhook-timestamp"),
                                 req->header(req, "webhook-signature"), req->body, req->body_len,
                                 (long long)time(NULL));
    }
    *why = sig_error(rc);
    if (rc != SIG_OK)
        return 401;
    if (id && strlen(id) >= BHT_SEEN_ID) {
        *why = "delivery id longer than 79 characters";
        return 400;
    }
    if (id && webhook_replayed(w, id)) {
        *why = "delivery id already seen (replay)";
        return 409;
    }
    return 0;
}

static void webhook_answer(struct webhook *w, struct bh_http_response *resp,
                           const struct bh_event_reply *reply)
{
    if (reply->verdict != BH_VERDICT_ALLOW) {
        webhook_json(resp, w, reply->status ? reply->status : 500, "error", reply->reason);
        return;
    }
    /* The driver's answer as is when it is JSON, else wrapped as {"reply": text}. */
    cJSON *parsed = cJSON_ParseWithLength(reply->body, reply->body_len);
    if (parsed)
        host->http_respond(w->h, resp, 200, "application/json", reply->body, reply->body_len);
    else
        webhook_json(resp, w, 200, "reply", reply->body);
    cJSON_Delete(parsed);
}

static void webhook_handle(void *arg, const struct bh_http_request *req,
                           struct bh_http_response *resp)
{
    struct webhook *w = arg;
    const char *why = NULL;
    if ((long long)req->body_len > w->max_body)
        return webhook_json(resp, w, 413, "error", "body too large");
    if (!webhook_take_token(w))
        return webhook_json(resp, w, 429, "error", "rate limit exceeded");
    uint32_t refuse = webhook_verify(w, req, &why);
    if (refuse)
        return webhook_json(resp, w, refuse, "error", why);
    cJSON *payload = cJSON_ParseWithLength(req->body, req->body_len);
    if (!payload)
        return webhook_json(resp, w, 400, "error", "body is not JSON");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(payload, w->text_field);
    const struct bh_event ev = {.size = sizeof(ev),
                                .text = cJSON_IsString(text) ? text->valuestring : "",
                                .source = "webhook",
                                .raw_json = req->body};
    struct bh_event_reply reply = {.size = sizeof(reply)};
    struct bh_err err = {0};
    if (host->emit(w->h, &ev, &reply, &err) < 0)
        webhook_json(resp, w, 500, "error", err.msg);
    else
        webhook_answer(w, resp, &reply);
    host->reply_free(w->h, &reply);
    cJSON_Delete(payload);
}

static int webhook_scheme(struct bh_plugin_handle *h, int *out, struct bh_err *err)
{
    const char *s = host->config_string(h, "signature");
    if (strcmp(s, "github") == 0)
        *out = WEBHOOK_GITHUB;
    else if (strcmp(s, "standard") == 0)
        *out = WEBHOOK_STANDARD;
    else if (strcmp(s, "none") == 0)
        *out = WEBHOOK_NONE;
    else
        return host->err_set(h, err, BH_EINVAL,
                             "spec.config.signature: \"%.32s\" (github, standard or none)", s);
    return 0;
}

static int webhook_secret(struct webhook *w, struct bh_err *err)
{
    const char *name = host->config_string(w->h, "secretName");
    if (!name)
        return host->err_set(w->h, err, BH_EINVAL,
                             "spec.config.secretName: required unless signature is none");
    return host->secret_get(w->h, name, host->config_string(w->h, "secretKey"), NULL, &w->secret,
                            err);
}

static void webhook_stop(void *inst)
{
    struct webhook *w = inst;
    if (!w)
        return;
    host->free(w->h, w->secret);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

static int webhook_start(void *state, struct bh_plugin_handle *h, void **inst, struct bh_err *err)
{
    struct webhook *w = calloc(1, sizeof(*w));
    if (!w)
        return host->err_set(h, err, BH_EIO, "out of memory");
    w->h = h;
    pthread_mutex_init(&w->lock, NULL);
    w->max_body = host->config_int(h, "maxBodyBytes");
    w->text_field = host->config_string(h, "textField");
    w->rate_per_s = (double)host->config_int(h, "rateLimitPerMinute") / 60.0;
    w->burst = w->tokens = w->rate_per_s * 60.0 < 1 ? 1 : w->rate_per_s * 60.0;
    w->last_refill = webhook_now();
    if (webhook_scheme(h, &w->scheme, err) < 0 ||
        (w->scheme != WEBHOOK_NONE && webhook_secret(w, err) < 0) ||
        host->http_route(h, host->config_string(h, "path"), webhook_handle, w, err) < 0) {
        webhook_stop(w);
        return -1;
    }
    *inst = w;
    return 0;
}

static const struct bh_config_field webhook_schema[] = {
    {"path", BH_CFG_STRING, 1, NULL, "route on the shared listener, /hooks/..."},
    {"signature", BH_CFG_STRING, 0, "github", "github, standard (Standard Webhooks) or none"},
    {"secretName", BH_CFG_STRING, 0, NULL, "secret store entry holding the signing secret"},
    {"secretKey", BH_CFG_STRING, 0, "secret", "key within that secret"},
    {"rateLimitPerMinute", BH_CFG_INT, 0, "600", "requests per minute before 429"},
    {"maxBodyBytes", BH_CFG_INT, 0, "262144", "larger bodies are refused with 413"},
    {"textField", BH_CFG_STRING, 0, "text", "payload key taken as the event's text"},
};

static const struct bh_trigger_ops webhook_ops = {
    .size = sizeof(struct bh_trigger_ops),
    .start = webhook_start,
    .stop = webhook_stop,
};

static const struct bh_plugin_info webhook_info = {
    .size = sizeof(struct bh_plugin_info),
    .abi_major = BH_PLUGIN_ABI_MAJOR,
    .abi_minor = BH_PLUGIN_ABI_MINOR,
    .build_sig = BH_PLUGIN_BUILD_SIG,
    .kind = BH_PLUGIN_TRIGGER,
    .flags = BH_PLUGIN_THREADSAFE,
    .name = "webhook",
    .version = "0.1.0",
    .field_size = sizeof(struct bh_config_field),
    .serves_schema = webhook_schema,
    .n_serves_schema = sizeof(webhook_schema) / sizeof(webhook_schema[0]),
    .ops = &webhook_ops,
};

BH_PLUGIN_EXPORT const struct bh_plugin_info *bh_plugin_entry(const struct bh_host_api *h)
{
    /* 2.1 calls are needed: refuse an older host rather than crash on a short table. */
    if (!BH_HAS_OP(h, struct bh_host_api, status_set))
        return NULL;
    host = h;
    return &webhook_info;
}
