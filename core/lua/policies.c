/* The policy set: the scripts of the policy directory, compiled on first use and recompiled
 * when their file changes (checked on every use: one fstatat), swapped atomically; a version
 * that fails to compile leaves the previous one running and its error on record. Inline guard
 * sources are compiled once and kept by their hash. */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "crypto.h"
#include "fs.h"
#include "json.h"
#include "log.h"
#include "lua_int.h"
#include "mem.h"
#include "store.h"

#define POLICY_MAX_BYTES (256 << 10)
#define POLICY_NAME_MAX 63
/* Run times kept per script for its p99. */
#define POLICY_TIMES 512

/* A compiled version; calls hold a reference so a swap never frees a script in use. */
struct policy_ver {
    struct bh_lua_script *script;
    int refs;
};

struct policy_file {
    char *name; /* file name, or "inline:<hash>" */
    struct policy_ver *ver;
    char hash[17];
    char loaded_at[32];
    char *last_error;
    struct stat seen; /* what the file was when last read */
    int gone;         /* the file was removed: the script no longer applies */
    long long calls, denials, failures;
    unsigned times[POLICY_TIMES];
    unsigned ntimes;
    struct policy_file *next;
};

struct bh_lua_policies {
    char *dir;
    int dirfd;
    struct bh_store *store;
    struct bh_store *kv;
    struct bh_lua_limits limits;
    pthread_mutex_t mu;
    struct policy_file *files;
};

int bh_lua_script_name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";
    return n > 4 && n <= POLICY_NAME_MAX && name[0] != '.' && name[0] != '-' &&
           strspn(name, ok) == n && strcmp(name + n - 4, ".lua") == 0;
}

int bh_lua_policies_open(const char *dir, struct bh_store *store,
                         const struct bh_lua_limits *limits, struct bh_lua_policies **out,
                         struct bh_err *err)
{
    if (bh_fs_mkdirp(dir, 0700, err) < 0)
        return -1;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return bh_err_errno(err, BH_EIO, "policy dir %s", dir);
    struct bh_lua_policies *p = bh_xcalloc(1, sizeof(*p));
    p->dir = bh_xstrdup(dir);
    p->dirfd = fd;
    p->store = p->kv = store;
    p->limits = *limits;
    pthread_mutex_init(&p->mu, NULL);
    *out = p;
    return 0;
}

static void policy_ver_unref(struct policy_ver *v)
{
    if (v && --v->refs == 0) {
        bh_lua_script_free(v->script);
        free(v);
    }
}

void bh_lua_policies_close(struct bh_lua_policies *p)
{
    if (!p)
        return;
    for (struct policy_file *f = p->files, *next; f; f = next) {
        next = f->next;
        policy_ver_unref(f->ver);
        free(f->name);
        free(f->last_error);
        free(f);
    }
    close(p->dirfd);
    pthread_mutex_destroy(&p->mu);
    free(p->dir);
    free(p);
}

static void policy_hash(const char *src, size_t len, char out[17])
{
    char hex[65];
    struct bh_sha256 *h = bh_crypto_sha256_new();
    bh_crypto_sha256_update(h, src, len);
    bh_crypto_sha256_final(h, hex);
    memcpy(out, hex, 16);
    out[16] = '\0';
}

static struct policy_file *policy_find(struct bh_lua_policies *p, const char *name)
{
    for (struct policy_file *f = p->files; f; f = f->next)
        if (strcmp(f->name, name) == 0)
            return f;
    struct policy_file *f = bh_xcalloc(1, sizeof(*f));
    f->name = bh_xstrdup(name);
    f->gone = 1;
    f->next = p->files;
    p->files = f;
    return f;
}

/* Compiles a new version of f from src; on failure f keeps its current one. */
static void policy_compile(struct bh_lua_policies *p, struct policy_file *f, const char *src,
                           size_t len)
{
    char hash[17];
    policy_hash(src, len, hash);
    if (f->ver && strcmp(hash, f->hash) == 0 && !f->last_error)
        return;
    struct bh_lua_script *s = NULL;
    struct bh_err err;
    free(f->last_error);
    f->last_error = NULL;
    if (bh_lua_script_new(f->name, src, len, &p->limits, p->store, p->kv, &s, &err) < 0) {
        f->last_error = bh_xstrdup(err.msg);
        bh_warn("lua", "%s (%s)", err.msg, f->ver ? "the previous version stays" : "not loaded");
        return;
    }
    struct policy_ver *v = bh_xcalloc(1, sizeof(*v));
    v->script = s;
    v->refs = 1;
    policy_ver_unref(f->ver);
    f->ver = v;
    memcpy(f->hash, hash, sizeof(hash));
    bh_clock_rfc3339(f->loaded_at);
    bh_info("lua", "loaded %s (version %s)", f->name, hash);
}

