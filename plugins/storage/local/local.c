/* Snapshot storage on a local directory. Objects are plain files at <dir>/<key>. Every write
 * goes to a temp file beside its target (<target>.tmp.XXXXXX, same filesystem), is fsynced,
 * renamed over the target and the directory fsynced: readers and crashes see the old object
 * or the new one, never a mix. Temp files a crash leaves behind are removed by init. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boilerhouse/plugin.h>

#define LC_NAME "local"
#define LC_TMP_MARK ".tmp."
#define LC_KEY_MAX 1024

static const struct bh_host_api *lc_host;
static struct bh_plugin_handle *lc_handle; /* one instance: the daemon uses one storage plugin */

struct lc_state {
    char dir[PATH_MAX]; /* absolute */
};

static int lc_errno(struct bh_err *err, const char *what, const char *path)
{
    int code = errno == ENOENT ? BH_ENOTFOUND : BH_EIO;
    return lc_host->err_set(lc_handle, err, code, "%s %s: %s", what, path, strerror(errno));
}

/* ---- keys and paths ------------------------------------------------------------------------ */

static int lc_component_ok(const char *c, size_t len)
{
    if (len == 0 || (len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.'))
        return 0;
    /* A component carrying the temp mark would be taken for crash debris by init. */
    return !memmem(c, len, LC_TMP_MARK, strlen(LC_TMP_MARK));
}

/* The host builds keys from validated names; this is the second line of defence that keeps
 * every object inside dir whatever the host hands over. */
static int lc_check_key(const char *key, struct bh_err *err)
{
    static const char allowed[] = "abcdefghijklmnopqrstuvwxyz"
                                  "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/-";
    size_t n = key ? strlen(key) : 0;
    int ok = n > 0 && n <= LC_KEY_MAX && strspn(key, allowed) == n && key[0] != '/';
    for (const char *c = key; ok && c < key + n;) {
        const char *slash = strchr(c, '/');
        size_t len = slash ? (size_t)(slash - c) : strlen(c);
        ok = lc_component_ok(c, len) && !(slash && slash[1] == '\0');
        c += len + 1;
    }
    if (!ok)
        return lc_host->err_set(lc_handle, err, BH_EINVAL,
                                "storage key \"%.100s\" is not a safe relative path",
                                key ? key : "(null)");
    return 0;
}

static void lc_path(const struct lc_state *s, const char *key, char out[PATH_MAX])
{
    snprintf(out, PATH_MAX, "%s/%s", s->dir, key);
}

/* dir of path into out; "." if path has no slash. */
static void lc_parent(const char *path, char out[PATH_MAX])
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(out, PATH_MAX, ".");
    else
        snprintf(out, PATH_MAX, "%.*s", slash == path ? 1 : (int)(slash - path), path);
}

static int lc_fsync_dir(const char *dir, struct bh_err *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return lc_errno(err, "open", dir);
    int rc = fsync(fd);
    close(fd);
    return rc < 0 ? lc_errno(err, "fsync", dir) : 0;
}

/* mkdir -p; each directory it creates is made durable in its parent, so an object renamed
 * into it after a crash is not lost with the directory entry. */
static int lc_mkdirs(const char *path, struct bh_err *err)
{
    char buf[PATH_MAX], parent[PATH_MAX];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, 0700) == 0) {
            lc_parent(buf, parent);
            if (lc_fsync_dir(parent, err) < 0)
                return -1;
        } else if (errno != EEXIST) {
            return lc_errno(err, "mkdir", buf);
        }
        if (c == '\0')
            return 0;
        *p = c;
    }
}

/* ---- copying -------------------------------------------------------------------------------- */

