/* The event hub (events.h): a ring of serialized events under one mutex, readers with
 * cursors and an eventfd each, and the store subscriber that derives events from phase
 * changes. */
#include "events.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "json.h"
#include "mem.h"
#include "hash.h"

#define EVENTS_SEEN_BUCKETS 256
#define EVENTS_MAX_LISTENERS 8

struct events_slot {
    int64_t id;
    char *type, *workload, *tenant, *instance; /* for filtering */
    char *json;
};

/* The last state seen of a store object, so a change of phase is told from any write. */
struct events_seen {
    char *key; /* kind/name */
    char *state;
    struct events_seen *next;
};

struct bh_events_reader {
    struct bh_events *hub;
    int64_t next; /* id of the next event to read */
    int efd;
    char *types, *workload, *tenant, *instance;
    struct bh_events_reader *prev, *nextr;
};

struct bh_events {
    pthread_mutex_t lock;
    struct events_slot *ring;
    size_t cap, lag_max;
    int64_t first_id, next_id; /* ids in the ring: [max(first_id, next_id - cap), next_id) */
    struct bh_events_reader *readers;
    long long n_readers, n_cut;
    struct events_seen *seen[EVENTS_SEEN_BUCKETS];
    struct {
        bh_events_fn fn;
        void *ud;
    } listeners[EVENTS_MAX_LISTENERS];
    int n_listeners;
};

struct bh_events *bh_events_new(size_t ring, size_t lag_max)
{
    struct bh_events *h = bh_xcalloc(1, sizeof(*h));
    pthread_mutex_init(&h->lock, NULL);
    h->cap = ring ? ring : 1;
    h->lag_max = lag_max && lag_max <= h->cap ? lag_max : h->cap;
    h->ring = bh_xcalloc(h->cap, sizeof(*h->ring));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    h->first_id = h->next_id = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    return h;
}

static void events_slot_clear(struct events_slot *s)
{
    free(s->type);
    free(s->workload);
    free(s->tenant);
    free(s->instance);
    free(s->json);
    memset(s, 0, sizeof(*s));
}

void bh_events_free(struct bh_events *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->cap; i++)
        events_slot_clear(&h->ring[i]);
    for (int b = 0; b < EVENTS_SEEN_BUCKETS; b++)
        for (struct events_seen *s = h->seen[b], *n; s; s = n) {
            n = s->next;
            free(s->key);
            free(s->state);
            free(s);
        }
    free(h->ring);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

void bh_events_listen(struct bh_events *h, bh_events_fn fn, void *ud)
{
    if (h->n_listeners < EVENTS_MAX_LISTENERS) {
        h->listeners[h->n_listeners].fn = fn;
        h->listeners[h->n_listeners++].ud = ud;
    }
}

int64_t bh_events_last_id(struct bh_events *h)
{
    pthread_mutex_lock(&h->lock);
    int64_t id = h->next_id - 1;
    pthread_mutex_unlock(&h->lock);
    return id;
}

static int64_t events_oldest(const struct bh_events *h)
{
    int64_t lo = h->next_id - (int64_t)h->cap;
    return lo > h->first_id ? lo : h->first_id;
}

static void events_signal(int efd)
{
    uint64_t one = 1;
    /* A full counter means the reader is already woken: nothing to add. */
    if (write(efd, &one, sizeof(one)) < 0)
        return;
}

void bh_events_wake(struct bh_events *h)
{
    pthread_mutex_lock(&h->lock);
    for (struct bh_events_reader *r = h->readers; r; r = r->nextr)
        events_signal(r->efd);
    pthread_mutex_unlock(&h->lock);
}

/* Stores the event in the ring under the lock; returns its id. */
static int64_t events_append(struct bh_events *h, const char *type, const char *workload,
                             const char *tenant, cJSON *ev)
{
    pthread_mutex_lock(&h->lock);
    int64_t id = h->next_id++;
    cJSON_AddNumberToObject(ev, "id", (double)id);
    struct events_slot *s = &h->ring[(size_t)(id % (int64_t)h->cap)];
    events_slot_clear(s);
    s->id = id;
    s->type = bh_xstrdup(type);
    s->workload = workload ? bh_xstrdup(workload) : NULL;
    s->tenant = tenant ? bh_xstrdup(tenant) : NULL;
    const char *inst = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, "instance"));
    s->instance = inst ? bh_xstrdup(inst) : NULL;
    s->json = bh_json_print(ev);
    for (struct bh_events_reader *r = h->readers; r; r = r->nextr)
        events_signal(r->efd);
    pthread_mutex_unlock(&h->lock);
    return id;
}

