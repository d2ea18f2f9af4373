/* The bh library scripts see: bh.log, bh.now, bh.claims, bh.pool, bh.kv. It reads the store
 * and keeps each script's key-value pairs; it reaches no network, file or secret. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "json.h"
#include "log.h"
#include "lua_int.h"
#include "mem.h"
#include "store.h"

/* A call keeps at most this many log lines, each cut to BHLIB_LOG_LINE bytes. */
#define BHLIB_LOG_MAX 64
#define BHLIB_LOG_LINE 1024
#define BHLIB_KV_KEY_MAX 256
#define BHLIB_KV_VALUE_MAX 4096

static struct bh_lua_script *bhlib_script(lua_State *L)
{
    void *ud;
    lua_getallocf(L, &ud);
    return ud;
}

static int bhlib_log(lua_State *L)
{
    static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
    static const uint32_t codes[] = {BH_LOG_DEBUG, BH_LOG_INFO, BH_LOG_WARN, BH_LOG_ERROR};
    int level = luaL_checkoption(L, 1, NULL, levels);
    size_t len;
    const char *msg = luaL_checklstring(L, 2, &len);
    struct bh_lua_script *s = bhlib_script(L);
    int n = len > BHLIB_LOG_LINE ? BHLIB_LOG_LINE : (int)len;
    bh_log(codes[level], "lua", "%s: %.*s", s->name, n, msg);
    if (s->logs && cJSON_GetArraySize(s->logs) < BHLIB_LOG_MAX) {
        cJSON *line = cJSON_CreateObject();
        cJSON_AddStringToObject(line, "level", levels[level]);
        bh_autofree char *text = bh_xstrndup(msg, (size_t)n);
        cJSON_AddStringToObject(line, "msg", text);
        cJSON_AddItemToArray(s->logs, line);
    }
    return 0;
}

static int bhlib_now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

static long long bhlib_age_s(const char *rfc3339)
{
    long long ms = bh_clock_parse_rfc3339(rfc3339);
    long long age = ms < 0 ? 0 : (long long)time(NULL) - ms / 1000;
    return age > 0 ? age : 0;
}

/* Claims that hold or are getting an instance: Active, or Pending and admitted (a claim
 * policy's decision is on it, status.policy). Counting a Pending claim not yet decided would
 * let two simultaneous claims deny each other. Released and Error ones hold nothing. */
static int bhlib_claim_counts(const cJSON *claim)
{
    const char *phase = bh_json_str(claim, "status.phase");
    if (bh_json_get(claim, "metadata.deletionTimestamp") || !phase)
        return 0;
    return strcmp(phase, "Active") == 0 ||
           (strcmp(phase, "Pending") == 0 && bh_json_get(claim, "status.policy"));
}

cJSON *bh_lua_tenant_claims(struct bh_store *store, const char *tenant, const char *except)
{
    cJSON *out = cJSON_CreateArray(), *list = NULL, *c;
    struct bh_err err;
    bh_autofree char *sel = bh_xasprintf("boilerhouse.dev/tenant=%s", tenant);
    if (!store || !tenant || bh_store_list(store, "BoilerhouseClaim", sel, &list, NULL, &err) < 0)
        return out;
    cJSON_ArrayForEach(c, list) {
        const char *wl = bh_json_str(c, "spec.workloadRef");
        if (!bhlib_claim_counts(c) || (except && wl && strcmp(wl, except) == 0))
            continue;
        const char *phase = bh_json_str(c, "status.phase");
        const char *source = bh_json_str(c, "status.source");
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "workload", wl ? wl : "");
        cJSON_AddStringToObject(o, "phase", phase ? phase : "Pending");
        if (source)
            cJSON_AddStringToObject(o, "source", source);
        cJSON_AddNumberToObject(o, "ageSeconds",
                                (double)bhlib_age_s(bh_json_str(c, "status.claimedAt")));
        cJSON_AddItemToArray(out, o);
    }
    cJSON_Delete(list);
    return out;
}

/* bh.claims(): the calling tenant's claims that hold an instance (none without a tenant). */
static int bhlib_claims(lua_State *L)
{
    struct bh_lua_script *s = bhlib_script(L);
    cJSON *arr = bh_lua_tenant_claims(s->store, s->tenant, NULL);
    bh_lua_push_json(L, arr);
    cJSON_Delete(arr);
    return 1;
}

void bh_lua_pool_counts(struct bh_store *store, const char *workload, long long *ready,
                        long long *warming)
{
    cJSON *list = NULL, *p;
    struct bh_err err;
    *ready = *warming = 0;
    if (!store || !workload || bh_store_list(store, "BoilerhousePool", NULL, &list, NULL, &err) < 0)
        return;
    cJSON_ArrayForEach(p, list) {
        const char *ref = bh_json_str(p, "spec.workloadRef");
        if (ref && strcmp(ref, workload) == 0) {
            *ready += bh_json_int(p, "status.ready", 0);
            *warming += bh_json_int(p, "status.warming", 0);
        }
    }
    cJSON_Delete(list);
}

/* bh.pool(workload): {ready, warming} summed over the workload's pools. */
static int bhlib_pool(lua_State *L)
{
    const char *wl = luaL_checkstring(L, 1);
    long long ready, warming;
    bh_lua_pool_counts(bhlib_script(L)->store, wl, &ready, &warming);
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, ready);
    lua_setfield(L, -2, "ready");
    lua_pushinteger(L, warming);
    lua_setfield(L, -2, "warming");
    return 1;
}

