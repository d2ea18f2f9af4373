/* The watch fan-out (core/kapi/kapi_fanout.c) on a real store: events after a version from
 * memory, by kind, the wait, versions from before it started (read from the store), and 410
 * for versions compacted away. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "fs.h"
#include "json.h"
#include "kapi_int.h"
#include "mem.h"
#include "resource.h"
#include "store.h"

struct fx {
    char dir[64];
    char *path;
    struct bh_store *s;
};

static int setup(void **state)
{
    struct fx *f = bh_xcalloc(1, sizeof(*f));
    struct bh_err err;
    snprintf(f->dir, sizeof(f->dir), "/tmp/bh-fanout-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    f->path = bh_xasprintf("%s/store.db", f->dir);
    if (bh_store_open(f->path, &f->s, &err) < 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    struct bh_err err;
    bh_store_close(f->s);
    BH_IGNORE(bh_fs_rmtree(f->dir, &err)); /* teardown: best effort */
    free(f->path);
    free(f);
    return 0;
}

static int64_t put(struct bh_store *s, const char *kind, const char *name)
{
    cJSON *o = bh_resource_new(kind, name), *stored = NULL;
    struct bh_err err;
    assert_int_equal(bh_store_create(s, o, &stored, &err), 0);
    int64_t rv = strtoll(bh_json_str(stored, "metadata.resourceVersion"), NULL, 10);
    cJSON_Delete(o);
    cJSON_Delete(stored);
    return rv;
}

/* Names of the events after since, as one string "a,b,". */
static char *names_since(struct bh_kapi_fanout *fan, const char *kind, int64_t since, int *rc)
{
    cJSON *evs = NULL, *e;
    struct bh_err err;
    *rc = bh_kapi_fanout_since(fan, kind, since, 2000, &evs, &err);
    char *out = bh_xstrdup("");
    cJSON_ArrayForEach(e, evs) {
        char *next = bh_xasprintf("%s%s,", out, bh_json_str(e, "object.metadata.name"));
        free(out);
        out = next;
    }
    cJSON_Delete(evs);
    return out;
}

static void test_events_after_a_version_by_kind(void **state)
{
    struct fx *f = *state;
    int64_t before = put(f->s, "BoilerhouseClaim", "old");
    struct bh_kapi_fanout *fan = bh_kapi_fanout_start(f->s);
    int64_t v1 = put(f->s, "BoilerhouseClaim", "a");
    put(f->s, "BoilerhouseWorkload", "w");
    put(f->s, "BoilerhouseClaim", "b");
    int rc;
    bh_autofree char *claims = names_since(fan, "BoilerhouseClaim", v1 - 1, &rc);
    assert_int_equal(rc, 0);
    /* b may still be on its way to memory: ask again after a */
    if (strcmp(claims, "a,b,") != 0) {
        bh_autofree char *rest = names_since(fan, "BoilerhouseClaim", v1, &rc);
        assert_string_equal(rest, "b,");
    }
    bh_autofree char *wl = names_since(fan, "BoilerhouseWorkload", v1, &rc);
    assert_string_equal(wl, "w,");
    /* a version from before the fan-out started is read from the store */
    bh_autofree char *all = names_since(fan, "BoilerhouseClaim", before - 1, &rc);
    assert_string_equal(all, "old,a,b,");
    bh_kapi_fanout_stop(fan);
}

static void test_waits_for_the_next_event_or_times_out(void **state)
{
    struct fx *f = *state;
    struct bh_kapi_fanout *fan = bh_kapi_fanout_start(f->s);
    int64_t v = put(f->s, "BoilerhouseClaim", "a");
    int rc;
    bh_autofree char *none = names_since(fan, "BoilerhouseClaim", v, &rc); /* 2 s, nothing */
    assert_int_equal(rc, 0);
    assert_string_equal(none, "");
    bh_kapi_fanout_stop(fan);
}

static void test_a_compacted_version_is_gone(void **state)
{
    struct fx *f = *state;
    bh_store_set_event_retention(f->s, 2);
    int64_t first = put(f->s, "BoilerhouseClaim", "a");
    for (int i = 0; i < 300; i++) { /* the store compacts every so many writes */
        char n[8];
        snprintf(n, sizeof(n), "c%d", i);
        put(f->s, "BoilerhouseClaim", n);
    }
    struct bh_kapi_fanout *fan = bh_kapi_fanout_start(f->s);
    cJSON *evs = NULL;
    struct bh_err err;
    assert_int_equal(bh_kapi_fanout_since(fan, "BoilerhouseClaim", first, 100, &evs, &err), -1);
    assert_int_equal(err.code, BH_ECONFLICT);
    bh_kapi_fanout_stop(fan);
}

