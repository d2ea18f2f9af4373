/* The event pipeline: resolve the tenant, run the guards in order (fail closed), take the
 * tenant's place in line, claim through bh_claim_open (the call REST makes), deliver through
 * the driver, and account the outcome. Refusals carry a reason for the sender. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "claim.h"
#include "audit.h"
#include "clock.h"
#include "events.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "name.h"
#include "trigger_int.h"

/* Events waiting (or being delivered) per tenant and workload before the next is refused
 * as busy: enough for a burst, small enough that a stuck agent answers 429 quickly. */
#define TRIGGER_LANE_MAX 16

struct emit_run {
    struct trigger *t;
    const struct bh_event *ev;
    struct bh_event_reply *reply;
    cJSON *stages; /* may be NULL */
    long long t0;
    const char *workload; /* spec.workloadRef, borrowed from t->spec */
    cJSON *payload;       /* ev->raw_json parsed (NULL if absent or not JSON); owned */
    int payload_parsed;
    char tenant[64];
};

/* The payload, parsed at most once per event: tenant.from and the delivered event read it. */
static const cJSON *emit_payload(struct emit_run *r)
{
    if (!r->payload_parsed) {
        r->payload = r->ev->raw_json ? cJSON_Parse(r->ev->raw_json) : NULL;
        r->payload_parsed = 1;
    }
    return r->payload;
}

static void emit_stage(struct emit_run *r, const char *stage, const char *outcome,
                       const char *detail, long long since)
{
    if (!r->stages)
        return;
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "stage", stage);
    cJSON_AddStringToObject(s, "outcome", outcome);
    if (detail)
        cJSON_AddStringToObject(s, "detail", detail);
    cJSON_AddNumberToObject(s, "ms", (double)(bh_clock_ms() - since));
    cJSON_AddItemToArray(r->stages, s);
}

