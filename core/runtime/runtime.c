/* The runtime seam: container naming and the calls every driver answers through its ops. */
#include "runtime.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mem.h"

#define RT_CID_PREFIX "bh-"
#define RT_ID_LEN 12

char *bh_runtime_container_id(const char *instance_id)
{
    return bh_xasprintf(RT_CID_PREFIX "%s", instance_id);
}

int bh_runtime_id_valid(const char *id)
{
    if (!id || strlen(id) != RT_ID_LEN)
        return 0;
    for (const char *p = id; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return 0;
    return 1;
}

const char *bh_runtime_instance_id(const char *cid)
{
    size_t n = strlen(RT_CID_PREFIX);
    return strncmp(cid, RT_CID_PREFIX, n) == 0 ? cid + n : NULL;
}

const char *bh_runtime_name(const struct bh_runtime *rt)
{
    return rt->name;
}

int bh_runtime_has(const struct bh_runtime *rt, unsigned caps)
{
    return (rt->ops->caps & caps) == caps;
}

/* An op the driver does not have (a remote driver has no rootfs, no pause...). */
static int rt_missing(const struct bh_runtime *rt, const char *what, struct bh_err *err)
{
    return bh_err_set(err, BH_EUNAVAIL, "the %s runtime cannot %s", rt->name, what);
}

static const struct bh_runtime_remote_ops *rt_remote(const struct bh_runtime *rt)
{
    return bh_runtime_has(rt, BH_RUNTIME_CAP_REMOTE) ? rt->ops->remote : NULL;
}

void bh_runtime_close(struct bh_runtime *rt)
{
    if (rt)
        rt->ops->close(rt);
}

int bh_runtime_rootfs_prepare(struct bh_runtime *rt, const struct bh_runtime_spec *spec,
                              struct bh_err *err)
{
    if (!rt->ops->rootfs_prepare)
        return rt_missing(rt, "rootfs prepare", err);
    return rt->ops->rootfs_prepare(rt, spec, err);
}

int bh_runtime_rootfs_release(struct bh_runtime *rt, const char *rootfs, const char *disk,
                              struct bh_err *err)
{
    if (!rt->ops->rootfs_release)
        return rt_missing(rt, "rootfs release", err);
    return rt->ops->rootfs_release(rt, rootfs, disk, err);
}

int bh_runtime_create(struct bh_runtime *rt, const struct bh_runtime_spec *spec, int *pid,
                      struct bh_err *err)
{
    if (!rt->ops->create)
        return rt_missing(rt, "create", err);
    return rt->ops->create(rt, spec, pid, err);
}

int bh_runtime_start(struct bh_runtime *rt, const char *id, struct bh_err *err)
{
    if (!rt->ops->start)
        return rt_missing(rt, "start", err);
    return rt->ops->start(rt, id, err);
}

int bh_runtime_state(struct bh_runtime *rt, const char *id, struct bh_runtime_state *st,
                     struct bh_err *err)
{
    if (!rt->ops->state)
        return rt_missing(rt, "state", err);
    return rt->ops->state(rt, id, st, err);
}

int bh_runtime_alive(struct bh_runtime *rt, const char *id, int pid)
{
    return rt->ops->alive(rt, id, pid);
}

int bh_runtime_kill(struct bh_runtime *rt, const char *id, int sig, struct bh_err *err)
{
    if (!rt->ops->kill)
        return rt_missing(rt, "kill", err);
    return rt->ops->kill(rt, id, sig, err);
}

int bh_runtime_delete(struct bh_runtime *rt, const char *id, struct bh_err *err)
{
    return rt->ops->delete (rt, id, err);
}

int bh_runtime_pause(struct bh_runtime *rt, const char *id, struct bh_err *err)
{
    if (!rt->ops->pause)
        return rt_missing(rt, "pause", err);
    return rt->ops->pause(rt, id, err);
}

int bh_runtime_resume(struct bh_runtime *rt, const char *id, struct bh_err *err)
{
    if (!rt->ops->resume)
        return rt_missing(rt, "resume", err);
    return rt->ops->resume(rt, id, err);
}

int bh_runtime_exec(struct bh_runtime *rt, const char *id, char *const *argv, int timeout_ms,
                    struct bh_proc_result *res, struct bh_err *err)
{
    if (!rt->ops->exec)
        return rt_missing(rt, "exec", err);
    return rt->ops->exec(rt, id, argv, timeout_ms, res, err);
}

int bh_runtime_stats(struct bh_runtime *rt, const char *id, int pid, struct bh_runtime_stats *st,
                     struct bh_err *err)
{
    if (!rt->ops->stats)
        return rt_missing(rt, "stats", err);
    return rt->ops->stats(rt, id, pid, st, err);
}

char *bh_runtime_netns_path(struct bh_runtime *rt, const char *id, int pid)
{
    return rt->ops->netns_path ? rt->ops->netns_path(rt, id, pid) : NULL;
}

int bh_runtime_list(struct bh_runtime *rt, char ***ids, struct bh_err *err)
{
    return rt->ops->list(rt, ids, err);
}

int bh_runtime_launch(struct bh_runtime *rt, const struct bh_runtime_instance *inst,
                      struct bh_err *err)
{
    const struct bh_runtime_remote_ops *r = rt_remote(rt);
    return r ? r->launch(rt, inst, err) : rt_missing(rt, "launch from a workload", err);
}

int bh_runtime_ready(struct bh_runtime *rt, const char *id, struct bh_err *err)
{
    const struct bh_runtime_remote_ops *r = rt_remote(rt);
    return r ? r->ready(rt, id, err) : rt_missing(rt, "report readiness", err);
}

int bh_runtime_endpoint(struct bh_runtime *rt, const char *id, struct bh_runtime_endpoint *ep,
                        struct bh_err *err)
{
    const struct bh_runtime_remote_ops *r = rt_remote(rt);
    return r ? r->endpoint(rt, id, ep, err) : rt_missing(rt, "report an endpoint", err);
}

int bh_runtime_assign(struct bh_runtime *rt, const struct bh_runtime_instance *inst,
                      struct bh_err *err)
{
    const struct bh_runtime_remote_ops *r = rt_remote(rt);
    return r ? r->assign(rt, inst, err) : rt_missing(rt, "assign an instance", err);
}

int bh_runtime_save(struct bh_runtime *rt, const char *id, const char *out_path,
                    struct bh_runtime_saved *saved, struct bh_err *err)
{
    const struct bh_runtime_remote_ops *r = rt_remote(rt);
    return r && r->save ? r->save(rt, id, out_path, saved, err)
                        : rt_missing(rt, "save an instance's data", err);
}

int bh_runtime_restore(struct bh_runtime *rt, const char *id, const char *in_path,
                       const char *digest, int timeout_ms, struct bh_err *err)
{
    const struct bh_runtime_remote_ops *r = rt_remote(rt);
    return r && r->restore ? r->restore(rt, id, in_path, digest, timeout_ms, err)
                           : rt_missing(rt, "restore an instance's data", err);
}

int bh_runtime_credentials(struct bh_runtime *rt, const char *id,
                           const struct bh_runtime_credential *creds, size_t n, int timeout_ms,
                           struct bh_err *err)
{
    const struct bh_runtime_remote_ops *r = rt_remote(rt);
    return r && r->credentials ? r->credentials(rt, id, creds, n, timeout_ms, err)
                               : rt_missing(rt, "hand an instance its tenant's credentials", err);
}

int bh_runtime_inventory(struct bh_runtime *rt, struct bh_runtime_found **found, size_t *n,
                         struct bh_err *err)
{
    const struct bh_runtime_remote_ops *r = rt_remote(rt);
    *found = NULL;
    *n = 0;
    return r && r->inventory ? r->inventory(rt, found, n, err)
                             : rt_missing(rt, "list the instances it holds", err);
}

void bh_runtime_found_clear(struct bh_runtime_found *f)
{
    free(f->id);
    free(f->instance_id);
    free(f->workload);
    free(f->tenant);
    free(f->claim);
    free(f->pool);
    free(f->image_digest);
    memset(f, 0, sizeof(*f));
}

void bh_runtime_found_free(struct bh_runtime_found *found, size_t n)
{
    for (size_t i = 0; found && i < n; i++)
        bh_runtime_found_clear(&found[i]);
    free(found);
}

/* ---- log rotation ---- */

static int rt_copy_fd(int from, int to)
{
    char buf[65536];
    ssize_t r;
    while ((r = read(from, buf, sizeof(buf))) > 0)
        for (ssize_t off = 0; off < r;) {
            ssize_t w = write(to, buf + off, (size_t)(r - off));
            if (w < 0)
                return -1;
            off += w;
        }
    return r < 0 ? -1 : 0;
}

/* The log is copied, not renamed: the container's fd refers to the inode, so after a rename it
 * would keep filling path.1. Lines written between the copy and the truncate are lost. */
int bh_runtime_log_rotate(const char *path, size_t cap, struct bh_err *err)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return errno == ENOENT ? 0 : bh_err_errno(err, BH_EIO, "stat %s", path);
    if ((size_t)st.st_size <= cap)
        return 0;
    bh_autofree char *old = bh_xasprintf("%s.1", path);
    bh_autofree char *tmp = bh_xasprintf("%s.1.tmp", path);
    bh_autoclose int in = open(path, O_RDONLY | O_CLOEXEC);
    bh_autoclose int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (in < 0 || out < 0)
        return bh_err_errno(err, BH_EIO, "rotate %s", path);
    if (rt_copy_fd(in, out) < 0 || rename(tmp, old) < 0) {
        int saved = errno;
        unlink(tmp);
        errno = saved;
        return bh_err_errno(err, BH_EIO, "rotate %s", path);
    }
    if (truncate(path, 0) < 0)
        return bh_err_errno(err, BH_EIO, "truncate %s", path);
    return 0;
}
