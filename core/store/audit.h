/* The audit log: one record per state-changing call (who, what, on whom, how it went),
 * append-only in its own SQLite database beside the store (<state>/audit.db, WAL), so audit
 * writes never contend with resource writes. A record is committed before the call's answer
 * is sent and survives a kill -9. Bounded: past max_records the oldest are dropped. Thread-
 * safe: one connection behind a mutex. Secret values never reach it (callers pass names). */
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
void bh_audit_close(struct bh_audit *a);
/* Appends r, durable against a process crash on return. */
BH_MUST_CHECK int bh_audit_append(struct bh_audit *a, const struct bh_audit_rec *r,
                                  struct bh_err *err);
/* Matching records, newest first, as an owned array of objects. */
BH_MUST_CHECK int bh_audit_query(struct bh_audit *a, const struct bh_audit_query *q, cJSON **out,
                                 struct bh_err *err);

#endif
