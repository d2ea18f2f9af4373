/* Lua host throughput on one core: guard calls per second (an inline guard, as a trigger
 * would run it), and claim-policy decisions over a real store (what they read of it).
 * Usage: bench_lua [seconds per row]. Built, not run by ctest (scripts/bench-lua.py runs it). */
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

static const char guard_src[] = "function guard(e)\n"
                                "  if e.source ~= 'telegram' then return true end\n"
                                "  if e.text:sub(1, 1) == '/' then return true end\n"
                                "  return false, 'commands only'\n"
                                "end\n";

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Runs fn for secs; prints calls/s and the p50/p99 of one call in microseconds. */
static void bench_row(const char *label, double secs, int (*fn)(void *), void *ud)
{
    size_t cap = 1 << 22, n = 0;
    double *t = bh_xmalloc(cap * sizeof(*t));
    double start = now_s(), end = start + secs;
    for (double t0 = start; t0 < end && n < cap; n++) {
        if (fn(ud) < 0) {
            fprintf(stderr, "%s: call failed\n", label);
            exit(1);
        }
        double t1 = now_s();
        t[n] = (t1 - t0) * 1e6;
        t0 = t1;
    }
    double total = now_s() - start;
    qsort(t, n, sizeof(*t), cmp_double);
    printf("| %-36s | %9zu | %10.0f | %8.1f | %8.1f |\n", label, n, (double)n / total, t[n / 2],
           t[(n * 99) / 100]);
    free(t);
}

struct ctx {
    struct bh_lua_policies *p;
    struct bh_store *store;
    cJSON *event;
    cJSON *workload;
};

static int run_guard(void *ud)
{
    struct ctx *c = ud;
    char *reason = NULL;
    struct bh_err err;
    int rc = bh_lua_guard(c->p, NULL, guard_src, c->event, &reason, &err);
    free(reason);
    return rc;
}

static int run_policy(void *ud)
{
    struct ctx *c = ud;
    cJSON *ev = bh_lua_claim_event("alice", c->workload, NULL);
    struct bh_lua_decision d;
    struct bh_err err;
    int rc = bh_lua_policy_decide(c->p, c->workload, ev, &d, &err);
    rc = rc < 0 || !d.allow ? -1 : 0;
    bh_lua_decision_free(&d);
    cJSON_Delete(ev);
    return rc;
}

static void put_file(const char *dir, const char *name, const char *text)
{
    bh_autofree char *path = bh_xasprintf("%s/%s", dir, name);
    struct bh_err err;
    if (bh_fs_write_atomic(path, text, strlen(text), 0600, &err) < 0) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 2.0;
    char dir[] = "/tmp/bh-bench-lua-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    bh_autofree char *db = bh_xasprintf("%s/store.db", dir);
    bh_autofree char *pdir = bh_xasprintf("%s/policies", dir);
    struct ctx c = {0};
    struct bh_err err;
    const struct bh_lua_limits lim = BH_LUA_LIMITS_DEFAULT;
    if (bh_store_open(db, &c.store, &err) < 0 ||
        bh_lua_policies_open(pdir, c.store, &lim, &c.p, &err) < 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    bh_autofree char *quota = bh_xasprintf("%s/examples/lua/quota.lua", BH_SOURCE_DIR);
    bh_autofree char *src = NULL;
    size_t len;
    if (bh_fs_read_all(quota, 1 << 20, &src, &len, &err) < 0)
        return 1;
    put_file(pdir, "quota.lua", src);
    put_file(pdir, "rate.lua",
             "function policy(e)\n"
             "  local n = bh.kv.incr('claims:' .. e.tenantId, 3600)\n"
             "  return n <= 1e9 or false, 'rate limit'\n"
             "end\n");
    c.event = cJSON_Parse("{\"tenantId\":\"alice\",\"workload\":\"w\",\"trigger\":\"tg\","
                          "\"source\":\"telegram\",\"text\":\"/start\",\"raw\":{}}");
    printf("| %-36s | %9s | %10s | %8s | %8s |\n", "row (one core)", "calls", "calls/s", "p50 us",
           "p99 us");
    printf("|--------------------------------------|-----------|------------|----------|----------|"
           "\n");
    bench_row("guard (inline, telegram commands)", secs, run_guard, &c);
    c.workload = cJSON_Parse("{\"metadata\":{\"name\":\"w\"},\"spec\":{\"claimPolicy\":"
                             "\"quota.lua\",\"resources\":{\"vcpus\":1,\"memoryMb\":64}}}");
    bench_row("claim policy quota.lua (reads claims)", secs, run_policy, &c);
    cJSON_ReplaceItemInObject(bh_json_obj(c.workload, "spec"), "claimPolicy",
                              cJSON_CreateString("rate.lua"));
    bench_row("claim policy rate limit (kv incr)", secs, run_policy, &c);
    cJSON_Delete(c.workload);
    cJSON_Delete(c.event);
    bh_lua_policies_close(c.p);
    bh_store_close(c.store);
    BH_IGNORE(bh_fs_rmtree(dir, &err));
    return 0;
}
