/* The embedded resource store (local mode): SQLite in WAL mode under the state dir.
 *
 * Objects are Kubernetes-shaped cJSON documents {apiVersion, kind, metadata, spec, status}.
 * The store owns the system metadata: uid, generation, resourceVersion (one global counter),
 * creationTimestamp, deletionTimestamp. Every write is one SQLite transaction, durable on
 * return, and appended to an event log that watchers read from a resourceVersion.
 * Thread-safe: one connection behind a mutex.
 *
 * Besides the four API kinds the daemon keeps its own bookkeeping here as internal kinds
 * (e.g. "Instance"), which are not validated against the CRD schemas.
 */
#ifndef BH_STORE_H
#define BH_STORE_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "err.h"

struct bh_store;

enum bh_store_event_type { BH_EV_ADDED = 1, BH_EV_MODIFIED = 2, BH_EV_DELETED = 3 };

struct bh_store_event {
    enum bh_store_event_type type;
    int64_t rv;
    const char *kind;    /* borrowed */
    const char *name;    /* borrowed */
    const cJSON *object; /* borrowed: the object after the change (before it, for DELETED) */
};

/* Called after each committed write, from the writing thread, without the store lock held,
 * so a callback may call back into the store. Must not block for long. */
typedef void (*bh_store_watch_fn)(const struct bh_store_event *ev, void *ud);

BH_MUST_CHECK int bh_store_open(const char *path, struct bh_store **out, struct bh_err *err);
void bh_store_close(struct bh_store *s);

/* Creates obj (borrowed; needs kind and metadata.name). BH_ECONFLICT if the name exists.
 * *out (optional, owned) receives the stored object with system metadata filled in. */
BH_MUST_CHECK int bh_store_create(struct bh_store *s, const cJSON *obj, cJSON **out,
                                  struct bh_err *err);
/* BH_ENOTFOUND if absent. *out owned. */
BH_MUST_CHECK int bh_store_get(struct bh_store *s, const char *kind, const char *name, cJSON **out,
                               struct bh_err *err);
/* The end of the message of a stale-resourceVersion BH_ECONFLICT, in the words of
 * Kubernetes' API server (the Kubernetes-compatible API answers with just this part). */
#define BH_STORE_STALE_MSG                                                                         \
    "the object has been modified; please apply your changes to the latest version and try "       \
    "again"

/* Replaces metadata.labels/annotations/finalizers and spec (status is kept; every top-level
 * field but metadata and status counts as spec, for internal kinds). An update that changes
 * nothing is not written and answers the current object. If obj carries
 * metadata.resourceVersion and it is not the current one: BH_ECONFLICT. A spec change
 * increments metadata.generation. If the object is being deleted and its finalizers are now
 * empty, it is removed (a DELETED event). */
BH_MUST_CHECK int bh_store_update(struct bh_store *s, const cJSON *obj, cJSON **out,
                                  struct bh_err *err);
/* Replaces only status, with the same resourceVersion check. */
BH_MUST_CHECK int bh_store_update_status(struct bh_store *s, const cJSON *obj, cJSON **out,
                                         struct bh_err *err);
/* The same, committed without waiting for the disk (the WAL is not fsynced). Visible at once
 * and ordered like every write; after a crash it may be lost, together with the lazy writes
 * after it, but never without them, and it becomes durable with the next ordinary write
 * (whose fsync covers the whole WAL). Only for what may be lost: activity timestamps. */
BH_MUST_CHECK int bh_store_update_status_lazy(struct bh_store *s, const cJSON *obj, cJSON **out,
                                              struct bh_err *err);
/* Lazy create and update, with the same guarantee: for steps whose loss in a crash is
 * harmless because a later ordinary write (or recovery) completes them. The claim fast path
 * uses them so that one fsync, of the claim turning Active, covers the whole claim. */
BH_MUST_CHECK int bh_store_create_lazy(struct bh_store *s, const cJSON *obj, cJSON **out,
                                       struct bh_err *err);
BH_MUST_CHECK int bh_store_update_lazy(struct bh_store *s, const cJSON *obj, cJSON **out,
                                       struct bh_err *err);
/* bh_store_update and bh_store_update_status in one lazy write (one transaction, one event):
 * user metadata, spec and status from obj, with the same resourceVersion check. For a step
 * that changes an object's spec and status together (a pool take stamps the activity). */
BH_MUST_CHECK int bh_store_update_all_lazy(struct bh_store *s, const cJSON *obj, cJSON **out,
                                           struct bh_err *err);
/* With finalizers: sets metadata.deletionTimestamp (MODIFIED). Without: removes (DELETED).
 * BH_ENOTFOUND if absent. */
BH_MUST_CHECK int bh_store_delete(struct bh_store *s, const char *kind, const char *name,
                                  struct bh_err *err);
