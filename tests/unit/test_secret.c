#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto.h"
#include "fs.h"
#include "mem.h"
#include "secret.h"

struct fx {
    char dir[64];
    struct bh_secrets *s;
};

static int setup(void **state)
{
    unsetenv("BOILERHOUSE_SECRET_KEY");
    struct fx *f = bh_xcalloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/bh-test-secret-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    struct bh_err err;
    if (bh_secrets_open(f->dir, &f->s, &err) < 0)
        fail_msg("open: %s", err.msg);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    struct bh_err err;
    bh_secrets_close(f->s);
    assert_int_equal(bh_fs_rmtree(f->dir, &err), 0);
    free(f);
    return 0;
}

static void check_value(struct bh_secrets *s, const char *tenant, const char *name, const char *key,
                        const char *want)
{
    char *v = NULL;
    struct bh_err err;
    if (!want) {
        assert_int_equal(bh_secrets_get(s, tenant, name, key, &v, &err), -1);
        assert_int_equal(err.code, BH_ENOTFOUND);
        return;
    }
    if (bh_secrets_get(s, tenant, name, key, &v, &err) < 0)
        fail_msg("get: %s", err.msg);
    assert_string_equal(v, want);
    free(v);
}

static void test_set_get_delete(void **state)
{
    struct fx *f = *state;
    struct bh_err err;
    assert_int_equal(bh_secrets_set(f->s, NULL, "db", "password", "hunter2", &err), 0);
    assert_int_equal(bh_secrets_set(f->s, NULL, "db", "user", "admin", &err), 0);
    assert_int_equal(bh_secrets_set(f->s, NULL, "db", "password", "s3cret", &err), 0);
    check_value(f->s, NULL, "db", "password", "s3cret");
    check_value(f->s, NULL, "db", "user", "admin");
    check_value(f->s, NULL, "db", "nope", NULL);
    check_value(f->s, NULL, "other", "x", NULL);
    /* a missing secret is named, not the file that would hold it */
    char *v = NULL;
    assert_int_equal(bh_secrets_get(f->s, NULL, "other", "x", &v, &err), -1);
    assert_string_equal(err.msg, "no secret other");
    assert_int_equal(bh_secrets_get(f->s, "t1", "other", "x", &v, &err), -1);
    assert_string_equal(err.msg, "tenant t1 has no secret other");
    assert_int_equal(bh_secrets_delete(f->s, NULL, "db", "user", &err), 0);
    check_value(f->s, NULL, "db", "user", NULL);
    check_value(f->s, NULL, "db", "password", "s3cret");
    assert_int_equal(bh_secrets_delete(f->s, NULL, "db", NULL, &err), 0);
    check_value(f->s, NULL, "db", "password", NULL);
    assert_int_equal(bh_secrets_delete(f->s, NULL, "db", NULL, &err), -1);
    assert_int_equal(err.code, BH_ENOTFOUND);
}

static void test_tenants_separate(void **state)
{
    struct fx *f = *state;
    struct bh_err err;
    assert_int_equal(bh_secrets_set(f->s, "alice", "api", "token", "A", &err), 0);
    assert_int_equal(bh_secrets_set(f->s, "bob", "api", "token", "B", &err), 0);
    assert_int_equal(bh_secrets_set(f->s, NULL, "api", "token", "G", &err), 0);
    check_value(f->s, "alice", "api", "token", "A");
    check_value(f->s, "bob", "api", "token", "B");
    check_value(f->s, NULL, "api", "token", "G");
    check_value(f->s, "carol", "api", "token", NULL);
    /* a file moved to another tenant's place does not decrypt (the AAD names its owner) */
    bh_autofree char *a = bh_xasprintf("%s/secrets/tenants/alice/api.sec", f->dir);
    bh_autofree char *b = bh_xasprintf("%s/secrets/tenants/bob/api.sec", f->dir);
    assert_int_equal(rename(a, b), 0);
    char *v = NULL;
    assert_int_equal(bh_secrets_get(f->s, "bob", "api", "token", &v, &err), -1);
    assert_int_equal(err.code, BH_EINVAL);
}

