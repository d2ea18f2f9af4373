/* Hibernate and restore: a tenant's overlay directories saved through the storage plugin and
 * put back into a fresh or warm instance.
 *
 * Crash safety: a new snapshot is stored under a new key (named by its digest) and only then
 * does the Snapshot record switch to it; the old object is deleted last. Whatever the crash
 * point, the record names an object that is complete and matches its digest. */
#include "hibernate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "crashpoint.h"
#include "ctx.h"
#include "events.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "name.h"
#include "plugin.h"
#include "resource.h"
#include "runtime.h"
#include "snapshot.h"
#include "store.h"

#define SNAPSHOT_KIND "Snapshot"
#define HIBERNATE_UID_SIZE 65536

/* The storage plugin's ops, and in *plugin the plugin to call them through (BH_PLUGIN_CALL). */
static const struct bh_storage_ops *hib_storage(struct bh_ctx *ctx, struct bh_plugin **plugin,
                                                struct bh_err *err)
{
    struct bh_plugin *p = bh_plugins_find(ctx->plugins, BH_PLUGIN_STORAGE, ctx->cfg.storage);
    if (!p) {
        bh_err_set(err, BH_EUNAVAIL, "storage plugin bh-storage-%s.so is not loaded",
                   ctx->cfg.storage);
        return NULL;
    }
    *plugin = p;
    return p->info->ops;
}

/* The overlay dirs as a NULL-terminated vector of borrowed strings (free the vector only). */
static char **hib_dirs(const cJSON *workload)
{
    const cJSON *dirs = bh_json_get(workload, "spec.filesystem.overlayDirs");
    int n = cJSON_IsArray(dirs) ? cJSON_GetArraySize(dirs) : 0;
    char **v = bh_xcalloc((size_t)n + 1, sizeof(char *));
    for (int i = 0; i < n; i++)
        v[i] = cJSON_GetArrayItem(dirs, i)->valuestring;
    return v;
}

int bh_hibernate_wanted(const cJSON *workload)
{
    const char *action = bh_json_str(workload, "spec.idle.action");
    const cJSON *dirs = bh_json_get(workload, "spec.filesystem.overlayDirs");
    return (!action || strcmp(action, "hibernate") == 0) && cJSON_GetArraySize(dirs) > 0;
}

static void hib_opts(struct bh_ctx *ctx, const cJSON *workload, const char *rootfs,
                     const char *context, char **dirs, struct bh_snapshot_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->rootfs = rootfs;
    o->dirs = dirs;
    o->uid_base = ctx->cfg.uid_base;
    o->uid_size = HIBERNATE_UID_SIZE;
    o->compression =
        strcmp(ctx->cfg.snapshot_compression, "gzip") == 0 ? BH_SNAP_GZIP : BH_SNAP_ZSTD;
    o->master_key =
        bh_json_bool(workload, "spec.filesystem.encryptOverlays", 0) ? ctx->master_key : NULL;
    o->context = context;
}

int bh_hibernate_record(struct bh_ctx *ctx, const char *tenant, const char *workload, cJSON **out,
                        struct bh_err *err)
{
    bh_autofree char *name = bh_name_pair(tenant, workload);
    if (bh_store_get(ctx->store, SNAPSHOT_KIND, name, out, err) < 0)
        return -1;
    if (!bh_name_is_pair(*out, tenant, workload)) {
        cJSON_Delete(*out);
        *out = NULL;
        return bh_err_set(err, BH_ECONFLICT, "snapshot %s belongs to another tenant", name);
    }
    return 0;
}

static cJSON *hib_record(const char *tenant, const cJSON *workload, const char *key,
                         const struct bh_snapshot_info *info, int encrypted,
                         const char *compression)
{
    const char *wname = bh_json_str(workload, "metadata.name");
    bh_autofree char *name = bh_name_pair(tenant, wname);
    char now[32];
    bh_clock_rfc3339(now);
    cJSON *obj = bh_resource_new(SNAPSHOT_KIND, name);
    cJSON *labels = bh_json_obj(obj, "metadata.labels");
    cJSON_AddStringToObject(labels, "boilerhouse.dev/tenant", tenant);
    cJSON_AddStringToObject(labels, "boilerhouse.dev/workload", wname);
    cJSON *spec = cJSON_AddObjectToObject(obj, "spec");
    cJSON_AddStringToObject(spec, "tenantId", tenant);
    cJSON_AddStringToObject(spec, "workloadRef", wname);
    cJSON_AddStringToObject(spec, "key", key);
    cJSON_AddStringToObject(spec, "digest", info->digest);
    cJSON_AddNumberToObject(spec, "sizeBytes", (double)info->size);
    cJSON_AddNumberToObject(spec, "files", (double)info->files);
    cJSON_AddBoolToObject(spec, "encrypted", encrypted);
    cJSON_AddStringToObject(spec, "compression", compression);
    cJSON_AddStringToObject(spec, "createdAt", now);
    cJSON_AddNumberToObject(spec, "workloadGeneration",
                            (double)bh_json_int(workload, "metadata.generation", 0));
    return obj;
}

