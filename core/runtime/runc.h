/* The runc/crun command line: each call runs the binary with a private --root under the state
 * dir. Container IDs are chosen by the daemon ([a-z0-9-]), never by tenants. The OCI driver
 * (runtime_oci.c) is its one user besides the runtime's own tests. */
#ifndef BH_RUNC_H
#define BH_RUNC_H

#include <stddef.h>

#include "err.h"
#include "proc.h"
#include "runtime.h"

struct bh_runc;

/* prefer: "runc", "crun" or NULL (auto: the first that can really run a container here).
 * root_dir: the runtime's --root (created if missing). */
int bh_runc_open(const char *root_dir, const char *prefer, struct bh_runc **out,
                 struct bh_err *err);
void bh_runc_close(struct bh_runc *rt);
const char *bh_runc_name(const struct bh_runc *rt);

/* `create --bundle <bundle>`: the container's stdout/stderr go to log_path (O_APPEND). */
int bh_runc_create(struct bh_runc *rt, const char *id, const char *bundle, const char *log_path,
                   struct bh_err *err);
int bh_runc_start(struct bh_runc *rt, const char *id, struct bh_err *err);
/* BH_ENOTFOUND if the runtime does not know id. */
int bh_runc_state(struct bh_runc *rt, const char *id, struct bh_runtime_state *st,
                  struct bh_err *err);
int bh_runc_kill(struct bh_runc *rt, const char *id, int sig, struct bh_err *err);
/* Force-deletes; succeeds if id does not exist. */
int bh_runc_delete(struct bh_runc *rt, const char *id, struct bh_err *err);
int bh_runc_pause(struct bh_runc *rt, const char *id, struct bh_err *err);
int bh_runc_resume(struct bh_runc *rt, const char *id, struct bh_err *err);
/* Runs argv inside the container (no shell added), capturing output. */
int bh_runc_exec(struct bh_runc *rt, const char *id, char *const *argv, int timeout_ms,
                 struct bh_proc_result *res, struct bh_err *err);
/* IDs the runtime knows under its root. *ids owned NULL-terminated (bh_strv_free). */
int bh_runc_list(struct bh_runc *rt, char ***ids, struct bh_err *err);

#endif
