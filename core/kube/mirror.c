/* The store as a cluster's cache: list + watch threads per kind, and the writer thread that
 * sends the store's changes back (mirror.h). */
#include "mirror.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "mirror_int.h"
#include "resource.h"
#include "store.h"

#define MIRROR_NKINDS 4
#define MIRROR_PAGE 500
#define MIRROR_TRIES 5 /* a write that keeps conflicting is retried this often */
#define MIRROR_BACKOFF_MIN_MS 250
#define MIRROR_BACKOFF_MAX_MS 8000
#define MIRROR_OUR_FINALIZERS "boilerhouse.dev/"

static const char *const mirror_kinds[MIRROR_NKINDS] = {"BoilerhouseWorkload", "BoilerhousePool",
                                                        "BoilerhouseClaim", "BoilerhouseTrigger"};

struct mirror_watch {
    struct bh_kube_mirror *m;
    const char *kind;
    char *path; /* the collection */
    char *rv;   /* where the watch resumes */
    pthread_t th;
};

struct bh_kube_mirror {
    struct bh_kube_mirror_cfg cfg;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    struct mirror_table tab; /* cluster copies and queued store changes (under mu) */
    char *sending;           /* the key the writer is sending now, or NULL (under mu) */
    volatile int stop;
    struct mirror_watch w[MIRROR_NKINDS];
    pthread_t writer;
    int threads;
};

/* The mirror writing into the store on this thread: its own changes are not sent back. */
static __thread const struct bh_kube_mirror *mirror_applying;

/* ---- helpers ---- */

static char *mirror_key(const char *kind, const char *name)
{
    return bh_xasprintf("%s/%s", kind, name);
}

static int mirror_kind_index(const char *kind)
{
    for (int i = 0; i < MIRROR_NKINDS; i++)
        if (strcmp(mirror_kinds[i], kind) == 0)
            return i;
    return -1;
}

static char *mirror_collection(const struct bh_kube_mirror *m, const char *kind)
{
    return bh_xasprintf("/apis/%s/namespaces/%s/%s", BH_API_VERSION,
                        bh_kube_client_namespace(m->cfg.client), bh_resource_plural(kind));
}

static char *mirror_object_path(const struct bh_kube_mirror *m, const char *kind, const char *name,
                                const char *sub)
{
    bh_autofree char *coll = mirror_collection(m, kind);
    return bh_xasprintf("%s/%s%s", coll, name, sub ? sub : "");
}

/* resourceVersions are opaque to clients, but every API server on etcd gives the revision
 * as a decimal number; one that is not (some other storage) compares as unknown (-1). */
static long long mirror_rv_num(const cJSON *obj)
{
    const char *rv = bh_json_str(obj, "metadata.resourceVersion");
    if (!rv || !*rv || strspn(rv, "0123456789") != strlen(rv))
        return -1;
    return strtoll(rv, NULL, 10);
}

/* ---- cluster to store ---- */

/* A store change of key is queued or being sent. */
static int mirror_is_pending(struct bh_kube_mirror *m, const char *key)
{
    pthread_mutex_lock(&m->mu);
    int d = mirror_table_queued(&m->tab, key) || (m->sending && strcmp(m->sending, key) == 0);
    pthread_mutex_unlock(&m->mu);
    return d;
}

/* Replaces the cluster copy held for key when obj is newer; 1 if it was. */
static int mirror_see(struct bh_kube_mirror *m, const char *key, const cJSON *obj)
{
    pthread_mutex_lock(&m->mu);
    const struct mirror_entry *e = mirror_table_find(&m->tab, key);
    const cJSON *old = e ? e->seen : NULL;
    long long have = old ? mirror_rv_num(old) : -1, got = mirror_rv_num(obj);
    int newer = !old || have < 0 || got < 0 || got > have;
    if (newer)
        mirror_table_set_seen(&m->tab, key, cJSON_Duplicate(obj, 1));
    pthread_mutex_unlock(&m->mu);
    return newer;
}

static void mirror_forget(struct bh_kube_mirror *m, const char *key)
{
    pthread_mutex_lock(&m->mu);
    mirror_table_set_seen(&m->tab, key, NULL);
    pthread_mutex_unlock(&m->mu);
}

