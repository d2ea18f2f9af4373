/* Operator mode (docs/kubernetes-mode.md): with a kubeconfig (or in a Pod), the daemon's store
 * is the cache of the cluster's four kinds (core/kube/mirror.h) and only the holder of the
 * Lease runs the controllers (core/kube/lease.h). */
#ifndef BH_OPERATOR_H
#define BH_OPERATOR_H

#include <cjson/cJSON.h>

#include "ctx.h"
#include "err.h"

/* The checks an object from the cluster passes before it enters the store (the daemon's:
 * bh_daemon_check). */
typedef int (*bh_operator_check_fn)(struct bh_ctx *ctx, cJSON *obj, struct bh_err *err);

/* Whether the settings ask for operator mode. */
int bh_operator_enabled(const struct bh_settings *cfg);
/* Whether instances run as Pods: --runtime kube, or operator mode without --runtime. */
int bh_operator_runs_pods(const struct bh_settings *cfg);
/* Refuses settings that cannot work together (--runtime kube without a cluster). */
BH_MUST_CHECK int bh_operator_check_settings(const struct bh_settings *cfg, struct bh_err *err);
/* Connects to the cluster and fills the store with its objects (ctx->op; ctx->standby set
 * until this replica leads); opens the Pod runtime as ctx->runtime when bh_operator_runs_pods.
 * Call after the store opened, before recovery reads it. */
BH_MUST_CHECK int bh_operator_open(struct bh_ctx *ctx, bh_operator_check_fn check,
                                   struct bh_err *err);
/* Starts competing for the Lease; call once the reconciler's queue exists. */
BH_MUST_CHECK int bh_operator_elect(struct bh_ctx *ctx, struct bh_err *err);
/* Gives up the Lease, stops the mirror (which stays subscribed to the store, taking nothing). */
void bh_operator_close(struct bh_ctx *ctx);
/* Frees the mirror and the cluster connection; after bh_operator_close, once the runtime is
 * closed and nothing writes the store any more (boot threads done). */
void bh_operator_free(struct bh_ctx *ctx);

#endif