/* Ends the event with a verdict other than ALLOW; returns -1 so a stage can stop the walk. */
static int emit_refuse(struct emit_run *r, uint32_t verdict, uint32_t status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int emit_refuse(struct emit_run *r, uint32_t verdict, uint32_t status, const char *fmt, ...)
{
    r->reply->verdict = verdict;
    r->reply->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reply->reason, sizeof(r->reply->reason), fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- tenant ---- */

/* The value at tenant.from in the payload as text: a string, or a whole number (user IDs). */
static char *emit_from_value(const cJSON *payload, const char *path)
{
    const cJSON *v = bh_json_get(payload, path);
    if (cJSON_IsString(v))
        return bh_xstrdup(v->valuestring);
    /* The range first: converting a double outside long long's range is undefined. */
    if (cJSON_IsNumber(v) && v->valuedouble <= 9007199254740992.0 &&
        v->valuedouble >= -9007199254740992.0 &&
        v->valuedouble == (double)(long long)v->valuedouble)
        return bh_xasprintf("%lld", (long long)v->valuedouble);
    return NULL;
}

static int emit_tenant(struct emit_run *r)
{
    long long t0 = bh_clock_ms();
    const cJSON *tenant = bh_json_get(r->t->spec, "tenant");
    const char *fixed = bh_json_str(tenant, "static");
    const char *from = bh_json_str(tenant, "from");
    const char *prefix = bh_json_str(tenant, "prefix");
    bh_autofree char *value = fixed  ? bh_xstrdup(fixed)
                              : from ? emit_from_value(emit_payload(r), from)
                                     : NULL;
    bh_autofree char *id = value ? bh_xasprintf("%s%s", prefix ? prefix : "", value) : NULL;
    if (!id || !bh_name_tenant_valid(id)) {
        emit_stage(r, "tenant", "refused", "no valid tenant ID", t0);
        return emit_refuse(r, BH_VERDICT_DENY, 422,
                           "tenant: %s%.64s gave no valid tenant ID ([A-Za-z0-9._-]{1,63})",
                           from ? "spec.tenant.from " : "spec.tenant.static", from ? from : "");
    }
    snprintf(r->tenant, sizeof(r->tenant), "%s", id);
    snprintf(r->reply->tenant, sizeof(r->reply->tenant), "%s", id);
    emit_stage(r, "tenant", "ok", id, t0);
    return 0;
}

/* ---- guards ---- */

static int emit_guards(struct emit_run *r)
{
    const struct bh_event gev = {.size = sizeof(gev),
                                 .text = r->ev->text,
                                 .source = r->ev->source,
                                 .raw_json = r->ev->raw_json,
                                 .tenant = r->tenant,
                                 .trigger = r->t->name};
    for (size_t i = 0; i < r->t->n_guards; i++) {
        long long t0 = bh_clock_ms();
        struct bh_guard *g = r->t->guards[i];
        struct bh_guard_verdict v = {.size = sizeof(v)};
        struct bh_err err = {0};
        bh_autofree char *stage = bh_xasprintf("guard[%zu] %s", i, bh_guard_type_name(g));
        double s0 = bh_metrics_clock();
        int rc = bh_guard_evaluate(g, &gev, BH_GUARD_DEADLINE_MS, &v, &err);
        bh_metrics_policy_run(r->t->ts->ctx->metrics, BH_METRICS_GUARD,
                              rc < 0                       ? BH_METRICS_ERROR
                              : v.verdict == BH_GUARD_DENY ? BH_METRICS_DENY
                                                           : BH_METRICS_ALLOW,
                              bh_metrics_clock() - s0);
        if (rc < 0) {
            emit_stage(r, stage, "error", err.msg, t0);
            return emit_refuse(r, BH_VERDICT_ERROR, 403, "refused: %s", err.msg);
        }
        if (v.verdict == BH_GUARD_DENY) {
            emit_stage(r, stage, "deny", v.reason, t0);
            return emit_refuse(r, BH_VERDICT_DENY, 403, "%s",
                               v.reason[0] ? v.reason : "refused by a guard");
        }
        emit_stage(r, stage, "allow", NULL, t0);
    }
    return 0;
}

/* ---- per-tenant ordering ---- */

static struct trigger_lane *lane_find(struct bh_triggers *ts, const char *key)
{
    for (struct trigger_lane *l = ts->lanes; l; l = l->next)
        if (strcmp(l->key, key) == 0)
            return l;
    struct trigger_lane *l = bh_xcalloc(1, sizeof(*l));
    l->key = bh_xstrdup(key);
    pthread_cond_init(&l->cond, NULL);
    l->next = ts->lanes;
    ts->lanes = l;
    return l;
}

/* Waits for key's turn; NULL when TRIGGER_LANE_MAX events are already in line. */
static struct trigger_lane *lane_enter(struct bh_triggers *ts, const char *key)
{
    pthread_mutex_lock(&ts->lock);
    struct trigger_lane *l = lane_find(ts, key);
    if (l->waiting >= TRIGGER_LANE_MAX) {
        pthread_mutex_unlock(&ts->lock);
        return NULL;
    }
    unsigned long mine = l->next_ticket++;
    l->waiting++;
    while (l->serving != mine)
        pthread_cond_wait(&l->cond, &ts->lock);
    pthread_mutex_unlock(&ts->lock);
    return l;
}

static void lane_leave(struct bh_triggers *ts, struct trigger_lane *l)
{
    pthread_mutex_lock(&ts->lock);
    l->serving++;
    if (--l->waiting > 0) {
        pthread_cond_broadcast(&l->cond);
    } else {
        for (struct trigger_lane **p = &ts->lanes; *p; p = &(*p)->next)
            if (*p == l) {
                *p = l->next;
                break;
            }
        pthread_cond_destroy(&l->cond);
        free(l->key);
        free(l);
    }
    pthread_mutex_unlock(&ts->lock);
}

/* ---- claim and delivery ---- */

static char *emit_event_json(struct emit_run *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "trigger", r->t->name);
    cJSON_AddStringToObject(o, "tenantId", r->tenant);
    cJSON_AddStringToObject(o, "text", r->ev->text ? r->ev->text : "");
    cJSON_AddStringToObject(o, "source", r->ev->source ? r->ev->source : "");
    const cJSON *payload = emit_payload(r);
    if (payload)
        cJSON_AddItemReferenceToObject(o, "payload", (cJSON *)payload);
    else
        cJSON_AddNullToObject(o, "payload");
    char *text = bh_json_print(o);
    cJSON_Delete(o);
    return text;
}

static int emit_claim(struct emit_run *r, struct bh_claim_answer *ans)
{
    long long t0 = bh_clock_ms();
    const struct bh_claim_req req = {.tenant = r->tenant, .workload = r->workload};
    struct bh_err err = {0};
    if (bh_claim_open(r->t->ts->ctx, &req, ans, &err) < 0) {
        emit_stage(r, "claim", "error", err.msg, t0);
        return emit_refuse(r, BH_VERDICT_ERROR, 503, "claim: %s", err.msg);
    }
    const char *phase = bh_json_str(ans->claim, "status.phase");
    if (ans->timed_out || !phase || strcmp(phase, BH_CLAIM_ACTIVE) != 0) {
        const char *detail = bh_json_str(ans->claim, "status.detail");
        emit_stage(r, "claim", "error", detail, t0);
        return emit_refuse(r, BH_VERDICT_ERROR, 503, "claim: %s%s%s",
                           ans->timed_out ? "timed out"
                           : phase        ? phase
                                          : "Pending",
                           detail ? ": " : "", detail ? detail : "");
    }
    emit_stage(r, "claim", ans->existing ? "existing" : "claimed",
               bh_json_str(ans->claim, "status.instanceId"), t0);
    return 0;
}

/* The claim a trigger made, in the audit log with the trigger as the actor. */
static void emit_audit(struct emit_run *r, int failed)
{
    struct bh_audit *audit = r->t->ts->ctx->audit;
    if (!audit)
        return;
    bh_autofree char *actor = bh_xasprintf("trigger:%s", r->t->name);
    struct bh_audit_rec rec = {.actor = actor,
                               .action = "claim",
                               .tenant = r->tenant,
                               .target = r->workload,
                               .outcome = failed ? "error" : "ok",
                               .error = failed ? r->reply->reason : NULL};
    struct bh_err err;
    if (bh_audit_append(audit, &rec, &err) < 0)
        bh_error("audit", "claim by %s not recorded: %s", actor, err.msg);
}

static int emit_deliver(struct emit_run *r)
{
    struct bh_claim_answer ans = {0};
    int failed = emit_claim(r, &ans) < 0;
    emit_audit(r, failed);
    if (failed) {
        bh_claim_answer_free(&ans);
        return -1;
    }
    long long t0 = bh_clock_ms();
    bh_autofree char *event = emit_event_json(r);
    struct bh_err err = {0};
    const struct trigger_delivery d = {.t = r->t,
                                       .tenant = r->tenant,
                                       .text = r->ev->text ? r->ev->text : "",
                                       .event_json = event,
                                       .claim = ans.claim};
    int rc = trigger_driver_deliver(&d, &r->reply->body, &r->reply->body_len, &err);
    bh_claim_answer_free(&ans);
    if (rc < 0) {
        emit_stage(r, "driver", "error", err.msg, t0);
        return emit_refuse(r, BH_VERDICT_ERROR, 502, "driver: %s", err.msg);
    }
    emit_stage(r, "driver", "delivered", NULL, t0);
    r->reply->verdict = BH_VERDICT_ALLOW;
    r->reply->status = 200;
    return 0;
}

static int emit_in_line(struct emit_run *r)
{
    bh_autofree char *key = bh_xasprintf("%s\n%s", r->tenant, r->workload);
    struct trigger_lane *lane = lane_enter(r->t->ts, key);
    if (!lane) {
        emit_stage(r, "queue", "busy", NULL, bh_clock_ms());
        return emit_refuse(r, BH_VERDICT_BUSY, 429,
                           "busy: %d events for this tenant are already waiting", TRIGGER_LANE_MAX);
    }
    int rc = emit_deliver(r);
    lane_leave(r->t->ts, lane);
    return rc;
}

/* ---- accounting ---- */

const char *trigger_verdict_name(uint32_t verdict)
{
    static const char *const names[] = {[BH_VERDICT_ALLOW] = "allow",
                                        [BH_VERDICT_DENY] = "deny",
                                        [BH_VERDICT_BUSY] = "busy",
                                        [BH_VERDICT_ERROR] = "error"};
    return verdict < sizeof(names) / sizeof(names[0]) ? names[verdict] : "error";
}

static void emit_publish(struct emit_run *r, const struct trigger_event_rec *rec)
{
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "trigger", r->t->name);
    cJSON_AddStringToObject(d, "verdict", rec->verdict);
    cJSON_AddNumberToObject(d, "latencyMs", (double)rec->ms);
    if (rec->error[0])
        cJSON_AddStringToObject(d, "error", rec->error);
    bh_events_publish(r->t->ts->ctx->events, BH_EVT_TRIGGER_EVENT, r->workload,
                      r->tenant[0] ? r->tenant : NULL, d);
}

