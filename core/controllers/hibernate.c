/* Hibernate and restore: a tenant's overlay directories saved through the storage plugin and
 * put back into a fresh or warm instance.
 *
 * Crash safety: a new snapshot is stored under a new key (named by its digest) and only then
 * does the Snapshot record switch to it; the old object is deleted last. Whatever the crash
 * point, the record names an object that is complete and matches its digest. */
#include "hibernate.h"
#include "hibernate_int.h"

#include <limits.h>
#include <stddef.h>
#include <time.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "crashpoint.h"
#include "ctx.h"
#include "disk.h"
#include "fs.h"
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

#define HIBERNATE_UID_SIZE 65536
#define HIB_FORMAT_IMAGE "image-v1"
/* The periodic GC: how often, and how old an unnamed object must be (a hibernate between its
 * put and its record switch takes far less). */
#define HIB_GC_INTERVAL_S 3600
#define HIB_GC_GRACE_S 900

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
    o->compression = BH_SNAP_ZSTD; /* the setting was checked at start */
    BH_IGNORE(bh_snapshot_compression_parse(ctx->cfg.snapshot_compression, &o->compression));
    o->master_key =
        bh_json_bool(workload, "spec.filesystem.encryptOverlays", 0) ? ctx->master_key : NULL;
    o->context = context;
}

static int hib_import(struct bh_ctx *ctx, const char *tenant, const char *workload,
                      const char *name, cJSON **out, struct bh_err *err);

int bh_hibernate_record(struct bh_ctx *ctx, const char *tenant, const char *workload, cJSON **out,
                        struct bh_err *err)
{
    bh_autofree char *name = bh_name_pair(tenant, workload);
    if (bh_store_get(ctx->store, SNAPSHOT_KIND, name, out, err) < 0 &&
        (err->code != BH_ENOTFOUND || !ctx->cfg.snapshot_shared ||
         hib_import(ctx, tenant, workload, name, out, err) < 0))
        return -1;
    if (!bh_name_is_pair(*out, tenant, workload)) {
        cJSON_Delete(*out);
        *out = NULL;
        return bh_err_set(err, BH_ECONFLICT, "snapshot %s belongs to another tenant", name);
    }
    return 0;
}

static char *hib_tmp_path(struct bh_ctx *ctx, const char *what, const char *id)
{
    return bh_xasprintf("%s/tmp/%s-%s.tmp", ctx->cfg.state_dir, what, id);
}

static int hib_meta_get(struct bh_ctx *ctx, const char *wname, const char *sname, cJSON **spec);
static int hib_key_ours(const char *key);

/* Whether a record read from storage is one this pair's hibernate could have written. */
static int hib_meta_valid(const cJSON *spec, const char *tenant, const char *workload,
                          const char *name)
{
    const char *t = bh_json_str(spec, "tenantId"), *w = bh_json_str(spec, "workloadRef");
    const char *key = bh_json_str(spec, "key"), *digest = bh_json_str(spec, "digest");
    const char *format = bh_json_str(spec, "format");
    bh_autofree char *prefix = bh_xasprintf("%s/%s/", workload, name);
    return t && w && key && digest && strcmp(t, tenant) == 0 && strcmp(w, workload) == 0 &&
           strncmp(key, prefix, strlen(prefix)) == 0 && hib_key_ours(key) &&
           strlen(key) == strlen(prefix) + 21 && strlen(digest) == 64 &&
           strspn(digest, "0123456789abcdef") == 64 &&
           (!format || strcmp(format, HIB_FORMAT_IMAGE) == 0);
}

/* No local record: another daemon on the same storage may have hibernated this pair. Its
 * record, stored beside the object, becomes ours (the object is still verified against its
 * digest before use, and an encrypted one against the shared master key). */
