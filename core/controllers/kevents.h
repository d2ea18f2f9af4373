/* Kubernetes Events (core/v1) about the four kinds, derived from the one place controllers
 * already report what happened: the operator event hub (events.h). A hub listener turns a
 * claim served or failed (with its source and latency), released, idle-released, a hibernate
 * or restore failure, a workload's phase, a degraded pool and a trigger error into an Event
 * with involvedObject, reason, type, message, count and first/last timestamps, so
 * `kubectl describe bhc <name>` shows what happened.
 *
 * Repeats aggregate as the API server's event recorder does: an event with the same object,
 * type, reason and message bumps count and lastTimestamp instead of adding a record.
 * Retention is bounded: at most cap records; a new one replaces the least recently seen. */
#ifndef BH_KEVENTS_H
#define BH_KEVENTS_H

#include <cjson/cJSON.h>
#include <stddef.h>

struct bh_kevents;

struct bh_kevents *bh_kevents_new(size_t cap);
void bh_kevents_free(struct bh_kevents *k);

/* The hub listener (bh_events_fn; ud = the bh_kevents): maps one hub event, if it is one
 * users see in describe. */
void bh_kevents_on_hub(const char *type, const cJSON *event, void *ud);

/* Records (or aggregates) one event about kind/name. type is "Normal" or "Warning"; tenant
 * and workload (may be NULL) let a later event about the pair find its claim. */
struct bh_kevents_rec {
    const char *kind, *name, *type, *reason, *message, *tenant, *workload;
};
void bh_kevents_record(struct bh_kevents *k, const struct bh_kevents_rec *rec);

/* The events kept, oldest first, as v1 Event objects in namespace ns: an owned array. *rv
 * (may be NULL) receives the newest resourceVersion. */
cJSON *bh_kevents_list(struct bh_kevents *k, const char *ns, long long *rv);

#endif
