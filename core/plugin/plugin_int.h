/* Shared by the plugin host's files (loader.c, host_api.c, config.c, serves.c); not part of
 * the layer's interface. */
#ifndef BH_PLUGIN_INT_H
#define BH_PLUGIN_INT_H

#include "plugin.h"

/* A plugin instance's validated configuration: every declared key that was given or has a
 * default, already typed, so the config_* accessors never parse. */
struct bh_config {
    cJSON *values; /* owned object */
};

struct bh_plugin_handle {
    struct bh_plugin *plugin;   /* borrowed: the instance's plugin */
    char *module;               /* owned: "plugin/<name>", the log attribution */
    char *state_dir;            /* owned: the instance's own directory */
    struct bh_secrets *secrets; /* borrowed; may be NULL */
    struct bh_config *config;   /* owned */
    /* Trigger and guard instances: who serves their 2.1 host calls. */
    const struct bh_plugin_hooks *hooks; /* borrowed; NULL for plugin-level handles */
    void *owner;                         /* the hooks' own data */
    cJSON *json_texts;                   /* owned: config_json answers, kept until fini */
    pthread_mutex_t json_lock;
};

/* The end of the ABI 2.0 struct bh_config_field: a plugin's field_size must reach it. */
#define BH_PLUGIN_FIELD_MIN (offsetof(struct bh_config_field, help) + sizeof(const char *))

/* Takes ownership of cfg. */
struct bh_plugin_handle *bh_plugin_handle_new(struct bh_plugin *p, const char *state_dir,
                                              struct bh_secrets *secrets, struct bh_config *cfg);
void bh_plugin_handle_free(struct bh_plugin_handle *h);

/* The i-th entry of a plugin's field table, stepping by the plugin's declared field_size. */
const struct bh_config_field *bh_plugin_field_at(const struct bh_plugin_info *info,
                                                 const struct bh_config_field *table, size_t i);
/* The entry of table (n entries) for key; NULL if none. */
const struct bh_config_field *bh_plugin_field_find(const struct bh_plugin_info *info,
                                                   const struct bh_config_field *table, size_t n,
                                                   const char *key);
/* Checks a declared table: entries have a key and a type in 1..max_type. what names it. */
int bh_plugin_schema_check(const char *path, const char *what, const struct bh_plugin_info *info,
                           const struct bh_config_field *table, size_t n, uint32_t max_type,
                           struct bh_err *err);
/* 1 if v has the declared type. */
int bh_plugin_value_ok(uint32_t type, const cJSON *v);
/* "a string", "an int", ... for error messages. */
const char *bh_plugin_type_name(uint32_t type);

/* given (borrowed, may be NULL): the plugin's own config object. *out is owned. */
int bh_plugin_config_build(const char *path, const struct bh_plugin_info *info, const cJSON *given,
                           struct bh_config **out, struct bh_err *err);
const cJSON *bh_plugin_config_item(const struct bh_config *cfg, const char *key);

#endif
