#include "plugin.h"

#include <dirent.h>
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"
#include "proc.h"
#include "secret.h"

/* A plugin's validated configuration: every declared key that was given or has a default,
 * already typed, so the config_* accessors never parse. */
struct bh_config {
    cJSON *values; /* owned object */
};

struct plugin_refusal {
    char *file;  /* owned */
    char *error; /* owned */
};

struct bh_plugins {
    struct bh_plugin **items; /* owned */
    size_t n;
    struct plugin_refusal *refused; /* owned */
    size_t n_refused;
};

typedef int (*plugin_init_fn)(void **state, const struct bh_config *cfg, struct bh_err *err);
typedef void (*plugin_fini_fn)(void *state);

/* What the loader knows about each kind; ops_size 0 means ABI 1 defines no ops table for the
 * kind yet, so such plugins are refused rather than guessed at. */
struct plugin_kind {
    enum bh_plugin_kind kind;
    const char *name;
    size_t ops_size;
};

static const struct plugin_kind plugin_kinds[] = {
    {BH_PLUGIN_TRIGGER, "trigger", 0},
    {BH_PLUGIN_GUARD, "guard", 0},
    {BH_PLUGIN_STORAGE, "storage", sizeof(struct bh_storage_ops)},
    {BH_PLUGIN_NETWORK, "network", sizeof(struct bh_network_ops)},
};

/* Commands plugins run (ip, nsenter) finish in milliseconds; a hung one must not wedge the
 * reconciler thread that called the plugin. */
#define HOST_RUN_TIMEOUT_MS 60000
#define HOST_DEFAULT_STATE_DIR "/var/lib/boilerhouse"

static char *host_state_dir_path; /* owned; NULL means the default */

/* ---- host API ----------------------------------------------------------------------------- */

static void host_log(enum bh_log_level level, const char *plugin, const char *fmt, ...)
{
    /* The level comes from outside the daemon: clamp it before it indexes anything. */
    if ((unsigned)level > BH_LOG_DEBUG)
        level = BH_LOG_DEBUG;
    char module[80];
    snprintf(module, sizeof(module), "plugin/%s", plugin ? plugin : "?");
    va_list ap;
    va_start(ap, fmt);
    bh_logv(level, module, fmt, ap);
    va_end(ap);
}

static int host_err_set(struct bh_err *err, int code, const char *fmt, ...)
{
    if (!err)
        return -1;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return -1;
}

static const cJSON *host_config_item(const struct bh_config *cfg, const char *key)
{
    return cfg && key ? cJSON_GetObjectItemCaseSensitive(cfg->values, key) : NULL;
}

static const char *host_config_string(const struct bh_config *cfg, const char *key)
{
    const cJSON *v = host_config_item(cfg, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static long long host_config_int(const struct bh_config *cfg, const char *key)
{
    const cJSON *v = host_config_item(cfg, key);
    return cJSON_IsNumber(v) ? (long long)v->valuedouble : 0;
}

static int host_config_bool(const struct bh_config *cfg, const char *key)
{
    return cJSON_IsTrue(host_config_item(cfg, key));
}

/* Drops trailing blanks so the stderr excerpt ends the one-line error cleanly. */
static void host_trim(char *s, size_t len)
{
    while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == ' '))
        s[--len] = '\0';
}

static int host_run(const char *const argv[], char *out, size_t outlen, struct bh_err *err)
{
    if (!argv || !argv[0])
        return host_err_set(err, BH_EINVAL, "run: empty argv");
    struct bh_proc_opts opts = {.stdout_fd = -1, .timeout_ms = HOST_RUN_TIMEOUT_MS};
    struct bh_proc_result res;
    int rc = bh_proc_run(argv, &opts, &res, err);
    if (rc == 0 && out && outlen > 0)
        snprintf(out, outlen, "%s", res.out);
    if (rc == 0 && res.exit_code != 0) {
        host_trim(res.errout, res.err_len);
        rc = bh_err_set(err, BH_EIO, "%s %s exited %d: %.300s", argv[0], argv[1] ? argv[1] : "",
                        res.exit_code, res.errout);
    }
    bh_proc_result_free(&res);
    return rc;
}

static const char *host_state_dir(void)
{
    return host_state_dir_path ? host_state_dir_path : HOST_DEFAULT_STATE_DIR;
}

