/* The sandbox: one lua_State per script, a counting allocator (memory ceiling), a count hook
 * (instruction budget and wall-clock deadline), a curated read-only environment, and the call
 * that runs a script's top level and entry function in a fresh environment each time, so a
 * call cannot leave state for the next one. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"
#include "log.h"
#include "lua_int.h"
#include "mem.h"

/* The hook runs every SANDBOX_HOOK_STEP instructions: cheap, and a limit overshoots by less. */
#define SANDBOX_HOOK_STEP 1000
#define SANDBOX_JSON_DEPTH 16

static long long sandbox_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* lua_Alloc with a ceiling: growth past the limit fails (Lua collects and, failing that,
 * raises "not enough memory"); frees and shrinks always succeed, as Lua requires. */
static void *sandbox_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct bh_lua_script *s = ud;
    if (!ptr)
        osize = 0;
    if (nsize == 0) {
        free(ptr);
        s->used -= osize;
        return NULL;
    }
    if (nsize > osize && s->used - osize + nsize > s->limits.memory) {
        s->mem_hit = 1;
        return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (!p)
        return NULL;
    s->used = s->used - osize + nsize;
    if (s->used > s->peak)
        s->peak = s->used;
    return p;
}

/* Once a limit is hit every thread errors at its next instruction: a pcall in the script
 * catches the error, but the next instruction raises it again. */
static void sandbox_hook(lua_State *L, lua_Debug *ar)
{
    void *ud;
    lua_getallocf(L, &ud);
    struct bh_lua_script *s = ud;
    s->executed += SANDBOX_HOOK_STEP;
    if (!s->limit_hit && s->executed > s->limits.instructions)
        s->limit_hit = "instruction budget";
    else if (!s->limit_hit && sandbox_now_ns() > s->deadline_ns)
        s->limit_hit = "deadline";
    if (lua_getinfo(L, "l", ar) && ar->currentline > 0)
        s->line = ar->currentline;
    if (!s->limit_hit)
        return;
    lua_sethook(L, sandbox_hook, LUA_MASKCOUNT, 1);
    /* Named here: luaL_error would name the caller's line, not the running one. */
    lua_pushfstring(L, "%s:%d: %s exceeded", s->name, s->line, s->limit_hit);
    lua_error(L);
}

/* ---- the environment ---- */

static int sandbox_readonly_set(lua_State *L)
{
    return luaL_error(L, "attempt to modify a read-only table (field '%s')",
                      lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "?");
}

/* pairs(proxy) walks the real table: upvalue 1 is base next. */
static int sandbox_readonly_pairs(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    if (!lua_getmetatable(L, 1))
        return luaL_error(L, "pairs: not a read-only table");
    lua_getfield(L, -1, "__index");
    lua_remove(L, -2);
    lua_pushnil(L);
    return 3;
}

void bh_lua_readonly(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    lua_newtable(L); /* the proxy */
    lua_createtable(L, 0, 4);
    lua_pushvalue(L, idx);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, sandbox_readonly_set);
    lua_setfield(L, -2, "__newindex");
    lua_getfield(L, LUA_REGISTRYINDEX, "bh.next");
    lua_pushcclosure(L, sandbox_readonly_pairs, 1);
    lua_setfield(L, -2, "__pairs");
    lua_pushliteral(L, "locked");
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
}

/* setmetatable without __gc: a finalizer would run outside any call and its limits (at a
 * collection between calls, or at lua_close). Upvalue 1: the real setmetatable. */
