/* Chart history (core/controllers/samples.c): bounded rings per instance and pool, stats
 * published only while someone watches the instance, claim and hibernate times from the
 * event hub. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "fake_runtime.h"
#include "fs.h"
#include "json.h"
#include "mem.h"
#include "resource.h"
#include "runtime.h"
#include "samples.h"
#include "store.h"

struct env {
    struct bh_ctx ctx;
    struct bh_samples *s;
    char dir[64];
};

static void put(struct env *e, const char *kind, const char *name, const char *spec,
                const char *status)
{
    cJSON *o = bh_resource_new(kind, name);
    cJSON_AddItemToObject(o, "spec", cJSON_Parse(spec));
    cJSON_AddItemToObject(o, "status", cJSON_Parse(status));
    struct bh_err err;
    if (bh_store_create(e->ctx.store, o, NULL, &err) < 0)
        fail_msg("%s %s: %s", kind, name, err.msg);
    cJSON_Delete(o);
}

static int setup(void **state)
{
    struct env *e = bh_xcalloc(1, sizeof(*e));
    struct bh_err err;
    snprintf(e->dir, sizeof(e->dir), "/tmp/bh-samples-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    bh_autofree char *db = bh_xasprintf("%s/store.db", e->dir);
    assert_int_equal(bh_store_open(db, &e->ctx.store, &err), 0);
    e->ctx.cfg.state_dir = bh_xstrdup(e->dir);
    e->ctx.runtime = fake_rt_new();
    e->ctx.events = bh_events_new(64, 64);
    e->s = bh_samples_new(&e->ctx);
    bh_events_listen(e->ctx.events, bh_samples_on_event, e->s);
    put(e, "Instance", "aaaaaaaaaaaa", "{\"workload\":\"wl\",\"tenantId\":\"t1\"}",
        "{\"phase\":\"Running\",\"pid\":1}");
    bh_autofree char *cid = bh_runtime_container_id("aaaaaaaaaaaa");
    fake_rt_add(e->ctx.runtime, cid);
    fake_rt_set_stats(e->ctx.runtime, cid, 5000000, 42);
    put(e, "Instance", "bbbbbbbbbbbb", "{\"workload\":\"wl\"}", "{\"phase\":\"Starting\"}");
    put(e, "BoilerhousePool", "wl-pool", "{\"workloadRef\":\"wl\",\"size\":3}",
        "{\"ready\":2,\"warming\":1}");
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    struct bh_err err;
    bh_events_free(e->ctx.events);
    bh_samples_free(e->s);
    bh_runtime_close(e->ctx.runtime);
    bh_store_close(e->ctx.store);
    free(e->ctx.cfg.state_dir);
    assert_int_equal(bh_fs_rmtree(e->dir, &err), 0);
    free(e);
    return 0;
}

static int points(struct env *e, const char *id)
{
    cJSON *arr = bh_samples_instance(e->s, id);
    int n = cJSON_GetArraySize(arr);
    cJSON_Delete(arr);
    return n;
}

/* The type of the reader's next event, or "" (owned). */
static char *next_type(struct bh_events_reader *r)
{
    char *json = NULL;
    if (bh_events_reader_next(r, &json) != BH_EVENTS_GOT)
        return bh_xstrdup("");
    cJSON *o = cJSON_Parse(json);
    char *type = bh_xstrdup(bh_json_str(o, "type"));
    cJSON_Delete(o);
    free(json);
    return type;
}

static void test_samples_running_instances_and_pools(void **state)
{
    struct env *e = *state;
    bh_samples_tick(e->s);
    cJSON *arr = bh_samples_instance(e->s, "aaaaaaaaaaaa");
    assert_int_equal(cJSON_GetArraySize(arr), 1);
    const cJSON *p = cJSON_GetArrayItem(arr, 0);
    assert_int_equal(bh_json_int(p, "cpuNs", 0), 5000000);
    assert_int_equal(bh_json_int(p, "netBytes", 0), 42);
    assert_int_equal(bh_json_int(p, "diskBytes", 0), -1); /* no disk of its own here */
    assert_true(bh_json_num(p, "t", 0) > 1.7e9);
    cJSON_Delete(arr);
    assert_int_equal(points(e, "bbbbbbbbbbbb"), 0); /* not running: nothing to sample */
    cJSON *o = bh_samples_overview(e->s);
    const cJSON *pool = cJSON_GetArrayItem(bh_json_get(o, "pools.wl-pool"), 0);
    assert_int_equal(bh_json_int(pool, "ready", -1), 2);
    assert_int_equal(bh_json_int(pool, "warming", -1), 1);
    assert_int_equal(bh_json_int(pool, "size", -1), 3);
    cJSON_Delete(o);
}

static void test_rings_are_bounded(void **state)
{
    struct env *e = *state;
    for (int i = 0; i < BH_SAMPLES_POINTS + 20; i++)
        bh_samples_tick(e->s);
    assert_int_equal(points(e, "aaaaaaaaaaaa"), BH_SAMPLES_POINTS);
    for (int i = 0; i < BH_SAMPLES_EVENTS + 10; i++) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "source", i % 2 ? "pool" : "cold");
        cJSON_AddNumberToObject(d, "latencyMs", i);
        bh_events_publish(e->ctx.events, BH_EVT_CLAIMED, "wl", "t1", d);
    }
    cJSON *o = bh_samples_overview(e->s);
    const cJSON *claims = bh_json_get(o, "claims");
    assert_int_equal(cJSON_GetArraySize(claims), BH_SAMPLES_EVENTS);
    const cJSON *last = cJSON_GetArrayItem(claims, BH_SAMPLES_EVENTS - 1);
    assert_int_equal(bh_json_int(last, "ms", 0), BH_SAMPLES_EVENTS + 9); /* oldest went */
    assert_int_equal(bh_json_int(last, "id", 0), bh_events_last_id(e->ctx.events));
    cJSON_Delete(o);
}

static void test_stats_published_only_while_watched(void **state)
{
    struct env *e = *state;
    int resync = 0;
    int64_t before = bh_events_last_id(e->ctx.events);
    bh_samples_tick(e->s);
    assert_true(bh_events_last_id(e->ctx.events) == before); /* nobody watches */

    struct bh_events_reader *plain = bh_events_reader_open(e->ctx.events, -1, NULL, &resync);
    const struct bh_events_filter f = {.instance = "aaaaaaaaaaaa"};
    struct bh_events_reader *watch = bh_events_reader_open(e->ctx.events, -1, &f, &resync);
    assert_true(bh_events_watched(e->ctx.events, "aaaaaaaaaaaa"));
    assert_false(bh_events_watched(e->ctx.events, "bbbbbbbbbbbb"));
    bh_samples_tick(e->s);
    bh_autofree char *got = next_type(watch);
    assert_string_equal(got, BH_EVT_INSTANCE_STATS);
    bh_autofree char *none = next_type(plain); /* for watchers only */
    assert_string_equal(none, "");

    bh_events_reader_close(watch); /* the subscription goes with its reader */
    assert_false(bh_events_watched(e->ctx.events, "aaaaaaaaaaaa"));
    before = bh_events_last_id(e->ctx.events);
    bh_samples_tick(e->s);
    assert_true(bh_events_last_id(e->ctx.events) == before);
    bh_events_reader_close(plain);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_samples_running_instances_and_pools, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rings_are_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats_published_only_while_watched, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