/* For a store that is the cache of another (Kubernetes mode: core/kube/mirror.c). Writes obj
 * (borrowed) as the copy of the source's object, created or replaced whole: labels,
 * annotations, finalizers, spec and status, and the source's uid, generation,
 * creationTimestamp and deletionTimestamp as they are; only resourceVersion is the store's own
 * (one counter for the local event log). A copy equal to the stored object is not written. */
BH_MUST_CHECK int bh_store_put_replica(struct bh_store *s, const cJSON *obj, cJSON **out,
                                       struct bh_err *err);
/* Removes the object whatever its finalizers (the source has removed it); absent is no error. */
BH_MUST_CHECK int bh_store_remove_replica(struct bh_store *s, const char *kind, const char *name,
                                          struct bh_err *err);
/* All objects of kind, ordered by name, optionally filtered by a label selector "k=v,k2=v2".
 * *out is an owned cJSON array; *rv (optional) the store's resourceVersion at list time. */
BH_MUST_CHECK int bh_store_list(struct bh_store *s, const char *kind, const char *label_selector,
                                cJSON **out, int64_t *rv, struct bh_err *err);
/* The names of kind's objects matching label_selector, ordered by name, as an owned cJSON
 * array of strings: the matching is done in SQL and no document is parsed, for a caller that
 * then reads one or two of many. The selector is "k=v" terms only (k of label characters:
 * letters, digits, "._/-"), at most 4; anything else is BH_EINVAL. A name read later may have
 * changed since: the caller checks what it reads. */
BH_MUST_CHECK int bh_store_list_names(struct bh_store *s, const char *kind,
                                      const char *label_selector, cJSON **out, struct bh_err *err);
/* How many recent events the log keeps (default 10000); older ones are dropped now and then,
 * and a watcher resuming from before them gets BH_ECONFLICT. For tests and tuning. */
void bh_store_set_event_retention(struct bh_store *s, int64_t n);
/* Registers an in-process listener (the reconciler). Not removable; call before serving. */
void bh_store_subscribe(struct bh_store *s, bh_store_watch_fn fn, void *ud);
/* Events of kind (NULL: all kinds) with resourceVersion > since, oldest first, as an owned
 * cJSON array of {"type": "ADDED|MODIFIED|DELETED", "object": {...}} (at most 1000: continue
 * from the last object's resourceVersion); waits up to timeout_ms for at least one. BH_ECONFLICT if
 * `since` is older than the retained log (the client must re-list). */
BH_MUST_CHECK int bh_store_events_since(struct bh_store *s, const char *kind, int64_t since,
                                        int timeout_ms, cJSON **out, struct bh_err *err);
/* Ends every bh_store_events_since wait now in progress (they answer what they have, maybe
 * nothing): for a reader that is being stopped. */
void bh_store_wake(struct bh_store *s);

/* A key-value store per namespace (a Lua script's name) with expiry, for scripts' counters and
 * rate limits. Values are strings; ttl_s > 0 sets an expiry, 0 none. Durable across a daemon
 * restart (a power loss may lose the last changes: see bh_store_update_status_lazy). */
BH_MUST_CHECK int bh_store_kv_get(struct bh_store *s, const char *ns, const char *key, char **out,
                                  struct bh_err *err); /* *out owned, NULL if absent or expired */
BH_MUST_CHECK int bh_store_kv_set(struct bh_store *s, const char *ns, const char *key,
                                  const char *value, long long ttl_s, struct bh_err *err);
/* Atomically adds 1 (an absent or expired key starts at 1 with ttl_s); *out the new value. */
BH_MUST_CHECK int bh_store_kv_incr(struct bh_store *s, const char *ns, const char *key,
                                   long long ttl_s, long long *out, struct bh_err *err);
BH_MUST_CHECK int bh_store_kv_del(struct bh_store *s, const char *ns, const char *key,
                                  struct bh_err *err);

/* One statement on the store's database for a module that keeps its own table there
 * (token.c; tables are created by the store's migrations). args are bound in order as text
 * (SQLite's column affinity turns numeric text into numbers), committed durably. *rows
 * (optional, owned): an array of objects keyed by column name, integers as numbers. *changes
 * (optional): how many rows the statement changed. */
BH_MUST_CHECK int bh_store_sql(struct bh_store *s, const char *sql, const char *const *args,
                               int nargs, cJSON **rows, int *changes, struct bh_err *err);

/* bh_store_get answers objects of kind (a static string) from memory once read: a copy, as
 * exact as a database read (every write of the object drops it, under the store's lock, in
 * the same critical section as its commit). For hot kinds written rarely: workloads, read by
 * every claim call. Call before serving; at most a few kinds. bh_store_sql must not write
 * the objects table (it is for modules' own tables). */
void bh_store_cache_kind(struct bh_store *s, const char *kind);

/* Called after each committed write with its duration in seconds (waiting for the store's lock
 * included), from the writing thread; for the commit-latency metric. One observer. */
typedef void (*bh_store_commit_fn)(double seconds, void *ud);
void bh_store_on_commit(struct bh_store *s, bh_store_commit_fn fn, void *ud);

#endif
