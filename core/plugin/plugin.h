/* The plugin host: dlopen()s bh-<kind>-<name>.so files from the plugin directory at startup,
 * checks size / ABI major / build signature before reading anything else, checks the kind's
 * required ops, validates each plugin's config against its declared schema, gives the
 * instance its handle and calls its init. A plugin that fails any check is refused with an
 * error naming the file; the others still load. It also checks workloads against the values
 * the loaded plugins serve. */
#ifndef BH_PLUGIN_LOADER_H
#define BH_PLUGIN_LOADER_H

#include <boilerhouse/plugin.h>
#include <cjson/cJSON.h>
#include <pthread.h>

#include "err.h"

struct bh_secrets;

/* What the daemon lends its plugins; borrowed, must outlive them. */
struct bh_plugin_env {
    const char *state_dir;      /* the daemon's state dir; NULL: /var/lib/boilerhouse */
    struct bh_secrets *secrets; /* NULL: host->secret_get fails with BH_EUNAVAIL */
};

struct bh_plugin {
    char *path;
    const struct bh_plugin_info *info; /* borrowed from the .so */
    void *state;                       /* from ops->init */
    struct bh_plugin_handle *handle;   /* the instance's, owned */
    void *dl;
    pthread_mutex_t call_lock; /* held around every call unless BH_PLUGIN_THREADSAFE */
};

struct bh_plugins;

/* config (borrowed, may be NULL): {"network/unrestricted": {"key": value, ...}, ...}.
 * Loads every bh-*.so in dir (sorted by name); refused plugins are logged at error level and
 * listed by bh_plugins_describe. Fails only if dir cannot be read. */
int bh_plugins_load_dir(const struct bh_plugin_env *env, const char *dir, const cJSON *config,
                        struct bh_plugins **out, struct bh_err *err);
/* Loads one file; the building block of load_dir and of the loader's tests. config
 * (borrowed, may be NULL) is the plugin's own object, {"key": value}. On refusal err->msg
 * starts with path and says what is wrong. *out is owned; release with bh_plugin_unload. */
int bh_plugin_load(const struct bh_plugin_env *env, const char *path, const cJSON *config,
                   struct bh_plugin **out, struct bh_err *err);
void bh_plugin_unload(struct bh_plugin *p);
void bh_plugins_free(struct bh_plugins *ps);

/* Finds a loaded plugin by kind and name; NULL if none. */
struct bh_plugin *bh_plugins_find(struct bh_plugins *ps, uint32_t kind, const char *name);
/* The i-th loaded plugin of kind (in load order); NULL past the last. */
struct bh_plugin *bh_plugins_nth(struct bh_plugins *ps, uint32_t kind, size_t i);
/* {"loaded": [{"file","kind","name","version"}], "refused": [{"file","error"}]}, owned. */
cJSON *bh_plugins_describe(struct bh_plugins *ps);

/* Every op call goes between enter and leave (BH_PLUGIN_CALL): they hold the plugin's call
 * lock unless it declared BH_PLUGIN_THREADSAFE. */
void bh_plugin_enter(struct bh_plugin *p);
void bh_plugin_leave(struct bh_plugin *p);
#define BH_PLUGIN_CALL(p, call)                                                                    \
    __extension__({                                                                                \
        bh_plugin_enter(p);                                                                        \
        int bh_call_rc_ = (call);                                                                  \
        bh_plugin_leave(p);                                                                        \
        bh_call_rc_;                                                                               \
    })

/* For a BoilerhouseWorkload (other kinds pass): spec.network.access must be served by a loaded
 * network plugin, and every other key of spec.network but websocket declared by that plugin
 * with the declared type. BH_EINVAL naming the path and the served values. */
int bh_plugins_check_resource(struct bh_plugins *ps, const cJSON *obj, struct bh_err *err);

/* The host API table handed to plugins (tests call it with a loaded plugin's handle). */
const struct bh_host_api *bh_plugin_host_api(void);

#endif
