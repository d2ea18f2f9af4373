/* Kubernetes Events from the operator event hub (kevents.h): a bounded, aggregating table of
 * records under one mutex, and the table that maps hub events onto them. */
#include "kevents.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "events.h"
#include "json.h"
#include "mem.h"

#define KEV_API_VERSION "boilerhouse.dev/v1alpha1"
#define KEV_COMPONENT "boilerhouse"

struct kev_rec {
    char *kind, *name, *type, *reason, *message, *tenant, *workload;
    char first[32], last[32];
    long long count;
    long long seq;  /* resourceVersion: moves on every change */
    long long id;   /* the record's name suffix, fixed at creation */
    long long used; /* 0: empty slot */
};

struct bh_kevents {
    pthread_mutex_t lock;
    struct kev_rec *recs;
    size_t cap;
    long long seq, ids;
};

struct bh_kevents *bh_kevents_new(size_t cap)
{
    struct bh_kevents *k = bh_xcalloc(1, sizeof(*k));
    pthread_mutex_init(&k->lock, NULL);
    k->cap = cap ? cap : 1;
    k->recs = bh_xcalloc(k->cap, sizeof(*k->recs));
    return k;
}

static void kev_clear(struct kev_rec *r)
{
    free(r->kind);
    free(r->name);
    free(r->type);
    free(r->reason);
    free(r->message);
    free(r->tenant);
    free(r->workload);
    memset(r, 0, sizeof(*r));
}

void bh_kevents_free(struct bh_kevents *k)
{
    if (!k)
        return;
    for (size_t i = 0; i < k->cap; i++)
        kev_clear(&k->recs[i]);
    free(k->recs);
    pthread_mutex_destroy(&k->lock);
    free(k);
}

static int kev_same(const struct kev_rec *r, const struct bh_kevents_rec *e)
{
    return r->used && !strcmp(r->kind, e->kind) && !strcmp(r->name, e->name) &&
           !strcmp(r->type, e->type) && !strcmp(r->reason, e->reason) &&
           !strcmp(r->message, e->message);
}

/* The slot for e: its aggregate, else an empty slot, else the least recently seen. */
static struct kev_rec *kev_slot(struct bh_kevents *k, const struct bh_kevents_rec *e, int *found)
{
    struct kev_rec *free_slot = NULL, *oldest = NULL;
    *found = 0;
    for (size_t i = 0; i < k->cap; i++) {
        struct kev_rec *r = &k->recs[i];
        if (kev_same(r, e)) {
            *found = 1;
            return r;
        }
        if (!r->used && !free_slot)
            free_slot = r;
        if (r->used && (!oldest || r->seq < oldest->seq))
            oldest = r;
    }
    return free_slot ? free_slot : oldest;
}

static char *kev_dup(const char *s)
{
    return s ? bh_xstrdup(s) : NULL;
}

void bh_kevents_record(struct bh_kevents *k, const struct bh_kevents_rec *e)
{
    if (!k || !e->kind || !e->name || !e->reason)
        return;
    struct bh_kevents_rec rec = *e;
    rec.type = e->type ? e->type : "Normal";
    rec.message = e->message ? e->message : "";
    char now[32];
    bh_clock_rfc3339(now);
    pthread_mutex_lock(&k->lock);
    int found;
    struct kev_rec *r = kev_slot(k, &rec, &found);
    if (!found) {
        kev_clear(r);
        r->kind = bh_xstrdup(rec.kind);
        r->name = bh_xstrdup(rec.name);
        r->type = bh_xstrdup(rec.type);
        r->reason = bh_xstrdup(rec.reason);
        r->message = bh_xstrdup(rec.message);
        r->tenant = kev_dup(rec.tenant);
        r->workload = kev_dup(rec.workload);
        memcpy(r->first, now, sizeof(now));
        r->id = ++k->ids;
        r->used = 1;
    }
    r->count++;
    memcpy(r->last, now, sizeof(now));
    r->seq = ++k->seq;
    pthread_mutex_unlock(&k->lock);
}

/* The claim last reported for (tenant, workload), for events the hub reports by pair
 * (hibernate, restore); NULL if none is kept. Owned. Takes the lock. */
static char *kev_claim_of_pair(struct bh_kevents *k, const char *tenant, const char *workload)
{
    char *name = NULL;
    long long best = 0;
    pthread_mutex_lock(&k->lock);
    for (size_t i = 0; i < k->cap; i++) {
        const struct kev_rec *r = &k->recs[i];
        if (r->used && r->seq > best && !strcmp(r->kind, "BoilerhouseClaim") && r->tenant &&
            r->workload && !strcmp(r->tenant, tenant) && !strcmp(r->workload, workload)) {
            free(name);
            name = bh_xstrdup(r->name);
            best = r->seq;
        }
    }
    pthread_mutex_unlock(&k->lock);
    return name;
}

