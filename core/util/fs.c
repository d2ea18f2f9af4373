#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mem.h"

int bh_fs_mkdirp(const char *path, mode_t mode, struct bh_err *err)
{
    bh_autofree char *buf = bh_xstrdup(path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
            return bh_err_errno(err, BH_EIO, "mkdir %s", buf);
        *p = '/';
    }
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
        return bh_err_errno(err, BH_EIO, "mkdir %s", buf);
    return 0;
}

int bh_fs_fsync_dir(const char *dir, struct bh_err *err)
{
    bh_autoclose int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return bh_err_errno(err, BH_EIO, "open dir %s", dir);
    if (fsync(fd) < 0)
        return bh_err_errno(err, BH_EIO, "fsync dir %s", dir);
    return 0;
}

static int fs_write_full(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Temp file in the same dir, rename over path; with durable, fsync of both first and of the
 * directory after. */
static int fs_write_rename(const char *path, const void *data, size_t len, mode_t mode, int durable,
                           struct bh_err *err)
{
    bh_autofree char *tmp = bh_xasprintf("%s.tmp.XXXXXX", path);
    bh_autofree char *dir = bh_xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return bh_err_errno(err, BH_EIO, "create %s", tmp);
    if (fchmod(fd, mode) < 0 || fs_write_full(fd, data, len) < 0 || (durable && fsync(fd) < 0)) {
        bh_err_errno(err, BH_EIO, "write %s", tmp);
        close(fd);
        unlink(tmp);
        return -1;
    }
    close(fd);
    if (rename(tmp, path) < 0) {
        bh_err_errno(err, BH_EIO, "rename %s", path);
        unlink(tmp);
        return -1;
    }
    return durable ? bh_fs_fsync_dir(slash ? dir : ".", err) : 0;
}

int bh_fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
                       struct bh_err *err)
{
    return fs_write_rename(path, data, len, mode, 1, err);
}

int bh_fs_write_replace(const char *path, const void *data, size_t len, mode_t mode,
                        struct bh_err *err)
{
    return fs_write_rename(path, data, len, mode, 0, err);
}

int bh_fs_read_all(const char *path, size_t max, char **out, size_t *len, struct bh_err *err)
{
    bh_autoclose int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return bh_err_errno(err, errno == ENOENT ? BH_ENOTFOUND : BH_EIO, "open %s", path);
    size_t cap = max < 4096 ? max : 4096, n = 0;
    bh_autofree char *buf = bh_xmalloc(cap + 1);
    for (;;) {
        if (n == cap && cap < max) {
            cap = cap * 2 > max ? max : cap * 2;
            buf = bh_xrealloc(buf, cap + 1);
        }
        /* At the limit, read into the spare byte: any data there means the file is too big. */
        ssize_t r = read(fd, buf + n, n == cap ? 1 : cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return bh_err_errno(err, BH_EIO, "read %s", path);
        if (r == 0)
            break;
        if (n == cap)
            return bh_err_set(err, BH_ETOOLARGE, "%s is larger than %zu bytes", path, max);
        n += (size_t)r;
    }
    buf[n] = '\0';
    if (len)
        *len = n;
    *out = BH_STEAL(buf);
    return 0;
}

static int fs_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    int r = (flag == FTW_DP) ? rmdir(path) : unlink(path);
    return (r < 0 && errno != ENOENT) ? -1 : 0;
}

int bh_fs_rmtree(const char *path, struct bh_err *err)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : bh_err_errno(err, BH_EIO, "stat %s", path);
    if (nftw(path, fs_rm_entry, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0)
        return bh_err_errno(err, BH_EIO, "remove %s", path);
    return 0;
}

int bh_fs_safe_component(const char *name)
{
    return name && name[0] && !strchr(name, '/') && strcmp(name, ".") != 0 &&
           strcmp(name, "..") != 0;
}

