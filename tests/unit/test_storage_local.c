/* Drives the real bh-storage-local.so through the loader, against a temp state dir. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs.h"
#include "mem.h"
#include "plugin.h"

struct st_fixture {
    char dir[64];
    struct bh_plugin *plugin;
    const struct bh_storage_ops *ops;
};

static int st_load(struct st_fixture *f)
{
    bh_autofree char *path = bh_xasprintf("%s/bh-storage-local.so", BH_PLUGIN_DIR);
    struct bh_err err;
    if (bh_plugin_load(&(struct bh_plugin_env){.state_dir = f->dir}, path, NULL, &f->plugin, &err) <
        0)
        return -1;
    f->ops = f->plugin->info->ops;
    return 0;
}

static int setup(void **state)
{
    struct st_fixture *f = bh_xcalloc(1, sizeof(*f));
    *state = f;
    snprintf(f->dir, sizeof(f->dir), "/tmp/bh-test-storage-XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    struct st_fixture *f = *state;
    struct bh_err err;
    bh_plugin_unload(f->plugin);
    BH_IGNORE(bh_fs_rmtree(f->dir, &err)); /* teardown: best effort */
    free(f);
    return 0;
}

static struct st_fixture *st_loaded(void **state)
{
    struct st_fixture *f = *state;
    assert_int_equal(st_load(f), 0);
    return f;
}

/* Writes data to <fixture dir>/<name>; returns the owned path. */
static char *st_file(struct st_fixture *f, const char *name, const void *data, size_t len)
{
    char *path = bh_xasprintf("%s/%s", f->dir, name);
    struct bh_err err;
    assert_int_equal(bh_fs_write_atomic(path, data, len, 0600, &err), 0);
    return path;
}

static char *st_read(const char *path, size_t *len)
{
    char *data = NULL;
    struct bh_err err;
    if (bh_fs_read_all(path, 4u << 20, &data, len, &err) < 0)
        fail_msg("%s", err.msg);
    return data;
}

static void st_put_ok(struct st_fixture *f, const char *key, const char *src)
{
    struct bh_err err;
    if (f->ops->put(f->plugin->state, key, src, &err) < 0)
        fail_msg("put %s: %s", key, err.msg);
}

static void test_roundtrip_1mb_random(void **state)
{
    struct st_fixture *f = st_loaded(state);
    size_t len = 1u << 20;
    bh_autofree unsigned char *data = bh_xmalloc(len);
    srand((unsigned)getpid());
    for (size_t i = 0; i < len; i++)
        data[i] = (unsigned char)rand();
    bh_autofree char *src = st_file(f, "src", data, len);
    st_put_ok(f, "web/alice.snap", src);
    uint64_t size = 0;
    struct bh_err err;
    assert_int_equal(f->ops->stat(f->plugin->state, "web/alice.snap", &size, &err), 0);
    assert_int_equal(size, len);
    bh_autofree char *dst = bh_xasprintf("%s/restored", f->dir);
    assert_int_equal(f->ops->get(f->plugin->state, "web/alice.snap", dst, &err), 0);
    size_t got_len = 0;
    bh_autofree char *got = st_read(dst, &got_len);
    assert_int_equal(got_len, len);
    assert_memory_equal(got, data, len);
    /* The object sits where the default config says: <state dir>/snapshots/<key>. */
    bh_autofree char *obj = bh_xasprintf("%s/snapshots/web/alice.snap", f->dir);
    assert_true(bh_fs_exists(obj));
}

static void test_overwrite_replaces_and_failed_put_keeps_old(void **state)
{
    struct st_fixture *f = st_loaded(state);
    bh_autofree char *one = st_file(f, "one", "first", 5);
    bh_autofree char *two = st_file(f, "two", "second!", 7);
    bh_autofree char *dst = st_file(f, "dst", "stale content", 13);
    st_put_ok(f, "web/bob.snap", one);
    st_put_ok(f, "web/bob.snap", two);
    struct bh_err err;
    bh_autofree char *missing = bh_xasprintf("%s/no-such-src", f->dir);
    assert_int_equal(f->ops->put(f->plugin->state, "web/bob.snap", missing, &err), -1);
    assert_int_equal(err.code, BH_EIO);
    assert_int_equal(f->ops->get(f->plugin->state, "web/bob.snap", dst, &err), 0);
    bh_autofree char *got = st_read(dst, NULL);
    assert_string_equal(got, "second!");
}

