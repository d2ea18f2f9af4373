/* Prometheus metrics (text exposition format 0.0.4): counters and histograms fed by the
 * event hub (claims by source and outcome, releases, idle timeouts, hibernate and restore,
 * trigger verdicts), and gauges read at scrape time (instances by phase, pools, snapshots,
 * the reconcile queue, the process). No label carries a tenant ID: every label value comes
 * from a fixed set or from an operator's object names (workloads, pools, triggers). */
#ifndef BH_METRICS_H
#define BH_METRICS_H

#include "ctx.h"
#include "err.h"

/* Creates the metrics and subscribes them to ctx->events (which must exist). Owned. */
struct bh_metrics *bh_metrics_new(struct bh_ctx *ctx);
void bh_metrics_free(struct bh_metrics *m);
/* Observations that do not come through the event hub; m may be NULL (unit tests). */
enum bh_metrics_policy { BH_METRICS_CLAIM_POLICY, BH_METRICS_GUARD };
enum bh_metrics_verdict { BH_METRICS_ALLOW, BH_METRICS_DENY, BH_METRICS_ERROR };
/* A claim policy or trigger guard run and how long it took. */
void bh_metrics_policy_run(struct bh_metrics *m, enum bh_metrics_policy kind,
                           enum bh_metrics_verdict verdict, double seconds);
/* A store commit's duration: a bh_store_commit_fn (ud = the metrics). */
void bh_metrics_store_commit(double seconds, void *ud);
/* Seconds on the monotonic clock, for the durations above. */
double bh_metrics_clock(void);

/* The exposition text, *out owned. */
BH_MUST_CHECK int bh_metrics_render(struct bh_ctx *ctx, char **out, struct bh_err *err);

#endif
