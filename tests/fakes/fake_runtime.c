/* The fake runtime: a fixed table of containers under one lock. */
#include "fake_runtime.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs.h"
#include "mem.h"

#define FAKE_RT_MAX 128

struct fake_ctr {
    char id[72]; /* "" = free slot */
    char status[16];
    int pid;
    long long cpu_ns, net_bytes;
};

struct fake_rt {
    struct bh_runtime base; /* first: the ops see a struct bh_runtime */
    pthread_mutex_t lock;
    struct fake_ctr ctrs[FAKE_RT_MAX];
    int fail[FAKE_RT_N_OPS];
    int calls[FAKE_RT_N_OPS];
    int next_pid;
    fake_rt_exec_fn exec_fn;
    void *exec_ud;
};

static struct fake_rt *fake_of(struct bh_runtime *rt)
{
    return (struct fake_rt *)rt;
}

/* Counts a call of op; true if it is to fail (err set). Called with the lock held. */
static int fake_failing(struct fake_rt *f, enum fake_rt_op op, struct bh_err *err)
{
    f->calls[op]++;
    if (f->fail[op] <= 0)
        return 0;
    f->fail[op]--;
    bh_err_set(err, BH_EIO, "fake runtime: injected failure");
    return 1;
}

static struct fake_ctr *fake_find(struct fake_rt *f, const char *id)
{
    for (int i = 0; i < FAKE_RT_MAX; i++)
        if (strcmp(f->ctrs[i].id, id) == 0)
            return &f->ctrs[i];
    return NULL;
}

static struct fake_ctr *fake_insert(struct fake_rt *f, const char *id, const char *status)
{
    struct fake_ctr *c = fake_find(f, id);
    if (!c)
        c = fake_find(f, "");
    if (!c)
        abort(); /* a test holding FAKE_RT_MAX containers is a broken test */
    snprintf(c->id, sizeof(c->id), "%s", id);
    snprintf(c->status, sizeof(c->status), "%s", status);
    c->pid = ++f->next_pid;
    c->cpu_ns = c->net_bytes = 0;
    return c;
}

static int fake_rootfs_prepare(struct bh_runtime *rt, const struct bh_runtime_spec *spec,
                               struct bh_err *err)
{
    struct fake_rt *f = fake_of(rt);
    pthread_mutex_lock(&f->lock);
    int failing = fake_failing(f, FAKE_RT_ROOTFS, err);
    pthread_mutex_unlock(&f->lock);
    return failing ? -1 : bh_fs_mkdirp(spec->rootfs, 0755, err);
}

static int fake_rootfs_release(struct bh_runtime *rt, const char *rootfs, const char *disk,
                               struct bh_err *err)
{
    return 0; /* a plain directory: removing the instance dir removes it */
}

static int fake_create(struct bh_runtime *rt, const struct bh_runtime_spec *spec, int *pid,
                       struct bh_err *err)
{
    struct fake_rt *f = fake_of(rt);
    pthread_mutex_lock(&f->lock);
    int rc = -1;
    if (fake_find(f, spec->id))
        bh_err_set(err, BH_ECONFLICT, "fake runtime: %s exists", spec->id);
    else if (!fake_failing(f, FAKE_RT_CREATE, err)) {
        *pid = fake_insert(f, spec->id, "created")->pid;
        rc = 0;
    }
    pthread_mutex_unlock(&f->lock);
    return rc;
}

/* Moves a container from one status to another; op counts the call and may fail. */
static int fake_transition(struct bh_runtime *rt, enum fake_rt_op op, const char *id,
                           const char *from, const char *to, struct bh_err *err)
{
    struct fake_rt *f = fake_of(rt);
    pthread_mutex_lock(&f->lock);
    struct fake_ctr *c = fake_find(f, id);
    int rc = -1;
    if (fake_failing(f, op, err))
        ;
    else if (!c)
        bh_err_set(err, BH_ENOTFOUND, "fake runtime: no container %s", id);
    else if (strcmp(c->status, from) != 0)
        bh_err_set(err, BH_EIO, "fake runtime: %s is %s, not %s", id, c->status, from);
    else {
        snprintf(c->status, sizeof(c->status), "%s", to);
        rc = 0;
    }
    pthread_mutex_unlock(&f->lock);
    return rc;
}

