/* The OCI runtime config (config.json) of an instance's bundle, and the process it runs. */
#ifndef BH_OCI_CONFIG_H
#define BH_OCI_CONFIG_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

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
    const char *api_dir;     /* host dir bind-mounted ro at BH_RUNTIME_API_DIR, or NULL */
    const char *api_socket;  /* host socket bound at BH_RUNTIME_API_DIR/api.sock, or NULL */
    const char *cgroup_path; /* e.g. "/boilerhouse/<id>" */
    /* Host dir holding the first n_etc_files of bh_etc_files (etc_files.h), each bind-mounted
     * read-only at /etc/<name>; NULL for none. */
    const char *etc_dir;
    size_t n_etc_files;
};

/* Builds a hardened runtime config: all capabilities dropped, noNewPrivileges, default
 * seccomp profile (deny-list returning EPERM for kernel-wide/dangerous syscalls), a user
 * namespace, new pid/ipc/uts/mount/network/cgroup namespaces, masked and read-only kernel
 * paths, tmpfs /tmp, resources. Returns an owned object. */
cJSON *bh_oci_config_build(const struct bh_oci_params *p);

/* Merges an image config ("config" object of the image: Entrypoint, Cmd, Env, WorkingDir)
 * with a workload's spec.entrypoint {cmd, args, env, workdir} (either may be NULL):
 * cmd replaces Entrypoint+Cmd; args alone replace Cmd; env entries override by key.
 * Outputs are owned NULL-terminated vectors; free with bh_strv_free (mem.h). BH_EINVAL if the
 * result has no program to run. */
int bh_oci_process_resolve(const cJSON *image_config, const cJSON *entrypoint, char ***args,
                           char ***env, char **cwd, struct bh_err *err);

#endif
