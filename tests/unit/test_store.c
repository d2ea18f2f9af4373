#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "audit.h"
#include "fs.h"
#include "json.h"
#include "mem.h"
#include "store.h"

struct fixture {
    char dir[32];
    char *path;
    struct bh_store *s;
};

static int setup(void **state)
{
    struct fixture *f = bh_xcalloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/bh-test-store-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    f->path = bh_xasprintf("%s/store.db", f->dir);
    struct bh_err err;
    if (bh_store_open(f->path, &f->s, &err) < 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    struct bh_err err;
    bh_store_close(f->s);
    BH_IGNORE(bh_fs_rmtree(f->dir, &err)); /* teardown: best effort */
    free(f->path);
    free(f);
    return 0;
}

static cJSON *make_obj(const char *kind, const char *name, const char *spec_json)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "apiVersion", "boilerhouse.dev/v1alpha1");
    cJSON_AddStringToObject(o, "kind", kind);
    cJSON *meta = cJSON_AddObjectToObject(o, "metadata");
    cJSON_AddStringToObject(meta, "name", name);
    cJSON_AddItemToObject(o, "spec", cJSON_Parse(spec_json ? spec_json : "{}"));
    return o;
}

static const char *meta_str(const cJSON *o, const char *key)
{
    return cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "metadata"), key));
}

static double meta_num(const cJSON *o, const char *key)
{
    return cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "metadata"), key));
}

static void create_simple(struct bh_store *s, const char *kind, const char *name)
{
    cJSON *o = make_obj(kind, name, NULL);
    struct bh_err err;
    assert_int_equal(bh_store_create(s, o, NULL, &err), 0);
    cJSON_Delete(o);
}

static void test_crud(void **state)
{
    struct fixture *f = *state;
    struct bh_err err;
    cJSON *in = make_obj("BoilerhouseWorkload", "web", "{\"version\":\"1\"}");
    cJSON *out = NULL;
    assert_int_equal(bh_store_create(f->s, in, &out, &err), 0);
    assert_string_equal(meta_str(out, "namespace"), "default");
    assert_string_equal(meta_str(out, "resourceVersion"), "1");
    assert_int_equal(strlen(meta_str(out, "uid")), 36);
    assert_int_equal(meta_str(out, "uid")[14], '4');
    assert_int_equal(strlen(meta_str(out, "creationTimestamp")), 20);
    assert_int_equal(meta_num(out, "generation"), 1);
    cJSON_Delete(out);

    assert_int_equal(bh_store_create(f->s, in, NULL, &err), -1);
    assert_int_equal(err.code, BH_ECONFLICT);
    cJSON_Delete(in);

    assert_int_equal(bh_store_get(f->s, "BoilerhouseWorkload", "web", &out, &err), 0);
    assert_string_equal(cJSON_GetObjectItem(out, "spec")->child->valuestring, "1");
    cJSON_Delete(out);
    assert_int_equal(bh_store_get(f->s, "BoilerhouseWorkload", "nope", &out, &err), -1);
    assert_int_equal(err.code, BH_ENOTFOUND);
    assert_int_equal(bh_store_get(f->s, "BoilerhousePool", "web", &out, &err), -1);

    create_simple(f->s, "BoilerhouseWorkload", "api");
    int64_t rv = 0;
    assert_int_equal(bh_store_list(f->s, "BoilerhouseWorkload", NULL, &out, &rv, &err), 0);
    assert_int_equal(cJSON_GetArraySize(out), 2);
    assert_string_equal(meta_str(cJSON_GetArrayItem(out, 0), "name"), "api");
    assert_int_equal(rv, 2);
    cJSON_Delete(out);

    assert_int_equal(bh_store_delete(f->s, "BoilerhouseWorkload", "web", &err), 0);
    assert_int_equal(bh_store_get(f->s, "BoilerhouseWorkload", "web", &out, &err), -1);
    assert_int_equal(bh_store_delete(f->s, "BoilerhouseWorkload", "web", &err), -1);
    assert_int_equal(err.code, BH_ENOTFOUND);
}

static void test_stale_rv_conflicts(void **state)
{
    struct fixture *f = *state;
    struct bh_err err;
    cJSON *in = make_obj("BoilerhouseWorkload", "web", "{\"version\":\"1\"}");
    cJSON *v1 = NULL, *v2 = NULL;
    assert_int_equal(bh_store_create(f->s, in, &v1, &err), 0);
    cJSON_ReplaceItemInObject(v1, "spec", cJSON_Parse("{\"version\":\"2\"}"));
    assert_int_equal(bh_store_update(f->s, v1, &v2, &err), 0);
    assert_string_equal(meta_str(v2, "resourceVersion"), "2");

    /* v1 still carries resourceVersion 1 */
    cJSON_ReplaceItemInObject(v1, "spec", cJSON_Parse("{\"version\":\"3\"}"));
    assert_int_equal(bh_store_update(f->s, v1, NULL, &err), -1);
    assert_int_equal(err.code, BH_ECONFLICT);
    assert_int_equal(bh_store_update_status(f->s, v1, NULL, &err), -1);
    assert_int_equal(err.code, BH_ECONFLICT);

    cJSON *now = NULL;
    assert_int_equal(bh_store_get(f->s, "BoilerhouseWorkload", "web", &now, &err), 0);
    assert_true(cJSON_Compare(now, v2, 1));
    cJSON *evs = NULL;
    assert_int_equal(bh_store_events_since(f->s, NULL, 0, 0, &evs, &err), 0);
    assert_int_equal(cJSON_GetArraySize(evs), 2);
    cJSON_Delete(evs);
    cJSON_Delete(now);
    cJSON_Delete(in);
    cJSON_Delete(v1);
    cJSON_Delete(v2);
}