static void test_list_without_values(void **state)
{
    struct fx *f = *state;
    struct bh_err err;
    assert_int_equal(bh_secrets_set(f->s, "alice", "api", "token", "VALUE-ONE", &err), 0);
    assert_int_equal(bh_secrets_set(f->s, NULL, "db", "password", "VALUE-TWO", &err), 0);
    assert_int_equal(bh_secrets_set(f->s, NULL, "db", "user", "VALUE-THREE", &err), 0);
    cJSON *list = NULL;
    assert_int_equal(bh_secrets_list(f->s, &list, &err), 0);
    char *text = cJSON_PrintUnformatted(list);
    assert_null(strstr(text, "VALUE"));
    assert_non_null(strstr(text, "{\"name\":\"api\",\"tenant\":\"alice\",\"keys\":[\"token\"]}"));
    assert_non_null(strstr(text, "{\"name\":\"db\",\"keys\":[\"password\",\"user\"]}"));
    assert_int_equal(cJSON_GetArraySize(list), 2);
    free(text);
    cJSON_Delete(list);
}

static void test_files_private_and_encrypted(void **state)
{
    struct fx *f = *state;
    struct bh_err err;
    assert_int_equal(bh_secrets_set(f->s, "t1", "api", "token", "PLAINTEXT-MARK", &err), 0);
    bh_autofree char *path = bh_xasprintf("%s/secrets/tenants/t1/api.sec", f->dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char *data = NULL;
    size_t len = 0;
    assert_int_equal(bh_fs_read_all(path, 1 << 20, &data, &len, &err), 0);
    assert_null(memmem(data, len, "PLAINTEXT", 9));
    assert_null(memmem(data, len, "token", 5));
    /* tampering: flip one ciphertext byte */
    data[len - 20] ^= 1;
    assert_int_equal(bh_fs_write_atomic(path, data, len, 0600, &err), 0);
    free(data);
    char *v = NULL;
    assert_int_equal(bh_secrets_get(f->s, "t1", "api", "token", &v, &err), -1);
    assert_int_equal(err.code, BH_EINVAL);
    assert_non_null(strstr(err.msg, "authentication failed"));
}

static void test_invalid_names(void **state)
{
    struct fx *f = *state;
    struct bh_err err;
    static const char *bad[] = {"", ".", "..", "a/b", "../x", "a b", "x\n"};
    char *v = NULL;
    for (size_t i = 0; i < BH_ARRAY_LEN(bad); i++) {
        assert_int_equal(bh_secrets_set(f->s, NULL, bad[i], "k", "v", &err), -1);
        assert_int_equal(err.code, BH_EINVAL);
        assert_int_equal(bh_secrets_set(f->s, NULL, "n", bad[i], "v", &err), -1);
        assert_int_equal(bh_secrets_set(f->s, bad[i], "n", "k", "v", &err), -1);
        assert_int_equal(bh_secrets_get(f->s, bad[i], "n", "k", &v, &err), -1);
        assert_int_equal(bh_secrets_delete(f->s, NULL, bad[i], NULL, &err), -1);
    }
    char long_name[300];
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[299] = '\0';
    assert_int_equal(bh_secrets_set(f->s, NULL, long_name, "k", "v", &err), -1);
}

static void test_cli(void **state)
{
    struct fx *f = *state;
    bh_autofree char *cmd = bh_xasprintf(
        "echo 'cli-value' | %s secret set web token --tenant t2 --state-dir %s && "
        "%s secret get web token --tenant t2 --state-dir %s",
        BH_PLUGIN_DIR "/../boilerhouse", f->dir, BH_PLUGIN_DIR "/../boilerhouse", f->dir);
    FILE *p = popen(cmd, "r");
    char out[64] = {0};
    assert_non_null(fgets(out, sizeof(out), p));
    assert_int_equal(pclose(p), 0);
    assert_string_equal(out, "cli-value\n");
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_set_get_delete),      T(test_tenants_separate),
        T(test_list_without_values), T(test_files_private_and_encrypted),
        T(test_invalid_names),       T(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
