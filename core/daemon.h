/* The daemon: reads the settings, opens the parts the controllers run on (store, image store,
 * runtime, plugins, reconciler) in order, recovers what a previous run left, and applies
 * manifests. */
#ifndef BH_DAEMON_H
#define BH_DAEMON_H

#include <cjson/cJSON.h>

#include "ctx.h"
#include "err.h"

/* Opens everything under cfg (taken over: settings.h fills it), recovers what a previous run left,
 * starts the reconciler. */
int bh_daemon_open(struct bh_settings *cfg, struct bh_ctx **out, struct bh_err *err);
void bh_daemon_close(struct bh_ctx *ctx);
/* Creates or updates every object in the YAML files of dir. */
int bh_daemon_apply_dir(struct bh_ctx *ctx, const char *dir, struct bh_err *err);
/* The checks an object of the four kinds passes before it is stored: the schema and CEL rules
 * (defaults filled into obj), the plugins' and the trigger adapters'. */
int bh_daemon_check(struct bh_ctx *ctx, cJSON *obj, struct bh_err *err);
/* Creates or updates one validated object (borrowed). *out optional, owned. */
int bh_daemon_apply(struct bh_ctx *ctx, cJSON *obj, cJSON **out, struct bh_err *err);

#endif
