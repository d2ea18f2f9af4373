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

/* ---- trigger and guard instances (ABI 2.1) ---- */

struct bh_config;

/* A handler's answer on the shared listener (struct bh_http_response of the SDK): filled by
 * host->http_respond, sent and freed by the listener. */
struct bh_http_response {
    int status;         /* 0: the handler gave none (the listener answers 500) */
    char *content_type; /* owned */
    char *body;         /* owned */
    size_t len;
};
void bh_plugin_response_clear(struct bh_http_response *r);

/* Who serves an instance's 2.1 host calls (the trigger controller): the same shapes as the
 * SDK's host calls, reached through the instance's handle. */
struct bh_plugin_hooks {
    int (*emit)(struct bh_plugin_handle *h, const struct bh_event *ev, struct bh_event_reply *reply,
                struct bh_err *err);
    int (*http_route)(struct bh_plugin_handle *h, const char *path, bh_http_handler_fn fn,
                      void *arg, struct bh_err *err);
    void (*failed)(struct bh_plugin_handle *h, const char *reason);
    void (*status_set)(struct bh_plugin_handle *h, const char *key, const char *value);
};

/* The value of a resource field that names the plugin (trigger spec.type, guard type):
 * info->serves, or the plugin's name. */
const char *bh_plugin_serves(const struct bh_plugin *p);
/* Finds the loaded plugin of kind serving value; NULL if none. */
struct bh_plugin *bh_plugins_serving(struct bh_plugins *ps, uint32_t kind, const char *value);
/* Validates an instance's config (a trigger's spec.config, a guard's config) against the
 * plugin's serves_schema; where names the field in errors ("spec.config"). *out owned. */
int bh_plugin_instance_config(const struct bh_plugin *p, const char *where, const cJSON *given,
                              struct bh_config **out, struct bh_err *err);
/* A handle for one instance named name (a trigger's name, "<trigger>.guard<i>"): its config
 * (taken), a state dir below the plugin's, the plugin's secrets, and hooks/owner for its 2.1
 * calls. */
struct bh_plugin_handle *bh_plugin_instance_handle(struct bh_plugin *p, const char *name,
                                                   struct bh_config *cfg,
                                                   const struct bh_plugin_hooks *hooks,
                                                   void *owner);
void bh_plugin_instance_handle_free(struct bh_plugin_handle *h);
void *bh_plugin_handle_owner(struct bh_plugin_handle *h);
void bh_plugin_config_free(struct bh_config *cfg);

/* For a BoilerhouseWorkload (other kinds pass): spec.network.access must be served by a loaded
 * network plugin, and every other key of spec.network but websocket declared by that plugin
 * with the declared type. BH_EINVAL naming the path and the served values. */
int bh_plugins_check_resource(struct bh_plugins *ps, const cJSON *obj, struct bh_err *err);

/* The host API table handed to plugins (tests call it with a loaded plugin's handle). */
const struct bh_host_api *bh_plugin_host_api(void);

#endif
