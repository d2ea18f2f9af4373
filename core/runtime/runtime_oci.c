/* The OCI driver: the runtime ops over the runc/crun CLI. Per container, the bundle holds
 * config.json and the pid file; the cgroup is /boilerhouse/<container id>. */
#include "runtime_oci.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "disk.h"
#include "etc_files.h"
#include "fs.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "oci_config.h"
#include "rootfs.h"
#include "runc.h"

struct oci_runtime {
    struct bh_runtime base; /* first: the ops see a struct bh_runtime */
    struct bh_runc *runc;   /* owned */
};

static struct bh_runc *oci_runc(struct bh_runtime *rt)
{
    return ((struct oci_runtime *)rt)->runc;
}

static char *oci_cgroup(const char *id)
{
    return bh_xasprintf("/boilerhouse/%s", id);
}

/* The disk is made fresh for each instance (mkfs on a sparse file costs ~20 ms and writes
 * under 1 MB, and nothing of an earlier instance can leak into it), unless the caller put a
 * restored one in place: then only the kept paths of its writable layer survive. */
static int oci_disk_prepare(const struct bh_runtime_spec *spec, struct bh_err *err)
{
    if (bh_fs_mkdirp(spec->disk, 0700, err) < 0)
        return -1;
    if (spec->disk_reuse) {
        if (bh_disk_mount_resized(spec->disk_image, spec->disk, spec->disk_bytes, err) < 0 ||
            bh_disk_keep(spec->disk, spec->upper, spec->disk_keep, err) < 0)
            return bh_err_wrap(err, "restored disk of %s", spec->id);
        return 0;
    }
    if (spec->disk_bytes == 0)
        return 0;
    if (bh_disk_create(spec->disk_image, spec->disk_bytes, err) < 0 ||
        bh_disk_mount(spec->disk_image, spec->disk, err) < 0)
        return bh_err_wrap(err, "disk of %s", spec->id);
    return 0;
}

static int oci_rootfs_prepare(struct bh_runtime *rt, const struct bh_runtime_spec *spec,
                              struct bh_err *err)
{
    if (oci_disk_prepare(spec, err) < 0)
        return -1;
    return bh_rootfs_mount(spec->layers, spec->n_layers, spec->upper, spec->work, spec->rootfs,
                           spec->uid_base, err);
}

/* The overlay first: it keeps the disk busy. The loop device goes with the disk's mount. */
static int oci_rootfs_release(struct bh_runtime *rt, const char *rootfs, const char *disk,
                              struct bh_err *err)
{
    if (bh_rootfs_umount(rootfs, err) < 0)
        return -1;
    return disk ? bh_disk_umount(disk, err) : 0;
}

static int oci_write_config(const struct bh_runtime_spec *spec, struct bh_err *err)
{
    bh_autofree char *cgroup = oci_cgroup(spec->id);
    struct bh_oci_params p = {
        .rootfs = spec->rootfs,
        .args = spec->args,
        .env = spec->env,
        .cwd = spec->cwd,
        .hostname = spec->hostname,
        .vcpus = spec->vcpus,
        .memory_mb = spec->memory_mb,
        .uid_base = spec->uid_base,
        .uid_size = spec->uid_size,
        .socket_dir = spec->socket_dir,
        .api_dir = spec->api_dir,
        .api_socket = spec->api_dir ? spec->api_socket : NULL,
        .cgroup_path = cgroup,
        .etc_dir = spec->etc_dir,
        .n_etc_files = spec->etc_dir ? spec->n_etc_files : 0,
    };
    cJSON *config = bh_oci_config_build(&p);
    bh_autofree char *text = bh_json_print(config);
    cJSON_Delete(config);
    bh_autofree char *path = bh_xasprintf("%s/config.json", spec->bundle);
    return bh_fs_write_replace(path, text, strlen(text), 0600, err);
}

/* The container's init pid from the file `create --pid-file` wrote: the runtime writes it
 * before create returns, so asking it again (`runc state`, ~20 ms) is not needed. */
static int oci_read_pid(const char *bundle, int *pid, struct bh_err *err)
{
    bh_autofree char *path = bh_xasprintf("%s/pid", bundle);
    bh_autofree char *data = NULL;
    size_t len = 0;
    if (bh_fs_read_all(path, 64, &data, &len, err) < 0)
        return bh_err_wrap(err, "container pid");
    char *end = NULL;
    long v = strtol(data, &end, 10);
    if (end == data || v <= 0 || v > INT32_MAX)
        return bh_err_set(err, BH_EIO, "container pid file %s: \"%.20s\"", path, data);
    *pid = (int)v;
    return 0;
}

