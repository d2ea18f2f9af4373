/* Chart history (samples.h): fixed-size rings in a small hash table under one mutex, filled
 * by a sampler thread and the event hub. */
#include "samples.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

#include "clock.h"
#include "events.h"
#include "hash.h"
#include "instance.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "runtime.h"
#include "store.h"

#define SAMPLES_BUCKETS 128
#define SAMPLES_VALUES 6

/* An instance point: cpu_ns, mem, mem_limit, net, disk, disk_limit; a pool point: ready,
 * warming, size. */
struct samples_point {
    double t;
    long long v[SAMPLES_VALUES];
};

struct samples_series {
    char key[80]; /* "i/<instance>" or "p/<pool>" */
    size_t head, n;
    struct samples_point pts[BH_SAMPLES_POINTS];
    struct samples_series *next;
};

/* A claim latency or a hibernate/restore time. */
struct samples_event {
    long long id;
    double t, ms;
    long long bytes;
    char label[24]; /* the claim's source, or "hibernate" / "restore" */
};

struct samples_events {
    size_t head, n;
    struct samples_event e[BH_SAMPLES_EVENTS];
};

struct bh_samples {
    struct bh_ctx *ctx;
    pthread_mutex_t lock;
    struct samples_series *buckets[SAMPLES_BUCKETS];
    size_t n_series;
    struct samples_events claims, hibernate;
    pthread_t thread;
    int started, stopping;
    pthread_cond_t wake;
};

struct bh_samples *bh_samples_new(struct bh_ctx *ctx)
{
    struct bh_samples *s = bh_xcalloc(1, sizeof(*s));
    s->ctx = ctx;
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&s->wake, &attr);
    pthread_condattr_destroy(&attr);
    return s;
}

void bh_samples_stop(struct bh_samples *s)
{
    if (!s || !s->started)
        return;
    pthread_mutex_lock(&s->lock);
    s->stopping = 1;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    s->started = 0;
}

void bh_samples_free(struct bh_samples *s)
{
    if (!s)
        return;
    bh_samples_stop(s);
    for (int b = 0; b < SAMPLES_BUCKETS; b++)
        for (struct samples_series *x = s->buckets[b], *n; x; x = n) {
            n = x->next;
            free(x);
        }
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static double samples_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)(ts.tv_nsec / 1000000) / 1000.0;
}

/* ---- the rings (callers hold the lock) ---- */

static struct samples_series **samples_slot(struct bh_samples *s, const char *key)
{
    struct samples_series **pp = &s->buckets[bh_hash_str(BH_HASH_SEED, key) % SAMPLES_BUCKETS];
    while (*pp && strcmp((*pp)->key, key) != 0)
        pp = &(*pp)->next;
    return pp;
}

static void samples_add(struct bh_samples *s, const char *key, const struct samples_point *p)
{
    struct samples_series **pp = samples_slot(s, key);
    if (!*pp) {
        if (s->n_series >= BH_SAMPLES_SERIES_MAX)
            return; /* full: the newest objects go without history rather than grow memory */
        *pp = bh_xcalloc(1, sizeof(**pp));
        snprintf((*pp)->key, sizeof((*pp)->key), "%s", key);
        s->n_series++;
    }
    struct samples_series *x = *pp;
    x->pts[(x->head + x->n) % BH_SAMPLES_POINTS] = *p;
    if (x->n < BH_SAMPLES_POINTS)
        x->n++;
    else
        x->head = (x->head + 1) % BH_SAMPLES_POINTS;
}

/* Drops the series whose newest point is older than the window. */
static void samples_sweep(struct bh_samples *s, double now)
{
    double oldest = now - (double)BH_SAMPLES_POINTS * BH_SAMPLES_STEP_MS / 1000.0;
    for (int b = 0; b < SAMPLES_BUCKETS; b++)
        for (struct samples_series **pp = &s->buckets[b]; *pp;) {
            struct samples_series *x = *pp;
            if (x->n && x->pts[(x->head + x->n - 1) % BH_SAMPLES_POINTS].t >= oldest) {
                pp = &x->next;
                continue;
            }
            *pp = x->next;
            free(x);
            s->n_series--;
        }
}

static void samples_event_add(struct samples_events *r, const struct samples_event *e)
{
    r->e[(r->head + r->n) % BH_SAMPLES_EVENTS] = *e;
    if (r->n < BH_SAMPLES_EVENTS)
        r->n++;
    else
        r->head = (r->head + 1) % BH_SAMPLES_EVENTS;
}

