/* The hot tier: disk images of hibernated tenants parked on this machine (a rename away from
 * a restore), bounded by a byte budget with LRU eviction (docs/snapshot-format.md). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crashpoint.h"
#include "fs.h"
#include "hibernate_int.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "runtime.h"
#include "store.h"

static char *hib_hot_dir(struct bh_ctx *ctx)
{
    return bh_xasprintf("%s/hot", ctx->cfg.state_dir);
}

/* Named after the record and the digest of the durable copy it equals. */
char *bh_hibernate_hot_path(struct bh_ctx *ctx, const cJSON *rec)
{
    return bh_xasprintf("%s/hot/%s-%.16s.img", ctx->cfg.state_dir,
                        bh_json_str(rec, "metadata.name"), bh_json_str(rec, "spec.digest"));
}

struct hib_hot_file {
    char *path;
    time_t mtime;
    uint64_t bytes; /* allocated, not apparent: the images are sparse */
};

static int hib_hot_older(const void *a, const void *b)
{
    const struct hib_hot_file *x = a, *y = b;
    return x->mtime < y->mtime ? -1 : x->mtime > y->mtime;
}

/* The parked images, oldest first; *total their allocated bytes. */
static struct hib_hot_file *hib_hot_list(struct bh_ctx *ctx, size_t *n, uint64_t *total)
{
    bh_autofree char *dir = hib_hot_dir(ctx);
    struct hib_hot_file *v = NULL;
    *n = 0, *total = 0;
    DIR *d = opendir(dir);
    for (struct dirent *de; d && (de = readdir(d));) {
        struct stat st;
        char *path = bh_xasprintf("%s/%s", dir, de->d_name);
        if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
            free(path);
            continue;
        }
        v = bh_xrealloc(v, (*n + 1) * sizeof(*v));
        v[(*n)++] = (struct hib_hot_file){path, st.st_mtime, (uint64_t)st.st_blocks * 512};
        *total += (uint64_t)st.st_blocks * 512;
    }
    if (d)
        closedir(d);
    if (*n)
        qsort(v, *n, sizeof(*v), hib_hot_older);
    return v;
}

/* Least recently parked first, until the tier fits its budget. The durable copy of each is in
 * storage, so eviction only makes the next restore of that tenant take the archive path. */
static void hib_hot_evict(struct bh_ctx *ctx)
{
    size_t n;
    uint64_t total;
    struct hib_hot_file *v = hib_hot_list(ctx, &n, &total);
    for (size_t i = 0; i < n; i++) {
        if (total > ctx->cfg.snapshot_hot_bytes && unlink(v[i].path) == 0) {
            bh_info("hibernate", "hot tier: evicted %s", v[i].path);
            total -= v[i].bytes;
        }
        free(v[i].path);
    }
    free(v);
}

/* After the record names the new snapshot: the container goes (the claim destroys the
 * instance next anyway) and its disk image moves, by rename, into the hot tier. An encrypted
 * tenant's image is plaintext, so it is not parked (docs/snapshot-format.md). Best effort:
 * the durable copy is what the record names. */
void bh_hibernate_hot_park(struct bh_ctx *ctx, const char *id, const cJSON *rec)
{
    if (ctx->cfg.snapshot_hot_bytes == 0 || bh_json_bool(rec, "spec.encrypted", 0))
        return;
    bh_autofree char *cid = bh_runtime_container_id(id);
    bh_autofree char *rootfs = bh_hibernate_instance_path(ctx, id, "rootfs");
    bh_autofree char *disk = bh_hibernate_instance_path(ctx, id, "disk");
    bh_autofree char *img = bh_hibernate_instance_path(ctx, id, "disk.img");
    bh_autofree char *dir = hib_hot_dir(ctx);
    bh_autofree char *hot = bh_hibernate_hot_path(ctx, rec);
    struct bh_err err;
    bh_crashpoint("hibernate.before-park");
    if (bh_runtime_delete(ctx->runtime, cid, &err) < 0 ||
        bh_runtime_rootfs_release(ctx->runtime, rootfs, disk, &err) < 0 ||
        bh_fs_mkdirp(dir, 0700, &err) < 0) {
        bh_warn("hibernate", "not parking the disk of %s: %s", id, err.msg);
        return;
    }
    if (rename(img, hot) < 0) {
        bh_warn("hibernate", "not parking the disk of %s: %s", id, strerror(errno));
        return;
    }
    bh_crashpoint("hibernate.after-park");
    hib_hot_evict(ctx);
}

/* Moves the record's parked image to image, if it is there and is the one the record names
 * (its name carries the digest of the durable copy, its size the recorded image size).
 * Returns 1 if it did. */
int bh_hibernate_hot_take(struct bh_ctx *ctx, const cJSON *snap, const char *image)
{
    bh_autofree char *hot = bh_hibernate_hot_path(ctx, snap);
    struct stat st;
    if (lstat(hot, &st) < 0 || !S_ISREG(st.st_mode) ||
        (double)st.st_size != bh_json_num(snap, "spec.imageBytes", -1))
        return 0;
    bh_crashpoint("restore.before-take");
    return rename(hot, image) == 0;
}

/* A hot image is trusted only within the boot that parked it: a host crash may have lost
 * page-cache writes the image relied on (they are not fsynced). */
static void hib_hot_check_boot(struct bh_ctx *ctx)
{
    bh_autofree char *dir = hib_hot_dir(ctx);
    bh_autofree char *mark = bh_xasprintf("%s/hot-boot-id", ctx->cfg.state_dir);
    bh_autofree char *now = NULL, *then = NULL;
    size_t n;
    struct bh_err err;
    if (bh_fs_read_all("/proc/sys/kernel/random/boot_id", 64, &now, &n, &err) < 0)
        return;
    if (bh_fs_read_all(mark, 64, &then, &n, &err) == 0 && strcmp(now, then) == 0)
        return;
    if (bh_fs_rmtree(dir, &err) < 0 || bh_fs_write_atomic(mark, now, strlen(now), 0600, &err) < 0)
        bh_warn("hibernate", "hot tier: %s", err.msg);
}

/* Whether the hot file name (without dir) is the image a current record names. */
static int hib_hot_referenced(struct bh_ctx *ctx, const char *name)
{
    const char *dash = strrchr(name, '-');
    size_t len = strlen(name);
    if (!dash || len < 5 || strcmp(name + len - 4, ".img") != 0)
        return 0;
    bh_autofree char *rname = bh_xstrndup(name, (size_t)(dash - name));
    cJSON *rec = NULL;
    struct bh_err err;
    if (bh_store_get(ctx->store, SNAPSHOT_KIND, rname, &rec, &err) < 0)
        return 0;
    bh_autofree char *want = bh_hibernate_hot_path(ctx, rec);
    cJSON_Delete(rec);
    return strcmp(strrchr(want, '/') + 1, name) == 0;
}

int bh_hibernate_hot_gc(struct bh_ctx *ctx, struct bh_err *err)
{
    hib_hot_check_boot(ctx);
    bh_autofree char *dir = hib_hot_dir(ctx);
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : bh_err_errno(err, BH_EIO, "open %s", dir);
    for (struct dirent *de; (de = readdir(d));) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
            hib_hot_referenced(ctx, de->d_name))
            continue;
        bh_autofree char *path = bh_xasprintf("%s/%s", dir, de->d_name);
        struct bh_err rerr;
        if (bh_fs_rmtree(path, &rerr) == 0)
            bh_info("hibernate", "hot tier: removed unreferenced %s", de->d_name);
    }
    closedir(d);
    hib_hot_evict(ctx);
    return 0;
}