static void mirror_remove_local(struct bh_kube_mirror *m, const char *kind, const char *name)
{
    struct bh_err err;
    mirror_applying = m;
    if (bh_store_remove_replica(m->cfg.store, kind, name, &err) < 0)
        bh_warn("kube", "%s %s: remove from the store: %s", kind, name, err.msg);
    mirror_applying = NULL;
}

static void mirror_copy(cJSON *dst, const cJSON *src, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(src, key);
    cJSON_DeleteItemFromObjectCaseSensitive(dst, key);
    if (v)
        cJSON_AddItemToObject(dst, key, cJSON_Duplicate(v, 1));
}

/* The store's status in place of copy's: the store has a status the cluster has not got yet. */
static void mirror_keep_status(struct bh_kube_mirror *m, const char *kind, cJSON *copy)
{
    cJSON *local = NULL;
    struct bh_err err;
    if (bh_store_get(m->cfg.store, kind, bh_json_str(copy, "metadata.name"), &local, &err) < 0)
        return;
    mirror_copy(copy, local, "status");
    cJSON_Delete(local);
}

/* keep_status: the store's copy has changes not sent yet (the status the controllers wrote
 * while an earlier write of ours was on its way: its echo must not undo them). */
static void mirror_put_local(struct bh_kube_mirror *m, const char *kind, const cJSON *obj,
                             int keep_status)
{
    const char *name = bh_json_str(obj, "metadata.name");
    cJSON *copy = cJSON_Duplicate(obj, 1);
    struct bh_err err = {0};
    if (keep_status)
        mirror_keep_status(m, kind, copy);
    if (m->cfg.admit && m->cfg.admit(copy, m->cfg.ud, &err) < 0) {
        bh_warn("kube", "%s %s from the cluster refused: %s", kind, name, err.msg);
        mirror_remove_local(m, kind, name);
    } else {
        mirror_applying = m;
        if (bh_store_put_replica(m->cfg.store, copy, NULL, &err) < 0)
            bh_warn("kube", "%s %s: store: %s", kind, name, err.msg);
        mirror_applying = NULL;
    }
    cJSON_Delete(copy);
}

static void mirror_apply(struct bh_kube_mirror *m, const char *kind, const char *type,
                         const cJSON *obj)
{
    const char *name = bh_json_str(obj, "metadata.name");
    if (!name)
        return;
    bh_autofree char *key = mirror_key(kind, name);
    if (strcmp(type, "DELETED") == 0) {
        mirror_forget(m, key);
        mirror_remove_local(m, kind, name);
        return;
    }
    if (mirror_see(m, key, obj))
        mirror_put_local(m, kind, obj, mirror_is_pending(m, key));
}

static int mirror_name_cmp(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    return strcmp(x ? x : "", y ? y : "");
}

/* After a list: what the store has of kind and the list has not is gone from the cluster
 * (unless it is a store change not sent yet). */
static void mirror_drop_missing(struct bh_kube_mirror *m, const char *kind, const cJSON *items)
{
    cJSON *local = NULL;
    struct bh_err err;
    if (bh_store_list(m->cfg.store, kind, NULL, &local, NULL, &err) < 0)
        return;
    size_t n = 0;
    const char **names = bh_xcalloc((size_t)cJSON_GetArraySize(items) + 1, sizeof(*names));
    const cJSON *o, *it;
    cJSON_ArrayForEach(it, items)
        names[n++] = bh_json_str(it, "metadata.name");
    qsort(names, n, sizeof(*names), mirror_name_cmp); /* a re-list of n objects is O(n log n) */
    cJSON_ArrayForEach(o, local) {
        const char *name = bh_json_str(o, "metadata.name");
        int found = bsearch(&name, names, n, sizeof(*names), mirror_name_cmp) != NULL;
        bh_autofree char *key = mirror_key(kind, name);
        if (!found && !mirror_is_pending(m, key)) {
            mirror_forget(m, key);
            mirror_remove_local(m, kind, name);
        }
    }
    free(names);
    cJSON_Delete(local);
}

static int mirror_list(struct mirror_watch *w, struct bh_err *err)
{
    cJSON *items = NULL;
    char *rv = NULL;
    if (bh_kube_list(w->m->cfg.client, w->path, MIRROR_PAGE, &items, &rv, err) < 0)
        return bh_err_wrap(err, "list %s", w->kind);
    const cJSON *it;
    cJSON_ArrayForEach(it, items)
        mirror_apply(w->m, w->kind, "ADDED", it);
    mirror_drop_missing(w->m, w->kind, items);
    cJSON_Delete(items);
    free(w->rv);
    w->rv = rv;
    return 0;
}

