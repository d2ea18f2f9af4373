/* Slack Events API requests as the slack trigger reads them: pure functions of the JSON, so
 * they are fuzzed without a host or a network. */
#ifndef BH_SLACK_EVENT_H
#define BH_SLACK_EVENT_H

#include <cjson/cJSON.h>

#define SLACK_URL_VERIFICATION 1
#define SLACK_EVENT_CALLBACK 2

/* Strings borrowed from the JSON; NULL when absent. */
struct slack_event {
    int kind;              /* SLACK_* */
    const char *challenge; /* url_verification */
    const char *event_id, *team_id;
    /* The inner event (event_callback). */
    const char *type, *subtype, *user, *bot_id, *channel, *text, *ts, *thread_ts;
};

/* Reads an Events API request body: 0 for a url_verification with its challenge, or an
 * event_callback with an event_id and an inner event with a type; -1 for anything else. */
int slack_event_parse(const cJSON *body, struct slack_event *out);

/* 1 if the event is a message from a user the bot should answer: it names a user, a channel
 * and a ts, carries no bot_id and no subtype (edits, joins, bot messages), and is not from
 * bot_user (the bot's own user ID, may be NULL). */
int slack_event_from_user(const struct slack_event *e, const char *bot_user);

/* The event payload: the tenant candidates (userId, channelId, teamId, teamUser =
 * "<team>-<user>"), the text, the type and the event itself. Owned (free). */
char *slack_event_payload(const struct slack_event *e, const cJSON *body);

#endif
