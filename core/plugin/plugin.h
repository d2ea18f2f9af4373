/* The plugin loader: dlopen()s bh-<kind>-<name>.so files from the plugin directory at
 * startup, checks size / ABI major / build signature before reading anything else,
 * validates each plugin's config against its declared schema, and calls its init. A plugin
 * that fails any check is refused with an error naming the file; the others still load. */
#ifndef BH_PLUGIN_LOADER_H
#define BH_PLUGIN_LOADER_H

#include <boilerhouse/plugin.h>
#include <cjson/cJSON.h>

#include "err.h"

struct bh_plugin {
    char *path;
    const struct bh_plugin_info *info; /* borrowed from the .so */
    void *state;                       /* from ops->init */
    struct bh_config *config;
    void *handle;
};

struct bh_plugins;

/* config (borrowed, may be NULL): {"network/unrestricted": {"key": value, ...}, ...}.
 * Loads every bh-*.so in dir (sorted by name); refused plugins are logged at error level and
 * listed by bh_plugins_describe. Fails only if dir cannot be read. */
int bh_plugins_load_dir(const char *dir, const cJSON *config, struct bh_plugins **out,
                        struct bh_err *err);
/* Loads one file; the building block of load_dir and of the loader's tests. config
 * (borrowed, may be NULL) is the plugin's own object, {"key": value}. On refusal err->msg
 * starts with path and says what is wrong. *out is owned; release with bh_plugin_unload. */
int bh_plugin_load(const char *path, const cJSON *config, struct bh_plugin **out,
                   struct bh_err *err);
void bh_plugin_unload(struct bh_plugin *p);
void bh_plugins_free(struct bh_plugins *ps);

/* Finds a loaded plugin by kind and name; NULL if none. */
struct bh_plugin *bh_plugins_find(struct bh_plugins *ps, enum bh_plugin_kind kind,
                                  const char *name);
/* {"loaded": [{"file","kind","name","version"}], "refused": [{"file","error"}]}, owned. */
cJSON *bh_plugins_describe(struct bh_plugins *ps);

/* The host API table handed to plugins (also used by plugin tests). */
const struct bh_host_api *bh_plugin_host_api(void);
struct bh_secrets;
/* The store host->secret_get() reads (borrowed; NULL detaches it). */
void bh_plugin_set_secrets(struct bh_secrets *secrets);
/* Sets what host->state_dir() returns. */
void bh_plugin_set_state_dir(const char *dir);

#endif