void bh_events_publish(struct bh_events *h, const char *type, const char *workload,
                       const char *tenant, cJSON *data)
{
    if (!h) {
        cJSON_Delete(data);
        return;
    }
    cJSON *ev = cJSON_CreateObject();
    char now[32];
    bh_clock_rfc3339(now);
    cJSON_AddStringToObject(ev, "type", type);
    cJSON_AddStringToObject(ev, "time", now);
    if (workload)
        cJSON_AddStringToObject(ev, "workload", workload);
    if (tenant)
        cJSON_AddStringToObject(ev, "tenant", tenant);
    cJSON *item = data ? data->child : NULL;
    while (item) { /* move data's fields over */
        cJSON *next = item->next;
        cJSON_AddItemToObject(ev, item->string, cJSON_DetachItemViaPointer(data, item));
        item = next;
    }
    cJSON_Delete(data);
    events_append(h, type, workload, tenant, ev);
    for (int i = 0; i < h->n_listeners; i++)
        h->listeners[i].fn(type, ev, h->listeners[i].ud);
    cJSON_Delete(ev);
}

/* ---- readers ---- */

static char *events_dup_nonempty(const char *s)
{
    return s && *s ? bh_xstrdup(s) : NULL;
}

struct bh_events_reader *bh_events_reader_open(struct bh_events *h, int64_t after,
                                               const struct bh_events_filter *filter, int *resync)
{
    struct bh_events_reader *r = bh_xcalloc(1, sizeof(*r));
    r->hub = h;
    r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (filter) {
        r->types = events_dup_nonempty(filter->types);
        r->workload = events_dup_nonempty(filter->workload);
        r->tenant = events_dup_nonempty(filter->tenant);
        r->instance = events_dup_nonempty(filter->instance);
    }
    pthread_mutex_lock(&h->lock);
    *resync = after >= 0 && (after + 1 < events_oldest(h) || after >= h->next_id);
    r->next = after < 0 || *resync ? h->next_id : after + 1;
    h->n_readers++;
    r->nextr = h->readers;
    if (h->readers)
        h->readers->prev = r;
    h->readers = r;
    if (r->next < h->next_id)
        events_signal(r->efd);
    pthread_mutex_unlock(&h->lock);
    return r;
}

void bh_events_reader_close(struct bh_events_reader *r)
{
    if (!r)
        return;
    struct bh_events *h = r->hub;
    pthread_mutex_lock(&h->lock);
    if (r->prev)
        r->prev->nextr = r->nextr;
    else
        h->readers = r->nextr;
    if (r->nextr)
        r->nextr->prev = r->prev;
    h->n_readers--;
    pthread_mutex_unlock(&h->lock);
    close(r->efd);
    free(r->types);
    free(r->workload);
    free(r->tenant);
    free(r->instance);
    free(r);
}

int bh_events_reader_fd(const struct bh_events_reader *r)
{
    return r->efd;
}

/* Whether type is one of the comma-separated names in list. */
static int events_type_listed(const char *list, const char *type)
{
    size_t n = strlen(type);
    for (const char *p = list; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == n && strncmp(p, type, n) == 0)
            return 1;
        p = comma ? comma + 1 : NULL;
    }
    return 0;
}

int bh_events_type_wanted(const char *types, const char *type)
{
    return !types || !*types || events_type_listed(types, type);
}

static int events_same(const char *want, const char *have)
{
    return !want || (have && strcmp(want, have) == 0);
}

static int events_match(const struct bh_events_reader *r, const struct events_slot *s)
{
    if (r->types && !events_type_listed(r->types, s->type))
        return 0;
    if (!r->instance && strcmp(s->type, BH_EVT_INSTANCE_STATS) == 0)
        return 0; /* for watchers only */
    if (!events_same(r->instance, s->instance))
        return 0;
    return events_same(r->workload, s->workload) && events_same(r->tenant, s->tenant);
}

int bh_events_watched(struct bh_events *h, const char *instance)
{
    int found = 0;
    pthread_mutex_lock(&h->lock);
    for (struct bh_events_reader *r = h->readers; r && !found; r = r->nextr)
        found = r->instance && strcmp(r->instance, instance) == 0;
    pthread_mutex_unlock(&h->lock);
    return found;
}

void bh_events_reader_cut(struct bh_events_reader *r)
{
    pthread_mutex_lock(&r->hub->lock);
    r->hub->n_cut++;
    pthread_mutex_unlock(&r->hub->lock);
}

