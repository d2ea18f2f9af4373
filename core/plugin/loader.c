/* Loading plugins: the checks on info and ops (table-driven per kind), the instance's handle
 * and the call lock, and the set of loaded plugins. */
#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"
#include "name.h"
#include "plugin_int.h"

#define HOST_DEFAULT_STATE_DIR "/var/lib/boilerhouse"

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

/* The members every ops table starts with (BH_PLUGIN_OPS_HEAD). */
struct plugin_ops_head {
    BH_PLUGIN_OPS_HEAD;
};

#define OPS_END(type, last) (offsetof(type, last) + sizeof(((type *)0)->last))

static int net_ops_ok(const void *ops)
{
    const struct bh_network_ops *o = ops;
    return o->prepare && o->attach && o->detach;
}

static int trigger_ops_ok(const void *ops)
{
    const struct bh_trigger_ops *o = ops;
    return o->start && o->stop;
}

static int guard_ops_ok(const void *ops)
{
    const struct bh_guard_ops *o = ops;
    return o->open && o->close && o->evaluate;
}

static int storage_ops_ok(const void *ops)
{
    const struct bh_storage_ops *o = ops;
    return o->put && o->get && o->stat && o->del;
}

/* What the loader knows about each kind. ops_min is the end of the kind's required ops, not
 * sizeof: a table from an older minor ends there, and the optional ops after it read as
 * absent (BH_HAS_OP). state_fmt places an instance's own directory below the
 * daemon's state dir (%s: the plugin name); network and storage keep the ABI 1 places. */
struct plugin_kind {
    uint32_t kind;
    const char *name;
    size_t ops_min;
    int (*ops_ok)(const void *ops); /* the required ops are set */
    const char *state_fmt;
};

static const struct plugin_kind plugin_kinds[] = {
    /* Trigger and guard ops since 2.1; an instance's own directory is below these. */
    {BH_PLUGIN_TRIGGER, "trigger", OPS_END(struct bh_trigger_ops, stop), trigger_ops_ok,
     "triggers/%s"},
    {BH_PLUGIN_GUARD, "guard", OPS_END(struct bh_guard_ops, evaluate), guard_ops_ok, "guards/%s"},
    /* The daemon uses one storage plugin (BOILERHOUSE_STORAGE): its area is the snapshots. */
    {BH_PLUGIN_STORAGE, "storage", OPS_END(struct bh_storage_ops, del), storage_ops_ok,
     "snapshots"},
    {BH_PLUGIN_NETWORK, "network", OPS_END(struct bh_network_ops, detach), net_ops_ok, "net/%s"},
};

static const struct plugin_kind *plugin_kind_find(uint32_t kind)
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

static int plugin_check_ops(const char *path, const struct plugin_kind *k, const void *ops,
                            struct bh_err *err)
{
    const struct plugin_ops_head *head = ops;
    if (!head)
        return bh_err_set(err, BH_EINVAL, "%s: ops table is NULL", path);
    if (head->size < k->ops_min)
        return bh_err_set(err, BH_EINVAL, "%s: %s ops size %zu, daemon needs at least %zu", path,
                          k->name, head->size, k->ops_min);
    if (!k->ops_ok(ops))
        return bh_err_set(err, BH_EINVAL, "%s: a required %s op is NULL", path, k->name);
    return 0;
}

/* What a plugin serves: a DNS label and a well-formed schema of its part of the resource. */
static int plugin_check_serves(const char *path, const struct bh_plugin_info *info,
                               struct bh_err *err)
{
    const char *v = info->serves;
    if (v && !bh_name_label_valid(v))
        return bh_err_set(err, BH_EINVAL, "%s: serves \"%.64s\", which is not a DNS label", path,
                          v);
    return bh_plugin_schema_check(path, "serves schema", info, info->serves_schema,
                                  info->n_serves_schema, BH_CFG_JSON, err);
}

