/* bh-trigger-telegram: a Telegram bot in long-polling mode. A thread per trigger calls getMe
 * (the token works), deleteWebhook (polling and a webhook exclude each other), then
 * getUpdates in a loop from the offset persisted in the trigger's state directory. Each
 * message, edited_message or callback_query becomes an event whose payload carries the tenant
 * candidates (username, userId, chatId, usernameOrId; spec.tenant.from picks one); the chat
 * sees "typing" while the agent works, then the answer (or the refusal) as sendMessage, split
 * at 4096 characters. The offset is persisted after each update is answered, before the next
 * getUpdates confirms it to Telegram: a stop or restart repeats nothing and loses nothing
 * (only a crash in the middle of an update may repeat that one). */
#include <boilerhouse/plugin.h>
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "state_file.h"
#include "tg_update.h"

#define TG_ANSWER_MAX (4 << 20)
#define TG_RETRY_S 2
#define TG_FAILS_MAX 5          /* consecutive failed polls before the adapter reports failure */
#define TG_OFFSET_FILE "offset" /* in the state dir: the next update to handle */

static const struct bh_host_api *host;

struct tg {
    struct bh_plugin_handle *h;
    char *token; /* host memory (host->free) */
    const char *base;
    long long poll_s;
    long long offset;
    pthread_t thread;
    int thread_started;
    volatile int stopping;
};

struct tg_buf {
    char *data;
    size_t len;
};

static size_t tg_write(char *ptr, size_t size, size_t n, void *ud)
{
    struct tg_buf *b = ud;
    size_t add = size * n;
    if (b->len + add > TG_ANSWER_MAX)
        return 0;
    char *grown = realloc(b->data, b->len + add + 1);
    if (!grown)
        return 0;
    b->data = grown;
    memcpy(b->data + b->len, ptr, add);
    b->len += add;
    b->data[b->len] = '\0';
    return add;
}

/* Aborts a long poll as soon as stop() asks. */
static int tg_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    const struct tg *t = ud;
    return t->stopping;
}

/* Calls Bot API `method` with a JSON body; *result owned (the answer's "result"). The URL
 * holds the token: it is never logged. */
static int tg_call(struct tg *t, const char *method, cJSON *body, long timeout_s, cJSON **result,
                   struct bh_err *err)
{
    char *url = malloc(strlen(t->base) + strlen(t->token) + strlen(method) + 8);
    char *json = cJSON_PrintUnformatted(body);
    CURL *c = curl_easy_init();
    struct tg_buf b = {0};
    CURLcode rc = CURLE_OUT_OF_MEMORY;
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    if (url && json && c) {
        sprintf(url, "%s/bot%s/%s", t->base, t->token, method);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout_s);
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, tg_progress);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, t);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, tg_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
        rc = curl_easy_perform(c);
    }
    if (url)
        memset(url, 0, strlen(url));
    free(url);
    free(json);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    cJSON *answer = rc == CURLE_OK ? cJSON_ParseWithLength(b.data, b.len) : NULL;
    free(b.data);
    const cJSON *ok = cJSON_GetObjectItemCaseSensitive(answer, "ok");
    if (!cJSON_IsTrue(ok)) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(answer, "description");
        host->err_set(t->h, err, BH_EIO, "%s: %s", method,
                      rc != CURLE_OK      ? curl_easy_strerror(rc)
                      : cJSON_IsString(d) ? d->valuestring
                                          : "not an ok answer");
        cJSON_Delete(answer);
        return -1;
    }
    if (result)
        *result = cJSON_DetachItemFromObjectCaseSensitive(answer, "result");
    cJSON_Delete(answer);
    return 0;
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

static void tg_answer_callback(struct tg *t, const char *id)
{
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "callback_query_id", id);
    struct bh_err err = {0};
    if (tg_call(t, "answerCallbackQuery", b, 10, NULL, &err) < 0)
        host->log(t->h, BH_LOG_DEBUG, "answerCallbackQuery: %s", err.msg);
    cJSON_Delete(b);
}

/* The agent's answer as chat text: its "reply" or "text" field if it is such JSON, else the
 * body as is. */
static const char *tg_reply_text(const struct bh_event_reply *r, cJSON **parsed)
{
    *parsed = r->body ? cJSON_ParseWithLength(r->body, r->body_len) : NULL;
    const char *keys[] = {"reply", "text"};
    for (int i = 0; i < 2; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(*parsed, keys[i]);
        if (cJSON_IsString(v))
            return v->valuestring;
    }
    return r->body ? r->body : "";
}

