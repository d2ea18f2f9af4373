/* The Lua host: the sandbox against hostile scripts (each refused or stopped within its limits,
 * the host unaffected), the bh library, claim policies and guards, the policy dir. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fs.h"
#include "json.h"
#include "lua_host.h"
#include "mem.h"
#include "store.h"

static const struct bh_lua_limits limits = {200000, 4u << 20, 2000};
/* What a stopped call may take past its deadline: one hook step plus a loaded machine's stall
 * (as in the fuzz harness). Only a hang or a deadline in the wrong unit exceeds it. */
#define SLACK_MS 2000

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* Compiles src as "t.lua"; returns NULL and fills err when refused. */
static struct bh_lua_script *compile(const char *src, struct bh_err *err)
{
    struct bh_lua_script *s = NULL;
    if (bh_lua_script_new("t.lua", src, strlen(src), &limits, NULL, NULL, &s, err) < 0)
        return NULL;
    return s;
}

/* Runs policy({tenantId="alice"}) and returns 0 / -1 with err; *ret owned. */
static int run(struct bh_lua_script *s, cJSON **ret, struct bh_err *err)
{
    cJSON *ev = cJSON_Parse("{\"tenantId\":\"alice\"}");
    int rc = bh_lua_script_call(s, "policy", ev, ret, NULL, err);
    cJSON_Delete(ev);
    return rc;
}

/* A hostile policy: compiles, then every call fails with a message containing want, within
 * the limits (well under the 2 s deadline even for the budget); the state still serves a
 * sane call afterwards (the daemon is unaffected). */
static void expect_stopped(const char *body, const char *want)
{
    bh_autofree char *src = bh_xasprintf("function policy(e)\n%s\nend\n"
                                         "function guard(e) return true end\n",
                                         body);
    struct bh_err err = {0};
    struct bh_lua_script *s = compile(src, &err);
    assert_non_null(s);
    for (int i = 0; i < 2; i++) {
        cJSON *ret = NULL;
        long long t0 = now_ms();
        assert_int_equal(run(s, &ret, &err), -1);
        assert_true(now_ms() - t0 < limits.deadline_ms + SLACK_MS);
        assert_null(ret);
        if (!strstr(err.msg, want) || strncmp(err.msg, "t.lua:", 6) != 0)
            fail_msg("script:\n%s\nerror: %s (wanted t.lua:LINE: ...%s...)", body, err.msg, want);
    }
    cJSON *ret = NULL;
    cJSON *ev = cJSON_CreateObject();
    assert_int_equal(bh_lua_script_call(s, "guard", ev, &ret, NULL, &err), 0);
    assert_true(cJSON_IsTrue(cJSON_GetArrayItem(ret, 0)));
    cJSON_Delete(ret);
    cJSON_Delete(ev);
    bh_lua_script_free(s);
}

static void test_infinite_loop(void **state)
{
    expect_stopped("while true do end", "instruction budget exceeded");
    /* Catching the limit does not help: it fires again at the next instruction. */
    expect_stopped("while true do pcall(function() while true do end end) end return true",
                   "instruction budget exceeded");
}

static void test_coroutine_loop(void **state)
{
    expect_stopped("local co = coroutine.wrap(function() while true do end end)\nco()",
                   "instruction budget exceeded");
    expect_stopped("local co = coroutine.create(function() while true do end end)\n"
                   "coroutine.resume(co)\nreturn true",
                   "instruction budget exceeded");
}

static void test_deep_recursion(void **state)
{
    expect_stopped("local function f(n) return 1 + f(n + 1) end\nreturn f(1)", "");
}

static void test_memory_bombs(void **state)
{
    expect_stopped("local s = string.rep(\"x\", 1e9)\nreturn true", "memory limit");
    expect_stopped("local t = {}\nfor i = 1, 1e8 do t[i] = {i} end\nreturn true",
                   "exceeded"); /* budget or memory, whichever comes first */
    expect_stopped("local t = {}\nwhile true do t[#t + 1] = string.rep('y', 1000) .. #t end",
                   "memory limit");
    /* A caught memory error still fails the call: the limit was hit. */
    expect_stopped("pcall(string.rep, 'x', 1e9)\nreturn true", "memory limit");
}

