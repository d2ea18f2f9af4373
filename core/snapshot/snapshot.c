/* Snapshot create/restore: walks and rebuilds overlay dirs inside a hostile rootfs. Every
 * host-side lookup is fd-relative without following symlinks, because a symlink inside the
 * rootfs would resolve against the host's / here, not the container's. */
#include "snapshot_int.h"

#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "crypto.h"
#include "fs.h"
#include "log.h"
#include "mem.h"

#define SNAP_OVERFLOW_ID 65534u /* what the container sees for unmapped ids */
#define SNAP_COPY_BUF (256u * 1024)

/* ---- paths --------------------------------------------------------------------------------- */

/* An overlay dir: absolute, normalized, not "/" (restore empties it). */
static int snap_dir_valid(const char *dir)
{
    if (!dir || dir[0] != '/' || !dir[1])
        return 0;
    bh_autofree char *copy = bh_xstrdup(dir + 1);
    char *save = NULL;
    size_t seen = 0;
    for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (!bh_fs_safe_component(c))
            return 0;
        seen += strlen(c) + 1;
    }
    return seen == strlen(dir); /* no empty components: "//" or a trailing "/" */
}

static int snap_check_opts(const struct bh_snapshot_opts *o, struct bh_err *err)
{
    if (!o->rootfs || !o->dirs || !o->uid_size)
        return bh_err_set(err, BH_EINVAL, "snapshot: rootfs, dirs and uid_size are required");
    for (char *const *d = o->dirs; *d; d++)
        if (!snap_dir_valid(*d))
            return bh_err_set(err, BH_EINVAL, "snapshot: invalid overlay dir \"%s\"", *d);
    return 0;
}

/* Opens rel (no leading '/') under rootfd refusing any symlink on the way. 1 if absent. */
static int snap_open_beneath(int rootfd, const char *rel, int flags, int *out, struct bh_err *err)
{
    struct open_how how = {
        .flags = (uint64_t)(flags | O_NOFOLLOW | O_CLOEXEC),
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    int fd = (int)syscall(SYS_openat2, rootfd, rel, &how, sizeof(how));
    if (fd < 0 && errno == ENOENT)
        return 1;
    if (fd < 0 && (errno == ELOOP || errno == ENOTDIR || errno == EXDEV))
        return bh_err_set(err, BH_EINVAL,
                          "snapshot: /%s is or passes through a symlink or "
                          "non-directory; refusing to follow it",
                          rel);
    if (fd < 0)
        return bh_err_errno(err, BH_EIO, "snapshot: open /%s", rel);
    *out = fd;
    return 0;
}

static int snap_open_root(const char *rootfs, int *fd, struct bh_err *err)
{
    *fd = open(rootfs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*fd < 0)
        return bh_err_errno(err, BH_EIO, "snapshot: open rootfs %s", rootfs);
    return 0;
}

/* ---- create -------------------------------------------------------------------------------- */

struct snap_create {
    const struct bh_snapshot_opts *o;
    struct archive *a;       /* borrowed */
    struct archive_entry *e; /* owned, reused per entry */
    uint8_t *buf;            /* owned copy buffer */
    uint64_t files;
    dev_t dev; /* of the overlay dir: the walk stays on it */
    struct bh_err *err;
};

static int64_t snap_id_out(const struct bh_snapshot_opts *o, uint32_t id)
{
    if (id >= o->uid_base && id - o->uid_base < o->uid_size)
        return id - o->uid_base;
    return SNAP_OVERFLOW_ID;
}

static int snap_archive_err(struct archive *a, const char *what, const char *path,
                            struct bh_err *err)
{
    return bh_err_set(err, BH_EIO, "snapshot: %s %s: %s", what, path, archive_error_string(a));
}

static int snap_copy_data(struct snap_create *c, int dirfd, const char *name, const char *path)
{
    bh_autoclose int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return bh_err_errno(c->err, BH_EIO, "snapshot: open %s", path);
    for (;;) {
        ssize_t n = read(fd, c->buf, SNAP_COPY_BUF);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return bh_err_errno(c->err, BH_EIO, "snapshot: read %s", path);
        if (n == 0)
            return 0;
        if (archive_write_data(c->a, c->buf, (size_t)n) < 0)
            return snap_archive_err(c->a, "write", path, c->err);
    }
}

static int snap_fill_entry(struct snap_create *c, int dirfd, const char *name, const char *path,
                           const struct stat *st)
{
    struct archive_entry *e = archive_entry_clear(c->e);
    archive_entry_set_pathname(e, path);
    archive_entry_set_mode(e, st->st_mode);
    archive_entry_set_uid(e, snap_id_out(c->o, st->st_uid));
    archive_entry_set_gid(e, snap_id_out(c->o, st->st_gid));
    archive_entry_set_mtime(e, st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
    archive_entry_set_size(e, S_ISREG(st->st_mode) ? st->st_size : 0);
    if (!S_ISLNK(st->st_mode))
        return 0;
    char target[PATH_MAX];
    ssize_t n = readlinkat(dirfd, name, target, sizeof(target) - 1);
    if (n < 0)
        return bh_err_errno(c->err, BH_EIO, "snapshot: readlink %s", path);
    target[n] = '\0';
    archive_entry_set_symlink(e, target);
    return 0;
}

static int snap_walk(struct snap_create *c, int dirfd, const char *path);

/* One directory entry: sockets, fifos and devices cannot be restored and other mounts are
 * not the overlay's, so both are skipped with a warning. */
static int snap_add(struct snap_create *c, int dirfd, const char *name, const char *path)
{
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : bh_err_errno(c->err, BH_EIO, "snapshot: stat %s", path);
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode)) {
        bh_warn("snapshot", "msg=\"skipping special file\" path=\"%s\"", path);
        return 0;
    }
    if (st.st_dev != c->dev) {
        bh_warn("snapshot", "msg=\"skipping mount point\" path=\"%s\"", path);
        return 0;
    }
    if (snap_fill_entry(c, dirfd, name, path, &st) < 0)
        return -1;
    if (archive_write_header(c->a, c->e) < 0)
        return snap_archive_err(c->a, "write header", path, c->err);
    c->files++;
    if (S_ISREG(st.st_mode))
        return snap_copy_data(c, dirfd, name, path);
    if (!S_ISDIR(st.st_mode))
        return 0;
    bh_autoclose int sub = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0)
        return bh_err_errno(c->err, BH_EIO, "snapshot: open %s", path);
    return snap_walk(c, sub, path);
}

