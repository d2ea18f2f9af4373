/* The openclaw driver: an OpenAI-style chat completion. It POSTs
 * {model, messages: [{role: user, content: <event text>}], stream: true, user: <tenant>} to
 * the instance (driverOptions.path, default /v1/chat/completions) with the tenant as the
 * session key (X-OpenClaw-Session-Key) and the gateway token (driverOptions.
 * gatewayTokenSecretRef, from the secret store) as a bearer token, and reads the answer as
 * server-sent events while it streams: each `data:` line is a chunk whose
 * choices[0].delta.content is appended, `data: [DONE]` ends it. An instance that does not
 * stream (a JSON body) is read as choices[0].message.content. The reply is {"text": ...}. */
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "ctx.h"
#include "json.h"
#include "mem.h"
#include "name.h"
#include "secret.h"
#include "trigger_int.h"

#define OPENCLAW_PATH "/v1/chat/completions"
#define OPENCLAW_MAX (1 << 20) /* answer text, and one SSE line */

/* The stream as it arrives: the line being read and the text so far. */
struct oc_stream {
    char *line;
    size_t line_len;
    char *text;
    size_t text_len;
    int done, events, bad;
    char *raw; /* the whole body while no SSE line came (a non-streaming answer) */
    size_t raw_len;
};

static void oc_append(char **buf, size_t *len, const char *p, size_t n)
{
    *buf = bh_xrealloc(*buf, *len + n + 1);
    memcpy(*buf + *len, p, n);
    *len += n;
    (*buf)[*len] = '\0';
}

/* choices[0].<key>.content of a chunk or an answer; NULL if absent. */
static const char *oc_content(const cJSON *o, const char *key)
{
    const cJSON *c0 = cJSON_GetArrayItem(bh_json_get(o, "choices"), 0);
    const cJSON *v = bh_json_get(bh_json_get(c0, key), "content");
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* One complete line of the stream. */
static void oc_line(struct oc_stream *st, const char *l, size_t n)
{
    if (n && l[n - 1] == '\r')
        n--;
    if (n < 5 || strncmp(l, "data:", 5) != 0 || st->done)
        return; /* comments, event:/id: fields, blank separators */
    l += 5, n -= 5;
    if (n && *l == ' ')
        l++, n--;
    st->events++;
    if (n == 6 && strncmp(l, "[DONE]", 6) == 0) {
        st->done = 1;
        return;
    }
    cJSON *chunk = cJSON_ParseWithLength(l, n);
    const char *piece = oc_content(chunk, "delta");
    st->bad |= !chunk || bh_json_get(chunk, "error") != NULL;
    if (piece)
        oc_append(&st->text, &st->text_len, piece, strlen(piece));
    cJSON_Delete(chunk);
}

static size_t oc_write(char *p, size_t size, size_t n, void *ud)
{
    struct oc_stream *st = ud;
    size_t len = size * n;
    if (st->events == 0 && st->raw_len + len <= OPENCLAW_MAX)
        oc_append(&st->raw, &st->raw_len, p, len);
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(p + i, '\n', len - i);
        size_t take = nl ? (size_t)(nl - (p + i)) : len - i;
        oc_append(&st->line, &st->line_len, p + i, take);
        i += take;
        if (nl) {
            oc_line(st, st->line, st->line_len);
            st->line_len = 0;
            i++;
        }
        if (st->line_len > OPENCLAW_MAX || st->text_len > OPENCLAW_MAX || st->bad)
            return 0; /* fails the transfer */
    }
    return len;
}

int trigger_openclaw_check_option(const cJSON *o, struct bh_err *err)
{
    const char *k = o->string;
    if (strcmp(k, "model") == 0) {
        if (!cJSON_IsString(o) || !o->valuestring[0] || strlen(o->valuestring) > 128)
            return bh_err_set(err, BH_EINVAL, "spec.driverOptions.model: 1..128 characters");
        return 0;
    }
    if (strcmp(k, "gatewayTokenSecretRef") != 0)
        return 1;
    const char *name = bh_json_str(o, "name"), *key = bh_json_str(o, "key");
    if (!cJSON_IsObject(o) || cJSON_GetArraySize(o) != 2 || !name || !key ||
        !bh_name_tenant_valid(name) || !bh_name_tenant_valid(key))
        return bh_err_set(err, BH_EINVAL,
                          "spec.driverOptions.gatewayTokenSecretRef: {name, key}, both "
                          "[A-Za-z0-9._-]");
    return 0;
}

