/* The trigger controller: runs one adapter per BoilerhouseTrigger, restarts it on a spec
 * change and, with backoff, after it failed, and reports phase, detail and counters. It also
 * serves the adapters' 2.1 host calls (emit, routes, failure, status) and the shared
 * listener's routes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "plugin.h"
#include "queue.h"
#include "store.h"
#include "trigger_int.h"

#define TRIGGER_BACKOFF_MIN_MS 1000
#define TRIGGER_BACKOFF_MAX_MS 60000
#define TRIGGER_ROUTE_PREFIX "/hooks/"

/* ---- the registry of triggers ---- */

struct bh_triggers *bh_triggers_new(struct bh_ctx *ctx)
{
    struct bh_triggers *ts = bh_xcalloc(1, sizeof(*ts));
    ts->ctx = ctx;
    pthread_mutex_init(&ts->lock, NULL);
    pthread_cond_init(&ts->idle, NULL);
    return ts;
}

static struct trigger *trigger_find(struct bh_triggers *ts, const char *name)
{
    for (struct trigger *t = ts->list; t; t = t->next)
        if (strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

static struct trigger *trigger_get(struct bh_triggers *ts, const char *name)
{
    pthread_mutex_lock(&ts->lock);
    struct trigger *t = trigger_find(ts, name);
    if (!t) {
        t = bh_xcalloc(1, sizeof(*t));
        t->ts = ts;
        t->name = bh_xstrdup(name);
        t->next = ts->list;
        ts->list = t;
    }
    pthread_mutex_unlock(&ts->lock);
    return t;
}

/* ---- routes on the shared listener ---- */

static int route_path_ok(const char *p)
{
    size_t n = strlen(TRIGGER_ROUTE_PREFIX);
    return strncmp(p, TRIGGER_ROUTE_PREFIX, n) == 0 && p[n] && strlen(p) < 256 &&
           !strstr(p, "..") && !strstr(p, "//") &&
           strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789/-_.") == strlen(p);
}

static int hook_http_route(struct bh_plugin_handle *h, const char *path, bh_http_handler_fn fn,
                           void *arg, struct bh_err *err)
{
    struct trigger *t = bh_plugin_handle_owner(h);
    if (!route_path_ok(path))
        return bh_err_set(err, BH_EINVAL,
                          "route %.64s: must be " TRIGGER_ROUTE_PREFIX "<[a-z0-9/-_.]>", path);
    pthread_mutex_lock(&t->ts->lock);
    for (struct trigger_route *r = t->ts->routes; r; r = r->next)
        if (strcmp(r->path, path) == 0) {
            pthread_mutex_unlock(&t->ts->lock);
            return bh_err_set(err, BH_ECONFLICT, "route %s is trigger %s's", path, r->t->name);
        }
    struct trigger_route *r = bh_xcalloc(1, sizeof(*r));
    *r = (struct trigger_route){bh_xstrdup(path), t, fn, arg, t->ts->routes};
    t->ts->routes = r;
    pthread_mutex_unlock(&t->ts->lock);
    return 0;
}

/* Removes t's routes and waits until no handler runs, so stop() never races a request. */
static void routes_drop(struct trigger *t)
{
    pthread_mutex_lock(&t->ts->lock);
    for (struct trigger_route **p = &t->ts->routes; *p;) {
        struct trigger_route *r = *p;
        if (r->t == t) {
            *p = r->next;
            free(r->path);
            free(r);
        } else {
            p = &r->next;
        }
    }
    while (t->ts->handlers_running > 0)
        pthread_cond_wait(&t->ts->idle, &t->ts->lock);
    pthread_mutex_unlock(&t->ts->lock);
}

static const char *http_header(const struct bh_http_request *req, const char *name)
{
    const struct bh_trigger_http_req *hr = req->host_ctx;
    return hr->header(hr->hctx, name);
}

void bh_trigger_http(struct bh_ctx *ctx, const struct bh_trigger_http_req *hr,
                     struct bh_http_response *resp)
{
    struct bh_triggers *ts = ctx->triggers;
    const struct bh_host_api *host = bh_plugin_host_api();
    pthread_mutex_lock(&ts->lock);
    struct trigger_route *r = ts->routes;
    while (r && strcmp(r->path, hr->path) != 0)
        r = r->next;
    struct trigger_route found = r ? *r : (struct trigger_route){0};
    ts->handlers_running += r != NULL;
    pthread_mutex_unlock(&ts->lock);
    if (!r) {
        static const char nf[] = "{\"error\":\"no trigger route here\"}";
        host->http_respond(NULL, resp, 404, "application/json", nf, sizeof(nf) - 1);
        return;
    }
    if (strcmp(hr->method, "POST") == 0) {
        const struct bh_http_request req = {sizeof(req),  hr->method,  hr->path,  hr->body,
                                            hr->body_len, http_header, (void *)hr};
        found.fn(found.arg, &req, resp);
    } else {
        static const char na[] = "{\"error\":\"only POST\"}";
        host->http_respond(NULL, resp, 405, "application/json", na, sizeof(na) - 1);
    }
    pthread_mutex_lock(&ts->lock);
    if (--ts->handlers_running == 0)
        pthread_cond_broadcast(&ts->idle);
    pthread_mutex_unlock(&ts->lock);
}

/* ---- the adapters' other host calls ---- */

static int hook_emit(struct bh_plugin_handle *h, const struct bh_event *ev,
                     struct bh_event_reply *reply, struct bh_err *err)
{
    return trigger_emit(bh_plugin_handle_owner(h), ev, reply, NULL, err);
}

void trigger_enqueue(struct trigger *t)
{
    bh_autofree char *key = bh_xasprintf("%s/%s", BH_TRIGGER_KIND, t->name);
    bh_queue_add(t->ts->ctx->queue, key);
}

static void hook_failed(struct bh_plugin_handle *h, const char *reason)
{
    struct trigger *t = bh_plugin_handle_owner(h);
    pthread_mutex_lock(&t->ts->lock);
    free(t->failed_reason);
    t->failed_reason = bh_xstrndup(reason, 400);
    pthread_mutex_unlock(&t->ts->lock);
    bh_warn("trigger", "%s: adapter failed: %s", t->name, reason);
    trigger_enqueue(t);
}

static void hook_status_set(struct bh_plugin_handle *h, const char *key, const char *value)
{
    struct trigger *t = bh_plugin_handle_owner(h);
    pthread_mutex_lock(&t->ts->lock);
    if (!t->adapter_status)
        t->adapter_status = cJSON_CreateObject();
    cJSON_DeleteItemFromObjectCaseSensitive(t->adapter_status, key);
    if (value)
        cJSON_AddStringToObject(t->adapter_status, key, value);
    pthread_mutex_unlock(&t->ts->lock);
    trigger_enqueue(t);
}

static const struct bh_plugin_hooks trigger_hooks = {
    .emit = hook_emit,
    .http_route = hook_http_route,
    .failed = hook_failed,
    .status_set = hook_status_set,
};

/* ---- apply-time checks ---- */

/* A trigger's "path" config key is a route: no two triggers may hold one. */
static int check_route(struct bh_ctx *ctx, const cJSON *obj, struct bh_err *err)
{
    const char *path = bh_json_str(obj, "spec.config.path");
    if (!path)
        return 0;
    if (!route_path_ok(path))
        return bh_err_set(err, BH_EINVAL,
                          "spec.config.path: must start with " TRIGGER_ROUTE_PREFIX
                          " and hold only [a-z0-9/-_.]");
    cJSON *list = NULL;
    if (bh_store_list(ctx->store, BH_TRIGGER_KIND, NULL, &list, NULL, err) < 0)
        return -1;
    const char *name = bh_json_str(obj, "metadata.name");
    int rc = 0;
    const cJSON *o;
    cJSON_ArrayForEach(o, list) {
        const char *other = bh_json_str(o, "metadata.name");
        const char *p = bh_json_str(o, "spec.config.path");
        if (rc == 0 && p && strcmp(p, path) == 0 && strcmp(other, name) != 0)
            rc = bh_err_set(err, BH_ECONFLICT, "spec.config.path: %s is already trigger %s's", path,
                            other);
    }
    cJSON_Delete(list);
    return rc;
}

static int check_guards(struct bh_ctx *ctx, const cJSON *spec, struct bh_err *err)
{
    size_t i = 0;
    const cJSON *g;
    cJSON_ArrayForEach(g, bh_json_get(spec, "guards")) {
        bh_autofree char *where = bh_xasprintf("spec.guards[%zu]", i++);
        if (bh_guard_check(ctx, g, where, err) < 0)
            return -1;
    }
    return 0;
}

static struct bh_plugin *trigger_plugin(struct bh_ctx *ctx, const cJSON *spec, struct bh_err *err)
{
    const char *type = bh_json_str(spec, "type");
    struct bh_plugin *p = bh_plugins_serving(ctx->plugins, BH_PLUGIN_TRIGGER, type);
    if (!p)
        bh_err_set(err, BH_EINVAL, "spec.type: no loaded trigger plugin serves \"%.64s\"",
                   type ? type : "");
    return p;
}

/* The plugin's own check of its config (2.2, optional), on a handle that is never started.
 * Takes cfg. */
static int check_config(struct bh_plugin *p, const char *name, struct bh_config *cfg,
                        struct bh_err *err)
{
    const struct bh_trigger_ops *ops = p->info->ops;
    if (!BH_HAS_OP(ops, struct bh_trigger_ops, check)) {
        bh_plugin_config_free(cfg);
        return 0;
    }
    struct bh_plugin_handle *h =
        bh_plugin_instance_handle(p, name ? name : "check", cfg, NULL, NULL);
    int rc = BH_PLUGIN_CALL(p, ops->check(p->state, h, err));
    bh_plugin_instance_handle_free(h);
    return rc;
}

int bh_trigger_check(struct bh_ctx *ctx, const cJSON *obj, struct bh_err *err)
{
    const char *kind = bh_json_str(obj, "kind");
    if (!kind || strcmp(kind, BH_TRIGGER_KIND) != 0)
        return 0;
    const cJSON *spec = bh_json_get(obj, "spec");
    struct bh_plugin *p = trigger_plugin(ctx, spec, err);
    struct bh_config *cfg = NULL;
    if (!p ||
        bh_plugin_instance_config(p, "spec.config", bh_json_get(spec, "config"), &cfg, err) < 0 ||
        check_config(p, bh_json_str(obj, "metadata.name"), cfg, err) < 0)
        return -1;
    if (check_guards(ctx, spec, err) < 0 || trigger_driver_check(spec, err) < 0)
        return -1;
    return check_route(ctx, obj, err);
}

/* ---- start and stop ---- */

static void trigger_stop(struct trigger *t)
{
    if (t->running) {
        routes_drop(t);
        const struct bh_trigger_ops *ops = t->plugin->info->ops;
        bh_plugin_enter(t->plugin);
        ops->stop(t->inst);
        bh_plugin_leave(t->plugin);
        /* A handler that slipped in between drop and stop is gone now too. */
        routes_drop(t);
        t->running = 0;
        t->inst = NULL;
        bh_info("trigger", "%s: adapter stopped", t->name);
    }
    trigger_ws_close_all(t);
    for (size_t i = 0; i < t->n_guards; i++)
        bh_guard_close(t->guards[i]);
    free(t->guards);
    t->guards = NULL;
    t->n_guards = 0;
    bh_plugin_instance_handle_free(t->handle);
    t->handle = NULL;
    cJSON_Delete(t->spec);
    t->spec = NULL;
}

static int trigger_open_guards(struct trigger *t, struct bh_err *err)
{
    const cJSON *list = bh_json_get(t->spec, "guards");
    t->guards = bh_xcalloc((size_t)cJSON_GetArraySize(list) + 1, sizeof(*t->guards));
    const cJSON *g;
    cJSON_ArrayForEach(g, list) {
        if (bh_guard_open(t->ts->ctx, g, t->name, t->n_guards, &t->guards[t->n_guards], err) < 0)
            return -1;
        t->n_guards++;
    }
    return 0;
}

static int trigger_start(struct trigger *t, const cJSON *obj, struct bh_err *err)
{
    struct bh_ctx *ctx = t->ts->ctx;
    t->spec = cJSON_Duplicate(bh_json_get(obj, "spec"), 1);
    struct bh_config *cfg = NULL;
    if (bh_trigger_check(ctx, obj, err) < 0 || trigger_open_guards(t, err) < 0 ||
        bh_plugin_instance_config(t->plugin = trigger_plugin(ctx, t->spec, err), "spec.config",
                                  bh_json_get(t->spec, "config"), &cfg, err) < 0)
        return -1;
    t->handle = bh_plugin_instance_handle(t->plugin, t->name, cfg, &trigger_hooks, t);
    const struct bh_trigger_ops *ops = t->plugin->info->ops;
    if (BH_PLUGIN_CALL(t->plugin, ops->start(t->plugin->state, t->handle, &t->inst, err)) < 0) {
        routes_drop(t);
        return bh_err_wrap(err, "adapter %s", bh_plugin_serves(t->plugin));
    }
    t->running = 1;
    bh_info("trigger", "%s: adapter %s started (generation %lld)", t->name,
            bh_plugin_serves(t->plugin), t->generation);
    return 0;
}

/* ---- status ---- */

static cJSON *trigger_status(struct trigger *t, const char *phase, const char *detail)
{
    cJSON *st = cJSON_CreateObject();
    cJSON_AddStringToObject(st, "phase", phase);
    cJSON_AddStringToObject(st, "detail", detail);
    cJSON_AddNumberToObject(st, "observedGeneration", (double)t->generation);
    pthread_mutex_lock(&t->ts->lock);
    cJSON_AddNumberToObject(st, "events", (double)t->events);
    cJSON_AddNumberToObject(st, "denied", (double)t->denied);
    cJSON_AddNumberToObject(st, "failed", (double)t->failed);
    cJSON_AddNumberToObject(st, "restarts", (double)t->failures);
    if (t->last_event_at[0])
        cJSON_AddStringToObject(st, "lastEventAt", t->last_event_at);
    if (t->adapter_status && t->running)
        cJSON_AddItemToObject(st, "adapter", cJSON_Duplicate(t->adapter_status, 1));
    pthread_mutex_unlock(&t->ts->lock);
    return st;
}

/* 1 if st differs from old only in what may be lost in a crash: the event counters, the
 * last event's time and the adapter's own status, all rebuilt as events come. */
static int trigger_status_counters_only(const cJSON *old, const cJSON *st)
{
    static const char *const keys[] = {"phase", "detail", "observedGeneration", "restarts"};
    if (!old)
        return 0;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (!cJSON_Compare(bh_json_get(old, keys[i]), bh_json_get(st, keys[i]), 1))
            return 0;
    return 1;
}

/* Writes status only when it changed: every write is a store event that reconciles again.
 * A change of counters alone is written lazily (no fsync of its own): an fsync per event
 * would hold the store, and so the next event's claim, for a disk flush. */
static int trigger_write_status(struct bh_ctx *ctx, cJSON *obj, cJSON *st, struct bh_err *err)
{
    const cJSON *old = bh_json_get(obj, "status");
    if (cJSON_Compare(old, st, 1)) {
        cJSON_Delete(st);
        return 0;
    }
    int lazy = trigger_status_counters_only(old, st);
    cJSON_DeleteItemFromObjectCaseSensitive(obj, "status");
    cJSON_AddItemToObject(obj, "status", st);
    cJSON_DeleteItemFromObjectCaseSensitive(bh_json_obj(obj, "metadata"), "resourceVersion");
    return lazy ? bh_store_update_status_lazy(ctx->store, obj, NULL, err)
                : bh_store_update_status(ctx->store, obj, NULL, err);
}

/* ---- reconcile ---- */

static void trigger_forget(struct bh_triggers *ts, const char *name)
{
    pthread_mutex_lock(&ts->lock);
    struct trigger **p = &ts->list;
    while (*p && strcmp((*p)->name, name) != 0)
        p = &(*p)->next;
    struct trigger *t = *p;
    if (t)
        *p = t->next;
    pthread_mutex_unlock(&ts->lock);
    if (!t)
        return;
    trigger_stop(t);
    free(t->failure);
    free(t->failed_reason);
    cJSON_Delete(t->adapter_status);
    free(t->name);
    free(t);
}

static void trigger_note_failure(struct trigger *t, const char *why)
{
    free(t->failure);
    t->failure = bh_xstrdup(why);
    t->failures++;
    t->restart_at = bh_clock_ms() + bh_clock_backoff_ms(t->failures, TRIGGER_BACKOFF_MIN_MS,
                                                        TRIGGER_BACKOFF_MAX_MS);
}

/* A failure the adapter reported since the last reconcile: stop it, back off. */
static void trigger_take_failure(struct trigger *t)
{
    pthread_mutex_lock(&t->ts->lock);
    char *reason = t->failed_reason;
    t->failed_reason = NULL;
    pthread_mutex_unlock(&t->ts->lock);
    if (!reason)
        return;
    if (t->running) {
        trigger_stop(t);
        trigger_note_failure(t, reason);
    }
    free(reason);
}

static int trigger_run(struct trigger *t, cJSON *obj, long *requeue_ms, struct bh_err *err)
{
    struct bh_ctx *ctx = t->ts->ctx;
    long long now = bh_clock_ms();
    if (t->failure && now < t->restart_at) {
        bh_autofree char *d = bh_xasprintf("adapter failed: %s; restart %d in %lld s", t->failure,
                                           t->failures, (t->restart_at - now + 999) / 1000);
        *requeue_ms = (long)(t->restart_at - now);
        return trigger_write_status(ctx, obj, trigger_status(t, BH_TRIGGER_ERROR, d), err);
    }
    struct bh_err serr = {0};
    if (trigger_start(t, obj, &serr) < 0) {
        trigger_stop(t);
        /* A spec that does not validate waits for the next change; an adapter that could not
         * start (a dependency) is retried with backoff. */
        if (serr.code == BH_EINVAL || serr.code == BH_ECONFLICT)
            return trigger_write_status(ctx, obj, trigger_status(t, BH_TRIGGER_ERROR, serr.msg),
                                        err);
        trigger_note_failure(t, serr.msg);
        *requeue_ms =
            bh_clock_backoff_ms(t->failures, TRIGGER_BACKOFF_MIN_MS, TRIGGER_BACKOFF_MAX_MS);
        return trigger_write_status(ctx, obj, trigger_status(t, BH_TRIGGER_ERROR, serr.msg), err);
    }
    free(t->failure);
    t->failure = NULL;
    return trigger_write_status(ctx, obj, trigger_status(t, BH_TRIGGER_ACTIVE, "adapter running"),
                                err);
}

int bh_trigger_reconcile(struct bh_ctx *ctx, const char *name, long *requeue_ms, struct bh_err *err)
{
    cJSON *obj = NULL;
    struct bh_err gerr;
    if (bh_store_get(ctx->store, BH_TRIGGER_KIND, name, &obj, &gerr) < 0 ||
        bh_json_get(obj, "metadata.deletionTimestamp")) {
        cJSON_Delete(obj);
        trigger_forget(ctx->triggers, name);
        return 0;
    }
    struct trigger *t = trigger_get(ctx->triggers, name);
    long long gen = bh_json_int(obj, "metadata.generation", 0);
    trigger_take_failure(t);
    int rc;
    if (t->running && t->generation == gen) {
        rc = trigger_write_status(ctx, obj, trigger_status(t, BH_TRIGGER_ACTIVE, "adapter running"),
                                  err);
    } else {
        if (t->generation != gen) { /* a new spec: restart now, forget the old backoff */
            trigger_stop(t);
            t->generation = gen;
            t->failures = 0;
            free(t->failure);
            t->failure = NULL;
        }
        rc = trigger_run(t, obj, requeue_ms, err);
    }
    cJSON_Delete(obj);
    return rc;
}

void bh_triggers_free(struct bh_triggers *ts)
{
    if (!ts)
        return;
    while (ts->list) {
        bh_autofree char *name = bh_xstrdup(ts->list->name);
        trigger_forget(ts, name);
    }
    pthread_mutex_destroy(&ts->lock);
    pthread_cond_destroy(&ts->idle);
    free(ts);
}

/* ---- test and events ---- */

static struct trigger *trigger_running(struct bh_ctx *ctx, const char *name, struct bh_err *err)
{
    pthread_mutex_lock(&ctx->triggers->lock);
    struct trigger *t = trigger_find(ctx->triggers, name);
    int running = t && t->running;
    pthread_mutex_unlock(&ctx->triggers->lock);
    if (!t)
        bh_err_set(err, BH_ENOTFOUND, "trigger %.64s not found", name);
    else if (!running)
        bh_err_set(err, BH_EUNAVAIL, "trigger %.64s is not Active", name);
    return running ? t : NULL;
}

int bh_trigger_test(struct bh_ctx *ctx, const char *name, const cJSON *event, cJSON **out,
                    struct bh_err *err)
{
    struct trigger *t = trigger_running(ctx, name, err);
    if (!t)
        return -1;
    const cJSON *payload = bh_json_get(event, "payload");
    bh_autofree char *raw = payload ? bh_json_print(payload) : bh_xstrdup("{}");
    const char *text = bh_json_str(event, "text");
    const struct bh_event ev = {
        .size = sizeof(ev), .text = text ? text : "", .source = "test", .raw_json = raw};
    struct bh_event_reply reply = {.size = sizeof(reply)};
    cJSON *o = cJSON_CreateObject();
    cJSON *stages = cJSON_AddArrayToObject(o, "stages");
    trigger_emit(t, &ev, &reply, stages, err);
    cJSON_AddStringToObject(o, "verdict", trigger_verdict_name(reply.verdict));
    cJSON_AddNumberToObject(o, "status", reply.status);
    cJSON_AddStringToObject(o, "tenant", reply.tenant);
    if (reply.reason[0])
        cJSON_AddStringToObject(o, "reason", reply.reason);
    if (reply.body)
        cJSON_AddStringToObject(o, "reply", reply.body);
    free(reply.body);
    *out = o;
    return 0;
}

static cJSON *trigger_event_json(const struct trigger_event_rec *e)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "at", e->at);
    cJSON_AddStringToObject(o, "tenant", e->tenant);
    cJSON_AddStringToObject(o, "verdict", e->verdict);
    cJSON_AddNumberToObject(o, "latencyMs", (double)e->ms);
    if (e->error[0])
        cJSON_AddStringToObject(o, "error", e->error);
    return o;
}

int bh_trigger_events(struct bh_ctx *ctx, const char *name, int limit, cJSON **out,
                      struct bh_err *err)
{
    struct bh_triggers *ts = ctx->triggers;
    pthread_mutex_lock(&ts->lock);
    struct trigger *t = trigger_find(ts, name);
    cJSON *list = t ? cJSON_CreateArray() : NULL;
    for (size_t i = 0; t && i < t->ring_n && (int)i < limit; i++) {
        size_t at = (t->ring_next + TRIGGER_RING - 1 - i) % TRIGGER_RING;
        cJSON_AddItemToArray(list, trigger_event_json(&t->ring[at]));
    }
    pthread_mutex_unlock(&ts->lock);
    if (!list)
        return bh_err_set(err, BH_ENOTFOUND, "trigger %.64s not found", name);
    *out = list;
    return 0;
}
