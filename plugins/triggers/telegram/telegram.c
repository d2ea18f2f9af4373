/* bh-trigger-telegram: a Telegram bot, in long-polling or webhook mode.
 *
 * Polling: a thread per trigger calls getMe (the token works), deleteWebhook (polling and a
 * webhook exclude each other), then getUpdates in a loop from the offset persisted in the
 * trigger's state directory. The offset is persisted after each update is answered, before
 * the next getUpdates confirms it to Telegram: a stop or restart repeats nothing and loses
 * nothing (only a crash in the middle of an update may repeat that one).
 *
 * Webhook: the trigger's route on the shared listener receives the updates Telegram POSTs
 * after setWebhook(webhookUrl, secret_token); the secret token is fresh at every start and
 * each request must carry it in X-Telegram-Bot-Api-Secret-Token (constant-time compare).
 * A request is acknowledged at once and worked on by a small queue (one update at a time per
 * chat and user, in arrival order); a retried update_id is not handled twice.
 *
 * Either way each message, edited_message or callback_query becomes an event whose payload
 * carries the tenant candidates (username, userId, chatId, usernameOrId; spec.tenant.from
 * picks one); the chat sees "typing" while the agent works (repeated every 4 s, as it fades
 * after 5), then the answer (or the refusal)
 * as sendMessage, split at 4096 characters. */
#include <boilerhouse/plugin.h>
#include <cjson/cJSON.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api_call.h"
#include "seen.h"
#include "sig.h"
#include "state_file.h"
#include "tg_update.h"
#include "workq.h"

#define TG_RETRY_S 2
#define TG_FAILS_MAX 5          /* consecutive failed polls before the adapter reports failure */
#define TG_OFFSET_FILE "offset" /* in the state dir: the next update to handle */
#define TG_SEEN_TTL_S 3600      /* Telegram retries an unanswered webhook for about an hour */
#define TG_MAX_BODY (1 << 20)

static const struct bh_host_api *host;

struct tg {
    struct bh_plugin_handle *h;
    char *token; /* host memory (host->free) */
    const char *base;
    long long poll_s;
    long long offset;
    int webhook; /* mode */
    char secret_token[65];
    struct bht_workq *queue; /* webhook mode */
    pthread_mutex_t lock;    /* seen */
    struct bht_seen seen;    /* update ids taken from the webhook */
    pthread_t thread;
    int thread_started;
    volatile int stopping;
};

/* One update from the webhook, waiting for a worker. */
struct tg_job {
    cJSON *u;
};

/* Calls Bot API `method` with a JSON body; *result owned (the answer's "result"). The URL
 * holds the token: it is never logged. */
static int tg_call(struct tg *t, const char *method, cJSON *body, long timeout_s, cJSON **result,
                   struct bh_err *err)
{
    char *url = malloc(strlen(t->base) + strlen(t->token) + strlen(method) + 8);
    if (!url)
        return host->err_set(t->h, err, BH_EIO, "%s: out of memory", method);
    sprintf(url, "%s/bot%s/%s", t->base, t->token, method);
    cJSON *answer = NULL;
    int rc =
        bht_api_call(host, t->h, url, NULL, method, body, timeout_s, &t->stopping, &answer, err);
    memset(url, 0, strlen(url));
    free(url);
    if (rc == 0 && result)
        *result = cJSON_DetachItemFromObjectCaseSensitive(answer, "result");
    cJSON_Delete(answer);
    return rc;
}

/* ---- answering ---- */

static void tg_send(struct tg *t, long long chat, const char *text)
{
    size_t len = strlen(text);
    struct bh_err err = {0};
    if (len == 0)
        text = "(empty answer)", len = strlen(text);
    for (size_t at = 0; at < len && !t->stopping;) {
        size_t n = tg_split(text + at, len - at, TG_TEXT_MAX);
        cJSON *b = cJSON_CreateObject();
        cJSON_AddNumberToObject(b, "chat_id", (double)chat);
        char *chunk = strndup(text + at, n);
        cJSON_AddStringToObject(b, "text", chunk ? chunk : "");
        free(chunk);
        if (tg_call(t, "sendMessage", b, 30, NULL, &err) < 0)
            host->log(t->h, BH_LOG_WARN, "chat %lld: %s", chat, err.msg);
        cJSON_Delete(b);
        at += n;
    }
}

static void tg_typing(struct tg *t, long long chat)
{
    cJSON *b = cJSON_CreateObject();
    cJSON_AddNumberToObject(b, "chat_id", (double)chat);
    cJSON_AddStringToObject(b, "action", "typing");
    struct bh_err err = {0};
    if (tg_call(t, "sendChatAction", b, 10, NULL, &err) < 0)
        host->log(t->h, BH_LOG_DEBUG, "typing: %s", err.msg);
    cJSON_Delete(b);
}

