/* Recent history for the dashboard's charts, kept in memory and bounded: per instance its
 * resource use (CPU, memory, network, disk), per pool its depth, and the last claim latencies
 * and hibernate/restore times, so a chart opens with the recent past instead of empty.
 *
 * A sampler thread reads every running instance's cgroup and every pool's status each
 * BH_SAMPLES_STEP_MS into a ring of BH_SAMPLES_POINTS per series (15 minutes); a series not
 * refreshed for that long is dropped, and at most BH_SAMPLES_SERIES_MAX series are kept, so
 * memory stays under BH_SAMPLES_SERIES_MAX * BH_SAMPLES_POINTS * 56 bytes (~10 MiB). An
 * instance that someone watches (events.h, filter.instance) also gets each sample published
 * as an instance.stats event; nobody watching, nothing is published. Claim latencies and
 * hibernate/restore times come from the event hub (bh_samples_on_event), the last
 * BH_SAMPLES_EVENTS of each. */
#ifndef BH_SAMPLES_H
#define BH_SAMPLES_H

#include <cjson/cJSON.h>

#include "ctx.h"
#include "err.h"

#define BH_SAMPLES_STEP_MS 5000
#define BH_SAMPLES_POINTS 180 /* 15 minutes at BH_SAMPLES_STEP_MS */
#define BH_SAMPLES_SERIES_MAX 1024
#define BH_SAMPLES_EVENTS 500

struct bh_samples;

/* ctx is borrowed and must outlive the result. */
struct bh_samples *bh_samples_new(struct bh_ctx *ctx);
/* Stops the sampler thread (if started); the rings stay readable. NULL is fine. */
void bh_samples_stop(struct bh_samples *s);
/* Stops the sampler and frees everything. NULL is fine. */
void bh_samples_free(struct bh_samples *s);
/* Starts the sampler thread. */
BH_MUST_CHECK int bh_samples_start(struct bh_samples *s, struct bh_err *err);
/* One sampling round, on the caller's thread (the sampler's body; unit tests call it). */
void bh_samples_tick(struct bh_samples *s);

/* An event hub listener (ud = the samples): keeps tenant.claimed latencies and
 * hibernate.done / restore.done times. */
void bh_samples_on_event(const char *type, const cJSON *event, void *ud);

/* The instance's samples, oldest first: an array of {t, cpuNs, memoryBytes, memoryLimitBytes,
 * netBytes, diskBytes, diskLimitBytes} (-1 where unknown; t in Unix seconds). Owned; an empty
 * array when there are none. */
cJSON *bh_samples_instance(struct bh_samples *s, const char *id);
/* {"stepSeconds", "pools": {name: [{t, ready, warming, size}]}, "claims": [{id, t, source,
 * ms}], "hibernate": [{id, t, kind, ms, bytes}]}, oldest first. Owned. */
cJSON *bh_samples_overview(struct bh_samples *s);

#endif
