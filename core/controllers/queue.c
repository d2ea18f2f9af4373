#include "queue.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "mem.h"

#define QUEUE_BACKOFF_BASE_MS 100
#define QUEUE_BACKOFF_MAX_MS 30000

/* One entry per known key; its state says where it is. */
enum item_state { ITEM_IDLE, ITEM_QUEUED, ITEM_DELAYED, ITEM_RUNNING };

struct queue_item {
    char *key;
    enum item_state state;
    int dirty;                     /* added while running: run again when done */
    long long due_ms;              /* for ITEM_DELAYED */
    int failures;                  /* consecutive failures, for backoff */
    struct queue_item *next_ready; /* FIFO of ITEM_QUEUED */
    struct queue_item *next;       /* all items */
};

struct bh_queue {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct queue_item *items;
    struct queue_item *ready_head, *ready_tail;
    int stopping;
    int inline_runs; /* bh_queue_run_here calls running; stop waits for them */
    int n_workers;
    pthread_t *workers;
    bh_reconcile_fn fn;
    void *ctx;
    unsigned long long retries; /* failed reconciles scheduled again (metrics) */
};

static long long queue_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct queue_item *queue_item_get(struct bh_queue *q, const char *key)
{
    for (struct queue_item *it = q->items; it; it = it->next)
        if (strcmp(it->key, key) == 0)
            return it;
    struct queue_item *it = bh_xcalloc(1, sizeof(*it));
    it->key = bh_xstrdup(key);
    it->next = q->items;
    q->items = it;
    return it;
}

static void queue_push_ready(struct bh_queue *q, struct queue_item *it)
{
    it->state = ITEM_QUEUED;
    it->next_ready = NULL;
    if (q->ready_tail)
        q->ready_tail->next_ready = it;
    else
        q->ready_head = it;
    q->ready_tail = it;
    pthread_cond_signal(&q->cond);
}

/* Caller holds the lock. */
static void queue_schedule(struct bh_queue *q, struct queue_item *it, long delay_ms)
{
    if (it->state == ITEM_RUNNING) {
        /* Run again right after the current reconcile; a delay becomes a fresh timer then. */
        if (delay_ms <= 0)
            it->dirty = 1;
        else if (!it->dirty && (it->due_ms == 0 || queue_now_ms() + delay_ms < it->due_ms))
            it->due_ms = queue_now_ms() + delay_ms;
        return;
    }
    if (it->state == ITEM_QUEUED)
        return;
    if (delay_ms <= 0) {
        queue_push_ready(q, it);
        return;
    }
    long long due = queue_now_ms() + delay_ms;
    if (it->state == ITEM_DELAYED && it->due_ms <= due)
        return;
    it->state = ITEM_DELAYED;
    it->due_ms = due;
    /* One idle worker recomputes its wait for the new deadline (waking all of them, eight,
     * after every requeue cost more than the reconcile on a small machine). If it finds
     * ready work instead, queue_take passes the wake on. */
    pthread_cond_signal(&q->cond);
}

void bh_queue_add(struct bh_queue *q, const char *key)
{
    bh_queue_add_after(q, key, 0);
}

void bh_queue_add_after(struct bh_queue *q, const char *key, long delay_ms)
{
    pthread_mutex_lock(&q->lock);
    if (!q->stopping)
        queue_schedule(q, queue_item_get(q, key), delay_ms);
    pthread_mutex_unlock(&q->lock);
}

/* Moves due delayed items to the ready FIFO; returns ms until the next deadline (-1: none). */
static long long queue_promote_due(struct bh_queue *q)
{
    long long now = queue_now_ms(), next = -1;
    for (struct queue_item *it = q->items; it; it = it->next) {
        if (it->state != ITEM_DELAYED)
            continue;
        if (it->due_ms <= now)
            queue_push_ready(q, it);
        else if (next < 0 || it->due_ms - now < next)
            next = it->due_ms - now;
    }
    return next;
}