static void test_deadline(void **state)
{
    struct bh_lua_limits lim = {1LL << 40, 4u << 20, 50};
    const char *src = "function policy(e) while true do end end";
    struct bh_lua_script *s = NULL;
    struct bh_err err;
    assert_int_equal(bh_lua_script_new("t.lua", src, strlen(src), &lim, NULL, NULL, &s, &err), 0);
    cJSON *ret = NULL;
    long long t0 = now_ms();
    assert_int_equal(run(s, &ret, &err), -1);
    assert_true(now_ms() - t0 < lim.deadline_ms + SLACK_MS); /* 50 ms, not 50 s */
    assert_non_null(strstr(err.msg, "t.lua:1: deadline exceeded"));
    bh_lua_script_free(s);
}

static void test_forbidden_functions(void **state)
{
    expect_stopped("return load(\"return 1\")()", "global 'load'");
    expect_stopped("return os.execute(\"true\")", "field 'execute'");
    expect_stopped("return io.open(\"/etc/passwd\")", "global 'io'");
    expect_stopped("return require \"os\"", "global 'require'");
    expect_stopped("return debug.sethook()", "global 'debug'");
    expect_stopped("return dofile(\"/etc/passwd\")", "global 'dofile'");
    expect_stopped("return string.dump(policy)", "field 'dump'");
    expect_stopped("return collectgarbage()", "global 'collectgarbage'");
    expect_stopped("rawset(_ENV, 'x', 1) return true", "global 'rawset'");
    expect_stopped("local mt = getmetatable('')\nmt.__index.upper = nil\nreturn true",
                   "field '__index'"); /* getmetatable('') is the string "locked" */
    expect_stopped("setmetatable({}, {__gc = function() while true do end end})",
                   "__gc metamethods are not allowed");
}

/* Pattern matching runs in C, out of the hook's reach: costly matches are refused up front. */
static void test_costly_patterns(void **state)
{
    expect_stopped("return string.rep('a', 20000):find('.-.-.-b')", "pattern too costly");
    expect_stopped("return ('a'):rep(5000):match('(a*)*b')", "pattern too costly");
    expect_stopped("for w in ('ab'):rep(20000):gmatch('%ba') do end", "pattern too costly");
    struct bh_err err;
    struct bh_lua_script *s =
        compile("function policy(e)\n"
                "  local long = ('a'):rep(100000)\n"
                "  return {a = ('/start now'):match('^/(%w+)'), b = long:find('aab', 1, true),\n"
                "          c = ('x-y'):gsub('[-]', '+'), d = #long:gsub('a', 'b')}\n"
                "end",
                &err);
    assert_non_null(s);
    cJSON *ret = NULL;
    assert_int_equal(run(s, &ret, &err), 0);
    const cJSON *t = cJSON_GetArrayItem(ret, 0);
    assert_string_equal(bh_json_str(t, "a"), "start");
    assert_null(bh_json_get(t, "b"));
    assert_string_equal(bh_json_str(t, "c"), "x+y");
    assert_int_equal(bh_json_int(t, "d", 0), 100000);
    cJSON_Delete(ret);
    bh_lua_script_free(s);
}

static void test_shared_globals_locked(void **state)
{
    expect_stopped("setmetatable(_ENV, {})", "protected metatable");
    expect_stopped("setmetatable(string, {})", "protected metatable");
    expect_stopped("string.upper = nil", "read-only");
    expect_stopped("bh.kv = nil", "read-only");
    expect_stopped("os.execute = 1", "read-only");
}

struct dump {
    char buf[4096];
    size_t len;
};

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud)
{
    struct dump *d = ud;
    if (d->len + sz > sizeof(d->buf))
        return 1;
    memcpy(d->buf + d->len, p, sz);
    d->len += sz;
    return 0;
}

/* Bytecode is never loaded: not as a script, and load is gone from the sandbox. */
static void test_bytecode_refused(void **state)
{
    lua_State *L = luaL_newstate();
    assert_int_equal(luaL_loadstring(L, "function policy() return true end"), LUA_OK);
    struct dump d = {.len = 0};
    assert_int_equal(lua_dump(L, dump_writer, &d, 0), 0);
    lua_close(L);
    struct bh_lua_script *s = NULL;
    struct bh_err err;
    assert_int_equal(bh_lua_script_new("t.lua", d.buf, d.len, &limits, NULL, NULL, &s, &err), -1);
    assert_non_null(strstr(err.msg, "binary chunk"));
    assert_non_null(strstr(err.msg, "t.lua"));
    expect_stopped("return load(\"\\27Lua\")", "global 'load'");
}

