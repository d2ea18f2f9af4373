/* config.json generation and process resolution (image config + workload entrypoint). */
#include "oci_config.h"

#include <stdlib.h>
#include <string.h>

#include "etc_files.h"
#include "runtime.h"
#include "mem.h"

#define OCI_CPU_PERIOD 100000
#define OCI_DEFAULT_PIDS 512
#define OCI_DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

struct oci_mount {
    const char *dest, *type, *source;
    const char *opts[6];
};

/* A fresh sysfs (allowed because the container's user namespace owns its network namespace)
 * shows only the container's own network devices, unlike a bind of the host's /sys. */
static const struct oci_mount oci_mounts[] = {
    {"/proc", "proc", "proc", {NULL}},
    {"/dev", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k", NULL}},
    {"/dev/pts",
     "devpts",
     "devpts",
     {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", NULL}},
    {"/dev/shm", "tmpfs", "shm", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k", NULL}},
    {"/dev/mqueue", "mqueue", "mqueue", {"nosuid", "noexec", "nodev", NULL}},
    {"/sys", "sysfs", "sysfs", {"nosuid", "noexec", "nodev", "ro", NULL}},
    {"/tmp", "tmpfs", "tmpfs", {"nosuid", "nodev", "mode=1777", "size=262144k", NULL}},
};

static const char *const oci_namespaces[] = {"pid",     "ipc",  "uts",   "mount",
                                             "network", "user", "cgroup"};

static const char *const oci_masked[] = {"/proc/acpi",
                                         "/proc/asound",
                                         "/proc/kcore",
                                         "/proc/keys",
                                         "/proc/latency_stats",
                                         "/proc/timer_list",
                                         "/proc/timer_stats",
                                         "/proc/sched_debug",
                                         "/proc/scsi",
                                         "/sys/firmware",
                                         "/sys/devices/virtual/powercap"};

static const char *const oci_readonly[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                           "/proc/sysrq-trigger"};

/* Syscalls that act on the whole kernel or escape the container's namespaces; none is needed
 * by an ordinary service. The filter is installed right before exec, so denying mount and
 * pivot_root does not hinder the runtime's own setup. */
static const char *const oci_denied_syscalls[] = {"kexec_load",
                                                  "kexec_file_load",
                                                  "init_module",
                                                  "finit_module",
                                                  "delete_module",
                                                  "reboot",
                                                  "swapon",
                                                  "swapoff",
                                                  "open_by_handle_at",
                                                  "name_to_handle_at",
                                                  "bpf",
                                                  "perf_event_open",
                                                  "userfaultfd",
                                                  "keyctl",
                                                  "add_key",
                                                  "request_key",
                                                  "ptrace",
                                                  "acct",
                                                  "settimeofday",
                                                  "clock_settime",
                                                  "adjtimex",
                                                  "syslog",
                                                  "quotactl",
                                                  "pivot_root",
                                                  "unshare",
                                                  "setns",
                                                  "lookup_dcookie",
                                                  "vhangup",
                                                  "iopl",
                                                  "ioperm",
                                                  "mount",
                                                  "umount2"};

static const char *const oci_seccomp_arches[] = {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86",
                                                 "SCMP_ARCH_X32"};

struct oci_device {
    char type;
    int major, minor; /* minor -1: every minor of major */
};

/* The character devices runc creates in /dev plus the pty multiplexer and slaves. */
static const struct oci_device oci_devices[] = {{'c', 1, 3}, {'c', 1, 5},   {'c', 1, 7},
                                                {'c', 1, 8}, {'c', 1, 9},   {'c', 5, 0},
                                                {'c', 5, 2}, {'c', 136, -1}};

static cJSON *oci_strings(const char *const *v, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < n && v[i]; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(v[i]));
    return a;
}

static size_t oci_strv_len(char *const *v)
{
    size_t n = 0;
    while (v && v[n])
        n++;
    return n;
}

static cJSON *oci_process(const struct bh_oci_params *p)
{
    cJSON *proc = cJSON_CreateObject();
    cJSON_AddBoolToObject(proc, "terminal", 0);
    cJSON *user = cJSON_AddObjectToObject(proc, "user");
    cJSON_AddNumberToObject(user, "uid", 0);
    cJSON_AddNumberToObject(user, "gid", 0);
    cJSON_AddItemToObject(proc, "args",
                          oci_strings((const char *const *)p->args, oci_strv_len(p->args)));
    cJSON_AddItemToObject(proc, "env",
                          oci_strings((const char *const *)p->env, oci_strv_len(p->env)));
    cJSON_AddStringToObject(proc, "cwd", p->cwd ? p->cwd : "/");
    cJSON_AddBoolToObject(proc, "noNewPrivileges", 1);
    static const char *const sets[] = {"bounding", "effective", "inheritable", "permitted",
                                       "ambient"};
    cJSON *caps = cJSON_AddObjectToObject(proc, "capabilities");
    for (size_t i = 0; i < BH_ARRAY_LEN(sets); i++)
        cJSON_AddItemToObject(caps, sets[i], cJSON_CreateArray());
    cJSON *rl = cJSON_CreateObject();
    cJSON_AddStringToObject(rl, "type", "RLIMIT_NOFILE");
    cJSON_AddNumberToObject(rl, "hard", 1024);
    cJSON_AddNumberToObject(rl, "soft", 1024);
    cJSON_AddItemToArray(cJSON_AddArrayToObject(proc, "rlimits"), rl);
    return proc;
}

static cJSON *oci_mount_json(const char *dest, const char *type, const char *source,
                             const char *const *opts)
{
    size_t n = 0;
    while (opts[n])
        n++;
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "destination", dest);
    cJSON_AddStringToObject(m, "type", type);
    cJSON_AddStringToObject(m, "source", source);
    cJSON_AddItemToObject(m, "options", oci_strings(opts, n));
    return m;
}

static cJSON *oci_mounts_json(const struct bh_oci_params *p)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < BH_ARRAY_LEN(oci_mounts); i++) {
        const struct oci_mount *m = &oci_mounts[i];
        cJSON_AddItemToArray(a, oci_mount_json(m->dest, m->type, m->source, m->opts));
    }
    if (p->socket_dir) {
        static const char *const opts[] = {"rbind", "rw", "nosuid", "nodev", NULL};
        cJSON_AddItemToArray(a, oci_mount_json("/run/boilerhouse", "none", p->socket_dir, opts));
    }
    if (p->api_dir) { /* the daemon writes the claim's token here; the instance only reads */
        static const char *const opts[] = {"bind", "ro", "nosuid", "nodev", "noexec", NULL};
        cJSON_AddItemToArray(a, oci_mount_json(BH_RUNTIME_API_DIR, "none", p->api_dir, opts));
    }
    if (p->api_dir && p->api_socket) {
        static const char *const opts[] = {"bind", "nosuid", "nodev", "noexec", NULL};
        cJSON_AddItemToArray(
            a, oci_mount_json(BH_RUNTIME_API_DIR "/api.sock", "none", p->api_socket, opts));
    }
    for (size_t i = 0; p->etc_dir && i < p->n_etc_files && i < BH_ETC_N_FILES; i++) {
        static const char *const opts[] = {"bind", "ro", "nosuid", "nodev", "noexec", NULL};
        bh_autofree char *src = bh_xasprintf("%s/%s", p->etc_dir, bh_etc_files[i]);
        bh_autofree char *dest = bh_xasprintf("/etc/%s", bh_etc_files[i]);
        cJSON_AddItemToArray(a, oci_mount_json(dest, "none", src, opts));
    }
    return a;
}

