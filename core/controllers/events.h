/* The event hub: typed, numbered events for operators (the /ws stream, metrics, the
 * dashboard), derived from store changes and published by the controllers at the moments the
 * store does not show (a claim served, with its source and latency; a hibernate's bytes).
 *
 * Events live in a bounded ring. Readers pull from it at their own pace with a cursor; a
 * publisher never waits for a reader, and a reader that falls too far behind is told so
 * (BH_EVENTS_LAGGED) and should be dropped. Ids grow monotonically, across restarts too
 * (they start from the wall clock in microseconds), so a client resuming with an id from an
 * earlier run is told to resync rather than handed unrelated events. */
#ifndef BH_EVENTS_H
#define BH_EVENTS_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* Event types (the "type" field). */
#define BH_EVT_INSTANCE_STATE "instance.state"
#define BH_EVT_POOL_READY "pool.instance.ready"
#define BH_EVT_POOL_STATUS "pool.status"
#define BH_EVT_CLAIMED "tenant.claimed"
#define BH_EVT_CLAIM_FAILED "tenant.claim_failed"
#define BH_EVT_RELEASED "tenant.released"
/* Its variant for a claim released but kept (Released, for the tenant's next claim to restore),
 * as the claim's status.releaseReason says: its idle timeout, or its workload's deletion. */
#define BH_RELEASE_IDLE "idle"
#define BH_RELEASE_WORKLOAD_DELETED "workload-deleted"
#define BH_EVT_IDLE_TIMEOUT "tenant.idle_timeout"
#define BH_EVT_HIBERNATE_DONE "hibernate.done"
#define BH_EVT_HIBERNATE_FAILED "hibernate.failed"
#define BH_EVT_RESTORE_DONE "restore.done"
#define BH_EVT_RESTORE_FAILED "restore.failed"
#define BH_EVT_WORKLOAD_PHASE "workload.phase"
#define BH_EVT_TRIGGER_EVENT "trigger.event"
/* Sent only to readers watching the instance (filter.instance): the sampler publishes
 * these only while someone watches (bh_events_watched). */
#define BH_EVT_INSTANCE_STATS "instance.stats"
/* Not in the ring: /ws streams an instance's log to its watchers itself (ws.c). */
#define BH_EVT_INSTANCE_LOG "instance.log"

struct bh_events;

/* ring: events kept for replay; lag_max: how far a reader may fall behind before it is
 * cut (at most ring). */
struct bh_events *bh_events_new(size_t ring, size_t lag_max);
void bh_events_free(struct bh_events *h);

/* Publishes one event: data (owned; an object, or NULL) gains id, type, time and, when
 * given, workload and tenant. A NULL hub (controller unit tests) drops it. Never blocks on
 * readers; listeners run on the caller's thread. */
void bh_events_publish(struct bh_events *h, const char *type, const char *workload,
                       const char *tenant, cJSON *data);

/* A store subscriber (ud = the hub): turns changes of instance, claim, workload and pool
 * phases into events. */
void bh_events_store_event(const struct bh_store_event *ev, void *ud);

/* In-process listeners (metrics), called with each published event. Not removable; register
 * before serving. event is borrowed for the call. */
typedef void (*bh_events_fn)(const char *type, const cJSON *event, void *ud);
void bh_events_listen(struct bh_events *h, bh_events_fn fn, void *ud);

/* The id of the newest event (the first id - 1 before any). */
int64_t bh_events_last_id(struct bh_events *h);

/* ---- readers ---- */

struct bh_events_reader;

/* What a reader wants; NULL or empty fields match everything. types is a comma list.
 * instance keeps the events whose "instance" field names it, and makes the reader a watcher
 * of that instance: only watchers get its BH_EVT_INSTANCE_STATS. */
struct bh_events_filter {
    const char *types;
    const char *workload;
    const char *tenant;
    const char *instance;
};

/* Opens a reader that starts after event `after` (< 0: after the newest). If the events
 * after it are no longer all in the ring (or `after` is from the future), the reader starts
 * after the newest and *resync is set. filter is copied. Owned; bh_events_reader_close. */
struct bh_events_reader *bh_events_reader_open(struct bh_events *h, int64_t after,
                                               const struct bh_events_filter *filter, int *resync);
void bh_events_reader_close(struct bh_events_reader *r);
/* A descriptor that becomes readable when events arrive or bh_events_wake is called;
 * bh_events_reader_next drains it. */
int bh_events_reader_fd(const struct bh_events_reader *r);

enum bh_events_next { BH_EVENTS_NONE = 0, BH_EVENTS_GOT = 1, BH_EVENTS_LAGGED = -1 };
/* The next matching event as JSON text (*json owned). LAGGED once the reader is more than
 * lag_max events behind the newest. */
enum bh_events_next bh_events_reader_next(struct bh_events_reader *r, char **json);

/* Whether the reader is more than lag_max events behind (drains its descriptor). */
int bh_events_reader_lagging(struct bh_events_reader *r);
/* Counts a reader dropped for lagging (for metrics). */
void bh_events_reader_cut(struct bh_events_reader *r);

/* Readers open now, and readers cut for lagging since start. */
void bh_events_stats(struct bh_events *h, long long *readers, long long *cut);

/* Whether an open reader watches instance (its filter names it). */
int bh_events_watched(struct bh_events *h, const char *instance);

/* Whether a reader with this types filter (NULL or "": all) gets events of type. */
int bh_events_type_wanted(const char *types, const char *type);

/* Wakes every reader (their fd turns readable), e.g. so they notice a shutdown. */
void bh_events_wake(struct bh_events *h);

#endif