static void queue_wait(struct bh_queue *q, long long wait_ms)
{
    if (wait_ms < 0) {
        pthread_cond_wait(&q->cond, &q->lock);
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += wait_ms / 1000;
    ts.tv_nsec += (wait_ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&q->cond, &q->lock, &ts);
}

/* Blocks until an item is ready (returned RUNNING) or the queue stops (NULL). */
static struct queue_item *queue_take(struct bh_queue *q)
{
    while (!q->stopping) {
        long long next = queue_promote_due(q);
        struct queue_item *it = q->ready_head;
        if (it) {
            q->ready_head = it->next_ready;
            if (!q->ready_head)
                q->ready_tail = NULL;
            it->state = ITEM_RUNNING;
            it->dirty = 0;
            it->due_ms = 0;
            /* The wake this worker took may have been meant for a new deadline: another idle
             * worker takes over the timers. */
            if (next >= 0)
                pthread_cond_signal(&q->cond);
            return it;
        }
        queue_wait(q, next);
    }
    return NULL;
}

/* Drops an idle key that owes nothing (no failures to back off from), so the queue holds
 * only live work however many tenants it has seen. */
static void queue_forget(struct bh_queue *q, struct queue_item *it)
{
    for (struct queue_item **pp = &q->items; *pp; pp = &(*pp)->next) {
        if (*pp == it) {
            *pp = it->next;
            free(it->key);
            free(it);
            return;
        }
    }
}

static void queue_finish(struct bh_queue *q, struct queue_item *it, int rc, long requeue_ms)
{
    long long pending_due = it->due_ms; /* a delayed add that arrived while running */
    it->state = ITEM_IDLE;
    it->due_ms = 0;
    it->failures = rc < 0 ? it->failures + 1 : 0;
    q->retries += rc < 0;
    if (it->dirty) {
        it->dirty = 0;
        queue_schedule(q, it, 0);
        return;
    }
    if (rc < 0)
        queue_schedule(
            q, it, bh_clock_backoff_ms(it->failures, QUEUE_BACKOFF_BASE_MS, QUEUE_BACKOFF_MAX_MS));
    else if (requeue_ms > 0)
        queue_schedule(q, it, requeue_ms);
    if (pending_due > 0) {
        long long left = pending_due - queue_now_ms();
        queue_schedule(q, it, left > 0 ? (long)left : 0);
    }
    if (it->state == ITEM_IDLE && it->failures == 0)
        queue_forget(q, it);
}

/* Locked on entry and return: reconciles it (RUNNING) without the lock, then settles it. */
static void queue_run(struct bh_queue *q, struct queue_item *it)
{
    char *key = bh_xstrdup(it->key);
    pthread_mutex_unlock(&q->lock);
    long requeue_ms = 0;
    struct bh_err err = {0};
    int rc = q->fn(q->ctx, key, &requeue_ms, &err);
    if (rc < 0)
        bh_warn("queue", "reconcile %s failed: %s", key, err.msg);
    free(key);
    pthread_mutex_lock(&q->lock);
    queue_finish(q, it, rc, requeue_ms);
}

static void *queue_worker(void *arg)
{
    struct bh_queue *q = arg;
    pthread_mutex_lock(&q->lock);
    struct queue_item *it;
    while ((it = queue_take(q)) != NULL)
        queue_run(q, it);
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

/* Locked: takes a QUEUED item out of the ready FIFO. */
static void queue_unlink_ready(struct bh_queue *q, struct queue_item *it)
{
    struct queue_item *prev = NULL;
    for (struct queue_item *r = q->ready_head; r; prev = r, r = r->next_ready) {
        if (r != it)
            continue;
        if (prev)
            prev->next_ready = r->next_ready;
        else
            q->ready_head = r->next_ready;
        if (q->ready_tail == r)
            q->ready_tail = prev;
        return;
    }
}

int bh_queue_reserve(struct bh_queue *q, const char *key)
{
    pthread_mutex_lock(&q->lock);
    struct queue_item *it = q->stopping ? NULL : queue_item_get(q, key);
    if (!it || it->state == ITEM_RUNNING) {
        pthread_mutex_unlock(&q->lock);
        return 0;
    }
    if (it->state == ITEM_QUEUED)
        queue_unlink_ready(q, it);
    it->state = ITEM_RUNNING; /* a pending delay is moot: the reconcile runs soon */
    it->dirty = 0;
    it->due_ms = 0;
    q->inline_runs++;
    pthread_mutex_unlock(&q->lock);
    return 1;
}

void bh_queue_run_reserved(struct bh_queue *q, const char *key, int run)
{
    pthread_mutex_lock(&q->lock);
    struct queue_item *it = queue_item_get(q, key); /* RUNNING: kept since the reservation */
    if (run)
        queue_run(q, it);
    else {
        it->dirty = 1;
        queue_finish(q, it, 0, 0);
    }
    q->inline_runs--;
    /* Only bh_queue_stop waits for this; waking the idle workers (eight) after every inline
     * run put a front door's thread behind them on a small machine. A run to be done was
     * signalled to one worker by queue_finish. */
    if (q->stopping && q->inline_runs == 0)
        pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->lock);
}

int bh_queue_run_here(struct bh_queue *q, const char *key)
{
    if (!bh_queue_reserve(q, key))
        return 0;
    bh_queue_run_reserved(q, key, 1);
    return 1;
}

struct bh_queue *bh_queue_new(int workers, bh_reconcile_fn fn, void *ctx)
{
    struct bh_queue *q = bh_xcalloc(1, sizeof(*q));
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->cond, NULL);
    q->fn = fn;
    q->ctx = ctx;
    q->n_workers = workers > 0 ? workers : 1;
    q->workers = bh_xcalloc((size_t)q->n_workers, sizeof(pthread_t));
    for (int i = 0; i < q->n_workers; i++)
        pthread_create(&q->workers[i], NULL, queue_worker, q);
    return q;
}

void bh_queue_stop(struct bh_queue *q)
{
    pthread_mutex_lock(&q->lock);
    if (q->stopping) {
        pthread_mutex_unlock(&q->lock);
        return;
    }
    q->stopping = 1;
    pthread_cond_broadcast(&q->cond);
    while (q->inline_runs > 0)
        pthread_cond_wait(&q->cond, &q->lock);
    pthread_mutex_unlock(&q->lock);
    for (int i = 0; i < q->n_workers; i++)
        pthread_join(q->workers[i], NULL);
}

unsigned long long bh_queue_retries(struct bh_queue *q)
{
    pthread_mutex_lock(&q->lock);
    unsigned long long n = q->retries;
    pthread_mutex_unlock(&q->lock);
    return n;
}

int bh_queue_pending(struct bh_queue *q)
{
    int n = 0;
    pthread_mutex_lock(&q->lock);
    for (struct queue_item *it = q->items; it; it = it->next)
        n += it->state != ITEM_IDLE;
    pthread_mutex_unlock(&q->lock);
    return n;
}

void bh_queue_free(struct bh_queue *q)
{
    if (!q)
        return;
    bh_queue_stop(q);
    struct queue_item *it = q->items;
    while (it) {
        struct queue_item *next = it->next;
        free(it->key);
        free(it);
        it = next;
    }
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->cond);
    free(q->workers);
    free(q);
}