static cJSON *oci_id_mapping(uint32_t base, uint32_t size)
{
    cJSON *m = cJSON_CreateObject();
    cJSON_AddNumberToObject(m, "containerID", 0);
    cJSON_AddNumberToObject(m, "hostID", base);
    cJSON_AddNumberToObject(m, "size", size);
    cJSON *a = cJSON_CreateArray();
    cJSON_AddItemToArray(a, m);
    return a;
}

static cJSON *oci_devices_json(void)
{
    cJSON *a = cJSON_CreateArray();
    cJSON *deny = cJSON_CreateObject();
    cJSON_AddBoolToObject(deny, "allow", 0);
    cJSON_AddStringToObject(deny, "access", "rwm");
    cJSON_AddItemToArray(a, deny);
    for (size_t i = 0; i < BH_ARRAY_LEN(oci_devices); i++) {
        const struct oci_device *d = &oci_devices[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddBoolToObject(o, "allow", 1);
        char type[2] = {d->type, '\0'};
        cJSON_AddStringToObject(o, "type", type);
        cJSON_AddNumberToObject(o, "major", d->major);
        /* The runtime spec's wildcard is an absent number: runc also reads -1 as one, but
         * crun writes it into devices.allow as is ("c 136:-1"), which the kernel refuses. */
        if (d->minor >= 0)
            cJSON_AddNumberToObject(o, "minor", d->minor);
        cJSON_AddStringToObject(o, "access", "rwm");
        cJSON_AddItemToArray(a, o);
    }
    return a;
}

static cJSON *oci_resources(const struct bh_oci_params *p)
{
    cJSON *r = cJSON_CreateObject();
    cJSON_AddItemToObject(r, "devices", oci_devices_json());
    if (p->vcpus > 0) {
        cJSON *cpu = cJSON_AddObjectToObject(r, "cpu");
        cJSON_AddNumberToObject(cpu, "period", OCI_CPU_PERIOD);
        cJSON_AddNumberToObject(cpu, "quota", (double)(long long)(p->vcpus * OCI_CPU_PERIOD));
    }
    if (p->memory_mb > 0) {
        double bytes = (double)p->memory_mb * 1024 * 1024;
        cJSON *mem = cJSON_AddObjectToObject(r, "memory");
        cJSON_AddNumberToObject(mem, "limit", bytes);
        cJSON_AddNumberToObject(mem, "swap", bytes);
    }
    cJSON *pids = cJSON_AddObjectToObject(r, "pids");
    cJSON_AddNumberToObject(pids, "limit", p->pids_limit > 0 ? p->pids_limit : OCI_DEFAULT_PIDS);
    return r;
}

static cJSON *oci_seccomp(void)
{
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "defaultAction", "SCMP_ACT_ALLOW");
    cJSON_AddItemToObject(s, "architectures",
                          oci_strings(oci_seccomp_arches, BH_ARRAY_LEN(oci_seccomp_arches)));
    cJSON *rule = cJSON_CreateObject();
    cJSON_AddItemToObject(rule, "names",
                          oci_strings(oci_denied_syscalls, BH_ARRAY_LEN(oci_denied_syscalls)));
    cJSON_AddStringToObject(rule, "action", "SCMP_ACT_ERRNO");
    cJSON_AddNumberToObject(rule, "errnoRet", 1);
    cJSON_AddItemToArray(cJSON_AddArrayToObject(s, "syscalls"), rule);
    return s;
}