static int fake_start(struct bh_runtime *rt, const char *id, struct bh_err *err)
{
    return fake_transition(rt, FAKE_RT_START, id, "created", "running", err);
}

static int fake_pause(struct bh_runtime *rt, const char *id, struct bh_err *err)
{
    return fake_transition(rt, FAKE_RT_PAUSE, id, "running", "paused", err);
}

static int fake_resume(struct bh_runtime *rt, const char *id, struct bh_err *err)
{
    return fake_transition(rt, FAKE_RT_RESUME, id, "paused", "running", err);
}

static int fake_state(struct bh_runtime *rt, const char *id, struct bh_runtime_state *st,
                      struct bh_err *err)
{
    struct fake_rt *f = fake_of(rt);
    pthread_mutex_lock(&f->lock);
    struct fake_ctr *c = fake_find(f, id);
    if (c) {
        snprintf(st->status, sizeof(st->status), "%s", c->status);
        st->pid = c->pid;
    }
    pthread_mutex_unlock(&f->lock);
    return c ? 0 : bh_err_set(err, BH_ENOTFOUND, "fake runtime: no container %s", id);
}

static int fake_alive(struct bh_runtime *rt, const char *id, int pid)
{
    struct bh_runtime_state st;
    struct bh_err err;
    return fake_state(rt, id, &st, &err) == 0 &&
           (strcmp(st.status, "running") == 0 || strcmp(st.status, "paused") == 0);
}

static int fake_kill(struct bh_runtime *rt, const char *id, int sig, struct bh_err *err)
{
    if (!fake_rt_status(rt, id))
        return bh_err_set(err, BH_ENOTFOUND, "fake runtime: no container %s", id);
    fake_rt_stop(rt, id);
    return 0;
}

static int fake_delete(struct bh_runtime *rt, const char *id, struct bh_err *err)
{
    struct fake_rt *f = fake_of(rt);
    pthread_mutex_lock(&f->lock);
    struct fake_ctr *c = fake_find(f, id);
    int failing = fake_failing(f, FAKE_RT_DELETE, err);
    if (!failing && c)
        memset(c, 0, sizeof(*c));
    pthread_mutex_unlock(&f->lock);
    return failing ? -1 : 0;
}

static int fake_exec(struct bh_runtime *rt, const char *id, char *const *argv, int timeout_ms,
                     struct bh_proc_result *res, struct bh_err *err)
{
    struct fake_rt *f = fake_of(rt);
    memset(res, 0, sizeof(*res));
    pthread_mutex_lock(&f->lock);
    int failing = fake_failing(f, FAKE_RT_EXEC, err);
    fake_rt_exec_fn fn = f->exec_fn;
    void *ud = f->exec_ud;
    pthread_mutex_unlock(&f->lock);
    if (failing)
        return -1;
    if (!fake_alive(rt, id, 0))
        return bh_err_set(err, BH_ENOTFOUND, "fake runtime: %s is not running", id);
    if (fn)
        return fn(ud, id, argv, res, err);
    res->out = bh_xstrdup("");
    res->errout = bh_xstrdup("");
    return 0;
}

static int fake_stats(struct bh_runtime *rt, const char *id, int pid, struct bh_runtime_stats *st,
                      struct bh_err *err)
{
    struct fake_rt *f = fake_of(rt);
    pthread_mutex_lock(&f->lock);
    struct fake_ctr *c = fake_find(f, id);
    if (c) {
        st->cpu_ns = c->cpu_ns;
        st->net_bytes = c->net_bytes;
    }
    pthread_mutex_unlock(&f->lock);
    return c ? 0 : bh_err_set(err, BH_ENOTFOUND, "fake runtime: no container %s", id);
}

static char *fake_netns_path(struct bh_runtime *rt, const char *id, int pid)
{
    return NULL; /* the fake network plugin needs none, and probes then stay on the host */
}