/* "typing" lasts about 5 s in the chat: a thread per update repeats it every 4 s until the
 * agent has answered. */
#define TG_TYPING_EVERY_S 4

struct tg_typist {
    struct tg *t;
    long long chat;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
    pthread_t thread;
};

static void *tg_typist_main(void *arg)
{
    struct tg_typist *ty = arg;
    pthread_mutex_lock(&ty->lock);
    for (;;) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += TG_TYPING_EVERY_S;
        while (!ty->done && pthread_cond_timedwait(&ty->cond, &ty->lock, &until) == 0)
            ;
        if (ty->done || ty->t->stopping)
            break;
        pthread_mutex_unlock(&ty->lock);
        tg_typing(ty->t, ty->chat);
        pthread_mutex_lock(&ty->lock);
    }
    pthread_mutex_unlock(&ty->lock);
    return NULL;
}

/* Sends "typing" to chat now and starts repeating it; 0, or -1 (sent once, nothing to stop). */
static int tg_typist_start(struct tg_typist *ty, struct tg *t, long long chat)
{
    tg_typing(t, chat);
    *ty = (struct tg_typist){.t = t, .chat = chat};
    pthread_mutex_init(&ty->lock, NULL);
    pthread_cond_init(&ty->cond, NULL);
    if (pthread_create(&ty->thread, NULL, tg_typist_main, ty) == 0)
        return 0;
    pthread_cond_destroy(&ty->cond);
    pthread_mutex_destroy(&ty->lock);
    return -1;
}

static void tg_typist_stop(struct tg_typist *ty)
{
    pthread_mutex_lock(&ty->lock);
    ty->done = 1;
    pthread_cond_signal(&ty->cond);
    pthread_mutex_unlock(&ty->lock);
    pthread_join(ty->thread, NULL);
    pthread_cond_destroy(&ty->cond);
    pthread_mutex_destroy(&ty->lock);
}

static void tg_answer_callback(struct tg *t, const char *id)
{
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "callback_query_id", id);
    struct bh_err err = {0};
    if (tg_call(t, "answerCallbackQuery", b, 10, NULL, &err) < 0)
        host->log(t->h, BH_LOG_DEBUG, "answerCallbackQuery: %s", err.msg);
    cJSON_Delete(b);
}

/* Update u, read into up (its strings borrowed from u). */
static void tg_handle(struct tg *t, const cJSON *u, const struct tg_update *up)
{
    long long id = up->update_id;
    if (up->callback_id)
        tg_answer_callback(t, up->callback_id);
    struct tg_typist typist;
    int typing = tg_typist_start(&typist, t, up->chat_id) == 0;
    char *payload = tg_update_payload(up, u);
    char source[64];
    snprintf(source, sizeof(source), "telegram:%s%s", up->username[0] ? "@" : "",
             up->username[0] ? up->username : "user");
    const struct bh_event ev = {
        .size = sizeof(ev), .text = up->text, .source = source, .raw_json = payload};
    struct bh_event_reply reply = {.size = sizeof(reply)};
    struct bh_err err = {0};
    cJSON *parsed = NULL;
    int rc = host->emit(t->h, &ev, &reply, &err);
    if (typing) /* stopped before the answer: "typing" never follows it */
        tg_typist_stop(&typist);
    if (rc < 0)
        host->log(t->h, BH_LOG_ERROR, "update %lld: %s", id, err.msg);
    else
        tg_send(t, up->chat_id,
                reply.verdict == BH_VERDICT_ALLOW ? bht_reply_text(&reply, &parsed) : reply.reason);
    cJSON_Delete(parsed);
    host->reply_free(t->h, &reply);
    free(payload);
}

/* ---- polling ---- */

static cJSON *tg_allowed_updates(void)
{
    cJSON *allowed = cJSON_CreateArray();
    cJSON_AddItemToArray(allowed, cJSON_CreateString("message"));
    cJSON_AddItemToArray(allowed, cJSON_CreateString("edited_message"));
    cJSON_AddItemToArray(allowed, cJSON_CreateString("callback_query"));
    return allowed;
}

