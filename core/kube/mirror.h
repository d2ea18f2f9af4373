/* The store as the cache of a cluster (operator mode): the four kinds of the client's namespace
 * are listed and watched into the embedded store, where the controllers, REST, triggers, Lua
 * policies, metrics and the dashboard read them as in local mode; what changes in the store
 * (a REST write, a controller's finalizer or status) is written back to the cluster.
 *
 * Metadata: a stored copy carries the cluster's uid, generation, creationTimestamp and
 * deletionTimestamp (bh_store_put_replica); its resourceVersion is the store's own, one counter
 * for the local event log that local watches resume from. The cluster's resourceVersion of each
 * object is kept here, beside its last cluster copy, and sent with every write back (a 409
 * re-reads the object and tries again).
 *
 * Cluster to store: every event whose resourceVersion is newer than the copy held (the echo of
 * this mirror's own write is not) replaces the stored copy; an object the daemon's own checks
 * refuse (CEL rules an old cluster does not enforce) is kept out of the store. A watch that
 * fails resumes from its last resourceVersion with backoff; 410 Gone or an ERROR event lists
 * the kind again and removes what the cluster no longer has.
 *
 * Store to cluster (a writer thread, in the order of the changes, one object at a time):
 * labels, annotations, finalizers and spec by PUT; status by PUT on the /status subresource,
 * only while the fence allows (the leader with an unexpired lease); a deletion by DELETE; a
 * stored copy removed after its finalizers ran drops the boilerhouse.dev/ finalizers of the
 * cluster's object, so the cluster removes it too.
 */
#ifndef BH_KUBE_MIRROR_H
#define BH_KUBE_MIRROR_H

#include <cjson/cJSON.h>

#include "client.h"
#include <stddef.h>

#include "err.h"

struct bh_store;
struct bh_store_event;
struct bh_kube_mirror;

/* Checks an object from the cluster (owned by the caller; defaults may be filled in) before it
 * enters the store; -1 keeps it out. */
typedef int (*bh_kube_admit_fn)(cJSON *obj, void *ud, struct bh_err *err);
/* Whether status may be written to the cluster now. */
typedef int (*bh_kube_fence_fn)(void *ud);

struct bh_kube_mirror_cfg {
    struct bh_kube_client *client;     /* borrowed; outlives the mirror */
    struct bh_store *store;            /* borrowed */
    bh_kube_admit_fn admit;            /* NULL: every object enters */
    bh_kube_fence_fn may_write_status; /* NULL: always */
    void *ud;                          /* for admit and may_write_status */
    int watch_timeout_s;               /* how long one watch request lasts; 0: 300 */
};

/* Lists the four kinds into the store (what the store has of them and the cluster has not is
 * removed), so that on return the store is the cluster's, then watches them on threads of its
 * own. Fails when the cluster cannot be listed (unreachable, CRDs not installed). */
BH_MUST_CHECK int bh_kube_mirror_start(const struct bh_kube_mirror_cfg *cfg,
                                       struct bh_kube_mirror **out, struct bh_err *err);
/* The store subscriber (ud: the mirror) that queues the store's changes for the cluster;
 * subscribe it right after start. Changes the mirror itself made are not sent back. */
void bh_kube_mirror_on_store(const struct bh_store_event *ev, void *ud);
/* Queues every object the store has of the four kinds for the cluster: what the store has that
 * the cluster has not yet (status that was fenced off before this replica led) is written. */
void bh_kube_mirror_push_all(struct bh_kube_mirror *m);
/* Waits until every change queued so far has been sent (or given up after its tries), at most
 * timeout_ms; returns how many are still queued or being sent (0: all out). For a replica
 * shutting down, so that what it answered for reaches the cluster before it goes. */
size_t bh_kube_mirror_flush(struct bh_kube_mirror *m, int timeout_ms);
/* Stops the watches and the writer (changes still queued are dropped: the store is a cache,
 * the next start re-lists; bh_kube_mirror_flush first to send them). m stays subscribed to
 * the store, and takes no more changes, until bh_kube_mirror_free. */
void bh_kube_mirror_stop(struct bh_kube_mirror *m);
/* Frees a stopped m, once nothing writes the store any more (a boot thread still running at
 * shutdown writes it after the stop). */
void bh_kube_mirror_free(struct bh_kube_mirror *m);

#endif
