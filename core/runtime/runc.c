/* The runc/crun CLI driver. Every call runs the runtime binary through bh_proc_run (argv, no
 * shell) with a timeout, `--root <root_dir>` and a JSON `--log` per container: with --log the
 * runtime writes its errors there rather than to stderr (and a container's stderr is its log
 * file anyway), so error messages are built from what the call appended to that log. */
#include "runc.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs.h"
#include "log.h"
#include "mem.h"
#include "oci_config.h"
#include "proc.h"

#define RT_TIMEOUT_MS 30000
#define RT_LOG_TAIL 16384
#define RT_MAX_ARGS 64

struct bh_runc {
    char *root; /* owned: the runtime's --root */
    char *bin;  /* owned: absolute path of the runtime binary */
    char name[8];
};

/* ---- binary lookup and auto-detection ---- */

static char *rt_find_binary(const char *name)
{
    static const char *const dirs[] = {"/usr/local/sbin", "/usr/local/bin", "/usr/sbin",
                                       "/usr/bin",        "/sbin",          "/bin"};
    for (size_t i = 0; i < BH_ARRAY_LEN(dirs); i++) {
        char *p = bh_xasprintf("%s/%s", dirs[i], name);
        if (access(p, X_OK) == 0)
            return p;
        free(p);
    }
    return NULL;
}

/* ---- running the runtime ---- */

static char *rt_log_path(const struct bh_runc *rt, const char *id)
{
    return bh_xasprintf("%s/%s.log", rt->root, id ? id : "runtime");
}

static off_t rt_file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : 0;
}

/* The msg of the last error line the runtime appended to its JSON log after offset `from`. */
static char *rt_log_error(const char *log_path, off_t from)
{
    bh_autoclose int fd = open(log_path, O_RDONLY | O_CLOEXEC);
    off_t size = rt_file_size(log_path);
    if (fd < 0 || size <= from)
        return NULL;
    if (size - from > RT_LOG_TAIL)
        from = size - RT_LOG_TAIL;
    bh_autofree char *buf = bh_xmalloc((size_t)(size - from) + 1);
    ssize_t n = pread(fd, buf, (size_t)(size - from), from);
    if (n <= 0)
        return NULL;
    buf[n] = '\0';
    char *found = NULL;
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *lvl = cJSON_GetObjectItemCaseSensitive(j, "level");
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(j, "msg");
        if (cJSON_IsString(lvl) && cJSON_IsString(msg) && strcmp(lvl->valuestring, "error") == 0) {
            free(found);
            found = bh_xstrdup(msg->valuestring);
        }
        cJSON_Delete(j);
    }
    return found;
}

static void rt_trim(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = '\0';
}

struct rt_call {
    const char *id; /* container the call is about, or NULL */
    int stdout_fd;  /* -1: capture */
    int timeout_ms; /* 0: RT_TIMEOUT_MS */
    char *errmsg;   /* owned, set when the runtime exited non-zero */
    int logged;     /* errmsg came from the runtime's log, i.e. the runtime itself failed */
};

/* IDs go on the runtime's command line and name its state directory: [a-z0-9-], not starting
 * with '-' so that no id can be taken for an option. */