/* One getUpdates round: handles each update, persisting the offset after each. */
static int tg_poll_once(struct tg *t, struct bh_err *err)
{
    cJSON *b = cJSON_CreateObject(), *updates = NULL;
    cJSON_AddNumberToObject(b, "offset", (double)t->offset);
    cJSON_AddNumberToObject(b, "timeout", (double)t->poll_s);
    cJSON_AddItemToObject(b, "allowed_updates", tg_allowed_updates());
    int rc = tg_call(t, "getUpdates", b, (long)t->poll_s + 10, &updates, err);
    cJSON_Delete(b);
    const cJSON *u;
    cJSON_ArrayForEach(u, updates) {
        long long id = -1;
        struct tg_update up;
        int usable = tg_update_parse(u, &up, &id) == 0;
        if (t->stopping || id < 0 ||
            id < t->offset) /* stale, or stopping: the next start takes it */
            continue;
        if (usable)
            tg_handle(t, u, &up);
        else
            host->log(t->h, BH_LOG_DEBUG, "update %lld: not a message from a user: skipped", id);
        t->offset = id + 1;
        if (bht_state_write(host, t->h, TG_OFFSET_FILE, t->offset) < 0)
            host->log(t->h, BH_LOG_WARN, "cannot persist the offset %lld", t->offset);
    }
    cJSON_Delete(updates);
    return rc;
}

static void tg_poll_loop(struct tg *t)
{
    struct bh_err err = {0};
    for (int fails = 0; !t->stopping;) {
        if (tg_poll_once(t, &err) == 0) {
            fails = 0;
            continue;
        }
        if (t->stopping)
            break;
        host->log(t->h, BH_LOG_WARN, "poll failed (%d in a row): %s", ++fails, err.msg);
        if (fails >= TG_FAILS_MAX) {
            host->failed(t->h, err.msg);
            break;
        }
        for (int i = 0; i < TG_RETRY_S * 10 && !t->stopping; i++)
            usleep(100000);
    }
}

/* Webhook mode: points Telegram at webhookUrl with this start's secret token. */
static int tg_set_webhook(struct tg *t, struct bh_err *err)
{
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "url", host->config_string(t->h, "webhookUrl"));
    cJSON_AddStringToObject(b, "secret_token", t->secret_token);
    cJSON_AddItemToObject(b, "allowed_updates", tg_allowed_updates());
    int rc = tg_call(t, "setWebhook", b, 30, NULL, err);
    cJSON_Delete(b);
    return rc;
}

/* getMe, then polling (deleteWebhook, getUpdates in a loop) or setWebhook, and done. */
static void *tg_main(void *arg)
{
    struct tg *t = arg;
    struct bh_err err = {0};
    cJSON *me = NULL, *none = cJSON_CreateObject();
    int rc = tg_call(t, "getMe", none, 30, &me, &err) < 0 ||
             (t->webhook ? tg_set_webhook(t, &err)
                         : tg_call(t, "deleteWebhook", none, 30, NULL, &err)) < 0;
    cJSON_Delete(none);
    if (rc) {
        cJSON_Delete(me);
        if (!t->stopping)
            host->failed(t->h, err.msg);
        return NULL;
    }
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(me, "username");
    host->status_set(t->h, "bot", cJSON_IsString(name) ? name->valuestring : "?");
    cJSON_Delete(me);
    host->status_set(t->h, "mode", t->webhook ? "webhook" : "polling");
    if (!t->webhook)
        tg_poll_loop(t);
    return NULL;
}

/* ---- webhook mode ---- */

static void tg_job_run(void *arg, void *job)
{
    struct tg *t = arg;
    const struct tg_job *j = job;
    long long id = -1;
    struct tg_update up;
    if (!t->stopping && tg_update_parse(j->u, &up, &id) == 0)
        tg_handle(t, j->u, &up);
}

static void tg_job_free(void *job)
{
    struct tg_job *j = job;
    cJSON_Delete(j->u);
    free(j);
}

static void tg_respond(struct tg *t, struct bh_http_response *resp, uint32_t status,
                       const char *msg)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, status < 300 ? "ok" : "error", msg);
    char *text = cJSON_PrintUnformatted(o);
    host->http_respond(t->h, resp, status, "application/json", text, strlen(text));
    free(text);
    cJSON_Delete(o);
}

/* 1 if update id was already taken from the webhook (Telegram retried it). */
static int tg_seen(struct tg *t, long long id)
{
    char key[24];
    snprintf(key, sizeof(key), "%lld", id);
    pthread_mutex_lock(&t->lock);
    int seen = bht_seen_check(&t->seen, key, (long long)time(NULL), TG_SEEN_TTL_S);
    pthread_mutex_unlock(&t->lock);
    return seen;
}

/* Queues update u (taken), one at a time per chat and user: 0, or -1 when the queue is full
 * and "busy" was answered in the chat. */