static void test_generation(void **state)
{
    struct fixture *f = *state;
    struct bh_err err;
    cJSON *in = make_obj("BoilerhouseWorkload", "web", "{\"version\":\"1\"}");
    cJSON *cur = NULL, *next = NULL;
    assert_int_equal(bh_store_create(f->s, in, &cur, &err), 0);

    /* labels only: no generation bump */
    cJSON *labels = cJSON_AddObjectToObject(cJSON_GetObjectItem(cur, "metadata"), "labels");
    cJSON_AddStringToObject(labels, "team", "a");
    assert_int_equal(bh_store_update(f->s, cur, &next, &err), 0);
    assert_int_equal(meta_num(next, "generation"), 1);
    assert_string_equal(meta_str(next, "resourceVersion"), "2");
    cJSON_Delete(cur);
    cur = next;

    /* status: no generation bump, spec kept */
    cJSON_AddItemToObject(cur, "status", cJSON_Parse("{\"phase\":\"Ready\"}"));
    assert_int_equal(bh_store_update_status(f->s, cur, &next, &err), 0);
    assert_int_equal(meta_num(next, "generation"), 1);
    assert_non_null(cJSON_GetObjectItem(next, "spec"));
    cJSON_Delete(cur);
    cur = next;

    /* spec change: bump; status survives an update */
    cJSON_ReplaceItemInObject(cur, "spec", cJSON_Parse("{\"version\":\"2\"}"));
    cJSON_DeleteItemFromObject(cur, "status");
    assert_int_equal(bh_store_update(f->s, cur, &next, &err), 0);
    assert_int_equal(meta_num(next, "generation"), 2);
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(next, "status"), "phase")->valuestring, "Ready");
    cJSON_Delete(cur);
    cur = next;

    /* identical update: nothing written */
    assert_int_equal(bh_store_update(f->s, cur, &next, &err), 0);
    assert_string_equal(meta_str(next, "resourceVersion"), meta_str(cur, "resourceVersion"));
    cJSON_Delete(next);
    cJSON_Delete(cur);
    cJSON_Delete(in);
}

static const char *status_str(const cJSON *o, const char *key)
{
    return cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "status"), key));
}

/* bh_store_update_all_lazy: labels, spec and status in one write (one event, one
 * resourceVersion); a stale resourceVersion changes nothing; an identical one is not written. */
static void test_update_all_lazy(void **state)
{
    struct fixture *f = *state;
    struct bh_err err;
    cJSON *in = make_obj("Instance", "i1", "{\"tenantId\":null}");
    cJSON_AddItemToObject(in, "status", cJSON_Parse("{\"phase\":\"Running\"}"));
    cJSON *cur = NULL, *next = NULL;
    assert_int_equal(bh_store_create(f->s, in, &cur, &err), 0);
    cJSON *stale = cJSON_Duplicate(cur, 1);

    cJSON_AddStringToObject(cJSON_AddObjectToObject(cJSON_GetObjectItem(cur, "metadata"), "labels"),
                            "boilerhouse.dev/tenant", "t1");
    cJSON_ReplaceItemInObject(cur, "spec", cJSON_Parse("{\"tenantId\":\"t1\"}"));
    cJSON_AddStringToObject(cJSON_GetObjectItem(cur, "status"), "lastActivity", "now");
    assert_int_equal(bh_store_update_all_lazy(f->s, cur, &next, &err), 0);
    assert_string_equal(meta_str(next, "resourceVersion"), "2");
    assert_int_equal(meta_num(next, "generation"), 2);
    assert_string_equal(status_str(next, "phase"), "Running");
    assert_string_equal(status_str(next, "lastActivity"), "now");
    cJSON *got = NULL;
    assert_int_equal(bh_store_get(f->s, "Instance", "i1", &got, &err), 0);
    assert_true(cJSON_Compare(got, next, 1));
    cJSON *evs = NULL;
    assert_int_equal(bh_store_events_since(f->s, NULL, 1, 0, &evs, &err), 0);
    assert_int_equal(cJSON_GetArraySize(evs), 1);
    cJSON_Delete(evs);

    /* stale: conflict, nothing changed */
    cJSON_AddStringToObject(cJSON_GetObjectItem(stale, "status"), "lastActivity", "later");
    assert_int_equal(bh_store_update_all_lazy(f->s, stale, NULL, &err), -1);
    assert_int_equal(err.code, BH_ECONFLICT);
    cJSON_Delete(got);
    assert_int_equal(bh_store_get(f->s, "Instance", "i1", &got, &err), 0);
    assert_true(cJSON_Compare(got, next, 1));

    /* identical: nothing written */
    cJSON_Delete(cur);
    assert_int_equal(bh_store_update_all_lazy(f->s, next, &cur, &err), 0);
    assert_string_equal(meta_str(cur, "resourceVersion"), "2");
    cJSON_Delete(got);
    cJSON_Delete(cur);
    cJSON_Delete(next);
    cJSON_Delete(stale);
    cJSON_Delete(in);
}

struct recorded {
    int types[16];
    int n;
};

static void record_event(const struct bh_store_event *ev, void *ud)
{
    struct recorded *r = ud;
    assert_non_null(ev->object);
    assert_string_equal(ev->kind, "BoilerhouseClaim");
    if (r->n < 16)
        r->types[r->n++] = ev->type;
}