static int hib_import(struct bh_ctx *ctx, const char *tenant, const char *workload,
                      const char *name, cJSON **out, struct bh_err *err)
{
    cJSON *spec = NULL;
    int found = hib_meta_get(ctx, workload, name, &spec);
    if (found < 0)
        return bh_err_set(err, BH_EUNAVAIL, "the record of %s in storage cannot be read now", name);
    if (found == 0 || !hib_meta_valid(spec, tenant, workload, name)) {
        if (spec)
            bh_warn("hibernate", "ignoring the malformed record of %s in storage", name);
        cJSON_Delete(spec);
        return bh_err_set(err, BH_ENOTFOUND, "no snapshot of %s for %s", workload, tenant);
    }
    cJSON *obj = bh_resource_new(SNAPSHOT_KIND, name);
    cJSON *labels = bh_json_obj(obj, "metadata.labels");
    cJSON_AddStringToObject(labels, "boilerhouse.dev/tenant", tenant);
    cJSON_AddStringToObject(labels, "boilerhouse.dev/workload", workload);
    cJSON_AddItemToObject(obj, "spec", spec);
    if (bh_store_create(ctx->store, obj, NULL, err) < 0) {
        cJSON_Delete(obj); /* a concurrent import won: read its record */
        return bh_store_get(ctx->store, SNAPSHOT_KIND, name, out, err);
    }
    bh_info("hibernate", "snapshot record of %s imported from storage (%s)", name,
            bh_json_str(spec, "key"));
    *out = obj;
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

/* ---- the record beside its object: how another daemon finds and verifies a snapshot ---- */

static char *hib_meta_key_for(const char *wname, const char *sname)
{
    return bh_xasprintf("%s/%s/record.json", wname, sname);
}

static int hib_meta_put(struct bh_ctx *ctx, const cJSON *rec, struct bh_err *err)
{
    bh_autofree char *mkey =
        hib_meta_key_for(bh_json_str(rec, "spec.workloadRef"), bh_json_str(rec, "metadata.name"));
    bh_autofree char *tmp = hib_tmp_path(ctx, "record", bh_json_str(rec, "metadata.name"));
    bh_autofree char *text = cJSON_PrintUnformatted(bh_json_get(rec, "spec"));
    struct bh_plugin *st;
    const struct bh_storage_ops *ops = hib_storage(ctx, &st, err);
    int rc = !ops || bh_fs_write_atomic(tmp, text, strlen(text), 0600, err) < 0
                 ? -1
                 : BH_PLUGIN_CALL(st, ops->put(st->state, mkey, tmp, err));
    unlink(tmp);
    return rc;
}

/* The record stored beside (wname, sname)'s object into *spec (owned): 1 if found, 0 if
 * storage says it is absent, -1 if it could not be read or parsed (callers then assume it may
 * name anything). The scratch file is private to the call: a GC and an import may overlap. */
static int hib_meta_get(struct bh_ctx *ctx, const char *wname, const char *sname, cJSON **spec)
{
    static unsigned long seq;
    bh_autofree char *mkey = hib_meta_key_for(wname, sname);
    bh_autofree char *what =
        bh_xasprintf("record-get-%lu", __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED));
    bh_autofree char *tmp = hib_tmp_path(ctx, what, sname);
    bh_autofree char *text = NULL;
    size_t len;
    struct bh_err err = {0};
    struct bh_plugin *st;
    const struct bh_storage_ops *ops = hib_storage(ctx, &st, &err);
    int rc = ops ? BH_PLUGIN_CALL(st, ops->get(st->state, mkey, tmp, &err)) : -1;
    if (rc == 0)
        rc = bh_fs_read_all(tmp, 64 * 1024, &text, &len, &err);
    unlink(tmp);
    *spec = rc == 0 ? cJSON_Parse(text) : NULL;
    if (*spec)
        return 1;
    return rc < 0 && err.code == BH_ENOTFOUND ? 0 : -1;
}

static void hib_meta_del(struct bh_ctx *ctx, const char *wname, const char *sname)
{
    bh_autofree char *mkey = hib_meta_key_for(wname, sname);
    struct bh_err err;
    struct bh_plugin *st;
    const struct bh_storage_ops *ops = hib_storage(ctx, &st, &err);
    if (ops && BH_PLUGIN_CALL(st, ops->del(st->state, mkey, &err)) < 0 && err.code != BH_ENOTFOUND)
        bh_warn("hibernate", "record %s left in storage: %s", mkey, err.msg);
}