/* ---- sampling ---- */

/* Bytes used and size of the instance's disk when the runtime made it a filesystem of its
 * own (a mount point); -1 otherwise (its writes then land on the state dir's disk). */
static void samples_disk(struct bh_ctx *ctx, const char *id, long long *used, long long *size)
{
    bh_autofree char *disk = bh_instance_disk_path(ctx, id);
    bh_autofree char *parent = bh_xasprintf("%s/..", disk);
    struct stat a, b;
    struct statvfs v;
    *used = *size = -1;
    if (stat(disk, &a) < 0 || stat(parent, &b) < 0 || a.st_dev == b.st_dev || statvfs(disk, &v) < 0)
        return;
    *size = (long long)v.f_blocks * (long long)v.f_frsize;
    *used = (long long)(v.f_blocks - v.f_bfree) * (long long)v.f_frsize;
}

static cJSON *samples_instance_json(const struct samples_point *p)
{
    static const char *const names[SAMPLES_VALUES] = {"cpuNs",    "memoryBytes", "memoryLimitBytes",
                                                      "netBytes", "diskBytes",   "diskLimitBytes"};
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "t", p->t);
    for (int i = 0; i < SAMPLES_VALUES; i++)
        cJSON_AddNumberToObject(o, names[i], (double)p->v[i]);
    return o;
}

/* Samples one instance object; publishes the sample when someone watches it. */
static void samples_instance(struct bh_samples *s, const cJSON *inst, double now)
{
    const char *id = bh_json_str(inst, "metadata.name");
    int pid = (int)bh_json_int(inst, "status.pid", 0);
    if (!id || pid <= 0)
        return;
    struct bh_runtime_stats st = {-1, -1, -1, -1, -1};
    struct bh_err err;
    bh_autofree char *cid = bh_runtime_container_id(id);
    if (bh_runtime_stats(s->ctx->runtime, cid, pid, &st, &err) < 0 || st.cpu_ns < 0)
        return; /* gone meanwhile, or a runtime that cannot tell */
    struct samples_point p = {now, {st.cpu_ns, st.mem_bytes, st.mem_limit, st.net_bytes, -1, -1}};
    samples_disk(s->ctx, id, &p.v[4], &p.v[5]);
    bh_autofree char *key = bh_xasprintf("i/%s", id);
    pthread_mutex_lock(&s->lock);
    samples_add(s, key, &p);
    pthread_mutex_unlock(&s->lock);
    if (s->ctx->events && bh_events_watched(s->ctx->events, id)) {
        cJSON *d = samples_instance_json(&p);
        cJSON_AddStringToObject(d, "instance", id);
        bh_events_publish(s->ctx->events, BH_EVT_INSTANCE_STATS, bh_json_str(inst, "spec.workload"),
                          bh_json_str(inst, "spec.tenantId"), d);
    }
}

static void samples_pool(struct bh_samples *s, const cJSON *pool, double now)
{
    const char *name = bh_json_str(pool, "metadata.name");
    if (!name)
        return;
    struct samples_point p = {now,
                              {bh_json_int(pool, "status.ready", 0),
                               bh_json_int(pool, "status.warming", 0),
                               bh_json_int(pool, "spec.size", 0), 0, 0, 0}};
    bh_autofree char *key = bh_xasprintf("p/%s", name);
    pthread_mutex_lock(&s->lock);
    samples_add(s, key, &p);
    pthread_mutex_unlock(&s->lock);
}

/* Calls fn for each object of kind in the store. */
static void samples_each(struct bh_samples *s, const char *kind, double now,
                         void (*fn)(struct bh_samples *, const cJSON *, double))
{
    cJSON *list = NULL;
    struct bh_err err;
    if (bh_store_list(s->ctx->store, kind, NULL, &list, NULL, &err) < 0) {
        bh_debug("samples", "cannot list %s: %s", kind, err.msg);
        return;
    }
    const cJSON *o;
    cJSON_ArrayForEach(o, list) {
        fn(s, o, now);
    }
    cJSON_Delete(list);
}

void bh_samples_tick(struct bh_samples *s)
{
    double now = samples_now();
    samples_each(s, "Instance", now, samples_instance);
    samples_each(s, "BoilerhousePool", now, samples_pool);
    pthread_mutex_lock(&s->lock);
    samples_sweep(s, now);
    pthread_mutex_unlock(&s->lock);
}