/* A claim event's activeClaims and poolReady, read from the store when the script first
 * reads them (most policies need one or neither): __index of the event table. */
static int bhlib_event_index(lua_State *L)
{
    struct bh_lua_script *s = bhlib_script(L);
    const char *key = lua_tostring(L, 2);
    lua_getfield(L, 1, "tenantId");
    lua_getfield(L, 1, "workload");
    const char *tenant = lua_tostring(L, -2), *workload = lua_tostring(L, -1);
    if (!key || !tenant || !workload)
        return lua_pushnil(L), 1;
    if (strcmp(key, "activeClaims") == 0) {
        cJSON *arr = bh_lua_tenant_claims(s->store, tenant, workload);
        bh_lua_push_json(L, arr);
        cJSON_Delete(arr);
    } else if (strcmp(key, "poolReady") == 0) {
        long long ready, warming;
        bh_lua_pool_counts(s->store, workload, &ready, &warming);
        lua_pushinteger(L, ready);
    } else {
        return lua_pushnil(L), 1;
    }
    lua_pushvalue(L, 2);
    lua_pushvalue(L, -2);
    lua_rawset(L, 1); /* read once per call */
    return 1;
}

void bh_lua_lazy_event(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, bhlib_event_index);
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, "locked"); /* the loader reads any tenant's claims: keep it out of reach */
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, idx);
}

/* ---- bh.kv: per-script, durable, with TTLs ---- */

static const char *bhlib_kv_key(lua_State *L, struct bh_lua_script *s)
{
    size_t len;
    const char *key = luaL_checklstring(L, 1, &len);
    luaL_argcheck(L, len > 0 && len <= BHLIB_KV_KEY_MAX && strlen(key) == len, 1,
                  "a key is 1-256 bytes without NUL");
    if (!s->kv)
        luaL_error(L, "bh.kv is not available here");
    return key;
}

static lua_Integer bhlib_kv_ttl(lua_State *L, int arg)
{
    lua_Integer ttl = luaL_optinteger(L, arg, 0);
    luaL_argcheck(L, ttl >= 0, arg, "a TTL is seconds >= 0 (0: none)");
    return ttl;
}

/* A store failure is the script's failure: it cannot decide without its data. */
static int bhlib_kv_fail(lua_State *L, const struct bh_err *err)
{
    return luaL_error(L, "bh.kv: %s", err->msg);
}

static int bhlib_kv_get(lua_State *L)
{
    struct bh_lua_script *s = bhlib_script(L);
    const char *key = bhlib_kv_key(L, s);
    char *v = NULL;
    struct bh_err err;
    if (bh_store_kv_get(s->kv, s->name, key, &v, &err) < 0)
        return bhlib_kv_fail(L, &err);
    if (v)
        lua_pushstring(L, v);
    else
        lua_pushnil(L);
    free(v);
    return 1;
}

static int bhlib_kv_set(lua_State *L)
{
    struct bh_lua_script *s = bhlib_script(L);
    const char *key = bhlib_kv_key(L, s);
    size_t len;
    const char *value = luaL_checklstring(L, 2, &len);
    luaL_argcheck(L, len <= BHLIB_KV_VALUE_MAX && strlen(value) == len, 2,
                  "a value is at most 4096 bytes without NUL");
    struct bh_err err;
    if (bh_store_kv_set(s->kv, s->name, key, value, bhlib_kv_ttl(L, 3), &err) < 0)
        return bhlib_kv_fail(L, &err);
    return 0;
}

static int bhlib_kv_incr(lua_State *L)
{
    struct bh_lua_script *s = bhlib_script(L);
    const char *key = bhlib_kv_key(L, s);
    long long n = 0;
    struct bh_err err;
    if (bh_store_kv_incr(s->kv, s->name, key, bhlib_kv_ttl(L, 2), &n, &err) < 0)
        return bhlib_kv_fail(L, &err);
    lua_pushinteger(L, n);
    return 1;
}

static int bhlib_kv_del(lua_State *L)
{
    struct bh_lua_script *s = bhlib_script(L);
    const char *key = bhlib_kv_key(L, s);
    struct bh_err err;
    if (bh_store_kv_del(s->kv, s->name, key, &err) < 0)
        return bhlib_kv_fail(L, &err);
    return 0;
}

void bh_lua_open_bh(lua_State *L)
{
    static const luaL_Reg bh_fns[] = {{"log", bhlib_log},
                                      {"now", bhlib_now},
                                      {"claims", bhlib_claims},
                                      {"pool", bhlib_pool},
                                      {NULL, NULL}};
    static const luaL_Reg kv_fns[] = {{"get", bhlib_kv_get},
                                      {"set", bhlib_kv_set},
                                      {"incr", bhlib_kv_incr},
                                      {"del", bhlib_kv_del},
                                      {NULL, NULL}};
    luaL_newlib(L, bh_fns);
    luaL_newlib(L, kv_fns);
    bh_lua_readonly(L, -1);
    lua_remove(L, -2);
    lua_setfield(L, -2, "kv");
    bh_lua_readonly(L, -1);
    lua_remove(L, -2);
}
