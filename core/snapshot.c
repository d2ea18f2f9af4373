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
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

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

static int snap_set_filter(struct archive *a, enum bh_snapshot_compression comp, struct bh_err *err)
{
    int ok =
        comp == BH_SNAP_GZIP
            ? archive_write_add_filter_gzip(a) == ARCHIVE_OK &&
                  archive_write_set_filter_option(a, "gzip", "compression-level", "1") == ARCHIVE_OK
            : archive_write_add_filter_zstd(a) == ARCHIVE_OK &&
                  archive_write_set_filter_option(a, "zstd", "compression-level", "3") ==
                      ARCHIVE_OK;
    if (!ok)
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
        snap_set_filter(a, o->compression, err) < 0 || snap_open_root(o->rootfs, &rootfd, err) < 0)
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

int bh_snapshot_create(const struct bh_snapshot_opts *opts, const char *out_path,
                       struct bh_snapshot_info *info, struct bh_err *err)
{
    if (snap_check_opts(opts, err) < 0)
        return -1;
    memset(info, 0, sizeof(*info));
    bh_autoclose int fd =
        open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 || fchmod(fd, 0600) < 0)
        return bh_err_errno(err, BH_EIO, "snapshot: create %s", out_path);
    struct bh_snapshot_writer w;
    int rc = bh_snapshot_writer_init(&w, fd, opts->master_key, opts->context, err);
    if (rc == 0)
        rc = snap_write_all(opts, &w, &info->files, err);
    if (rc == 0)
        rc = bh_snapshot_writer_finish(&w, info, err);
    bh_snapshot_writer_free(&w);
    if (rc < 0)
        unlink(out_path);
    return rc;
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

/* Pass 1, before the rootfs is touched: decrypts (verifying every chunk through the final one)
 * and checks every entry header. */
static int snap_verify(const struct bh_snapshot_opts *o, struct bh_snapshot_reader *r,
                       struct bh_err *err)
{
    __attribute__((cleanup(snap_read_freep))) struct archive *a = snap_read_open(r, err);
    if (!a)
        return -1;
    struct archive_entry *e;
    int rc;
    while ((rc = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
        if (snap_check_entry(o, e, err) < 0)
            return -1;
        if (archive_read_data_skip(a) != ARCHIVE_OK)
            return snap_read_err(a, r, err);
    }
    if (rc != ARCHIVE_EOF)
        return snap_read_err(a, r, err);
    return bh_snapshot_reader_drain(r, err);
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

/* Removes each overlay dir whole (extraction recreates it from its own entry). Its parent
 * must exist and be reachable without symlinks. */
static int snap_clear_dirs(const struct bh_snapshot_opts *o, int rootfd, struct bh_err *err)
{
    for (char *const *d = o->dirs; *d; d++) {
        bh_autofree char *parent = bh_xstrdup(*d + 1);
        char *slash = strrchr(parent, '/');
        const char *name = slash ? slash + 1 : parent;
        int fd = rootfd;
        if (slash) {
            *slash = '\0';
            int r = snap_open_beneath(rootfd, parent, O_RDONLY | O_DIRECTORY, &fd, err);
            if (r != 0)
                return r < 0 ? -1 : bh_err_set(err, BH_EINVAL, "snapshot: /%s is missing", parent);
        }
        struct stat st;
        int rc = fstat(fd, &st) < 0 ? bh_err_errno(err, BH_EIO, "snapshot: stat")
                                    : snap_rm_at(fd, name, st.st_dev, err);
        if (fd != rootfd)
            close(fd);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int snap_copy_entry(struct archive *in, struct archive *out, struct bh_snapshot_reader *r,
                           struct bh_err *err)
{
    const void *buf;
    size_t len;
    int64_t off;
    int rc;
    while ((rc = archive_read_data_block(in, &buf, &len, &off)) == ARCHIVE_OK)
        if (archive_write_data_block(out, buf, len, off) < ARCHIVE_OK)
            return bh_err_set(err, BH_EIO, "snapshot: write: %s", archive_error_string(out));
    return rc == ARCHIVE_EOF ? 0 : snap_read_err(in, r, err);
}

static int snap_extract_entry(const struct bh_snapshot_opts *o, const char *rootfs,
                              struct archive *in, struct archive *out, struct archive_entry *e,
                              struct bh_snapshot_reader *r, struct bh_err *err)
{
    if (snap_check_entry(o, e, err) < 0)
        return -1;
    bh_autofree char *abs = bh_xasprintf("%s/%s", rootfs, archive_entry_pathname(e));
    archive_entry_set_pathname(e, abs);
    archive_entry_set_uid(e, archive_entry_uid(e) + o->uid_base);
    archive_entry_set_gid(e, archive_entry_gid(e) + o->uid_base);
    if (archive_write_header(out, e) < ARCHIVE_OK)
        return bh_err_set(err, BH_EINVAL, "snapshot: refusing entry %s: %s", abs,
                          archive_error_string(out));
    if (snap_copy_entry(in, out, r, err) < 0)
        return -1;
    if (archive_write_finish_entry(out) < ARCHIVE_OK)
        return bh_err_set(err, BH_EIO, "snapshot: %s: %s", abs, archive_error_string(out));
    return 0;
}

static void snap_write_freep(struct archive **a)
{
    if (*a)
        archive_write_free(*a);
}

/* Pass 2: extraction at absolute paths under the symlink-free rootfs (the daemon never
 * chdirs). libarchive refuses to write through any symlink on disk, so a symlink entry cannot
 * redirect a later one out of the rootfs. */
static int snap_extract(const struct bh_snapshot_opts *o, const char *rootfs,
                        struct bh_snapshot_reader *r, struct bh_err *err)
{
    __attribute__((cleanup(snap_read_freep))) struct archive *in = snap_read_open(r, err);
    __attribute__((cleanup(snap_write_freep))) struct archive *out = archive_write_disk_new();
    if (!in)
        return -1;
    archive_write_disk_set_options(
        out, ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                 ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME);
    struct archive_entry *e;
    int rc;
    while ((rc = archive_read_next_header(in, &e)) == ARCHIVE_OK)
        if (snap_extract_entry(o, rootfs, in, out, e, r, err) < 0)
            return -1;
    if (rc != ARCHIVE_EOF)
        return snap_read_err(in, r, err);
    if (archive_write_close(out) != ARCHIVE_OK)
        return bh_err_set(err, BH_EIO, "snapshot: finish: %s", archive_error_string(out));
    return bh_snapshot_reader_drain(r, err);
}

static int snap_check_digest(int fd, const char *expected, struct bh_err *err)
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
    if (snap_check_digest(fd, expected_digest, err) < 0)
        return -1;
    struct bh_snapshot_reader r;
    bh_autoclose int rootfd = -1;
    int rc = bh_snapshot_reader_init(&r, fd, opts->master_key, opts->context, err);
    rc = rc < 0 ? rc : snap_verify(opts, &r, err);
    rc = rc < 0 ? rc : snap_open_root(rootfs, &rootfd, err);
    rc = rc < 0 ? rc : snap_clear_dirs(opts, rootfd, err);
    rc = rc < 0 ? rc : snap_extract(opts, rootfs, &r, err);
    bh_snapshot_reader_free(&r);
    return rc;
}