static struct bh_secrets *host_secrets; /* borrowed from the daemon; NULL: no store */

static int host_secret_get(const char *name, const char *key, const char *tenant, char **value,
                           struct bh_err *err)
{
    if (!host_secrets)
        return bh_err_set(err, BH_EUNAVAIL, "the host has no secret store");
    return bh_secrets_get(host_secrets, tenant, name, key, value, err);
}

static const struct bh_host_api host_api = {
    .size = sizeof(struct bh_host_api),
    .abi_major = BH_PLUGIN_ABI_MAJOR,
    .abi_minor = BH_PLUGIN_ABI_MINOR,
    .log = host_log,
    .err_set = host_err_set,
    .config_string = host_config_string,
    .config_int = host_config_int,
    .config_bool = host_config_bool,
    .run = host_run,
    .state_dir = host_state_dir,
    .secret_get = host_secret_get,
};

const struct bh_host_api *bh_plugin_host_api(void)
{
    return &host_api;
}

void bh_plugin_set_secrets(struct bh_secrets *secrets)
{
    host_secrets = secrets;
}

void bh_plugin_set_state_dir(const char *dir)
{
    free(host_state_dir_path);
    host_state_dir_path = dir ? bh_xstrdup(dir) : NULL;
}

/* ---- info checks -------------------------------------------------------------------------- */

static const struct plugin_kind *plugin_kind_find(enum bh_plugin_kind kind)
{
    for (size_t i = 0; i < BH_ARRAY_LEN(plugin_kinds); i++)
        if (plugin_kinds[i].kind == kind)
            return &plugin_kinds[i];
    return NULL;
}

