/* Idle detection that follows real activity. An instance is active when any of these moved
 * since the last sample (CPU and network as the runtime counts them): its CPU time (above a small
 * share of a core, so a busy background job counts and a sleeping shell does not), bytes through
 * its non-loopback interfaces (health probes go over loopback, so they do not count), mtimes under
 * idle.watchDirs (a bounded scan), or an API touch (claim, exec, keepalive). */
#include "idle.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "ctx.h"
#include "fs.h"
#include "hash.h"
#include "instance.h"
#include "json.h"
#include "mem.h"
#include "runtime.h"
#include "store.h"

#define IDLE_CPU_SHARE 0.02 /* of one core */
#define IDLE_SCAN_MAX_ENTRIES 20000
#define IDLE_SAMPLE_MS 5000
/* A touch reaches the store at most this often per instance; the ones between are kept in
 * memory (struct bh_idle) and merged by the next sample, so a tenant claiming in a loop costs
 * no store write per request. The stored lastActivity lags by at most this much. */
#define IDLE_TOUCH_WRITE_MS 1000
#define IDLE_TOUCH_BUCKETS 1024
/* Entries untouched this long are dropped (their instance is gone or idle anyway). */
#define IDLE_TOUCH_FORGET_MS (10 * 60 * 1000)

struct idle_touch {
    struct idle_touch *next;
    char *id;
    long long touched; /* wall ms of the newest touch */
    long long written; /* wall ms of the newest touch written to the store */
};

struct bh_idle {
    pthread_mutex_t lock;
    struct idle_touch *buckets[IDLE_TOUCH_BUCKETS];
    long long swept; /* wall ms of the last sweep of old entries */
};

/* Newest mtime (ms) under the workload's watchDirs in the instance's rootfs as seen from the
 * host (bh_fs_newest_mtime_in_root: a tenant's symlink cannot send the scan into the host). */
static long long idle_newest_mtime(struct bh_ctx *ctx, const char *id, const cJSON *workload)
{
    const cJSON *dir;
    bh_autofree char *rootfs = bh_instance_rootfs(ctx, id);
    long long newest = 0;
    cJSON_ArrayForEach(dir, bh_json_get(workload, "spec.idle.watchDirs")) {
        long long ms = cJSON_IsString(dir) ? bh_fs_newest_mtime_in_root(rootfs, dir->valuestring,
                                                                        IDLE_SCAN_MAX_ENTRIES)
                                           : 0;
        if (ms > newest)
            newest = ms;
    }
    return newest;
}

struct bh_idle *bh_idle_new(void)
{
    struct bh_idle *t = bh_xcalloc(1, sizeof(*t));
    pthread_mutex_init(&t->lock, NULL);
    return t;
}

static void idle_touch_free(struct idle_touch *e)
{
    free(e->id);
    free(e);
}

void bh_idle_free(struct bh_idle *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < IDLE_TOUCH_BUCKETS; i++)
        for (struct idle_touch *e = t->buckets[i], *next; e; e = next) {
            next = e->next;
            idle_touch_free(e);
        }
    pthread_mutex_destroy(&t->lock);
    free(t);
}

static size_t idle_touch_bucket(const char *id)
{
    return bh_hash_str(BH_HASH_SEED, id) % IDLE_TOUCH_BUCKETS;
}

/* Locked: drops entries untouched for IDLE_TOUCH_FORGET_MS, at most once a minute. */
static void idle_touch_sweep(struct bh_idle *t, long long now)
{
    if (now - t->swept < 60000)
        return;
    t->swept = now;
    for (size_t i = 0; i < IDLE_TOUCH_BUCKETS; i++)
        for (struct idle_touch **pp = &t->buckets[i], *e; (e = *pp) != NULL;) {
            if (now - e->touched > IDLE_TOUCH_FORGET_MS) {
                *pp = e->next;
                idle_touch_free(e);
            } else {
                pp = &e->next;
            }
        }
}

/* Records a touch of id at now; true if it should be written to the store now. */
static int idle_touch_note(struct bh_idle *t, const char *id, long long now)
{
    size_t b = idle_touch_bucket(id);
    pthread_mutex_lock(&t->lock);
    idle_touch_sweep(t, now);
    struct idle_touch *e = t->buckets[b];
    while (e && strcmp(e->id, id) != 0)
        e = e->next;
    if (!e) {
        e = bh_xcalloc(1, sizeof(*e));
        e->id = bh_xstrdup(id);
        e->next = t->buckets[b];
        t->buckets[b] = e;
    }
    e->touched = now;
    int write = now - e->written >= IDLE_TOUCH_WRITE_MS;
    if (write)
        e->written = now;
    pthread_mutex_unlock(&t->lock);
    return write;
}