/* Points the record at the new object, then drops the object it pointed at before. */
static int hib_commit(struct bh_ctx *ctx, cJSON *rec, struct bh_err *err)
{
    cJSON *old = NULL;
    struct bh_err gerr;
    const char *kind = bh_json_str(rec, "kind"), *name = bh_json_str(rec, "metadata.name");
    int rc = bh_store_get(ctx->store, kind, name, &old, &gerr) == 0
                 ? bh_store_update(ctx->store, rec, NULL, err)
                 : bh_store_create(ctx->store, rec, NULL, err);
    if (rc == 0)
        bh_crashpoint("hibernate.after-record");
    const char *old_key = bh_json_str(old, "spec.key");
    if (rc == 0 && old_key && strcmp(old_key, bh_json_str(rec, "spec.key")) != 0) {
        struct bh_plugin *st;
        const struct bh_storage_ops *ops = hib_storage(ctx, &st, &gerr);
        if (ops && BH_PLUGIN_CALL(st, ops->del(st->state, old_key, &gerr)) < 0)
            bh_warn("hibernate", "old snapshot %s left behind: %s", old_key, gerr.msg);
    }
    cJSON_Delete(old);
    return rc;
}

static char *hib_tmp_path(struct bh_ctx *ctx, const char *what, const char *id)
{
    return bh_xasprintf("%s/tmp/%s-%s.tmp", ctx->cfg.state_dir, what, id);
}

/* Archives to a temp file and stores it; *key (owned) is where it went. */
static int hib_archive_and_put(struct bh_ctx *ctx, const cJSON *workload, const char *tenant,
                               const char *id, struct bh_snapshot_info *info, char **key,
                               struct bh_err *err)
{
    const char *wname = bh_json_str(workload, "metadata.name");
    bh_autofree char *rootfs = bh_xasprintf("%s/instances/%s/rootfs", ctx->cfg.state_dir, id);
    bh_autofree char *tmp = hib_tmp_path(ctx, "snap", id);
    bh_autofree char *context = bh_xasprintf("%s/%s", wname, tenant);
    bh_autofree char **dirs = hib_dirs(workload);
    struct bh_snapshot_opts o;
    hib_opts(ctx, workload, rootfs, context, dirs, &o);
    struct bh_plugin *st;
    const struct bh_storage_ops *ops = hib_storage(ctx, &st, err);
    if (!ops || bh_snapshot_create(&o, tmp, info, err) < 0) {
        unlink(tmp);
        return -1;
    }
    bh_crashpoint("hibernate.after-archive");
    /* The record's name, not the tenant id: [a-z0-9-] only, so no tenant id can make a key
     * the storage plugin refuses (e.g. one containing ".tmp."). */
    bh_autofree char *sname = bh_name_pair(tenant, wname);
    *key = bh_xasprintf("%s/%s/%.16s.snap", wname, sname, info->digest);
    int rc = BH_PLUGIN_CALL(st, ops->put(st->state, *key, tmp, err));
    unlink(tmp);
    if (rc == 0)
        bh_crashpoint("hibernate.after-put");
    return rc;
}

/* Tells operators how a save or restore went: bytes (of the archive) and time taken. */
static void hib_publish(struct bh_ctx *ctx, const char *type, const cJSON *workload,
                        const char *tenant, double bytes, long long t0, const struct bh_err *err)
{
    cJSON *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(d, "bytes", bytes);
    cJSON_AddNumberToObject(d, "ms", (double)(bh_clock_ms() - t0));
    if (err)
        cJSON_AddStringToObject(d, "error", err->msg);
    bh_events_publish(ctx->events, type, bh_json_str(workload, "metadata.name"), tenant, d);
}

