#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

int bh_fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
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
    if (fchmod(fd, mode) < 0 || fs_write_full(fd, data, len) < 0 || fsync(fd) < 0) {
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
    return bh_fs_fsync_dir(slash ? dir : ".", err);
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