static int sandbox_setmetatable(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_error(L, "__gc metamethods are not allowed");
        lua_pop(L, 1);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

/* Copies the named fields of the table at idx into the table on top. */
static void sandbox_copy(lua_State *L, int idx, const char *const *names)
{
    for (; *names; names++) {
        lua_getfield(L, idx, *names);
        lua_setfield(L, -2, *names);
    }
}

/* Opens library `name` into the registry only (never as a global of the state), and pushes a
 * read-only proxy of it, or of a table of just the fields `only` when given. */
static void sandbox_lib(lua_State *L, const char *name, lua_CFunction open, const char *const *only)
{
    luaL_requiref(L, name, open, 0);
    if (only) {
        lua_newtable(L);
        sandbox_copy(L, -2, only);
        lua_remove(L, -2);
    }
    bh_lua_readonly(L, -1);
    lua_remove(L, -2);
}

static const char *const sandbox_os_fns[] = {"time", "clock", "date", NULL};

/* The libraries scripts see (os: only its clock functions). Never io, package or debug. */
static const struct {
    const char *name;
    lua_CFunction open;
    const char *const *only;
} sandbox_libs[] = {
    {LUA_STRLIBNAME, luaopen_string, NULL},   {LUA_TABLIBNAME, luaopen_table, NULL},
    {LUA_MATHLIBNAME, luaopen_math, NULL},    {LUA_UTF8LIBNAME, luaopen_utf8, NULL},
    {LUA_COLIBNAME, luaopen_coroutine, NULL}, {LUA_OSLIBNAME, luaopen_os, sandbox_os_fns},
};

/* The base environment, read-only: safe base functions and libraries, and bh. Without load,
 * loadfile, dofile, require, collectgarbage, print, rawset (it would write through a proxy). */
static void sandbox_base(lua_State *L)
{
    static const char *const base_fns[] = {
        "assert", "error",  "ipairs",       "next",         "pairs",    "pcall",
        "xpcall", "select", "tonumber",     "tostring",     "type",     "rawequal",
        "rawget", "rawlen", "setmetatable", "getmetatable", "_VERSION", NULL};
    luaL_requiref(L, "_G", luaopen_base, 0);
    lua_getfield(L, -1, "next");
    lua_setfield(L, LUA_REGISTRYINDEX, "bh.next");
    lua_newtable(L);
    sandbox_copy(L, -2, base_fns);
    lua_getfield(L, -2, "setmetatable");
    lua_pushcclosure(L, sandbox_setmetatable, 1);
    lua_setfield(L, -2, "setmetatable");
    lua_remove(L, -2);
    for (size_t i = 0; i < BH_ARRAY_LEN(sandbox_libs); i++) {
        sandbox_lib(L, sandbox_libs[i].name, sandbox_libs[i].open, sandbox_libs[i].only);
        lua_setfield(L, -2, sandbox_libs[i].name);
    }
    bh_lua_open_bh(L);
    lua_setfield(L, -2, "bh");
    bh_lua_readonly(L, -1);
    lua_remove(L, -2);
}

/* A pattern match runs in C, where neither the hook nor the deadline reaches it, and
 * backtracking makes it polynomial in the subject with the pattern's quantifiers as degree:
 * ("a"):rep(20000):find(".-.-.-b") would run for hours. So a match is refused when the
 * subject's length to the power (quantifiers + 1) passes SANDBOX_MATCH_COST. */
#define SANDBOX_MATCH_COST 1e8

/* (n + 1) ^ (quantifiers + 1) > SANDBOX_MATCH_COST, without overflow. */
static int sandbox_too_costly(size_t n, int quantifiers)
{
    double cost = 1;
    for (int i = 0; i <= quantifiers && cost <= SANDBOX_MATCH_COST; i++)
        cost *= (double)n + 1;
    return cost > SANDBOX_MATCH_COST;
}

static int sandbox_quantifiers(const char *p, size_t len)
{
    int q = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '%' && i + 1 < len) {
            q += p[i + 1] == 'b'; /* %bxy scans for its balance */
            i++;
        } else if (p[i] == '[') { /* a set: its - and ] are not quantifiers */
            for (i++; i < len && p[i] != ']'; i++)
                i += p[i] == '%';
        } else {
            q += p[i] == '*' || p[i] == '+' || p[i] == '-' || p[i] == '?';
        }
    }
    return q;
}

/* Upvalue 1: the real find/match/gmatch/gsub. A plain find (4th argument true) is linear. */
static int sandbox_match(lua_State *L)
{
    size_t n, plen;
    luaL_checklstring(L, 1, &n);
    const char *p = luaL_checklstring(L, 2, &plen);
    int plain = lua_gettop(L) >= 4 && lua_toboolean(L, 4);
    if (!plain && sandbox_too_costly(n, sandbox_quantifiers(p, plen)))
        return luaL_error(L,
                          "pattern too costly for a subject of %d bytes (simplify it, or "
                          "shorten the subject)",
                          (int)n);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

static void sandbox_wrap_matchers(lua_State *L, int strlib)
{
    static const char *const names[] = {"find", "match", "gmatch", "gsub"};
    for (size_t i = 0; i < BH_ARRAY_LEN(names); i++) {
        lua_getfield(L, strlib, names[i]);
        lua_pushcclosure(L, sandbox_match, 1);
        lua_setfield(L, strlib, names[i]);
    }
}

/* No bytecode out (string.dump), and no way to the string metatable (its __index is the real
 * string table). */
static void sandbox_lock_strings(lua_State *L)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, LUA_STRLIBNAME);
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    sandbox_wrap_matchers(L, lua_gettop(L));
    lua_pop(L, 2);
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_pushliteral(L, "locked");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 2);
}