static int not_b(const cJSON *obj, void *ud)
{
    (void)ud;
    return strcmp(bh_json_str(obj, "metadata.name"), "b") != 0;
}

/* The lines r takes up to version until (the feeder may still be on its way), split at the
 * first newline: the first line (owned, the whole buffer) and in *rest the others. */
static char *take_lines(struct bh_kapi_fanout *fan, struct bh_kapi_fanout_lines *r, int64_t until,
                        char **rest)
{
    struct bh_kapi_buf out = {0};
    long long deadline = bh_clock_ms() + 10000;
    while (r->since < until && bh_clock_ms() < deadline)
        assert_int_equal(bh_kapi_fanout_lines(fan, r, 2000, &out), 0);
    assert_int_equal(r->since, until);
    char *text = bh_xstrndup(out.data, out.len);
    free(out.data);
    char *nl = strchr(text, '\n');
    assert_non_null(nl);
    *nl = '\0';
    *rest = nl + 1;
    return text;
}

/* JSON watches share the lines the feeder printed once: the watch's kind after its version,
 * filtered, decorated with the namespace; the version moves past what the filter dropped. */
static void test_shared_lines(void **state)
{
    struct fx *f = *state;
    int64_t before = put(f->s, "BoilerhouseClaim", "old");
    struct bh_kapi_fanout *fan = bh_kapi_fanout_start(f->s);
    int64_t va = put(f->s, "BoilerhouseClaim", "a");
    put(f->s, "BoilerhouseWorkload", "w");
    int64_t vb = put(f->s, "BoilerhouseClaim", "b");
    int64_t vc = put(f->s, "BoilerhouseClaim", "c");
    struct bh_kapi_fanout_lines r = {
        .kind = "BoilerhouseClaim", .since = va - 1, .match = not_b, .ud = NULL};
    char *nl;
    bh_autofree char *text = take_lines(fan, &r, vc, &nl);
    assert_true(vb < vc);
    cJSON *first = cJSON_Parse(text);
    assert_string_equal(bh_json_str(first, "type"), "ADDED");
    assert_string_equal(bh_json_str(first, "object.metadata.name"), "a");
    assert_string_equal(bh_json_str(first, "object.metadata.namespace"), "boilerhouse");
    cJSON_Delete(first);
    cJSON *second = cJSON_Parse(nl);
    assert_string_equal(bh_json_str(second, "object.metadata.name"), "c"); /* b filtered */
    cJSON_Delete(second);
    assert_null(strstr(nl, "\"w\"")); /* other kinds are not the watch's */
    /* older than memory: the caller reads the store instead */
    struct bh_kapi_fanout_lines old = {
        .kind = "BoilerhouseClaim", .since = before - 1, .match = not_b, .ud = NULL};
    struct bh_kapi_buf none = {0};
    assert_int_equal(bh_kapi_fanout_lines(fan, &old, 100, &none), 1);
    assert_int_equal(none.len, 0);
    bh_kapi_fanout_stop(fan);
}

/* The row's age cells (printed at different moments) as null. */
static void table_without_ages(cJSON *table)
{
    const struct bh_kapi_column *c = bh_kapi_kind_by_name("BoilerhouseClaim")->columns;
    cJSON *cells = bh_json_get(cJSON_GetArrayItem(bh_json_get(table, "rows"), 0), "cells");
    for (int i = 0; c[i].name; i++)
        if (strcmp(c[i].type, "date") == 0)
            cJSON_ReplaceItemInArray(cells, i + 1, cJSON_CreateNull()); /* after Name */
}

/* A Table line is the Table bh_kapi_table makes of the stored object, but for its age (and
 * for the columns after a watch's first line). */
static void assert_table_as_built(const cJSON *line, struct bh_store *s, const char *name)
{
    cJSON *obj = NULL, *items = cJSON_CreateArray();
    struct bh_err err;
    assert_int_equal(bh_store_get(s, "BoilerhouseClaim", name, &obj, &err), 0);
    bh_kapi_decorate(obj);
    cJSON_AddItemToArray(items, obj);
    cJSON *want = bh_kapi_table("BoilerhouseClaim", items,
                                strtoll(bh_json_str(obj, "metadata.resourceVersion"), NULL, 10));
    cJSON *got = cJSON_Duplicate(bh_json_get(line, "object"), 1);
    table_without_ages(want);
    table_without_ages(got);
    if (cJSON_IsNull(bh_json_get(got, "columnDefinitions"))) /* not the watch's first */
        cJSON_ReplaceItemInObjectCaseSensitive(want, "columnDefinitions", cJSON_CreateNull());
    assert_true(cJSON_Compare(want, got, 1));
    cJSON_Delete(want);
    cJSON_Delete(got);
    cJSON_Delete(items);
}