static void test_finalizers_and_subscriber(void **state)
{
    struct fixture *f = *state;
    struct bh_err err;
    struct recorded rec = {0};
    bh_store_subscribe(f->s, record_event, &rec);
    cJSON *in = make_obj("BoilerhouseClaim", "c1", NULL);
    cJSON *fin = cJSON_AddArrayToObject(cJSON_GetObjectItem(in, "metadata"), "finalizers");
    cJSON_AddItemToArray(fin, cJSON_CreateString("boilerhouse.dev/cleanup"));
    cJSON *cur = NULL;
    assert_int_equal(bh_store_create(f->s, in, &cur, &err), 0);
    cJSON_Delete(cur);

    assert_int_equal(bh_store_delete(f->s, "BoilerhouseClaim", "c1", &err), 0);
    assert_int_equal(bh_store_get(f->s, "BoilerhouseClaim", "c1", &cur, &err), 0);
    assert_non_null(meta_str(cur, "deletionTimestamp"));
    /* deleting again while finalizers remain changes nothing */
    assert_int_equal(bh_store_delete(f->s, "BoilerhouseClaim", "c1", &err), 0);

    cJSON_DeleteItemFromObject(cJSON_GetObjectItem(cur, "metadata"), "finalizers");
    assert_int_equal(bh_store_update(f->s, cur, NULL, &err), 0);
    cJSON_Delete(cur);
    assert_int_equal(bh_store_get(f->s, "BoilerhouseClaim", "c1", &cur, &err), -1);
    assert_int_equal(err.code, BH_ENOTFOUND);
    assert_int_equal(rec.n, 3);
    assert_int_equal(rec.types[0], BH_EV_ADDED);
    assert_int_equal(rec.types[1], BH_EV_MODIFIED);
    assert_int_equal(rec.types[2], BH_EV_DELETED);

    cJSON *evs = NULL;
    assert_int_equal(bh_store_events_since(f->s, "BoilerhouseClaim", 2, 0, &evs, &err), 0);
    assert_int_equal(cJSON_GetArraySize(evs), 1);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(evs, 0), "type")->valuestring,
                        "DELETED");
    cJSON_Delete(evs);
    cJSON_Delete(in);
}

/* A replica (operator mode) keeps the source's uid, generation and timestamps, takes only its
 * resourceVersion from the store, is not rewritten when equal, and goes whatever its
 * finalizers. */
static void test_replica(void **state)
{
    struct fixture *f = *state;
    struct bh_err err;
    struct recorded evs = {0};
    bh_store_subscribe(f->s, record_event, &evs);
    cJSON *src =
        cJSON_Parse("{\"apiVersion\":\"boilerhouse.dev/v1alpha1\",\"kind\":\"BoilerhouseClaim\","
                    "\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\",\"uid\":\"u-1\","
                    "\"generation\":7,\"resourceVersion\":\"9999\",\"finalizers\":[\"x/y\"],"
                    "\"creationTimestamp\":\"2020-01-01T00:00:00Z\",\"managedFields\":[]},"
                    "\"spec\":{\"v\":1},\"status\":{\"phase\":\"Ready\"}}");
    cJSON *out = NULL;
    assert_int_equal(bh_store_put_replica(f->s, src, &out, &err), 0);
    assert_string_equal(meta_str(out, "uid"), "u-1");
    assert_true(meta_num(out, "generation") == 7);
    assert_string_equal(meta_str(out, "namespace"), "ns");
    assert_string_equal(meta_str(out, "creationTimestamp"), "2020-01-01T00:00:00Z");
    assert_string_not_equal(meta_str(out, "resourceVersion"), "9999");
    assert_null(bh_json_get(out, "metadata.managedFields"));
    assert_string_equal(bh_json_str(out, "status.phase"), "Ready");
    const char *rv1 = bh_xstrdup(meta_str(out, "resourceVersion"));
    cJSON_Delete(out);
    int n = evs.n;
    /* The same again: nothing written. */
    assert_int_equal(bh_store_put_replica(f->s, src, &out, &err), 0);
    assert_string_equal(meta_str(out, "resourceVersion"), rv1);
    assert_int_equal(evs.n, n);
    cJSON_Delete(out);
    /* A newer copy replaces spec and status, generation included. */
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(src, "metadata"), "generation",
                              cJSON_CreateNumber(8));
    cJSON_ReplaceItemInObject(src, "status", cJSON_Parse("{\"phase\":\"Creating\"}"));
    assert_int_equal(bh_store_put_replica(f->s, src, &out, &err), 0);
    assert_true(meta_num(out, "generation") == 8);
    assert_string_equal(bh_json_str(out, "status.phase"), "Creating");
    assert_int_equal(evs.n, n + 1);
    cJSON_Delete(out);
    /* Removed despite its finalizer; absent is no error. */
    assert_int_equal(bh_store_remove_replica(f->s, "BoilerhouseClaim", "a", &err), 0);
    assert_int_equal(bh_store_get(f->s, "BoilerhouseClaim", "a", &out, &err), -1);
    assert_int_equal(err.code, BH_ENOTFOUND);
    assert_int_equal(bh_store_remove_replica(f->s, "BoilerhouseClaim", "a", &err), 0);
    free((void *)rv1);
    cJSON_Delete(src);
}

static void labelled(struct bh_store *s, const char *name, const char *labels_json)
{
    cJSON *o = make_obj("BoilerhouseClaim", name, NULL);
    cJSON_AddItemToObject(cJSON_GetObjectItem(o, "metadata"), "labels", cJSON_Parse(labels_json));
    struct bh_err err;
    assert_int_equal(bh_store_create(s, o, NULL, &err), 0);
    cJSON_Delete(o);
}

static int count_selected(struct bh_store *s, const char *selector)
{
    cJSON *out = NULL;
    struct bh_err err;
    if (bh_store_list(s, "BoilerhouseClaim", selector, &out, NULL, &err) < 0)
        return -1;
    int n = cJSON_GetArraySize(out);
    cJSON_Delete(out);
    return n;
}

static void test_label_selector(void **state)
{
    struct fixture *f = *state;
    labelled(f->s, "a", "{\"tenant\":\"alice\",\"wl\":\"web\"}");
    labelled(f->s, "b", "{\"tenant\":\"bob\",\"wl\":\"web\"}");
    labelled(f->s, "c", "{\"tenant\":\"alice\"}");
    assert_int_equal(count_selected(f->s, ""), 3);
    assert_int_equal(count_selected(f->s, "tenant=alice"), 2);
    assert_int_equal(count_selected(f->s, "tenant==alice"), 2);
    assert_int_equal(count_selected(f->s, "tenant=alice,wl=web"), 1);
    assert_int_equal(count_selected(f->s, "wl"), 2);
    assert_int_equal(count_selected(f->s, "tenant!=alice"), 1);
    assert_int_equal(count_selected(f->s, "wl!=web"), 1);
    assert_int_equal(count_selected(f->s, "tenant=carol"), 0);
    assert_int_equal(count_selected(f->s, "=x"), -1);
    assert_int_equal(count_selected(f->s, "a=b=c"), -1);
}