static cJSON *oci_linux(const struct bh_oci_params *p)
{
    cJSON *l = cJSON_CreateObject();
    cJSON *ns = cJSON_AddArrayToObject(l, "namespaces");
    for (size_t i = 0; i < BH_ARRAY_LEN(oci_namespaces); i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", oci_namespaces[i]);
        cJSON_AddItemToArray(ns, o);
    }
    cJSON_AddItemToObject(l, "uidMappings", oci_id_mapping(p->uid_base, p->uid_size));
    cJSON_AddItemToObject(l, "gidMappings", oci_id_mapping(p->uid_base, p->uid_size));
    cJSON_AddItemToObject(l, "resources", oci_resources(p));
    if (p->cgroup_path)
        cJSON_AddStringToObject(l, "cgroupsPath", p->cgroup_path);
    cJSON_AddItemToObject(l, "maskedPaths", oci_strings(oci_masked, BH_ARRAY_LEN(oci_masked)));
    cJSON_AddItemToObject(l, "readonlyPaths",
                          oci_strings(oci_readonly, BH_ARRAY_LEN(oci_readonly)));
    cJSON_AddItemToObject(l, "seccomp", oci_seccomp());
    return l;
}

cJSON *bh_oci_config_build(const struct bh_oci_params *p)
{
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "ociVersion", "1.0.2");
    cJSON_AddItemToObject(c, "process", oci_process(p));
    cJSON *root = cJSON_AddObjectToObject(c, "root");
    cJSON_AddStringToObject(root, "path", p->rootfs);
    cJSON_AddBoolToObject(root, "readonly", 0);
    cJSON_AddStringToObject(c, "hostname", p->hostname ? p->hostname : "boilerhouse");
    cJSON_AddItemToObject(c, "mounts", oci_mounts_json(p));
    cJSON_AddItemToObject(c, "linux", oci_linux(p));
    return c;
}

/* ---- process resolution ---- */

/* A growable NULL-terminated string vector. */
struct oci_strv {
    char **v;
    size_t n;
};

static void oci_strv_push(struct oci_strv *s, char *owned)
{
    s->v = bh_xrealloc(s->v, (s->n + 2) * sizeof(*s->v));
    s->v[s->n++] = owned;
    s->v[s->n] = NULL;
}

/* Appends the string items of a JSON array; non-strings are rejected. */
static int oci_strv_push_array(struct oci_strv *s, const cJSON *a, const char *what,
                               struct bh_err *err)
{
    if (!a || cJSON_IsNull(a))
        return 0;
    if (!cJSON_IsArray(a))
        return bh_err_set(err, BH_EINVAL, "%s must be a list of strings", what);
    const cJSON *it;
    cJSON_ArrayForEach(it, a) {
        if (!cJSON_IsString(it))
            return bh_err_set(err, BH_EINVAL, "%s must be a list of strings", what);
        oci_strv_push(s, bh_xstrdup(it->valuestring));
    }
    return 0;
}