static void test_top_level_yield(void **state)
{
    struct bh_err err;
    assert_null(compile("coroutine.yield(1)\nfunction policy() return true end", &err));
    assert_non_null(strstr(err.msg, "t.lua:1:"));
    assert_non_null(strstr(err.msg, "yield"));
    expect_stopped("coroutine.yield(true)", "yield");
}

static void test_compile_errors(void **state)
{
    struct bh_err err;
    assert_null(compile("function policy(e)\n  return true\n", &err));
    assert_non_null(strstr(err.msg, "t.lua:3:"));
    assert_null(compile("x = 1", &err));
    assert_non_null(strstr(err.msg, "defines no function 'policy' or 'guard'"));
    assert_null(compile("while true do end", &err)); /* a top level that never ends */
    assert_non_null(strstr(err.msg, "instruction budget exceeded"));
    assert_null(compile("error('boom')\nfunction policy() end", &err));
    assert_non_null(strstr(err.msg, "t.lua:1: boom"));
}

static void test_wrong_return_type(void **state)
{
    expect_stopped("return function() end", "wrong return type: value 1 is a function");
    expect_stopped("return coroutine.create(print or function() end)",
                   "wrong return type: value 1 is a coroutine");
    expect_stopped("local t = {}\nt.self = t\nreturn t", "nested too deep");
    expect_stopped("return {[{}] = 1}", "key that is not a string");
}

/* Arrays inside objects come back as JSON arrays, whatever their depth or order (an array's
 * conversion once left a value on the Lua stack that broke its parent's walk). */
static void test_nested_return_values(void **state)
{
    struct bh_err err;
    struct bh_lua_script *s =
        compile("function policy(e) return {allow = true, tags = {\"a\", \"b\"},\n"
                "  nested = {list = {{x = 1}, {y = {2, 3}}}, after = \"z\"}} end",
                &err);
    assert_non_null(s);
    cJSON *ret = NULL;
    assert_int_equal(run(s, &ret, &err), 0);
    bh_autofree char *got = cJSON_PrintUnformatted(cJSON_GetArrayItem(ret, 0));
    cJSON *want = cJSON_Parse("{\"allow\":true,\"tags\":[\"a\",\"b\"],\"nested\":{\"list\":"
                              "[{\"x\":1},{\"y\":[2,3]}],\"after\":\"z\"}}");
    if (!cJSON_Compare(cJSON_GetArrayItem(ret, 0), want, 1))
        fail_msg("policy returned %s", got);
    cJSON_Delete(want);
    cJSON_Delete(ret);
    /* the event itself, with an array inside, round-trips */
    bh_lua_script_free(s);
    s = compile("function policy(e) return e end", &err);
    assert_non_null(s);
    cJSON *ev = cJSON_Parse("{\"tenantId\":\"alice\",\"activeClaims\":[{\"workload\":\"a\"}],"
                            "\"now\":1764583200}");
    assert_int_equal(bh_lua_script_call(s, "policy", ev, &ret, NULL, &err), 0);
    assert_true(cJSON_Compare(cJSON_GetArrayItem(ret, 0), ev, 1));
    cJSON_Delete(ret);
    cJSON_Delete(ev);
    bh_lua_script_free(s);
}

static void test_no_state_between_calls(void **state)
{
    struct bh_err err;
    struct bh_lua_script *s = compile("count = (count or 0) + 1\n"
                                      "local n = 0\n"
                                      "function policy(e) n = n + 1; hits = (hits or 0) + 1\n"
                                      "  return {count = count, n = n, hits = hits} end",
                                      &err);
    assert_non_null(s);
    for (int i = 0; i < 3; i++) {
        cJSON *ret = NULL;
        assert_int_equal(run(s, &ret, &err), 0);
        const cJSON *t = cJSON_GetArrayItem(ret, 0);
        assert_int_equal(bh_json_int(t, "count", 0), 1);
        assert_int_equal(bh_json_int(t, "n", 0), 1);
        assert_int_equal(bh_json_int(t, "hits", 0), 1);
        cJSON_Delete(ret);
    }
    bh_lua_script_free(s);
}