/* ---- the hub's events, mapped ---- */

struct kev_in {
    struct bh_kevents *k;
    const cJSON *ev;
    const char *tenant, *workload;
};

static void kev_claim(const struct kev_in *in, const char *name, const char *type,
                      const char *reason, const char *message)
{
    struct bh_kevents_rec r = {"BoilerhouseClaim", name,        type, reason, message,
                               in->tenant,         in->workload};
    bh_kevents_record(in->k, &r);
}

static void kev_claimed(const struct kev_in *in, int failed)
{
    const char *name = bh_json_str(in->ev, "claim");
    const char *source = bh_json_str(in->ev, "source");
    long long ms = bh_json_int(in->ev, "latencyMs", 0);
    bh_autofree char *msg =
        failed ? bh_xasprintf("claim failed after %lld ms (source %s): %s", ms,
                              source ? source : "unknown", bh_json_str(in->ev, "error") ?: "")
               : bh_xasprintf("Active: instance %s from %s in %lld ms",
                              bh_json_str(in->ev, "instanceId") ?: "?", source ? source : "unknown",
                              ms);
    if (name)
        kev_claim(in, name, failed ? "Warning" : "Normal", failed ? "Error" : "Active", msg);
}

static void kev_released(const struct kev_in *in)
{
    const char *name = bh_json_str(in->ev, "claim"), *variant = bh_json_str(in->ev, "variant");
    bh_autofree char *msg = bh_xasprintf("released (%s)", variant ? variant : "normal");
    if (name)
        kev_claim(in, name, "Normal", "Released", msg);
}

static void kev_idle(const struct kev_in *in)
{
    const char *name = bh_json_str(in->ev, "claim"), *action = bh_json_str(in->ev, "action");
    bh_autofree char *msg =
        bh_xasprintf("idle timeout: releasing (%s)", action ? action : "hibernate");
    if (name)
        kev_claim(in, name, "Normal", "IdleRelease", msg);
}

/* A save or restore is reported by pair: it is about the pair's claim when one is known,
 * else about the workload. */
static void kev_snapshot(const struct kev_in *in, const char *reason, int failed)
{
    if (!in->tenant || !in->workload)
        return;
    bh_autofree char *claim = kev_claim_of_pair(in->k, in->tenant, in->workload);
    bh_autofree char *msg =
        failed ? bh_xasprintf("tenant %s: %s", in->tenant, bh_json_str(in->ev, "error") ?: "")
               : bh_xasprintf("tenant %s: %lld bytes in %lld ms", in->tenant,
                              bh_json_int(in->ev, "bytes", 0), bh_json_int(in->ev, "ms", 0));
    struct bh_kevents_rec r = {claim ? "BoilerhouseClaim" : "BoilerhouseWorkload",
                               claim ? claim : in->workload,
                               failed ? "Warning" : "Normal",
                               reason,
                               msg,
                               in->tenant,
                               in->workload};
    bh_kevents_record(in->k, &r);
}

static void kev_workload(const struct kev_in *in)
{
    const char *phase = bh_json_str(in->ev, "phase"), *detail = bh_json_str(in->ev, "detail");
    if (!phase || !in->workload || !strcmp(phase, "Deleted"))
        return;
    int error = !strcmp(phase, "Error");
    bh_autofree char *msg = bh_xasprintf("phase %s%s%s", phase, detail ? ": " : "", detail ?: "");
    struct bh_kevents_rec r = {
        "BoilerhouseWorkload", in->workload, error ? "Warning" : "Normal", phase, msg, NULL, NULL};
    bh_kevents_record(in->k, &r);
}

static void kev_pool(const struct kev_in *in)
{
    const char *phase = bh_json_str(in->ev, "phase"), *pool = bh_json_str(in->ev, "pool");
    if (!pool || !phase || strcmp(phase, "Degraded") != 0)
        return;
    bh_autofree char *msg =
        bh_xasprintf("%lld of %lld instances ready (%lld warming)", bh_json_int(in->ev, "ready", 0),
                     bh_json_int(in->ev, "size", 0), bh_json_int(in->ev, "warming", 0));
    struct bh_kevents_rec r = {"BoilerhousePool", pool, "Warning", "Degraded", msg, NULL, NULL};
    bh_kevents_record(in->k, &r);
}

static void kev_trigger(const struct kev_in *in)
{
    const char *verdict = bh_json_str(in->ev, "verdict"), *name = bh_json_str(in->ev, "trigger");
    if (!name || !verdict || strcmp(verdict, "error") != 0)
        return;
    bh_autofree char *msg =
        bh_xasprintf("%s%s%s", in->tenant ? in->tenant : "", in->tenant ? ": " : "",
                     bh_json_str(in->ev, "error") ?: "");
    struct bh_kevents_rec r = {"BoilerhouseTrigger", name,        "Warning", "Error", msg,
                               in->tenant,           in->workload};
    bh_kevents_record(in->k, &r);
}