int bh_hibernate_save(struct bh_ctx *ctx, const cJSON *workload, const char *tenant, const char *id,
                      struct bh_err *err)
{
    long long t0 = bh_clock_ms();
    bh_autofree char *cid = bh_runtime_container_id(id);
    /* Frozen, the tenant's processes cannot change files while they are read. */
    if (bh_runtime_pause(ctx->runtime, cid, err) < 0) {
        bh_err_wrap(err, "freeze %s", id);
        hib_publish(ctx, BH_EVT_HIBERNATE_FAILED, workload, tenant, 0, t0, err);
        return -1;
    }
    struct bh_snapshot_info info = {0};
    bh_autofree char *key = NULL;
    int rc = hib_archive_and_put(ctx, workload, tenant, id, &info, &key, err);
    if (rc == 0) {
        int enc = bh_json_bool(workload, "spec.filesystem.encryptOverlays", 0);
        cJSON *rec = hib_record(tenant, workload, key, &info, enc, ctx->cfg.snapshot_compression);
        rc = hib_commit(ctx, rec, err);
        cJSON_Delete(rec);
    }
    if (rc < 0) {
        struct bh_err rerr;
        if (bh_runtime_resume(ctx->runtime, cid, &rerr) < 0)
            bh_error("hibernate", "thaw %s after a failed save: %s", id, rerr.msg);
        bh_err_wrap(err, "hibernate %s", id);
        hib_publish(ctx, BH_EVT_HIBERNATE_FAILED, workload, tenant, 0, t0, err);
        return -1;
    }
    hib_publish(ctx, BH_EVT_HIBERNATE_DONE, workload, tenant, (double)info.size, t0, NULL);
    bh_info("hibernate", "tenant %s workload %s: saved %llu bytes (%llu files) in %lld ms", tenant,
            bh_json_str(workload, "metadata.name"), (unsigned long long)info.size,
            (unsigned long long)info.files, bh_clock_ms() - t0);
    return 0;
}

int bh_hibernate_restore(struct bh_ctx *ctx, const cJSON *workload, const cJSON *snapshot,
                         const char *rootfs, struct bh_err *err)
{
    long long t0 = bh_clock_ms();
    const char *tenant = bh_json_str(snapshot, "spec.tenantId");
    const char *key = bh_json_str(snapshot, "spec.key");
    bh_autofree char *context =
        bh_xasprintf("%s/%s", bh_json_str(workload, "metadata.name"), tenant);
    bh_autofree char *tmp = hib_tmp_path(ctx, "restore", bh_json_str(snapshot, "metadata.name"));
    bh_autofree char **dirs = hib_dirs(workload);
    struct bh_snapshot_opts o;
    hib_opts(ctx, workload, rootfs, context, dirs, &o);
    /* The snapshot says whether it was encrypted; the workload may have changed since. */
    o.master_key = bh_json_bool(snapshot, "spec.encrypted", 0) ? ctx->master_key : NULL;
    struct bh_plugin *st;
    const struct bh_storage_ops *ops = hib_storage(ctx, &st, err);
    double bytes = bh_json_num(snapshot, "spec.sizeBytes", 0);
    if (!ops || BH_PLUGIN_CALL(st, ops->get(st->state, key, tmp, err)) < 0) {
        unlink(tmp);
        bh_err_wrap(err, "fetch snapshot %s", key ? key : "?");
        hib_publish(ctx, BH_EVT_RESTORE_FAILED, workload, tenant, bytes, t0, err);
        return -1;
    }
    int rc = bh_snapshot_restore(&o, tmp, bh_json_str(snapshot, "spec.digest"), err);
    unlink(tmp);
    if (rc < 0) {
        bh_err_wrap(err, "restore snapshot of %s", tenant);
        hib_publish(ctx, BH_EVT_RESTORE_FAILED, workload, tenant, bytes, t0, err);
        return -1;
    }
    hib_publish(ctx, BH_EVT_RESTORE_DONE, workload, tenant, bytes, t0, NULL);
    bh_info("hibernate", "tenant %s: restored %s in %lld ms", tenant, key, bh_clock_ms() - t0);
    return 0;
}

int bh_hibernate_forget(struct bh_ctx *ctx, const char *tenant, const char *workload,
                        struct bh_err *err)
{
    cJSON *rec = NULL;
    struct bh_err gerr;
    if (bh_hibernate_record(ctx, tenant, workload, &rec, &gerr) < 0)
        return 0;
    /* Record first: a crash then leaves an unreferenced object, never a dangling record. */
    int rc = bh_store_delete(ctx->store, SNAPSHOT_KIND, bh_json_str(rec, "metadata.name"), err);
    struct bh_plugin *st;
    const struct bh_storage_ops *ops = rc == 0 ? hib_storage(ctx, &st, err) : NULL;
    if (ops && BH_PLUGIN_CALL(st, ops->del(st->state, bh_json_str(rec, "spec.key"), &gerr)) < 0)
        bh_warn("hibernate", "snapshot object %s left behind: %s", bh_json_str(rec, "spec.key"),
                gerr.msg);
    cJSON_Delete(rec);
    return rc;
}
