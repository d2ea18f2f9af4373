#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "queue.h"

struct probe {
    pthread_mutex_t lock;
    int runs;             /* total reconciles */
    int concurrent;       /* reconciles of the key running now */
    int max_concurrent;   /* the most seen at once */
    int fail_first;       /* fail this many times */
    long requeue_once_ms; /* ask for one requeue */
    int sleep_ms;
};

static int probe_reconcile(void *ctx, const char *key, long *requeue_ms, struct bh_err *err)
{
    struct probe *p = ctx;
    pthread_mutex_lock(&p->lock);
    p->concurrent++;
    if (p->concurrent > p->max_concurrent)
        p->max_concurrent = p->concurrent;
    pthread_mutex_unlock(&p->lock);
    usleep((useconds_t)p->sleep_ms * 1000);
    pthread_mutex_lock(&p->lock);
    p->concurrent--;
    p->runs++;
    int fail = p->fail_first > 0;
    if (fail)
        p->fail_first--;
    if (!fail && p->requeue_once_ms) {
        *requeue_ms = p->requeue_once_ms;
        p->requeue_once_ms = 0;
    }
    pthread_mutex_unlock(&p->lock);
    return fail ? bh_err_set(err, BH_EIO, "injected failure for %s", key) : 0;
}

static void wait_idle(struct bh_queue *q, int max_ms)
{
    for (int i = 0; i < max_ms / 5 && bh_queue_pending(q) > 0; i++)
        usleep(5000);
}

static int probe_runs(struct probe *p)
{
    pthread_mutex_lock(&p->lock);
    int r = p->runs;
    pthread_mutex_unlock(&p->lock);
    return r;
}

static void test_one_reconcile_per_key_and_coalescing(void **state)
{
    struct probe p = {.lock = PTHREAD_MUTEX_INITIALIZER, .sleep_ms = 50};
    struct bh_queue *q = bh_queue_new(4, probe_reconcile, &p);
    bh_queue_add(q, "Claim/a");
    usleep(10000); /* let it start running */
    for (int i = 0; i < 20; i++)
        bh_queue_add(q, "Claim/a");
    wait_idle(q, 2000);
    /* The running one, then exactly one more for all adds that arrived meanwhile. */
    assert_int_equal(probe_runs(&p), 2);
    assert_int_equal(p.max_concurrent, 1);
    bh_queue_free(q);
}

static void test_backoff_retries_until_success(void **state)
{
    struct probe p = {.lock = PTHREAD_MUTEX_INITIALIZER, .fail_first = 3};
    struct bh_queue *q = bh_queue_new(2, probe_reconcile, &p);
    bh_queue_add(q, "Workload/w");
    wait_idle(q, 3000);
    /* 3 failures with backoff 100, 200, 400 ms, then success. */
    assert_int_equal(probe_runs(&p), 4);
    bh_queue_free(q);
}

static void test_requeue_after_runs_later(void **state)
{
    struct probe p = {.lock = PTHREAD_MUTEX_INITIALIZER, .requeue_once_ms = 200};
    struct bh_queue *q = bh_queue_new(2, probe_reconcile, &p);
    bh_queue_add(q, "Claim/b");
    usleep(100000);
    assert_int_equal(probe_runs(&p), 1);
    wait_idle(q, 2000);
    assert_int_equal(probe_runs(&p), 2);
    bh_queue_free(q);
}

static void test_distinct_keys_run_in_parallel(void **state)
{
    struct probe p = {.lock = PTHREAD_MUTEX_INITIALIZER, .sleep_ms = 100};
    struct bh_queue *q = bh_queue_new(4, probe_reconcile, &p);
    bh_queue_add(q, "Claim/x");
    bh_queue_add(q, "Claim/y");
    bh_queue_add(q, "Claim/z");
    wait_idle(q, 2000);
    assert_int_equal(probe_runs(&p), 3);
    assert_true(p.max_concurrent >= 2);
    bh_queue_free(q);
}

static void test_earliest_delay_wins(void **state)
{
    struct probe p = {.lock = PTHREAD_MUTEX_INITIALIZER};
    struct bh_queue *q = bh_queue_new(1, probe_reconcile, &p);
    bh_queue_add_after(q, "Pool/p", 5000);
    bh_queue_add_after(q, "Pool/p", 50);
    usleep(300000);
    assert_int_equal(probe_runs(&p), 1);
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