/* The names bh_store_list_names answers for selector, comma-joined ("!" if it failed). */
static char *names_selected(struct bh_store *s, const char *selector)
{
    cJSON *out = NULL;
    struct bh_err err;
    if (bh_store_list_names(s, "BoilerhouseClaim", selector, &out, &err) < 0) {
        assert_int_equal(err.code, BH_EINVAL);
        return bh_xstrdup("!");
    }
    char *joined = bh_xstrdup("");
    const cJSON *n;
    cJSON_ArrayForEach(n, out) {
        char *more = bh_xasprintf("%s%s%s", joined, *joined ? "," : "", n->valuestring);
        free(joined);
        joined = more;
    }
    cJSON_Delete(out);
    return joined;
}

/* Names only, matched in SQL: the same answers as bh_store_list for k=v terms, in name order;
 * any other selector is refused. */
static void test_list_names(void **state)
{
    struct fixture *f = *state;
    labelled(f->s, "c", "{\"tenant\":\"alice\"}");
    labelled(f->s, "a", "{\"tenant\":\"alice\",\"wl\":\"web\"}");
    labelled(f->s, "b", "{\"tenant\":\"bob\",\"wl\":\"web\"}");
    static const struct {
        const char *selector, *names;
    } cases[] = {
        {"", "a,b,c"},
        {"tenant=alice", "a,c"},
        {"tenant==alice", "a,c"},
        {"tenant=alice,wl=web", "a"},
        {"wl=web,tenant=bob", "b"},
        {"tenant=carol", ""},
        {"wl", "!"},
        {"tenant!=alice", "!"},
        {"=x", "!"},
        {"a=b=c", "!"},
        {"k\"x=1", "!"},
        {"a=1,b=2,c=3,d=4,e=5", "!"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bh_autofree char *got = names_selected(f->s, cases[i].selector);
        if (strcmp(got, cases[i].names) != 0)
            fail_msg("selector \"%s\": %s, not %s", cases[i].selector, got, cases[i].names);
    }
}

static void test_events_order_and_filter(void **state)
{
    struct fixture *f = *state;
    struct bh_err err;
    create_simple(f->s, "BoilerhouseWorkload", "w1");
    create_simple(f->s, "BoilerhousePool", "p1");
    create_simple(f->s, "BoilerhouseWorkload", "w2");
    cJSON *evs = NULL;
    assert_int_equal(bh_store_events_since(f->s, NULL, 0, 0, &evs, &err), 0);
    assert_int_equal(cJSON_GetArraySize(evs), 3);
    for (int i = 0; i < 3; i++) {
        cJSON *o = cJSON_GetObjectItem(cJSON_GetArrayItem(evs, i), "object");
        assert_int_equal(atoi(meta_str(o, "resourceVersion")), i + 1);
    }
    cJSON_Delete(evs);
    assert_int_equal(bh_store_events_since(f->s, "BoilerhouseWorkload", 1, 0, &evs, &err), 0);
    assert_int_equal(cJSON_GetArraySize(evs), 1);
    assert_string_equal(meta_str(cJSON_GetObjectItem(evs->child, "object"), "name"), "w2");
    cJSON_Delete(evs);
    /* nothing new: returns empty after the timeout */
    assert_int_equal(bh_store_events_since(f->s, NULL, 3, 50, &evs, &err), 0);
    assert_int_equal(cJSON_GetArraySize(evs), 0);
    cJSON_Delete(evs);
}

static void test_compaction_conflicts(void **state)
{
    struct fixture *f = *state;
    struct bh_err err;
    bh_store_set_event_retention(f->s, 10);
    char name[32];
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof(name), "w%d", i);
        create_simple(f->s, "BoilerhouseWorkload", name);
    }
    cJSON *evs = NULL;
    assert_int_equal(bh_store_events_since(f->s, NULL, 0, 0, &evs, &err), -1);
    assert_int_equal(err.code, BH_ECONFLICT);
    assert_int_equal(bh_store_events_since(f->s, NULL, 295, 0, &evs, &err), 0);
    assert_int_equal(cJSON_GetArraySize(evs), 5);
    cJSON_Delete(evs);
}

static void *delayed_writer(void *arg)
{
    usleep(100 * 1000);
    create_simple(arg, "BoilerhousePool", "late");
    return NULL;
}

static void test_wait_woken_by_write(void **state)
{
    struct fixture *f = *state;
    struct bh_err err;
    pthread_t t;
    pthread_create(&t, NULL, delayed_writer, f->s);
    cJSON *evs = NULL;
    assert_int_equal(bh_store_events_since(f->s, "BoilerhousePool", 0, 30000, &evs, &err), 0);
    assert_int_equal(cJSON_GetArraySize(evs), 1);
    assert_string_equal(cJSON_GetObjectItem(evs->child, "type")->valuestring, "ADDED");
    cJSON_Delete(evs);
    pthread_join(t, NULL);
}

static void test_reopen_durable(void **state)
{
    struct fixture *f = *state;
    struct bh_err err;
    create_simple(f->s, "BoilerhouseWorkload", "w1");
    create_simple(f->s, "BoilerhouseWorkload", "w2");
    bh_store_close(f->s);
    assert_int_equal(bh_store_open(f->path, &f->s, &err), 0);
    cJSON *out = NULL;
    int64_t rv = 0;
    assert_int_equal(bh_store_list(f->s, "BoilerhouseWorkload", NULL, &out, &rv, &err), 0);
    assert_int_equal(cJSON_GetArraySize(out), 2);
    assert_int_equal(rv, 2);
    cJSON_Delete(out);
    create_simple(f->s, "BoilerhouseWorkload", "w3");
    assert_int_equal(bh_store_get(f->s, "BoilerhouseWorkload", "w3", &out, &err), 0);
    assert_string_equal(meta_str(out, "resourceVersion"), "3");
    cJSON_Delete(out);
}

