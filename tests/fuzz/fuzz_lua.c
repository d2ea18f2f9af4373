/* Random Lua source into the sandbox: compiled (text only), its top level and both entry
 * points run under tight limits. No input may crash the host, run past the deadline, or
 * leak (ASan's leak check in the libFuzzer build). */
#include "fuzz.h"
#include "lua_host.h"

#include <stdlib.h>
#include <time.h>

/* Tight, so a fuzz run is fast: a loop stops in milliseconds. */
static const struct bh_lua_limits fuzz_limits = {200000, 2u << 20, 200};

/* CPU time, not wall time: a hang burns CPU, while a loaded machine only stretches wall
 * time (a wall clock here reported a 50-run stall on a busy host as a hang). */
static long long fuzz_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* A call may take the deadline plus one hook step plus slack for a loaded machine. */
static void fuzz_call(struct bh_lua_script *s, const char *entry, const cJSON *ev)
{
    cJSON *ret = NULL;
    struct bh_err err;
    long long t0 = fuzz_ms();
    bh_lua_script_call(s, entry, ev, &ret, NULL, &err);
    if (fuzz_ms() - t0 > fuzz_limits.deadline_ms + 2000)
        abort(); /* a hang past the deadline */
    cJSON_Delete(ret);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct bh_lua_script *s = NULL;
    struct bh_err err;
    long long t0 = fuzz_ms();
    int rc =
        bh_lua_script_new("fuzz.lua", (const char *)data, size, &fuzz_limits, NULL, NULL, &s, &err);
    if (fuzz_ms() - t0 > fuzz_limits.deadline_ms + 2000)
        abort();
    if (rc < 0)
        return 0;
    cJSON *ev = cJSON_Parse("{\"tenantId\":\"alice\",\"workload\":\"w\",\"text\":\"hi\","
                            "\"activeClaims\":[{\"workload\":\"a\"}],\"now\":1764583200}");
    fuzz_call(s, "policy", ev);
    fuzz_call(s, "guard", ev);
    cJSON_Delete(ev);
    bh_lua_script_free(s);
    return 0;
}
