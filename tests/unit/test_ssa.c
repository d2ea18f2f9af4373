/* Server-side apply (core/kapi/ssa.c): field sets, conflicts, forced takeover, shared
 * ownership, removal of fields an applier dropped, Update ownership, and kubectl's message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "mem.h"
#include "ssa.h"

#define NOW "2026-01-01T00:00:00Z"
#define GV "boilerhouse.dev/v1alpha1"

static cJSON *J(const char *text)
{
    cJSON *o = cJSON_Parse(text);
    assert_non_null(o);
    return o;
}

/* The fieldsV1 of manager's entry with operation op, or NULL. */
static const cJSON *owned(const cJSON *obj, const char *manager, const char *op)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, bh_json_get(obj, "metadata.managedFields")) {
        if (!strcmp(bh_json_str(e, "manager"), manager) && !strcmp(bh_json_str(e, "operation"), op))
            return bh_json_get(e, "fieldsV1");
    }
    return NULL;
}

static int owns(const cJSON *obj, const char *manager, const char *op, const char *dotted)
{
    const cJSON *node = owned(obj, manager, op);
    bh_autofree char *path = bh_xstrdup(dotted);
    for (char *save = NULL, *t = strtok_r(path, ".", &save); t && node;
         t = strtok_r(NULL, ".", &save)) {
        bh_autofree char *key = bh_xasprintf("f:%s", t);
        node = cJSON_GetObjectItemCaseSensitive(node, key);
    }
    return node != NULL;
}

static int apply(cJSON **live, const char *config, const char *manager, int force,
                 struct bh_ssa_result *res)
{
    cJSON *c = J(config);
    struct bh_err err;
    int rc = bh_ssa_apply(live, c, manager, force, GV, NOW, res, &err);
    cJSON_Delete(c);
    return rc;
}

#define BASE                                                                                       \
    "{\"apiVersion\":\"" GV "\",\"kind\":\"BoilerhouseWorkload\",\"metadata\":{\"name\":\"w\"}"

static void test_fields_skip_system_metadata_and_status(void **state)
{
    cJSON *c = J(BASE ",\"spec\":{\"version\":\"1\",\"image\":{\"ref\":\"a\"}},\"status\":{}}");
    cJSON *f = bh_ssa_fields(c);
    bh_autofree char *text = cJSON_PrintUnformatted(f);
    assert_string_equal(text, "{\"f:spec\":{\"f:version\":{},\"f:image\":{\"f:ref\":{}}}}");
    cJSON_Delete(f);
    cJSON_Delete(c);
}

static void test_apply_owns_then_conflicts_with_another_manager(void **state)
{
    cJSON *live = J(BASE "}");
    struct bh_ssa_result res;
    assert_int_equal(
        apply(&live, BASE ",\"spec\":{\"version\":\"1\",\"size\":2}}", "alice", 0, &res), 0);
    assert_string_equal(bh_json_str(live, "spec.version"), "1");
    assert_true(owns(live, "alice", "Apply", "spec.version"));
    cJSON *before = cJSON_Duplicate(live, 1);
    /* bob changes alice's field: a conflict naming alice and the field; nothing changes */
    assert_int_equal(apply(&live, BASE ",\"spec\":{\"version\":\"2\"}}", "bob", 0, &res), -1);
    assert_int_equal(res.n_conflicts, 1);
    assert_string_equal(res.conflicts[0].manager, "alice");
    assert_string_equal(res.conflicts[0].field, ".spec.version");
    assert_true(cJSON_Compare(before, live, 1));
    bh_autofree char *msg = bh_ssa_conflict_message(&res, GV);
    assert_string_equal(msg, "Apply failed with 1 conflict: conflict with \"alice\" using " GV
                             ": .spec.version");
    /* the same value is no conflict: both own it */
    assert_int_equal(apply(&live, BASE ",\"spec\":{\"size\":2}}", "bob", 0, &res), 0);
    assert_true(owns(live, "alice", "Apply", "spec.size"));
    assert_true(owns(live, "bob", "Apply", "spec.size"));
    cJSON_Delete(before);
    cJSON_Delete(live);
}

static void test_force_takes_the_field_over(void **state)
{
    cJSON *live = J(BASE "}");
    struct bh_ssa_result res;
    assert_int_equal(
        apply(&live, BASE ",\"spec\":{\"version\":\"1\",\"size\":2}}", "alice", 0, &res), 0);
    assert_int_equal(apply(&live, BASE ",\"spec\":{\"version\":\"2\"}}", "bob", 1, &res), 0);
    assert_string_equal(bh_json_str(live, "spec.version"), "2");
    assert_true(owns(live, "bob", "Apply", "spec.version"));
    assert_false(owns(live, "alice", "Apply", "spec.version"));
    assert_true(owns(live, "alice", "Apply", "spec.size"));
    cJSON_Delete(live);
}

