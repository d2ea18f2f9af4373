/* Telegram update parsing and reply splitting (tg_update.h). */
#include "tg_update.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

/* A JSON number that is a whole number in range (Telegram IDs reach 52 bits). */
static int tg_int(const cJSON *o, const char *key, long long *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    /* The range first: converting a double outside long long's range is undefined. */
    if (!cJSON_IsNumber(v) ||
        !(v->valuedouble <= 9007199254740992.0 && v->valuedouble >= -9007199254740992.0) ||
        v->valuedouble != (double)(long long)v->valuedouble)
        return -1;
    *out = (long long)v->valuedouble;
    return 0;
}

static const char *tg_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Usernames are [A-Za-z0-9_]{5,32} and case-insensitive: kept lower-cased, or "" if odd. */
static void tg_username(const cJSON *from, char out[40])
{
    const char *u = tg_str(from, "username");
    size_t n = u ? strlen(u) : 0;
    out[0] = '\0';
    if (n == 0 || n > 32 ||
        strspn(u, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                  "0123456789_") != n)
        return;
    for (size_t i = 0; i <= n; i++)
        out[i] = (char)tolower((unsigned char)u[i]);
}

int tg_update_parse(const cJSON *u, struct tg_update *out, long long *update_id)
{
    memset(out, 0, sizeof(*out));
    if (tg_int(u, "update_id", update_id) < 0)
        return -1;
    out->update_id = *update_id;
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(u, "message");
    out->kind = TG_MESSAGE;
    if (!msg && (msg = cJSON_GetObjectItemCaseSensitive(u, "edited_message")))
        out->kind = TG_EDITED;
    const cJSON *cb = msg ? NULL : cJSON_GetObjectItemCaseSensitive(u, "callback_query");
    if (cb) {
        out->kind = TG_CALLBACK;
        out->callback_id = tg_str(cb, "id");
        out->text = tg_str(cb, "data");
        msg = cJSON_GetObjectItemCaseSensitive(cb, "message");
    } else {
        out->text = tg_str(msg, "text");
    }
    const cJSON *from = cJSON_GetObjectItemCaseSensitive(cb ? cb : msg, "from");
    const cJSON *chat = cJSON_GetObjectItemCaseSensitive(msg, "chat");
    if (!cJSON_IsObject(msg) || tg_int(from, "id", &out->user_id) < 0 ||
        tg_int(chat, "id", &out->chat_id) < 0 || (cb && !out->callback_id))
        return -1;
    tg_username(from, out->username);
    out->text = out->text ? out->text : "";
    return 0;
}

char *tg_update_payload(const struct tg_update *t, const cJSON *u)
{
    static const char *const kinds[] = {"", "message", "edited_message", "callback_query"};
    char id[24];
    cJSON *o = cJSON_CreateObject();
    snprintf(id, sizeof(id), "%lld", t->user_id);
    if (t->username[0])
        cJSON_AddStringToObject(o, "username", t->username);
    cJSON_AddStringToObject(o, "userId", id);
    cJSON_AddStringToObject(o, "usernameOrId", t->username[0] ? t->username : id);
    snprintf(id, sizeof(id), "%lld", t->chat_id);
    cJSON_AddStringToObject(o, "chatId", id);
    cJSON_AddStringToObject(o, "kind", kinds[t->kind]);
    cJSON_AddStringToObject(o, "text", t->text);
    cJSON_AddItemToObject(o, "update", cJSON_Duplicate(u, 1));
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

size_t tg_split(const char *text, size_t len, size_t max)
{
    size_t i = 0, chars = 0, line_break = 0;
    while (i < len && chars < max) {
        if (text[i] == '\n' && chars >= max / 2)
            line_break = i + 1;
        i++;
        while (i < len && ((unsigned char)text[i] & 0xc0) == 0x80)
            i++;
        chars++;
    }
    return i < len && line_break ? line_break : i;
}
