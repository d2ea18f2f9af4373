/* Telegram Bot API updates from the network (getUpdates answers, webhook POSTs): the input
 * is parsed as JSON and read as an update; the payload is built from what was read and the
 * rest of the input is split as an answer would be. Nothing may crash, a split must always
 * advance and never cut a UTF-8 character. */
#include "fuzz.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/triggers/telegram/tg_update.h"

static void fuzz_split(const char *text, size_t len)
{
    for (size_t at = 0; at < len;) {
        size_t n = tg_split(text + at, len - at, 16);
        if (n == 0 || n > len - at)
            abort();
        at += n;
        if (at < len && ((unsigned char)text[at] & 0xc0) == 0x80 &&
            ((unsigned char)text[at - 1] & 0x80))
            abort(); /* cut inside a multi-byte character */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON *u = cJSON_ParseWithLength((const char *)data, size);
    struct tg_update up;
    long long id = -1;
    if (u && tg_update_parse(u, &up, &id) == 0) {
        if (up.update_id != id || !up.text)
            abort();
        char *payload = tg_update_payload(&up, u);
        cJSON *back = payload ? cJSON_Parse(payload) : NULL;
        if (!back)
            abort();
        cJSON_Delete(back);
        free(payload);
        fuzz_split(up.text, strlen(up.text));
    }
    cJSON_Delete(u);
    fuzz_split((const char *)data, strnlen((const char *)data, size));
    return 0;
}