static int mirror_on_event(const char *type, const cJSON *obj, void *ud)
{
    struct mirror_watch *w = ud;
    mirror_apply(w->m, w->kind, type, obj);
    return 0;
}

static void *mirror_watch_main(void *arg)
{
    struct mirror_watch *w = arg;
    struct bh_kube_mirror *m = w->m;
    long long failures = 0;
    int relist = 0;
    int timeout = m->cfg.watch_timeout_s > 0 ? m->cfg.watch_timeout_s : 300;
    while (!m->stop) {
        struct bh_err err = {0};
        int rc = relist ? mirror_list(w, &err) : 0;
        if (rc == 0) {
            relist = 0;
            rc = bh_kube_watch(m->cfg.client, w->path, &w->rv, timeout, mirror_on_event, w,
                               &m->stop, &err);
        }
        if (rc == BH_KUBE_WATCH_GONE) {
            bh_info("kube", "%s: watch from resourceVersion %s expired (410 Gone): re-listing",
                    w->kind, w->rv ? w->rv : "");
            relist = 1;
        } else if (rc < 0) {
            long ms = bh_clock_backoff_ms(++failures, MIRROR_BACKOFF_MIN_MS, MIRROR_BACKOFF_MAX_MS);
            bh_warn("kube", "%s: %s (retrying in %ld ms)", w->kind, err.msg, ms);
            if (!bh_clock_sleep_unless(&m->mu, &m->cond, &m->stop, ms))
                break;
            continue;
        }
        failures = 0;
    }
    return NULL;
}

/* ---- store to cluster ---- */

void bh_kube_mirror_on_store(const struct bh_store_event *ev, void *ud)
{
    struct bh_kube_mirror *m = ud;
    if (mirror_applying == m || mirror_kind_index(ev->kind) < 0)
        return;
    bh_autofree char *key = mirror_key(ev->kind, ev->name);
    pthread_mutex_lock(&m->mu);
    if (!m->stop) { /* stopped: nothing sends it any more */
        mirror_table_queue(&m->tab, key);
        pthread_cond_broadcast(&m->cond);
    }
    pthread_mutex_unlock(&m->mu);
}

void bh_kube_mirror_push_all(struct bh_kube_mirror *m)
{
    for (int i = 0; i < MIRROR_NKINDS; i++) {
        cJSON *local = NULL;
        struct bh_err err;
        if (bh_store_list(m->cfg.store, mirror_kinds[i], NULL, &local, NULL, &err) < 0)
            continue;
        const cJSON *o;
        pthread_mutex_lock(&m->mu);
        cJSON_ArrayForEach(o, local) {
            bh_autofree char *key = mirror_key(mirror_kinds[i], bh_json_str(o, "metadata.name"));
            mirror_table_queue(&m->tab, key);
        }
        pthread_cond_broadcast(&m->cond);
        pthread_mutex_unlock(&m->mu);
        cJSON_Delete(local);
    }
}

static cJSON *mirror_seen_copy(struct bh_kube_mirror *m, const char *key)
{
    pthread_mutex_lock(&m->mu);
    const struct mirror_entry *e = mirror_table_find(&m->tab, key);
    cJSON *c = e && e->seen ? cJSON_Duplicate(e->seen, 1) : NULL;
    pthread_mutex_unlock(&m->mu);
    return c;
}

static int mirror_same(const cJSON *a, const cJSON *b, const char *path)
{
    const cJSON *x = bh_json_get(a, path), *y = bh_json_get(b, path);
    int ex = x && !cJSON_IsNull(x) && !(cJSON_IsArray(x) && !x->child) &&
             !(cJSON_IsObject(x) && !x->child);
    int ey = y && !cJSON_IsNull(y) && !(cJSON_IsArray(y) && !y->child) &&
             !(cJSON_IsObject(y) && !y->child);
    return ex == ey && (!ex || cJSON_Compare(x, y, 1));
}

static int mirror_same_desired(const cJSON *local, const cJSON *seen)
{
    static const char *const paths[] = {"metadata.labels", "metadata.annotations",
                                        "metadata.finalizers", "spec"};
    for (size_t i = 0; i < BH_ARRAY_LEN(paths); i++)
        if (!mirror_same(local, seen, paths[i]))
            return 0;
    return 1;
}