/* Table watches share the one-row Tables printed once: the kind's printer columns (in a watch's
 * first event only), the row's metadata, the event's version; filtered like the JSON lines. */
static void test_shared_table_lines(void **state)
{
    struct fx *f = *state;
    struct bh_kapi_fanout *fan = bh_kapi_fanout_start(f->s);
    int64_t va = put(f->s, "BoilerhouseClaim", "a");
    put(f->s, "BoilerhouseClaim", "b");
    int64_t vc = put(f->s, "BoilerhouseClaim", "c");
    struct bh_kapi_fanout_lines r = {
        .kind = "BoilerhouseClaim", .table = 1, .since = va - 1, .match = not_b, .ud = NULL};
    char *nl;
    bh_autofree char *text = take_lines(fan, &r, vc, &nl);
    cJSON *first = cJSON_Parse(text);
    assert_string_equal(bh_json_str(first, "type"), "ADDED");
    assert_string_equal(bh_json_str(first, "object.kind"), "Table");
    cJSON *cols = bh_json_get(first, "object.columnDefinitions");
    /* Name, then the kind's printer columns */
    const struct bh_kapi_column *c = bh_kapi_kind_by_name("BoilerhouseClaim")->columns;
    int n = 0;
    while (c[n].name)
        n++;
    assert_int_equal(cJSON_GetArraySize(cols), n + 1);
    assert_string_equal(bh_json_str(cJSON_GetArrayItem(cols, 1), "name"), c[0].name);
    cJSON *row = cJSON_GetArrayItem(bh_json_get(first, "object.rows"), 0);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetArrayItem(bh_json_get(row, "cells"), 0)),
                        "a");
    assert_string_equal(bh_json_str(row, "object.kind"), "PartialObjectMetadata");
    assert_string_equal(bh_json_str(row, "object.metadata.namespace"), "boilerhouse");
    assert_int_equal(strtoll(bh_json_str(first, "object.metadata.resourceVersion"), NULL, 10), va);
    assert_table_as_built(first, f->s, "a");
    cJSON_Delete(first);
    cJSON *second = cJSON_Parse(nl); /* b dropped by the filter */
    row = cJSON_GetArrayItem(bh_json_get(second, "object.rows"), 0);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetArrayItem(bh_json_get(row, "cells"), 0)),
                        "c");
    assert_int_equal(strtoll(bh_json_str(second, "object.metadata.resourceVersion"), NULL, 10), vc);
    /* the columns come once per watch, as from the API server (kubectl keeps the first's) */
    assert_true(cJSON_IsNull(bh_json_get(second, "object.columnDefinitions")));
    cJSON_Delete(second);
    /* another watch, from the same shared lines, gets them in its own first Table */
    struct bh_kapi_fanout_lines r2 = {
        .kind = "BoilerhouseClaim", .table = 1, .since = vc - 1, .match = not_b, .ud = NULL};
    char *none;
    bh_autofree char *text2 = take_lines(fan, &r2, vc, &none);
    cJSON *again = cJSON_Parse(text2);
    assert_int_equal(cJSON_GetArraySize(bh_json_get(again, "object.columnDefinitions")), n + 1);
    assert_table_as_built(again, f->s, "c");
    cJSON_Delete(again);
    /* after a Table watch has read, the feeder prints the Table lines as events come */
    int64_t vd = put(f->s, "BoilerhouseClaim", "d");
    bh_autofree char *text3 = take_lines(fan, &r2, vd, &none);
    cJSON *later = cJSON_Parse(text3);
    assert_true(cJSON_IsNull(bh_json_get(later, "object.columnDefinitions")));
    assert_table_as_built(later, f->s, "d");
    cJSON_Delete(later);
    /* the JSON lines are untouched by the Table's taking the metadata */
    struct bh_kapi_fanout_lines j = {
        .kind = "BoilerhouseClaim", .since = va - 1, .match = not_b, .ud = NULL};
    struct bh_kapi_buf jout = {0};
    assert_int_equal(bh_kapi_fanout_lines(fan, &j, 2000, &jout), 0);
    bh_autofree char *jtext = bh_xstrndup(jout.data, jout.len);
    assert_non_null(strstr(jtext, "\"name\":\"a\""));
    assert_null(strstr(jtext, "\"Table\""));
    free(jout.data);
    bh_kapi_fanout_stop(fan);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_events_after_a_version_by_kind, setup, teardown),
        cmocka_unit_test_setup_teardown(test_waits_for_the_next_event_or_times_out, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_compacted_version_is_gone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_table_lines, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