void bh_events_stats(struct bh_events *h, long long *readers, long long *cut)
{
    pthread_mutex_lock(&h->lock);
    *readers = h->n_readers;
    *cut = h->n_cut;
    pthread_mutex_unlock(&h->lock);
}

int bh_events_reader_lagging(struct bh_events_reader *r)
{
    uint64_t drained;
    if (read(r->efd, &drained, sizeof(drained)) < 0) {
        /* nothing signalled: the lag is measured all the same */
    }
    pthread_mutex_lock(&r->hub->lock);
    int lagging = r->hub->next_id - r->next > (int64_t)r->hub->lag_max;
    pthread_mutex_unlock(&r->hub->lock);
    return lagging;
}

enum bh_events_next bh_events_reader_next(struct bh_events_reader *r, char **json)
{
    struct bh_events *h = r->hub;
    uint64_t drained;
    if (read(r->efd, &drained, sizeof(drained)) < 0) {
        /* nothing signalled: the ring is still read below */
    }
    enum bh_events_next got = BH_EVENTS_NONE;
    pthread_mutex_lock(&h->lock);
    if (h->next_id - r->next > (int64_t)h->lag_max)
        got = BH_EVENTS_LAGGED;
    while (got == BH_EVENTS_NONE && r->next < h->next_id) {
        const struct events_slot *s = &h->ring[(size_t)(r->next % (int64_t)h->cap)];
        r->next++;
        if (events_match(r, s)) {
            *json = bh_xstrdup(s->json);
            got = BH_EVENTS_GOT;
        }
    }
    /* More may be waiting: keep the descriptor readable so the caller comes back. */
    if (got == BH_EVENTS_GOT && r->next < h->next_id)
        events_signal(r->efd);
    pthread_mutex_unlock(&h->lock);
    return got;
}

/* ---- events derived from store changes ---- */

/* Records state for key and returns the previous one (owned, NULL if none); a NULL state
 * forgets the key. */
static char *events_seen_swap(struct bh_events *h, const char *key, const char *state)
{
    pthread_mutex_lock(&h->lock);
    struct events_seen **bucket = &h->seen[bh_hash_str(BH_HASH_SEED, key) % EVENTS_SEEN_BUCKETS];
    struct events_seen **pp = bucket;
    while (*pp && strcmp((*pp)->key, key) != 0)
        pp = &(*pp)->next;
    char *old = *pp ? (*pp)->state : NULL;
    if (*pp && !state) {
        struct events_seen *gone = *pp;
        *pp = gone->next;
        free(gone->key);
        free(gone);
    } else if (*pp) {
        (*pp)->state = bh_xstrdup(state);
    } else if (state) {
        struct events_seen *s = bh_xcalloc(1, sizeof(*s));
        s->key = bh_xstrdup(key);
        s->state = bh_xstrdup(state);
        s->next = *bucket;
        *bucket = s;
    }
    pthread_mutex_unlock(&h->lock);
    return old;
}

/* The previous state of ev's object, after recording its new one (state; NULL on delete).
 * Returns 1 if the state changed. */
static int events_changed(struct bh_events *h, const struct bh_store_event *ev, const char *state,
                          char **old)
{
    bh_autofree char *key = bh_xasprintf("%s/%s", ev->kind, ev->name);
    *old = events_seen_swap(h, key, ev->type == BH_EV_DELETED ? NULL : state);
    if (ev->type == BH_EV_DELETED)
        return 1;
    return !*old || strcmp(*old, state) != 0;
}

static const char *events_phase(const cJSON *obj, const char *empty)
{
    const char *p = bh_json_str(obj, "status.phase");
    return p ? p : empty;
}

static void events_instance(struct bh_events *h, const struct bh_store_event *ev)
{
    const cJSON *o = ev->object;
    const char *phase = ev->type == BH_EV_DELETED ? "Deleted" : events_phase(o, "Unknown");
    const char *pool = bh_json_label(o, "boilerhouse.dev/pool");
    const char *pstat = bh_json_label(o, "boilerhouse.dev/pool-status");
    bh_autofree char *state = bh_xasprintf("%s|%s", phase, pstat ? pstat : "");
    bh_autofree char *old = NULL;
    if (!events_changed(h, ev, state, &old))
        return;
    const char *wl = bh_json_str(o, "spec.workload");
    const char *tenant = bh_json_str(o, "spec.tenantId");
    size_t old_len = old ? strcspn(old, "|") : 0;
    if (!old || old_len != strlen(phase) || strncmp(old, phase, old_len) != 0) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "instance", ev->name);
        cJSON_AddStringToObject(d, "phase", phase);
        if (pool)
            cJSON_AddStringToObject(d, "pool", pool);
        bh_events_publish(h, BH_EVT_INSTANCE_STATE, wl, tenant, d);
    }
    int was_ready = old && strstr(old, "|ready");
    if (pool && pstat && strcmp(pstat, "ready") == 0 && !was_ready) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "instance", ev->name);
        cJSON_AddStringToObject(d, "pool", pool);
        bh_events_publish(h, BH_EVT_POOL_READY, wl, NULL, d);
    }
}

