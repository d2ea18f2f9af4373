/* Shared by the trigger controller (trigger.c) and its event pipeline (trigger_event.c,
 * trigger_driver.c); not part of the layer's interface. */
#ifndef BH_TRIGGER_INT_H
#define BH_TRIGGER_INT_H

#include <pthread.h>

#include "guard.h"
#include "trigger.h"

#define TRIGGER_RING 64 /* recent events kept per trigger */

struct trigger_event_rec {
    char at[32];
    char tenant[64];
    const char *verdict; /* static */
    long long ms;
    char error[256];
};

/* One trigger object as the controller runs it. Fields below `lock` are under ts->lock;
 * the others belong to the trigger's reconcile (one at a time per key) and, while running,
 * are read-only for the pipeline. */
struct trigger {
    struct bh_triggers *ts;
    char *name;
    long long generation; /* of the running (or last tried) spec */
    cJSON *spec;          /* owned copy of the running spec */
    struct bh_plugin *plugin;
    struct bh_plugin_handle *handle;
    void *inst;
    int running;
    struct bh_guard **guards;
    size_t n_guards;
    struct trigger_ws *ws; /* the websocket driver's sessions (trigger_ws.c), under ts->lock */
    /* Failure and backoff. */
    char *failure; /* why the adapter is not running; owned */
    int failures;  /* consecutive */
    long long restart_at;
    /* --- lock --- */
    char *failed_reason; /* the adapter reported failure (host->failed); owned */
    long long events, denied, failed;
    char last_event_at[32];
    cJSON *adapter_status; /* status.adapter, owned */
    struct trigger_event_rec ring[TRIGGER_RING];
    size_t ring_n, ring_next;
    struct trigger *next;
};

/* Events of one tenant to one workload, in arrival order (a ticket lock). */
struct trigger_lane {
    char *key;
    unsigned long next_ticket, serving;
    int waiting; /* holders of a ticket, the one being served included */
    pthread_cond_t cond;
    struct trigger_lane *next;
};

struct trigger_route {
    char *path;
    struct trigger *t;
    bh_http_handler_fn fn;
    void *arg;
    struct trigger_route *next;
};

struct bh_triggers {
    struct bh_ctx *ctx;
    pthread_mutex_t lock;
    pthread_cond_t idle; /* a route handler finished */
    struct trigger *list;
    struct trigger_route *routes;
    int handlers_running;
    struct trigger_lane *lanes;
};

/* The pipeline (trigger_event.c). stages (may be NULL) collects each stage's outcome. */
int trigger_emit(struct trigger *t, const struct bh_event *ev, struct bh_event_reply *reply,
                 cJSON *stages, struct bh_err *err);
/* One event on its way into the claimed instance. */
struct trigger_delivery {
    struct trigger *t;
    const char *tenant;
    const char *text;       /* the event's text (the websocket driver's prompt) */
    const char *event_json; /* the whole event (the http driver's body) */
    const cJSON *claim;
};
/* Delivers through spec.driver (trigger_driver.c). *out owned (the instance's answer). */
int trigger_driver_deliver(const struct trigger_delivery *d, char **out, size_t *out_len,
                           struct bh_err *err);
/* Checks spec.driver and spec.driverOptions. */
int trigger_driver_check(const cJSON *spec, struct bh_err *err);
/* Whether p may be appended to an instance URL: an absolute path, no query or escapes. */
int trigger_driver_path_ok(const char *p);
/* The URL (and unix socket path, *sock NULL if none) of path on the claim's endpoint. */
int trigger_driver_target(const cJSON *spec, const cJSON *claim, const char *path, char **url,
                          char **sock, struct bh_err *err);
/* POSTs body with hdrs to the claim's endpoint (driverOptions.path, else default_path; over
 * its unix socket if it has no address) within driverOptions.timeoutSeconds, the answer to
 * write(…, ud); a write that returns short fails the call. Non-2xx is an error. */
struct curl_slist;
int trigger_driver_post(const cJSON *spec, const cJSON *claim, const char *default_path,
                        struct curl_slist *hdrs, const char *body,
                        size_t (*write)(char *, size_t, size_t, void *), void *ud,
                        struct bh_err *err);
/* The openclaw driver (trigger_openclaw.c): OpenAI-style chat completions with SSE streaming,
 * the tenant as the session key; *out is {"text": <the streamed answer>}. */
int trigger_openclaw_deliver(const struct trigger_delivery *d, char **out, size_t *out_len,
                             struct bh_err *err);
/* One driverOptions key for openclaw: 0 valid, -1 invalid (err set), 1 not openclaw's own
 * (the common keys check it). */
int trigger_openclaw_check_option(const cJSON *o, struct bh_err *err);
/* The websocket driver (trigger_ws.c): the claude-code / pi protocol over the tenant's
 * session. *out is {"text": ...}, owned. */
int trigger_ws_deliver(const struct trigger_delivery *d, char **out, size_t *out_len,
                       struct bh_err *err);
/* Closes t's sessions (its adapter stopped); one in use is freed by its delivery. */
void trigger_ws_close_all(struct trigger *t);
/* "allow", "deny", "busy" or "error" (trigger_event.c). */
const char *trigger_verdict_name(uint32_t verdict);
/* Queues t's reconcile, which writes its status (trigger.c). */
void trigger_enqueue(struct trigger *t);

#endif
