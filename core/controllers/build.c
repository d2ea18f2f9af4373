/* Dockerfile builds with buildah (see build.h). */
#include "build.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto.h"
#include "fs.h"
#include "image.h"
#include "json.h"
#include "mem.h"
#include "proc.h"

#define BUILD_TIMEOUT_MS (30 * 60 * 1000)
#define BUILD_MAX_ENTRIES 100000 /* a context larger than this is a mistake, not a build */
#define BUILD_DETAIL_TAIL 360    /* bytes of the log's end quoted in an error (bh_err holds 512) */
#define BUILD_DOCKERFILE_MAX (1 << 20)

/* ---- paths ----------------------------------------------------------------------------- */

/* The Dockerfile, relative to the workloads directory, resolved (symlinks too) to a regular
 * file inside it: neither ".." nor a link may lead a build elsewhere on the host. */
static int build_dockerfile(struct bh_ctx *ctx, const char *rel, char **out, struct bh_err *err)
{
    if (!ctx->cfg.workloads_dir)
        return bh_err_set(err, BH_EINVAL,
                          "spec.image.dockerfile: no workloads directory is configured");
    if (rel[0] == '/' || strstr(rel, ".."))
        return bh_err_set(err, BH_EINVAL,
                          "spec.image.dockerfile: must be a relative path "
                          "inside the workloads directory");
    bh_autofree char *joined = bh_xasprintf("%s/%s", ctx->cfg.workloads_dir, rel);
    char root[PATH_MAX], file[PATH_MAX];
    struct stat st;
    if (!realpath(ctx->cfg.workloads_dir, root) || !realpath(joined, file) || stat(file, &st) < 0)
        return bh_err_errno(err, BH_ENOTFOUND, "spec.image.dockerfile %s", rel);
    size_t n = strlen(root);
    if (strncmp(file, root, n) != 0 || file[n] != '/' || !S_ISREG(st.st_mode))
        return bh_err_set(err, BH_EINVAL,
                          "spec.image.dockerfile %s: not a file inside the workloads directory",
                          rel);
    *out = bh_xstrdup(file);
    return 0;
}

char *bh_build_log_path(struct bh_ctx *ctx, const char *name)
{
    return bh_xasprintf("%s/builds/%s/build.log", ctx->cfg.state_dir, name);
}

/* ---- the context's fingerprint --------------------------------------------------------- */

static int build_hash_entry(struct bh_sha256 *h, const char *path, const char *rel, int *budget,
                            struct bh_err *err);

static int build_hash_dir(struct bh_sha256 *h, const char *path, const char *rel, int *budget,
                          struct bh_err *err)
{
    struct dirent **names = NULL;
    int n = scandir(path, &names, NULL, alphasort); /* sorted: the hash must not depend on
                                                       the order the filesystem lists */
    if (n < 0)
        return bh_err_errno(err, BH_EIO, "build context %s", path);
    int rc = 0;
    for (int i = 0; i < n; i++) {
        const char *d = names[i]->d_name;
        if (rc == 0 && strcmp(d, ".") && strcmp(d, "..")) {
            bh_autofree char *p = bh_xasprintf("%s/%s", path, d);
            bh_autofree char *r = bh_xasprintf("%s/%s", rel, d);
            rc = build_hash_entry(h, p, r, budget, err);
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

static int build_hash_entry(struct bh_sha256 *h, const char *path, const char *rel, int *budget,
                            struct bh_err *err)
{
    struct stat st;
    if (--*budget < 0)
        return bh_err_set(err, BH_ETOOLARGE, "build context has more than %d entries",
                          BUILD_MAX_ENTRIES);
    if (lstat(path, &st) < 0)
        return bh_err_errno(err, BH_EIO, "build context %s", path);
    char head[64];
    snprintf(head, sizeof(head), "%o", (unsigned)st.st_mode);
    bh_crypto_sha256_update(h, rel, strlen(rel) + 1);
    bh_crypto_sha256_update(h, head, strlen(head) + 1);
    if (S_ISDIR(st.st_mode))
        return build_hash_dir(h, path, rel, budget, err);
    char hex[65] = "";
    if (S_ISREG(st.st_mode) && bh_crypto_sha256_file(path, hex, err) < 0)
        return -1;
    if (S_ISLNK(st.st_mode)) {
        ssize_t n = readlink(path, hex, sizeof(hex) - 1);
        hex[n > 0 ? n : 0] = '\0';
    }
    bh_crypto_sha256_update(h, hex, strlen(hex) + 1);
    return 0;
}

int bh_build_fingerprint(struct bh_ctx *ctx, const cJSON *wl, char hex[65], struct bh_err *err)
{
    const char *rel = bh_json_str(wl, "spec.image.dockerfile");
    bh_autofree char *file = NULL;
    if (build_dockerfile(ctx, rel, &file, err) < 0)
        return -1;
    *strrchr(file, '/') = '\0';
    struct bh_sha256 *h = bh_crypto_sha256_new();
    bh_crypto_sha256_update(h, rel, strlen(rel) + 1);
    int budget = BUILD_MAX_ENTRIES;
    if (build_hash_dir(h, file, ".", &budget, err) < 0) {
        bh_crypto_sha256_free(h);
        return -1;
    }
    bh_crypto_sha256_final(h, hex);
    return 0;
}

/* ---- buildah's registry settings ------------------------------------------------------- */

/* A registry host as it may appear in registries.conf: nothing that could end a TOML
 * string or start a new table. */
static int build_host_ok(const char *host, size_t n)
{
    if (n == 0 || n > 253)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)host[i]) && !strchr(".:-[]", host[i]))
            return 0;
    return 1;
}