static int tg_enqueue(struct tg *t, cJSON *u, const struct tg_update *up)
{
    char chat[32], user[32];
    snprintf(chat, sizeof(chat), "c%lld", up->chat_id);
    snprintf(user, sizeof(user), "u%lld", up->user_id);
    const char *keys[BHT_WORKQ_KEYS] = {chat, user};
    struct tg_job *j = calloc(1, sizeof(*j));
    if (j && (j->u = u) && bht_workq_push(t->queue, keys, j) == 0)
        return 0;
    free(j);
    cJSON_Delete(u);
    host->log(t->h, BH_LOG_WARN, "chat %lld: queue full, answered busy", up->chat_id);
    tg_send(t, up->chat_id, "busy: too many messages are waiting; try again shortly");
    return -1;
}

static void tg_webhook_handle(void *arg, const struct bh_http_request *req,
                              struct bh_http_response *resp)
{
    struct tg *t = arg;
    int rc = sig_token_verify(t->secret_token, req->header(req, "X-Telegram-Bot-Api-Secret-Token"));
    if (rc != SIG_OK)
        return tg_respond(t, resp, 401,
                          rc == SIG_MISSING ? "missing secret token"
                                            : "secret token does not match");
    if (req->body_len > TG_MAX_BODY)
        return tg_respond(t, resp, 413, "body too large");
    cJSON *u = cJSON_ParseWithLength(req->body, req->body_len);
    long long id = -1;
    struct tg_update up;
    if (!cJSON_IsObject(u)) {
        cJSON_Delete(u);
        return tg_respond(t, resp, 400, "body is not a JSON update");
    }
    if (tg_update_parse(u, &up, &id) < 0 || tg_seen(t, id)) {
        cJSON_Delete(u);
        /* 200 all the same: Telegram must not retry what is skipped on purpose. */
        return tg_respond(t, resp, 200, id < 0 ? "not an update" : "skipped");
    }
    /* 200 when busy too: the chat was told, a retry by Telegram would only repeat that. */
    tg_respond(t, resp, 200, tg_enqueue(t, u, &up) == 0 ? "queued" : "busy");
}

/* ---- start and stop ---- */

