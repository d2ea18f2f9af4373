/* Slack Events API request bodies from the network: parsed as JSON and read as an envelope;
 * the filter and the payload are run on whatever was read. Nothing may crash, a parsed
 * event_callback always has an event id and type, and the payload is JSON. */
#include "fuzz.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

#include "../../plugins/triggers/slack/slack_event.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON *body = cJSON_ParseWithLength((const char *)data, size);
    struct slack_event e;
    if (slack_event_parse(body, &e) == 0) {
        if (e.kind == SLACK_URL_VERIFICATION && !e.challenge)
            abort();
        if (e.kind == SLACK_EVENT_CALLBACK && (!e.event_id || !e.type))
            abort();
        if (slack_event_from_user(&e, "UBOT") && (!e.user || !e.channel || !e.ts))
            abort();
        char *payload = slack_event_payload(&e, body);
        cJSON *back = payload ? cJSON_Parse(payload) : NULL;
        if (!back)
            abort();
        cJSON_Delete(back);
        free(payload);
    }
    cJSON_Delete(body);
    return 0;
}