static int build_host_loopback(const char *host, size_t n)
{
    return (n >= 4 && strncmp(host, "127.", 4) == 0) ||
           (n >= 9 && strncmp(host, "localhost", 9) == 0 && (n == 9 || host[9] == ':')) ||
           (n >= 5 && strncmp(host, "[::1]", 5) == 0);
}

static void build_conf_insecure(char **conf, const char *host, size_t n)
{
    if (!build_host_ok(host, n))
        return;
    char *next = bh_xasprintf("%s[[registry]]\nlocation = \"%.*s\"\ninsecure = true\n\n", *conf,
                              (int)n, host);
    free(*conf);
    *conf = next;
}

/* The image of a FROM line ("FROM [--platform=...] image [AS name]"), or NULL. */
static const char *build_from_image(const char *line, size_t *len)
{
    line += strspn(line, " \t");
    if (strncasecmp(line, "FROM", 4) != 0 || !isspace((unsigned char)line[4]))
        return NULL;
    line += 4;
    for (;;) {
        line += strspn(line, " \t");
        size_t n = strcspn(line, " \t\r\n");
        if (n == 0)
            return NULL;
        if (strncmp(line, "--", 2) != 0) {
            *len = n;
            return line;
        }
        line += n;
    }
}

/* Registries reached over plain HTTP, as the image store reaches them (image.h): those the
 * registry config lists as insecure, and loopback registries the Dockerfile's FROM lines
 * name (their port is only known there). */
static char *build_registries_conf(const cJSON *regcfg, const char *dockerfile)
{
    char *conf = bh_xstrdup("unqualified-search-registries = [\"docker.io\"]\n\n");
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(regcfg, "insecure")) {
        if (cJSON_IsString(it))
            build_conf_insecure(&conf, it->valuestring, strlen(it->valuestring));
    }
    for (const char *line = dockerfile; line && *line;) {
        size_t n = 0;
        const char *img = build_from_image(line, &n);
        if (img) {
            size_t host = strcspn(img, "/");
            if (host < n && build_host_loopback(img, host))
                build_conf_insecure(&conf, img, host);
        }
        line = strchr(line, '\n');
        line = line ? line + 1 : NULL;
    }
    return conf;
}