static int oci_create(struct bh_runtime *rt, const struct bh_runtime_spec *spec, int *pid,
                      struct bh_err *err)
{
    if (spec->etc_dir && bh_etc_mountpoints(spec->rootfs, spec->n_etc_files, err) < 0)
        return bh_err_wrap(err, "instance /etc files");
    if (oci_write_config(spec, err) < 0 ||
        bh_runc_create(oci_runc(rt), spec->id, spec->bundle, spec->log_path, err) < 0)
        return -1;
    return oci_read_pid(spec->bundle, pid, err);
}

static int oci_start(struct bh_runtime *rt, const char *id, struct bh_err *err)
{
    return bh_runc_start(oci_runc(rt), id, err);
}

static int oci_state(struct bh_runtime *rt, const char *id, struct bh_runtime_state *st,
                     struct bh_err *err)
{
    return bh_runc_state(oci_runc(rt), id, st, err);
}

/* True while pid exists and is not a zombie. */
static int oci_pid_alive(int pid)
{
    bh_autofree char *path = bh_xasprintf("/proc/%d/stat", pid);
    char buf[256];
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *paren = strrchr(buf, ')'); /* the command name may contain spaces */
    return paren && paren[1] == ' ' && paren[2] != 'Z' && paren[2] != 'X';
}

/* True if pid lives in the container's own cgroup: a recycled pid is in some other cgroup,
 * and a container whose init died has been killed whole. */
static int oci_pid_in_container(int pid, const char *id)
{
    if (pid <= 0 || !oci_pid_alive(pid))
        return 0;
    bh_autofree char *path = bh_xasprintf("/proc/%d/cgroup", pid);
    bh_autofree char *data = NULL;
    size_t len = 0;
    if (bh_fs_read_all(path, 64 << 10, &data, &len, NULL) < 0)
        return 0;
    bh_autofree char *cgroup = oci_cgroup(id);
    bh_autofree char *want = bh_xasprintf("%s\n", cgroup);
    for (const char *p = strstr(data, want); p; p = strstr(p + 1, want))
        if (p > data && (p[-1] == ':' || p[-1] == '/'))
            return 1;
    return 0;
}

/* A few file reads, against ~20 ms for `runc state` (a Go binary), on the claim path; the
 * runtime is asked only when the pid says no (a paused or re-created container). */
static int oci_alive(struct bh_runtime *rt, const char *id, int pid)
{
    if (oci_pid_in_container(pid, id))
        return 1;
    struct bh_runtime_state st;
    struct bh_err err;
    return bh_runc_state(oci_runc(rt), id, &st, &err) == 0 &&
           (strcmp(st.status, "running") == 0 || strcmp(st.status, "paused") == 0);
}

static int oci_kill(struct bh_runtime *rt, const char *id, int sig, struct bh_err *err)
{
    return bh_runc_kill(oci_runc(rt), id, sig, err);
}

static int oci_delete(struct bh_runtime *rt, const char *id, struct bh_err *err)
{
    return bh_runc_delete(oci_runc(rt), id, err);
}

static int oci_pause(struct bh_runtime *rt, const char *id, struct bh_err *err)
{
    return bh_runc_pause(oci_runc(rt), id, err);
}

static int oci_resume(struct bh_runtime *rt, const char *id, struct bh_err *err)
{
    return bh_runc_resume(oci_runc(rt), id, err);
}

static int oci_exec(struct bh_runtime *rt, const char *id, char *const *argv, int timeout_ms,
                    struct bh_proc_result *res, struct bh_err *err)
{
    return bh_runc_exec(oci_runc(rt), id, argv, timeout_ms, res, err);
}