/* Kind, name (which must match the file name), ops and served values. */
static int plugin_check_identity(const char *path, const struct bh_plugin_info *info,
                                 struct bh_err *err)
{
    const struct plugin_kind *k = plugin_kind_find(info->kind);
    if (!k)
        return bh_err_set(err, BH_EINVAL, "%s: unknown plugin kind %u", path, info->kind);
    if (!plugin_name_ok(info->name))
        return bh_err_set(err, BH_EINVAL, "%s: plugin name \"%.64s\" is not [a-z0-9-]+", path,
                          info->name ? info->name : "(null)");
    bh_autofree char *want = bh_xasprintf("bh-%s-%s.so", k->name, info->name);
    if (strcmp(plugin_basename(path), want) != 0)
        return bh_err_set(err, BH_EINVAL, "%s: plugin says it is %s/%s, so the file must be %s",
                          path, k->name, info->name, want);
    if (plugin_check_ops(path, k, info->ops, err) < 0)
        return -1;
    return plugin_check_serves(path, info, err);
}

/* ---- the call lock ------------------------------------------------------------------------ */

void bh_plugin_enter(struct bh_plugin *p)
{
    if (!(p->info->flags & BH_PLUGIN_THREADSAFE))
        pthread_mutex_lock(&p->call_lock);
}

void bh_plugin_leave(struct bh_plugin *p)
{
    if (!(p->info->flags & BH_PLUGIN_THREADSAFE))
        pthread_mutex_unlock(&p->call_lock);
}

/* ---- loading one plugin ------------------------------------------------------------------- */

/* Frees a plugin whose init did not run (or failed): no fini. */
static void plugin_discard(struct bh_plugin *p)
{
    bh_plugin_handle_free(p->handle);
    if (p->dl)
        dlclose(p->dl);
    pthread_mutex_destroy(&p->call_lock);
    free(p->path);
    free(p);
}

static char *plugin_state_dir(const struct bh_plugin_env *env, const struct bh_plugin_info *info)
{
    const char *root = env && env->state_dir ? env->state_dir : HOST_DEFAULT_STATE_DIR;
    bh_autofree char *own = bh_xasprintf(plugin_kind_find(info->kind)->state_fmt, info->name);
    return bh_xasprintf("%s/%s", root, own);
}

static int plugin_start(struct bh_plugin *p, const struct bh_plugin_env *env, struct bh_config *cfg,
                        struct bh_err *err)
{
    const struct plugin_ops_head *ops = p->info->ops;
    bh_autofree char *dir = plugin_state_dir(env, p->info);
    p->handle = bh_plugin_handle_new(p, dir, env ? env->secrets : NULL, cfg);
    if (ops->init && BH_PLUGIN_CALL(p, ops->init(p->handle, &p->state, err)) < 0)
        return bh_err_wrap(err, "%s: init", p->path);
    return 0;
}

static int plugin_open(struct bh_plugin *p, const struct bh_plugin_env *env, const cJSON *config,
                       struct bh_err *err)
{
    p->dl = dlopen(p->path, RTLD_NOW | RTLD_LOCAL);
    if (!p->dl)
        return bh_err_set(err, BH_EINVAL, "%s: dlopen: %s", p->path, dlerror());
    bh_plugin_entry_fn entry = (bh_plugin_entry_fn)dlsym(p->dl, BH_PLUGIN_ENTRY_SYMBOL);
    if (!entry)
        return bh_err_set(err, BH_EINVAL, "%s: no %s symbol", p->path, BH_PLUGIN_ENTRY_SYMBOL);
    const struct bh_plugin_info *info = entry(bh_plugin_host_api());
    struct bh_config *cfg = NULL;
    if (plugin_check_header(p->path, info, err) < 0 ||
        plugin_check_identity(p->path, info, err) < 0 ||
        bh_plugin_config_build(p->path, info, config, &cfg, err) < 0)
        return -1;
    p->info = info;
    return plugin_start(p, env, cfg, err);
}

