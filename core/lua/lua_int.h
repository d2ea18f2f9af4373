/* Inside the Lua host: the script record the sandbox (sandbox.c), the bh library (bhlib.c) and
 * the policy set (policies.c) share. */
#ifndef BH_LUA_INT_H
#define BH_LUA_INT_H

#include <lua.h>
#include <pthread.h>

#include "lua_host.h"

struct bh_lua_script {
    char *name;
    lua_State *L;
    pthread_mutex_t mu; /* one call at a time */
    struct bh_lua_limits limits;
    struct bh_store *store; /* borrowed; NULL: no claims, no pools */
    struct bh_store *kv;    /* borrowed; NULL: no bh.kv */
    int chunk_ref;          /* the compiled chunk, in the registry */
    int env_mt_ref;         /* metatable of a call's environment: reads fall through to base */
    const char *entry;      /* of the call under way; NULL at load: "policy" or "guard" */
    /* Accounting of the call under way (valid while mu is held). */
    size_t used, peak;
    int mem_hit;           /* the allocator refused growth */
    long long executed;    /* instructions, by the hook's steps */
    long long deadline_ns; /* CLOCK_MONOTONIC */
    const char *limit_hit; /* "instruction budget" or "deadline", once tripped */
    int line;              /* last line the hook saw, for errors without one */
    const char *tenant;    /* scopes bh.claims() */
    cJSON *logs;           /* bh.log output of the call */
    cJSON *result;         /* what the entry function returned */
};

/* Opens the bh library as a table on top of L's stack (bhlib.c). */
void bh_lua_open_bh(lua_State *L);
/* A read-only proxy of the table at idx, pushed. */
void bh_lua_readonly(lua_State *L, int idx);
/* The tenant's claims as a Lua-ready JSON array (bhlib.c), skipping workload `except`. */
cJSON *bh_lua_tenant_claims(struct bh_store *store, const char *tenant, const char *except);
/* Pools of workload: ready and warming instances. */
void bh_lua_pool_counts(struct bh_store *store, const char *workload, long long *ready,
                        long long *warming);
/* Makes the claim event table at idx fill activeClaims and poolReady from the store when the
 * script reads them. */
void bh_lua_lazy_event(lua_State *L, int idx);
/* Lua value at idx as JSON (depth-limited; functions and the like are refused). NULL + msg. */
cJSON *bh_lua_to_json(lua_State *L, int idx, int depth, const char **why);
/* Pushes JSON as Lua values. */
void bh_lua_push_json(lua_State *L, const cJSON *v);
/* A guard's values: 1 for true, 0 for false (*reason owned or NULL), -1 for anything else. */
int bh_lua_verdict(const cJSON *ret, char **reason);
/* A claim policy's values into d (d->script names it in errors); wl bounds resource caps. */
int bh_lua_decision_read(const cJSON *ret, const cJSON *wl, struct bh_lua_decision *d,
                         struct bh_err *err);

#endif
