/* The mirror's per-object bookkeeping (core/kube/mirror_int.h): lookups through growth, the
 * FIFO of queued changes in arrival order without duplicates, and entries freed once they hold
 * nothing. The mirror itself runs against a real API server in test_kube_operator.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mirror_int.h"

#define N 20000

static void key_of(char *buf, size_t n, int i)
{
    snprintf(buf, n, "BoilerhouseClaim/claim-%d", i);
}

static void test_seen_through_growth(void **state)
{
    (void)state;
    struct mirror_table t;
    mirror_table_init(&t);
    char k[64];
    for (int i = 0; i < N; i++) {
        key_of(k, sizeof(k), i);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "i", i);
        mirror_table_set_seen(&t, k, o);
    }
    assert_int_equal(t.count, N);
    assert_true(t.n_buckets >= N); /* grown: chains stay short */
    for (int i = 0; i < N; i++) {
        key_of(k, sizeof(k), i);
        const struct mirror_entry *e = mirror_table_find(&t, k);
        assert_non_null(e);
        assert_int_equal(cJSON_GetObjectItem(e->seen, "i")->valueint, i);
    }
    assert_null(mirror_table_find(&t, "BoilerhouseClaim/claim-x"));
    /* replacing a copy keeps one entry; forgetting it frees the entry */
    key_of(k, sizeof(k), 7);
    mirror_table_set_seen(&t, k, cJSON_CreateString("new"));
    assert_int_equal(t.count, N);
    assert_string_equal(mirror_table_find(&t, k)->seen->valuestring, "new");
    for (int i = 0; i < N; i += 2) {
        key_of(k, sizeof(k), i);
        mirror_table_set_seen(&t, k, NULL);
    }
    assert_int_equal(t.count, N / 2);
    key_of(k, sizeof(k), 2);
    assert_null(mirror_table_find(&t, k));
    key_of(k, sizeof(k), 3);
    assert_non_null(mirror_table_find(&t, k));
    mirror_table_set_seen(&t, "never-seen", NULL); /* nothing to forget: no entry made */
    assert_int_equal(t.count, N / 2);
    mirror_table_free(&t);
}

static void test_fifo(void **state)
{
    (void)state;
    struct mirror_table t;
    mirror_table_init(&t);
    assert_null(mirror_table_pop(&t));
    mirror_table_set_seen(&t, "b", cJSON_CreateObject());
    const char *order[] = {"a", "b", "c", "a", "b", "d"}; /* re-queued keys keep their place */
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
        mirror_table_queue(&t, order[i]);
    assert_true(mirror_table_queued(&t, "a"));
    assert_false(mirror_table_queued(&t, "e"));
    assert_int_equal(t.queued, 4);
    const char *want[] = {"a", "b", "c", "d"};
    for (size_t i = 0; i < 4; i++) {
        char *k = mirror_table_pop(&t);
        assert_string_equal(k, want[i]);
        assert_false(mirror_table_queued(&t, k));
        free(k);
        if (i == 0) /* queued again after it was taken: at the end */
            mirror_table_queue(&t, "a");
    }
    char *k = mirror_table_pop(&t);
    assert_string_equal(k, "a");
    free(k);
    assert_null(mirror_table_pop(&t));
    assert_null(t.qhead);
    assert_null(t.qtail);
    assert_int_equal(t.queued, 0);
    /* popped entries without a cluster copy are gone; "b" keeps its copy */
    assert_int_equal(t.count, 1);
    assert_non_null(mirror_table_find(&t, "b"));
    mirror_table_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seen_through_growth),
        cmocka_unit_test(test_fifo),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