static void events_claim(struct bh_events *h, const struct bh_store_event *ev)
{
    const cJSON *o = ev->object;
    const char *phase = events_phase(o, "Pending");
    bh_autofree char *old = NULL;
    if (!events_changed(h, ev, phase, &old))
        return;
    const char *wl = bh_json_str(o, "spec.workloadRef");
    const char *tenant = bh_json_str(o, "spec.tenantId");
    const char *detail = bh_json_str(o, "status.detail");
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "claim", ev->name);
    if (ev->type == BH_EV_DELETED) {
        if (old && strcmp(old, "Released") == 0) { /* told when it turned Released */
            cJSON_Delete(d);
            return;
        }
        const cJSON *how = cJSON_GetObjectItemCaseSensitive(bh_json_get(o, "metadata.annotations"),
                                                            "boilerhouse.dev/release");
        cJSON_AddStringToObject(d, "variant", cJSON_IsString(how) ? how->valuestring : "normal");
        bh_events_publish(h, BH_EVT_RELEASED, wl, tenant, d);
        return;
    }
    cJSON_AddStringToObject(d, "phase", phase);
    if (detail)
        cJSON_AddStringToObject(d, "detail", detail);
    if (strcmp(phase, "Released") == 0) { /* kept: an idle timeout or its workload's end */
        const char *why = bh_json_str(o, "status.releaseReason");
        cJSON_AddStringToObject(d, "variant", why ? why : BH_RELEASE_IDLE);
        bh_events_publish(h, BH_EVT_RELEASED, wl, tenant, d);
    } else {
        bh_events_publish(h, "claim.phase", wl, tenant, d);
    }
}

static void events_workload(struct bh_events *h, const struct bh_store_event *ev)
{
    const char *phase =
        ev->type == BH_EV_DELETED ? "Deleted" : events_phase(ev->object, "Creating");
    bh_autofree char *old = NULL;
    if (!events_changed(h, ev, phase, &old))
        return;
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "phase", phase);
    const char *detail = bh_json_str(ev->object, "status.detail");
    if (detail && ev->type != BH_EV_DELETED)
        cJSON_AddStringToObject(d, "detail", detail);
    bh_events_publish(h, BH_EVT_WORKLOAD_PHASE, ev->name, NULL, d);
}

static void events_pool(struct bh_events *h, const struct bh_store_event *ev)
{
    const cJSON *o = ev->object;
    long long ready = bh_json_int(o, "status.ready", 0);
    long long warming = bh_json_int(o, "status.warming", 0);
    long long size = bh_json_int(o, "spec.size", 0);
    bh_autofree char *state = ev->type == BH_EV_DELETED
                                  ? bh_xstrdup("deleted")
                                  : bh_xasprintf("%lld/%lld/%lld", ready, warming, size);
    bh_autofree char *old = NULL;
    if (!events_changed(h, ev, state, &old))
        return;
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "pool", ev->name);
    cJSON_AddNumberToObject(d, "ready", ev->type == BH_EV_DELETED ? 0 : (double)ready);
    cJSON_AddNumberToObject(d, "warming", ev->type == BH_EV_DELETED ? 0 : (double)warming);
    cJSON_AddNumberToObject(d, "size", ev->type == BH_EV_DELETED ? 0 : (double)size);
    if (ev->type != BH_EV_DELETED && bh_json_str(o, "status.phase"))
        cJSON_AddStringToObject(d, "phase", bh_json_str(o, "status.phase"));
    bh_events_publish(h, BH_EVT_POOL_STATUS, bh_json_str(o, "spec.workloadRef"), NULL, d);
}

void bh_events_store_event(const struct bh_store_event *ev, void *ud)
{
    static const struct {
        const char *kind;
        void (*derive)(struct bh_events *h, const struct bh_store_event *ev);
    } table[] = {
        {"Instance", events_instance},
        {"BoilerhouseClaim", events_claim},
        {"BoilerhouseWorkload", events_workload},
        {"BoilerhousePool", events_pool},
    };
    for (size_t i = 0; i < BH_ARRAY_LEN(table); i++)
        if (strcmp(ev->kind, table[i].kind) == 0)
            table[i].derive(ud, ev);
}
