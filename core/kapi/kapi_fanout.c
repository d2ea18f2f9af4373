/* Watch fan-out (kapi.h): one feeder thread reads the store's change log once and keeps the
 * recent events in memory; every watch reads them from there. Without it each watch queried
 * SQLite itself under the store's one mutex, so a write woke every watcher into a queue (and
 * the next write waited behind them). A watcher whose version is older than what memory holds,
 * or any trouble in the feeder, goes to the store as before (which answers 410 when the version
 * has been compacted away).
 *
 * The feeder also prints each event of the four kinds once, as the line a JSON watch sends
 * (the object decorated as the API shows it), and, once a Table watch (`kubectl get bhc -w`)
 * has been seen, as a one-row Table with the kind's printer columns: before it wakes anyone,
 * so no watcher waits for another to print it (an event from before the first
 * Table watch is printed by the first Table watch that reaches it). The Table line is written
 * as text around the row's cells and the object's metadata, not built as a cJSON Table and
 * printed; its columnDefinitions are null, and a watch's first Table gets the kind's column
 * definitions (printed once per kind) spliced in, as the API server sends them: in the first
 * event only (kubectl keeps them for the rest). Watchers take those shared lines, filtered
 * under a read lock, side by side, instead of copying and printing every event for themselves;
 * they wait for the next change on a futex, not on a condition variable (see rw below). */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "clock.h"
#include "kapi_int.h"
#include "mem.h"
#include "store.h"

#define FANOUT_RING 4096 /* events kept */
/* The feeder's wait per store read. Stopping wakes it (bh_store_wake); this bounds the wait
 * only when the wake came between its stop check and its store read. */
#define FANOUT_FEED_WAIT_MS 1000
/* A Table line's columnDefinitions, but in a watch's first (fanout_take_table). */
#define FANOUT_NO_COLUMNS "null"

struct fanout_ev {
    int64_t rv;
    char *kind;
    cJSON *ev;           /* {"type", "object"}, the object decorated (bh_kapi_decorate) */
    char *line;          /* ev printed, with its newline; NULL for kinds the API does not serve */
    size_t size;         /* of line */
    char *_Atomic table; /* ev's object as a one-row Table, null columnDefinitions; or NULL */
    size_t table_size;
    size_t table_columns; /* offset of that null in table */
};

struct bh_kapi_fanout {
    struct bh_store *store;
    pthread_t feeder;
    /* The ring: the feeder writes it, watchers read it side by side. With a mutex and a
     * condition variable, every event woke all the watchers into a queue on the mutex, each
     * handing it to the next (a chain of wake-ups on 2 CPUs, with CPU to spare). */
    pthread_rwlock_t rw;
    pthread_mutex_t print_mu; /* a Table line printed by a watch (fanout_take_table) */
    atomic_uint grew;         /* bumped on every change; watchers wait on it (futex) */
    struct fanout_ev ring[FANOUT_RING];
    size_t head, n;      /* oldest at head */
    int64_t floor, last; /* the ring holds every event with floor < rv <= last */
    int broken, stop;
    atomic_int tables; /* a Table watch has read: the feeder prints Table lines too */
    char **columns;    /* per kind (bh_kapi_kinds' order): its columnDefinitions, printed */
    size_t *columns_size;
};

static int64_t fanout_rv(const cJSON *ev)
{
    const char *rv = bh_json_str(ev, "object.metadata.resourceVersion");
    return rv ? strtoll(rv, NULL, 10) : 0;
}

/* ev printed with its newline, as a watch sends it; *size without the NUL. */
static char *fanout_line(const cJSON *ev, size_t *size)
{
    char *text = cJSON_PrintUnformatted(ev);
    *size = strlen(text) + 1;
    char *line = bh_xrealloc(text, *size + 1);
    line[*size - 1] = '\n';
    line[*size] = '\0';
    return line;
}