static int64_t query_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* Writes until killed; one byte on ready_fd after the first write has committed. */
static void child_write_forever(const char *path, int ready_fd)
{
    struct bh_store *s = NULL;
    struct bh_err err;
    if (bh_store_open(path, &s, &err) < 0)
        _exit(1);
    char name[32];
    for (int i = 0;; i++) {
        snprintf(name, sizeof(name), "w%d", i);
        cJSON *o = make_obj("BoilerhouseWorkload", name, NULL);
        if (bh_store_create(s, o, NULL, &err) == 0 && i == 0 && write(ready_fd, "x", 1) != 1)
            _exit(1);
        cJSON_Delete(o);
        if (i % 3 == 0)
            BH_IGNORE(
                bh_store_delete(s, "BoilerhouseWorkload", name, &err)); /* churn until killed */
    }
}

static void test_sigkill_leaves_consistent_db(void **state)
{
    struct fixture *f = *state;
    bh_store_close(f->s);
    f->s = NULL;
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        child_write_forever(f->path, ready[1]);
    /* Killed mid-stream once it has written (however slow the machine), not at a fixed time. */
    char c;
    assert_int_equal(read(ready[0], &c, 1), 1);
    close(ready[0]);
    close(ready[1]);
    usleep(100 * 1000);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFSIGNALED(status));

    struct bh_err err;
    assert_int_equal(bh_store_open(f->path, &f->s, &err), 0);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    int64_t rv = query_int(db, "SELECT value FROM meta WHERE key = 'rv'");
    assert_true(rv > 0);
    assert_int_equal(rv, query_int(db, "SELECT max(rv) FROM events"));
    assert_int_equal(query_int(db, "SELECT count(*) FROM objects WHERE rv > "
                                   "(SELECT value FROM meta WHERE key = 'rv')"),
                     0);
    assert_string_equal(sqlite3_errmsg(db), "not an error");
    sqlite3_close(db);
    create_simple(f->s, "BoilerhousePool", "after");
}

/* ---- the audit log's group commit ---- */

#define AUDIT_THREADS 8
#define AUDIT_EACH 50

struct audit_writer {
    struct bh_audit *a;
    int n;
    int failures;
};

static void *audit_write(void *arg)
{
    struct audit_writer *w = arg;
    for (int i = 0; i < AUDIT_EACH; i++) {
        char actor[16], target[16];
        snprintf(actor, sizeof(actor), "t%d", w->n);
        snprintf(target, sizeof(target), "r%d", i);
        struct bh_audit_rec rec = {
            .actor = actor, .action = "claim", .target = target, .outcome = "ok", .status = 200};
        struct bh_err err;
        if (bh_audit_append(w->a, &rec, &err) < 0)
            w->failures++;
    }
    return NULL;
}

/* Appends from many threads at once (committed in shared transactions) all land, each once,
 * and each is committed when its append returns: a query right after sees it. */
