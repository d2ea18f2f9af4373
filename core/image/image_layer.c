/* Layer unpacking. A layer is untrusted input: its paths are checked here (no absolute
 * paths, no ".."), libarchive refuses to write through symlinks, and whiteouts are created
 * with openat(O_NOFOLLOW) walks, so nothing lands outside the layer directory. Layers are
 * unpacked into a temp dir and renamed into place, so a half layer is never visible. */
#include "image_int.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "fs.h"
#include "log.h"
#include "mem.h"

#define LAYER_WH_PREFIX ".wh."
#define LAYER_WH_OPAQUE ".wh..wh..opq"
#define LAYER_MAX_ID 0xfffffffeLL /* (uid_t)-1 means "no change" to chown */

struct layer_ctx {
    const char *dest; /* canonical layer dir (borrowed) */
    int destfd;
    uint32_t shift;
};

static void layer_archive_freep(struct archive **a)
{
    if (*a)
        archive_free(*a); /* read or write: archive_free dispatches on the handle */
}
#define layer_autoarchive __attribute__((cleanup(layer_archive_freep)))

/* Normalises an entry path to a relative path ("" for the layer root); refuses absolute
 * paths and ".." components. *out owned. */
static int layer_clean_path(const char *in, char **out, struct bh_err *err)
{
    if (in[0] == '/')
        return bh_err_set(err, BH_EINVAL, "layer entry %s: absolute path", in);
    bh_autofree char *copy = bh_xstrdup(in);
    size_t cap = strlen(in) + 1, n = 0;
    char *res = bh_xcalloc(1, cap), *save = NULL;
    for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (strcmp(c, ".") == 0)
            continue;
        if (strcmp(c, "..") == 0) {
            free(res);
            return bh_err_set(err, BH_EINVAL, "layer entry %s: \"..\" component", in);
        }
        n += (size_t)snprintf(res + n, cap - n, "%s%s", n ? "/" : "", c);
    }
    *out = res;
    return 0;
}

/* Opens the directory rel (relative, clean) under the layer root without following any
 * symlink, creating missing components owned by the shifted root. Returns an fd. */
static int layer_open_dir(struct layer_ctx *c, const char *rel, struct bh_err *err)
{
    int fd = dup(c->destfd);
    bh_autofree char *copy = bh_xstrdup(rel);
    char *save = NULL;
    for (char *comp = strtok_r(copy, "/", &save); comp && fd >= 0;
         comp = strtok_r(NULL, "/", &save)) {
        if (mkdirat(fd, comp, 0755) == 0 &&
            fchownat(fd, comp, c->shift, c->shift, AT_SYMLINK_NOFOLLOW) < 0) {
            close(fd);
            return bh_err_errno(err, BH_EIO, "chown layer dir %s", rel);
        }
        int next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        close(fd);
        fd = next;
    }
    if (fd < 0)
        return bh_err_errno(err, BH_EINVAL, "layer dir %s (symlink or not a directory?)", rel);
    return fd;
}

static void layer_split(char *path, const char **parent, const char **base)
{
    char *slash = strrchr(path, '/');
    if (!slash) {
        *parent = "";
        *base = path;
        return;
    }
    *slash = '\0';
    *parent = path;
    *base = slash + 1;
}

/* ".wh..wh..opq" marks its directory opaque: overlayfs hides the lower layers' contents. */
static int layer_opaque(struct layer_ctx *c, const char *dir, struct bh_err *err)
{
    bh_autoclose int fd = layer_open_dir(c, dir, err);
    if (fd < 0)
        return -1;
    if (fsetxattr(fd, "trusted.overlay.opaque", "y", 1, 0) < 0)
        return bh_err_errno(err, BH_EIO, "set opaque xattr on layer dir /%s", dir);
    return 0;
}

/* ".wh.<name>" deletes <name> from lower layers: overlayfs spells that as a 0/0 char device. */
static int layer_whiteout(struct layer_ctx *c, const char *dir, const char *name,
                          struct bh_err *err)
{
    if (!bh_fs_safe_component(name))
        return bh_err_set(err, BH_EINVAL, "layer whiteout for bad name \"%s\" in /%s", name, dir);
    bh_autoclose int fd = layer_open_dir(c, dir, err);
    if (fd < 0)
        return -1;
    if (mknodat(fd, name, S_IFCHR | 0600, makedev(0, 0)) < 0 && errno != EEXIST)
        return bh_err_errno(err, BH_EIO, "mknod whiteout /%s/%s", dir, name);
    if (fchownat(fd, name, c->shift, c->shift, AT_SYMLINK_NOFOLLOW) < 0)
        return bh_err_errno(err, BH_EIO, "chown whiteout /%s/%s", dir, name);
    return 0;
}