static int lc_copy_fd(int in, int out)
{
    char buf[65536];
    for (;;) {
        ssize_t r = read(in, buf, sizeof(buf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return (int)r;
        for (ssize_t off = 0; off < r;) {
            ssize_t w = write(out, buf + off, (size_t)(r - off));
            if (w < 0 && errno != EINTR)
                return -1;
            off += w > 0 ? w : 0;
        }
    }
}

/* Writes everything readable from src_fd to target through a temp file beside it; durable
 * adds the fsyncs (objects in the store), scratch copies handed to the caller skip them. */
static int lc_write_atomic(int src_fd, const char *target, int durable, struct bh_err *err)
{
    char tmp[PATH_MAX], dir[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s" LC_TMP_MARK "XXXXXX", target) >= (int)sizeof(tmp))
        return lc_host->err_set(lc_handle, err, BH_EINVAL, "path too long: %s", target);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return lc_errno(err, "create", tmp);
    int ok = lc_copy_fd(src_fd, fd) == 0 && (!durable || fsync(fd) == 0);
    if (!ok)
        lc_errno(err, "write", tmp);
    if (close(fd) < 0 && ok)
        ok = 0, lc_errno(err, "close", tmp);
    if (ok && rename(tmp, target) < 0)
        ok = 0, lc_errno(err, "rename to", target);
    if (!ok) {
        unlink(tmp);
        return -1;
    }
    if (!durable)
        return 0;
    lc_parent(target, dir);
    return lc_fsync_dir(dir, err);
}

/* Copies the file at from to to, atomically at to. */
static int lc_copy_file(const char *from, const char *to, int durable, struct bh_err *err)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return lc_errno(err, "open", from);
    int rc = lc_write_atomic(in, to, durable, err);
    close(in);
    return rc;
}

/* Stores from as to without copying when both are on one filesystem: a hard link under a
 * temp name, its data fsynced (cheap when the writer synced it), renamed over to, the
 * directory fsynced. 1: not possible here (the caller copies). The caller unlinks from. */
static int lc_link_file(const char *from, const char *to, struct bh_err *err)
{
    char tmp[PATH_MAX], dir[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s" LC_TMP_MARK "XXXXXX", to) >= (int)sizeof(tmp))
        return lc_host->err_set(lc_handle, err, BH_EINVAL, "path too long: %s", to);
    int fd = mkostemp(tmp, O_CLOEXEC); /* reserves a unique name; replaced by the link */
    if (fd < 0)
        return lc_errno(err, "create", tmp);
    close(fd);
    if (unlink(tmp) < 0 || link(from, tmp) < 0)
        return 1;
    fd = open(tmp, O_RDONLY | O_CLOEXEC);
    int ok = fd >= 0 && fsync(fd) == 0;
    if (fd >= 0)
        close(fd);
    if (ok && rename(tmp, to) < 0)
        ok = 0;
    if (!ok) {
        lc_errno(err, "store", to);
        unlink(tmp);
        return -1;
    }
    lc_parent(to, dir);
    return lc_fsync_dir(dir, err);
}

/* ---- operations ----------------------------------------------------------------------------- */

static int lc_put(void *state, const char *key, const char *src_path, struct bh_err *err)
{
    char path[PATH_MAX], dir[PATH_MAX];
    if (lc_check_key(key, err) < 0)
        return -1;
    lc_path(state, key, path);
    lc_parent(path, dir);
    if (lc_mkdirs(dir, err) < 0)
        return -1;
    int linked = lc_link_file(src_path, path, err);
    if (linked < 0)
        return -1;
    if (linked == 1 && lc_copy_file(src_path, path, 1, err) < 0) {
        /* A missing source is the caller's fault, not a missing object. */
        if (err && err->code == BH_ENOTFOUND)
            err->code = BH_EIO;
        return -1;
    }
    return 0;
}

static int lc_get(void *state, const char *key, const char *dst_path, struct bh_err *err)
{
    char path[PATH_MAX];
    if (lc_check_key(key, err) < 0)
        return -1;
    lc_path(state, key, path);
    return lc_copy_file(path, dst_path, 0, err); /* the caller's scratch copy */
}

static int lc_stat(void *state, const char *key, uint64_t *size, struct bh_err *err)
{
    char path[PATH_MAX];
    struct stat st;
    if (lc_check_key(key, err) < 0)
        return -1;
    lc_path(state, key, path);
    if (stat(path, &st) < 0)
        return lc_errno(err, "stat", path);
    if (!S_ISREG(st.st_mode))
        return lc_host->err_set(lc_handle, err, BH_EIO, "%s is not a regular file", path);
    *size = (uint64_t)st.st_size;
    return 0;
}

static int lc_del(void *state, const char *key, struct bh_err *err)
{
    char path[PATH_MAX], dir[PATH_MAX];
    if (lc_check_key(key, err) < 0)
        return -1;
    lc_path(state, key, path);
    if (unlink(path) < 0)
        return errno == ENOENT ? 0 : lc_errno(err, "remove", path);
    lc_parent(path, dir);
    return lc_fsync_dir(dir, err);
}

/* ---- list ---------------------------------------------------------------------------------- */

/* nftw has no user pointer: one listing at a time (the host lists from one thread, rarely). */
static struct {
    const struct lc_state *s;
    const char *prefix;
    int (*each)(void *ud, const char *key, long long mtime);
    void *ud;
    int stopped;
} lc_listing;

static int lc_list_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    size_t n = strlen(lc_listing.s->dir);
    if (flag != FTW_F || !S_ISREG(st->st_mode) || strstr(path + ftw->base, LC_TMP_MARK) ||
        strncmp(path, lc_listing.s->dir, n) != 0 || path[n] != '/')
        return 0;
    const char *key = path + n + 1;
    if (strncmp(key, lc_listing.prefix, strlen(lc_listing.prefix)) != 0)
        return 0;
    lc_listing.stopped = lc_listing.each(lc_listing.ud, key, (long long)st->st_mtime);
    return lc_listing.stopped;
}

static int lc_list(void *state, const char *prefix,
                   int (*each)(void *ud, const char *key, long long mtime), void *ud,
                   struct bh_err *err)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&lock);
    lc_listing.s = state;
    lc_listing.prefix = prefix ? prefix : "";
    lc_listing.each = each;
    lc_listing.ud = ud;
    lc_listing.stopped = 0;
    int rc = nftw(((struct lc_state *)state)->dir, lc_list_entry, 16, FTW_PHYS | FTW_MOUNT);
    int stopped = lc_listing.stopped;
    pthread_mutex_unlock(&lock);
    if (rc < 0 && !stopped)
        return lc_errno(err, "list", ((struct lc_state *)state)->dir);
    return 0;
}

