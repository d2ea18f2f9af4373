/* The event hub (core/controllers/events.c): ids, replay from the ring, resync, filters and
 * the lag that cuts a reader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "json.h"

static void publish(struct bh_events *h, const char *type, const char *tenant)
{
    bh_events_publish(h, type, "wl", tenant, cJSON_CreateObject());
}

/* The id of the next event the reader yields, or -1 if none. */
static int64_t next_id(struct bh_events_reader *r)
{
    char *json = NULL;
    if (bh_events_reader_next(r, &json) != BH_EVENTS_GOT)
        return -1;
    cJSON *o = cJSON_Parse(json);
    int64_t id = (int64_t)bh_json_num(o, "id", -1);
    cJSON_Delete(o);
    free(json);
    return id;
}

static void test_replay_returns_exactly_the_missed_ids(void **state)
{
    struct bh_events *h = bh_events_new(8, 8);
    int resync = 0;
    publish(h, BH_EVT_CLAIMED, "a");
    int64_t seen = bh_events_last_id(h);
    for (int i = 0; i < 3; i++)
        publish(h, BH_EVT_RELEASED, "a");
    struct bh_events_reader *r = bh_events_reader_open(h, seen, NULL, &resync);
    assert_false(resync);
    struct pollfd p = {bh_events_reader_fd(r), POLLIN, 0};
    assert_int_equal(poll(&p, 1, 0), 1); /* something to read: the descriptor says so */
    for (int i = 1; i <= 3; i++)
        assert_true(next_id(r) == seen + i);
    assert_true(next_id(r) == -1);
    bh_events_reader_close(r);
    bh_events_free(h);
}

static void test_resync_when_ids_left_the_ring_or_are_unknown(void **state)
{
    struct bh_events *h = bh_events_new(4, 4);
    int resync = 0;
    publish(h, BH_EVT_CLAIMED, "a");
    int64_t old = bh_events_last_id(h);
    for (int i = 0; i < 6; i++)
        publish(h, BH_EVT_CLAIMED, "a");
    bh_events_reader_close(bh_events_reader_open(h, old, NULL, &resync));
    assert_true(resync);
    bh_events_reader_close(bh_events_reader_open(h, bh_events_last_id(h) + 5, NULL, &resync));
    assert_true(resync);
    bh_events_reader_close(bh_events_reader_open(h, bh_events_last_id(h) - 1, NULL, &resync));
    assert_false(resync);
    bh_events_free(h);
}

static void test_filters_by_type_and_tenant(void **state)
{
    struct bh_events *h = bh_events_new(16, 16);
    int resync = 0;
    const struct bh_events_filter f = {.types = "tenant.claimed,tenant.released", .tenant = "b"};
    struct bh_events_reader *r = bh_events_reader_open(h, -1, &f, &resync);
    publish(h, BH_EVT_CLAIMED, "a");
    publish(h, BH_EVT_IDLE_TIMEOUT, "b");
    publish(h, BH_EVT_RELEASED, "b");
    assert_true(next_id(r) == bh_events_last_id(h));
    assert_true(next_id(r) == -1);
    bh_events_reader_close(r);
    bh_events_free(h);
}

static void test_a_reader_too_far_behind_is_told_it_lags(void **state)
{
    struct bh_events *h = bh_events_new(64, 4);
    int resync = 0;
    struct bh_events_reader *r = bh_events_reader_open(h, -1, NULL, &resync);
    for (int i = 0; i < 4; i++)
        publish(h, BH_EVT_CLAIMED, "a");
    assert_false(bh_events_reader_lagging(r));
    publish(h, BH_EVT_CLAIMED, "a");
    assert_true(bh_events_reader_lagging(r));
    char *json = NULL;
    assert_int_equal(bh_events_reader_next(r, &json), BH_EVENTS_LAGGED);
    bh_events_reader_cut(r);
    long long readers = 0, cut = 0;
    bh_events_stats(h, &readers, &cut);
    assert_int_equal(readers, 1);
    assert_int_equal(cut, 1);
    bh_events_reader_close(r);
    bh_events_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay_returns_exactly_the_missed_ids),
        cmocka_unit_test(test_resync_when_ids_left_the_ring_or_are_unknown),
        cmocka_unit_test(test_filters_by_type_and_tenant),
        cmocka_unit_test(test_a_reader_too_far_behind_is_told_it_lags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