static void tg_stop(void *inst)
{
    struct tg *t = inst;
    if (!t)
        return;
    t->stopping = 1;
    if (t->thread_started)
        pthread_join(t->thread, NULL);
    bht_workq_free(t->queue);
    host->free(t->h, t->token);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

static int tg_configure_webhook(struct tg *t, struct bh_err *err)
{
    const char *url = host->config_string(t->h, "webhookUrl");
    if (!host->config_string(t->h, "path"))
        return host->err_set(t->h, err, BH_EINVAL,
                             "spec.config.path: required in webhook mode (/hooks/...)");
    if (!url || (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0) ||
        strcspn(url, " \t\r\n") != strlen(url))
        return host->err_set(t->h, err, BH_EINVAL,
                             "spec.config.webhookUrl: required in webhook mode, the public "
                             "http(s) URL Telegram posts to");
    t->webhook = 1;
    return 0;
}

static int tg_configure(struct tg *t, struct bh_err *err)
{
    t->base = host->config_string(t->h, "apiBaseUrl");
    t->poll_s = host->config_int(t->h, "pollTimeoutSeconds");
    const char *mode = host->config_string(t->h, "mode");
    if (!bht_base_url_ok(t->base))
        return host->err_set(t->h, err, BH_EINVAL,
                             "spec.config.apiBaseUrl: an http(s) URL without a trailing '/', "
                             "query or spaces");
    if (t->poll_s < 0 || t->poll_s > 50)
        return host->err_set(t->h, err, BH_EINVAL, "spec.config.pollTimeoutSeconds: 0..50");
    if (strcmp(mode, "webhook") == 0)
        return tg_configure_webhook(t, err);
    if (strcmp(mode, "polling") != 0)
        return host->err_set(t->h, err, BH_EINVAL,
                             "spec.config.mode: \"%.32s\" (polling or webhook)", mode);
    if (host->config_string(t->h, "path"))
        return host->err_set(t->h, err, BH_EINVAL,
                             "spec.config.path: only in webhook mode (polling needs no route)");
    return 0;
}

/* A fresh secret token for setWebhook: 32 random bytes as hex ([A-Za-z0-9_-] is allowed). */
static int tg_new_secret(struct tg *t, struct bh_err *err)
{
    unsigned char raw[32];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return host->err_set(t->h, err, BH_EIO, "no randomness for the webhook secret token");
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(t->secret_token + 2 * i, 3, "%02x", raw[i]);
    return 0;
}

/* Webhook mode: the route and its queue, before the thread tells Telegram about them. */
static int tg_start_webhook(struct tg *t, struct bh_err *err)
{
    if (tg_new_secret(t, err) < 0)
        return -1;
    t->queue = bht_workq_new((int)host->config_int(t->h, "workers"),
                             (int)host->config_int(t->h, "queueMax"), tg_job_run, tg_job_free, t);
    if (!t->queue)
        return host->err_set(t->h, err, BH_EIO, "cannot start the webhook workers");
    return host->http_route(t->h, host->config_string(t->h, "path"), tg_webhook_handle, t, err);
}

static int tg_start(void *state, struct bh_plugin_handle *h, void **inst, struct bh_err *err)
{
    struct tg *t = calloc(1, sizeof(*t));
    if (!t)
        return host->err_set(h, err, BH_EIO, "out of memory");
    t->h = h;
    pthread_mutex_init(&t->lock, NULL);
    if (tg_configure(t, err) < 0 ||
        host->secret_get(h, host->config_string(h, "secretName"),
                         host->config_string(h, "secretKey"), NULL, &t->token, err) < 0) {
        tg_stop(t);
        return -1;
    }
    if (strcspn(t->token, "/?#% \t\r\n") != strlen(t->token)) {
        tg_stop(t);
        return host->err_set(h, err, BH_EINVAL, "the bot token holds characters a token has not");
    }
    t->offset = bht_state_read(host, t->h, TG_OFFSET_FILE, 0);
    if (t->webhook && tg_start_webhook(t, err) < 0) {
        tg_stop(t);
        return -1;
    }
    if (pthread_create(&t->thread, NULL, tg_main, t) != 0) {
        tg_stop(t);
        return host->err_set(h, err, BH_EIO, "cannot start the telegram thread");
    }
    t->thread_started = 1;
    *inst = t;
    return 0;
}

static int tg_check(void *state, struct bh_plugin_handle *h, struct bh_err *err)
{
    struct tg *t = calloc(1, sizeof(*t)); /* large (the seen ids): not on the stack */
    if (!t)
        return host->err_set(h, err, BH_EIO, "out of memory");
    t->h = h;
    int rc = tg_configure(t, err);
    free(t);
    return rc;
}

static const struct bh_config_field tg_schema[] = {
    {"secretName", BH_CFG_STRING, 1, NULL, "secret store entry holding the bot token"},
    {"secretKey", BH_CFG_STRING, 0, "token", "key within that secret"},
    {"apiBaseUrl", BH_CFG_STRING, 0, "https://api.telegram.org", "the Bot API's base URL"},
    {"mode", BH_CFG_STRING, 0, "polling", "polling (getUpdates) or webhook (setWebhook)"},
    {"pollTimeoutSeconds", BH_CFG_INT, 0, "25", "long-poll timeout of getUpdates"},
    {"path", BH_CFG_STRING, 0, NULL, "webhook mode: route on the shared listener, /hooks/..."},
    {"webhookUrl", BH_CFG_STRING, 0, NULL,
     "webhook mode: the public URL Telegram posts to (reaching path)"},
    {"workers", BH_CFG_INT, 0, "4", "webhook mode: updates worked on in parallel"},
    {"queueMax", BH_CFG_INT, 0, "64", "webhook mode: updates waiting before \"busy\""},
};
static const struct bh_trigger_ops tg_ops = {
    .size = sizeof(struct bh_trigger_ops),
    .start = tg_start,
    .stop = tg_stop,
    .check = tg_check,
};

static const struct bh_plugin_info tg_info = {
    .size = sizeof(struct bh_plugin_info),
    .abi_major = BH_PLUGIN_ABI_MAJOR,
    .abi_minor = BH_PLUGIN_ABI_MINOR,
    .build_sig = BH_PLUGIN_BUILD_SIG,
    .kind = BH_PLUGIN_TRIGGER,
    .flags = BH_PLUGIN_THREADSAFE,
    .name = "telegram",
    .version = "0.1.0",
    .field_size = sizeof(struct bh_config_field),
    .serves_schema = tg_schema,
    .n_serves_schema = sizeof(tg_schema) / sizeof(tg_schema[0]),
    .ops = &tg_ops,
};

BH_PLUGIN_EXPORT const struct bh_plugin_info *bh_plugin_entry(const struct bh_host_api *h)
{
    if (!BH_HAS_OP(h, struct bh_host_api, status_set))
        return NULL;
    host = h;
    return &tg_info;
}