/* The image format's fields: what the restore needs to check before it mounts the image. */
static void hib_record_image(struct bh_ctx *ctx, cJSON *rec, const char *id)
{
    bh_autofree char *img = bh_hibernate_instance_path(ctx, id, "disk.img");
    struct stat st;
    cJSON *spec = bh_json_obj(rec, "spec");
    cJSON_AddStringToObject(spec, "format", HIB_FORMAT_IMAGE);
    cJSON_AddNumberToObject(spec, "imageBytes", stat(img, &st) == 0 ? (double)st.st_size : 0);
    cJSON_AddNumberToObject(spec, "uidBase", ctx->cfg.uid_base);
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
    /* Another daemon on the same storage finds the snapshot through this copy of the record;
     * until it names the new object the old one must stay (GC removes it later). */
    int shared = rc == 0 ? hib_meta_put(ctx, rec, &gerr) : -1;
    if (rc == 0 && shared < 0)
        bh_warn("hibernate", "record of %s not stored beside it: %s", name, gerr.msg);
    if (shared == 0)
        bh_crashpoint("hibernate.after-shared-record");
    const char *old_key = bh_json_str(old, "spec.key");
    if (shared == 0 && old_key && strcmp(old_key, bh_json_str(rec, "spec.key")) != 0) {
        struct bh_plugin *st;
        const struct bh_storage_ops *ops = hib_storage(ctx, &st, &gerr);
        if (ops && BH_PLUGIN_CALL(st, ops->del(st->state, old_key, &gerr)) < 0)
            bh_warn("hibernate", "old snapshot %s left behind: %s", old_key, gerr.msg);
    }
    cJSON_Delete(old);
    return rc;
}

char *bh_hibernate_instance_path(struct bh_ctx *ctx, const char *id, const char *what)
{
    return bh_xasprintf("%s/instances/%s/%s", ctx->cfg.state_dir, id, what);
}

/* The image format when the instance has a disk image (the OCI driver with diskGb > 0). */
static int hib_has_image(struct bh_ctx *ctx, const char *id)
{
    bh_autofree char *img = bh_hibernate_instance_path(ctx, id, "disk.img");
    struct stat st;
    return lstat(img, &st) == 0 && S_ISREG(st.st_mode);
}

static int hib_remote(struct bh_ctx *ctx)
{
    return bh_runtime_has(ctx->runtime, BH_RUNTIME_CAP_REMOTE);
}

/* A remote instance's overlay dirs come from its runtime (a Pod's snapshot agent) as a plain
 * tar snapshot, re-wrapped into tmp encrypted when the workload says so: the key never leaves
 * this daemon. The plain copy lives only until then, in the state dir (0600). */
static int hib_archive_remote(struct bh_ctx *ctx, const struct bh_snapshot_opts *o, const char *id,
                              const char *tmp, struct bh_snapshot_info *info, struct bh_err *err)
{
    bh_autofree char *cid = bh_runtime_container_id(id);
    bh_autofree char *plain = hib_tmp_path(ctx, "agent", id);
    struct bh_runtime_saved saved = {0};
    int rc = bh_runtime_save(ctx->runtime, cid, plain, &saved, err);
    if (rc == 0 && o->master_key) {
        struct bh_snapshot_convert_opts c = {.in_path = plain,
                                             .in_digest = saved.digest,
                                             .out_path = tmp,
                                             .out_key = o->master_key,
                                             .context = o->context};
        rc = bh_snapshot_convert(&c, info, err);
    } else if (rc == 0) {
        rc = rename(plain, tmp) < 0 ? bh_err_errno(err, BH_EIO, "rename %s", plain) : 0;
        memcpy(info->digest, saved.digest, sizeof(info->digest));
        info->size = saved.size;
    }
    info->files = saved.files;
    unlink(plain);
    return rc;
}

/* The instance's overlay data into tmp: its disk image as a block stream (flushed and trimmed
 * first; the container is frozen), or, without a disk image, the tar of its overlay dirs. */
static int hib_archive(struct bh_ctx *ctx, const struct bh_snapshot_opts *o, const char *id,
                       int image, const char *tmp, struct bh_snapshot_info *info,
                       struct bh_err *err)
{
    if (hib_remote(ctx))
        return hib_archive_remote(ctx, o, id, tmp, info, err);
    if (!image)
        return bh_snapshot_create(o, tmp, info, err);
    bh_autofree char *disk = bh_hibernate_instance_path(ctx, id, "disk");
    bh_autofree char *img = bh_hibernate_instance_path(ctx, id, "disk.img");
    struct bh_snapshot_image_opts io = {.image = img,
                                        .compression = o->compression,
                                        .master_key = o->master_key,
                                        .context = o->context};
    if (bh_disk_quiesce(disk, err) < 0)
        return -1;
    return bh_snapshot_image_create(&io, tmp, info, err);
}

