/* The guard registry and guard evaluation with a host-enforced deadline: each evaluation
 * runs on its own thread, and a guard that overruns is abandoned (the event refused) while
 * its thread finishes on its own, holding a reference so nothing it uses is freed under it. */
#include "guard.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"
#include "mem.h"
#include "plugin.h"

#define GUARD_MAX_TYPES 16

static pthread_mutex_t guard_registry_lock = PTHREAD_MUTEX_INITIALIZER;
static const struct bh_guard_type *guard_registry[GUARD_MAX_TYPES];
static size_t guard_registry_n;

struct bh_guard {
    pthread_mutex_t lock;
    int refs;
    char *type_name;
    /* A built-in type ... */
    const struct bh_guard_type *builtin;
    void *inst;
    /* ... or a plugin instance. */
    struct bh_plugin *plugin;
    struct bh_plugin_handle *handle;
};

int bh_guard_register(const struct bh_guard_type *t, struct bh_err *err)
{
    pthread_mutex_lock(&guard_registry_lock);
    int rc = 0;
    for (size_t i = 0; i < guard_registry_n && rc == 0; i++)
        if (strcmp(guard_registry[i]->name, t->name) == 0)
            rc = bh_err_set(err, BH_ECONFLICT, "guard type %s is already registered", t->name);
    if (rc == 0 && guard_registry_n == GUARD_MAX_TYPES)
        rc = bh_err_set(err, BH_EINVAL, "too many built-in guard types");
    if (rc == 0)
        guard_registry[guard_registry_n++] = t;
    pthread_mutex_unlock(&guard_registry_lock);
    return rc;
}

static const struct bh_guard_type *guard_builtin(const char *name)
{
    const struct bh_guard_type *t = NULL;
    pthread_mutex_lock(&guard_registry_lock);
    for (size_t i = 0; i < guard_registry_n && !t; i++)
        if (strcmp(guard_registry[i]->name, name) == 0)
            t = guard_registry[i];
    pthread_mutex_unlock(&guard_registry_lock);
    return t;
}

/* Resolves entry's type to a built-in or a plugin; BH_EINVAL naming where if neither. */
static int guard_resolve(struct bh_ctx *ctx, const cJSON *entry, const char *where,
                         const struct bh_guard_type **builtin, struct bh_plugin **plugin,
                         struct bh_err *err)
{
    const char *type = bh_json_str(entry, "type");
    *builtin = type ? guard_builtin(type) : NULL;
    *plugin = type && !*builtin ? bh_plugins_serving(ctx->plugins, BH_PLUGIN_GUARD, type) : NULL;
    if (!type)
        return bh_err_set(err, BH_EINVAL, "%s.type: required", where);
    if (!*builtin && !*plugin)
        return bh_err_set(err, BH_EINVAL,
                          "%s.type: no guard type \"%.64s\" (not built in, no guard plugin "
                          "serves it)",
                          where, type);
    return 0;
}

int bh_guard_check(struct bh_ctx *ctx, const cJSON *entry, const char *where, struct bh_err *err)
{
    const struct bh_guard_type *builtin;
    struct bh_plugin *plugin;
    if (guard_resolve(ctx, entry, where, &builtin, &plugin, err) < 0)
        return -1;
    bh_autofree char *cwhere = bh_xasprintf("%s.config", where);
    const cJSON *config = bh_json_get(entry, "config");
    if (builtin)
        return builtin->check ? builtin->check(builtin->ud, cwhere, config, err) : 0;
    struct bh_config *cfg = NULL;
    int rc = bh_plugin_instance_config(plugin, cwhere, config, &cfg, err);
    bh_plugin_config_free(cfg);
    return rc;
}

static int guard_open_plugin(struct bh_guard *g, const cJSON *config, const char *where,
                             const char *name, struct bh_err *err)
{
    struct bh_config *cfg = NULL;
    if (bh_plugin_instance_config(g->plugin, where, config, &cfg, err) < 0)
        return -1;
    /* Guards make no 2.1 trigger calls: no hooks. */
    g->handle = bh_plugin_instance_handle(g->plugin, name, cfg, NULL, NULL);
    const struct bh_guard_ops *ops = g->plugin->info->ops;
    return BH_PLUGIN_CALL(g->plugin, ops->open(g->plugin->state, g->handle, &g->inst, err));
}

int bh_guard_open(struct bh_ctx *ctx, const cJSON *entry, const char *trigger, size_t index,
                  struct bh_guard **out, struct bh_err *err)
{
    bh_autofree char *where = bh_xasprintf("spec.guards[%zu]", index);
    bh_autofree char *cwhere = bh_xasprintf("%s.config", where);
    struct bh_guard *g = bh_xcalloc(1, sizeof(*g));
    pthread_mutex_init(&g->lock, NULL);
    g->refs = 1;
    int rc = guard_resolve(ctx, entry, where, &g->builtin, &g->plugin, err);
    if (rc == 0) {
        g->type_name = bh_xstrdup(bh_json_str(entry, "type"));
        const cJSON *config = bh_json_get(entry, "config");
        bh_autofree char *name = bh_xasprintf("%s.guard%zu", trigger, index);
        rc = g->builtin ? g->builtin->open(g->builtin->ud, cwhere, config, &g->inst, err)
                        : guard_open_plugin(g, config, cwhere, name, err);
    }
    if (rc < 0) {
        g->inst = NULL; /* nothing to close */
        bh_guard_close(g);
        return -1;
    }
    *out = g;
    return 0;
}

