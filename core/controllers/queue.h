/* The reconciler's work queue: keys ("Kind/name") are queued at most once, reconciled by a
 * pool of worker threads with at most one reconcile per key at a time (a key added while it
 * is being reconciled runs again afterwards), delayed re-adds for requeue-after timers, and
 * per-key exponential backoff when a reconcile fails. Level-triggered: a reconcile reads the
 * current state, so coalescing several adds into one run loses nothing. */
#ifndef BH_QUEUE_H
#define BH_QUEUE_H

#include "err.h"

/* Returns 0 on success (optionally setting *requeue_ms > 0 to run again later) or -1 with
 * err set, which requeues with backoff. */
typedef int (*bh_reconcile_fn)(void *ctx, const char *key, long *requeue_ms, struct bh_err *err);

struct bh_queue;

struct bh_queue *bh_queue_new(int workers, bh_reconcile_fn fn, void *ctx);
void bh_queue_add(struct bh_queue *q, const char *key);
/* Adds key after delay_ms; an earlier pending deadline for the same key wins. */
void bh_queue_add_after(struct bh_queue *q, const char *key, long delay_ms);
/* Runs key's reconcile now on the calling thread, unless a worker is running it (then 0): the
 * key's one-at-a-time rule holds, a queued run of it is taken over, and an add meanwhile runs
 * again afterwards on a worker, as usual. Returns 1 if it ran. For a front door that would
 * otherwise wait for a worker to pick its key up. */
int bh_queue_run_here(struct bh_queue *q, const char *key);
/* Reserves key for the calling thread: no worker starts it until the caller ends the
 * reservation with bh_queue_run_reserved (a queued run of it is taken over; adds meanwhile run
 * afterwards on a worker). For a front door about to write an object and then reconcile it
 * itself: its own write's event would otherwise hand the key to a worker first, and the
 * caller would wait for that worker. Returns 1 if reserved; 0 if a worker is running the key
 * (or the queue is stopping). */
int bh_queue_reserve(struct bh_queue *q, const char *key);
/* Ends the reservation of key: runs its reconcile on the calling thread when run, else
 * schedules a run on a worker (the run the reservation may have taken over). */
void bh_queue_run_reserved(struct bh_queue *q, const char *key, int run);
/* Stops accepting work, waits for running reconciles, joins the workers. */
void bh_queue_stop(struct bh_queue *q);
void bh_queue_free(struct bh_queue *q);
/* Number of keys queued, delayed or running (for tests and stats). */
int bh_queue_pending(struct bh_queue *q);
/* How many reconciles failed and were scheduled again (with backoff) since the start. */
unsigned long long bh_queue_retries(struct bh_queue *q);

#endif