static int rt_valid_id(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > 64 || id[0] == '-')
        return 0;
    return strspn(id, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

/* Runs `<bin> --root R --log L --log-format json <args...>`. Returns 0 if it ran (exit code in
 * res, reason in call->errmsg when non-zero), -1 if it could not run or timed out. */
static int rt_exec(struct bh_runc *rt, struct rt_call *call, const char *const *args,
                   struct bh_proc_result *res, struct bh_err *err)
{
    memset(res, 0, sizeof(*res));
    if (call->id && !rt_valid_id(call->id))
        return bh_err_set(err, BH_EINVAL, "invalid container id \"%.64s\"", call->id);
    bh_autofree char *log = rt_log_path(rt, call->id);
    const char *argv[RT_MAX_ARGS] = {rt->bin, "--root",       rt->root, "--log",
                                     log,     "--log-format", "json"};
    size_t n = 7;
    for (size_t i = 0; args[i] && n < RT_MAX_ARGS - 1; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    struct bh_proc_opts o = {.stdout_fd = call->stdout_fd,
                             .timeout_ms = call->timeout_ms ? call->timeout_ms : RT_TIMEOUT_MS};
    off_t before = rt_file_size(log);
    if (bh_proc_run(argv, &o, res, err) < 0)
        return bh_err_wrap(err, "%s %s", rt->name, args[0]);
    if (res->exit_code == 0)
        return 0;
    call->errmsg = rt_log_error(log, before);
    call->logged = call->errmsg != NULL;
    if (!call->errmsg) {
        rt_trim(res->errout);
        call->errmsg = bh_xasprintf("exit status %d%s%s", res->exit_code,
                                    res->errout[0] ? ": " : "", res->errout);
    }
    return 0;
}

/* runc says "container does not exist"; crun fails to open the id's state directory. */
static int rt_is_not_found(const struct bh_runc *rt, const char *id, const char *msg)
{
    if (!msg || !id)
        return 0;
    if (strstr(msg, "does not exist"))
        return 1;
    bh_autofree char *state_dir = bh_xasprintf("%s/%s", rt->root, id);
    return strstr(msg, state_dir) && strstr(msg, "No such file or directory");
}

/* Runs a runtime command whose only interesting result is success; unknown ids become
 * BH_ENOTFOUND. */
static int rt_simple(struct bh_runc *rt, const char *id, const char *const *args,
                     struct bh_err *err)
{
    struct rt_call call = {.id = id, .stdout_fd = -1};
    struct bh_proc_result res;
    int rc = rt_exec(rt, &call, args, &res, err);
    if (rc == 0 && res.exit_code != 0) {
        int code = rt_is_not_found(rt, id, call.errmsg) ? BH_ENOTFOUND : BH_EIO;
        rc = bh_err_set(err, code, "%s %s %s: %s", rt->name, args[0], id, call.errmsg);
    }
    free(call.errmsg);
    bh_proc_result_free(&res);
    return rc;
}

/* ---- auto-detection ---- */

/* A minimal bundle whose rootfs borrows the host's /usr read-only, so that the probe needs no
 * image; `create` exercises everything that can fail here (user namespace, cgroups, mounts). */
static int rt_probe_bundle(const char *dir, struct bh_err *err)
{
    /* Container root maps to an unprivileged uid that cannot create mount points. */
    static const char *const mountpoints[] = {"usr", "proc", "dev", "sys", "tmp"};
    bh_autofree char *rootfs = bh_xasprintf("%s/rootfs", dir);
    for (size_t i = 0; i < BH_ARRAY_LEN(mountpoints); i++) {
        bh_autofree char *mp = bh_xasprintf("%s/%s", rootfs, mountpoints[i]);
        if (bh_fs_mkdirp(mp, 0755, err) < 0)
            return -1;
    }
    bh_autofree char *bin = bh_xasprintf("%s/bin", rootfs);
    if (symlink("usr/bin", bin) < 0)
        return bh_err_errno(err, BH_EIO, "symlink %s", bin);
    char *const args[] = {"/bin/true", NULL}, *const env[] = {NULL};
    bh_autofree char *cg = bh_xasprintf("/boilerhouse-probe-%d", (int)getpid());
    struct bh_oci_params p = {.rootfs = rootfs,
                              .args = args,
                              .env = env,
                              .uid_base = 65534,
                              .uid_size = 1,
                              .cgroup_path = cg};
    cJSON *c = bh_oci_config_build(&p);
    static const char *const opts[] = {"rbind", "ro", "nosuid", "nodev", NULL};
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "destination", "/usr");
    cJSON_AddStringToObject(m, "type", "none");
    cJSON_AddStringToObject(m, "source", "/usr");
    cJSON_AddItemToObject(m, "options", cJSON_CreateStringArray(opts, 4));
    cJSON_AddItemToArray(cJSON_GetObjectItem(c, "mounts"), m);
    bh_autofree char *json = cJSON_PrintUnformatted(c);
    cJSON_Delete(c);
    bh_autofree char *path = bh_xasprintf("%s/config.json", dir);
    return bh_fs_write_atomic(path, json, strlen(json), 0644, err);
}

/* True if rt can create (and delete) a container here. */
static int rt_probe(struct bh_runc *rt)
{
    struct bh_err err = {0};
    bh_autofree char *id = bh_xasprintf("bh-probe-%d", (int)getpid());
    /* Beside the root, not in it: the runtime keeps a directory per container id there. */
    bh_autofree char *dir = bh_xasprintf("%s.%s", rt->root, id);
    bh_autofree char *log = bh_xasprintf("%s/%s.out", rt->root, id);
    int ok = rt_probe_bundle(dir, &err) == 0 && bh_runc_create(rt, id, dir, log, &err) == 0;
    if (!ok)
        bh_info("runtime", "%s cannot run containers here: %s", rt->name, err.msg);
    bh_runc_delete(rt, id, &err);
    BH_IGNORE(bh_fs_rmtree(dir, &err)); /* the probe's bundle: a leftover costs space only */
    unlink(log);
    return ok;
}

static pthread_mutex_t rt_detect_lock = PTHREAD_MUTEX_INITIALIZER;
static char rt_detected[8]; /* cached auto-detection result, "" until probed */

/* crun first: a C program, no Go runtime started per call. Measured here (docs/benchmarks.md,
 * stop 22) its create took 34 ms p50 against runc's 42.5, and ten cold boots at once 165-170
 * ms p50 against 285-317. It refuses some hosts (hybrid cgroups whose cgroup2 side holds a
 * controller): runc then. */
static int rt_detect(struct bh_runc *rt, struct bh_err *err)
{
    static const char *const candidates[] = {"crun", "runc"};
    pthread_mutex_lock(&rt_detect_lock);
    for (size_t i = 0; !rt_detected[0] && i < BH_ARRAY_LEN(candidates); i++) {
        bh_autofree char *bin = rt_find_binary(candidates[i]);
        if (!bin)
            continue;
        snprintf(rt->name, sizeof(rt->name), "%s", candidates[i]);
        rt->bin = BH_STEAL(bin);
        if (rt_probe(rt))
            snprintf(rt_detected, sizeof(rt_detected), "%s", candidates[i]);
        free(rt->bin);
        rt->bin = NULL;
    }
    snprintf(rt->name, sizeof(rt->name), "%s", rt_detected);
    pthread_mutex_unlock(&rt_detect_lock);
    if (!rt->name[0])
        return bh_err_set(err, BH_EUNAVAIL,
                          "no OCI runtime (runc, crun) can run containers "
                          "on this host");
    rt->bin = rt_find_binary(rt->name);
    return 0;
}

/* ---- public API ---- */

int bh_runc_open(const char *root_dir, const char *prefer, struct bh_runc **out, struct bh_err *err)
{
    if (prefer && strcmp(prefer, "runc") != 0 && strcmp(prefer, "crun") != 0)
        return bh_err_set(err, BH_EINVAL, "unknown OCI runtime \"%s\" (runc or crun)", prefer);
    if (bh_fs_mkdirp(root_dir, 0700, err) < 0)
        return -1;
    struct bh_runc *rt = bh_xcalloc(1, sizeof(*rt));
    rt->root = bh_xstrdup(root_dir);
    int rc = 0;
    if (prefer) {
        snprintf(rt->name, sizeof(rt->name), "%s", prefer);
        rt->bin = rt_find_binary(prefer);
        if (!rt->bin)
            rc = bh_err_set(err, BH_EUNAVAIL, "OCI runtime %s is not installed", prefer);
    } else {
        rc = rt_detect(rt, err);
    }
    if (rc < 0) {
        bh_runc_close(rt);
        return -1;
    }
    *out = rt;
    return 0;
}

void bh_runc_close(struct bh_runc *rt)
{
    if (!rt)
        return;
    free(rt->root);
    free(rt->bin);
    free(rt);
}

const char *bh_runc_name(const struct bh_runc *rt)
{
    return rt->name;
}

int bh_runc_create(struct bh_runc *rt, const char *id, const char *bundle, const char *log_path,
                   struct bh_err *err)
{
    bh_autoclose int fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return bh_err_errno(err, BH_EIO, "open container log %s", log_path);
    bh_autofree char *pidfile = bh_xasprintf("%s/pid", bundle);
    const char *args[] = {"create", "--bundle", bundle, "--pid-file", pidfile, id, NULL};
    struct rt_call call = {.id = id, .stdout_fd = fd};
    struct bh_proc_result res;
    int rc = rt_exec(rt, &call, args, &res, err);
    if (rc == 0 && res.exit_code != 0)
        rc = bh_err_set(err, BH_EIO, "%s create %s: %s", rt->name, id, call.errmsg);
    free(call.errmsg);
    bh_proc_result_free(&res);
    return rc;
}

int bh_runc_start(struct bh_runc *rt, const char *id, struct bh_err *err)
{
    const char *args[] = {"start", id, NULL};
    return rt_simple(rt, id, args, err);
}

static int rt_parse_state(const char *json, struct bh_runtime_state *st, struct bh_err *err)
{
    cJSON *j = cJSON_Parse(json);
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(j, "status");
    const cJSON *pid = cJSON_GetObjectItemCaseSensitive(j, "pid");
    int rc = 0;
    if (!cJSON_IsString(status) || !cJSON_IsNumber(pid))
        rc = bh_err_set(err, BH_EIO, "cannot parse runtime state: %.200s", json);
    else {
        snprintf(st->status, sizeof(st->status), "%s", status->valuestring);
        st->pid = pid->valueint;
    }
    cJSON_Delete(j);
    return rc;
}

int bh_runc_state(struct bh_runc *rt, const char *id, struct bh_runtime_state *st,
                  struct bh_err *err)
{
    const char *args[] = {"state", id, NULL};
    struct rt_call call = {.id = id, .stdout_fd = -1};
    struct bh_proc_result res;
    int rc = rt_exec(rt, &call, args, &res, err);
    if (rc == 0 && res.exit_code != 0) {
        int code = rt_is_not_found(rt, id, call.errmsg) ? BH_ENOTFOUND : BH_EIO;
        rc = bh_err_set(err, code, "%s state %s: %s", rt->name, id, call.errmsg);
    } else if (rc == 0) {
        rc = rt_parse_state(res.out, st, err);
    }
    free(call.errmsg);
    bh_proc_result_free(&res);
    return rc;
}

int bh_runc_kill(struct bh_runc *rt, const char *id, int sig, struct bh_err *err)
{
    char signum[16];
    snprintf(signum, sizeof(signum), "%d", sig);
    const char *args[] = {"kill", id, signum, NULL};
    return rt_simple(rt, id, args, err);
}

int bh_runc_delete(struct bh_runc *rt, const char *id, struct bh_err *err)
{
    const char *args[] = {"delete", "--force", id, NULL};
    struct bh_err e = {0};
    if (rt_simple(rt, id, args, &e) < 0 && e.code != BH_ENOTFOUND) {
        *err = e;
        return -1;
    }
    bh_autofree char *log = rt_log_path(rt, id);
    unlink(log);
    return 0;
}

int bh_runc_pause(struct bh_runc *rt, const char *id, struct bh_err *err)
{
    const char *args[] = {"pause", id, NULL};
    return rt_simple(rt, id, args, err);
}

int bh_runc_resume(struct bh_runc *rt, const char *id, struct bh_err *err)
{
    const char *args[] = {"resume", id, NULL};
    return rt_simple(rt, id, args, err);
}

/* On timeout the runtime's exec client is killed, but the process it started lives on inside
 * the container; kill that one too through the pid file. */
static void rt_kill_pidfile(const char *pidfile)
{
    char *data = NULL;
    size_t len = 0;
    struct bh_err e;
    if (bh_fs_read_all(pidfile, 64, &data, &len, &e) == 0 && atoi(data) > 0)
        kill(atoi(data), SIGKILL);
    free(data);
}

/* crun before 1.9 joins the namespaces of a container whose PID 1 has not yet exec'd the
 * workload (just after start) with one setns that the kernel refuses (crun issue 1264); it
 * fails before starting anything, so the exec is safe to try again once that exec is done. */
static int rt_exec_raced_start(const struct bh_runc *rt, const struct rt_call *call)
{
    return call->logged && strcmp(rt->name, "crun") == 0 && strstr(call->errmsg, "setns(") &&
           strstr(call->errmsg, "Operation not permitted");
}

#define RT_EXEC_RACE_TRIES 8 /* waits of 2, 4, ... 256 ms: half a second in all */

int bh_runc_exec(struct bh_runc *rt, const char *id, char *const *argv, int timeout_ms,
                 struct bh_proc_result *res, struct bh_err *err)
{
    static atomic_uint seq;
    memset(res, 0, sizeof(*res)); /* callers free res on every path */
    bh_autofree char *pidfile =
        bh_xasprintf("%s/%s.exec-%u.pid", rt->root, id, atomic_fetch_add(&seq, 1));
    const char *args[RT_MAX_ARGS] = {"exec", "--pid-file", pidfile, id};
    size_t n = 4;
    for (size_t i = 0; argv[i]; i++) {
        if (n >= RT_MAX_ARGS - 8)
            return bh_err_set(err, BH_EINVAL, "exec: too many arguments");
        args[n++] = argv[i];
    }
    args[n] = NULL;
    struct rt_call call = {.id = id, .stdout_fd = -1, .timeout_ms = timeout_ms};
    int rc = rt_exec(rt, &call, args, res, err);
    for (int i = 1; rc == 0 && i <= RT_EXEC_RACE_TRIES && rt_exec_raced_start(rt, &call); i++) {
        bh_proc_result_free(res);
        free(call.errmsg);
        call = (struct rt_call){.id = id, .stdout_fd = -1, .timeout_ms = timeout_ms};
        usleep((useconds_t)(1000u << i));
        rc = rt_exec(rt, &call, args, res, err);
    }
    if (rc < 0 && err && err->code == BH_ETIMEOUT)
        rt_kill_pidfile(pidfile);
    unlink(pidfile);
    /* A non-zero exit of the program itself is a result; the runtime failing to start it is
     * an error, and only then does the runtime write to its log. */
    if (rc == 0 && call.logged) {
        int code = rt_is_not_found(rt, id, call.errmsg) ? BH_ENOTFOUND : BH_EIO;
        rc = bh_err_set(err, code, "%s exec %s: %s", rt->name, id, call.errmsg);
        bh_proc_result_free(res);
    }
    free(call.errmsg);
    return rc;
}

static int rt_parse_list(const char *json, char ***ids, struct bh_err *err)
{
    cJSON *j = cJSON_Parse(json);
    if (!j || (!cJSON_IsArray(j) && !cJSON_IsNull(j))) {
        cJSON_Delete(j);
        return bh_err_set(err, BH_EIO, "cannot parse runtime list: %.200s", json);
    }
    int n = cJSON_IsArray(j) ? cJSON_GetArraySize(j) : 0;
    char **v = bh_xcalloc((size_t)n + 1, sizeof(*v));
    size_t k = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, j) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        if (cJSON_IsString(id))
            v[k++] = bh_xstrdup(id->valuestring);
    }
    cJSON_Delete(j);
    *ids = v;
    return 0;
}

int bh_runc_list(struct bh_runc *rt, char ***ids, struct bh_err *err)
{
    const char *args[] = {"list", "--format", "json", NULL};
    struct rt_call call = {.stdout_fd = -1};
    struct bh_proc_result res;
    int rc = rt_exec(rt, &call, args, &res, err);
    if (rc == 0 && res.exit_code != 0)
        rc = bh_err_set(err, BH_EIO, "%s list: %s", rt->name, call.errmsg);
    else if (rc == 0)
        rc = rt_parse_list(res.out, ids, err);
    free(call.errmsg);
    bh_proc_result_free(&res);
    return rc;
}
