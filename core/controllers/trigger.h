/* The trigger controller: one running adapter (a trigger plugin instance) per
 * BoilerhouseTrigger, restarted when the spec changes and, with backoff, when it fails; its
 * status (phase, detail, counters, the adapter's own keys). And the event pipeline the
 * adapters emit into: tenant resolution, guards, the claim (bh_claim_open, as REST), the
 * driver, the reply; per-tenant ordering with bounded queues. Routes on the shared listener
 * (/hooks/...) are served through bh_trigger_http. */
#ifndef BH_TRIGGER_H
#define BH_TRIGGER_H

#include <boilerhouse/plugin.h>
#include <cjson/cJSON.h>

#include "ctx.h"
#include "err.h"

#define BH_TRIGGER_KIND "BoilerhouseTrigger"
#define BH_TRIGGER_ACTIVE "Active"
#define BH_TRIGGER_ERROR "Error"

struct bh_triggers;
struct bh_http_response;

struct bh_triggers *bh_triggers_new(struct bh_ctx *ctx);
/* Stops every adapter (their routes go with them). */
void bh_triggers_free(struct bh_triggers *ts);

/* Apply-time checks of a BoilerhouseTrigger beyond its schema: a loaded plugin serves
 * spec.type, spec.config fits its schema, every guard type exists and its config fits,
 * spec.driver is known, and a route path is not another trigger's. BH_EINVAL/BH_ECONFLICT
 * naming the field. Other kinds pass. */
int bh_trigger_check(struct bh_ctx *ctx, const cJSON *obj, struct bh_err *err);

int bh_trigger_reconcile(struct bh_ctx *ctx, const char *name, long *requeue_ms,
                         struct bh_err *err);

/* A request on the shared listener. header(hctx, name) looks a request header up. Fills
 * resp: the route's answer, 404 without a route, 405 for a method other than POST. */
struct bh_trigger_http_req {
    const char *method;
    const char *path;
    const char *body;
    size_t body_len;
    const char *(*header)(void *hctx, const char *name);
    void *hctx;
};
void bh_trigger_http(struct bh_ctx *ctx, const struct bh_trigger_http_req *req,
                     struct bh_http_response *resp);

/* Runs one synthetic event through trigger `name`'s pipeline (guards, claim, driver) and
 * returns each stage's outcome: {verdict, status, tenant, stages: [...], reply}. */
int bh_trigger_test(struct bh_ctx *ctx, const char *name, const cJSON *event, cJSON **out,
                    struct bh_err *err);
/* The trigger's recent events, newest first (at most limit). */
int bh_trigger_events(struct bh_ctx *ctx, const char *name, int limit, cJSON **out,
                      struct bh_err *err);

#endif