/* Returns 1 if the entry was a whiteout (and has been applied), 0 if not, -1 on error. */
static int layer_try_whiteout(struct layer_ctx *c, const char *rel, struct bh_err *err)
{
    bh_autofree char *copy = bh_xstrdup(rel);
    const char *parent, *base;
    layer_split(copy, &parent, &base);
    if (strncmp(base, LAYER_WH_PREFIX, strlen(LAYER_WH_PREFIX)) != 0)
        return 0;
    int r = strcmp(base, LAYER_WH_OPAQUE) == 0
                ? layer_opaque(c, parent, err)
                : layer_whiteout(c, parent, base + strlen(LAYER_WH_PREFIX), err);
    return r < 0 ? -1 : 1;
}

static int layer_shift_owner(struct layer_ctx *c, struct archive_entry *e, struct bh_err *err)
{
    la_int64_t uid = archive_entry_uid(e) + c->shift, gid = archive_entry_gid(e) + c->shift;
    if (archive_entry_uid(e) < 0 || archive_entry_gid(e) < 0 || uid > LAYER_MAX_ID ||
        gid > LAYER_MAX_ID)
        return bh_err_set(err, BH_EINVAL, "layer entry %s: owner out of range",
                          archive_entry_pathname(e));
    archive_entry_set_uid(e, uid);
    archive_entry_set_gid(e, gid);
    /* Numeric ids only: the host's passwd has nothing to say about the container's. */
    archive_entry_set_uname(e, NULL);
    archive_entry_set_gname(e, NULL);
    return 0;
}

/* Points the entry (and a hardlink's target) at absolute paths under dest. libarchive
 * resolves relative names against the process cwd, which a threaded daemon cannot chdir. */
static int layer_rebase(struct layer_ctx *c, struct archive_entry *e, const char *rel,
                        struct bh_err *err)
{
    bh_autofree char *abs = bh_xasprintf("%s%s%s", c->dest, rel[0] ? "/" : "", rel);
    archive_entry_set_pathname(e, abs);
    const char *link = archive_entry_hardlink(e);
    if (!link)
        return 0;
    bh_autofree char *clean = NULL;
    if (layer_clean_path(link, &clean, err) < 0)
        return bh_err_wrap(err, "hardlink %s", rel);
    bh_autofree char *target = bh_xasprintf("%s/%s", c->dest, clean);
    archive_entry_set_hardlink(e, target);
    /* Hardlink data would be written through the link's target; tar never needs that. */
    archive_entry_set_size(e, 0);
    return 0;
}

static int layer_copy_data(struct archive *in, struct archive *out, const char *rel,
                           struct bh_err *err)
{
    for (;;) {
        const void *buf;
        size_t size;
        la_int64_t off;
        int r = archive_read_data_block(in, &buf, &size, &off);
        if (r == ARCHIVE_EOF)
            return 0;
        if (r < ARCHIVE_WARN)
            return bh_err_set(err, BH_EINVAL, "layer entry %s: read: %s", rel,
                              archive_error_string(in));
        if (archive_write_data_block(out, buf, size, off) < ARCHIVE_WARN)
            return bh_err_set(err, BH_EIO, "layer entry %s: write: %s", rel,
                              archive_error_string(out));
    }
}

static int layer_write_entry(struct layer_ctx *c, struct archive *in, struct archive *out,
                             struct archive_entry *e, const char *rel, struct bh_err *err)
{
    if (layer_shift_owner(c, e, err) < 0 || layer_rebase(c, e, rel, err) < 0)
        return -1;
    if (archive_write_header(out, e) < ARCHIVE_WARN)
        return bh_err_set(err, BH_EINVAL, "layer entry %s refused: %s", rel,
                          archive_error_string(out));
    if (archive_entry_size(e) > 0 && layer_copy_data(in, out, rel, err) < 0)
        return -1;
    if (archive_write_finish_entry(out) < ARCHIVE_WARN)
        return bh_err_set(err, BH_EIO, "layer entry %s: %s", rel, archive_error_string(out));
    return 0;
}

static int layer_entry(struct layer_ctx *c, struct archive *in, struct archive *out,
                       struct archive_entry *e, struct bh_err *err)
{
    bh_autofree char *rel = NULL;
    if (layer_clean_path(archive_entry_pathname(e), &rel, err) < 0)
        return -1;
    int wh = layer_try_whiteout(c, rel, err);
    if (wh != 0)
        return wh < 0 ? -1 : 0;
    mode_t type = archive_entry_filetype(e);
    if (type == AE_IFCHR || type == AE_IFBLK) {
        bh_debug("image", "skipping device node %s in layer", rel);
        return 0;
    }
    return layer_write_entry(c, in, out, e, rel, err);
}