/* A write's answer is the cluster's copy now: held (and not stored: the store already has
 * what was sent, and may have moved on since). */
static void mirror_took(struct bh_kube_mirror *m, const char *key, cJSON *answer)
{
    if (answer && bh_json_str(answer, "metadata.name"))
        mirror_see(m, key, answer);
    cJSON_Delete(answer);
}

static int mirror_refetch(struct bh_kube_mirror *m, const char *kind, const char *name,
                          const char *key, struct bh_err *err)
{
    bh_autofree char *path = mirror_object_path(m, kind, name, NULL);
    cJSON *fresh = NULL;
    if (bh_kube_request(m->cfg.client, "GET", path, NULL, NULL, &fresh, NULL, err) < 0)
        return -1;
    mirror_took(m, key, fresh);
    return 0;
}

/* A new object, as the cluster is to get it: user metadata and spec. */
static cJSON *mirror_new_body(const cJSON *local)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "apiVersion", BH_API_VERSION);
    cJSON_AddStringToObject(o, "kind", bh_json_str(local, "kind"));
    cJSON *md = cJSON_AddObjectToObject(o, "metadata");
    cJSON_AddStringToObject(md, "name", bh_json_str(local, "metadata.name"));
    const cJSON *lmd = cJSON_GetObjectItemCaseSensitive(local, "metadata");
    mirror_copy(md, lmd, "labels");
    mirror_copy(md, lmd, "annotations");
    mirror_copy(md, lmd, "finalizers");
    mirror_copy(o, local, "spec");
    return o;
}

/* One write of what the store has (local) over what the cluster has (seen). */
static int mirror_push_desired(struct bh_kube_mirror *m, const char *kind, const char *key,
                               const cJSON *local, const cJSON *seen, struct bh_err *err)
{
    const char *name = bh_json_str(local, "metadata.name");
    cJSON *answer = NULL;
    int rc;
    if (!seen) {
        bh_autofree char *coll = mirror_collection(m, kind);
        cJSON *body = mirror_new_body(local);
        rc = bh_kube_request(m->cfg.client, "POST", coll, body, NULL, &answer, NULL, err);
        cJSON_Delete(body);
    } else {
        bh_autofree char *path = mirror_object_path(m, kind, name, NULL);
        cJSON *body = cJSON_Duplicate(seen, 1);
        cJSON *md = cJSON_GetObjectItemCaseSensitive(body, "metadata");
        const cJSON *lmd = cJSON_GetObjectItemCaseSensitive(local, "metadata");
        mirror_copy(md, lmd, "labels");
        mirror_copy(md, lmd, "annotations");
        mirror_copy(md, lmd, "finalizers");
        cJSON_DeleteItemFromObjectCaseSensitive(md, "managedFields");
        mirror_copy(body, local, "spec");
        rc = bh_kube_request(m->cfg.client, "PUT", path, body, NULL, &answer, NULL, err);
        cJSON_Delete(body);
    }
    if (rc == 0)
        mirror_took(m, key, answer);
    return rc;
}

static int mirror_push_status(struct bh_kube_mirror *m, const char *kind, const char *key,
                              const cJSON *local, const cJSON *seen, struct bh_err *err)
{
    if (m->cfg.may_write_status && !m->cfg.may_write_status(m->cfg.ud)) {
        bh_debug("kube", "%s: status not written (not the leader)", key);
        return 0;
    }
    bh_autofree char *path =
        mirror_object_path(m, kind, bh_json_str(local, "metadata.name"), "/status");
    cJSON *body = cJSON_Duplicate(seen, 1);
    cJSON_DeleteItemFromObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(body, "metadata"),
                                            "managedFields");
    mirror_copy(body, local, "status");
    cJSON *answer = NULL;
    int rc = bh_kube_request(m->cfg.client, "PUT", path, body, NULL, &answer, NULL, err);
    cJSON_Delete(body);
    if (rc == 0)
        mirror_took(m, key, answer);
    return rc;
}