static void snap_closedirp(DIR **d)
{
    if (*d)
        closedir(*d);
}

static int snap_walk(struct snap_create *c, int dirfd, const char *path)
{
    int fd = dup(dirfd);
    __attribute__((cleanup(snap_closedirp))) DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return bh_err_errno(c->err, BH_EIO, "snapshot: opendir %s", path);
    }
    for (struct dirent *de; (de = readdir(d));) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        bh_autofree char *child = bh_xasprintf("%s/%s", path, de->d_name);
        if (snap_add(c, dirfd, de->d_name, child) < 0)
            return -1;
    }
    return 0;
}

/* The overlay dir's entry itself (so its mode and owner come back), then its tree. */
static int snap_add_dir(struct snap_create *c, int rootfd, const char *dir)
{
    int fd = -1;
    int r = snap_open_beneath(rootfd, dir + 1, O_RDONLY | O_DIRECTORY, &fd, c->err);
    if (r != 0)
        return r < 0 ? -1 : 0; /* absent: archived as absent */
    bh_autoclose int parent = fd;
    struct stat st;
    if (fstat(parent, &st) < 0)
        return bh_err_errno(c->err, BH_EIO, "snapshot: stat %s", dir);
    c->dev = st.st_dev;
    if (snap_fill_entry(c, parent, "", dir + 1, &st) < 0)
        return -1;
    if (archive_write_header(c->a, c->e) < 0)
        return snap_archive_err(c->a, "write header", dir, c->err);
    c->files++;
    return snap_walk(c, parent, dir + 1);
}

int bh_snapshot_set_filter(struct archive *a, enum bh_snapshot_compression comp, struct bh_err *err)
{
    static const struct {
        const char *name, *level;
        int (*add)(struct archive *);
    } filters[] = {
        [BH_SNAP_ZSTD] = {"zstd", "3", archive_write_add_filter_zstd},
        [BH_SNAP_GZIP] = {"gzip", "1", archive_write_add_filter_gzip},
        [BH_SNAP_LZ4] = {"lz4", "1", archive_write_add_filter_lz4},
    };
    if ((unsigned)comp >= BH_ARRAY_LEN(filters) || filters[comp].add(a) != ARCHIVE_OK ||
        archive_write_set_filter_option(a, filters[comp].name, "compression-level",
                                        filters[comp].level) != ARCHIVE_OK)
        return bh_err_set(err, BH_EIO, "snapshot: compression: %s", archive_error_string(a));
    return 0;
}