static void test_bad_keys_refused(void **state)
{
    struct st_fixture *f = st_loaded(state);
    static const char *const bad[] = {"../x", "/abs", "a//b", "a/./b",   "a/b c", "",
                                      "a/",   ".",    "a/..", "x.tmp.1", "a/b\n"};
    bh_autofree char *src = st_file(f, "src", "x", 1);
    bh_autofree char *dst = bh_xasprintf("%s/dst", f->dir);
    struct bh_err err;
    uint64_t size;
    for (size_t i = 0; i < BH_ARRAY_LEN(bad); i++) {
        void *s = f->plugin->state;
        assert_int_equal(f->ops->put(s, bad[i], src, &err), -1);
        assert_int_equal(err.code, BH_EINVAL);
        assert_non_null(strstr(err.msg, "is not a safe relative path"));
        assert_int_equal(f->ops->get(s, bad[i], dst, &err), -1);
        assert_int_equal(err.code, BH_EINVAL);
        assert_int_equal(f->ops->stat(s, bad[i], &size, &err), -1);
        assert_int_equal(err.code, BH_EINVAL);
        assert_int_equal(f->ops->del(s, bad[i], &err), -1);
        assert_int_equal(err.code, BH_EINVAL);
    }
    assert_false(bh_fs_exists(dst));
}

static void test_del_then_stat_not_found(void **state)
{
    struct st_fixture *f = st_loaded(state);
    bh_autofree char *src = st_file(f, "src", "data", 4);
    bh_autofree char *dst = bh_xasprintf("%s/dst", f->dir);
    st_put_ok(f, "web/carol.snap", src);
    struct bh_err err;
    uint64_t size;
    void *s = f->plugin->state;
    assert_int_equal(f->ops->del(s, "web/carol.snap", &err), 0);
    assert_int_equal(f->ops->stat(s, "web/carol.snap", &size, &err), -1);
    assert_int_equal(err.code, BH_ENOTFOUND);
    assert_int_equal(f->ops->get(s, "web/carol.snap", dst, &err), -1);
    assert_int_equal(err.code, BH_ENOTFOUND);
    assert_int_equal(f->ops->del(s, "web/carol.snap", &err), 0);
    assert_int_equal(f->ops->del(s, "never/was.snap", &err), 0);
}

static void test_init_removes_stale_tmp(void **state)
{
    struct st_fixture *f = *state;
    bh_autofree char *web = bh_xasprintf("%s/snapshots/web", f->dir);
    struct bh_err err;
    assert_int_equal(bh_fs_mkdirp(web, 0700, &err), 0);
    bh_autofree char *obj = st_file(f, "snapshots/web/dave.snap", "kept", 4);
    bh_autofree char *stale = st_file(f, "snapshots/web/dave.snap.tmp.Ab12Cd", "half", 4);
    assert_int_equal(st_load(f), 0);
    assert_false(bh_fs_exists(stale));
    assert_true(bh_fs_exists(obj));
}

static void test_relative_dir_refused(void **state)
{
    bh_autofree char *path = bh_xasprintf("%s/bh-storage-local.so", BH_PLUGIN_DIR);
    cJSON *cfg = cJSON_Parse("{\"dir\": \"snaps\"}");
    struct bh_plugin *p = NULL;
    struct bh_err err;
    assert_int_equal(bh_plugin_load(NULL, path, cfg, &p, &err), -1);
    assert_non_null(strstr(err.msg, "must be an absolute path"));
    cJSON_Delete(cfg);
}

#define ST_TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        ST_TEST(test_roundtrip_1mb_random),
        ST_TEST(test_overwrite_replaces_and_failed_put_keeps_old),
        ST_TEST(test_bad_keys_refused),
        ST_TEST(test_del_then_stat_not_found),
        ST_TEST(test_init_removes_stale_tmp),
        ST_TEST(test_relative_dir_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