/* The registry config's auths in the containers-auth.json form buildah reads. */
static char *build_authfile(const cJSON *regcfg)
{
    cJSON *out = cJSON_CreateObject(), *auths = cJSON_AddObjectToObject(out, "auths");
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(regcfg, "auths")) {
        const char *user = bh_json_str(it, "username"), *pass = bh_json_str(it, "password");
        if (!user || !pass)
            continue;
        bh_autofree char *plain = bh_xasprintf("%s:%s", user, pass);
        bh_autofree char *b64 = bh_crypto_base64(plain, strlen(plain));
        bh_crypto_wipe(plain, strlen(plain));
        cJSON_AddStringToObject(cJSON_AddObjectToObject(auths, it->string), "auth", b64);
    }
    char *text = bh_json_print(out);
    cJSON_Delete(out);
    return text;
}

static int build_registry_files(struct bh_ctx *ctx, const char *dir, const char *dockerfile,
                                struct bh_err *err)
{
    cJSON *regcfg = NULL;
    if (ctx->cfg.registry_config) {
        bh_autofree char *text = NULL;
        size_t len = 0;
        if (bh_fs_read_all(ctx->cfg.registry_config, 1 << 20, &text, &len, err) < 0)
            return bh_err_wrap(err, "registry config");
        regcfg = cJSON_Parse(text);
    }
    bh_autofree char *conf = build_registries_conf(regcfg, dockerfile);
    bh_autofree char *auth = build_authfile(regcfg);
    cJSON_Delete(regcfg);
    bh_autofree char *conf_path = bh_xasprintf("%s/registries.conf", dir);
    bh_autofree char *auth_path = bh_xasprintf("%s/auth.json", dir);
    if (bh_fs_write_atomic(conf_path, conf, strlen(conf), 0600, err) < 0 ||
        bh_fs_write_atomic(auth_path, auth, strlen(auth), 0600, err) < 0)
        return -1;
    return 0;
}

/* ---- running buildah ------------------------------------------------------------------- */

static int build_find_program(const char *name)
{
    const char *path = getenv("PATH");
    bh_autofree char *copy = bh_xstrdup(path ? path : "/usr/bin:/bin");
    char *save = NULL;
    for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
        bh_autofree char *p = bh_xasprintf("%s/%s", dir, name);
        if (access(p, X_OK) == 0)
            return 1;
    }
    return 0;
}

/* The OCI runtime RUN steps use: the daemon's own when set, else runc if present (buildah's
 * default, crun, refuses hosts with cgroups in hybrid mode). NULL: buildah's default. */
static const char *build_runtime(struct bh_ctx *ctx)
{
    if (ctx->cfg.runtime)
        return ctx->cfg.runtime;
    return build_find_program("runc") ? "runc" : NULL;
}

/* The end of the build log, made printable, for the workload's status. */
static void build_log_tail(const char *log_path, char *out, size_t size)
{
    char *text = NULL;
    size_t len = 0;
    struct bh_err ignored;
    out[0] = '\0';
    if (bh_fs_read_all(log_path, 64 << 20, &text, &len, &ignored) < 0)
        return;
    while (len > 0 && isspace((unsigned char)text[len - 1]))
        len--;
    size_t from = len > size - 1 ? len - (size - 1) : 0;
    size_t j = 0;
    for (size_t i = from; i < len && j < size - 1; i++)
        out[j++] = (text[i] == '\n' || isprint((unsigned char)text[i])) ? text[i] : '?';
    out[j] = '\0';
    free(text);
}

/* Runs one buildah command with its output appended to the log. */
static int build_buildah(const char *const argv[], int log_fd, const char *log_path,
                         const char *what, struct bh_err *err)
{
    struct bh_proc_opts o = {.timeout_ms = BUILD_TIMEOUT_MS, .stdout_fd = log_fd};
    struct bh_proc_result res;
    if (bh_proc_run(argv, &o, &res, err) < 0)
        return bh_err_wrap(err, "buildah %s", what);
    int code = res.exit_code;
    bh_proc_result_free(&res);
    if (code == 0)
        return 0;
    char tail[BUILD_DETAIL_TAIL];
    build_log_tail(log_path, tail, sizeof(tail));
    return bh_err_set(err, BH_EINVAL, "buildah %s failed (exit %d): ...%s", what, code, tail);
}

struct build {
    const char *file, *context, *tag, *dir, *log;
    const char *root, *runroot, *conf, *authfile, *network, *runtime, *layout;
};