int bh_fs_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static int fs_openat2_root(int rootfd, const char *path, int flags, mode_t mode)
{
    struct open_how how = {
        .flags = (uint64_t)(flags | O_CLOEXEC),
        .mode = (flags & O_CREAT) ? mode : 0,
        .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    return (int)syscall(SYS_openat2, rootfd, path, &how, sizeof(how));
}

/* Creates dir (absolute within root, a prefix of a path) if missing, in its parent as
 * resolved in root. */
static int fs_mkdir_in_root(int rootfd, char *dir, struct bh_err *err)
{
    int fd = fs_openat2_root(rootfd, dir, O_PATH | O_DIRECTORY, 0);
    if (fd >= 0) {
        close(fd);
        return 0;
    }
    char *cut = strrchr(dir, '/');
    *cut = '\0';
    int pfd = fs_openat2_root(rootfd, dir[0] ? dir : "/", O_PATH | O_DIRECTORY, 0);
    *cut = '/';
    if (pfd < 0)
        return bh_err_errno(err, BH_EIO, "open parent of %s in rootfs", dir);
    int rc = mkdirat(pfd, cut + 1, 0755) < 0 && errno != EEXIST;
    close(pfd);
    return rc ? bh_err_errno(err, BH_EIO, "create %s in rootfs", dir) : 0;
}

/* Opens (creating as needed) the directory part of path inside root; *base points at the
 * last component of path. Every prefix is resolved in root, so symlinked dirs inside the
 * rootfs work and none leads out. */
static int fs_parent_in_root(int rootfd, const char *path, const char **base, struct bh_err *err)
{
    const char *slash = strrchr(path, '/');
    if (path[0] != '/' || !slash[1] || !bh_fs_safe_component(slash + 1))
        return bh_err_set(err, BH_EINVAL, "bad path %s", path);
    *base = slash + 1;
    bh_autofree char *dir = bh_xstrndup(path, (size_t)(slash - path));
    for (char *p = strchr(dir + 1, '/'); dir[0]; p = strchr(p + 1, '/')) {
        if (p)
            *p = '\0';
        int rc = fs_mkdir_in_root(rootfd, dir, err);
        if (p)
            *p = '/';
        if (rc < 0)
            return -1;
        if (!p)
            break;
    }
    int fd = fs_openat2_root(rootfd, dir[0] ? dir : "/", O_PATH | O_DIRECTORY, 0);
    if (fd < 0)
        return bh_err_errno(err, BH_EIO, "open %s in rootfs", dir);
    return fd;
}

int bh_fs_open_in_root(const char *root, const char *path, int flags)
{
    int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return -1;
    int fd = fs_openat2_root(rootfd, path, flags, 0);
    int saved = errno;
    close(rootfd);
    errno = saved;
    return fd;
}

/* nftw has no user pointer: the scan's state is per thread. */
static __thread long long fs_scan_newest;
static __thread int fs_scan_left;

static int fs_scan_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)path, (void)flag, (void)ftw;
    long long ms = (long long)st->st_mtim.tv_sec * 1000 + st->st_mtim.tv_nsec / 1000000;
    if (ms > fs_scan_newest)
        fs_scan_newest = ms;
    return --fs_scan_left <= 0; /* nonzero stops the walk */
}

long long bh_fs_newest_mtime_in_root(const char *root, const char *dir, int max_entries)
{
    int fd = bh_fs_open_in_root(root, dir, O_PATH | O_DIRECTORY);
    if (fd < 0)
        return 0;
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d/.", fd);
    fs_scan_newest = 0;
    fs_scan_left = max_entries;
    nftw(path, fs_scan_entry, 16, FTW_PHYS | FTW_MOUNT);
    close(fd);
    return fs_scan_newest;
}

int bh_fs_read_in_root(const char *root, const char *path, size_t max, char **out, size_t *len,
                       struct bh_err *err)
{
    bh_autoclose int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return bh_err_errno(err, BH_EIO, "open %s", root);
    /* Non-blocking, and regular files only: a FIFO planted in an image must not hang us. */
    int fd = fs_openat2_root(rootfd, path, O_RDONLY | O_NONBLOCK, 0);
    if (fd < 0)
        return bh_err_errno(err, errno == ENOENT ? BH_ENOTFOUND : BH_EIO, "open %s in %s", path,
                            root);
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return bh_err_set(err, BH_EINVAL, "%s in %s is not a regular file", path, root);
    }
    bh_autofree char *proc = bh_xasprintf("/proc/self/fd/%d", fd);
    int rc = bh_fs_read_all(proc, max, out, len, err);
    close(fd);
    return rc;
}

int bh_fs_write_in_root(const char *root, const char *path, const void *data, size_t len,
                        mode_t mode, struct bh_err *err)
{
    bh_autoclose int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return bh_err_errno(err, BH_EIO, "open %s", root);
    const char *base = NULL;
    bh_autoclose int dirfd = fs_parent_in_root(rootfd, path, &base, err);
    if (dirfd < 0)
        return -1;
    bh_autofree char *tmp = bh_xasprintf(".%s.bh-tmp", base);
    int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0)
        return bh_err_errno(err, BH_EIO, "create %s in rootfs", path);
    int bad = fchmod(fd, mode) < 0 || fs_write_full(fd, data, len) < 0 || fsync(fd) < 0;
    close(fd);
    if (bad || renameat(dirfd, tmp, dirfd, base) < 0) {
        unlinkat(dirfd, tmp, 0);
        return bh_err_errno(err, BH_EIO, "write %s in rootfs", path);
    }
    return 0;
}