/* The stored copy is gone after its finalizers ran: so must ours be from the cluster's. */
static int mirror_push_release(struct bh_kube_mirror *m, const char *kind, const char *key,
                               const cJSON *seen, struct bh_err *err)
{
    cJSON *body = cJSON_Duplicate(seen, 1);
    cJSON *fin = bh_json_get(body, "metadata.finalizers");
    int changed = 0;
    for (int i = cJSON_GetArraySize(fin) - 1; i >= 0; i--) {
        const char *f = cJSON_GetStringValue(cJSON_GetArrayItem(fin, i));
        if (f && strncmp(f, MIRROR_OUR_FINALIZERS, strlen(MIRROR_OUR_FINALIZERS)) == 0) {
            cJSON_DeleteItemFromArray(fin, i);
            changed = 1;
        }
    }
    int rc = 0;
    if (changed) {
        bh_autofree char *path =
            mirror_object_path(m, kind, bh_json_str(seen, "metadata.name"), NULL);
        cJSON *answer = NULL;
        rc = bh_kube_request(m->cfg.client, "PUT", path, body, NULL, &answer, NULL, err);
        if (rc == 0)
            mirror_took(m, key, answer);
    }
    cJSON_Delete(body);
    return rc;
}

static int mirror_push_delete(struct bh_kube_mirror *m, const char *kind, const char *name,
                              struct bh_err *err)
{
    bh_autofree char *path = mirror_object_path(m, kind, name, NULL);
    return bh_kube_request(m->cfg.client, "DELETE", path, NULL, NULL, NULL, NULL, err);
}

/* One attempt to make the cluster's object what the store has. */
static int mirror_push_once(struct bh_kube_mirror *m, const char *kind, const char *name,
                            const char *key, struct bh_err *err)
{
    cJSON *local = NULL;
    struct bh_err gerr;
    if (bh_store_get(m->cfg.store, kind, name, &local, &gerr) < 0)
        local = NULL;
    cJSON *seen = mirror_seen_copy(m, key);
    int seen_deleting = bh_json_str(seen, "metadata.deletionTimestamp") != NULL;
    int local_deleting = bh_json_str(local, "metadata.deletionTimestamp") != NULL;
    int rc = 0;
    if (!local && seen)
        rc = seen_deleting ? mirror_push_release(m, kind, key, seen, err)
                           : mirror_push_delete(m, kind, name, err);
    else if (local && local_deleting && !seen_deleting)
        rc = seen ? mirror_push_delete(m, kind, name, err) : 0;
    else if (local && (!seen || !mirror_same_desired(local, seen)))
        rc = mirror_push_desired(m, kind, key, local, seen, err);
    if (rc == 0 && local && !local_deleting) {
        cJSON_Delete(seen);
        seen = mirror_seen_copy(m, key);
        if (seen && !mirror_same(local, seen, "status"))
            rc = mirror_push_status(m, kind, key, local, seen, err);
    }
    cJSON_Delete(local);
    cJSON_Delete(seen);
    return rc;
}

/* The cluster refused what the store has: the store goes back to the cluster's copy (the
 * cluster is the truth). */
static void mirror_revert(struct bh_kube_mirror *m, const char *kind, const char *name,
                          const char *key)
{
    cJSON *seen = mirror_seen_copy(m, key);
    if (seen)
        mirror_put_local(m, kind, seen, 0);
    else
        mirror_remove_local(m, kind, name);
    cJSON_Delete(seen);
}

/* 0 when done (or nothing can be done: the object is gone), -1 to retry later. */
static int mirror_push(struct bh_kube_mirror *m, const char *key)
{
    const char *slash = strchr(key, '/');
    bh_autofree char *kind = bh_xstrndup(key, (size_t)(slash - key));
    const char *name = slash + 1;
    for (int i = 0; i < MIRROR_TRIES; i++) {
        struct bh_err err = {0};
        if (mirror_push_once(m, kind, name, key, &err) == 0)
            return 0;
        if (err.code == BH_ENOTFOUND)
            return 0; /* the cluster removed it; its DELETED event removes the copy */
        if (err.code == BH_EINVAL || err.code == BH_EFORBIDDEN) {
            bh_warn("kube", "%s: the cluster refused the store's change: %s", key, err.msg);
            mirror_revert(m, kind, name, key);
            return 0;
        }
        if (err.code != BH_ECONFLICT) {
            bh_warn("kube", "%s: write to the cluster: %s", key, err.msg);
            return -1;
        }
        /* Someone else wrote it since: read it again, and write over it. */
        if (mirror_refetch(m, kind, name, key, &err) < 0 && err.code != BH_ENOTFOUND)
            return -1;
    }
    bh_warn("kube", "%s: still conflicting after %d tries", key, MIRROR_TRIES);
    return -1;
}

