/* Idle detection that follows real activity. An instance is active when any of these moved
 * since the last sample (CPU and network as the runtime counts them): its CPU time (above a small
 * share of a core, so a busy background job counts and a sleeping shell does not), bytes through
 * its non-loopback interfaces (health probes go over loopback, so they do not count), mtimes under
 * idle.watchDirs (a bounded scan), or an API touch (claim, exec, keepalive). */
#include "idle.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "ctx.h"
#include "fs.h"
#include "instance.h"
#include "json.h"
#include "mem.h"
#include "runtime.h"
#include "store.h"

#define IDLE_CPU_SHARE 0.02 /* of one core */
#define IDLE_SCAN_MAX_ENTRIES 20000
#define IDLE_SAMPLE_MS 5000

static long long idle_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds matter: with whole seconds a short timeout could fire up to a second early. */
static void idle_rfc3339(long long ms, char buf[32])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, 32 - n, ".%03lldZ", ms % 1000);
}

/* nftw has no user pointer; the scan state is per thread. */
static __thread long long idle_scan_newest;
static __thread int idle_scan_count;

static int idle_scan_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    long long ms = (long long)st->st_mtim.tv_sec * 1000 + st->st_mtim.tv_nsec / 1000000;
    if (ms > idle_scan_newest)
        idle_scan_newest = ms;
    return ++idle_scan_count >= IDLE_SCAN_MAX_ENTRIES; /* bounded cost */
}

/* Newest mtime (ms) under the workload's watchDirs, walked physically (no symlink followed,
 * not across mounts) in the instance's rootfs as seen from the host. */
static long long idle_newest_mtime(struct bh_ctx *ctx, const char *id, const cJSON *workload)
{
    const cJSON *dirs = bh_json_get(workload, "spec.idle.watchDirs");
    const cJSON *dir;
    bh_autofree char *rootfs = bh_instance_rootfs(ctx, id);
    idle_scan_newest = 0;
    idle_scan_count = 0;
    cJSON_ArrayForEach(dir, dirs)
    {
        if (!cJSON_IsString(dir))
            continue;
        /* Resolved in the rootfs: a tenant's symlink must not send the scan into the host. */
        int fd = bh_fs_open_in_root(rootfs, dir->valuestring, O_PATH | O_DIRECTORY);
        if (fd < 0)
            continue;
        bh_autofree char *path = bh_xasprintf("/proc/self/fd/%d/.", fd);
        nftw(path, idle_scan_entry, 16, FTW_PHYS | FTW_MOUNT);
        close(fd);
    }
    return idle_scan_newest;
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
    long long now = idle_wall_ms();
    long long elapsed = now - bh_json_int(status, "sampledAt", now);
    long long cpu_budget = (long long)(IDLE_CPU_SHARE * 1e6 * (double)elapsed); /* ns */
    struct bh_runtime_stats st = {-1, -1, -1, -1};
    bh_autofree char *cid = bh_runtime_container_id(id);
    struct bh_err serr;
    if (bh_runtime_stats(ctx->runtime, cid, (int)bh_json_int(status, "pid", 0), &st, &serr) < 0)
        st.cpu_ns = st.net_bytes = -1; /* unknown counters count as no activity */
    int active = idle_counters_moved(status, "cpuUsageNs", st.cpu_ns, cpu_budget);
    active |= idle_counters_moved(status, "netBytes", st.net_bytes, 0);
    bh_json_set_num(status, "sampledAt", (double)now);
    long long last = idle_last_activity_ms(inst);
    long long newest_file = idle_newest_mtime(ctx, id, workload);
    if (active)
        last = now;
    else if (newest_file > last)
        last = newest_file;
    char ts[32];
    idle_rfc3339(last, ts);
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
    cJSON *inst = NULL;
    if (bh_store_get(ctx->store, "Instance", id, &inst, err) < 0)
        return -1;
    char ts[32];
    idle_rfc3339(idle_wall_ms(), ts);
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
    long long left = timeout - (idle_wall_ms() - idle_last_activity_ms(inst));
    return left > 0 ? left : 0;
}

long long bh_idle_sample_interval_ms(void)
{
    return IDLE_SAMPLE_MS;
}