static void test_library(void **state)
{
    struct bh_err err;
    struct bh_lua_script *s =
        compile("function policy(e)\n"
                "  bh.log('info', 'hello ' .. e.tenantId)\n"
                "  local n = 0 for k in pairs(string) do n = n + 1 end\n"
                "  return {now = bh.now() > 1e9, t = os.time() > 0, up = ('x'):upper(), n = n,\n"
                "          f = math.floor(2.5), u = utf8.char(72), c = #bh.claims()}\n"
                "end",
                &err);
    assert_non_null(s);
    cJSON *ret = NULL, *ev = cJSON_Parse("{\"tenantId\":\"alice\"}");
    struct bh_lua_report rep = {0};
    assert_int_equal(bh_lua_script_call(s, "policy", ev, &ret, &rep, &err), 0);
    const cJSON *t = cJSON_GetArrayItem(ret, 0);
    assert_true(bh_json_bool(t, "now", 0) && bh_json_bool(t, "t", 0));
    assert_string_equal(bh_json_str(t, "up"), "X");
    assert_true(bh_json_int(t, "n", 0) > 10); /* pairs sees through the read-only proxy */
    assert_int_equal(bh_json_int(t, "f", 0), 2);
    assert_string_equal(bh_json_str(t, "u"), "H");
    assert_int_equal(bh_json_int(t, "c", 1), 0);
    assert_int_equal(cJSON_GetArraySize(rep.logs), 1);
    assert_string_equal(bh_json_str(cJSON_GetArrayItem(rep.logs, 0), "msg"), "hello alice");
    assert_true(rep.instructions >= 0 && rep.memory > 0);
    bh_lua_report_free(&rep);
    cJSON_Delete(ret);
    cJSON_Delete(ev);
    bh_lua_script_free(s);
}

/* ---- kv, policies and guards, over a real store and policy dir ---- */

struct fixture {
    char dir[40];
    char *pdir;
    struct bh_store *store;
    struct bh_lua_policies *p;
};

