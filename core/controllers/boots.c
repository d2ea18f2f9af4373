/* Claim boots; see boots.h. The bound counts claims' boots and restores (a pool's refills
 * have their own, maxFillConcurrency). Retry advice is twice the moving average of a slot's
 * hold time: by then the boots ahead have usually finished. */
#include "boots.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "crashpoint.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "queue.h"

#define BOOTS_RETRY_MAX_S 30
#define BOOTS_HOLD_GUESS_MS 1000 /* until the first boot is measured */

struct claim_boot {
    struct claim_boot *next;
    char *claim;
    char *source;
    long long t0;
    int done;
    cJSON *inst; /* the Running instance, once done */
    char *error; /* why not, once done */
    /* What the thread boots from (owned copies). */
    cJSON *workload, *snapshot;
    char *tenant;
    struct bh_ctx *ctx;
};

struct bh_boots {
    pthread_mutex_t lock;
    int max, busy;
    double hold_ms; /* moving average of a slot's hold time */
    struct claim_boot *list;
};

int bh_boots_thread(struct bh_ctx *ctx, void *(*fn)(void *), void *arg)
{
    pthread_mutex_lock(&ctx->boot_lock);
    ctx->boots_running++;
    pthread_mutex_unlock(&ctx->boot_lock);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &attr, fn, arg) == 0 ? 0 : -1;
    pthread_attr_destroy(&attr);
    if (rc < 0)
        bh_boots_thread_done(ctx);
    return rc;
}

void bh_boots_thread_done(struct bh_ctx *ctx)
{
    pthread_mutex_lock(&ctx->boot_lock);
    ctx->boots_running--;
    pthread_cond_broadcast(&ctx->boot_cond);
    pthread_mutex_unlock(&ctx->boot_lock);
}

struct bh_boots *bh_boots_new(int max)
{
    struct bh_boots *b = bh_xcalloc(1, sizeof(*b));
    pthread_mutex_init(&b->lock, NULL);
    b->max = max;
    b->hold_ms = BOOTS_HOLD_GUESS_MS;
    return b;
}

static void boots_entry_free(struct claim_boot *e)
{
    free(e->claim);
    free(e->source);
    free(e->error);
    free(e->tenant);
    cJSON_Delete(e->inst);
    cJSON_Delete(e->workload);
    cJSON_Delete(e->snapshot);
    free(e);
}

void bh_boots_free(struct bh_boots *b)
{
    if (!b)
        return;
    for (struct claim_boot *e = b->list, *next; e; e = next) {
        next = e->next;
        boots_entry_free(e);
    }
    pthread_mutex_destroy(&b->lock);
    free(b);
}

int bh_boots_take(struct bh_boots *b, int *retry_s, int *busy)
{
    if (!b)
        return 1;
    pthread_mutex_lock(&b->lock);
    int ok = b->max <= 0 || b->busy < b->max;
    if (ok)
        b->busy++;
    long long s = (long long)(2 * b->hold_ms + 999) / 1000;
    *retry_s = (int)(s < 1 ? 1 : s > BOOTS_RETRY_MAX_S ? BOOTS_RETRY_MAX_S : s);
    *busy = b->busy;
    pthread_mutex_unlock(&b->lock);
    return ok;
}

void bh_boots_give(struct bh_boots *b, long long took_ms)
{
    if (!b)
        return;
    pthread_mutex_lock(&b->lock);
    b->busy--;
    if (took_ms >= 0)
        b->hold_ms = 0.8 * b->hold_ms + 0.2 * (double)took_ms;
    pthread_mutex_unlock(&b->lock);
}

static void *boots_thread(void *arg)
{
    struct claim_boot *e = arg;
    struct bh_ctx *ctx = e->ctx;
    struct bh_boot_req req = {
        .workload = e->workload, .tenant = e->tenant, .claim = e->claim, .snapshot = e->snapshot};
    struct bh_err err = {0};
    cJSON *inst = NULL;
    int rc = bh_instance_boot(ctx, &req, &inst, &err);
    /* Running, its claim not yet Active: a restart finds it as the tenant's instance. */
    if (rc == 0)
        bh_crashpoint("boot.before-claim");
    bh_autofree char *key = bh_xasprintf("BoilerhouseClaim/%s", e->claim);
    long long took = bh_clock_ms() - e->t0;
    pthread_mutex_lock(&ctx->boots->lock);
    e->done = 1; /* from here e is the claim's: its reconcile may free it */
    e->inst = inst;
    e->error = rc < 0 ? bh_xstrdup(err.msg) : NULL;
    pthread_mutex_unlock(&ctx->boots->lock);
    bh_boots_give(ctx->boots, took);
    bh_queue_add(ctx->queue, key); /* the claim takes its instance (or its error) */
    bh_boots_thread_done(ctx);
    return NULL;
}

void bh_boots_start(struct bh_ctx *ctx, const struct bh_boot_req *req, const char *source)
{
    struct claim_boot *e = bh_xcalloc(1, sizeof(*e));
    e->ctx = ctx;
    e->claim = bh_xstrdup(req->claim);
    e->tenant = bh_xstrdup(req->tenant);
    e->source = bh_xstrdup(source);
    e->workload = cJSON_Duplicate(req->workload, 1);
    e->snapshot = req->snapshot ? cJSON_Duplicate(req->snapshot, 1) : NULL;
    e->t0 = bh_clock_ms();
    pthread_mutex_lock(&ctx->boots->lock);
    e->next = ctx->boots->list;
    ctx->boots->list = e;
    pthread_mutex_unlock(&ctx->boots->lock);
    if (bh_boots_thread(ctx, boots_thread, e) < 0) {
        /* Reported as the boot's own failure: the claim ends in Error saying so. */
        bh_autofree char *key = bh_xasprintf("BoilerhouseClaim/%s", req->claim);
        pthread_mutex_lock(&ctx->boots->lock);
        e->done = 1;
        e->error = bh_xstrdup("cannot start a boot thread");
        pthread_mutex_unlock(&ctx->boots->lock);
        bh_boots_give(ctx->boots, -1);
        bh_queue_add(ctx->queue, key);
    }
}

int bh_boots_result(struct bh_boots *b, const char *claim, cJSON **inst, char **error,
                    char **source, long long *t0)
{
    if (!b)
        return 0;
    pthread_mutex_lock(&b->lock);
    struct claim_boot **pp = &b->list, *e;
    while ((e = *pp) != NULL && strcmp(e->claim, claim) != 0)
        pp = &e->next;
    int state = !e ? 0 : e->done ? 2 : 1;
    if (state == 2) {
        *pp = e->next;
        *inst = BH_STEAL(e->inst);
        *error = BH_STEAL(e->error);
        *source = BH_STEAL(e->source);
        *t0 = e->t0;
    }
    pthread_mutex_unlock(&b->lock);
    if (state == 2)
        boots_entry_free(e);
    return state;
}