/* Wall ms of id's newest touch kept in memory, 0 if none. */
static long long idle_touched(struct bh_idle *t, const char *id)
{
    long long ms = 0;
    if (!t)
        return 0;
    pthread_mutex_lock(&t->lock);
    for (struct idle_touch *e = t->buckets[idle_touch_bucket(id)]; e; e = e->next)
        if (strcmp(e->id, id) == 0)
            ms = e->touched;
    pthread_mutex_unlock(&t->lock);
    return ms;
}

static long long idle_last_activity_ms(const cJSON *inst)
{
    long long ms = bh_clock_parse_rfc3339(bh_json_str(inst, "status.lastActivity"));
    return ms < 0 ? 0 : ms;
}

/* Compares counters with the previous sample kept in status; true if anything moved. */
static int idle_counters_moved(cJSON *status, const char *key, long long now_value,
                               long long threshold)
{
    long long prev = bh_json_int(status, key, -1);
    bh_json_set_num(status, key, (double)now_value);
    return prev >= 0 && now_value >= 0 && now_value - prev > threshold;
}

int bh_idle_sample(struct bh_ctx *ctx, cJSON *inst, const cJSON *workload, long long *idle_ms,
                   struct bh_err *err)
{
    const char *id = bh_json_str(inst, "metadata.name");
    cJSON *status = bh_json_obj(inst, "status");
    long long now = bh_clock_wall_ms();
    long long elapsed = now - bh_json_int(status, "sampledAt", now);
    long long cpu_budget = (long long)(IDLE_CPU_SHARE * 1e6 * (double)elapsed); /* ns */
    struct bh_runtime_stats st = {-1, -1, -1, -1, -1};
    bh_autofree char *cid = bh_runtime_container_id(id);
    struct bh_err serr;
    if (bh_runtime_stats(ctx->runtime, cid, (int)bh_json_int(status, "pid", 0), &st, &serr) < 0)
        st.cpu_ns = st.net_bytes = -1; /* unknown counters count as no activity */
    int active = idle_counters_moved(status, "cpuUsageNs", st.cpu_ns, cpu_budget);
    active |= idle_counters_moved(status, "netBytes", st.net_bytes, 0);
    bh_json_set_num(status, "sampledAt", (double)now);
    long long last = idle_last_activity_ms(inst);
    long long touched = idle_touched(ctx->idle, id);
    if (touched > last) /* a touch kept in memory (IDLE_TOUCH_WRITE_MS) */
        last = touched;
    long long newest_file = idle_newest_mtime(ctx, id, workload);
    if (st.newest_mtime_ms > newest_file)
        newest_file = st.newest_mtime_ms;
    if (active)
        last = now;
    else if (newest_file > last)
        last = newest_file;
    char ts[32];
    bh_clock_rfc3339_ms(last, ts);
    bh_json_set_str(status, "lastActivity", ts);
    *idle_ms = now - last;
    /* inst was read before the sample; a touch since then (resourceVersion moved) is newer
     * activity than anything computed here, so it wins. */
    if (bh_store_update_status_lazy(ctx->store, inst, NULL, err) < 0) {
        if (err->code != BH_ECONFLICT)
            return -1;
        *idle_ms = 0;
    }
    return 0;
}

int bh_idle_touch(struct bh_ctx *ctx, const char *id, struct bh_err *err)
{
    long long now = bh_clock_wall_ms();
    if (ctx->idle && !idle_touch_note(ctx->idle, id, now))
        return 0;
    cJSON *inst = NULL;
    if (bh_store_get(ctx->store, "Instance", id, &inst, err) < 0)
        return -1;
    char ts[32];
    bh_clock_rfc3339_ms(now, ts);
    bh_json_set_str(bh_json_obj(inst, "status"), "lastActivity", ts);
    cJSON_DeleteItemFromObjectCaseSensitive(bh_json_obj(inst, "metadata"), "resourceVersion");
    /* Losing a touch in a crash only makes the instance look idle a little earlier. */
    int rc = bh_store_update_status_lazy(ctx->store, inst, NULL, err);
    cJSON_Delete(inst);
    return rc;
}

long long bh_idle_left_ms(const cJSON *inst, const cJSON *workload)
{
    long long timeout = bh_json_int(workload, "spec.idle.timeoutSeconds", 0) * 1000;
    if (timeout <= 0)
        return -1;
    long long left = timeout - (bh_clock_wall_ms() - idle_last_activity_ms(inst));
    return left > 0 ? left : 0;
}

long long bh_idle_sample_interval_ms(void)
{
    return IDLE_SAMPLE_MS;
}