static void snap_archive_freep(struct archive **a)
{
    if (*a)
        archive_write_free(*a);
}

static int snap_write_all(const struct bh_snapshot_opts *o, struct bh_snapshot_writer *w,
                          uint64_t *files, struct bh_err *err)
{
    __attribute__((cleanup(snap_archive_freep))) struct archive *a = archive_write_new();
    bh_autofree uint8_t *buf = bh_xmalloc(SNAP_COPY_BUF);
    struct snap_create c = {.o = o, .a = a, .e = archive_entry_new(), .buf = buf, .err = err};
    bh_autoclose int rootfd = -1;
    int rc = -1;
    if (archive_write_set_format_pax(a) != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK ||
        bh_snapshot_set_filter(a, o->compression, err) < 0 ||
        snap_open_root(o->rootfs, &rootfd, err) < 0)
        goto out;
    if (archive_write_open(a, w, NULL, bh_snapshot_writer_cb, NULL) != ARCHIVE_OK) {
        snap_archive_err(a, "open", "archive", err);
        goto out;
    }
    for (char *const *d = o->dirs; *d; d++)
        if (snap_add_dir(&c, rootfd, *d) < 0)
            goto out;
    if (archive_write_close(a) != ARCHIVE_OK) {
        snap_archive_err(a, "close", "archive", err);
        goto out;
    }
    *files = c.files;
    rc = 0;
out:
    if (rc < 0 && w->err.code)
        bh_err_set(err, w->err.code, "%s", w->err.msg); /* the file layer's own reason */
    archive_entry_free(c.e);
    return rc;
}

struct snap_body {
    const struct bh_snapshot_opts *o;
    uint64_t *files;
};

static int snap_body(struct bh_snapshot_writer *w, void *ud, struct bh_err *err)
{
    struct snap_body *b = ud;
    return snap_write_all(b->o, w, b->files, err);
}

int bh_snapshot_create(const struct bh_snapshot_opts *opts, const char *out_path,
                       struct bh_snapshot_info *info, struct bh_err *err)
{
    if (snap_check_opts(opts, err) < 0)
        return -1;
    memset(info, 0, sizeof(*info));
    struct snap_body b = {opts, &info->files};
    return bh_snapshot_write_file(out_path, opts->master_key, opts->context, snap_body, &b, info,
                                  err);
}

/* ---- restore: checks ----------------------------------------------------------------------- */

/* The entry's path without a trailing '/', relative, free of "." and "..", and under one of
 * the overlay dirs. */
static int snap_path_allowed(const struct bh_snapshot_opts *o, const char *path)
{
    size_t len = strlen(path);
    if (len && path[len - 1] == '/')
        len--;
    if (!len || path[0] == '/')
        return 0;
    bh_autofree char *copy = bh_xstrndup(path, len);
    if (strstr(copy, "//"))
        return 0;
    char *save = NULL;
    for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save))
        if (!bh_fs_safe_component(c))
            return 0;
    for (char *const *d = o->dirs; *d; d++) {
        size_t dl = strlen(*d + 1);
        if (len >= dl && !strncmp(path, *d + 1, dl) && (len == dl || path[dl] == '/'))
            return 1;
    }
    return 0;
}

static int snap_check_entry(const struct bh_snapshot_opts *o, struct archive_entry *e,
                            struct bh_err *err)
{
    const char *path = archive_entry_pathname(e);
    mode_t type = archive_entry_filetype(e);
    if (!path || !snap_path_allowed(o, path))
        return bh_err_set(err, BH_EINVAL,
                          "snapshot: refusing entry \"%s\": outside the overlay "
                          "dirs or not a clean relative path",
                          path ? path : "");
    if (archive_entry_hardlink(e) || (type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK))
        return bh_err_set(err, BH_EINVAL,
                          "snapshot: refusing entry \"%s\": only files, "
                          "directories and symlinks are restored",
                          path);
    if (archive_entry_uid(e) < 0 || archive_entry_uid(e) >= o->uid_size ||
        archive_entry_gid(e) < 0 || archive_entry_gid(e) >= o->uid_size)
        return bh_err_set(err, BH_EINVAL,
                          "snapshot: refusing entry \"%s\": owner outside the "
                          "user namespace mapping",
                          path);
    return 0;
}

/* ---- restore: passes ----------------------------------------------------------------------- */

static void snap_read_freep(struct archive **a)
{
    if (*a)
        archive_read_free(*a);
}