/* Update u, read into up (its strings borrowed from u). */
static void tg_handle(struct tg *t, const cJSON *u, const struct tg_update *up)
{
    long long id = up->update_id;
    if (up->callback_id)
        tg_answer_callback(t, up->callback_id);
    tg_typing(t, up->chat_id);
    char *payload = tg_update_payload(up, u);
    char source[64];
    snprintf(source, sizeof(source), "telegram:%s%s", up->username[0] ? "@" : "",
             up->username[0] ? up->username : "user");
    const struct bh_event ev = {
        .size = sizeof(ev), .text = up->text, .source = source, .raw_json = payload};
    struct bh_event_reply reply = {.size = sizeof(reply)};
    struct bh_err err = {0};
    cJSON *parsed = NULL;
    if (host->emit(t->h, &ev, &reply, &err) < 0)
        host->log(t->h, BH_LOG_ERROR, "update %lld: %s", id, err.msg);
    else
        tg_send(t, up->chat_id,
                reply.verdict == BH_VERDICT_ALLOW ? tg_reply_text(&reply, &parsed) : reply.reason);
    cJSON_Delete(parsed);
    host->reply_free(t->h, &reply);
    free(payload);
}

/* ---- polling ---- */

/* One getUpdates round: handles each update, persisting the offset after each. */
static int tg_poll_once(struct tg *t, struct bh_err *err)
{
    cJSON *b = cJSON_CreateObject(), *updates = NULL;
    cJSON_AddNumberToObject(b, "offset", (double)t->offset);
    cJSON_AddNumberToObject(b, "timeout", (double)t->poll_s);
    cJSON *allowed = cJSON_AddArrayToObject(b, "allowed_updates");
    cJSON_AddItemToArray(allowed, cJSON_CreateString("message"));
    cJSON_AddItemToArray(allowed, cJSON_CreateString("edited_message"));
    cJSON_AddItemToArray(allowed, cJSON_CreateString("callback_query"));
    int rc = tg_call(t, "getUpdates", b, (long)t->poll_s + 10, &updates, err);
    cJSON_Delete(b);
    const cJSON *u;
    cJSON_ArrayForEach(u, updates)
    {
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

static void *tg_main(void *arg)
{
    struct tg *t = arg;
    struct bh_err err = {0};
    cJSON *me = NULL, *none = cJSON_CreateObject();
    int rc = tg_call(t, "getMe", none, 30, &me, &err) < 0 ||
             tg_call(t, "deleteWebhook", none, 30, NULL, &err) < 0;
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
    host->status_set(t->h, "mode", "polling");
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
    return NULL;
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
    host->free(t->h, t->token);
    free(t);
}

static int tg_base_ok(const char *u)
{
    if (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0)
        return 0;
    return strcspn(u, " \t\r\n?#") == strlen(u) && strlen(u) < 512 && u[strlen(u) - 1] != '/';
}

static int tg_configure(struct tg *t, struct bh_err *err)
{
    t->base = host->config_string(t->h, "apiBaseUrl");
    t->poll_s = host->config_int(t->h, "pollTimeoutSeconds");
    if (!tg_base_ok(t->base))
        return host->err_set(t->h, err, BH_EINVAL,
                             "spec.config.apiBaseUrl: an http(s) URL without a trailing '/', "
                             "query or spaces");
    if (t->poll_s < 0 || t->poll_s > 50)
        return host->err_set(t->h, err, BH_EINVAL, "spec.config.pollTimeoutSeconds: 0..50");
    if (strcmp(host->config_string(t->h, "mode"), "polling") != 0)
        return host->err_set(t->h, err, BH_EINVAL,
                             "spec.config.mode: \"%.32s\" (this build serves polling)",
                             host->config_string(t->h, "mode"));
    return 0;
}

static int tg_start(void *state, struct bh_plugin_handle *h, void **inst, struct bh_err *err)
{
    struct tg *t = calloc(1, sizeof(*t));
    if (!t)
        return host->err_set(h, err, BH_EIO, "out of memory");
    t->h = h;
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
    if (pthread_create(&t->thread, NULL, tg_main, t) != 0) {
        tg_stop(t);
        return host->err_set(h, err, BH_EIO, "cannot start the polling thread");
    }
    t->thread_started = 1;
    *inst = t;
    return 0;
}

static int tg_check(void *state, struct bh_plugin_handle *h, struct bh_err *err)
{
    struct tg t = {.h = h};
    return tg_configure(&t, err);
}

static const struct bh_config_field tg_schema[] = {
    {"secretName", BH_CFG_STRING, 1, NULL, "secret store entry holding the bot token"},
    {"secretKey", BH_CFG_STRING, 0, "token", "key within that secret"},
    {"apiBaseUrl", BH_CFG_STRING, 0, "https://api.telegram.org", "the Bot API's base URL"},
    {"mode", BH_CFG_STRING, 0, "polling", "polling (getUpdates)"},
    {"pollTimeoutSeconds", BH_CFG_INT, 0, "25", "long-poll timeout of getUpdates"},
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