static int setup(void **state)
{
    struct fixture *f = bh_xcalloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/bh-test-lua-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    bh_autofree char *db = bh_xasprintf("%s/store.db", f->dir);
    f->pdir = bh_xasprintf("%s/policies", f->dir);
    struct bh_err err;
    struct bh_lua_limits lim = BH_LUA_LIMITS_DEFAULT;
    if (bh_store_open(db, &f->store, &err) < 0 ||
        bh_lua_policies_open(f->pdir, f->store, &lim, &f->p, &err) < 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    struct bh_err err;
    bh_lua_policies_close(f->p);
    bh_store_close(f->store);
    BH_IGNORE(bh_fs_rmtree(f->dir, &err)); /* teardown: best effort */
    free(f->pdir);
    free(f);
    return 0;
}

/* Writes a policy file atomically, as an editor or deploy would (rename over). */
static void put_script(struct fixture *f, const char *name, const char *src)
{
    bh_autofree char *tmp = bh_xasprintf("%s/.%s.tmp", f->pdir, name);
    bh_autofree char *path = bh_xasprintf("%s/%s", f->pdir, name);
    FILE *fp = fopen(tmp, "w");
    assert_non_null(fp);
    fputs(src, fp);
    fclose(fp);
    assert_int_equal(rename(tmp, path), 0);
}

static cJSON *workload(const char *policy)
{
    cJSON *wl = cJSON_Parse("{\"metadata\":{\"name\":\"web\"},\"spec\":{\"resources\":"
                            "{\"vcpus\":2,\"memoryMb\":512}}}");
    if (policy)
        cJSON_AddStringToObject(bh_json_obj(wl, "spec"), "claimPolicy", policy);
    return wl;
}

static void decide(struct fixture *f, const char *policy, struct bh_lua_decision *d)
{
    cJSON *wl = workload(policy);
    cJSON *ev = bh_lua_claim_event("alice", wl, NULL);
    struct bh_err err;
    assert_int_equal(bh_lua_policy_decide(f->p, wl, ev, d, &err), 0);
    cJSON_Delete(ev);
    cJSON_Delete(wl);
}

static void test_kv(void **state)
{
    struct fixture *f = *state;
    put_script(f, "rate.lua",
               "function policy(e)\n"
               "  local n = bh.kv.incr('claims:' .. e.tenantId, 3600)\n"
               "  bh.kv.set('last', e.tenantId, 0)\n"
               "  if n > 3 then return false, 'rate limit: ' .. n .. ' claims this hour' end\n"
               "  return true\n"
               "end\n");
    struct bh_lua_decision d;
    for (int i = 1; i <= 4; i++) {
        decide(f, "rate.lua", &d);
        assert_int_equal(d.allow, i <= 3);
        bh_lua_decision_free(&d);
    }
    /* Durable: the counter lives in the store, whatever happens to the policy set. */
    char *v = NULL;
    struct bh_err err;
    assert_int_equal(bh_store_kv_get(f->store, "rate.lua", "claims:alice", &v, &err), 0);
    assert_string_equal(v, "4");
    free(v);
    long long n = 0;
    assert_int_equal(bh_store_kv_incr(f->store, "other", "k", 1, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(bh_store_kv_set(f->store, "other", "gone", "x", 0, &err), 0);
    assert_int_equal(bh_store_kv_del(f->store, "other", "gone", &err), 0);
    assert_int_equal(bh_store_kv_get(f->store, "other", "gone", &v, &err), 0);
    assert_null(v);
}

static void test_kv_ttl(void **state)
{
    struct fixture *f = *state;
    struct bh_err err;
    long long n = 0;
    char *v = NULL;
    /* Expiry has whole-second resolution (live while now < start + ttl): a 1 s TTL started at
     * x.999 would be gone a millisecond later, before the second increment. With 2 s the
     * counter lives at least a full second. */
    assert_int_equal(bh_store_kv_incr(f->store, "s", "k", 2, &n, &err), 0);
    assert_int_equal(bh_store_kv_incr(f->store, "s", "k", 2, &n, &err), 0);
    assert_int_equal(n, 2);
    /* Waits on the condition (the second the TTL ends), not a fixed sleep; the bound only
     * stops a counter that never expires. */
    time_t until = time(NULL) + 30;
    while (time(NULL) < until) {
        assert_int_equal(bh_store_kv_get(f->store, "s", "k", &v, &err), 0);
        if (!v)
            break;
        free(v);
        usleep(50000);
    }
    assert_null(v);
    assert_int_equal(bh_store_kv_incr(f->store, "s", "k", 1, &n, &err), 0);
    assert_int_equal(n, 1);
}

static void test_policy_decisions(void **state)
{
    struct fixture *f = *state;
    struct bh_lua_decision d;
    decide(f, NULL, &d); /* no policy, no default: allow */
    assert_true(d.allow && !d.script);
    bh_lua_decision_free(&d);
    put_script(f, "vip.lua",
               "function policy(e)\n"
               "  if e.tenantId == 'alice' then\n"
               "    return {idleTimeoutSeconds = 7200, idleAction = 'hibernate', source = 'cold',\n"
               "            resources = {vcpus = 1, memoryMb = 256}, labels = {tier = 'vip'}}\n"
               "  end\n"
               "  return true\n"
               "end\n");
    decide(f, "vip.lua", &d);
    assert_true(d.allow && !d.failed);
    assert_int_equal(bh_json_int(d.overrides, "idleTimeoutSeconds", 0), 7200);
    assert_string_equal(bh_json_str(d.overrides, "labels.tier"), "vip");
    bh_lua_decision_free(&d);
    /* Bad overrides fail closed, naming the field. */
    static const char *const bad[][2] = {
        {"{resources = {memoryMb = 4096}}", "resources.memoryMb: must be > 0 and at most 512"},
        {"{idleAction = 'explode'}", "idleAction: must be \"hibernate\" or \"destroy\""},
        {"{source = 'warm'}", "source: must be \"pool\" or \"cold\""},
        {"{labels = {['boilerhouse.dev/tenant'] = 'bob'}}", "reserved"},
        {"{idleTimeoutSeconds = -1}", "idleTimeoutSeconds"},
        {"{colour = 'red'}", "colour: unknown"},
        {"42", "wrong return type"},
        {"nil", "wrong return type"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        bh_autofree char *src = bh_xasprintf("function policy(e) return %s end", bad[i][0]);
        put_script(f, "bad.lua", src);
        decide(f, "bad.lua", &d);
        assert_true(!d.allow && d.failed);
        if (!strstr(d.reason, bad[i][1]) || !strstr(d.reason, "bad.lua"))
            fail_msg("%s: %s (wanted %s)", bad[i][0], d.reason, bad[i][1]);
        bh_lua_decision_free(&d);
    }
    put_script(f, "no.lua", "function policy(e) return false, 'closed for lunch' end");
    decide(f, "no.lua", &d);
    assert_true(!d.allow && !d.failed);
    assert_string_equal(d.reason, "closed for lunch");
    bh_lua_decision_free(&d);
    decide(f, "missing.lua", &d); /* a policy that is not there denies */
    assert_true(!d.allow && d.failed);
    assert_non_null(strstr(d.reason, "missing.lua: no such script"));
    bh_lua_decision_free(&d);
    decide(f, "../store.db", &d);
    assert_true(!d.allow && d.failed);
    assert_non_null(strstr(d.reason, "not a script name"));
    bh_lua_decision_free(&d);
}

/* activeClaims and poolReady come from the store when the script reads them. */
static void test_lazy_event_fields(void **state)
{
    struct fixture *f = *state;
    struct bh_err err;
    static const char *const docs[] = {
        "{\"kind\":\"BoilerhouseClaim\",\"metadata\":{\"name\":\"c1\",\"labels\":"
        "{\"boilerhouse.dev/tenant\":\"alice\"}},\"spec\":{\"tenantId\":\"alice\","
        "\"workloadRef\":\"db\"}}",
        "{\"kind\":\"BoilerhousePool\",\"metadata\":{\"name\":\"p1\"},\"spec\":"
        "{\"workloadRef\":\"web\",\"size\":3}}",
    };
    for (size_t i = 0; i < 2; i++) {
        cJSON *o = cJSON_Parse(docs[i]), *saved = NULL;
        assert_int_equal(bh_store_create(f->store, o, &saved, &err), 0);
        cJSON_Delete(o);
        bh_json_set_num(bh_json_obj(saved, "status"), "ready", 2);
        bh_json_set_str(bh_json_obj(saved, "status"), "phase", "Active");
        cJSON_DeleteItemFromObjectCaseSensitive(bh_json_obj(saved, "metadata"), "resourceVersion");
        assert_int_equal(bh_store_update_status(f->store, saved, NULL, &err), 0);
        cJSON_Delete(saved);
    }
    put_script(f, "lazy.lua",
               "function policy(e)\n"
               "  return false, #e.activeClaims .. ' ' .. e.activeClaims[1].workload .. ' ' ..\n"
               "                e.poolReady .. ' ' .. #bh.claims() .. ' ' .. bh.pool('web').ready\n"
               "end\n");
    struct bh_lua_decision d;
    decide(f, "lazy.lua", &d);
    assert_string_equal(d.reason, "1 db 2 1 2");
    bh_lua_decision_free(&d);
}

static void test_default_policy(void **state)
{
    struct fixture *f = *state;
    put_script(f, BH_LUA_DEFAULT_POLICY, "function policy(e) return false, 'default says no' end");
    struct bh_lua_decision d;
    decide(f, NULL, &d);
    assert_false(d.allow);
    assert_string_equal(d.script, "default.lua");
    bh_lua_decision_free(&d);
}

static void test_reload(void **state)
{
    struct fixture *f = *state;
    struct bh_lua_decision d;
    put_script(f, "p.lua", "function policy(e) return false, 'v1' end");
    decide(f, "p.lua", &d);
    assert_string_equal(d.reason, "v1");
    bh_lua_decision_free(&d);
    put_script(f, "p.lua", "function policy(e) return false, 'v2' end");
    decide(f, "p.lua", &d);
    assert_string_equal(d.reason, "v2");
    bh_lua_decision_free(&d);
    cJSON *list = bh_lua_policies_list(f->p);
    bh_autofree char *hash = bh_xstrdup(bh_json_str(cJSON_GetArrayItem(list, 0), "versionHash"));
    cJSON_Delete(list);
    /* A broken edit keeps v2 running, and the error is visible. */
    put_script(f, "p.lua", "function policy(e) return false, 'v3' ");
    decide(f, "p.lua", &d);
    assert_string_equal(d.reason, "v2");
    bh_lua_decision_free(&d);
    list = bh_lua_policies_list(f->p);
    const cJSON *e = cJSON_GetArrayItem(list, 0);
    assert_string_equal(bh_json_str(e, "name"), "p.lua");
    assert_string_equal(bh_json_str(e, "versionHash"), hash);
    assert_non_null(strstr(bh_json_str(e, "lastError"), "p.lua:1:"));
    assert_int_equal(bh_json_int(e, "calls", 0), 3);
    assert_int_equal(bh_json_int(e, "denials", 0), 3);
    assert_true(bh_json_int(e, "p99Micros", -1) >= 0);
    cJSON_Delete(list);
    /* A symlink out of the dir is not followed. */
    bh_autofree char *link = bh_xasprintf("%s/evil.lua", f->pdir);
    assert_int_equal(symlink("/etc/passwd", link), 0);
    decide(f, "evil.lua", &d);
    assert_true(!d.allow && d.failed);
    bh_lua_decision_free(&d);
}

static void test_guard(void **state)
{
    struct fixture *f = *state;
    cJSON *ev = cJSON_Parse("{\"tenantId\":\"alice\",\"workload\":\"web\",\"trigger\":\"tg\","
                            "\"source\":\"telegram\",\"text\":\"/start\",\"raw\":{\"a\":1}}");
    char *reason = NULL;
    struct bh_err err;
    const char *src = "function guard(e)\n"
                      "  if e.source == 'telegram' and e.text:sub(1, 1) == '/' and e.raw.a == 1\n"
                      "  then return true end\n"
                      "  return false, 'commands only'\n"
                      "end";
    assert_int_equal(bh_lua_guard(f->p, NULL, src, ev, &reason, &err), 1);
    bh_json_set_str(ev, "text", "hello");
    assert_int_equal(bh_lua_guard(f->p, NULL, src, ev, &reason, &err), 0);
    assert_string_equal(reason, "commands only");
    free(reason);
    put_script(f, "g.lua", "function guard(e) return 'yes' end");
    assert_int_equal(bh_lua_guard(f->p, "g.lua", NULL, ev, &reason, &err), -1);
    assert_non_null(strstr(err.msg, "g.lua: wrong return type"));
    assert_int_equal(
        bh_lua_guard(f->p, NULL, "function guard(e) while true do end end", ev, &reason, &err), -1);
    assert_non_null(strstr(err.msg, "instruction budget exceeded"));
    cJSON_Delete(ev);
}

static void test_policy_test(void **state)
{
    struct fixture *f = *state;
    put_script(f, "t.lua",
               "function policy(e) bh.log('info', 'n=' .. bh.kv.incr('n'))\n"
               "  return {allow = false, reason = 'no'} end");
    cJSON *ev = cJSON_Parse("{\"tenantId\":\"alice\"}"), *out = NULL;
    struct bh_err err;
    for (int i = 0; i < 2; i++) { /* the scratch kv starts over: the live one is untouched */
        assert_int_equal(bh_lua_policy_test(f->p, "t.lua", NULL, ev, NULL, &out, &err), 0);
        assert_string_equal(bh_json_str(out, "decision"), "deny");
        assert_string_equal(bh_json_str(out, "reason"), "no");
        assert_string_equal(bh_json_str(cJSON_GetArrayItem(bh_json_get(out, "logs"), 0), "msg"),
                            "n=1");
        assert_true(bh_json_int(out, "memoryBytes", 0) > 0);
        cJSON_Delete(out);
    }
    char *v = NULL;
    assert_int_equal(bh_store_kv_get(f->store, "t.lua", "n", &v, &err), 0);
    assert_null(v);
    assert_int_equal(bh_lua_policy_test(f->p, "nope.lua", NULL, ev, NULL, &out, &err), -1);
    assert_int_equal(bh_lua_policy_test(f->p, "../x.lua", NULL, ev, NULL, &out, &err), -1);
    assert_non_null(strstr(err.msg, "not a script name"));
    assert_int_equal(
        bh_lua_policy_test(f->p, NULL, "function policy(e) return", ev, NULL, &out, &err), -1);
    assert_non_null(strstr(err.msg, "inline:1:"));
    cJSON_Delete(ev);
}

/* The examples in examples/lua, as docs/lua.md shows them. */
static void test_examples(void **state)
{
    struct fixture *f = *state;
    static const char *const names[] = {"quota.lua", "business-hours.lua", "vip-idle.lua"};
    for (size_t i = 0; i < 3; i++) {
        bh_autofree char *path = bh_xasprintf("%s/examples/lua/%s", BH_SOURCE_DIR, names[i]);
        bh_autofree char *src = NULL;
        size_t len;
        struct bh_err err;
        assert_int_equal(bh_fs_read_all(path, 1 << 20, &src, &len, &err), 0);
        put_script(f, names[i], src);
    }
    struct bh_lua_decision d;
    /* quota: 2 concurrent instances per tenant across workloads */
    cJSON *wl = workload("quota.lua");
    cJSON *ev = bh_lua_claim_event("alice", wl, NULL);
    struct bh_err err;
    assert_int_equal(bh_lua_policy_decide(f->p, wl, ev, &d, &err), 0);
    assert_true(d.allow);
    bh_lua_decision_free(&d);
    cJSON *claims = cJSON_Parse("[{\"workload\":\"a\",\"phase\":\"Active\"},"
                                "{\"workload\":\"b\",\"phase\":\"Active\"}]");
    cJSON_AddItemToObject(ev, "activeClaims", claims); /* given: the store is not read */
    assert_int_equal(bh_lua_policy_decide(f->p, wl, ev, &d, &err), 0);
    assert_false(d.allow);
    assert_non_null(strstr(d.reason, "at most 2"));
    bh_lua_decision_free(&d);
    cJSON_Delete(wl);
    /* business hours: Monday 10:00 UTC yes, Sunday no */
    wl = workload("business-hours.lua");
    cJSON_ReplaceItemInObject(ev, "now", cJSON_CreateNumber(1764583200)); /* Mon 2025-12-01 10:00 */
    assert_int_equal(bh_lua_policy_decide(f->p, wl, ev, &d, &err), 0);
    assert_true(d.allow);
    bh_lua_decision_free(&d);
    cJSON_ReplaceItemInObject(ev, "now", cJSON_CreateNumber(1764496800)); /* Sun 2025-11-30 10:00 */
    assert_int_equal(bh_lua_policy_decide(f->p, wl, ev, &d, &err), 0);
    assert_false(d.allow);
    assert_non_null(strstr(d.reason, "business hours"));
    bh_lua_decision_free(&d);
    cJSON_Delete(wl);
    /* vip: longer idle timeout for VIPs, the default for others */
    wl = workload("vip-idle.lua");
    cJSON_ReplaceItemInObject(ev, "tenantId", cJSON_CreateString("vip-ada"));
    assert_int_equal(bh_lua_policy_decide(f->p, wl, ev, &d, &err), 0);
    assert_true(d.allow);
    assert_int_equal(bh_json_int(d.overrides, "idleTimeoutSeconds", 0), 3600);
    assert_string_equal(bh_json_str(d.overrides, "labels.tier"), "vip");
    bh_lua_decision_free(&d);
    cJSON_ReplaceItemInObject(ev, "tenantId", cJSON_CreateString("bob"));
    assert_int_equal(bh_lua_policy_decide(f->p, wl, ev, &d, &err), 0);
    assert_true(d.allow && !bh_json_get(d.overrides, "idleTimeoutSeconds"));
    bh_lua_decision_free(&d);
    cJSON_Delete(wl);
    cJSON_Delete(ev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_infinite_loop),
        cmocka_unit_test(test_coroutine_loop),
        cmocka_unit_test(test_deep_recursion),
        cmocka_unit_test(test_memory_bombs),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_forbidden_functions),
        cmocka_unit_test(test_shared_globals_locked),
        cmocka_unit_test(test_costly_patterns),
        cmocka_unit_test(test_bytecode_refused),
        cmocka_unit_test(test_top_level_yield),
        cmocka_unit_test(test_compile_errors),
        cmocka_unit_test(test_wrong_return_type),
        cmocka_unit_test(test_nested_return_values),
        cmocka_unit_test(test_no_state_between_calls),
        cmocka_unit_test(test_library),
        cmocka_unit_test_setup_teardown(test_kv, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kv_ttl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_policy_decisions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lazy_event_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_policy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_policy_test, setup, teardown),
        cmocka_unit_test_setup_teardown(test_examples, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