static void kev_claimed_ok(const struct kev_in *in)
{
    kev_claimed(in, 0);
}
static void kev_claim_failed(const struct kev_in *in)
{
    kev_claimed(in, 1);
}
static void kev_hib_done(const struct kev_in *in)
{
    kev_snapshot(in, "Hibernated", 0);
}
static void kev_hib_failed(const struct kev_in *in)
{
    kev_snapshot(in, "HibernateFailed", 1);
}
static void kev_restore_failed(const struct kev_in *in)
{
    kev_snapshot(in, "RestoreFailed", 1);
}

void bh_kevents_on_hub(const char *type, const cJSON *event, void *ud)
{
    static const struct {
        const char *type;
        void (*map)(const struct kev_in *in);
    } table[] = {
        {BH_EVT_CLAIMED, kev_claimed_ok},
        {BH_EVT_CLAIM_FAILED, kev_claim_failed},
        {BH_EVT_RELEASED, kev_released},
        {BH_EVT_IDLE_TIMEOUT, kev_idle},
        {BH_EVT_HIBERNATE_DONE, kev_hib_done},
        {BH_EVT_HIBERNATE_FAILED, kev_hib_failed},
        {BH_EVT_RESTORE_FAILED, kev_restore_failed},
        {BH_EVT_WORKLOAD_PHASE, kev_workload},
        {BH_EVT_POOL_STATUS, kev_pool},
        {BH_EVT_TRIGGER_EVENT, kev_trigger},
    };
    struct kev_in in = {ud, event, bh_json_str(event, "tenant"), bh_json_str(event, "workload")};
    for (size_t i = 0; i < BH_ARRAY_LEN(table); i++)
        if (strcmp(type, table[i].type) == 0)
            table[i].map(&in);
}

/* ---- the Events ---- */

static cJSON *kev_object(const struct kev_rec *r, const char *ns)
{
    cJSON *o = cJSON_CreateObject(), *md, *io;
    char buf[32];
    cJSON_AddStringToObject(o, "apiVersion", "v1");
    cJSON_AddStringToObject(o, "kind", "Event");
    md = cJSON_AddObjectToObject(o, "metadata");
    bh_autofree char *name = bh_xasprintf("%s.%016llx", r->name, (unsigned long long)r->id);
    cJSON_AddStringToObject(md, "name", name);
    cJSON_AddStringToObject(md, "namespace", ns);
    snprintf(buf, sizeof(buf), "%lld", r->seq);
    cJSON_AddStringToObject(md, "resourceVersion", buf);
    cJSON_AddStringToObject(md, "creationTimestamp", r->first);
    io = cJSON_AddObjectToObject(o, "involvedObject");
    cJSON_AddStringToObject(io, "apiVersion", KEV_API_VERSION);
    cJSON_AddStringToObject(io, "kind", r->kind);
    cJSON_AddStringToObject(io, "name", r->name);
    cJSON_AddStringToObject(io, "namespace", ns);
    cJSON_AddStringToObject(o, "reason", r->reason);
    cJSON_AddStringToObject(o, "message", r->message);
    cJSON_AddStringToObject(o, "type", r->type);
    cJSON_AddNumberToObject(o, "count", (double)r->count);
    cJSON_AddStringToObject(o, "firstTimestamp", r->first);
    cJSON_AddStringToObject(o, "lastTimestamp", r->last);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "source"), "component", KEV_COMPONENT);
    cJSON_AddStringToObject(o, "reportingComponent", KEV_COMPONENT);
    return o;
}

static int kev_by_seq(const void *a, const void *b)
{
    const struct kev_rec *x = *(const struct kev_rec *const *)a;
    const struct kev_rec *y = *(const struct kev_rec *const *)b;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

cJSON *bh_kevents_list(struct bh_kevents *k, const char *ns, long long *rv)
{
    cJSON *items = cJSON_CreateArray();
    if (!k)
        return items;
    pthread_mutex_lock(&k->lock);
    const struct kev_rec **order = bh_xcalloc(k->cap, sizeof(*order));
    size_t n = 0;
    for (size_t i = 0; i < k->cap; i++)
        if (k->recs[i].used)
            order[n++] = &k->recs[i];
    qsort(order, n, sizeof(*order), kev_by_seq);
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(items, kev_object(order[i], ns));
    if (rv)
        *rv = k->seq;
    pthread_mutex_unlock(&k->lock);
    free(order);
    return items;
}