static struct archive *snap_read_open(struct bh_snapshot_reader *r, struct bh_err *err)
{
    struct archive *a = archive_read_new();
    archive_read_support_filter_zstd(a);
    archive_read_support_filter_gzip(a);
    archive_read_support_filter_lz4(a);
    archive_read_support_format_tar(a);
    bh_snapshot_reader_rewind(r);
    if (archive_read_open(a, r, NULL, bh_snapshot_reader_cb, NULL) != ARCHIVE_OK) {
        bh_err_set(err, BH_EINVAL, "snapshot: %s",
                   r->failed ? r->err.msg : archive_error_string(a));
        archive_read_free(a);
        return NULL;
    }
    return a;
}

/* A libarchive failure caused by the file layer reports the layer's reason. */
static int snap_read_err(struct archive *a, struct bh_snapshot_reader *r, struct bh_err *err)
{
    if (r->failed)
        return bh_err_set(err, r->err.code, "snapshot: %s", r->err.msg);
    return bh_err_set(err, BH_EINVAL, "snapshot: corrupt archive: %s", archive_error_string(a));
}

static int snap_rm_at(int parent, const char *name, dev_t dev, struct bh_err *err);

static int snap_rm_children(int fd, dev_t dev, struct bh_err *err)
{
    int dfd = dup(fd);
    __attribute__((cleanup(snap_closedirp))) DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        if (dfd >= 0)
            close(dfd);
        return bh_err_errno(err, BH_EIO, "snapshot: opendir");
    }
    for (struct dirent *de; (de = readdir(d));)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
            snap_rm_at(fd, de->d_name, dev, err) < 0)
            return -1;
    return 0;
}

/* rm -rf name under parent: never follows a symlink, never crosses into another mount. */
static int snap_rm_at(int parent, const char *name, dev_t dev, struct bh_err *err)
{
    struct stat st;
    if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : bh_err_errno(err, BH_EIO, "snapshot: stat %s", name);
    if (S_ISDIR(st.st_mode)) {
        if (st.st_dev != dev)
            return bh_err_set(err, BH_EINVAL, "snapshot: %s is a mount point", name);
        bh_autoclose int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || snap_rm_children(fd, dev, err) < 0)
            return fd < 0 ? bh_err_errno(err, BH_EIO, "snapshot: open %s", name) : -1;
    }
    if (unlinkat(parent, name, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) < 0 && errno != ENOENT)
        return bh_err_errno(err, BH_EIO, "snapshot: remove %s", name);
    return 0;
}

/* ---- restore: staged extraction ------------------------------------------------------------ */

/* One overlay dir being restored: its tree is extracted into a fresh staging dir next to it
 * (same parent, so same filesystem) and swapped in only after the whole archive verified. */
struct snap_stage {
    const char *dir; /* relative ("a/b"), borrowed from opts */
    size_t dir_len;
    int nested;   /* inside another listed dir, which restores it */
    int parent;   /* owned: the dir's parent, opened without symlinks */
    int fd;       /* owned: the staging dir */
    char tmp[32]; /* the staging dir's name in parent; "" until created */
    int seen;     /* the archive holds the dir or something below it */
    dev_t dev;    /* of parent */
};

/* A directory's mode and mtime, applied once its children are in (and writes changed it). */
struct snap_fixup {
    size_t stage;
    char *rel; /* below the staging dir; "" is the staging dir itself */
    mode_t mode;
    uid_t uid; /* host ids; only used for "" (other dirs are chowned when made) */
    gid_t gid;
    struct timespec mtime;
};

struct snap_restore {
    const struct bh_snapshot_opts *o;
    struct bh_snapshot_reader *r;
    struct archive *a; /* borrowed */
    struct snap_stage *st;
    size_t n;
    struct snap_fixup *fix;
    size_t nfix, capfix;
    size_t cache_stage; /* the last parent dir opened, entries come in directory order */
    char *cache_rel;
    int cache_fd;
    struct bh_err *err;
};

static int snap_nested(char *const *dirs, size_t i)
{
    const char *d = dirs[i];
    size_t dl = strlen(d);
    for (size_t j = 0; dirs[j]; j++) {
        size_t jl = strlen(dirs[j]);
        if (j != i && jl < dl && !strncmp(d, dirs[j], jl) && d[jl] == '/')
            return 1;
        if (j < i && !strcmp(d, dirs[j]))
            return 1; /* listed twice: the first restores it */
    }
    return 0;
}

/* Opens the dir's parent (which must exist, reached without symlinks) and creates the
 * staging dir in it. */