int bh_plugin_load(const struct bh_plugin_env *env, const char *path, const cJSON *config,
                   struct bh_plugin **out, struct bh_err *err)
{
    struct bh_err local;
    if (!err)
        err = &local;
    bh_err_clear(err);
    struct bh_plugin *p = bh_xcalloc(1, sizeof(*p));
    p->path = bh_xstrdup(path);
    pthread_mutex_init(&p->call_lock, NULL);
    if (plugin_open(p, env, config, err) < 0) {
        if (err->code == BH_EUNAVAIL && !config) /* bh_plugin_config_build: not set up */
            bh_info("plugin", "%s: not loaded (not configured)", err->msg);
        else
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
    const struct plugin_ops_head *ops = p->info->ops;
    if (ops->fini) {
        bh_plugin_enter(p);
        ops->fini(p->state);
        bh_plugin_leave(p);
    }
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

/* The loaded plugin of p's kind serving the same value, if any. */
static const struct bh_plugin *plugins_serving(struct bh_plugins *ps, const struct bh_plugin *p)
{
    for (size_t i = 0; p->info->serves && i < ps->n; i++) {
        const struct bh_plugin_info *o = ps->items[i]->info;
        if (o->kind == p->info->kind && o->serves && strcmp(o->serves, p->info->serves) == 0)
            return ps->items[i];
    }
    return NULL;
}

static void plugins_add(struct bh_plugins *ps, struct bh_plugin *p)
{
    /* Names match file names, so one directory cannot hold two; this guards find()'s
     * answer being unique should plugins ever come from more than one place. A served value
     * must name one plugin too. */
    const struct bh_plugin *twin = plugins_serving(ps, p);
    if (bh_plugins_find(ps, p->info->kind, p->info->name) || twin) {
        struct bh_err err;
        if (twin)
            bh_err_set(&err, BH_ECONFLICT, "%s: %s already serves \"%s\"", p->path, twin->path,
                       p->info->serves);
        else
            bh_err_set(&err, BH_ECONFLICT, "%s: a plugin %s is already loaded", p->path,
                       p->info->name);
        bh_error("plugin", "%s", err.msg);
        plugins_refuse(ps, p->path, err.msg);
        bh_plugin_unload(p);
        return;
    }
    ps->items = bh_xrealloc(ps->items, (ps->n + 1) * sizeof(*ps->items));
    ps->items[ps->n++] = p;
}

static void plugins_load_one(struct bh_plugins *ps, const struct bh_plugin_env *env,
                             const char *dir, const char *file, const cJSON *config)
{
    bh_autofree char *path = bh_xasprintf("%s/%s", dir, file);
    bh_autofree char *key = plugins_config_key(file);
    const cJSON *own = cJSON_GetObjectItemCaseSensitive(config, key);
    struct bh_plugin *p;
    struct bh_err err;
    if (bh_plugin_load(env, path, own, &p, &err) < 0)
        plugins_refuse(ps, path, err.msg);
    else
        plugins_add(ps, p);
}

int bh_plugins_load_dir(const struct bh_plugin_env *env, const char *dir, const cJSON *config,
                        struct bh_plugins **out, struct bh_err *err)
{
    struct dirent **names;
    int n = scandir(dir, &names, plugins_file_filter, alphasort);
    if (n < 0)
        return bh_err_errno(err, BH_EIO, "plugin directory %s", dir);
    struct bh_plugins *ps = bh_xcalloc(1, sizeof(*ps));
    for (int i = 0; i < n; i++) {
        plugins_load_one(ps, env, dir, names[i]->d_name, config);
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

struct bh_plugin *bh_plugins_find(struct bh_plugins *ps, uint32_t kind, const char *name)
{
    for (size_t i = 0; ps && i < ps->n; i++)
        if (ps->items[i]->info->kind == kind && strcmp(ps->items[i]->info->name, name) == 0)
            return ps->items[i];
    return NULL;
}

const char *bh_plugin_serves(const struct bh_plugin *p)
{
    return p->info->serves ? p->info->serves : p->info->name;
}

struct bh_plugin *bh_plugins_serving(struct bh_plugins *ps, uint32_t kind, const char *value)
{
    for (size_t i = 0; ps && value && i < ps->n; i++)
        if (ps->items[i]->info->kind == kind && strcmp(bh_plugin_serves(ps->items[i]), value) == 0)
            return ps->items[i];
    return NULL;
}

struct bh_plugin *bh_plugins_nth(struct bh_plugins *ps, uint32_t kind, size_t i)
{
    for (size_t j = 0; ps && j < ps->n; j++)
        if (ps->items[j]->info->kind == kind && i-- == 0)
            return ps->items[j];
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
