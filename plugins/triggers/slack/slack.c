/* bh-trigger-slack: a Slack app on the Events API. Slack POSTs to the trigger's route on the
 * shared listener; each request must carry a valid v0 signature (X-Slack-Signature over
 * "v0:<X-Slack-Request-Timestamp>:<body>" with the app's signing secret, the timestamp within
 * 5 minutes, constant-time compare). url_verification is answered with its challenge. An
 * event_callback of a type in eventTypes, from a user (not a bot, not the bot itself, not an
 * edit), is acknowledged at once (Slack wants an answer within 3 s) and worked on by a small
 * queue: one event at a time per user and per channel, in arrival order. An event_id already
 * taken is not handled twice, so Slack's retries (X-Slack-Retry-Num) of an event it thinks
 * unanswered are answered and dropped. The agent's answer, or the refusal, is posted in the
 * event's thread with chat.postMessage (the bot token from the secret store). */
#include <boilerhouse/plugin.h>
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_call.h"
#include "seen.h"
#include "sig.h"
#include "slack_event.h"
#include "workq.h"

#define SLACK_MAX_BODY (1 << 20)
#define SLACK_SEEN_TTL_S 3600 /* Slack retries for about an hour */
#define SLACK_POST_TIMEOUT_S 30

static const struct bh_host_api *host;

struct slack {
    struct bh_plugin_handle *h;
    char *signing_secret, *bot_auth; /* host memory (host->free); bot_auth is "Bearer <token>" */
    char *post_url;                  /* <apiBaseUrl>/chat.postMessage */
    cJSON *event_types;              /* the array of types handled */
    struct bht_workq *queue;
    pthread_mutex_t lock; /* seen, bot_user */
    struct bht_seen seen; /* event ids taken */
    char bot_user[32];    /* from auth.test; "" until known */
    pthread_t thread;     /* auth.test */
    int thread_started;
    volatile int stopping;
};

/* One event, waiting for a worker. */
struct slack_job {
    char *payload, *text, *channel, *thread_ts, *user;
};

/* ---- answering ---- */

static void slack_post(struct slack *s, const char *channel, const char *thread_ts,
                       const char *text, long timeout_s)
{
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "channel", channel);
    cJSON_AddStringToObject(b, "thread_ts", thread_ts);
    cJSON_AddStringToObject(b, "text", text[0] ? text : "(empty answer)");
    struct bh_err err = {0};
    if (bht_api_call(host, s->h, s->post_url, s->bot_auth, "chat.postMessage", b, timeout_s,
                     &s->stopping, NULL, &err) < 0)
        host->log(s->h, BH_LOG_WARN, "channel %s: %s", channel, err.msg);
    cJSON_Delete(b);
}

static void slack_job_run(void *arg, void *job)
{
    struct slack *s = arg;
    const struct slack_job *j = job;
    if (s->stopping)
        return;
    char source[64];
    snprintf(source, sizeof(source), "slack:%.40s", j->user);
    const struct bh_event ev = {
        .size = sizeof(ev), .text = j->text, .source = source, .raw_json = j->payload};
    struct bh_event_reply reply = {.size = sizeof(reply)};
    struct bh_err err = {0};
    cJSON *parsed = NULL;
    if (host->emit(s->h, &ev, &reply, &err) < 0)
        host->log(s->h, BH_LOG_ERROR, "event from %s: %s", j->user, err.msg);
    else
        slack_post(s, j->channel, j->thread_ts,
                   reply.verdict == BH_VERDICT_ALLOW ? bht_reply_text(&reply, &parsed)
                                                     : reply.reason,
                   SLACK_POST_TIMEOUT_S);
    cJSON_Delete(parsed);
    host->reply_free(s->h, &reply);
}

static void slack_job_free(void *job)
{
    struct slack_job *j = job;
    free(j->payload);
    free(j->text);
    free(j->channel);
    free(j->thread_ts);
    free(j->user);
    free(j);
}

/* ---- the route ---- */