/* ---- init ----------------------------------------------------------------------------------- */

static int lc_clean_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    if (flag != FTW_F || !S_ISREG(st->st_mode) || !strstr(path + ftw->base, LC_TMP_MARK))
        return 0;
    if (unlink(path) == 0)
        lc_host->log(lc_handle, BH_LOG_INFO, "removed %s left by an interrupted write", path);
    else
        lc_host->log(lc_handle, BH_LOG_WARN, "cannot remove %s: %s", path, strerror(errno));
    return 0;
}

static int lc_init(struct bh_plugin_handle *h, void **state, struct bh_err *err)
{
    lc_handle = h;
    const char *dir = lc_host->config_string(lc_handle, "dir");
    struct lc_state *s = calloc(1, sizeof(*s));
    if (!s)
        return lc_host->err_set(lc_handle, err, BH_EIO, "out of memory");
    if (dir && dir[0])
        snprintf(s->dir, sizeof(s->dir), "%s", dir);
    else
        snprintf(s->dir, sizeof(s->dir), "%s", lc_host->state_dir(lc_handle));
    int rc = 0;
    if (s->dir[0] != '/')
        rc = lc_host->err_set(lc_handle, err, BH_EINVAL, "dir \"%s\" must be an absolute path",
                              s->dir);
    if (rc == 0)
        rc = lc_mkdirs(s->dir, err);
    if (rc == 0 && nftw(s->dir, lc_clean_entry, 16, FTW_PHYS | FTW_MOUNT) < 0)
        rc = lc_errno(err, "scan", s->dir);
    if (rc < 0) {
        free(s);
        return -1;
    }
    *state = s;
    return 0;
}

static void lc_fini(void *state)
{
    free(state);
}

static const struct bh_config_field lc_schema[] = {
    {"dir", BH_CFG_STRING, 0, "", "where snapshots live; empty means <state dir>/snapshots"},
};

static const struct bh_storage_ops lc_ops = {
    .size = sizeof(struct bh_storage_ops),
    .init = lc_init,
    .fini = lc_fini,
    .put = lc_put,
    .get = lc_get,
    .stat = lc_stat,
    .del = lc_del,
    .list = lc_list,
};

static const struct bh_plugin_info lc_info = {
    .size = sizeof(struct bh_plugin_info),
    .abi_major = BH_PLUGIN_ABI_MAJOR,
    .abi_minor = BH_PLUGIN_ABI_MINOR,
    .build_sig = BH_PLUGIN_BUILD_SIG,
    .kind = BH_PLUGIN_STORAGE,
    /* Every write is a private temp file renamed into place: calls may overlap. */
    .flags = BH_PLUGIN_THREADSAFE,
    .name = LC_NAME,
    .version = "0.1.0",
    .field_size = sizeof(struct bh_config_field),
    .config_schema = lc_schema,
    .n_config = sizeof(lc_schema) / sizeof(lc_schema[0]),
    .ops = &lc_ops,
};

BH_PLUGIN_EXPORT const struct bh_plugin_info *bh_plugin_entry(const struct bh_host_api *host)
{
    lc_host = host;
    return &lc_info;
}