/* Registry: the metatable of each call's fresh environment, {__index = base}. */
static void sandbox_env_mt(lua_State *L, struct bh_lua_script *s)
{
    lua_createtable(L, 0, 2);
    sandbox_base(L);
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, "locked");
    lua_setfield(L, -2, "__metatable");
    s->env_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* ---- calls ---- */

/* Message handler: names the script line of an error raised without one (in a C function). */
static int sandbox_msgh(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg)
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    lua_Debug ar;
    for (int level = 1; lua_getstack(L, level, &ar); level++) {
        if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) {
            size_t n = strlen(ar.short_src);
            if (strncmp(msg, ar.short_src, n) != 0 || msg[n] != ':')
                lua_pushfstring(L, "%s:%d: %s", ar.short_src, ar.currentline, msg);
            else
                lua_pushstring(L, msg);
            return 1;
        }
    }
    lua_pushstring(L, msg);
    return 1;
}

static void sandbox_begin(struct bh_lua_script *s, const char *tenant)
{
    s->executed = 0;
    s->limit_hit = NULL;
    s->mem_hit = 0;
    s->line = 0;
    s->peak = s->used;
    s->tenant = tenant;
    s->deadline_ns = sandbox_now_ns() + (long long)s->limits.deadline_ms * 1000000LL;
    lua_sethook(s->L, sandbox_hook, LUA_MASKCOUNT, SANDBOX_HOOK_STEP);
}

/* The failure of a call, whatever caught it: a limit wins over the message it caused. */
static int sandbox_fail(struct bh_lua_script *s, int status, struct bh_err *err)
{
    const char *msg = lua_tostring(s->L, -1);
    if (s->mem_hit || status == LUA_ERRMEM)
        return bh_err_set(err, BH_EINVAL, "%s:%d: memory limit (%zu bytes) exceeded", s->name,
                          s->line, s->limits.memory);
    if (s->limit_hit && (!msg || !strstr(msg, s->limit_hit)))
        return bh_err_set(err, BH_EINVAL, "%s:%d: %s exceeded", s->name, s->line, s->limit_hit);
    return bh_err_set(err, BH_EINVAL, "%s", msg ? msg : "unknown error");
}

/* Runs, protected (every allocation may raise): the top level in a fresh environment, then,
 * with an event, the entry function, whose results become s->result. Arguments: the script
 * and the event as light userdata. */
static int sandbox_run(lua_State *L)
{
    struct bh_lua_script *s = lua_touserdata(L, 1);
    const cJSON *event = lua_touserdata(L, 2);
    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->chunk_ref);
    lua_newtable(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->env_mt_ref);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_insert(L, 1); /* env, chunk, env */
    lua_setupvalue(L, 2, 1);
    lua_call(L, 0, 0);
    if (!s->entry) { /* the load-time check */
        if (lua_getfield(L, 1, "policy") != LUA_TFUNCTION &&
            lua_getfield(L, 1, "guard") != LUA_TFUNCTION)
            return luaL_error(L, "%s: defines no function 'policy' or 'guard'", s->name);
        return 0;
    }
    if (lua_getfield(L, 1, s->entry) != LUA_TFUNCTION)
        return luaL_error(L, "%s: defines no function '%s'", s->name, s->entry);
    bh_lua_push_json(L, event);
    if (s->store && strcmp(s->entry, "policy") == 0)
        bh_lua_lazy_event(L, -1);
    lua_call(L, 1, LUA_MULTRET);
    if (!lua_checkstack(L, 2 * SANDBOX_JSON_DEPTH + 8))
        return luaL_error(L, "not enough memory");
    cJSON *arr = cJSON_CreateArray();
    for (int i = 2; i <= lua_gettop(L); i++) {
        const char *why = NULL;
        cJSON *v = bh_lua_to_json(L, i, SANDBOX_JSON_DEPTH, &why);
        if (!v) {
            cJSON_Delete(arr);
            return luaL_error(L, "%s: wrong return type: value %d %s", s->name, i - 1, why);
        }
        cJSON_AddItemToArray(arr, v);
    }
    s->result = arr;
    return 0;
}

/* One protected run; a limit hit fails it even when the script caught the error. */
static int sandbox_pcall(struct bh_lua_script *s, const cJSON *event, struct bh_err *err)
{
    lua_State *L = s->L;
    lua_settop(L, 0);
    if (s->used > s->limits.memory / 2)
        lua_gc(L, LUA_GCCOLLECT); /* garbage of earlier calls must not count against this one */
    sandbox_begin(s, event ? bh_json_str(event, "tenantId") : NULL);
    lua_pushcfunction(L, sandbox_msgh);
    lua_pushcfunction(L, sandbox_run);
    lua_pushlightuserdata(L, s);
    lua_pushlightuserdata(L, (void *)event);
    /* The check runs the top level with no event; a call's event is never NULL. */
    int status = lua_pcall(L, 2, 0, 1);
    lua_sethook(L, NULL, 0, 0);
    int rc = status == LUA_OK && !s->limit_hit && !s->mem_hit ? 0 : sandbox_fail(s, status, err);
    lua_settop(L, 0);
    s->tenant = NULL;
    return rc;
}