static void fanout_buf_add(struct bh_kapi_buf *b, const char *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->data = bh_xrealloc(b->data, b->cap);
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void fanout_buf_str(struct bh_kapi_buf *b, const char *s)
{
    fanout_buf_add(b, s, strlen(s));
}

static void fanout_buf_json(struct bh_kapi_buf *b, const cJSON *item)
{
    char *text = cJSON_PrintUnformatted(item);
    fanout_buf_str(b, text);
    free(text);
}

/* The line a Table watch sends for e: what bh_kapi_table prints for the one object (its
 * metadata as a PartialObjectMetadata), written around the printed cells and metadata, with
 * null columnDefinitions at e->table_columns. Reads e->ev only (the JSON line's stays). */
static void fanout_table_line(struct fanout_ev *e)
{
    const struct bh_kapi_kind *k = bh_kapi_kind_by_name(e->kind);
    const cJSON *obj = cJSON_GetObjectItemCaseSensitive(e->ev, "object");
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
    cJSON *type = cJSON_CreateString(bh_json_str(e->ev, "type") ?: "");
    cJSON *cells = bh_kapi_table_cells(k->columns, obj);
    struct bh_kapi_buf b = {0};
    char rv[24];
    snprintf(rv, sizeof(rv), "%lld", (long long)e->rv);
    fanout_buf_str(&b, "{\"type\":");
    fanout_buf_json(&b, type);
    fanout_buf_str(&b, ",\"object\":{\"kind\":\"Table\",\"apiVersion\":\"meta.k8s.io/v1\","
                       "\"metadata\":{\"resourceVersion\":\"");
    fanout_buf_str(&b, rv);
    fanout_buf_str(&b, "\"},\"columnDefinitions\":");
    e->table_columns = b.len;
    fanout_buf_str(&b, FANOUT_NO_COLUMNS ",\"rows\":[{\"cells\":");
    fanout_buf_json(&b, cells);
    fanout_buf_str(&b, ",\"object\":{\"kind\":\"PartialObjectMetadata\","
                       "\"apiVersion\":\"meta.k8s.io/v1\",\"metadata\":");
    if (md)
        fanout_buf_json(&b, md);
    else
        fanout_buf_str(&b, "{}");
    fanout_buf_str(&b, "}}]}}\n");
    cJSON_Delete(type);
    cJSON_Delete(cells);
    e->table_size = b.len;
    e->table = b.data; /* last: a watch may be reading e->table (fanout_take_table) */
}

/* The lines watches send for ev, once for every watcher; before ev is in the ring. */
static void fanout_print(struct fanout_ev *e, int tables)
{
    if (!bh_kapi_kind_by_name(e->kind))
        return;
    bh_kapi_decorate(cJSON_GetObjectItemCaseSensitive(e->ev, "object"));
    e->line = fanout_line(e->ev, &e->size);
    if (tables)
        fanout_table_line(e);
}

static void fanout_free(struct fanout_ev *e)
{
    free(e->kind);
    free(e->line);
    free(e->table);
    cJSON_Delete(e->ev);
}

/* Wakes the watchers waiting in fanout_wait: after a change to the ring, its lock let go. */
static void fanout_wake(struct bh_kapi_fanout *f)
{
    atomic_fetch_add(&f->grew, 1);
    syscall(SYS_futex, &f->grew, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* Waits until f->grew is no longer seen (read before the watcher looked at the ring, so a
 * change since is not missed) or the deadline (bh_clock_ms) passes: ETIMEDOUT then, else 0. */
static int fanout_wait(struct bh_kapi_fanout *f, unsigned seen, long long deadline)
{
    long long left = deadline - bh_clock_ms();
    if (left <= 0)
        return ETIMEDOUT;
    struct timespec ts = {.tv_sec = left / 1000, .tv_nsec = (left % 1000) * 1000000};
    if (syscall(SYS_futex, &f->grew, FUTEX_WAIT_PRIVATE, seen, &ts, NULL, 0) < 0 &&
        errno == ETIMEDOUT)
        return ETIMEDOUT;
    return 0;
}

/* Appends the store's events (owned array, emptied) and wakes the watchers. */
static void fanout_append(struct bh_kapi_fanout *f, cJSON *evs)
{
    int tables = atomic_load(&f->tables); /* now: a Table watch may have come during the wait */
    int n = cJSON_GetArraySize(evs), i = 0;
    struct fanout_ev *fresh = bh_xcalloc((size_t)n + 1, sizeof(*fresh));
    for (cJSON *ev = evs->child, *next; ev; ev = next, i++) {
        next = ev->next;
        fresh[i].rv = fanout_rv(ev);
        fresh[i].kind = bh_xstrdup(bh_json_str(ev, "object.kind") ?: "");
        fresh[i].ev = cJSON_DetachItemViaPointer(evs, ev);
        fanout_print(&fresh[i], tables);
    }
    pthread_rwlock_wrlock(&f->rw);
    for (i = 0; i < n; i++) {
        if (f->n == FANOUT_RING) { /* full: the oldest goes, and with it the floor */
            struct fanout_ev *old = &f->ring[f->head];
            f->floor = old->rv;
            fanout_free(old);
            f->head = (f->head + 1) % FANOUT_RING;
            f->n--;
        }
        f->ring[(f->head + f->n++) % FANOUT_RING] = fresh[i];
        if (fresh[i].rv > f->last)
            f->last = fresh[i].rv;
    }
    pthread_rwlock_unlock(&f->rw);
    fanout_wake(f);
    free(fresh);
}

static void *fanout_feed(void *arg)
{
    struct bh_kapi_fanout *f = arg;
    for (;;) {
        pthread_rwlock_rdlock(&f->rw);
        int stop = f->stop;
        int64_t since = f->last;
        pthread_rwlock_unlock(&f->rw);
        if (stop)
            return NULL;
        cJSON *evs = NULL;
        struct bh_err err;
        if (bh_store_events_since(f->store, NULL, since, FANOUT_FEED_WAIT_MS, &evs, &err) < 0) {
            pthread_rwlock_wrlock(&f->rw); /* watchers read the store themselves from now on */
            f->broken = 1;
            pthread_rwlock_unlock(&f->rw);
            fanout_wake(f);
            return NULL;
        }
        fanout_append(f, evs);
        cJSON_Delete(evs);
    }
}

struct bh_kapi_fanout *bh_kapi_fanout_start(struct bh_store *store)
{
    struct bh_kapi_fanout *f = bh_xcalloc(1, sizeof(*f));
    cJSON *none = NULL;
    struct bh_err err;
    f->store = store;
    f->columns = bh_xcalloc(bh_kapi_n_kinds, sizeof(*f->columns));
    f->columns_size = bh_xcalloc(bh_kapi_n_kinds, sizeof(*f->columns_size));
    for (size_t i = 0; i < bh_kapi_n_kinds; i++) {
        cJSON *cols = bh_kapi_table_columns(bh_kapi_kinds[i].columns);
        f->columns[i] = cJSON_PrintUnformatted(cols);
        f->columns_size[i] = strlen(f->columns[i]);
        cJSON_Delete(cols);
    }
    pthread_rwlock_init(&f->rw, NULL);
    pthread_mutex_init(&f->print_mu, NULL);
    /* The store's version now: the ring starts empty from there. */
    if (bh_store_list(store, "BoilerhouseWorkload", NULL, &none, &f->last, &err) < 0 ||
        pthread_create(&f->feeder, NULL, fanout_feed, f) != 0)
        f->broken = 2; /* no feeder thread to join */
    cJSON_Delete(none);
    f->floor = f->last;
    return f;
}

void bh_kapi_fanout_stop(struct bh_kapi_fanout *f)
{
    if (!f)
        return;
    pthread_rwlock_wrlock(&f->rw);
    f->stop = 1;
    int joinable = f->broken != 2;
    pthread_rwlock_unlock(&f->rw);
    bh_store_wake(f->store); /* the feeder may be waiting for the store's next change */
    if (joinable)
        pthread_join(f->feeder, NULL);
    for (size_t i = 0; i < f->n; i++)
        fanout_free(&f->ring[(f->head + i) % FANOUT_RING]);
    for (size_t i = 0; i < bh_kapi_n_kinds; i++)
        free(f->columns[i]);
    free(f->columns);
    free(f->columns_size);
    pthread_mutex_destroy(&f->print_mu);
    pthread_rwlock_destroy(&f->rw);
    free(f);
}

/* The ring's first event after since (f->n if none): the ring is in version order, so a
 * watcher looks only at what is new to it. Under the read lock. */
static size_t fanout_first_after(const struct bh_kapi_fanout *f, int64_t since)
{
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (f->ring[(f->head + mid) % FANOUT_RING].rv > since)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* Copies the ring's events of kind after since into out; the count. Under the read lock. */
static int fanout_collect(struct bh_kapi_fanout *f, const char *kind, int64_t since, cJSON *out)
{
    int got = 0;
    for (size_t i = fanout_first_after(f, since); i < f->n; i++) {
        const struct fanout_ev *e = &f->ring[(f->head + i) % FANOUT_RING];
        if (e->rv > since && strcmp(e->kind, kind) == 0) {
            cJSON_AddItemToArray(out, cJSON_Duplicate(e->ev, 1));
            got++;
        }
    }
    return got;
}

int bh_kapi_fanout_since(struct bh_kapi_fanout *f, const char *kind, int64_t since, int timeout_ms,
                         cJSON **out, struct bh_err *err)
{
    long long deadline = bh_clock_ms() + timeout_ms;
    cJSON *arr = cJSON_CreateArray();
    int direct = 0;
    for (;;) {
        unsigned seen = atomic_load(&f->grew);
        pthread_rwlock_rdlock(&f->rw);
        direct = f->broken || since < f->floor;
        int got = direct ? 0 : fanout_collect(f, kind, since, arr);
        pthread_rwlock_unlock(&f->rw);
        if (direct || got > 0 || fanout_wait(f, seen, deadline) == ETIMEDOUT)
            break;
    }
    if (direct) {
        cJSON_Delete(arr);
        return bh_store_events_since(f->store, kind, since, timeout_ms, out, err);
    }
    *out = arr;
    return 0;
}

/* Appends e's Table line to out; the watch's first one with the kind's columnDefinitions in
 * place of the null. Under the read lock. */
static void fanout_take_table(struct bh_kapi_fanout *f, struct fanout_ev *e,
                              struct bh_kapi_fanout_lines *r, struct bh_kapi_buf *out)
{
    if (!atomic_load(&e->table)) { /* from before the first Table watch: printed once, here */
        pthread_mutex_lock(&f->print_mu); /* (watches read side by side) */
        if (!atomic_load(&e->table))
            fanout_table_line(e);
        pthread_mutex_unlock(&f->print_mu);
    }
    if (r->had_columns) {
        fanout_buf_add(out, e->table, e->table_size);
        return;
    }
    size_t k = (size_t)(bh_kapi_kind_by_name(e->kind) - bh_kapi_kinds);
    size_t null_len = sizeof(FANOUT_NO_COLUMNS) - 1;
    fanout_buf_add(out, e->table, e->table_columns);
    fanout_buf_add(out, f->columns[k], f->columns_size[k]);
    fanout_buf_add(out, e->table + e->table_columns + null_len,
                   e->table_size - e->table_columns - null_len);
    r->had_columns = 1;
}

/* Appends the lines (JSON or Table, r->table) of r->kind's events after r->since that r->match
 * takes to out; moves r->since past every event looked at. Under the read lock. */
static void fanout_take_lines(struct bh_kapi_fanout *f, struct bh_kapi_fanout_lines *r,
                              struct bh_kapi_buf *out)
{
    if (r->table)
        atomic_store(&f->tables, 1);
    for (size_t i = fanout_first_after(f, r->since); i < f->n; i++) {
        struct fanout_ev *e = &f->ring[(f->head + i) % FANOUT_RING];
        r->since = e->rv;
        if (!e->line || strcmp(e->kind, r->kind) != 0 ||
            !r->match(cJSON_GetObjectItemCaseSensitive(e->ev, "object"), r->ud))
            continue;
        if (r->table)
            fanout_take_table(f, e, r, out);
        else
            fanout_buf_add(out, e->line, e->size);
    }
}

int bh_kapi_fanout_lines(struct bh_kapi_fanout *f, struct bh_kapi_fanout_lines *r, int timeout_ms,
                         struct bh_kapi_buf *out)
{
    long long deadline = bh_clock_ms() + timeout_ms;
    int rc = 0;
    for (;;) {
        unsigned seen = atomic_load(&f->grew);
        size_t had = out->len;
        pthread_rwlock_rdlock(&f->rw);
        rc = f->broken || r->since < f->floor;
        if (!rc)
            fanout_take_lines(f, r, out);
        pthread_rwlock_unlock(&f->rw);
        if (rc || out->len != had || fanout_wait(f, seen, deadline) == ETIMEDOUT)
            break;
    }
    return rc;
}
