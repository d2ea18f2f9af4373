/* The dashboard's path check (core/api/ui.c): what may name a file under the root. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "ui.h"

static void test_paths_allowed(void **state)
{
    assert_true(bh_ui_path_ok("index.html"));
    assert_true(bh_ui_path_ok("assets/main-ABC123.js"));
    assert_true(bh_ui_path_ok("a/b/c.d.e"));
    assert_true(bh_ui_path_ok("x..y")); /* dots inside a name are fine */
}

static void test_paths_refused(void **state)
{
    static const char *const bad[] = {
        "",          "..",   ".",  "../etc/passwd", "assets/../../x", "assets/..", "./index",
        "/etc/pass", "a//b", "a/", ".hidden",       "a/.git/x",       "a\\..\\b",  "..\\x",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (bh_ui_path_ok(bad[i]))
            fail_msg("accepted \"%s\"", bad[i]);
    }
    assert_false(bh_ui_path_ok(NULL));
    char longp[600];
    memset(longp, 'a', sizeof(longp) - 1);
    longp[sizeof(longp) - 1] = '\0';
    assert_false(bh_ui_path_ok(longp));
}

static void test_wanted(void **state)
{
    assert_true(bh_ui_wanted("/ui"));
    assert_true(bh_ui_wanted("/ui/"));
    assert_true(bh_ui_wanted("/ui/assets/x.js"));
    assert_false(bh_ui_wanted("/uix"));
    assert_false(bh_ui_wanted("/api/v1/ui"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths_allowed),
        cmocka_unit_test(test_paths_refused),
        cmocka_unit_test(test_wanted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