static void slack_respond(struct slack *s, struct bh_http_response *resp, uint32_t status,
                          const char *key, const char *msg)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, key, msg);
    char *text = cJSON_PrintUnformatted(o);
    host->http_respond(s->h, resp, status, "application/json", text, strlen(text));
    free(text);
    cJSON_Delete(o);
}

static int slack_type_wanted(const struct slack *s, const char *type)
{
    const cJSON *t;
    cJSON_ArrayForEach(t, s->event_types) {
        if (cJSON_IsString(t) && strcmp(t->valuestring, type) == 0)
            return 1;
    }
    return 0;
}

/* 1 if event id was taken before (a retry); otherwise takes it. */
static int slack_seen(struct slack *s, const char *id)
{
    pthread_mutex_lock(&s->lock);
    int seen = bht_seen_check(&s->seen, id, (long long)time(NULL), SLACK_SEEN_TTL_S);
    pthread_mutex_unlock(&s->lock);
    return seen;
}

/* Why an event is not worked on, or NULL to work on it. */
static const char *slack_skip(struct slack *s, const struct slack_event *e)
{
    if (!slack_type_wanted(s, e->type))
        return "event type not handled";
    pthread_mutex_lock(&s->lock);
    int from_user = slack_event_from_user(e, s->bot_user[0] ? s->bot_user : NULL);
    pthread_mutex_unlock(&s->lock);
    if (!from_user)
        return "not a message from a user";
    if (strlen(e->event_id) >= BHT_SEEN_ID)
        return "event id too long";
    if (slack_seen(s, e->event_id))
        return "event already taken (a retry)";
    return NULL;
}

/* Queues the event: 0, or -1 when the queue is full and "busy" was answered in the thread. */
static int slack_enqueue(struct slack *s, const struct slack_event *e, const cJSON *body)
{
    const char *thread = e->thread_ts ? e->thread_ts : e->ts;
    struct slack_job *j = calloc(1, sizeof(*j));
    if (j) {
        j->payload = slack_event_payload(e, body);
        j->text = strdup(e->text ? e->text : "");
        j->channel = strdup(e->channel);
        j->thread_ts = strdup(thread);
        j->user = strdup(e->user);
    }
    const char *keys[BHT_WORKQ_KEYS] = {e->user, e->channel};
    if (j && j->payload && j->text && j->channel && j->thread_ts && j->user &&
        bht_workq_push(s->queue, keys, j) == 0)
        return 0;
    if (j)
        slack_job_free(j);
    host->log(s->h, BH_LOG_WARN, "event %s: queue full, answered busy", e->event_id);
    /* Short: the acknowledgement waits for it. */
    slack_post(s, e->channel, thread, "busy: too many messages are waiting; try again shortly", 2);
    return -1;
}

static void slack_handle(void *arg, const struct bh_http_request *req,
                         struct bh_http_response *resp)
{
    struct slack *s = arg;
    if (req->body_len > SLACK_MAX_BODY)
        return slack_respond(s, resp, 413, "error", "body too large");
    int rc = sig_slack_verify(s->signing_secret, req->header(req, "X-Slack-Request-Timestamp"),
                              req->header(req, "X-Slack-Signature"), req->body, req->body_len,
                              (long long)time(NULL));
    if (rc != SIG_OK)
        return slack_respond(s, resp, 401, "error", sig_error(rc));
    cJSON *body = cJSON_ParseWithLength(req->body, req->body_len);
    struct slack_event e;
    if (slack_event_parse(body, &e) < 0) {
        cJSON_Delete(body);
        return slack_respond(s, resp, 400, "error", "not an Events API request");
    }
    if (e.kind == SLACK_URL_VERIFICATION) {
        slack_respond(s, resp, 200, "challenge", e.challenge);
    } else {
        const char *skip = slack_skip(s, &e);
        if (!skip && slack_enqueue(s, &e, body) < 0)
            skip = "busy (answered in the thread)";
        else if (skip && req->header(req, "X-Slack-Retry-Num"))
            host->log(s->h, BH_LOG_DEBUG, "event %s: retry %s: %s", e.event_id,
                      req->header(req, "X-Slack-Retry-Num"), skip);
        /* 200 either way: Slack must not retry what is skipped on purpose. */
        slack_respond(s, resp, 200, "ok", skip ? skip : "queued");
    }
    cJSON_Delete(body);
}