int bh_lua_script_call(struct bh_lua_script *s, const char *entry, const cJSON *event, cJSON **out,
                       struct bh_lua_report *rep, struct bh_err *err)
{
    long long t0 = sandbox_now_ns();
    *out = NULL;
    pthread_mutex_lock(&s->mu);
    s->logs = rep ? cJSON_CreateArray() : NULL;
    s->result = NULL;
    s->entry = entry;
    int rc = sandbox_pcall(s, event, err);
    s->entry = NULL;
    if (rc == 0)
        *out = BH_STEAL(s->result);
    cJSON_Delete(s->result);
    s->result = NULL;
    if (rep) {
        rep->instructions = s->executed;
        rep->memory = s->peak;
        rep->logs = s->logs;
    }
    s->logs = NULL;
    pthread_mutex_unlock(&s->mu);
    if (rep)
        rep->micros = (sandbox_now_ns() - t0) / 1000;
    return rc;
}

void bh_lua_report_free(struct bh_lua_report *rep)
{
    cJSON_Delete(rep->logs);
    rep->logs = NULL;
}

/* ---- scripts ---- */

static int sandbox_compile(struct bh_lua_script *s, const char *src, size_t len, struct bh_err *err)
{
    bh_autofree char *chunkname = bh_xasprintf("=%s", s->name);
    int status = luaL_loadbufferx(s->L, src, len, chunkname, "t");
    if (status != LUA_OK) {
        const char *msg = lua_tostring(s->L, -1);
        bh_err_set(err, BH_EINVAL, "%s", status == LUA_ERRMEM ? "not enough memory" : msg);
        if (status == LUA_ERRMEM || strncmp(msg, s->name, strlen(s->name)) != 0)
            bh_err_wrap(err, "%s", s->name);
        return -1;
    }
    s->chunk_ref = luaL_ref(s->L, LUA_REGISTRYINDEX);
    return 0;
}

/* The first run, at load time: the top level runs within the limits and defines the entry
 * function. */
static int sandbox_check(struct bh_lua_script *s, struct bh_err *err)
{
    return sandbox_pcall(s, NULL, err);
}

/* Opening the libraries runs with the state's own limits too; they are far below any sane
 * ceiling, so a failure here means the limits themselves are unusable. */
static int sandbox_open(lua_State *L)
{
    struct bh_lua_script *s = lua_touserdata(L, 1);
    sandbox_env_mt(L, s); /* opens string, which lock_strings then closes off */
    sandbox_lock_strings(L);
    return 0;
}

int bh_lua_script_new(const char *name, const char *src, size_t len,
                      const struct bh_lua_limits *limits, struct bh_store *store,
                      struct bh_store *kv, struct bh_lua_script **out, struct bh_err *err)
{
    struct bh_lua_script *s = bh_xcalloc(1, sizeof(*s));
    s->name = bh_xstrdup(name);
    s->limits = *limits;
    s->store = store;
    s->kv = kv;
    s->chunk_ref = s->env_mt_ref = LUA_NOREF;
    pthread_mutex_init(&s->mu, NULL);
    s->L = lua_newstate(sandbox_alloc, s);
    int rc = s->L ? 0 : bh_err_set(err, BH_EINVAL, "%s: memory limit too small", name);
    if (rc == 0) {
        lua_pushcfunction(s->L, sandbox_open);
        lua_pushlightuserdata(s->L, s);
        if (lua_pcall(s->L, 1, 0, 0) != LUA_OK)
            rc = bh_err_set(err, BH_EINVAL, "%s: cannot open the sandbox: %s", name,
                            lua_tostring(s->L, -1));
    }
    if (rc == 0)
        rc = sandbox_compile(s, src, len, err);
    if (rc == 0)
        rc = sandbox_check(s, err);
    if (rc < 0) {
        bh_lua_script_free(s);
        return -1;
    }
    *out = s;
    return 0;
}

void bh_lua_script_free(struct bh_lua_script *s)
{
    if (!s)
        return;
    if (s->L)
        lua_close(s->L);
    pthread_mutex_destroy(&s->mu);
    free(s->name);
    free(s);
}