/* Archives to a temp file and stores it; *key (owned) is where it went. */
static int hib_archive_and_put(struct bh_ctx *ctx, const cJSON *workload, const char *tenant,
                               const char *id, int image, struct bh_snapshot_info *info, char **key,
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
    if (!ops || hib_archive(ctx, &o, id, image, tmp, info, err) < 0) {
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
    /* Frozen, the tenant's processes cannot change files while they are read. A remote
     * runtime's instance is not: nothing here can pause a Pod's processes (its agent reads
     * the files as they are; docs/kubernetes-mode.md). */
    int frozen = !hib_remote(ctx);
    if (frozen && bh_runtime_pause(ctx->runtime, cid, err) < 0) {
        bh_err_wrap(err, "freeze %s", id);
        hib_publish(ctx, BH_EVT_HIBERNATE_FAILED, workload, tenant, 0, t0, err);
        return -1;
    }
    struct bh_snapshot_info info = {0};
    bh_autofree char *key = NULL;
    int image = hib_has_image(ctx, id);
    int rc = hib_archive_and_put(ctx, workload, tenant, id, image, &info, &key, err);
    if (rc == 0) {
        int enc = bh_json_bool(workload, "spec.filesystem.encryptOverlays", 0);
        cJSON *rec = hib_record(tenant, workload, key, &info, enc, ctx->cfg.snapshot_compression);
        if (image)
            hib_record_image(ctx, rec, id);
        rc = hib_commit(ctx, rec, err);
        if (rc == 0 && image)
            bh_hibernate_hot_park(ctx, id, rec);
        cJSON_Delete(rec);
    }
    if (rc < 0) {
        struct bh_err rerr;
        if (frozen && bh_runtime_resume(ctx->runtime, cid, &rerr) < 0)
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

/* The durable copy of a snapshot into tmp (removed again on failure). */
static int hib_fetch(struct bh_ctx *ctx, const cJSON *snap, const char *tmp, struct bh_err *err)
{
    const char *key = bh_json_str(snap, "spec.key");
    struct bh_plugin *st;
    const struct bh_storage_ops *ops = hib_storage(ctx, &st, err);
    if (!ops || BH_PLUGIN_CALL(st, ops->get(st->state, key, tmp, err)) < 0) {
        unlink(tmp);
        return bh_err_wrap(err, "fetch snapshot %s", key ? key : "?");
    }
    return 0;
}

/* The snapshot as a plain tar file at out (what a Pod's agent takes) and its digest. */
static int hib_plain(struct bh_ctx *ctx, const cJSON *workload, const cJSON *snap, const char *out,
                     char digest[65], struct bh_err *err)
{
    if (bh_hibernate_is_image(snap))
        return bh_err_set(err, BH_EUNAVAIL,
                          "it is a disk image (format %s, saved by a daemon with local disks): "
                          "a %s instance takes tar snapshots only",
                          HIB_FORMAT_IMAGE, bh_runtime_name(ctx->runtime));
    bh_autofree char *tmp = hib_tmp_path(ctx, "fetch", bh_json_str(snap, "metadata.name"));
    const char *want = bh_json_str(snap, "spec.digest");
    int rc = hib_fetch(ctx, snap, tmp, err);
    if (rc == 0 && bh_json_bool(snap, "spec.encrypted", 0)) {
        bh_autofree char *context = bh_xasprintf("%s/%s", bh_json_str(workload, "metadata.name"),
                                                 bh_json_str(snap, "spec.tenantId"));
        struct bh_snapshot_convert_opts c = {.in_path = tmp,
                                             .in_digest = want,
                                             .in_key = ctx->master_key,
                                             .out_path = out,
                                             .context = context};
        struct bh_snapshot_info info;
        rc = bh_snapshot_convert(&c, &info, err);
        memcpy(digest, info.digest, 65);
    } else if (rc == 0) { /* checked where it lands: the agent verifies before it restores */
        rc = rename(tmp, out) < 0 ? bh_err_errno(err, BH_EIO, "rename %s", tmp) : 0;
        snprintf(digest, 65, "%s", want ? want : "");
    }
    unlink(tmp);
    return rc;
}

int bh_hibernate_restore_remote(struct bh_ctx *ctx, const cJSON *workload, const cJSON *snapshot,
                                const char *cid, int timeout_ms, struct bh_err *err)
{
    long long t0 = bh_clock_ms();
    const char *tenant = bh_json_str(snapshot, "spec.tenantId");
    bh_autofree char *plain = hib_tmp_path(ctx, "plain", bh_json_str(snapshot, "metadata.name"));
    char digest[65] = "";
    double bytes = bh_json_num(snapshot, "spec.sizeBytes", 0);
    int rc = hib_plain(ctx, workload, snapshot, plain, digest, err);
    if (rc == 0)
        rc = bh_runtime_restore(ctx->runtime, cid, plain, digest, timeout_ms, err);
    unlink(plain);
    if (rc < 0) {
        bh_err_wrap(err, "restore snapshot of %s", tenant);
        hib_publish(ctx, BH_EVT_RESTORE_FAILED, workload, tenant, bytes, t0, err);
        return -1;
    }
    hib_publish(ctx, BH_EVT_RESTORE_DONE, workload, tenant, bytes, t0, NULL);
    bh_info("hibernate", "tenant %s: restored %s into %s in %lld ms", tenant,
            bh_json_str(snapshot, "spec.key"), cid, bh_clock_ms() - t0);
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
    double bytes = bh_json_num(snapshot, "spec.sizeBytes", 0);
    if (hib_fetch(ctx, snapshot, tmp, err) < 0) {
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

struct hib_gc {
    struct bh_ctx *ctx;
    cJSON *records;   /* all Snapshot records */
    long long before; /* only objects older than this (s since the epoch) */
    char **doomed;    /* keys to delete, after the listing */
    size_t n;
};

/* Whether key is an object this daemon names ("<workload>/<record>/<16 hex>.snap"). */
static int hib_key_ours(const char *key)
{
    const char *base = strrchr(key, '/');
    return base && strlen(base) == 22 && strcmp(base + 17, ".snap") == 0 &&
           strspn(base + 1, "0123456789abcdef") == 16 && strchr(key, '/') < base;
}

static int hib_gc_each(void *ud, const char *key, long long mtime)
{
    struct hib_gc *g = ud;
    if (mtime >= g->before || !hib_key_ours(key))
        return 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, g->records) {
        const char *k = bh_json_str(r, "spec.key");
        if (k && strcmp(k, key) == 0)
            return 0;
    }
    g->doomed = bh_xrealloc(g->doomed, (g->n + 1) * sizeof(char *));
    g->doomed[g->n++] = bh_xstrdup(key);
    return 0;
}

/* Whether the record stored beside key (another daemon's, or ours not yet switched) names it,
 * or cannot be read (then it might). */
static int hib_meta_names(struct bh_ctx *ctx, const char *key)
{
    const char *a = strchr(key, '/'), *b = strrchr(key, '/');
    bh_autofree char *wname = bh_xstrndup(key, (size_t)(a - key));
    bh_autofree char *sname = bh_xstrndup(a + 1, (size_t)(b - a - 1));
    cJSON *spec = NULL;
    int found = hib_meta_get(ctx, wname, sname, &spec);
    const char *named = bh_json_str(spec, "key");
    int yes = found < 0 || (named && strcmp(named, key) == 0); /* unreadable: keep */
    cJSON_Delete(spec);
    return yes;
}

/* Storage objects no record names (a crash between put and the record switch leaves one),
 * older than grace_s: a hibernate in flight has put its object but not yet switched. Needs the
 * plugin's optional list op; without it they stay (logged). */
static int hib_gc_storage(struct bh_ctx *ctx, long grace_s, struct bh_err *err)
{
    struct bh_plugin *st;
    const struct bh_storage_ops *ops = hib_storage(ctx, &st, err);
    if (!ops)
        return -1;
    if (!BH_HAS_OP(ops, struct bh_storage_ops, list)) {
        bh_debug("hibernate", "storage plugin %s cannot list: no object GC", ctx->cfg.storage);
        return 0;
    }
    /* Without a grace period (startup: nothing in flight) every object qualifies. */
    struct hib_gc g = {.ctx = ctx, .before = grace_s ? (long long)time(NULL) - grace_s : LLONG_MAX};
    if (bh_store_list(ctx->store, SNAPSHOT_KIND, NULL, &g.records, NULL, err) < 0)
        return -1;
    int rc = BH_PLUGIN_CALL(st, ops->list(st->state, "", hib_gc_each, &g, err));
    for (size_t i = 0; i < g.n; i++) {
        struct bh_err derr;
        if (rc == 0 && !hib_meta_names(ctx, g.doomed[i]) &&
            BH_PLUGIN_CALL(st, ops->del(st->state, g.doomed[i], &derr)) == 0)
            bh_info("hibernate", "removed snapshot object %s that no record names", g.doomed[i]);
        free(g.doomed[i]);
    }
    free(g.doomed);
    cJSON_Delete(g.records);
    return rc;
}

int bh_hibernate_is_image(const cJSON *snapshot)
{
    const char *f = bh_json_str(snapshot, "spec.format");
    return f && strcmp(f, HIB_FORMAT_IMAGE) == 0;
}

int bh_hibernate_at_boot(struct bh_ctx *ctx, const cJSON *snapshot)
{
    return snapshot && (bh_hibernate_is_image(snapshot) || hib_remote(ctx));
}

/* The archive path: fetch the durable copy, verify it, decompress it into a sparse image. */
static int hib_image_from_archive(struct bh_ctx *ctx, const cJSON *workload, const cJSON *snap,
                                  const char *image, struct bh_err *err)
{
    bh_autofree char *context = bh_xasprintf("%s/%s", bh_json_str(workload, "metadata.name"),
                                             bh_json_str(snap, "spec.tenantId"));
    bh_autofree char *tmp = hib_tmp_path(ctx, "restore", bh_json_str(snap, "metadata.name"));
    struct bh_snapshot_image_opts io = {
        .image = image,
        .master_key = bh_json_bool(snap, "spec.encrypted", 0) ? ctx->master_key : NULL,
        .context = context};
    if (hib_fetch(ctx, snap, tmp, err) < 0)
        return -1;
    bh_crashpoint("restore.after-fetch");
    int rc = bh_snapshot_image_restore(&io, tmp, bh_json_str(snap, "spec.digest"), err);
    unlink(tmp);
    return rc;
}

int bh_hibernate_disk(struct bh_ctx *ctx, const cJSON *workload, const cJSON *snapshot,
                      const char *image, struct bh_err *err)
{
    if (!bh_hibernate_is_image(snapshot))
        return 0;
    long long t0 = bh_clock_ms();
    const char *tenant = bh_json_str(snapshot, "spec.tenantId");
    double base = bh_json_num(snapshot, "spec.uidBase", -1);
    if (base != (double)ctx->cfg.uid_base) {
        bh_err_set(err, BH_EUNAVAIL,
                   "snapshot of %s was made with uid base %.0f, this daemon maps %u "
                   "(--uid-base): its files would belong to other ids",
                   tenant, base, ctx->cfg.uid_base);
        hib_publish(ctx, BH_EVT_RESTORE_FAILED, workload, tenant, 0, t0, err);
        return -1;
    }
    const char *path = "hot";
    if (!bh_hibernate_hot_take(ctx, snapshot, image)) {
        path = "archive";
        if (hib_image_from_archive(ctx, workload, snapshot, image, err) < 0) {
            bh_err_wrap(err, "restore snapshot of %s", tenant);
            hib_publish(ctx, BH_EVT_RESTORE_FAILED, workload, tenant, 0, t0, err);
            return -1;
        }
    }
    hib_publish(ctx, BH_EVT_RESTORE_DONE, workload, tenant,
                bh_json_num(snapshot, "spec.sizeBytes", 0), t0, NULL);
    bh_info("hibernate", "tenant %s: restored disk image %s from the %s tier in %lld ms", tenant,
            bh_json_str(snapshot, "spec.key"), path, bh_clock_ms() - t0);
    return 1;
}

int bh_hibernate_gc(struct bh_ctx *ctx, long grace_s, struct bh_err *err)
{
    if (bh_hibernate_hot_gc(ctx, err) < 0)
        return -1;
    return hib_gc_storage(ctx, grace_s, err);
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
    bh_autofree char *hot = bh_hibernate_hot_path(ctx, rec);
    if (rc == 0 && unlink(hot) < 0 && errno != ENOENT)
        bh_warn("hibernate", "hot copy %s left behind: %s", hot, strerror(errno));
    if (rc == 0)
        hib_meta_del(ctx, workload, bh_json_str(rec, "metadata.name"));
    struct bh_plugin *st;
    const struct bh_storage_ops *ops = rc == 0 ? hib_storage(ctx, &st, err) : NULL;
    if (ops && BH_PLUGIN_CALL(st, ops->del(st->state, bh_json_str(rec, "spec.key"), &gerr)) < 0)
        bh_warn("hibernate", "snapshot object %s left behind: %s", bh_json_str(rec, "spec.key"),
                gerr.msg);
    cJSON_Delete(rec);
    return rc;
}

int bh_hibernate_gc_reconcile(struct bh_ctx *ctx, const char *name, long *requeue_ms,
                              struct bh_err *err)
{
    (void)name;
    *requeue_ms = HIB_GC_INTERVAL_S * 1000L;
    return bh_hibernate_gc(ctx, HIB_GC_GRACE_S, err);
}
