#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "queue.h"

/* Deadlines below only bound a hang; no assertion depends on how fast the machine is. */
#define WAIT_MS 30000

struct probe {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int runs;                         /* total reconciles */
    int concurrent;                   /* reconciles running now */
    int max_concurrent;               /* the most seen at once */
    int fail_first;                   /* fail this many times */
    long requeue_once_ms;             /* ask for one requeue */
    int hold;                         /* reconciles wait while set (probe_release clears it) */
    long long start_ms[8], end_ms[8]; /* of the first runs, monotonic */
};

#define PROBE_INIT .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int probe_reconcile(void *ctx, const char *key, long *requeue_ms, struct bh_err *err)
{
    struct probe *p = ctx;
    pthread_mutex_lock(&p->lock);
    if (p->runs < 8)
        p->start_ms[p->runs] = now_ms();
    p->concurrent++;
    if (p->concurrent > p->max_concurrent)
        p->max_concurrent = p->concurrent;
    pthread_cond_broadcast(&p->cond);
    while (p->hold)
        pthread_cond_wait(&p->cond, &p->lock);
    p->concurrent--;
    if (p->runs < 8)
        p->end_ms[p->runs] = now_ms();
    p->runs++;
    int fail = p->fail_first > 0;
    if (fail)
        p->fail_first--;
    if (!fail && p->requeue_once_ms) {
        *requeue_ms = p->requeue_once_ms;
        p->requeue_once_ms = 0;
    }
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    return fail ? bh_err_set(err, BH_EIO, "injected failure for %s", key) : 0;
}

/* Reads a probe field under its lock. */
static int probe_get(struct probe *p, const int *field)
{
    pthread_mutex_lock(&p->lock);
    int v = *field;
    pthread_mutex_unlock(&p->lock);
    return v;
}

/* Waits until *field == want; fails the test if that takes WAIT_MS. */
static void probe_wait(struct probe *p, const int *field, int want)
{
    long long deadline = now_ms() + WAIT_MS;
    pthread_mutex_lock(&p->lock);
    while (*field != want && now_ms() < deadline) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&p->cond, &p->lock, &ts);
    }
    int v = *field;
    pthread_mutex_unlock(&p->lock);
    assert_int_equal(v, want);
}