static int snap_stage_open(struct snap_stage *s, int rootfd, struct bh_err *err)
{
    bh_autofree char *parent = bh_xstrndup(s->dir, s->dir_len);
    char *slash = strrchr(parent, '/');
    if (!slash)
        s->parent = dup(rootfd);
    else {
        *slash = '\0';
        int r = snap_open_beneath(rootfd, parent, O_RDONLY | O_DIRECTORY, &s->parent, err);
        if (r != 0)
            return r < 0 ? -1 : bh_err_set(err, BH_EINVAL, "snapshot: /%s is missing", parent);
    }
    struct stat st;
    if (s->parent < 0 || fstat(s->parent, &st) < 0)
        return bh_err_errno(err, BH_EIO, "snapshot: open parent of /%s", s->dir);
    s->dev = st.st_dev;
    for (int tries = 0;; tries++) {
        uint8_t rnd[6];
        if (bh_crypto_random(rnd, sizeof(rnd), err) < 0)
            return -1;
        snprintf(s->tmp, sizeof(s->tmp), ".bh-restore-%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1],
                 rnd[2], rnd[3], rnd[4], rnd[5]);
        if (mkdirat(s->parent, s->tmp, 0700) == 0)
            break;
        int e = errno;
        s->tmp[0] = '\0';
        if (e != EEXIST || tries > 8) {
            errno = e;
            return bh_err_errno(err, BH_EIO, "snapshot: create staging dir for /%s", s->dir);
        }
    }
    s->fd = openat(s->parent, s->tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (s->fd < 0)
        return bh_err_errno(err, BH_EIO, "snapshot: open staging dir for /%s", s->dir);
    return 0;
}

static int snap_stages_open(struct snap_restore *x, int rootfd)
{
    for (char *const *d = x->o->dirs; *d; d++)
        x->n++;
    x->st = bh_xcalloc(x->n, sizeof(*x->st));
    for (size_t i = 0; i < x->n; i++) {
        struct snap_stage *s = &x->st[i];
        s->dir = x->o->dirs[i] + 1;
        s->dir_len = strlen(s->dir);
        s->parent = s->fd = -1;
        s->nested = snap_nested(x->o->dirs, i);
    }
    for (size_t i = 0; i < x->n; i++)
        if (!x->st[i].nested && snap_stage_open(&x->st[i], rootfd, x->err) < 0)
            return -1;
    return 0;
}

/* Removes what is left staged (everything, after a failure) and frees the state. */
static void snap_restore_free(struct snap_restore *x)
{
    for (size_t i = 0; i < x->n; i++) {
        struct snap_stage *s = &x->st[i];
        struct bh_err ignored;
        if (s->tmp[0] && snap_rm_at(s->parent, s->tmp, s->dev, &ignored) < 0)
            bh_warn("snapshot", "msg=\"cannot remove staging dir\" dir=\"/%s\" err=\"%s\"", s->dir,
                    ignored.msg);
        if (s->fd >= 0)
            close(s->fd);
        if (s->parent >= 0)
            close(s->parent);
    }
    for (size_t i = 0; i < x->nfix; i++)
        free(x->fix[i].rel);
    if (x->cache_fd >= 0)
        close(x->cache_fd);
    free(x->cache_rel);
    free(x->fix);
    free(x->st);
}

/* The fd of the staged directory rel (borrowed), opened beneath the staging dir without
 * following any symlink: an archived symlink cannot redirect a later entry. */
static int snap_dir_fd(struct snap_restore *x, size_t si, const char *rel, int *out)
{
    if (!*rel) {
        *out = x->st[si].fd;
        return 0;
    }
    if (x->cache_fd >= 0 && x->cache_stage == si && !strcmp(x->cache_rel, rel)) {
        *out = x->cache_fd;
        return 0;
    }
    int fd = -1;
    int r = snap_open_beneath(x->st[si].fd, rel, O_RDONLY | O_DIRECTORY, &fd, x->err);
    if (r != 0)
        return r < 0 ? -1
                     : bh_err_set(x->err, BH_EINVAL,
                                  "snapshot: refusing entries below %s/%s: not a directory "
                                  "earlier in the archive",
                                  x->st[si].dir, rel);
    if (x->cache_fd >= 0)
        close(x->cache_fd);
    free(x->cache_rel);
    x->cache_fd = fd;
    x->cache_rel = bh_xstrdup(rel);
    x->cache_stage = si;
    *out = fd;
    return 0;
}

/* A duplicate entry replaces an earlier non-directory (as tar does); never a directory. */
static int snap_make_room(int pfd, const char *name, const char *path, struct bh_err *err)
{
    struct stat st;
    if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return bh_err_errno(err, BH_EIO, "snapshot: stat %s", path);
    if (S_ISDIR(st.st_mode))
        return bh_err_set(err, BH_EINVAL, "snapshot: refusing entry %s: replaces a directory",
                          path);
    if (unlinkat(pfd, name, 0) < 0)
        return bh_err_errno(err, BH_EIO, "snapshot: replace %s", path);
    return 0;
}

static void snap_add_fixup(struct snap_restore *x, size_t si, const char *rel,
                           struct archive_entry *e, uid_t uid, gid_t gid)
{
    if (x->nfix == x->capfix) {
        x->capfix = x->capfix ? 2 * x->capfix : 64;
        x->fix = bh_xrealloc(x->fix, x->capfix * sizeof(*x->fix));
    }
    x->fix[x->nfix++] = (struct snap_fixup){
        .stage = si,
        .rel = bh_xstrdup(rel),
        .mode = archive_entry_perm(e),
        .uid = uid,
        .gid = gid,
        .mtime = {archive_entry_mtime(e), archive_entry_mtime_nsec(e)},
    };
}

static int snap_mkdir(struct snap_restore *x, int pfd, const char *name, const char *path,
                      uid_t uid, gid_t gid)
{
    struct stat st;
    if (mkdirat(pfd, name, 0700) < 0) {
        if (errno != EEXIST)
            return bh_err_errno(x->err, BH_EIO, "snapshot: mkdir %s", path);
        if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            return bh_err_errno(x->err, BH_EIO, "snapshot: stat %s", path);
        if (!S_ISDIR(st.st_mode)) {
            if (snap_make_room(pfd, name, path, x->err) < 0)
                return -1;
            if (mkdirat(pfd, name, 0700) < 0)
                return bh_err_errno(x->err, BH_EIO, "snapshot: mkdir %s", path);
        }
    }
    if (fchownat(pfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
        return bh_err_errno(x->err, BH_EIO, "snapshot: chown %s", path);
    return 0;
}

static int snap_symlink(struct snap_restore *x, int pfd, const char *name, const char *path,
                        struct archive_entry *e, uid_t uid, gid_t gid)
{
    const char *target = archive_entry_symlink(e);
    if (!target)
        return bh_err_set(x->err, BH_EINVAL, "snapshot: symlink %s has no target", path);
    int rc = symlinkat(target, pfd, name);
    if (rc < 0 && errno == EEXIST) {
        if (snap_make_room(pfd, name, path, x->err) < 0)
            return -1;
        rc = symlinkat(target, pfd, name);
    }
    if (rc < 0)
        return bh_err_errno(x->err, BH_EIO, "snapshot: symlink %s", path);
    struct timespec ts[2] = {{archive_entry_mtime(e), archive_entry_mtime_nsec(e)},
                             {archive_entry_mtime(e), archive_entry_mtime_nsec(e)}};
    if (fchownat(pfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0 ||
        utimensat(pfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
        return bh_err_errno(x->err, BH_EIO, "snapshot: set owner/time of %s", path);
    return 0;
}

static int snap_write_data(struct snap_restore *x, int fd, const char *path)
{
    const void *buf;
    size_t len;
    int64_t off;
    int rc;
    while ((rc = archive_read_data_block(x->a, &buf, &len, &off)) == ARCHIVE_OK)
        for (size_t done = 0; done < len;) {
            ssize_t n = pwrite(fd, (const uint8_t *)buf + done, len - done, off + (off_t)done);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                return bh_err_errno(x->err, BH_EIO, "snapshot: write %s", path);
            done += (size_t)n;
        }
    return rc == ARCHIVE_EOF ? 0 : snap_read_err(x->a, x->r, x->err);
}

static int snap_file(struct snap_restore *x, int pfd, const char *name, const char *path,
                     struct archive_entry *e, uid_t uid, gid_t gid)
{
    const int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
    int fd = openat(pfd, name, flags, 0600);
    if (fd < 0 && errno == EEXIST) {
        if (snap_make_room(pfd, name, path, x->err) < 0)
            return -1;
        fd = openat(pfd, name, flags, 0600);
    }
    if (fd < 0)
        return bh_err_errno(x->err, BH_EIO, "snapshot: create %s", path);
    bh_autoclose int file = fd;
    if (snap_write_data(x, file, path) < 0)
        return -1;
    struct timespec ts[2] = {{archive_entry_mtime(e), archive_entry_mtime_nsec(e)},
                             {archive_entry_mtime(e), archive_entry_mtime_nsec(e)}};
    /* chown first: it clears set-id bits that the chmod then restores */
    if (fchown(file, uid, gid) < 0 || fchmod(file, archive_entry_perm(e)) < 0 ||
        futimens(file, ts) < 0)
        return bh_err_errno(x->err, BH_EIO, "snapshot: set owner/mode/time of %s", path);
    return 0;
}

/* The one non-nested listed dir holding path (the checks guarantee one). */
static size_t snap_stage_of(const struct snap_restore *x, const char *path)
{
    for (size_t i = 0; i < x->n; i++) {
        const struct snap_stage *s = &x->st[i];
        if (!s->nested && !strncmp(path, s->dir, s->dir_len) &&
            (!path[s->dir_len] || path[s->dir_len] == '/'))
            return i;
    }
    return x->n;
}

static int snap_restore_entry(struct snap_restore *x, struct archive_entry *e)
{
    if (snap_check_entry(x->o, e, x->err) < 0)
        return -1;
    const char *path = archive_entry_pathname(e);
    bh_autofree char *clean = bh_xstrdup(path);
    size_t len = strlen(clean);
    if (len && clean[len - 1] == '/')
        clean[len - 1] = '\0';
    size_t si = snap_stage_of(x, clean);
    if (si == x->n)
        return bh_err_set(x->err, BH_EINVAL, "snapshot: refusing entry \"%s\"", path);
    struct snap_stage *s = &x->st[si];
    s->seen = 1;
    uid_t uid = (uid_t)archive_entry_uid(e) + x->o->uid_base;
    gid_t gid = (gid_t)archive_entry_gid(e) + x->o->uid_base;
    mode_t type = archive_entry_filetype(e);
    char *rel = clean + s->dir_len + (clean[s->dir_len] == '/');
    if (!*rel) {
        if (type != AE_IFDIR)
            return bh_err_set(x->err, BH_EINVAL, "snapshot: refusing entry \"%s\": not a dir",
                              path);
        snap_add_fixup(x, si, "", e, uid, gid); /* chowned last: see snap_apply_fixups */
        return 0;
    }
    char *slash = strrchr(rel, '/');
    const char *name = slash ? slash + 1 : rel;
    if (slash)
        *slash = '\0';
    int pfd = -1;
    if (snap_dir_fd(x, si, slash ? rel : "", &pfd) < 0)
        return -1;
    if (slash)
        *slash = '/';
    if (type == AE_IFDIR) {
        if (snap_mkdir(x, pfd, name, clean, uid, gid) < 0)
            return -1;
        snap_add_fixup(x, si, rel, e, uid, gid);
        return 0;
    }
    if (type == AE_IFLNK)
        return snap_symlink(x, pfd, name, clean, e, uid, gid);
    return snap_file(x, pfd, name, clean, e, uid, gid);
}

/* Directory modes and times, once nothing more is written below them (in archive order: a
 * later duplicate wins). The staging dir itself stays 0700 and owned by the host's root until
 * here, so until the archive verified the container cannot reach into the staged tree even if
 * it is not frozen. */
static int snap_apply_fixups(struct snap_restore *x)
{
    for (size_t i = 0; i < x->nfix; i++) {
        const struct snap_fixup *f = &x->fix[i];
        int fd = x->st[f->stage].fd;
        int r = *f->rel ? snap_open_beneath(fd, f->rel, O_RDONLY | O_DIRECTORY, &fd, x->err) : 0;
        if (r != 0) /* cannot happen: directories are never replaced */
            return r < 0 ? -1
                         : bh_err_set(x->err, BH_EINVAL, "snapshot: %s/%s vanished",
                                      x->st[f->stage].dir, f->rel);
        struct timespec ts[2] = {f->mtime, f->mtime};
        int rc = (!*f->rel && fchown(fd, f->uid, f->gid) < 0) || fchmod(fd, f->mode) < 0 ||
                 futimens(fd, ts) < 0;
        if (fd != x->st[f->stage].fd)
            close(fd);
        if (rc)
            return bh_err_errno(x->err, BH_EIO, "snapshot: set owner/mode/time of %s/%s",
                                x->st[f->stage].dir, f->rel);
    }
    return 0;
}

/* Makes each verified staging dir live: exchanged with the old dir (then removed) so each
 * overlay dir changes atomically; an overlay dir absent from the archive is removed. A live
 * dir that is a symlink is exchanged as a link, never followed. */
static int snap_swap_in(struct snap_restore *x)
{
    for (size_t i = 0; i < x->n; i++) {
        struct snap_stage *s = &x->st[i];
        if (s->nested)
            continue;
        const char *name = strrchr(s->dir, '/') ? strrchr(s->dir, '/') + 1 : s->dir;
        if (!s->seen) {
            if (snap_rm_at(s->parent, name, s->dev, x->err) < 0)
                return -1;
            continue; /* the empty staging dir goes with the cleanup */
        }
        if (renameat2(s->parent, s->tmp, s->parent, name, RENAME_EXCHANGE) < 0) {
            /* EXDEV: the live dir comes from an image layer (a Dockerfile's `RUN mkdir
             * /workspace`), which overlayfs cannot rename without redirect_dir. It is removed
             * (a whiteout) and the staged dir moved in, which overlayfs marks opaque. Not
             * atomic, but the instance is frozen or not started while a restore runs. */
            int why = errno;
            if (why != ENOENT && why != EXDEV)
                return bh_err_errno(x->err, BH_EIO, "snapshot: swap in /%s", s->dir);
            if (why == EXDEV && snap_rm_at(s->parent, name, s->dev, x->err) < 0)
                return -1;
            if (renameat2(s->parent, s->tmp, s->parent, name, RENAME_NOREPLACE) < 0)
                return bh_err_errno(x->err, BH_EIO, "snapshot: move in /%s", s->dir);
            s->tmp[0] = '\0';
            continue;
        }
        if (snap_rm_at(s->parent, s->tmp, s->dev, x->err) < 0)
            return -1;
        s->tmp[0] = '\0';
    }
    return 0;
}

/* One pass: decrypts, checks and extracts every entry into the staging dirs, verifies the
 * stream through its final chunk, then swaps. Any failure leaves the live dirs untouched. */
static int snap_restore_staged(const struct bh_snapshot_opts *o, int rootfd,
                               struct bh_snapshot_reader *r, struct bh_err *err)
{
    struct snap_restore x = {.o = o, .r = r, .cache_fd = -1, .err = err};
    __attribute__((cleanup(snap_read_freep))) struct archive *a = NULL;
    int rc = -1;
    if (snap_stages_open(&x, rootfd) < 0 || !(a = snap_read_open(r, err)))
        goto out;
    x.a = a;
    struct archive_entry *e;
    int ar;
    while ((ar = archive_read_next_header(a, &e)) == ARCHIVE_OK)
        if (snap_restore_entry(&x, e) < 0)
            goto out;
    if (ar != ARCHIVE_EOF) {
        snap_read_err(a, r, err);
        goto out;
    }
    if (bh_snapshot_reader_drain(r, err) < 0 || snap_apply_fixups(&x) < 0 || snap_swap_in(&x) < 0)
        goto out;
    rc = 0;
out:
    snap_restore_free(&x);
    return rc;
}

int bh_snapshot_check_digest(int fd, const char *expected, struct bh_err *err)
{
    char hex[65];
    if (bh_crypto_sha256_fd(fd, hex, err) < 0)
        return -1;
    if (!expected || strcmp(hex, expected) != 0)
        return bh_err_set(err, BH_EINVAL, "snapshot: digest mismatch (expected %s, got %s)",
                          expected ? expected : "none", hex);
    return 0;
}

/* The file is opened once: every pass reads the same inode the digest was computed on. */
int bh_snapshot_restore(const struct bh_snapshot_opts *opts, const char *in_path,
                        const char *expected_digest, struct bh_err *err)
{
    if (snap_check_opts(opts, err) < 0)
        return -1;
    bh_autofree char *rootfs = realpath(opts->rootfs, NULL);
    if (!rootfs)
        return bh_err_errno(err, BH_EIO, "snapshot: rootfs %s", opts->rootfs);
    bh_autoclose int fd = open(in_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return bh_err_errno(err, errno == ENOENT ? BH_ENOTFOUND : BH_EIO, "snapshot: open %s",
                            in_path);
    if (bh_snapshot_check_digest(fd, expected_digest, err) < 0)
        return -1;
    struct bh_snapshot_reader r;
    bh_autoclose int rootfd = -1;
    int rc = bh_snapshot_reader_init(&r, fd, opts->master_key, opts->context, err);
    rc = rc < 0 ? rc : snap_open_root(rootfs, &rootfd, err);
    rc = rc < 0 ? rc : snap_restore_staged(opts, rootfd, &r, err);
    bh_snapshot_reader_free(&r);
    return rc;
}