static void test_audit_concurrent_appends(void **state)
{
    struct fixture *f = *state;
    bh_autofree char *path = bh_xasprintf("%s/audit.db", f->dir);
    struct bh_audit *a = NULL;
    struct bh_err err;
    assert_int_equal(bh_audit_open(path, 100000, &a, &err), 0);
    pthread_t t[AUDIT_THREADS];
    struct audit_writer w[AUDIT_THREADS];
    for (int i = 0; i < AUDIT_THREADS; i++) {
        w[i] = (struct audit_writer){.a = a, .n = i};
        assert_int_equal(pthread_create(&t[i], NULL, audit_write, &w[i]), 0);
    }
    for (int i = 0; i < AUDIT_THREADS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    cJSON *list = NULL;
    struct bh_audit_query q = {.limit = AUDIT_THREADS * AUDIT_EACH + 10};
    assert_int_equal(bh_audit_query(a, &q, &list, &err), 0);
    assert_int_equal(cJSON_GetArraySize(list), AUDIT_THREADS * AUDIT_EACH);
    int seen[AUDIT_THREADS][AUDIT_EACH] = {{0}};
    const cJSON *r;
    cJSON_ArrayForEach(r, list) {
        int ti = atoi(bh_json_str(r, "actor") + 1), ri = atoi(bh_json_str(r, "target") + 1);
        assert_in_range(ti, 0, AUDIT_THREADS - 1);
        assert_in_range(ri, 0, AUDIT_EACH - 1);
        assert_int_equal(seen[ti][ri]++, 0);
    }
    cJSON_Delete(list);
    struct bh_audit_rec last = {.actor = "solo", .action = "claim", .outcome = "ok"};
    assert_int_equal(bh_audit_append(a, &last, &err), 0);
    struct bh_audit_query solo = {.actor = "solo"};
    assert_int_equal(bh_audit_query(a, &solo, &list, &err), 0);
    assert_int_equal(cJSON_GetArraySize(list), 1);
    cJSON_Delete(list);
    bh_audit_close(a);
}

/* ---- the read cache (bh_store_cache_kind) ---- */

#define WL "BoilerhouseWorkload"

/* The cached workload's spec.version, generation and status.phase, as a read answers them. */
static void expect_wl(struct bh_store *s, const char *version, int generation, const char *phase)
{
    cJSON *o = NULL;
    struct bh_err err;
    assert_int_equal(bh_store_get(s, WL, "web", &o, &err), 0);
    assert_string_equal(bh_json_str(o, "spec.version"), version);
    assert_int_equal(meta_num(o, "generation"), generation);
    const char *have = bh_json_str(o, "status.phase");
    if (phase)
        assert_string_equal(have, phase);
    else
        assert_null(have);
    cJSON_Delete(o);
}

/* Rewrites web's stored document behind the store's back (another connection): only a read
 * from memory still answers the old one. */
static void rewrite_behind(const struct fixture *f, const char *path, const char *value)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    bh_autofree char *sql = bh_xasprintf(
        "UPDATE objects SET doc = json_set(doc, '$.%s', '%s') WHERE name = 'web'", path, value);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static void expect_wl_num(struct bh_store *s, int generation)
{
    cJSON *o = NULL;
    struct bh_err err;
    assert_int_equal(bh_store_get(s, WL, "web", &o, &err), 0);
    assert_int_equal(bh_json_int(o, "spec.version", 0), generation);
    assert_int_equal(meta_num(o, "generation"), generation);
    cJSON_Delete(o);
}

/* Every kind of write of a cached object is seen by the next read: spec (a new generation),
 * status, lazy status, labels, deletion with and without finalizers, re-creation. A read is
 * a copy: changing it changes nothing cached. An uncached kind is read from the database. */
static void test_cache_follows_every_write(void **state)
{
    struct fixture *f = *state;
    struct bh_err err;
    bh_store_cache_kind(f->s, WL);
    cJSON *in = make_obj(WL, "web", "{\"version\":\"1\"}");
    cJSON *fin = cJSON_AddArrayToObject(cJSON_GetObjectItem(in, "metadata"), "finalizers");
    cJSON_AddItemToArray(fin, cJSON_CreateString("boilerhouse.dev/cleanup"));
    cJSON *cur = NULL;
    assert_int_equal(bh_store_create(f->s, in, &cur, &err), 0);
    expect_wl(f->s, "1", 1, NULL);
    rewrite_behind(f, "spec.version", "behind"); /* the cache is in use: the read filled it */
    expect_wl(f->s, "1", 1, NULL);
    cJSON *copy = NULL;
    assert_int_equal(bh_store_get(f->s, WL, "web", &copy, &err), 0);
    bh_json_set_str(bh_json_obj(copy, "spec"), "version", "mutated by a caller");
    cJSON_Delete(copy);
    expect_wl(f->s, "1", 1, NULL);

    bh_json_set_str(bh_json_obj(cur, "spec"), "version", "2"); /* a new generation */
    cJSON_DeleteItemFromObject(cJSON_GetObjectItem(cur, "metadata"), "resourceVersion");
    assert_int_equal(bh_store_update(f->s, cur, NULL, &err), 0);
    expect_wl(f->s, "2", 2, NULL);
    bh_json_set_str(bh_json_obj(cur, "status"), "phase", "Building");
    assert_int_equal(bh_store_update_status(f->s, cur, NULL, &err), 0);
    expect_wl(f->s, "2", 2, "Building");
    bh_json_set_str(bh_json_obj(cur, "status"), "phase", "Ready");
    assert_int_equal(bh_store_update_status_lazy(f->s, cur, NULL, &err), 0);
    expect_wl(f->s, "2", 2, "Ready");
    rewrite_behind(f, "status.phase", "Behind");
    expect_wl(f->s, "2", 2, "Ready");                                  /* from memory */
    bh_json_set_str(bh_json_obj(cur, "metadata.labels"), "team", "a"); /* metadata only */
    assert_int_equal(bh_store_update_lazy(f->s, cur, NULL, &err), 0);
    expect_wl(f->s, "2", 2, "Behind"); /* the write dropped it: read from the database */

    assert_int_equal(bh_store_delete(f->s, WL, "web", &err), 0); /* finalizer: kept */
    cJSON_Delete(cur);
    assert_int_equal(bh_store_get(f->s, WL, "web", &cur, &err), 0);
    assert_non_null(meta_str(cur, "deletionTimestamp"));
    cJSON_DeleteItemFromObject(cJSON_GetObjectItem(cur, "metadata"), "finalizers");
    assert_int_equal(bh_store_update(f->s, cur, NULL, &err), 0);
    cJSON_Delete(cur);
    assert_int_equal(bh_store_get(f->s, WL, "web", &cur, &err), -1);
    assert_int_equal(err.code, BH_ENOTFOUND);

    cJSON_Delete(in);
    in = make_obj(WL, "web", "{\"version\":\"3\"}");
    assert_int_equal(bh_store_create(f->s, in, NULL, &err), 0);
    expect_wl(f->s, "3", 1, NULL);
    assert_int_equal(bh_store_delete(f->s, WL, "web", &err), 0); /* no finalizer: gone */
    assert_int_equal(bh_store_get(f->s, WL, "web", &cur, &err), -1);
    assert_int_equal(err.code, BH_ENOTFOUND);
    cJSON_Delete(in);
}

#define CACHE_RACE_WRITES 300

struct cache_race {
    struct bh_store *s;
    int done;         /* the writer finished */
    int acknowledged; /* the generation of the newest update that returned */
    int failures;     /* the writer's failed updates */
    int told, behind; /* events the subscriber read after, and reads older than the event */
    int stale;        /* reads that answered an older generation than acknowledged */
};

/* A subscriber (the reconciler) reading the object it was told about reads that version
 * (one writer: nothing is written in between). */
static void read_on_event(const struct bh_store_event *ev, void *ud)
{
    struct cache_race *r = ud;
    cJSON *o = NULL;
    struct bh_err err;
    if (ev->type == BH_EV_DELETED || strcmp(ev->kind, WL) != 0)
        return;
    r->told++;
    if (bh_store_get(r->s, WL, ev->name, &o, &err) < 0 ||
        atoll(meta_str(o, "resourceVersion")) != atoll(meta_str(ev->object, "resourceVersion")))
        r->behind++;
    cJSON_Delete(o);
}

static void *cache_race_write(void *arg)
{
    struct cache_race *r = arg;
    struct bh_err err;
    for (int i = 2; i <= CACHE_RACE_WRITES; i++) {
        cJSON *o = make_obj(WL, "web", NULL);
        bh_json_set_num(bh_json_obj(o, "spec"), "version", i);
        r->failures += bh_store_update(r->s, o, NULL, &err) < 0;
        cJSON_Delete(o);
        __atomic_store_n(&r->acknowledged, i, __ATOMIC_RELEASE);
    }
    __atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* Reads racing writes never answer a generation older than the last write that returned
 * before the read began (each write's spec is new, so its generation is its count). */
static void test_cache_never_older_than_a_returned_write(void **state)
{
    struct fixture *f = *state;
    struct bh_err err;
    struct cache_race r = {.s = f->s, .acknowledged = 1};
    bh_store_cache_kind(f->s, WL);
    bh_store_subscribe(f->s, read_on_event, &r);
    cJSON *in = make_obj(WL, "web", "{\"version\":1}");
    assert_int_equal(bh_store_create(f->s, in, NULL, &err), 0);
    cJSON_Delete(in);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, cache_race_write, &r), 0);
    int reads = 0;
    while (!__atomic_load_n(&r.done, __ATOMIC_ACQUIRE) || reads == 0) {
        int floor = __atomic_load_n(&r.acknowledged, __ATOMIC_ACQUIRE);
        cJSON *o = NULL;
        assert_int_equal(bh_store_get(f->s, WL, "web", &o, &err), 0);
        r.stale += meta_num(o, "generation") < floor;
        cJSON_Delete(o);
        reads++;
    }
    pthread_join(t, NULL);
    assert_int_equal(r.failures, 0);
    assert_int_equal(r.stale, 0);
    assert_int_equal(r.told, CACHE_RACE_WRITES);
    assert_int_equal(r.behind, 0);
    expect_wl_num(f->s, CACHE_RACE_WRITES);
}

/* ---- the audit log's queued appends ---- */

/* Rows of audit.db read through a connection of our own (a query would commit the queue). */
static int audit_rows_on_disk(const char *path, const char *actor)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int n = -1;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM audit WHERE actor = ?", -1, &st, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_text(st, 1, actor, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int(st, 0);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static void audit_queue(struct bh_audit *a, const char *actor, int n)
{
    for (int i = 0; i < n; i++) {
        char target[16];
        snprintf(target, sizeof(target), "r%d", i);
        struct bh_audit_rec rec = {.actor = actor,
                                   .action = "claim",
                                   .tenant = "t",
                                   .target = target,
                                   .outcome = "ok",
                                   .status = 200};
        bh_audit_append_async(a, &rec);
    }
}

/* The writer commits queued records on its own within its interval. */
static void test_audit_writer_flushes(void **state)
{
    struct fixture *f = *state;
    bh_autofree char *path = bh_xasprintf("%s/audit.db", f->dir);
    struct bh_audit *a = NULL;
    struct bh_err err;
    assert_int_equal(bh_audit_open(path, 100000, &a, &err), 0);
    assert_int_equal(bh_audit_start_writer(a, 20, &err), 0);
    assert_int_equal(bh_audit_start_writer(a, 20, &err), -1); /* once */
    audit_queue(a, "queued", 10);
    for (int i = 0; i < 1000 && audit_rows_on_disk(path, "queued") < 10; i++)
        usleep(10000); /* up to 10 s: the writer's 20 ms, on a slow machine */
    assert_int_equal(audit_rows_on_disk(path, "queued"), 10);
    bh_audit_close(a);
}

/* Queued records are not on the disk before the writer's interval; the next synchronous
 * append commits them before itself (the log keeps the order of appends), a query sees them,
 * and a close commits what is still queued. */
static void test_audit_queue_order_and_close(void **state)
{
    struct fixture *f = *state;
    bh_autofree char *path = bh_xasprintf("%s/audit.db", f->dir);
    struct bh_audit *a = NULL;
    struct bh_err err;
    assert_int_equal(bh_audit_open(path, 100000, &a, &err), 0);
    assert_int_equal(bh_audit_start_writer(a, 3600 * 1000, &err), 0);
    audit_queue(a, "early", 5);
    assert_int_equal(audit_rows_on_disk(path, "early"), 0);
    struct bh_audit_rec sync = {.actor = "sync", .action = "release", .outcome = "ok"};
    assert_int_equal(bh_audit_append(a, &sync, &err), 0);
    assert_int_equal(audit_rows_on_disk(path, "early"), 5);
    cJSON *list = NULL;
    struct bh_audit_query q = {.limit = 10};
    assert_int_equal(bh_audit_query(a, &q, &list, &err), 0);
    assert_int_equal(cJSON_GetArraySize(list), 6);
    assert_string_equal(bh_json_str(cJSON_GetArrayItem(list, 0), "actor"), "sync"); /* newest */
    assert_string_equal(bh_json_str(cJSON_GetArrayItem(list, 1), "target"), "r4");
    assert_int_equal(bh_json_int(cJSON_GetArrayItem(list, 1), "status", 0), 200);
    cJSON_Delete(list);

    audit_queue(a, "late", 3);
    struct bh_audit_query late = {.actor = "late"};
    assert_int_equal(audit_rows_on_disk(path, "late"), 0);
    bh_audit_close(a);
    assert_int_equal(audit_rows_on_disk(path, "late"), 3);
    assert_int_equal(bh_audit_open(path, 100000, &a, &err), 0);
    assert_int_equal(bh_audit_query(a, &late, &list, &err), 0);
    assert_int_equal(cJSON_GetArraySize(list), 3);
    cJSON_Delete(list);
    /* Without a writer (the CLI's use) a queued append is committed at once. */
    audit_queue(a, "nowriter", 1);
    assert_int_equal(audit_rows_on_disk(path, "nowriter"), 1);
    bh_audit_close(a);
}

/* A burst is committed in large batches as it comes, not held for the writer's interval
 * (here an hour): all but the last partial batch reach the disk without a query or a close;
 * the close commits the rest, and nothing is dropped. */
static void test_audit_burst_is_committed_in_batches(void **state)
{
    struct fixture *f = *state;
    bh_autofree char *path = bh_xasprintf("%s/audit.db", f->dir);
    struct bh_audit *a = NULL;
    struct bh_err err;
    assert_int_equal(bh_audit_open(path, 1000000, &a, &err), 0);
    assert_int_equal(bh_audit_start_writer(a, 3600 * 1000, &err), 0);
    audit_queue(a, "flood", 40000);
    for (int i = 0; i < 1000 && audit_rows_on_disk(path, "flood") < 30000; i++)
        usleep(10000);
    assert_in_range(audit_rows_on_disk(path, "flood"), 30000, 40000);
    bh_audit_close(a);
    assert_int_equal(audit_rows_on_disk(path, "flood"), 40000);
}

/* Past max_records the oldest records are dropped, a batch at a time: at most one batch's
 * pruning interval (64) over the bound remains, the newest among them. */
static void test_audit_bound_drops_the_oldest(void **state)
{
    struct fixture *f = *state;
    bh_autofree char *path = bh_xasprintf("%s/audit.db", f->dir);
    struct bh_audit *a = NULL;
    struct bh_err err;
    assert_int_equal(bh_audit_open(path, 100, &a, &err), 0);
    assert_int_equal(bh_audit_start_writer(a, 1, &err), 0);
    audit_queue(a, "many", 1000);
    bh_audit_close(a);
    assert_in_range(audit_rows_on_disk(path, "many"), 100, 100 + 63);
    assert_int_equal(bh_audit_open(path, 100, &a, &err), 0);
    cJSON *list = NULL;
    struct bh_audit_query q = {.limit = 1};
    assert_int_equal(bh_audit_query(a, &q, &list, &err), 0);
    assert_string_equal(bh_json_str(cJSON_GetArrayItem(list, 0), "target"), "r999");
    cJSON_Delete(list);
    bh_audit_close(a);
}

/* The targets of every record in the audit log at path, oldest first, comma-separated
 * (owned): read straight from the file, not through a bh_audit (which would commit). */
static char *audit_targets_on_disk(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    char *out = bh_xstrdup("");
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT target FROM audit ORDER BY id", -1, &st, NULL),
                     SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        char *next =
            bh_xasprintf("%s%s%s", out, *out ? "," : "", (const char *)sqlite3_column_text(st, 0));
        free(out);
        out = next;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

static void audit_logged(struct bh_audit *a, const char *target)
{
    struct bh_audit_rec rec = {.actor = "admin",
                               .action = "claim",
                               .tenant = "t",
                               .target = target,
                               .outcome = "ok",
                               .status = 201};
    struct bh_err err;
    assert_int_equal(bh_audit_append_logged(a, &rec, &err), 0);
}

/* A journaled record is not committed before the call returns, but a process crash keeps it:
 * the next writer's start commits the records the crash left (once each: not the ones a
 * commit had taken already), in the order of the appends, and empties the journal. */
static void test_audit_journal_survives_a_crash(void **state)
{
    struct fixture *f = *state;
    bh_autofree char *path = bh_xasprintf("%s/audit.db", f->dir);
    bh_autofree char *journal = bh_xasprintf("%s.pending", path);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) { /* a daemon that dies without closing anything */
        struct bh_audit *a = NULL;
        struct bh_err err;
        if (bh_audit_open(path, 100000, &a, &err) < 0 ||
            bh_audit_start_writer(a, 3600 * 1000, &err) < 0)
            _exit(2);
        audit_logged(a, "a1");
        audit_logged(a, "a2");
        struct bh_audit_rec sync = {.actor = "admin", .action = "release", .target = "s"};
        if (bh_audit_append(a, &sync, &err) < 0) /* commits a1, a2 before itself */
            _exit(3);
        audit_logged(a, "b1");
        audit_logged(a, "b2");
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    bh_autofree char *before = audit_targets_on_disk(path);
    assert_string_equal(before, "a1,a2,s");
    struct bh_audit *a = NULL;
    struct bh_err err;
    /* The CLI (no writer) leaves the journal alone: the daemon may be running. */
    assert_int_equal(bh_audit_open(path, 100000, &a, &err), 0);
    bh_audit_close(a);
    bh_autofree char *cli = audit_targets_on_disk(path);
    assert_string_equal(cli, "a1,a2,s");
    assert_int_equal(bh_audit_open(path, 100000, &a, &err), 0);
    assert_int_equal(bh_audit_start_writer(a, 3600 * 1000, &err), 0);
    bh_autofree char *after = audit_targets_on_disk(path);
    assert_string_equal(after, "a1,a2,s,b1,b2");
    bh_autofree char *left = NULL;
    size_t len = 1;
    assert_int_equal(bh_fs_read_all(journal, 1 << 20, &left, &len, &err), 0);
    assert_int_equal(len, 0);
    /* New lines go on after the ones committed; a clean close commits them. */
    audit_logged(a, "c1");
    bh_audit_close(a);
    assert_int_equal(bh_audit_open(path, 100000, &a, &err), 0);
    assert_int_equal(bh_audit_start_writer(a, 3600 * 1000, &err), 0);
    bh_audit_close(a);
    bh_autofree char *last = audit_targets_on_disk(path);
    assert_string_equal(last, "a1,a2,s,b1,b2,c1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_crud, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_concurrent_appends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_writer_flushes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_queue_order_and_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_burst_is_committed_in_batches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_bound_drops_the_oldest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_journal_survives_a_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_follows_every_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_never_older_than_a_returned_write, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stale_rv_conflicts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_generation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_finalizers_and_subscriber, setup, teardown),
        cmocka_unit_test_setup_teardown(test_label_selector, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replica, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update_all_lazy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_order_and_filter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compaction_conflicts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_woken_by_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_durable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigkill_leaves_consistent_db, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