static const char *plugin_basename(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* Size, ABI major and build signature: nothing else in info is read before these pass. */
static int plugin_check_header(const char *path, const struct bh_plugin_info *info,
                               struct bh_err *err)
{
    const size_t need = offsetof(struct bh_plugin_info, ops) + sizeof(info->ops);
    if (!info)
        return bh_err_set(err, BH_EINVAL, "%s: bh_plugin_entry returned NULL", path);
    if (info->size < need)
        return bh_err_set(err, BH_EINVAL, "%s: info size %zu, daemon needs at least %zu", path,
                          info->size, need);
    if (info->abi_major != BH_PLUGIN_ABI_MAJOR)
        return bh_err_set(err, BH_EINVAL, "%s: ABI major %u, daemon supports %d", path,
                          info->abi_major, BH_PLUGIN_ABI_MAJOR);
    if (!info->build_sig || strcmp(info->build_sig, BH_PLUGIN_BUILD_SIG) != 0)
        return bh_err_set(err, BH_EINVAL, "%s: build signature \"%.64s\", daemon expects \"%s\"",
                          path, info->build_sig ? info->build_sig : "(null)", BH_PLUGIN_BUILD_SIG);
    return 0;
}

static int plugin_name_ok(const char *name)
{
    if (!name || !name[0])
        return 0;
    return strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789-") == strlen(name);
}

/* Kind, name (which must match the file name) and the kind's ops table size. */
static int plugin_check_identity(const char *path, const struct bh_plugin_info *info,
                                 struct bh_err *err)
{
    const struct plugin_kind *k = plugin_kind_find(info->kind);
    if (!k)
        return bh_err_set(err, BH_EINVAL, "%s: unknown plugin kind %d", path, (int)info->kind);
    if (!plugin_name_ok(info->name))
        return bh_err_set(err, BH_EINVAL, "%s: plugin name \"%.64s\" is not [a-z0-9-]+", path,
                          info->name ? info->name : "(null)");
    bh_autofree char *want = bh_xasprintf("bh-%s-%s.so", k->name, info->name);
    if (strcmp(plugin_basename(path), want) != 0)
        return bh_err_set(err, BH_EINVAL, "%s: plugin says it is %s/%s, so the file must be %s",
                          path, k->name, info->name, want);
    if (k->ops_size == 0)
        return bh_err_set(err, BH_EINVAL, "%s: ABI %d defines no ops for %s plugins yet", path,
                          BH_PLUGIN_ABI_MAJOR, k->name);
    const size_t *ops_size = info->ops;
    if (!ops_size)
        return bh_err_set(err, BH_EINVAL, "%s: ops table is NULL", path);
    if (*ops_size < k->ops_size)
        return bh_err_set(err, BH_EINVAL, "%s: %s ops size %zu, daemon needs at least %zu", path,
                          k->name, *ops_size, k->ops_size);
    return 0;
}

static void plugin_lifecycle(const struct bh_plugin_info *info, plugin_init_fn *init,
                             plugin_fini_fn *fini)
{
    if (info->kind == BH_PLUGIN_NETWORK) {
        const struct bh_network_ops *ops = info->ops;
        *init = ops->init, *fini = ops->fini;
    } else {
        const struct bh_storage_ops *ops = info->ops;
        *init = ops->init, *fini = ops->fini;
    }
}

/* ---- config ------------------------------------------------------------------------------- */

static const char *const config_type_names[] = {
    [BH_CFG_STRING] = "a string", [BH_CFG_INT] = "an int", [BH_CFG_BOOL] = "a bool"};

static int config_type_ok(enum bh_config_type t)
{
    return t == BH_CFG_STRING || t == BH_CFG_INT || t == BH_CFG_BOOL;
}

static int config_check_schema(const char *path, const struct bh_plugin_info *info,
                               struct bh_err *err)
{
    if (info->n_config > 0 && !info->config_schema)
        return bh_err_set(err, BH_EINVAL, "%s: config schema is NULL but n_config is %zu", path,
                          info->n_config);
    for (size_t i = 0; i < info->n_config; i++) {
        const struct bh_config_field *f = &info->config_schema[i];
        if (!f->key || !config_type_ok(f->type))
            return bh_err_set(err, BH_EINVAL, "%s: config schema entry %zu is malformed", path, i);
    }
    return 0;
}

static const struct bh_config_field *config_field(const struct bh_plugin_info *info,
                                                  const char *key)
{
    for (size_t i = 0; i < info->n_config; i++)
        if (strcmp(info->config_schema[i].key, key) == 0)
            return &info->config_schema[i];
    return NULL;
}

/* Integers arrive as JSON numbers (doubles): accept only whole values a double holds
 * exactly, so the cast in config_int is always defined. */
static int config_is_int(const cJSON *v)
{
    if (!cJSON_IsNumber(v))
        return 0;
    double d = v->valuedouble;
    return d >= -9007199254740992.0 && d <= 9007199254740992.0 && d == (double)(long long)d;
}

static int config_value_ok(enum bh_config_type type, const cJSON *v)
{
    switch (type) {
    case BH_CFG_STRING:
        return cJSON_IsString(v);
    case BH_CFG_INT:
        return config_is_int(v);
    case BH_CFG_BOOL:
        return cJSON_IsBool(v);
    }
    return 0;
}

/* Parses a schema default (text) into a typed value; NULL if the text does not fit the type. */
static cJSON *config_parse_default(const struct bh_config_field *f)
{
    const char *s = f->default_value;
    if (f->type == BH_CFG_STRING)
        return cJSON_CreateString(s);
    if (f->type == BH_CFG_BOOL)
        return strcmp(s, "true") == 0    ? cJSON_CreateTrue()
               : strcmp(s, "false") == 0 ? cJSON_CreateFalse()
                                         : NULL;
    char *end = NULL;
    long long n = strtoll(s, &end, 10);
    return (s[0] && *end == '\0') ? cJSON_CreateNumber((double)n) : NULL;
}

static int config_take_given(const char *path, const struct bh_plugin_info *info,
                             const cJSON *given, cJSON *values, struct bh_err *err)
{
    const cJSON *v;
    cJSON_ArrayForEach(v, given)
    {
        const struct bh_config_field *f = config_field(info, v->string);
        if (!f)
            return bh_err_set(err, BH_EINVAL, "%s: unknown config key \"%s\"", path, v->string);
        if (cJSON_HasObjectItem(values, f->key))
            return bh_err_set(err, BH_EINVAL, "%s: config key \"%s\" given twice", path, f->key);
        if (!config_value_ok(f->type, v))
            return bh_err_set(err, BH_EINVAL, "%s: config key \"%s\" must be %s", path, f->key,
                              config_type_names[f->type]);
        cJSON_AddItemToObject(values, f->key, cJSON_Duplicate(v, 1));
    }
    return 0;
}

static int config_fill_defaults(const char *path, const struct bh_plugin_info *info, cJSON *values,
                                struct bh_err *err)
{
    for (size_t i = 0; i < info->n_config; i++) {
        const struct bh_config_field *f = &info->config_schema[i];
        if (cJSON_HasObjectItem(values, f->key))
            continue;
        if (f->required)
            return bh_err_set(err, BH_EINVAL, "%s: missing required config key \"%s\"", path,
                              f->key);
        if (!f->default_value)
            continue;
        cJSON *d = config_parse_default(f);
        if (!d)
            return bh_err_set(err, BH_EINVAL, "%s: config key \"%s\": default \"%.64s\" is not %s",
                              path, f->key, f->default_value, config_type_names[f->type]);
        cJSON_AddItemToObject(values, f->key, d);
    }
    return 0;
}

/* given (borrowed, may be NULL): the plugin's own config object. *out is owned by the caller. */
static int config_build(const char *path, const struct bh_plugin_info *info, const cJSON *given,
                        struct bh_config **out, struct bh_err *err)
{
    if (config_check_schema(path, info, err) < 0)
        return -1;
    if (given && !cJSON_IsObject(given))
        return bh_err_set(err, BH_EINVAL, "%s: config must be an object", path);
    cJSON *values = cJSON_CreateObject();
    if (config_take_given(path, info, given, values, err) < 0 ||
        config_fill_defaults(path, info, values, err) < 0) {
        cJSON_Delete(values);
        return -1;
    }
    *out = bh_xcalloc(1, sizeof(**out));
    (*out)->values = values;
    return 0;
}

static void config_free(struct bh_config *cfg)
{
    if (cfg)
        cJSON_Delete(cfg->values);
    free(cfg);
}

/* ---- loading one plugin ------------------------------------------------------------------- */

/* Frees a plugin whose init did not run (or failed): no fini. */
static void plugin_discard(struct bh_plugin *p)
{
    if (p->handle)
        dlclose(p->handle);
    config_free(p->config);
    free(p->path);
    free(p);
}

static int plugin_open(struct bh_plugin *p, const cJSON *config, struct bh_err *err)
{
    p->handle = dlopen(p->path, RTLD_NOW | RTLD_LOCAL);
    if (!p->handle)
        return bh_err_set(err, BH_EINVAL, "%s: dlopen: %s", p->path, dlerror());
    bh_plugin_entry_fn entry = (bh_plugin_entry_fn)dlsym(p->handle, BH_PLUGIN_ENTRY_SYMBOL);
    if (!entry)
        return bh_err_set(err, BH_EINVAL, "%s: no %s symbol", p->path, BH_PLUGIN_ENTRY_SYMBOL);
    const struct bh_plugin_info *info = entry(&host_api);
    if (plugin_check_header(p->path, info, err) < 0 ||
        plugin_check_identity(p->path, info, err) < 0 ||
        config_build(p->path, info, config, &p->config, err) < 0)
        return -1;
    plugin_init_fn init;
    plugin_fini_fn fini;
    plugin_lifecycle(info, &init, &fini);
    if (init && init(&p->state, p->config, err) < 0)
        return bh_err_wrap(err, "%s: init", p->path);
    p->info = info;
    return 0;
}

int bh_plugin_load(const char *path, const cJSON *config, struct bh_plugin **out,
                   struct bh_err *err)
{
    struct bh_err local;
    if (!err)
        err = &local;
    bh_err_clear(err);
    struct bh_plugin *p = bh_xcalloc(1, sizeof(*p));
    p->path = bh_xstrdup(path);
    if (plugin_open(p, config, err) < 0) {
        bh_error("plugin", "%s", err->msg);
        plugin_discard(p);
        return -1;
    }
    bh_info("plugin", "loaded %s (%s %s)", path, p->info->name,
            p->info->version ? p->info->version : "");
    *out = p;
    return 0;
}

void bh_plugin_unload(struct bh_plugin *p)
{
    if (!p)
        return;
    plugin_init_fn init;
    plugin_fini_fn fini;
    plugin_lifecycle(p->info, &init, &fini);
    if (fini)
        fini(p->state);
    plugin_discard(p);
}

/* ---- the plugin directory ----------------------------------------------------------------- */

static int plugins_file_filter(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    return n > 6 && strncmp(d->d_name, "bh-", 3) == 0 && strcmp(d->d_name + n - 3, ".so") == 0;
}

/* "bh-network-none.so" -> "network/none": the key of the plugin's entry in the config map. */
static char *plugins_config_key(const char *file)
{
    char *key = bh_xstrndup(file + 3, strlen(file) - 6);
    char *dash = strchr(key, '-');
    if (dash)
        *dash = '/';
    return key;
}

static void plugins_refuse(struct bh_plugins *ps, const char *file, const char *error)
{
    ps->refused = bh_xrealloc(ps->refused, (ps->n_refused + 1) * sizeof(*ps->refused));
    ps->refused[ps->n_refused].file = bh_xstrdup(file);
    ps->refused[ps->n_refused].error = bh_xstrdup(error);
    ps->n_refused++;
}

static void plugins_add(struct bh_plugins *ps, struct bh_plugin *p)
{
    /* Names match file names, so one directory cannot hold two; this guards find()'s
     * answer being unique should plugins ever come from more than one place. */
    if (bh_plugins_find(ps, p->info->kind, p->info->name)) {
        struct bh_err err;
        bh_err_set(&err, BH_ECONFLICT, "%s: a plugin %s is already loaded", p->path, p->info->name);
        bh_error("plugin", "%s", err.msg);
        plugins_refuse(ps, p->path, err.msg);
        bh_plugin_unload(p);
        return;
    }
    ps->items = bh_xrealloc(ps->items, (ps->n + 1) * sizeof(*ps->items));
    ps->items[ps->n++] = p;
}

static void plugins_load_one(struct bh_plugins *ps, const char *dir, const char *file,
                             const cJSON *config)
{
    bh_autofree char *path = bh_xasprintf("%s/%s", dir, file);
    bh_autofree char *key = plugins_config_key(file);
    const cJSON *own = cJSON_GetObjectItemCaseSensitive(config, key);
    struct bh_plugin *p;
    struct bh_err err;
    if (bh_plugin_load(path, own, &p, &err) < 0)
        plugins_refuse(ps, path, err.msg);
    else
        plugins_add(ps, p);
}

int bh_plugins_load_dir(const char *dir, const cJSON *config, struct bh_plugins **out,
                        struct bh_err *err)
{
    struct dirent **names;
    int n = scandir(dir, &names, plugins_file_filter, alphasort);
    if (n < 0)
        return bh_err_errno(err, BH_EIO, "plugin directory %s", dir);
    struct bh_plugins *ps = bh_xcalloc(1, sizeof(*ps));
    for (int i = 0; i < n; i++) {
        plugins_load_one(ps, dir, names[i]->d_name, config);
        free(names[i]);
    }
    free(names);
    *out = ps;
    return 0;
}

void bh_plugins_free(struct bh_plugins *ps)
{
    if (!ps)
        return;
    /* Reverse order: a plugin loaded later may have been set up on top of an earlier one. */
    for (size_t i = ps->n; i > 0; i--)
        bh_plugin_unload(ps->items[i - 1]);
    for (size_t i = 0; i < ps->n_refused; i++) {
        free(ps->refused[i].file);
        free(ps->refused[i].error);
    }
    free(ps->items);
    free(ps->refused);
    free(ps);
}

struct bh_plugin *bh_plugins_find(struct bh_plugins *ps, enum bh_plugin_kind kind, const char *name)
{
    for (size_t i = 0; ps && i < ps->n; i++)
        if (ps->items[i]->info->kind == kind && strcmp(ps->items[i]->info->name, name) == 0)
            return ps->items[i];
    return NULL;
}

static cJSON *plugins_describe_one(const struct bh_plugin *p)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "file", p->path);
    cJSON_AddStringToObject(o, "kind", plugin_kind_find(p->info->kind)->name);
    cJSON_AddStringToObject(o, "name", p->info->name);
    cJSON_AddStringToObject(o, "version", p->info->version ? p->info->version : "");
    return o;
}

cJSON *bh_plugins_describe(struct bh_plugins *ps)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *loaded = cJSON_AddArrayToObject(root, "loaded");
    cJSON *refused = cJSON_AddArrayToObject(root, "refused");
    for (size_t i = 0; ps && i < ps->n; i++)
        cJSON_AddItemToArray(loaded, plugins_describe_one(ps->items[i]));
    for (size_t i = 0; ps && i < ps->n_refused; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "file", ps->refused[i].file);
        cJSON_AddStringToObject(o, "error", ps->refused[i].error);
        cJSON_AddItemToArray(refused, o);
    }
    return root;
}
