/* The audit log: one record per audited call (who, what, on whom, how it went), append-only
 * in its own SQLite database beside the store (<state>/audit.db, WAL), so audit writes never
 * contend with resource writes. A call that changed state has its record committed before its
 * answer is sent (bh_audit_append): it survives a kill -9. A call that changed nothing (a
 * claim answered from the instance the tenant already holds) may instead queue its record for
 * a background writer (bh_audit_append_async) that commits the queue in one transaction at
 * least every flush interval and on close: a daemon crash loses at most that window of such
 * records. A call that changed state and is answered in a few milliseconds (a claim served
 * from a warm pool) may journal its record (bh_audit_append_logged): one write(2) to
 * <path>.pending, which a process crash keeps as it keeps a commit, committed by the writer
 * like a queued one; the next writer's start commits what a crash left there. Bounded: past
 * max_records the oldest are dropped. Thread-safe: one connection
 * behind a mutex. Secret values never reach it (callers pass names). */
#ifndef BH_AUDIT_H
#define BH_AUDIT_H

#include <cjson/cJSON.h>

#include "err.h"

struct bh_audit;

/* One record; every field borrowed, NULL allowed but for actor and action. */
struct bh_audit_rec {
    const char *actor;   /* "admin", "trigger:<name>", ... */
    const char *action;  /* "claim", "release.force", "secret.set", ... */
    const char *tenant;  /* the tenant acted on, if any */
    const char *target;  /* the object acted on (workload, instance, secret name...) */
    const char *outcome; /* "ok" or "error" */
    int status;          /* HTTP status when the call came over HTTP, else 0 */
    const char *error;   /* why it failed */
};

/* What to list; NULL/0 fields match all. since: unix milliseconds. */
struct bh_audit_query {
    const char *tenant;
    const char *actor;
    long long since_ms;
    int limit; /* newest first; 0: 100 */
};

BH_MUST_CHECK int bh_audit_open(const char *path, long long max_records, struct bh_audit **out,
                                struct bh_err *err);
/* Starts the background writer of bh_audit_append_async and _logged, which commits what is
 * queued every flush_ms and when bh_audit_close stops it, after committing what a crash left
 * in the journal. Without it queued appends are synchronous (the CLI's one-record uses, which
 * never read the journal: the daemon may be running). Once per log; the daemon's alone. */
BH_MUST_CHECK int bh_audit_start_writer(struct bh_audit *a, int flush_ms, struct bh_err *err);
/* Stops the writer (if any) after it committed everything queued, then closes. */
void bh_audit_close(struct bh_audit *a);
/* Appends r, durable against a process crash on return. Records queued before it are
 * committed with it (or before), so the log's order is the order of appends. */
BH_MUST_CHECK int bh_audit_append(struct bh_audit *a, const struct bh_audit_rec *r,
                                  struct bh_err *err);
/* Queues a copy of r for the writer and returns without waiting for the disk: for calls that
 * changed no state, whose record a crash may lose (at most the last flush interval's). Its
 * time is taken now. A full queue (a writer behind by many thousands) makes the caller
 * commit it, so memory stays bounded and nothing is dropped. A failed commit is logged. */
void bh_audit_append_async(struct bh_audit *a, const struct bh_audit_rec *r);
/* Appends r durable against a process crash on return, as bh_audit_append, without waiting
 * for its commit: its line is written to the journal and the record queued for the writer
 * (in the log's order with every other append). Without a writer, or if the journal cannot
 * be written, it is bh_audit_append. */
BH_MUST_CHECK int bh_audit_append_logged(struct bh_audit *a, const struct bh_audit_rec *r,
                                         struct bh_err *err);
/* Matching records, newest first, as an owned array of objects. Commits the queued records
 * first: a query sees every append that returned before it. */
BH_MUST_CHECK int bh_audit_query(struct bh_audit *a, const struct bh_audit_query *q, cJSON **out,
                                 struct bh_err *err);

#endif
