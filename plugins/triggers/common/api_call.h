/* Chat platforms: a call to a JSON web API that answers {"ok": true, ...} (Telegram's Bot
 * API, Slack's Web API) over libcurl, and the agent's answer as chat text. Code shared by the
 * trigger plugins, compiled into each that pulls it in through its deps.cmake. */
#ifndef BH_TRIGGER_COMMON_API_CALL_H
#define BH_TRIGGER_COMMON_API_CALL_H

#include <boilerhouse/plugin.h>
#include <cjson/cJSON.h>

#define BHT_API_ANSWER_MAX (4 << 20)

/* POSTs body as JSON to url (with "Authorization: <auth>" unless auth is NULL) and waits up
 * to timeout_s; stop (may be NULL) aborts the call as soon as *stop is set. 0 with *answer
 * (owned, may be NULL) the parsed answer when its "ok" is true; else -1 with err naming what
 * (curl's error, or the answer's "description" or "error"). The URL and auth may hold a
 * token: neither is ever put in err. */
int bht_api_call(const struct bh_host_api *host, struct bh_plugin_handle *h, const char *url,
                 const char *auth, const char *what, const cJSON *body, long timeout_s,
                 const volatile int *stop, cJSON **answer, struct bh_err *err);

/* 1 if u can be an API's base URL: http(s), no trailing '/', query, fragment or spaces. */
int bht_base_url_ok(const char *u);

/* The agent's answer as chat text: its "reply" or "text" field if it is such JSON, else the
 * body as is. *parsed (owned, cJSON_Delete) holds the JSON the text may be borrowed from. */
const char *bht_reply_text(const struct bh_event_reply *r, cJSON **parsed);

#endif