static const cJSON *oci_get(const cJSON *o, const char *key)
{
    return o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
}

static int oci_resolve_args(const cJSON *img, const cJSON *ep, struct oci_strv *args,
                            struct bh_err *err)
{
    const cJSON *cmd = oci_get(ep, "cmd"), *wargs = oci_get(ep, "args");
    if (cmd && !cJSON_IsNull(cmd)) {
        if (!cJSON_IsString(cmd) || !cmd->valuestring[0])
            return bh_err_set(err, BH_EINVAL, "entrypoint.cmd must be a non-empty string");
        oci_strv_push(args, bh_xstrdup(cmd->valuestring));
        return oci_strv_push_array(args, wargs, "entrypoint.args", err);
    }
    if (oci_strv_push_array(args, oci_get(img, "Entrypoint"), "image Entrypoint", err) < 0)
        return -1;
    if (wargs && !cJSON_IsNull(wargs))
        return oci_strv_push_array(args, wargs, "entrypoint.args", err);
    return oci_strv_push_array(args, oci_get(img, "Cmd"), "image Cmd", err);
}

static int oci_env_has(const struct oci_strv *env, const char *k)
{
    size_t klen = strlen(k);
    for (size_t i = 0; i < env->n; i++)
        if (strncmp(env->v[i], k, klen) == 0 && env->v[i][klen] == '=')
            return 1;
    return 0;
}

/* Sets "K=V" in env, replacing an entry with the same key. */
static void oci_env_set(struct oci_strv *env, const char *k, size_t klen, const char *kv)
{
    for (size_t i = 0; i < env->n; i++) {
        if (strncmp(env->v[i], k, klen) == 0 && env->v[i][klen] == '=') {
            free(env->v[i]);
            env->v[i] = bh_xstrdup(kv);
            return;
        }
    }
    oci_strv_push(env, bh_xstrdup(kv));
}

static int oci_resolve_env(const cJSON *img, const cJSON *ep, struct oci_strv *env,
                           struct bh_err *err)
{
    if (oci_strv_push_array(env, oci_get(img, "Env"), "image Env", err) < 0)
        return -1;
    const cJSON *wenv = oci_get(ep, "env");
    if (!wenv || cJSON_IsNull(wenv))
        return 0;
    if (!cJSON_IsObject(wenv))
        return bh_err_set(err, BH_EINVAL, "entrypoint.env must be an object of strings");
    const cJSON *it;
    cJSON_ArrayForEach(it, wenv) {
        if (!cJSON_IsString(it) || !it->string[0] || strchr(it->string, '='))
            return bh_err_set(err, BH_EINVAL, "entrypoint.env: bad entry \"%.64s\"", it->string);
        bh_autofree char *kv = bh_xasprintf("%s=%s", it->string, it->valuestring);
        oci_env_set(env, it->string, strlen(it->string), kv);
    }
    return 0;
}

static const char *oci_resolve_cwd(const cJSON *img, const cJSON *ep)
{
    const cJSON *w = oci_get(ep, "workdir");
    if (cJSON_IsString(w) && w->valuestring[0])
        return w->valuestring;
    w = oci_get(img, "WorkingDir");
    if (cJSON_IsString(w) && w->valuestring[0])
        return w->valuestring;
    return "/";
}

int bh_oci_process_resolve(const cJSON *image_config, const cJSON *entrypoint, char ***args,
                           char ***env, char **cwd, struct bh_err *err)
{
    struct oci_strv a = {0}, e = {0};
    if (oci_resolve_args(image_config, entrypoint, &a, err) < 0 ||
        oci_resolve_env(image_config, entrypoint, &e, err) < 0)
        goto fail;
    if (a.n == 0 || !a.v[0][0]) {
        bh_err_set(err, BH_EINVAL,
                   "no program to run: neither the image nor the workload "
                   "sets an entrypoint or command");
        goto fail;
    }
    /* runc looks a bare program name up in the container's PATH. */
    if (!oci_env_has(&e, "PATH"))
        oci_strv_push(&e, bh_xstrdup("PATH=" OCI_DEFAULT_PATH));
    *args = a.v;
    *env = e.v;
    *cwd = bh_xstrdup(oci_resolve_cwd(image_config, entrypoint));
    return 0;
fail:
    bh_strv_free(a.v);
    bh_strv_free(e.v);
    return -1;
}
