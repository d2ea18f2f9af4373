/* The OCI runtime driver: drives runc or crun through their CLI with a private --root under
 * the state dir. Container IDs are chosen by the daemon ([a-z0-9-]), never by tenants. */
#ifndef BH_RUNTIME_H
#define BH_RUNTIME_H

#include <stddef.h>

#include "err.h"
#include "proc.h"

struct bh_runtime;

struct bh_runtime_state {
    char status[16]; /* "created", "running", "paused", "stopped" */
    int pid;
};

/* prefer: "runc", "crun" or NULL (auto: the first that can really run a container here).
 * root_dir: the runtime's --root (created if missing). */
int bh_runtime_open(const char *root_dir, const char *prefer, struct bh_runtime **out,
                    struct bh_err *err);
void bh_runtime_close(struct bh_runtime *rt);
const char *bh_runtime_name(const struct bh_runtime *rt);

/* `create --bundle <bundle>`: the container's stdout/stderr go to log_path (O_APPEND). */
int bh_runtime_create(struct bh_runtime *rt, const char *id, const char *bundle,
                      const char *log_path, struct bh_err *err);
int bh_runtime_start(struct bh_runtime *rt, const char *id, struct bh_err *err);
/* BH_ENOTFOUND if the runtime does not know id. */
int bh_runtime_state(struct bh_runtime *rt, const char *id, struct bh_runtime_state *st,
                     struct bh_err *err);
int bh_runtime_kill(struct bh_runtime *rt, const char *id, int sig, struct bh_err *err);
/* Force-deletes; succeeds if id does not exist. */
int bh_runtime_delete(struct bh_runtime *rt, const char *id, struct bh_err *err);
int bh_runtime_pause(struct bh_runtime *rt, const char *id, struct bh_err *err);
int bh_runtime_resume(struct bh_runtime *rt, const char *id, struct bh_err *err);
/* Runs argv inside the container (no shell added), capturing output. */
int bh_runtime_exec(struct bh_runtime *rt, const char *id, char *const *argv, int timeout_ms,
                    struct bh_proc_result *res, struct bh_err *err);
/* IDs the runtime knows under its root. *ids owned NULL-terminated (bh_strv_free). */
int bh_runtime_list(struct bh_runtime *rt, char ***ids, struct bh_err *err);

/* Caps a container log: when path exceeds cap bytes, its content moves to path.1 (replacing
 * it) and path is truncated; the container keeps writing through its O_APPEND fd. */
int bh_runtime_log_rotate(const char *path, size_t cap, struct bh_err *err);

#endif
