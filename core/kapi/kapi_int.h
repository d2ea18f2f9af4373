/* Between the Kubernetes-compatible API's listener (kapi.c) and its handlers. */
#ifndef BH_KAPI_INT_H
#define BH_KAPI_INT_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "ctx.h"
#include "err.h"
#include "kapi.h"

struct MHD_Connection;

struct bh_kapi_req {
    struct bh_ctx *ctx;
    struct MHD_Connection *conn;
    const char *method;
    const struct bh_kapi_path *path;
    const char *body; /* NUL-terminated, may be NULL */
    size_t body_len;
    const char *content_type; /* may be NULL */
    int want_table;           /* Accept asked for as=Table */
};

/* A watch the listener streams after the handler returns: events of kind from rv on. */
struct bh_kapi_watch {
    const char *kind; /* static */
    int64_t rv;
    struct bh_kapi_sel labels, fields;
    int table, bookmarks;
    int initial; /* first the current objects, as ADDED events */
    long long deadline_ms;
    char name[254]; /* only this object, when set */
};

#define BH_KAPI_WARN_MAX 8
struct bh_kapi_resp {
    int status;
    cJSON *json;                 /* owned */
    struct bh_kapi_watch *watch; /* owned; set instead of json to stream */
    /* Warning: headers (fieldValidation=Warn), which kubectl prints as "Warning: ..." */
    char warnings[BH_KAPI_WARN_MAX][256];
    int n_warnings;
    int retry_after; /* > 0: sent as Retry-After */
    /* Set instead of json: bytes sent as they are, of this type (static). Owned. */
    char *raw;
    size_t raw_len;
    const char *raw_type;
};

/* Query parameter or NULL. */
const char *bh_kapi_query(const struct bh_kapi_req *req, const char *key);

/* ---- Status objects (kapi_status.c); all take over nothing and fill resp ---- */
void bh_kapi_status(struct bh_kapi_resp *resp, int code, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* A store/validation error about (kind, name): Invalid (with causes), NotFound, AlreadyExists,
 * Conflict... with the message kubectl prints. obj (optional) supplies invalid values. */
void bh_kapi_status_from_err(struct bh_kapi_resp *resp, const struct bh_err *err,
                             const char *resource, const char *kind, const char *name,
                             const cJSON *obj);
struct bh_ssa_result;
/* A server-side apply's conflicts: 409 with FieldManagerConflict causes. */
void bh_kapi_status_conflicts(struct bh_kapi_resp *resp, const struct bh_ssa_result *res,
                              const char *resource, const char *kind, const char *name);
/* Adds a Warning: header (at most BH_KAPI_WARN_MAX; more are dropped). */
void bh_kapi_warn(struct bh_kapi_resp *resp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void bh_kapi_status_ok(struct bh_kapi_resp *resp, const char *resource, const char *name);
void bh_kapi_json(struct bh_kapi_resp *resp, int status, cJSON *body);

/* ---- handlers ---- */
void bh_kapi_discovery(const struct bh_kapi_req *req, struct bh_kapi_resp *resp);
void bh_kapi_openapi(const struct bh_kapi_req *req, struct bh_kapi_resp *resp);
void bh_kapi_objects(const struct bh_kapi_req *req, struct bh_kapi_resp *resp);
void bh_kapi_core(const struct bh_kapi_req *req, struct bh_kapi_resp *resp);

/* A printer column of a kind, as its CRD's additionalPrinterColumns has it. */
struct bh_kapi_column {
    const char *name, *type, *json_path; /* json_path: ".spec.image.ref" */
};
#define BH_KAPI_COLUMNS_MAX 6
/* One of the four kinds as the API serves it; its names (plural, short name) are the store's
 * (bh_resource_plural, bh_resource_short_name). */
struct bh_kapi_kind {
    const char *kind;
    struct bh_kapi_column columns[BH_KAPI_COLUMNS_MAX]; /* ends at a NULL name */
};
extern const struct bh_kapi_kind bh_kapi_kinds[];
extern const size_t bh_kapi_n_kinds;
const struct bh_kapi_kind *bh_kapi_kind_by_plural(const char *plural);
const struct bh_kapi_kind *bh_kapi_kind_by_name(const char *kind);

/* The four kinds' printer columns and Tables (kapi_objects.c), for the watch stream too. The
 * rows take the items' metadata (moved: items are left without it; callers drop them). */
cJSON *bh_kapi_table(const char *kind, cJSON *items, int64_t rv);
/* A Table of items with these columns (ending at a NULL name) after Name; the same. */
cJSON *bh_kapi_table_of(const struct bh_kapi_column *columns, cJSON *items, int64_t rv);
/* Its parts, for the watch fan-out, which prints a one-row Table without building one: the
 * columnDefinitions (Name, then columns) and one row's cells for obj. */
cJSON *bh_kapi_table_columns(const struct bh_kapi_column *columns);
cJSON *bh_kapi_table_cells(const struct bh_kapi_column *columns, const cJSON *obj);
/* Fills what the API shows but the store does not keep (namespace). In place. */
void bh_kapi_decorate(cJSON *obj);

/* ---- watch fan-out (kapi_fanout.c) ---- */

struct bh_store;
struct bh_kapi_fanout;
/* Starts the feeder thread that reads the store's change log for every watch. */
struct bh_kapi_fanout *bh_kapi_fanout_start(struct bh_store *store);
void bh_kapi_fanout_stop(struct bh_kapi_fanout *f);
/* bh_store_events_since(kind, since, timeout_ms) answered from memory when it holds every
 * event after since, else by the store (BH_ECONFLICT: since was compacted away). */
int bh_kapi_fanout_since(struct bh_kapi_fanout *f, const char *kind, int64_t since, int timeout_ms,
                         cJSON **out, struct bh_err *err);

/* The CRDs of crds/ (YAML, NUL-terminated; NULL-ended), compiled in by
 * scripts/embed-crds.cmake: OpenAPI takes their field descriptions. */
extern const char *const bh_kapi_crd_texts[];

/* A growing byte buffer (owned data). */
struct bh_kapi_buf {
    char *data;
    size_t len, cap;
};
/* A watch's read of the shared lines: kind's events after since that match takes (called under
 * the fan-out's lock with the decorated object: quick, and no calls back), as JSON or Table. */
struct bh_kapi_fanout_lines {
    const char *kind;
    int table;       /* the one-row Table lines (as=Table) instead of the objects */
    int had_columns; /* in/out: the watch has sent a Table with its columnDefinitions; as the
                      * API server does, later Tables of the stream have none (null) */
    int64_t since;   /* in: after this; out: the newest version looked at */
    int (*match)(const cJSON *obj, void *ud);
    void *ud;
};
/* Appends the events' lines ({"type","object"} and a newline, as a watch sends them) to
 * out, waiting up to timeout_ms for one. 1 when memory does not hold every event after since
 * (the caller reads with bh_kapi_fanout_since, which asks the store), else 0. */
int bh_kapi_fanout_lines(struct bh_kapi_fanout *f, struct bh_kapi_fanout_lines *r, int timeout_ms,
                         struct bh_kapi_buf *out);

/* Request bodies: JSON or YAML object, parsed; answers 400 itself. */
int bh_kapi_body(const struct bh_kapi_req *req, struct bh_kapi_resp *resp, cJSON **out);

#endif