static int fake_list(struct bh_runtime *rt, char ***ids, struct bh_err *err)
{
    struct fake_rt *f = fake_of(rt);
    char **v = bh_xcalloc(FAKE_RT_MAX + 1, sizeof(*v));
    size_t n = 0;
    pthread_mutex_lock(&f->lock);
    for (int i = 0; i < FAKE_RT_MAX; i++)
        if (f->ctrs[i].id[0])
            v[n++] = bh_xstrdup(f->ctrs[i].id);
    pthread_mutex_unlock(&f->lock);
    *ids = v;
    return 0;
}

static void fake_close(struct bh_runtime *rt)
{
    pthread_mutex_destroy(&fake_of(rt)->lock);
    free(rt);
}

static const struct bh_runtime_ops fake_ops = {
    .rootfs_prepare = fake_rootfs_prepare,
    .rootfs_release = fake_rootfs_release,
    .create = fake_create,
    .start = fake_start,
    .state = fake_state,
    .alive = fake_alive,
    .kill = fake_kill,
    .delete = fake_delete,
    .pause = fake_pause,
    .resume = fake_resume,
    .exec = fake_exec,
    .stats = fake_stats,
    .netns_path = fake_netns_path,
    .list = fake_list,
    .close = fake_close,
};

struct bh_runtime *fake_rt_new(void)
{
    struct fake_rt *f = bh_xcalloc(1, sizeof(*f));
    f->base.ops = &fake_ops;
    f->base.name = "fake";
    f->next_pid = 1000;
    pthread_mutex_init(&f->lock, NULL);
    return &f->base;
}

void fake_rt_fail(struct bh_runtime *rt, enum fake_rt_op op, int times)
{
    struct fake_rt *f = fake_of(rt);
    pthread_mutex_lock(&f->lock);
    f->fail[op] = times;
    pthread_mutex_unlock(&f->lock);
}

int fake_rt_calls(struct bh_runtime *rt, enum fake_rt_op op)
{
    struct fake_rt *f = fake_of(rt);
    pthread_mutex_lock(&f->lock);
    int n = f->calls[op];
    pthread_mutex_unlock(&f->lock);
    return n;
}

void fake_rt_set_exec(struct bh_runtime *rt, fake_rt_exec_fn fn, void *ud)
{
    struct fake_rt *f = fake_of(rt);
    pthread_mutex_lock(&f->lock);
    f->exec_fn = fn;
    f->exec_ud = ud;
    pthread_mutex_unlock(&f->lock);
}

void fake_rt_set_stats(struct bh_runtime *rt, const char *id, long long cpu_ns, long long net_bytes)
{
    struct fake_rt *f = fake_of(rt);
    pthread_mutex_lock(&f->lock);
    struct fake_ctr *c = fake_find(f, id);
    if (c) {
        c->cpu_ns = cpu_ns;
        c->net_bytes = net_bytes;
    }
    pthread_mutex_unlock(&f->lock);
}

void fake_rt_add(struct bh_runtime *rt, const char *id)
{
    struct fake_rt *f = fake_of(rt);
    pthread_mutex_lock(&f->lock);
    fake_insert(f, id, "running");
    pthread_mutex_unlock(&f->lock);
}

void fake_rt_stop(struct bh_runtime *rt, const char *id)
{
    struct fake_rt *f = fake_of(rt);
    pthread_mutex_lock(&f->lock);
    struct fake_ctr *c = fake_find(f, id);
    if (c)
        snprintf(c->status, sizeof(c->status), "stopped");
    pthread_mutex_unlock(&f->lock);
}

const char *fake_rt_status(struct bh_runtime *rt, const char *id)
{
    static __thread char status[16];
    struct bh_runtime_state st;
    struct bh_err err;
    if (fake_state(rt, id, &st, &err) < 0)
        return NULL;
    snprintf(status, sizeof(status), "%s", st.status);
    return status;
}

int fake_rt_count(struct bh_runtime *rt)
{
    char **ids = NULL;
    struct bh_err err;
    fake_list(rt, &ids, &err);
    int n = 0;
    while (ids[n])
        n++;
    bh_strv_free(ids);
    return n;
}
