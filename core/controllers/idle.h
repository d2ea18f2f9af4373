/* Idle detection: what counts as a tenant's activity in an instance, and how long ago the
 * last was. */
#ifndef BH_IDLE_H
#define BH_IDLE_H

#include <cjson/cJSON.h>

#include "ctx.h"
#include "err.h"

/* Touches kept in memory between their store writes (see bh_idle_touch). */
struct bh_idle;
struct bh_idle *bh_idle_new(void);
void bh_idle_free(struct bh_idle *t);

/* Samples the instance's activity (CPU, network, watched dirs), records it in its status and
 * sets *idle_ms to the time since the last activity. */
int bh_idle_sample(struct bh_ctx *ctx, cJSON *inst, const cJSON *workload, long long *idle_ms,
                   struct bh_err *err);
/* Records activity now (API claim, exec, keepalive). With ctx->idle, written to the store at
 * most once a second per instance (the touches between are kept in memory, and
 * bh_idle_sample counts them); without, every touch is written. An unknown id fails only
 * when written. */
int bh_idle_touch(struct bh_ctx *ctx, const char *id, struct bh_err *err);
/* Milliseconds until the instance counts as idle, -1 if the workload has no idle timeout. */
long long bh_idle_left_ms(const cJSON *inst, const cJSON *workload);
long long bh_idle_sample_interval_ms(void);

#endif