/* Reads the file name from the policy dir: a regular file, not through a symlink. */
static int policy_read(struct bh_lua_policies *p, const char *name, struct stat *st, char **src,
                       size_t *len, struct bh_err *err)
{
    bh_autoclose int fd = openat(p->dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return bh_err_errno(err, BH_ENOTFOUND, "policy %s", name);
    if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode))
        return bh_err_set(err, BH_EINVAL, "policy %s: not a regular file", name);
    if (st->st_size > POLICY_MAX_BYTES)
        return bh_err_set(err, BH_EINVAL, "policy %s: larger than %d bytes", name,
                          POLICY_MAX_BYTES);
    *src = bh_xmalloc((size_t)st->st_size + 1);
    ssize_t n = pread(fd, *src, (size_t)st->st_size, 0);
    if (n < 0) {
        free(*src);
        return bh_err_errno(err, BH_EIO, "policy %s", name);
    }
    *len = (size_t)n;
    return 0;
}

static int policy_same(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Brings f up to date with its file. Locked. */
static void policy_refresh(struct bh_lua_policies *p, struct policy_file *f)
{
    struct stat st;
    if (fstatat(p->dirfd, f->name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        f->gone = 1;
        return;
    }
    if (!f->gone && policy_same(&st, &f->seen))
        return;
    bh_autofree char *src = NULL;
    size_t len = 0;
    struct bh_err err;
    f->gone = 0;
    if (policy_read(p, f->name, &st, &src, &len, &err) < 0) {
        free(f->last_error);
        f->last_error = bh_xstrdup(err.msg);
        return;
    }
    f->seen = st;
    policy_compile(p, f, src, len);
}

/* The current version of script `name`, referenced; NULL (err) if it cannot run. */
static struct policy_ver *policy_get(struct bh_lua_policies *p, const char *name,
                                     struct policy_file **fout, struct bh_err *err)
{
    if (!bh_lua_script_name_valid(name))
        return bh_err_set(err, BH_EINVAL, "policy %s: not a script name (NAME.lua)", name), NULL;
    pthread_mutex_lock(&p->mu);
    struct policy_file *f = policy_find(p, name);
    policy_refresh(p, f);
    struct policy_ver *v = f->gone ? NULL : f->ver;
    if (v)
        v->refs++;
    else if (f->gone)
        bh_err_set(err, BH_ENOTFOUND, "policy %s: no such script in %s", name, p->dir);
    else
        bh_err_set(err, BH_EINVAL, "%s", f->last_error);
    pthread_mutex_unlock(&p->mu);
    *fout = f;
    return v;
}

/* An inline guard source, compiled once per distinct text. */
static struct policy_ver *policy_get_inline(struct bh_lua_policies *p, const char *src,
                                            struct policy_file **fout, struct bh_err *err)
{
    char hash[17];
    policy_hash(src, strlen(src), hash);
    bh_autofree char *name = bh_xasprintf("inline:%s", hash);
    pthread_mutex_lock(&p->mu);
    struct policy_file *f = policy_find(p, name);
    f->gone = 0;
    if (!f->ver && !f->last_error)
        policy_compile(p, f, src, strlen(src));
    struct policy_ver *v = f->ver;
    if (v)
        v->refs++;
    else
        bh_err_set(err, BH_EINVAL, "%s", f->last_error);
    pthread_mutex_unlock(&p->mu);
    *fout = f;
    return v;
}

static void policy_put(struct bh_lua_policies *p, struct policy_file *f, struct policy_ver *v,
                       long long micros, int denied, int failed)
{
    pthread_mutex_lock(&p->mu);
    f->calls++;
    f->denials += denied;
    f->failures += failed;
    f->times[f->ntimes++ % POLICY_TIMES] = micros > 0 ? (unsigned)micros : 0;
    policy_ver_unref(v);
    pthread_mutex_unlock(&p->mu);
}

/* ---- calls ---- */

cJSON *bh_lua_claim_event(const char *tenant, const cJSON *workload, const cJSON *labels)
{
    const char *wname = bh_json_str(workload, "metadata.name");
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "tenantId", tenant);
    cJSON_AddStringToObject(ev, "workload", wname ? wname : "");
    cJSON_AddItemToObject(ev, "labels", labels ? cJSON_Duplicate(labels, 1) : cJSON_CreateObject());
    cJSON_AddNumberToObject(ev, "now", (double)time(NULL));
    return ev;
}

/* The script a workload's claims run: spec.claimPolicy, else the default. */
static const char *policy_for(const cJSON *workload)
{
    const char *name = bh_json_str(workload, "spec.claimPolicy");
    return name ? name : BH_LUA_DEFAULT_POLICY;
}

/* A script that cannot decide denies: fail closed. */
static void policy_failed(struct bh_lua_decision *d, const struct bh_err *err)
{
    d->allow = 0;
    d->failed = 1;
    free(d->reason);
    d->reason = bh_xasprintf("claim policy failed: %s", err->msg);
    cJSON_Delete(d->overrides);
    d->overrides = NULL;
}

int bh_lua_policy_decide(struct bh_lua_policies *p, const cJSON *workload, const cJSON *event,
                         struct bh_lua_decision *d, struct bh_err *err)
{
    memset(d, 0, sizeof(*d));
    d->allow = 1;
    if (!p)
        return 0;
    const char *name = policy_for(workload);
    struct policy_file *f = NULL;
    struct bh_err cerr = {0};
    struct policy_ver *v = policy_get(p, name, &f, &cerr);
    /* No spec.claimPolicy and no default script: no policy applies. */
    if (!v && cerr.code == BH_ENOTFOUND && !bh_json_str(workload, "spec.claimPolicy"))
        return 0;
    d->script = bh_xstrdup(name);
    if (!v) {
        policy_failed(d, &cerr);
        return 0;
    }
    cJSON *ret = NULL;
    struct bh_lua_report rep = {0};
    if (bh_lua_script_call(v->script, "policy", event, &ret, &rep, &cerr) < 0 ||
        bh_lua_decision_read(ret, workload, d, &cerr) < 0)
        policy_failed(d, &cerr);
    else if (!d->allow && !d->reason)
        d->reason = bh_xasprintf("denied by claim policy %s", name);
    cJSON_Delete(ret);
    bh_lua_report_free(&rep);
    policy_put(p, f, v, rep.micros, !d->allow, d->failed);
    return 0;
}

int bh_lua_guard(struct bh_lua_policies *p, const char *script, const char *source,
                 const cJSON *event, char **reason, struct bh_err *err)
{
    *reason = NULL;
    struct policy_file *f = NULL;
    struct policy_ver *v =
        script ? policy_get(p, script, &f, err) : policy_get_inline(p, source, &f, err);
    if (!v)
        return -1;
    cJSON *ret = NULL;
    struct bh_lua_report rep = {0};
    int rc = bh_lua_script_call(v->script, "guard", event, &ret, &rep, err);
    if (rc == 0 && (rc = bh_lua_verdict(ret, reason)) < 0)
        bh_err_set(err, BH_EINVAL, "%s: wrong return type: expected true or false[, reason]",
                   f->name);
    if (rc == 0 && !*reason)
        *reason = bh_xasprintf("denied by guard %s", f->name);
    cJSON_Delete(ret);
    bh_lua_report_free(&rep);
    policy_put(p, f, v, rep.micros, rc == 0, rc < 0);
    return rc;
}

/* ---- try before deploy ---- */

static int policy_test_source(struct bh_lua_policies *p, const char *script, char **src,
                              size_t *len, struct bh_err *err)
{
    struct stat st;
    if (p) {
        if (!bh_lua_script_name_valid(script))
            return bh_err_set(err, BH_EINVAL, "script: %.64s is not a script name (NAME.lua)",
                              script);
        return policy_read(p, script, &st, src, len, err);
    }
    return bh_fs_read_all(script, POLICY_MAX_BYTES, src, len, err);
}

static void policy_test_report(cJSON *out, const struct bh_lua_report *rep)
{
    cJSON_AddItemToObject(out, "logs",
                          rep->logs ? cJSON_Duplicate(rep->logs, 1) : cJSON_CreateArray());
    cJSON_AddNumberToObject(out, "instructions", (double)rep->instructions);
    cJSON_AddNumberToObject(out, "memoryBytes", (double)rep->memory);
    cJSON_AddNumberToObject(out, "micros", (double)rep->micros);
}

/* Runs the entry the script defines (policy first) and describes the outcome. */
static cJSON *policy_test_run(struct bh_lua_script *s, const char *name, const cJSON *event,
                              const cJSON *workload)
{
    cJSON *out = cJSON_CreateObject(), *ret = NULL;
    struct bh_lua_report rep = {0};
    struct bh_lua_decision d = {.script = bh_xstrdup(name)};
    struct bh_err err;
    int rc = bh_lua_script_call(s, "policy", event, &ret, &rep, &err);
    const char *entry = "policy";
    if (rc < 0 && strstr(err.msg, "defines no function 'policy'")) {
        bh_lua_report_free(&rep);
        entry = "guard";
        rc = bh_lua_script_call(s, entry, event, &ret, &rep, &err);
    }
    if (rc == 0 && strcmp(entry, "policy") == 0)
        rc = bh_lua_decision_read(ret, workload, &d, &err);
    else if (rc == 0 && (d.allow = bh_lua_verdict(ret, &d.reason)) < 0)
        rc = bh_err_set(&err, BH_EINVAL, "%s: wrong return type: expected true or false[, reason]",
                        name);
    cJSON_AddStringToObject(out, "entry", entry);
    cJSON_AddStringToObject(out, "decision", rc < 0 ? "error" : d.allow ? "allow" : "deny");
    if (rc < 0)
        cJSON_AddStringToObject(out, "error", err.msg);
    else if (d.reason)
        cJSON_AddStringToObject(out, "reason", d.reason);
    if (rc == 0 && d.overrides)
        cJSON_AddItemToObject(out, "overrides", BH_STEAL(d.overrides));
    policy_test_report(out, &rep);
    bh_lua_report_free(&rep);
    bh_lua_decision_free(&d);
    cJSON_Delete(ret);
    return out;
}

int bh_lua_policy_test(struct bh_lua_policies *p, const char *script, const char *source,
                       const cJSON *event, const cJSON *workload, cJSON **out, struct bh_err *err)
{
    bh_autofree char *src = NULL;
    size_t len = source ? strlen(source) : 0;
    if (!source && policy_test_source(p, script, &src, &len, err) < 0)
        return -1;
    const char *name = script ? script : "inline";
    const char *slash = strrchr(name, '/');
    name = slash ? slash + 1 : name;
    /* A scratch kv: a test must not move the live counters of the script it tries. */
    struct bh_store *kv = NULL;
    if (bh_store_open(":memory:", &kv, err) < 0)
        return -1;
    struct bh_lua_limits lim = BH_LUA_LIMITS_DEFAULT;
    struct bh_lua_script *s = NULL;
    int rc = bh_lua_script_new(name, source ? source : src, len, p ? &p->limits : &lim,
                               p ? p->store : NULL, kv, &s, err);
    if (rc == 0)
        *out = policy_test_run(s, name, event, workload);
    bh_lua_script_free(s);
    bh_store_close(kv);
    return rc;
}

/* ---- listing ---- */

static int policy_cmp_uint(const void *a, const void *b)
{
    unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
    return x < y ? -1 : x > y;
}

static long long policy_p99(const struct policy_file *f)
{
    unsigned n = f->ntimes < POLICY_TIMES ? f->ntimes : POLICY_TIMES;
    if (n == 0)
        return 0;
    unsigned t[POLICY_TIMES];
    memcpy(t, f->times, n * sizeof(t[0]));
    qsort(t, n, sizeof(t[0]), policy_cmp_uint);
    return t[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1];
}

static cJSON *policy_describe(const struct policy_file *f)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", f->name);
    if (f->ver) {
        cJSON_AddStringToObject(o, "versionHash", f->hash);
        cJSON_AddStringToObject(o, "loadedAt", f->loaded_at);
    }
    cJSON_AddItemToObject(o, "lastError",
                          f->last_error ? cJSON_CreateString(f->last_error) : cJSON_CreateNull());
    cJSON_AddNumberToObject(o, "calls", (double)f->calls);
    cJSON_AddNumberToObject(o, "denials", (double)f->denials);
    cJSON_AddNumberToObject(o, "failures", (double)f->failures);
    cJSON_AddNumberToObject(o, "p99Micros", (double)policy_p99(f));
    return o;
}

/* Loads scripts of the dir not seen yet, so the list shows their errors too. Locked. */
static void policy_scan(struct bh_lua_policies *p)
{
    struct dirent **names = NULL;
    int n = scandir(p->dir, &names, NULL, alphasort);
    for (int i = 0; i < n; i++) {
        if (bh_lua_script_name_valid(names[i]->d_name))
            policy_find(p, names[i]->d_name);
        free(names[i]);
    }
    free(names);
}

cJSON *bh_lua_policies_list(struct bh_lua_policies *p)
{
    cJSON *arr = cJSON_CreateArray();
    pthread_mutex_lock(&p->mu);
    policy_scan(p);
    for (struct policy_file *f = p->files; f; f = f->next) {
        if (strncmp(f->name, "inline:", 7) != 0)
            policy_refresh(p, f);
        if (!f->gone)
            cJSON_AddItemToArray(arr, policy_describe(f));
    }
    pthread_mutex_unlock(&p->mu);
    return arr;
}
