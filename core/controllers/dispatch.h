/* Reconciler wiring: store events mapped to the queue keys ("Kind/name") they may affect,
 * and each key routed to its kind's controller. */
#ifndef BH_DISPATCH_H
#define BH_DISPATCH_H

#include "ctx.h"
#include "err.h"

struct bh_store_event;

/* The queue's reconcile function: ctx is the struct bh_ctx. */
int bh_dispatch_reconcile(void *ctx, const char *key, long *requeue_ms, struct bh_err *err);
/* A store subscriber (ud: the struct bh_ctx): enqueues what a change may affect. */
void bh_dispatch_event(const struct bh_store_event *ev, void *ud);
/* Enqueues every object of the kinds that have a controller (startup). */
void bh_dispatch_all(struct bh_ctx *ctx);

#endif