static long long oci_read_ll(const char *path, const char *fmt)
{
    FILE *f = fopen(path, "re");
    long long v = -1;
    if (f) {
        if (fscanf(f, fmt, &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

/* CPU nanoseconds used by the container's cgroup (v1 cpuacct, or v2 cpu.stat). */
static long long oci_cpu_ns(const char *id)
{
    bh_autofree char *cgroup = oci_cgroup(id);
    bh_autofree char *v1 = bh_xasprintf("/sys/fs/cgroup/cpuacct%s/cpuacct.usage", cgroup);
    long long ns = oci_read_ll(v1, "%lld");
    if (ns >= 0)
        return ns;
    bh_autofree char *v2 = bh_xasprintf("/sys/fs/cgroup%s/cpu.stat", cgroup);
    long long usec = oci_read_ll(v2, "usage_usec %lld");
    return usec >= 0 ? usec * 1000 : -1;
}

/* Memory charged to the container's cgroup and its limit (v1 memory controller, or v2);
 * a limit above 2^60 is v1's "unlimited". */
static void oci_memory(const char *id, long long *used, long long *limit)
{
    bh_autofree char *cgroup = oci_cgroup(id);
    bh_autofree char *v1 = bh_xasprintf("/sys/fs/cgroup/memory%s/memory.usage_in_bytes", cgroup);
    bh_autofree char *v1max = bh_xasprintf("/sys/fs/cgroup/memory%s/memory.limit_in_bytes", cgroup);
    bh_autofree char *v2 = bh_xasprintf("/sys/fs/cgroup%s/memory.current", cgroup);
    bh_autofree char *v2max = bh_xasprintf("/sys/fs/cgroup%s/memory.max", cgroup);
    *used = oci_read_ll(v1, "%lld");
    *limit = oci_read_ll(v1max, "%lld");
    if (*used < 0) {
        *used = oci_read_ll(v2, "%lld");
        *limit = oci_read_ll(v2max, "%lld"); /* "max" does not parse: unlimited */
    }
    if (*limit >= (1LL << 60))
        *limit = -1;
}

/* rx+tx bytes of every interface but lo in the network namespace of pid. */
static long long oci_net_bytes(int pid)
{
    bh_autofree char *path = bh_xasprintf("/proc/%d/net/dev", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    char line[512];
    long long total = 0;
    while (fgets(line, sizeof(line), f)) {
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        *colon = '\0';
        const char *name = line + strspn(line, " ");
        unsigned long long rx = 0, tx = 0, skip;
        if (strcmp(name, "lo") == 0 ||
            sscanf(colon + 1, "%llu %llu %llu %llu %llu %llu %llu %llu %llu", &rx, &skip, &skip,
                   &skip, &skip, &skip, &skip, &skip, &tx) != 9)
            continue;
        total += (long long)(rx + tx);
    }
    fclose(f);
    return total;
}

static int oci_stats(struct bh_runtime *rt, const char *id, int pid, struct bh_runtime_stats *st,
                     struct bh_err *err)
{
    st->cpu_ns = oci_cpu_ns(id);
    st->net_bytes = oci_net_bytes(pid);
    oci_memory(id, &st->mem_bytes, &st->mem_limit);
    return 0;
}

static char *oci_netns_path(struct bh_runtime *rt, const char *id, int pid)
{
    return bh_xasprintf("/proc/%d/ns/net", pid);
}

static int oci_list(struct bh_runtime *rt, char ***ids, struct bh_err *err)
{
    return bh_runc_list(oci_runc(rt), ids, err);
}

static void oci_close(struct bh_runtime *rt)
{
    bh_runc_close(oci_runc(rt));
    free(rt);
}

static const struct bh_runtime_ops oci_ops = {
    .rootfs_prepare = oci_rootfs_prepare,
    .rootfs_release = oci_rootfs_release,
    .create = oci_create,
    .start = oci_start,
    .state = oci_state,
    .alive = oci_alive,
    .kill = oci_kill,
    .delete = oci_delete,
    .pause = oci_pause,
    .resume = oci_resume,
    .exec = oci_exec,
    .stats = oci_stats,
    .netns_path = oci_netns_path,
    .list = oci_list,
    .close = oci_close,
};

/* runc gives every container a session keyring of its own, charged to the host uid the
 * container's root maps to. Every instance maps to the same uid base, so the kernel's default
 * per-user key quota (kernel.keys.maxkeys 200, maxbytes 20000) refuses the ~197th instance
 * with EDQUOT ("disk quota exceeded"). The quota is raised to a floor that fits thousands of
 * instances, never lowered. */
#define OCI_KEYS_FLOOR 20000L
#define OCI_KEY_BYTES_FLOOR (OCI_KEYS_FLOOR * 100L)

static void oci_raise_sysctl(const char *path, long floor)
{
    long now = 0;
    FILE *f = fopen(path, "r");
    int known = f && fscanf(f, "%ld", &now) == 1;
    if (f)
        fclose(f);
    if (known && now >= floor)
        return;
    f = fopen(path, "w");
    int ok = f && fprintf(f, "%ld\n", floor) > 0;
    if (f && fclose(f) != 0)
        ok = 0;
    if (ok)
        bh_info("runtime", "%s raised from %ld to %ld (a session keyring per instance)", path, now,
                floor);
    else
        bh_warn("runtime",
                "cannot raise %s (%ld) to %ld: instances past that many keys will fail "
                "to start with 'disk quota exceeded'",
                path, now, floor);
}

int bh_runtime_oci_open(const char *root_dir, const char *prefer, struct bh_runtime **out,
                        struct bh_err *err)
{
    struct bh_runc *runc = NULL;
    if (bh_runc_open(root_dir, prefer, &runc, err) < 0)
        return -1;
    oci_raise_sysctl("/proc/sys/kernel/keys/maxkeys", OCI_KEYS_FLOOR);
    oci_raise_sysctl("/proc/sys/kernel/keys/maxbytes", OCI_KEY_BYTES_FLOOR);
    struct oci_runtime *rt = bh_xcalloc(1, sizeof(*rt));
    rt->base.ops = &oci_ops;
    rt->base.name = bh_runc_name(runc);
    rt->runc = runc;
    *out = &rt->base;
    return 0;
}