/* The request's headers: JSON, SSE, the session key, the gateway token if configured. */
static int oc_headers(struct trigger *t, const char *tenant, struct curl_slist **hdrs,
                      struct bh_err *err)
{
    *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    *hdrs = curl_slist_append(*hdrs, "Accept: text/event-stream");
    bh_autofree char *session = bh_xasprintf("X-OpenClaw-Session-Key: %s", tenant);
    *hdrs = curl_slist_append(*hdrs, session);
    const cJSON *ref = bh_json_get(t->spec, "driverOptions.gatewayTokenSecretRef");
    if (!ref)
        return 0;
    char *token = NULL;
    if (bh_secrets_get(t->ts->ctx->secrets, NULL, bh_json_str(ref, "name"), bh_json_str(ref, "key"),
                       &token, err) < 0)
        return bh_err_wrap(err, "spec.driverOptions.gatewayTokenSecretRef");
    char *auth = bh_xasprintf("Authorization: Bearer %s", token);
    *hdrs = curl_slist_append(*hdrs, auth);
    bh_crypto_wipe(token, strlen(token));
    bh_crypto_wipe(auth, strlen(auth));
    free(token);
    free(auth);
    return 0;
}

static char *oc_body(const struct trigger *t, const cJSON *event)
{
    const char *model = bh_json_str(t->spec, "driverOptions.model");
    const char *text = bh_json_str(event, "text");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", model ? model : "openclaw");
    cJSON *msg = cJSON_CreateObject();
    cJSON_AddStringToObject(msg, "role", "user");
    cJSON_AddStringToObject(msg, "content", text ? text : "");
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "messages"), msg);
    cJSON_AddBoolToObject(o, "stream", 1);
    cJSON_AddStringToObject(o, "user", bh_json_str(event, "tenantId"));
    char *body = bh_json_print(o);
    cJSON_Delete(o);
    return body;
}

/* The answer text: the streamed chunks, or a non-streaming answer's message. */
static int oc_answer(struct oc_stream *st, char **out, size_t *out_len, struct bh_err *err)
{
    if (st->line_len)
        oc_line(st, st->line, st->line_len); /* a last line without a newline */
    cJSON *whole = st->events ? NULL : cJSON_ParseWithLength(st->raw, st->raw_len);
    const char *text = st->events ? (st->text ? st->text : "") : oc_content(whole, "message");
    if (!text || st->bad) {
        cJSON_Delete(whole);
        return bh_err_set(err, BH_EIO, "openclaw: %s",
                          st->bad ? "the stream carried an error or a chunk that is not JSON"
                                  : "the answer is neither a stream nor a chat completion");
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "text", text);
    *out = bh_json_print(o);
    *out_len = strlen(*out);
    cJSON_Delete(o);
    cJSON_Delete(whole);
    return 0;
}

int trigger_openclaw_deliver(const struct trigger_delivery *d, char **out, size_t *out_len,
                             struct bh_err *err)
{
    struct trigger *t = d->t;
    const cJSON *claim = d->claim;
    cJSON *event = cJSON_Parse(d->event_json);
    const char *tenant = bh_json_str(event, "tenantId");
    struct curl_slist *hdrs = NULL;
    struct oc_stream st = {0};
    int rc = -1;
    if (!tenant)
        bh_err_set(err, BH_EINVAL, "openclaw: the event has no tenant");
    else if (oc_headers(t, tenant, &hdrs, err) == 0) {
        bh_autofree char *body = oc_body(t, event);
        rc = trigger_driver_post(t->spec, claim, OPENCLAW_PATH, hdrs, body, oc_write, &st, err);
        if (rc < 0 && st.bad)
            bh_err_set(err, BH_EIO,
                       "openclaw: the stream carried an error or a chunk that is "
                       "not JSON");
        if (rc == 0)
            rc = oc_answer(&st, out, out_len, err);
    }
    if (hdrs)
        curl_slist_free_all(hdrs);
    cJSON_Delete(event);
    free(st.line);
    free(st.text);
    free(st.raw);
    return rc;
}