static void emit_account(struct emit_run *r)
{
    struct trigger *t = r->t;
    struct trigger_event_rec rec = {.ms = bh_clock_ms() - r->t0,
                                    .verdict = trigger_verdict_name(r->reply->verdict)};
    bh_clock_rfc3339(rec.at);
    snprintf(rec.tenant, sizeof(rec.tenant), "%s", r->tenant);
    snprintf(rec.error, sizeof(rec.error), "%s", r->reply->reason);
    pthread_mutex_lock(&t->ts->lock);
    t->events++;
    t->denied += r->reply->verdict == BH_VERDICT_DENY;
    t->failed += r->reply->verdict == BH_VERDICT_ERROR || r->reply->verdict == BH_VERDICT_BUSY;
    memcpy(t->last_event_at, rec.at, sizeof(rec.at));
    t->ring[t->ring_next] = rec;
    t->ring_next = (t->ring_next + 1) % TRIGGER_RING;
    if (t->ring_n < TRIGGER_RING)
        t->ring_n++;
    pthread_mutex_unlock(&t->ts->lock);
    /* The counters reach status.* through the trigger's reconcile (coalesced by the queue). */
    trigger_enqueue(t);
    emit_publish(r, &rec);
    bh_info("trigger", "%s: event from %s -> tenant %s: %s (%lld ms)%s%s", t->name,
            r->ev->source ? r->ev->source : "?", r->tenant[0] ? r->tenant : "-", rec.verdict,
            rec.ms, rec.error[0] ? ": " : "", rec.error);
}

int trigger_emit(struct trigger *t, const struct bh_event *ev, struct bh_event_reply *reply,
                 cJSON *stages, struct bh_err *err)
{
    if (reply->size < sizeof(*reply))
        return bh_err_set(err, BH_EINVAL, "emit: reply size %zu, the host needs %zu", reply->size,
                          sizeof(*reply));
    size_t size = reply->size;
    memset(reply, 0, sizeof(*reply));
    reply->size = size;
    struct emit_run r = {.t = t,
                         .ev = ev,
                         .reply = reply,
                         .stages = stages,
                         .t0 = bh_clock_ms(),
                         .workload = bh_json_str(t->spec, "workloadRef")};
    /* Each stage either passes or has written the refusal into reply. */
    if (emit_tenant(&r) == 0 && emit_guards(&r) == 0)
        emit_in_line(&r);
    emit_account(&r);
    cJSON_Delete(r.payload);
    return 0;
}
