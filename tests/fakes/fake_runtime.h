/* An in-process runtime for controller tests: no root, no runc. A rootfs is a plain
 * directory, containers are entries in memory, exec answers from a test's callback, stats are
 * what the test set, and any op can be told to fail. */
#ifndef BH_FAKE_RUNTIME_H
#define BH_FAKE_RUNTIME_H

#include "runtime.h"

enum fake_rt_op {
    FAKE_RT_ROOTFS,
    FAKE_RT_CREATE,
    FAKE_RT_START,
    FAKE_RT_DELETE,
    FAKE_RT_PAUSE,
    FAKE_RT_RESUME,
    FAKE_RT_EXEC,
    FAKE_RT_N_OPS
};

/* Answers an exec: fills res (its strings malloc'd) and returns 0, or -1 with err set. */
typedef int (*fake_rt_exec_fn)(void *ud, const char *id, char *const *argv,
                               struct bh_proc_result *res, struct bh_err *err);

/* Owned; release with bh_runtime_close. */
struct bh_runtime *fake_rt_new(void);
/* The next `times` calls of op fail with BH_EIO. */
void fake_rt_fail(struct bh_runtime *rt, enum fake_rt_op op, int times);
/* How often op was called. */
int fake_rt_calls(struct bh_runtime *rt, enum fake_rt_op op);
/* NULL fn: every exec exits 0 with no output. ud borrowed. */
void fake_rt_set_exec(struct bh_runtime *rt, fake_rt_exec_fn fn, void *ud);
void fake_rt_set_stats(struct bh_runtime *rt, const char *id, long long cpu_ns,
                       long long net_bytes);
/* Adds a running container nobody created through the runtime (a leftover of a crash). */
void fake_rt_add(struct bh_runtime *rt, const char *id);
/* The container's processes exit (it stays known, "stopped"). */
void fake_rt_stop(struct bh_runtime *rt, const char *id);
/* Its status ("created", "running", "paused", "stopped"), or NULL if unknown. Borrowed until
 * the next call. */
const char *fake_rt_status(struct bh_runtime *rt, const char *id);
/* Containers the runtime holds. */
int fake_rt_count(struct bh_runtime *rt);

#endif