/* The oldest queued key (owned), waiting for one; NULL when stopping. */
static char *mirror_next_dirty(struct bh_kube_mirror *m)
{
    pthread_mutex_lock(&m->mu);
    while (!m->stop && !m->tab.qhead)
        pthread_cond_wait(&m->cond, &m->mu);
    char *key = NULL;
    if (!m->stop) {
        key = mirror_table_pop(&m->tab);
        free(m->sending);
        m->sending = bh_xstrdup(key);
    }
    pthread_mutex_unlock(&m->mu);
    return key;
}

static void *mirror_writer_main(void *arg)
{
    struct bh_kube_mirror *m = arg;
    long long failures = 0;
    char *key;
    while ((key = mirror_next_dirty(m))) {
        if (mirror_push(m, key) < 0) {
            pthread_mutex_lock(&m->mu);
            mirror_table_queue(&m->tab, key);
            pthread_mutex_unlock(&m->mu);
            bh_clock_sleep_unless(
                &m->mu, &m->cond, &m->stop,
                bh_clock_backoff_ms(++failures, MIRROR_BACKOFF_MIN_MS, MIRROR_BACKOFF_MAX_MS));
        } else {
            failures = 0;
        }
        pthread_mutex_lock(&m->mu);
        free(m->sending);
        m->sending = NULL;
        pthread_cond_broadcast(&m->cond); /* a flush may be waiting for the queue to drain */
        pthread_mutex_unlock(&m->mu);
        free(key);
    }
    return NULL;
}

size_t bh_kube_mirror_flush(struct bh_kube_mirror *m, int timeout_ms)
{
    struct timespec until;
    bh_clock_deadline(CLOCK_REALTIME, timeout_ms, &until); /* the clock of m->cond */
    pthread_mutex_lock(&m->mu);
    int timed_out = 0;
    while ((m->tab.queued || m->sending) && !timed_out)
        timed_out = pthread_cond_timedwait(&m->cond, &m->mu, &until) == ETIMEDOUT;
    size_t left = m->tab.queued + (m->sending != NULL);
    pthread_mutex_unlock(&m->mu);
    return left;
}

/* ---- lifecycle ---- */

int bh_kube_mirror_start(const struct bh_kube_mirror_cfg *cfg, struct bh_kube_mirror **out,
                         struct bh_err *err)
{
    struct bh_kube_mirror *m = bh_xcalloc(1, sizeof(*m));
    m->cfg = *cfg;
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cond, NULL);
    mirror_table_init(&m->tab);
    for (int i = 0; i < MIRROR_NKINDS; i++) {
        m->w[i] = (struct mirror_watch){m, mirror_kinds[i], mirror_collection(m, mirror_kinds[i]),
                                        NULL, 0};
        if (mirror_list(&m->w[i], err) < 0) {
            bh_kube_mirror_stop(m);
            bh_kube_mirror_free(m);
            return -1;
        }
    }
    for (int i = 0; i < MIRROR_NKINDS; i++)
        if (pthread_create(&m->w[i].th, NULL, mirror_watch_main, &m->w[i]) == 0)
            m->threads = i + 1;
    if (m->threads < MIRROR_NKINDS || pthread_create(&m->writer, NULL, mirror_writer_main, m)) {
        bh_kube_mirror_stop(m);
        bh_kube_mirror_free(m);
        return bh_err_set(err, BH_EIO, "kube mirror: cannot start threads");
    }
    m->threads++;
    *out = m;
    return 0;
}

void bh_kube_mirror_stop(struct bh_kube_mirror *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->mu);
    m->stop = 1;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->mu);
    for (int i = 0; i < m->threads && i < MIRROR_NKINDS; i++)
        pthread_join(m->w[i].th, NULL);
    if (m->threads > MIRROR_NKINDS)
        pthread_join(m->writer, NULL);
    m->threads = 0;
}

void bh_kube_mirror_free(struct bh_kube_mirror *m)
{
    if (!m)
        return;
    for (int i = 0; i < MIRROR_NKINDS; i++) {
        free(m->w[i].path);
        free(m->w[i].rv);
    }
    mirror_table_free(&m->tab);
    free(m->sending);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->cond);
    free(m);
}