static void *samples_main(void *arg)
{
    struct bh_samples *s = arg;
    pthread_mutex_lock(&s->lock);
    while (!s->stopping) {
        pthread_mutex_unlock(&s->lock);
        bh_samples_tick(s);
        pthread_mutex_lock(&s->lock);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += BH_SAMPLES_STEP_MS / 1000;
        while (!s->stopping && pthread_cond_timedwait(&s->wake, &s->lock, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

int bh_samples_start(struct bh_samples *s, struct bh_err *err)
{
    if (pthread_create(&s->thread, NULL, samples_main, s) != 0)
        return bh_err_set(err, BH_EIO, "cannot start the stats sampler thread");
    s->started = 1;
    return 0;
}

/* ---- events ---- */

void bh_samples_on_event(const char *type, const cJSON *event, void *ud)
{
    struct bh_samples *s = ud;
    int claimed = strcmp(type, BH_EVT_CLAIMED) == 0;
    int hib = strcmp(type, BH_EVT_HIBERNATE_DONE) == 0 || strcmp(type, BH_EVT_RESTORE_DONE) == 0;
    if (!claimed && !hib)
        return;
    struct samples_event e = {
        .id = bh_json_int(event, "id", 0),
        .t = samples_now(),
        .ms = cJSON_GetNumberValue(
            cJSON_GetObjectItemCaseSensitive(event, claimed ? "latencyMs" : "ms")),
        .bytes = bh_json_int(event, "bytes", -1),
    };
    const char *label = claimed ? bh_json_str(event, "source") : NULL;
    if (hib)
        label = type[0] == 'h' ? "hibernate" : "restore";
    snprintf(e.label, sizeof(e.label), "%s", label ? label : "?");
    pthread_mutex_lock(&s->lock);
    samples_event_add(claimed ? &s->claims : &s->hibernate, &e);
    pthread_mutex_unlock(&s->lock);
}

/* ---- reading ---- */

static cJSON *samples_series_json(const struct samples_series *x, int pool)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; x && i < x->n; i++) {
        const struct samples_point *p = &x->pts[(x->head + i) % BH_SAMPLES_POINTS];
        cJSON *o = pool ? cJSON_CreateObject() : samples_instance_json(p);
        if (pool) {
            cJSON_AddNumberToObject(o, "t", p->t);
            cJSON_AddNumberToObject(o, "ready", (double)p->v[0]);
            cJSON_AddNumberToObject(o, "warming", (double)p->v[1]);
            cJSON_AddNumberToObject(o, "size", (double)p->v[2]);
        }
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

cJSON *bh_samples_instance(struct bh_samples *s, const char *id)
{
    bh_autofree char *key = bh_xasprintf("i/%s", id);
    pthread_mutex_lock(&s->lock);
    cJSON *arr = samples_series_json(*samples_slot(s, key), 0);
    pthread_mutex_unlock(&s->lock);
    return arr;
}

static cJSON *samples_events_json(const struct samples_events *r, const char *label_name)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < r->n; i++) {
        const struct samples_event *e = &r->e[(r->head + i) % BH_SAMPLES_EVENTS];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", (double)e->id);
        cJSON_AddNumberToObject(o, "t", e->t);
        cJSON_AddStringToObject(o, label_name, e->label);
        cJSON_AddNumberToObject(o, "ms", e->ms);
        if (e->bytes >= 0)
            cJSON_AddNumberToObject(o, "bytes", (double)e->bytes);
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

cJSON *bh_samples_overview(struct bh_samples *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "stepSeconds", BH_SAMPLES_STEP_MS / 1000.0);
    cJSON *pools = cJSON_AddObjectToObject(o, "pools");
    pthread_mutex_lock(&s->lock);
    for (int b = 0; b < SAMPLES_BUCKETS; b++)
        for (const struct samples_series *x = s->buckets[b]; x; x = x->next)
            if (strncmp(x->key, "p/", 2) == 0)
                cJSON_AddItemToObject(pools, x->key + 2, samples_series_json(x, 1));
    cJSON_AddItemToObject(o, "claims", samples_events_json(&s->claims, "source"));
    cJSON_AddItemToObject(o, "hibernate", samples_events_json(&s->hibernate, "kind"));
    pthread_mutex_unlock(&s->lock);
    return o;
}