static struct archive *layer_open_reader(const char *tar_path, struct bh_err *err)
{
    struct archive *a = archive_read_new();
    /* Compression is detected from the data's magic; mediaType is only a claim. */
    archive_read_support_filter_gzip(a);
    archive_read_support_filter_zstd(a);
    archive_read_support_format_tar(a);
    if (archive_read_open_filename(a, tar_path, 65536) != ARCHIVE_OK) {
        bh_err_set(err, BH_EINVAL, "open layer %s: %s", tar_path, archive_error_string(a));
        archive_read_free(a);
        return NULL;
    }
    return a;
}

static struct archive *layer_open_writer(void)
{
    struct archive *a = archive_write_disk_new();
    archive_write_disk_set_options(a, ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM |
                                          ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                                          ARCHIVE_EXTRACT_SECURE_NODOTDOT);
    return a;
}

static int layer_run(struct layer_ctx *c, struct archive *in, struct archive *out,
                     const char *tar_path, struct bh_err *err)
{
    for (;;) {
        struct archive_entry *e;
        int r = archive_read_next_header(in, &e);
        if (r == ARCHIVE_EOF)
            break;
        if (r < ARCHIVE_WARN)
            return bh_err_set(err, BH_EINVAL, "layer %s: %s", tar_path, archive_error_string(in));
        if (layer_entry(c, in, out, e, err) < 0)
            return -1;
    }
    /* Directory modes and times are applied at close. */
    if (archive_write_close(out) < ARCHIVE_WARN)
        return bh_err_set(err, BH_EIO, "layer %s: %s", tar_path, archive_error_string(out));
    return 0;
}

int bh_image_layer_unpack(const char *tar_path, const char *dest, uint32_t uid_shift,
                          struct bh_err *err)
{
    bh_autoclose int destfd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (destfd < 0)
        return bh_err_errno(err, BH_EIO, "open %s", dest);
    layer_autoarchive struct archive *in = layer_open_reader(tar_path, err);
    if (!in)
        return -1;
    layer_autoarchive struct archive *out = layer_open_writer();
    struct layer_ctx c = {.dest = dest, .destfd = destfd, .shift = uid_shift};
    return layer_run(&c, in, out, tar_path, err);
}

/* Unpacks the blob into a fresh temp dir beside the final one and renames it into place;
 * losing a rename race to another process is success. Called with st->lock held. */
static int layer_materialise(struct bh_image_store *st, const char *digest, const char *final,
                             struct bh_err *err)
{
    bh_autofree char *blob = bh_image_blob_path(st, digest);
    if (!bh_fs_exists(blob))
        return bh_err_set(err, BH_ENOTFOUND, "layer blob %s is not in the store", digest);
    bh_autofree char *tmp =
        bh_xasprintf("%s/layers/%u/.tmp-%s-XXXXXX", st->dir, st->uid_shift, digest + 7);
    if (!mkdtemp(tmp))
        return bh_err_errno(err, BH_EIO, "mkdtemp %s", tmp);
    int r = 0;
    if (chmod(tmp, 0755) < 0 || chown(tmp, st->uid_shift, st->uid_shift) < 0)
        r = bh_err_errno(err, BH_EIO, "prepare %s", tmp);
    if (r == 0)
        r = bh_image_layer_unpack(blob, tmp, st->uid_shift, err);
    if (r == 0 && rename(tmp, final) < 0 && errno != EEXIST && errno != ENOTEMPTY)
        r = bh_err_errno(err, BH_EIO, "rename layer %s", digest);
    struct bh_err ignored;
    /* Only left when failed or beaten to the rename; a leftover temp dir costs space only. */
    BH_IGNORE(bh_fs_rmtree(tmp, &ignored));
    if (r < 0)
        return bh_err_wrap(err, "layer %s", digest);
    bh_autofree char *parent = bh_xasprintf("%s/layers/%u", st->dir, st->uid_shift);
    return bh_fs_fsync_dir(parent, err);
}

int bh_image_layer_ensure(struct bh_image_store *st, const char *digest, char **out_dir,
                          struct bh_err *err)
{
    if (!bh_image_digest_valid(digest))
        return bh_err_set(err, BH_EINVAL, "bad layer digest %s", digest);
    bh_autofree char *final = bh_xasprintf("%s/layers/%u/%s", st->dir, st->uid_shift, digest + 7);
    pthread_mutex_lock(&st->lock);
    int r = bh_fs_exists(final) ? 0 : layer_materialise(st, digest, final, err);
    pthread_mutex_unlock(&st->lock);
    if (r == 0)
        *out_dir = BH_STEAL(final);
    return r;
}
