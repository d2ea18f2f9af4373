/* The "lua" guard type: see guard_lua.h. */
#include "guard_lua.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard.h"
#include "json.h"
#include "lua_host.h"
#include "mem.h"
#include "store.h"

static struct bh_ctx *guard_lua_ctx;
static pthread_mutex_t guard_lua_lock = PTHREAD_MUTEX_INITIALIZER;

struct guard_lua {
    struct bh_ctx *ctx;
    char *script;   /* a file of the policy dir, or NULL */
    char *source;   /* inline source when script is NULL */
    char *workload; /* the trigger's workload, read at the first event */
};

/* Exactly one of script (a valid name) or source (which must compile). */
static int guard_lua_check(void *ud, const char *where, const cJSON *config, struct bh_err *err)
{
    const char *script = bh_json_str(config, "script");
    const char *source = bh_json_str(config, "source");
    for (const cJSON *c = config ? config->child : NULL; c; c = c->next)
        if (strcmp(c->string, "script") != 0 && strcmp(c->string, "source") != 0)
            return bh_err_set(err, BH_EINVAL, "%s.%.64s: unknown (script, source)", where,
                              c->string);
    if (!script == !source)
        return bh_err_set(err, BH_EINVAL, "%s: exactly one of script or source is required", where);
    if (script && !bh_lua_script_name_valid(script))
        return bh_err_set(err, BH_EINVAL, "%s.script: must be a file name NAME.lua", where);
    if (!source)
        return 0;
    const struct bh_lua_limits lim = BH_LUA_LIMITS_DEFAULT;
    struct bh_lua_script *s = NULL;
    if (bh_lua_script_new("inline", source, strlen(source), &lim, NULL, NULL, &s, err) < 0)
        return bh_err_wrap(err, "%s.source", where);
    bh_lua_script_free(s);
    return 0;
}

static int guard_lua_open(void *ud, const char *where, const cJSON *config, void **inst,
                          struct bh_err *err)
{
    if (guard_lua_check(ud, where, config, err) < 0)
        return -1;
    struct guard_lua *g = bh_xcalloc(1, sizeof(*g));
    pthread_mutex_lock(&guard_lua_lock);
    g->ctx = guard_lua_ctx;
    pthread_mutex_unlock(&guard_lua_lock);
    const char *script = bh_json_str(config, "script");
    g->script = script ? bh_xstrdup(script) : NULL;
    g->source = script ? NULL : bh_xstrdup(bh_json_str(config, "source"));
    *inst = g;
    return 0;
}

static void guard_lua_close(void *inst)
{
    struct guard_lua *g = inst;
    free(g->script);
    free(g->source);
    free(g->workload);
    free(g);
}

/* The event as the script sees it; raw is the payload parsed (its text if it is not JSON). */
static cJSON *guard_lua_event(struct guard_lua *g, const struct bh_event *ev)
{
    if (!g->workload && ev->trigger) { /* a spec change restarts the trigger and its guards */
        cJSON *t = NULL;
        struct bh_err err;
        if (bh_store_get(g->ctx->store, "BoilerhouseTrigger", ev->trigger, &t, &err) == 0)
            g->workload = bh_xstrdup(bh_json_str(t, "spec.workloadRef") ?: "");
        cJSON_Delete(t);
    }
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "tenantId", ev->tenant ? ev->tenant : "");
    cJSON_AddStringToObject(e, "workload", g->workload ? g->workload : "");
    cJSON_AddStringToObject(e, "trigger", ev->trigger ? ev->trigger : "");
    cJSON_AddStringToObject(e, "source", ev->source ? ev->source : "");
    cJSON_AddStringToObject(e, "text", ev->text ? ev->text : "");
    cJSON *raw = ev->raw_json ? cJSON_Parse(ev->raw_json) : NULL;
    cJSON_AddItemToObject(e, "raw", raw ? raw : cJSON_CreateString(ev->raw_json ?: ""));
    return e;
}

static int guard_lua_evaluate(void *inst, const struct bh_event *ev, struct bh_guard_verdict *v,
                              struct bh_err *err)
{
    struct guard_lua *g = inst;
    if (!g->ctx || !g->ctx->policies)
        return bh_err_set(err, BH_EUNAVAIL, "lua guard: no policy dir");
    cJSON *e = guard_lua_event(g, ev);
    char *reason = NULL;
    int rc = bh_lua_guard(g->ctx->policies, g->script, g->source, e, &reason, err);
    cJSON_Delete(e);
    if (rc >= 0) {
        v->verdict = rc ? BH_GUARD_ALLOW : BH_GUARD_DENY;
        snprintf(v->reason, sizeof(v->reason), "%s", reason ? reason : "");
    }
    free(reason);
    return rc < 0 ? -1 : 0;
}

static const struct bh_guard_type guard_lua_type = {
    .name = "lua",
    .check = guard_lua_check,
    .open = guard_lua_open,
    .close = guard_lua_close,
    .evaluate = guard_lua_evaluate,
};

int bh_guard_lua_register(struct bh_ctx *ctx, struct bh_err *err)
{
    pthread_mutex_lock(&guard_lua_lock);
    int first = guard_lua_ctx == NULL;
    guard_lua_ctx = ctx;
    pthread_mutex_unlock(&guard_lua_lock);
    return first ? bh_guard_register(&guard_lua_type, err) : 0;
}
