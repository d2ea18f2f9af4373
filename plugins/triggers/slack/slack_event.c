/* Slack Events API parsing (slack_event.h). */
#include "slack_event.h"

#include <stdio.h>
#include <string.h>

static const char *slack_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int slack_event_parse(const cJSON *body, struct slack_event *out)
{
    memset(out, 0, sizeof(*out));
    const char *type = slack_str(body, "type");
    if (!type)
        return -1;
    if (strcmp(type, "url_verification") == 0) {
        out->kind = SLACK_URL_VERIFICATION;
        out->challenge = slack_str(body, "challenge");
        return out->challenge ? 0 : -1;
    }
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(body, "event");
    if (strcmp(type, "event_callback") != 0 || !cJSON_IsObject(ev))
        return -1;
    out->kind = SLACK_EVENT_CALLBACK;
    out->event_id = slack_str(body, "event_id");
    out->team_id = slack_str(body, "team_id");
    out->type = slack_str(ev, "type");
    out->subtype = slack_str(ev, "subtype");
    out->user = slack_str(ev, "user");
    out->bot_id = slack_str(ev, "bot_id");
    out->channel = slack_str(ev, "channel");
    out->text = slack_str(ev, "text");
    out->ts = slack_str(ev, "ts");
    out->thread_ts = slack_str(ev, "thread_ts");
    return out->event_id && out->event_id[0] && out->type ? 0 : -1;
}

int slack_event_from_user(const struct slack_event *e, const char *bot_user)
{
    return e->kind == SLACK_EVENT_CALLBACK && e->user && e->user[0] && e->channel &&
           e->channel[0] && e->ts && e->ts[0] && !e->bot_id && !e->subtype &&
           !(bot_user && strcmp(e->user, bot_user) == 0);
}

char *slack_event_payload(const struct slack_event *e, const cJSON *body)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "userId", e->user ? e->user : "");
    cJSON_AddStringToObject(o, "channelId", e->channel ? e->channel : "");
    if (e->team_id) {
        cJSON_AddStringToObject(o, "teamId", e->team_id);
        char tu[160];
        snprintf(tu, sizeof(tu), "%.63s-%.63s", e->team_id, e->user ? e->user : "");
        cJSON_AddStringToObject(o, "teamUser", tu);
    }
    cJSON_AddStringToObject(o, "type", e->type ? e->type : "");
    cJSON_AddStringToObject(o, "text", e->text ? e->text : "");
    cJSON_AddItemToObject(o, "event",
                          cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(body, "event"), 1));
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}
