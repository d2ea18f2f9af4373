/* The OCI runtime driver: generates a bundle's config.json and drives runc or crun through
 * their CLI with a private --root under the state dir, plus the overlayfs rootfs of an
 * instance. Container IDs are chosen by the daemon ([a-z0-9-]), never by tenants. */
#ifndef BH_RUNTIME_H
#define BH_RUNTIME_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "proc.h"

/* ---- config.json ---- */

struct bh_oci_params {
    const char *rootfs; /* absolute path of the mounted rootfs */
    char *const *args;  /* process argv (NULL-terminated) */
    char *const *env;   /* "K=V" (NULL-terminated) */
    const char *cwd;    /* "/" if NULL */
    const char *hostname;
    double vcpus;            /* fractional allowed; 0 = no CPU limit */
    long memory_mb;          /* 0 = no limit */
    long pids_limit;         /* 0 = default (512) */
    uint32_t uid_base;       /* host uid/gid that container root maps to */
    uint32_t uid_size;       /* size of the mapping (65536) */
    const char *socket_dir;  /* host dir bind-mounted rw at /run/boilerhouse, or NULL */
    const char *cgroup_path; /* e.g. "/boilerhouse/<id>" */
};

/* Builds a hardened runtime config: all capabilities dropped, noNewPrivileges, default
 * seccomp profile (deny-list returning EPERM for kernel-wide/dangerous syscalls), a user
 * namespace, new pid/ipc/uts/mount/network/cgroup namespaces, masked and read-only kernel
 * paths, tmpfs /tmp, resources. Returns an owned object. */
cJSON *bh_oci_config_build(const struct bh_oci_params *p);

/* Merges an image config ("config" object of the image: Entrypoint, Cmd, Env, WorkingDir)
 * with a workload's spec.entrypoint {cmd, args, env, workdir} (either may be NULL):
 * cmd replaces Entrypoint+Cmd; args alone replace Cmd; env entries override by key.
 * Outputs are owned NULL-terminated vectors; free with bh_strv_free. BH_EINVAL if the
 * result has no program to run. */
int bh_oci_process_resolve(const cJSON *image_config, const cJSON *entrypoint, char ***args,
                           char ***env, char **cwd, struct bh_err *err);
void bh_strv_free(char **v);

/* ---- the runtime ---- */

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

/* ---- rootfs ---- */

/* overlayfs at target: lower dirs bottom first, upper/work created with owner uid/gid. */
int bh_rootfs_mount(char *const *lower_dirs, size_t n_lower, const char *upper, const char *work,
                    const char *target, uint32_t owner, struct bh_err *err);
/* Unmounts target (detaching if busy); succeeds if not mounted. */
int bh_rootfs_umount(const char *target, struct bh_err *err);

/* ---- health ---- */

/* HTTP GET http://host:port/path; 2xx or 3xx is healthy. With netns_path set, the socket is
 * created inside that network namespace (so instances without a host-visible address can be
 * probed on their loopback) and host is normally "127.0.0.1". */
int bh_health_http(const char *netns_path, const char *host, int port, const char *path,
                   int timeout_ms, struct bh_err *err);

#endif
