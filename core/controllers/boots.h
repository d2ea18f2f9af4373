/* Claim boots: the bound on concurrent boots and restores that claims start (admission
 * control: a claim over it is refused at once, not queued), and cold boots run on threads of
 * their own, so the reconciler keeps answering other claims while instances start. */
#ifndef BH_BOOTS_H
#define BH_BOOTS_H

#include <cjson/cJSON.h>

#include "ctx.h"
#include "instance.h"

struct bh_boots;

/* Runs fn(arg) on a detached thread counted in ctx->boots_running (bh_daemon_close waits for
 * them); fn ends with bh_boots_thread_done. -1 if no thread could be started (nothing ran). */
int bh_boots_thread(struct bh_ctx *ctx, void *(*fn)(void *), void *arg);
void bh_boots_thread_done(struct bh_ctx *ctx);

/* max: slots for boots and restores at once; <= 0: no bound. */
struct bh_boots *bh_boots_new(int max);
/* After every boot thread finished (bh_daemon_close waits for ctx->boots_running). */
void bh_boots_free(struct bh_boots *b);
/* Takes a slot (returns 1), or returns 0 with *retry_s set to when one is likely free
 * (seconds, at least 1) and *busy to the slots in use. b NULL: always 1. */
int bh_boots_take(struct bh_boots *b, int *retry_s, int *busy);
/* Gives a slot back; took_ms (how long it was held, -1: unknown) tunes the retry advice. */
void bh_boots_give(struct bh_boots *b, long long took_ms);
/* Boots req (req->claim names the claim; workload and snapshot are copied) on a thread of its
 * own holding a slot already taken, and enqueues the claim's key when done; the result waits
 * for bh_boots_result. */
void bh_boots_start(struct bh_ctx *ctx, const struct bh_boot_req *req, const char *source);
/* The boot of claim: 0 none, 1 still running, 2 finished: *inst (owned; NULL if it failed,
 * *error owned then says why), *source (owned) and *t0 (bh_clock_ms at start) are handed
 * over and the record forgotten. */
int bh_boots_result(struct bh_boots *b, const char *claim, cJSON **inst, char **error,
                    char **source, long long *t0);

#endif