/* ---- start and stop ---- */

/* auth.test: the token works, and the bot's own user ID (its messages are not answered). */
static void *slack_main(void *arg)
{
    struct slack *s = arg;
    const char *base = host->config_string(s->h, "apiBaseUrl");
    char *url = malloc(strlen(base) + 16);
    cJSON *none = cJSON_CreateObject(), *answer = NULL;
    struct bh_err err = {0};
    int rc = -1;
    if (url) {
        sprintf(url, "%s/auth.test", base);
        rc = bht_api_call(host, s->h, url, s->bot_auth, "auth.test", none, 30, &s->stopping,
                          &answer, &err);
    }
    free(url);
    cJSON_Delete(none);
    const cJSON *user = cJSON_GetObjectItemCaseSensitive(answer, "user_id");
    if (rc == 0 && cJSON_IsString(user)) {
        pthread_mutex_lock(&s->lock);
        snprintf(s->bot_user, sizeof(s->bot_user), "%s", user->valuestring);
        pthread_mutex_unlock(&s->lock);
        host->status_set(s->h, "botUser", user->valuestring);
    } else if (!s->stopping) {
        host->failed(s->h, rc < 0 ? err.msg : "auth.test: no user_id in the answer");
    }
    cJSON_Delete(answer);
    return NULL;
}

