/* Telegram Bot API updates as the telegram trigger reads them: pure functions of the JSON, so
 * they are unit-tested and fuzzed without a host or a network. */
#ifndef BH_TG_UPDATE_H
#define BH_TG_UPDATE_H

#include <cjson/cJSON.h>
#include <stddef.h>

#define TG_MESSAGE 1
#define TG_EDITED 2
#define TG_CALLBACK 3

#define TG_TEXT_MAX 4096 /* characters per sendMessage */

struct tg_update {
    long long update_id;
    int kind; /* TG_* */
    long long user_id, chat_id;
    char username[40];       /* lower-cased, "" if the sender has none */
    const char *text;        /* borrowed from the JSON: message text or callback data, "" if none */
    const char *callback_id; /* borrowed; NULL unless a callback_query */
};

/* Reads update u: 0 when it is a message, edited_message or callback_query from a user in a
 * chat; -1 for anything else (skipped, but *update_id still set when u has one). */
int tg_update_parse(const cJSON *u, struct tg_update *out, long long *update_id);

/* The event payload: the tenant candidates (username, userId, chatId, usernameOrId), the
 * text, the kind, and the update itself. Owned (free). */
char *tg_update_payload(const struct tg_update *t, const cJSON *u);

/* Bytes of the first piece of text no longer than max characters (UTF-8 code points), cut
 * at a line break when one is in the second half, never inside a character. */
size_t tg_split(const char *text, size_t len, size_t max);

#endif