static void guard_unref(struct bh_guard *g)
{
    pthread_mutex_lock(&g->lock);
    int last = --g->refs == 0;
    pthread_mutex_unlock(&g->lock);
    if (!last)
        return;
    if (g->builtin && g->inst)
        g->builtin->close(g->inst);
    if (g->plugin && g->inst) {
        const struct bh_guard_ops *ops = g->plugin->info->ops;
        bh_plugin_enter(g->plugin);
        ops->close(g->inst);
        bh_plugin_leave(g->plugin);
    }
    bh_plugin_instance_handle_free(g->handle);
    pthread_mutex_destroy(&g->lock);
    free(g->type_name);
    free(g);
}

void bh_guard_close(struct bh_guard *g)
{
    if (g)
        guard_unref(g);
}

const char *bh_guard_type_name(const struct bh_guard *g)
{
    return g->type_name;
}

/* ---- evaluation with a deadline ---- */

struct guard_job {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int refs; /* the waiter and the thread */
    int done;
    struct bh_guard *g; /* holds a reference */
    /* The event, copied: an abandoned evaluation outlives the caller's strings. */
    char *text, *source, *raw, *tenant, *trigger;
    struct bh_guard_verdict v;
    struct bh_err err;
    int rc;
};

static void guard_job_unref(struct guard_job *j)
{
    pthread_mutex_lock(&j->lock);
    int last = --j->refs == 0;
    pthread_mutex_unlock(&j->lock);
    if (!last)
        return;
    guard_unref(j->g);
    free(j->text);
    free(j->source);
    free(j->raw);
    free(j->tenant);
    free(j->trigger);
    pthread_mutex_destroy(&j->lock);
    pthread_cond_destroy(&j->cond);
    free(j);
}

static int guard_call(struct bh_guard *g, const struct bh_event *ev, struct bh_guard_verdict *v,
                      struct bh_err *err)
{
    if (g->builtin)
        return g->builtin->evaluate(g->inst, ev, v, err);
    const struct bh_guard_ops *ops = g->plugin->info->ops;
    return BH_PLUGIN_CALL(g->plugin, ops->evaluate(g->inst, ev, v, err));
}

static void *guard_thread(void *arg)
{
    struct guard_job *j = arg;
    const struct bh_event ev = {.size = sizeof(ev),
                                .text = j->text,
                                .source = j->source,
                                .raw_json = j->raw,
                                .tenant = j->tenant,
                                .trigger = j->trigger};
    struct bh_guard_verdict v = {.size = sizeof(v), .verdict = BH_GUARD_DENY};
    struct bh_err err = {0};
    int rc = guard_call(j->g, &ev, &v, &err);
    pthread_mutex_lock(&j->lock);
    j->v = v;
    j->err = err;
    j->rc = rc;
    j->done = 1;
    pthread_cond_signal(&j->cond);
    pthread_mutex_unlock(&j->lock);
    guard_job_unref(j);
    return NULL;
}

static char *guard_dup(const char *s)
{
    return bh_xstrdup(s ? s : "");
}

static struct guard_job *guard_job_new(struct bh_guard *g, const struct bh_event *ev)
{
    struct guard_job *j = bh_xcalloc(1, sizeof(*j));
    pthread_mutex_init(&j->lock, NULL);
    pthread_condattr_t ca; /* the deadline is not moved by wall-clock steps */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&j->cond, &ca);
    pthread_condattr_destroy(&ca);
    j->refs = 2;
    pthread_mutex_lock(&g->lock);
    g->refs++;
    pthread_mutex_unlock(&g->lock);
    j->g = g;
    j->text = guard_dup(ev->text);
    j->source = guard_dup(ev->source);
    j->raw = guard_dup(ev->raw_json);
    j->tenant = guard_dup(ev->tenant);
    j->trigger = guard_dup(ev->trigger);
    return j;
}

/* Waits for the job until deadline_ms from now; 1 if it finished. */
static int guard_job_wait(struct guard_job *j, long deadline_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += deadline_ms / 1000;
    until.tv_nsec += (deadline_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&j->lock);
    while (!j->done && pthread_cond_timedwait(&j->cond, &j->lock, &until) != ETIMEDOUT)
        ;
    int done = j->done;
    pthread_mutex_unlock(&j->lock);
    return done;
}

int bh_guard_evaluate(struct bh_guard *g, const struct bh_event *ev, long deadline_ms,
                      struct bh_guard_verdict *v, struct bh_err *err)
{
    struct guard_job *j = guard_job_new(g, ev);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, guard_thread, j) != 0) {
        pthread_attr_destroy(&attr);
        j->refs = 1;
        guard_job_unref(j);
        return bh_err_set(err, BH_EIO, "guard %s: cannot start its evaluation", g->type_name);
    }
    pthread_attr_destroy(&attr);
    int rc;
    if (!guard_job_wait(j, deadline_ms)) {
        rc = bh_err_set(err, BH_ETIMEOUT, "guard %s: no answer within %ld ms", g->type_name,
                        deadline_ms);
    } else if (j->rc < 0) {
        rc = bh_err_set(err, j->err.code ? j->err.code : BH_EIO, "guard %s: %s", g->type_name,
                        j->err.msg[0] ? j->err.msg : "error");
    } else {
        *v = j->v;
        v->reason[sizeof(v->reason) - 1] = '\0'; /* from outside the daemon */
        rc =
            v->verdict == BH_GUARD_ALLOW || v->verdict == BH_GUARD_DENY
                ? 0
                : bh_err_set(err, BH_EIO, "guard %s: unknown verdict %u", g->type_name, v->verdict);
    }
    guard_job_unref(j);
    return rc;
}