static void slack_stop(void *inst)
{
    struct slack *s = inst;
    if (!s)
        return;
    s->stopping = 1;
    if (s->thread_started)
        pthread_join(s->thread, NULL);
    bht_workq_free(s->queue);
    host->free(s->h, s->signing_secret);
    host->free(s->h, s->bot_auth);
    free(s->post_url);
    cJSON_Delete(s->event_types);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* The config beyond its schema's types; *types (owned) the event types handled. */
static int slack_configure(struct bh_plugin_handle *h, cJSON **types, struct bh_err *err)
{
    if (!bht_base_url_ok(host->config_string(h, "apiBaseUrl")))
        return host->err_set(h, err, BH_EINVAL,
                             "spec.config.apiBaseUrl: an http(s) URL without a trailing '/', "
                             "query or spaces");
    const char *list = host->config_json(h, "eventTypes");
    *types = cJSON_Parse(list ? list : "[\"message\",\"app_mention\"]");
    const cJSON *t;
    int n = 0;
    cJSON_ArrayForEach(t, *types) {
        n++;
        if (!cJSON_IsString(t) || !t->valuestring[0] || strlen(t->valuestring) > 64)
            return host->err_set(h, err, BH_EINVAL,
                                 "spec.config.eventTypes: a list of event type names");
    }
    if (n == 0)
        return host->err_set(h, err, BH_EINVAL, "spec.config.eventTypes: empty");
    long long w = host->config_int(h, "workers"), q = host->config_int(h, "queueMax");
    if (w < 1 || w > 16 || q < 1 || q > 4096)
        return host->err_set(h, err, BH_EINVAL, "spec.config.%s: %s",
                             w < 1 || w > 16 ? "workers" : "queueMax",
                             w < 1 || w > 16 ? "1..16" : "1..4096");
    return 0;
}

/* The signing secret and the bot token, from one secret store entry. */
static int slack_secrets(struct slack *s, struct bh_err *err)
{
    const char *name = host->config_string(s->h, "secretName");
    char *token = NULL;
    if (host->secret_get(s->h, name, host->config_string(s->h, "signingSecretKey"), NULL,
                         &s->signing_secret, err) < 0 ||
        host->secret_get(s->h, name, host->config_string(s->h, "botTokenKey"), NULL, &token, err) <
            0)
        return -1;
    s->bot_auth = malloc(strlen(token) + 8);
    if (s->bot_auth)
        sprintf(s->bot_auth, "Bearer %s", token);
    host->free(s->h, token);
    if (!s->bot_auth)
        return host->err_set(s->h, err, BH_EIO, "out of memory");
    if (strcspn(s->bot_auth, "\r\n") != strlen(s->bot_auth))
        return host->err_set(s->h, err, BH_EINVAL, "the bot token holds a line break");
    return 0;
}

static int slack_start(void *state, struct bh_plugin_handle *h, void **inst, struct bh_err *err)
{
    struct slack *s = calloc(1, sizeof(*s));
    if (!s)
        return host->err_set(h, err, BH_EIO, "out of memory");
    s->h = h;
    pthread_mutex_init(&s->lock, NULL);
    const char *base = host->config_string(h, "apiBaseUrl");
    if (slack_configure(h, &s->event_types, err) < 0 || slack_secrets(s, err) < 0 ||
        !(s->post_url = malloc(strlen(base) + 24)) ||
        !(s->queue = bht_workq_new((int)host->config_int(h, "workers"),
                                   (int)host->config_int(h, "queueMax"), slack_job_run,
                                   slack_job_free, s)) ||
        host->http_route(h, host->config_string(h, "path"), slack_handle, s, err) < 0) {
        if (!err->msg[0])
            host->err_set(h, err, BH_EIO, "out of memory");
        slack_stop(s);
        return -1;
    }
    sprintf(s->post_url, "%s/chat.postMessage", base);
    if (pthread_create(&s->thread, NULL, slack_main, s) != 0) {
        slack_stop(s);
        return host->err_set(h, err, BH_EIO, "cannot start the auth.test thread");
    }
    s->thread_started = 1;
    *inst = s;
    return 0;
}

static int slack_check(void *state, struct bh_plugin_handle *h, struct bh_err *err)
{
    cJSON *types = NULL;
    int rc = slack_configure(h, &types, err);
    cJSON_Delete(types);
    return rc;
}

static const struct bh_config_field slack_schema[] = {
    {"path", BH_CFG_STRING, 1, NULL, "route on the shared listener (the Request URL), /hooks/..."},
    {"secretName", BH_CFG_STRING, 1, NULL,
     "secret store entry holding the signing secret and the bot token"},
    {"signingSecretKey", BH_CFG_STRING, 0, "signingSecret", "key of the signing secret"},
    {"botTokenKey", BH_CFG_STRING, 0, "botToken", "key of the bot token (xoxb-...)"},
    {"apiBaseUrl", BH_CFG_STRING, 0, "https://slack.com/api", "the Web API's base URL"},
    {"eventTypes", BH_CFG_LIST, 0, NULL, "event types handled (default message, app_mention)"},
    {"workers", BH_CFG_INT, 0, "4", "events worked on in parallel (1..16)"},
    {"queueMax", BH_CFG_INT, 0, "64", "events waiting before \"busy\" (1..4096)"},
};

static const struct bh_trigger_ops slack_ops = {
    .size = sizeof(struct bh_trigger_ops),
    .start = slack_start,
    .stop = slack_stop,
    .check = slack_check,
};

static const struct bh_plugin_info slack_info = {
    .size = sizeof(struct bh_plugin_info),
    .abi_major = BH_PLUGIN_ABI_MAJOR,
    .abi_minor = BH_PLUGIN_ABI_MINOR,
    .build_sig = BH_PLUGIN_BUILD_SIG,
    .kind = BH_PLUGIN_TRIGGER,
    .flags = BH_PLUGIN_THREADSAFE,
    .name = "slack",
    .version = "0.1.0",
    .field_size = sizeof(struct bh_config_field),
    .serves_schema = slack_schema,
    .n_serves_schema = sizeof(slack_schema) / sizeof(slack_schema[0]),
    .ops = &slack_ops,
};

BH_PLUGIN_EXPORT const struct bh_plugin_info *bh_plugin_entry(const struct bh_host_api *h)
{
    /* 2.2 calls are needed: refuse an older host rather than crash on a short table. */
    if (!BH_HAS_OP(h, struct bh_host_api, status_set))
        return NULL;
    host = h;
    return &slack_info;
}