static void test_dropped_fields_are_removed_unless_someone_else_owns_them(void **state)
{
    cJSON *live = J(BASE "}");
    struct bh_ssa_result res;
    assert_int_equal(apply(&live,
                           BASE
                           ",\"metadata\":{\"name\":\"w\",\"labels\":{\"a\":\"1\",\"b\":\"2\"}},"
                           "\"spec\":{\"version\":\"1\",\"size\":2}}",
                           "alice", 0, &res),
                     0);
    assert_int_equal(apply(&live, BASE ",\"spec\":{\"size\":2}}", "bob", 0, &res), 0);
    /* alice drops label b and spec.size: b goes, size stays (bob owns it too) */
    assert_int_equal(apply(&live,
                           BASE ",\"metadata\":{\"name\":\"w\",\"labels\":{\"a\":\"1\"}},"
                                "\"spec\":{\"version\":\"1\"}}",
                           "alice", 0, &res),
                     0);
    assert_null(bh_json_get(live, "metadata.labels.b"));
    assert_string_equal(bh_json_str(live, "metadata.labels.a"), "1");
    assert_int_equal(bh_json_int(live, "spec.size", 0), 2);
    assert_false(owns(live, "alice", "Apply", "spec.size"));
    cJSON_Delete(live);
}

static void test_an_update_takes_the_fields_it_changes(void **state)
{
    cJSON *live = J(BASE "}");
    struct bh_ssa_result res;
    assert_int_equal(
        apply(&live, BASE ",\"spec\":{\"version\":\"1\",\"size\":2}}", "alice", 0, &res), 0);
    cJSON *edited = cJSON_Duplicate(live, 1);
    cJSON_ReplaceItemInObjectCaseSensitive(bh_json_get(edited, "spec"), "size",
                                           cJSON_CreateNumber(3));
    bh_ssa_update(live, edited, "kubectl-edit", GV, NOW);
    assert_true(owns(edited, "kubectl-edit", "Update", "spec.size"));
    assert_false(owns(edited, "alice", "Apply", "spec.size"));
    assert_true(owns(edited, "alice", "Apply", "spec.version"));
    /* alice applying her old value now conflicts with the editor */
    assert_int_equal(
        apply(&edited, BASE ",\"spec\":{\"version\":\"1\",\"size\":2}}", "alice", 0, &res), -1);
    assert_string_equal(res.conflicts[0].manager, "kubectl-edit");
    assert_string_equal(res.conflicts[0].field, ".spec.size");
    cJSON_Delete(edited);
    cJSON_Delete(live);
}

static void test_a_noop_update_adds_no_owner(void **state)
{
    cJSON *live = J(BASE ",\"spec\":{\"version\":\"1\"}}");
    cJSON *same = cJSON_Duplicate(live, 1);
    bh_ssa_update(live, same, "kubectl-label", GV, NOW);
    assert_null(bh_json_get(same, "metadata.managedFields"));
    cJSON_Delete(same);
    cJSON_Delete(live);
}

/* Writing again what is there changes nothing, managedFields' times included, so the store
 * records no change. */
static void test_a_repeat_keeps_the_entry_time(void **state)
{
    cJSON *live = J(BASE "}");
    struct bh_ssa_result res;
    const char *cfg = BASE ",\"spec\":{\"version\":\"1\"}}";
    assert_int_equal(apply(&live, cfg, "alice", 0, &res), 0);
    cJSON *c = J(cfg), *first = cJSON_Duplicate(live, 1);
    struct bh_err err;
    assert_int_equal(bh_ssa_apply(&live, c, "alice", 0, GV, "2030-01-01T00:00:00Z", &res, &err), 0);
    assert_true(cJSON_Compare(first, live, 1));
    cJSON *edited = cJSON_Duplicate(live, 1);
    bh_json_set_str(bh_json_obj(edited, "spec"), "version", "2");
    bh_ssa_update(live, edited, "ed", GV, NOW);
    cJSON *again = cJSON_Duplicate(edited, 1);
    bh_ssa_update(edited, again, "ed", GV, "2030-01-01T00:00:00Z");
    assert_true(cJSON_Compare(edited, again, 1));
    cJSON_Delete(again);
    cJSON_Delete(edited);
    cJSON_Delete(c);
    cJSON_Delete(first);
    cJSON_Delete(live);
}

static void test_bad_input_is_refused(void **state)
{
    cJSON *live = J(BASE "}");
    struct bh_ssa_result res;
    assert_int_equal(apply(&live, "[1,2]", "alice", 0, &res), -1);
    /* malformed managedFields sent back are ignored, not trusted */
    cJSON *odd = J(BASE ",\"metadata\":{\"name\":\"w\",\"managedFields\":[1,{\"manager\":7},"
                        "{\"manager\":\"x\",\"operation\":\"Apply\",\"fieldsV1\":[]}]}}");
    assert_int_equal(apply(&odd, BASE ",\"spec\":{\"version\":\"1\"}}", "alice", 0, &res), 0);
    assert_int_equal(cJSON_GetArraySize(bh_json_get(odd, "metadata.managedFields")), 1);
    cJSON_Delete(odd);
    cJSON_Delete(live);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields_skip_system_metadata_and_status),
        cmocka_unit_test(test_apply_owns_then_conflicts_with_another_manager),
        cmocka_unit_test(test_force_takes_the_field_over),
        cmocka_unit_test(test_dropped_fields_are_removed_unless_someone_else_owns_them),
        cmocka_unit_test(test_an_update_takes_the_fields_it_changes),
        cmocka_unit_test(test_a_noop_update_adds_no_owner),
        cmocka_unit_test(test_a_repeat_keeps_the_entry_time),
        cmocka_unit_test(test_bad_input_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