static void probe_release(struct probe *p)
{
    pthread_mutex_lock(&p->lock);
    p->hold = 0;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

/* Waits until the queue holds nothing; fails the test if that takes WAIT_MS. */
static void wait_idle(struct bh_queue *q)
{
    long long deadline = now_ms() + WAIT_MS;
    while (bh_queue_pending(q) > 0 && now_ms() < deadline)
        usleep(5000);
    assert_int_equal(bh_queue_pending(q), 0);
}

static void test_one_reconcile_per_key_and_coalescing(void **state)
{
    struct probe p = {PROBE_INIT, .hold = 1};
    struct bh_queue *q = bh_queue_new(4, probe_reconcile, &p);
    bh_queue_add(q, "Claim/a");
    probe_wait(&p, &p.concurrent, 1); /* running, and held there */
    for (int i = 0; i < 20; i++)
        bh_queue_add(q, "Claim/a");
    probe_release(&p);
    wait_idle(q);
    /* The running one, then exactly one more for all adds that arrived meanwhile. */
    assert_int_equal(probe_get(&p, &p.runs), 2);
    assert_int_equal(probe_get(&p, &p.max_concurrent), 1);
    bh_queue_free(q);
}

static void test_backoff_retries_until_success(void **state)
{
    struct probe p = {PROBE_INIT, .fail_first = 3};
    struct bh_queue *q = bh_queue_new(2, probe_reconcile, &p);
    bh_queue_add(q, "Workload/w");
    wait_idle(q);
    /* 3 failures with backoff 100, 200, 400 ms, then success. */
    assert_int_equal(probe_get(&p, &p.runs), 4);
    for (int i = 1; i < 4; i++)
        assert_true(p.start_ms[i] - p.end_ms[i - 1] >= (100 << (i - 1)) - 1);
    bh_queue_free(q);
}

static void test_requeue_after_runs_later(void **state)
{
    struct probe p = {PROBE_INIT, .requeue_once_ms = 200};
    struct bh_queue *q = bh_queue_new(2, probe_reconcile, &p);
    bh_queue_add(q, "Claim/b");
    probe_wait(&p, &p.runs, 1);
    wait_idle(q);
    assert_int_equal(probe_get(&p, &p.runs), 2);
    /* Not at once: the second run waited for the requeue delay (ms clock: 1 ms slack). */
    assert_true(p.start_ms[1] - p.end_ms[0] >= 199);
    bh_queue_free(q);
}

static void test_distinct_keys_run_in_parallel(void **state)
{
    struct probe p = {PROBE_INIT, .hold = 1};
    struct bh_queue *q = bh_queue_new(4, probe_reconcile, &p);
    bh_queue_add(q, "Claim/x");
    bh_queue_add(q, "Claim/y");
    bh_queue_add(q, "Claim/z");
    probe_wait(&p, &p.concurrent, 3); /* all three held at once */
    probe_release(&p);
    wait_idle(q);
    assert_int_equal(probe_get(&p, &p.runs), 3);
    assert_true(probe_get(&p, &p.max_concurrent) >= 2);
    bh_queue_free(q);
}

static void test_earliest_delay_wins(void **state)
{
    struct probe p = {PROBE_INIT};
    struct bh_queue *q = bh_queue_new(1, probe_reconcile, &p);
    long long t0 = now_ms();
    bh_queue_add_after(q, "Pool/p", 5000);
    bh_queue_add_after(q, "Pool/p", 50);
    /* Idle right after the one run: a queue that kept the 5 s deadline too would still hold
     * the key, run it again at 5 s, and fail the count. */
    wait_idle(q);
    assert_int_equal(probe_get(&p, &p.runs), 1);
    assert_true(p.start_ms[0] - t0 >= 49);
    bh_queue_free(q);
}

/* bh_queue_run_here runs the key on the caller's thread (taking over its queued run) unless a
 * worker runs it; then it declines, and the one-at-a-time rule holds. */
static pthread_t g_ran_on;

static int here_reconcile(void *ctx, const char *key, long *requeue_ms, struct bh_err *err)
{
    g_ran_on = pthread_self();
    return probe_reconcile(ctx, key, requeue_ms, err);
}

static void test_run_here(void **state)
{
    struct probe p = {PROBE_INIT};
    struct bh_queue *q = bh_queue_new(1, here_reconcile, &p);
    /* A held reconcile of another key keeps the only worker busy: the queued key is ours. */
    p.hold = 1;
    bh_queue_add(q, "Claim/busy");
    probe_wait(&p, &p.concurrent, 1);
    bh_queue_add(q, "Claim/c");
    pthread_mutex_lock(&p.lock);
    p.hold = 0; /* ours must not wait; the worker's stays held until it sees the broadcast */
    pthread_mutex_unlock(&p.lock);
    assert_int_equal(bh_queue_run_here(q, "Claim/c"), 1);
    assert_true(pthread_equal(g_ran_on, pthread_self()));
    wait_idle(q);
    assert_int_equal(probe_get(&p, &p.runs), 2); /* busy once, c once: its queued run was taken */
    /* A key a worker is running is declined. */
    p.hold = 1;
    bh_queue_add(q, "Claim/d");
    probe_wait(&p, &p.concurrent, 1);
    assert_int_equal(bh_queue_run_here(q, "Claim/d"), 0);
    probe_release(&p);
    wait_idle(q);
    assert_int_equal(probe_get(&p, &p.runs), 3); /* d ran once, on the worker */
    bh_queue_free(q);
}

/* Which key ran on which thread, in order (reserve_reconcile). */
static struct {
    pthread_mutex_t lock;
    char keys[8][32];
    pthread_t threads[8];
    int n;
} g_order = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int reserve_reconcile(void *ctx, const char *key, long *requeue_ms, struct bh_err *err)
{
    pthread_mutex_lock(&g_order.lock);
    if (g_order.n < 8) {
        snprintf(g_order.keys[g_order.n], sizeof(g_order.keys[0]), "%s", key);
        g_order.threads[g_order.n++] = pthread_self();
    }
    pthread_mutex_unlock(&g_order.lock);
    return probe_reconcile(ctx, key, requeue_ms, err);
}

/* A reserved key is not started by a worker, even when added (its own write's event): the
 * worker runs later keys meanwhile; the caller runs it, and the add runs after, on a worker.
 * A reservation ended without running hands the run back to a worker. */
static void test_reserve(void **state)
{
    struct probe p = {PROBE_INIT};
    struct bh_queue *q = bh_queue_new(1, reserve_reconcile, &p);
    assert_int_equal(bh_queue_reserve(q, "Claim/r"), 1);
    assert_int_equal(bh_queue_reserve(q, "Claim/r"), 0); /* one holder at a time */
    bh_queue_add(q, "Claim/r");
    bh_queue_add(q, "Claim/other"); /* behind r in the FIFO, were r queued */
    probe_wait(&p, &p.runs, 1);
    assert_string_equal(g_order.keys[0], "Claim/other");
    bh_queue_run_reserved(q, "Claim/r", 1);
    assert_string_equal(g_order.keys[1], "Claim/r");
    assert_true(pthread_equal(g_order.threads[1], pthread_self()));
    wait_idle(q);
    assert_int_equal(probe_get(&p, &p.runs), 3);
    assert_string_equal(g_order.keys[2], "Claim/r");
    assert_false(pthread_equal(g_order.threads[2], pthread_self()));

    assert_int_equal(bh_queue_reserve(q, "Claim/s"), 1);
    bh_queue_run_reserved(q, "Claim/s", 0);
    wait_idle(q);
    assert_int_equal(probe_get(&p, &p.runs), 4);
    assert_string_equal(g_order.keys[3], "Claim/s");
    assert_false(pthread_equal(g_order.threads[3], pthread_self()));
    bh_queue_free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_reconcile_per_key_and_coalescing),
        cmocka_unit_test(test_backoff_retries_until_success),
        cmocka_unit_test(test_requeue_after_runs_later),
        cmocka_unit_test(test_distinct_keys_run_in_parallel),
        cmocka_unit_test(test_earliest_delay_wins),
        cmocka_unit_test(test_run_here),
        cmocka_unit_test(test_reserve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