/* buildah's global options, then the subcommand's: argv without a shell. */
static size_t build_argv(const struct build *b, const char **argv, const char *sub)
{
    const char *global[] = {"buildah",           "--root", b->root, "--runroot", b->runroot,
                            "--registries-conf", b->conf,  sub};
    memcpy(argv, global, sizeof(global));
    return sizeof(global) / sizeof(global[0]);
}

static int build_steps(const struct build *b, int log_fd, struct bh_err *err)
{
    bh_autofree char *net = bh_xasprintf("--network=%s", b->network);
    bh_autofree char *dest = bh_xasprintf("oci:%s:latest", b->layout);
    const char *bud[24], *push[16];
    size_t n = build_argv(b, bud, "bud");
    const char *opts[] = {"--layers", net, "--authfile", b->authfile, "-f", b->file, "-t", b->tag};
    for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
        bud[n++] = opts[i];
    if (b->runtime) {
        bud[n++] = "--runtime";
        bud[n++] = b->runtime;
    }
    bud[n++] = b->context;
    bud[n] = NULL;
    n = build_argv(b, push, "push");
    push[n++] = b->tag;
    push[n++] = dest;
    push[n] = NULL;
    if (build_buildah(bud, log_fd, b->log, "bud", err) < 0)
        return -1;
    return build_buildah(push, log_fd, b->log, "push", err);
}

int bh_build_run(struct bh_ctx *ctx, const cJSON *wl, char **ref, struct bh_err *err)
{
    const char *rel = bh_json_str(wl, "spec.image.dockerfile");
    const char *name = bh_json_str(wl, "metadata.name");
    if (!build_find_program("buildah"))
        return bh_err_set(err, BH_EUNAVAIL,
                          "spec.image.dockerfile needs buildah, which is not installed on this "
                          "host; install it or use spec.image.ref");
    if (!name || !bh_fs_safe_component(name))
        return bh_err_set(err, BH_EINVAL, "workload name is not a path component");
    bh_autofree char *file = NULL, *text = NULL;
    size_t len = 0;
    if (build_dockerfile(ctx, rel, &file, err) < 0 ||
        bh_fs_read_all(file, BUILD_DOCKERFILE_MAX, &text, &len, err) < 0)
        return -1;
    bh_autofree char *context = bh_xstrdup(file);
    *strrchr(context, '/') = '\0';
    /* localhost/: buildah's own prefix, and a name the image store never looks up on a
     * public registry. */
    bh_autofree char *tag =
        bh_xasprintf("localhost/boilerhouse/%s:%s", name, bh_json_str(wl, "spec.version"));
    bh_autofree char *dir = bh_xasprintf("%s/builds/%s", ctx->cfg.state_dir, name);
    bh_autofree char *layout = bh_xasprintf("%s/layout", dir);
    bh_autofree char *log = bh_build_log_path(ctx, name);
    bh_autofree char *root = bh_xasprintf("%s/buildah/root", ctx->cfg.state_dir);
    bh_autofree char *runroot = bh_xasprintf("%s/buildah/run", ctx->cfg.state_dir);
    bh_autofree char *conf = bh_xasprintf("%s/registries.conf", dir);
    bh_autofree char *authfile = bh_xasprintf("%s/auth.json", dir);
    if (bh_fs_mkdirp(dir, 0700, err) < 0 || bh_fs_rmtree(layout, err) < 0 ||
        build_registry_files(ctx, dir, text, err) < 0)
        return bh_err_wrap(err, "build %s", rel);
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return bh_err_errno(err, BH_EIO, "build log %s", log);
    struct build b = {file,
                      context,
                      tag,
                      dir,
                      log,
                      root,
                      runroot,
                      conf,
                      authfile,
                      ctx->cfg.build_network ? ctx->cfg.build_network : "none",
                      build_runtime(ctx),
                      layout};
    int rc = build_steps(&b, fd, err);
    close(fd);
    if (rc < 0)
        return bh_err_wrap(err, "build %s", rel);
    return bh_image_import(ctx->images, layout, tag, ref, err);
}
