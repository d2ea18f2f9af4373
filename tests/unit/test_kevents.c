/* Kubernetes Events from the event hub (core/controllers/kevents.c): the mapping of hub
 * events, aggregation of repeats, bounded retention, and the pair lookup for snapshots. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "json.h"
#include "kevents.h"

/* A hub with k listening, as the daemon wires it. */
static struct bh_events *hub_for(struct bh_kevents *k)
{
    struct bh_events *h = bh_events_new(64, 64);
    bh_events_listen(h, bh_kevents_on_hub, k);
    return h;
}

static cJSON *data(const char *json)
{
    cJSON *d = cJSON_Parse(json);
    assert_non_null(d);
    return d;
}

static void test_claim_events_carry_source_latency_and_aggregate(void **state)
{
    struct bh_kevents *k = bh_kevents_new(16);
    struct bh_events *h = hub_for(k);
    bh_events_publish(h, BH_EVT_CLAIMED, "wl", "alice",
                      data("{\"claim\":\"claim-alice-wl\",\"source\":\"pool\",\"latencyMs\":7,"
                           "\"instanceId\":\"abc\"}"));
    for (int i = 0; i < 3; i++)
        bh_events_publish(h, BH_EVT_CLAIM_FAILED, "wl", "alice",
                          data("{\"claim\":\"claim-alice-wl\",\"source\":\"cold\",\"latencyMs\":0,"
                               "\"error\":\"no image\"}"));
    bh_events_publish(h, "instance.state", "wl", "alice", data("{\"phase\":\"Running\"}"));
    long long rv = 0;
    cJSON *list = bh_kevents_list(k, "boilerhouse", &rv);
    assert_int_equal(cJSON_GetArraySize(list), 2); /* 1 Active + 3 Errors as one */
    cJSON *active = cJSON_GetArrayItem(list, 0), *error = cJSON_GetArrayItem(list, 1);
    assert_string_equal(bh_json_str(active, "reason"), "Active");
    assert_string_equal(bh_json_str(active, "type"), "Normal");
    assert_string_equal(bh_json_str(active, "message"), "Active: instance abc from pool in 7 ms");
    assert_string_equal(bh_json_str(active, "involvedObject.kind"), "BoilerhouseClaim");
    assert_string_equal(bh_json_str(active, "involvedObject.name"), "claim-alice-wl");
    assert_string_equal(bh_json_str(active, "involvedObject.namespace"), "boilerhouse");
    assert_string_equal(bh_json_str(error, "reason"), "Error");
    assert_string_equal(bh_json_str(error, "type"), "Warning");
    assert_int_equal(bh_json_int(error, "count", 0), 3);
    assert_non_null(bh_json_str(error, "firstTimestamp"));
    assert_non_null(bh_json_str(error, "lastTimestamp"));
    assert_true(rv >= 4);
    cJSON_Delete(list);
    bh_events_free(h);
    bh_kevents_free(k);
}

static void test_pair_events_find_the_claim_and_others_map_to_their_kind(void **state)
{
    struct bh_kevents *k = bh_kevents_new(16);
    struct bh_events *h = hub_for(k);
    bh_events_publish(h, BH_EVT_CLAIMED, "wl", "bob",
                      data("{\"claim\":\"bobs\",\"source\":\"cold\",\"latencyMs\":1}"));
    bh_events_publish(h, BH_EVT_HIBERNATE_FAILED, "wl", "bob", data("{\"error\":\"disk full\"}"));
    bh_events_publish(h, BH_EVT_HIBERNATE_FAILED, "wl", "nobody", data("{\"error\":\"x\"}"));
    bh_events_publish(h, BH_EVT_POOL_STATUS, "wl", NULL,
                      data("{\"pool\":\"p\",\"phase\":\"Degraded\",\"ready\":1,\"size\":3}"));
    bh_events_publish(h, BH_EVT_POOL_STATUS, "wl", NULL,
                      data("{\"pool\":\"p\",\"phase\":\"Healthy\",\"ready\":3,\"size\":3}"));
    bh_events_publish(h, BH_EVT_WORKLOAD_PHASE, "wl", NULL,
                      data("{\"phase\":\"Error\",\"detail\":\"bad image\"}"));
    bh_events_publish(h, BH_EVT_TRIGGER_EVENT, "wl", "t1",
                      data("{\"trigger\":\"hook\",\"verdict\":\"error\",\"error\":\"boom\"}"));
    bh_events_publish(h, BH_EVT_TRIGGER_EVENT, "wl", "t1",
                      data("{\"trigger\":\"hook\",\"verdict\":\"allow\"}"));
    bh_events_publish(h, BH_EVT_IDLE_TIMEOUT, "wl", "bob",
                      data("{\"claim\":\"bobs\",\"action\":\"hibernate\"}"));
    cJSON *list = bh_kevents_list(k, "boilerhouse", NULL);
    static const char *const want[][4] = {
        {"BoilerhouseClaim", "bobs", "Active", "Normal"},
        {"BoilerhouseClaim", "bobs", "HibernateFailed", "Warning"},
        {"BoilerhouseWorkload", "wl", "HibernateFailed", "Warning"},
        {"BoilerhousePool", "p", "Degraded", "Warning"},
        {"BoilerhouseWorkload", "wl", "Error", "Warning"},
        {"BoilerhouseTrigger", "hook", "Error", "Warning"},
        {"BoilerhouseClaim", "bobs", "IdleRelease", "Normal"},
    };
    assert_int_equal(cJSON_GetArraySize(list), 7);
    for (int i = 0; i < 7; i++) {
        cJSON *e = cJSON_GetArrayItem(list, i);
        assert_string_equal(bh_json_str(e, "involvedObject.kind"), want[i][0]);
        assert_string_equal(bh_json_str(e, "involvedObject.name"), want[i][1]);
        assert_string_equal(bh_json_str(e, "reason"), want[i][2]);
        assert_string_equal(bh_json_str(e, "type"), want[i][3]);
    }
    assert_string_equal(bh_json_str(cJSON_GetArrayItem(list, 1), "message"),
                        "tenant bob: disk full");
    cJSON_Delete(list);
    bh_events_free(h);
    bh_kevents_free(k);
}

static void test_retention_is_bounded_and_drops_the_least_recent(void **state)
{
    struct bh_kevents *k = bh_kevents_new(3);
    char name[16];
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof(name), "c%d", i);
        struct bh_kevents_rec r = {"BoilerhouseClaim", name, "Normal", "Active", "m", NULL, NULL};
        bh_kevents_record(k, &r);
    }
    /* c2 seen again: the most recent now */
    struct bh_kevents_rec again = {"BoilerhouseClaim", "c2", "Normal", "Active", "m", NULL, NULL};
    bh_kevents_record(k, &again);
    struct bh_kevents_rec last = {"BoilerhouseClaim", "c5", "Normal", "Active", "m", NULL, NULL};
    bh_kevents_record(k, &last);
    cJSON *list = bh_kevents_list(k, "ns", NULL);
    assert_int_equal(cJSON_GetArraySize(list), 3);
    assert_string_equal(bh_json_str(cJSON_GetArrayItem(list, 0), "involvedObject.name"), "c4");
    assert_string_equal(bh_json_str(cJSON_GetArrayItem(list, 1), "involvedObject.name"), "c2");
    assert_int_equal(bh_json_int(cJSON_GetArrayItem(list, 1), "count", 0), 2);
    assert_string_equal(bh_json_str(cJSON_GetArrayItem(list, 2), "involvedObject.name"), "c5");
    cJSON_Delete(list);
    bh_kevents_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_claim_events_carry_source_latency_and_aggregate),
        cmocka_unit_test(test_pair_events_find_the_claim_and_others_map_to_their_kind),
        cmocka_unit_test(test_retention_is_bounded_and_drops_the_least_recent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
