#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <limits.h>

#include <cjson/cJSON.h>

#include "clock.h"
#include "err.h"
#include "fs.h"
#include "json.h"
#include "mem.h"
#include "num.h"
#include "proc.h"
#include "wsframe.h"

static void test_err_wrap_keeps_code(void **state)
{
    struct bh_err err;
    assert_int_equal(bh_err_set(&err, BH_ENOTFOUND, "workload %s", "web"), -1);
    bh_err_wrap(&err, "claim");
    assert_int_equal(err.code, BH_ENOTFOUND);
    assert_string_equal(err.msg, "claim: workload web");
    assert_int_equal(bh_err_http_status(BH_ECONFLICT), 409);
    assert_int_equal(bh_err_http_status(99), 500);
}

static void test_write_atomic_replaces(void **state)
{
    char dir[] = "/tmp/bh-test-fs-XXXXXX";
    assert_non_null(mkdtemp(dir));
    bh_autofree char *path = bh_xasprintf("%s/a/b/file", dir);
    bh_autofree char *sub = bh_xasprintf("%s/a/b", dir);
    struct bh_err err;
    assert_int_equal(bh_fs_mkdirp(sub, 0755, &err), 0);
    assert_int_equal(bh_fs_write_atomic(path, "one", 3, 0600, &err), 0);
    assert_int_equal(bh_fs_write_atomic(path, "second", 6, 0600, &err), 0);
    char *data = NULL;
    size_t len = 0;
    assert_int_equal(bh_fs_read_all(path, 1024, &data, &len, &err), 0);
    assert_string_equal(data, "second");
    free(data);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(bh_fs_read_all(path, 2, &data, &len, &err), -1);
    assert_int_equal(err.code, BH_ETOOLARGE);
    int rr = bh_fs_rmtree(dir, &err);
    if (rr < 0)
        fail_msg("%s", err.msg);
    assert_false(bh_fs_exists(dir));
}

static void test_safe_component(void **state)
{
    assert_true(bh_fs_safe_component("alice"));
    assert_false(bh_fs_safe_component(".."));
    assert_false(bh_fs_safe_component("."));
    assert_false(bh_fs_safe_component("a/b"));
    assert_false(bh_fs_safe_component(""));
}

static void test_proc_captures_and_feeds_stdin(void **state)
{
    const char *argv[] = {"cat", NULL};
    struct bh_proc_opts o = {.stdin_data = "hello", .stdin_len = 5, .stdout_fd = -1};
    struct bh_proc_result res;
    struct bh_err err;
    assert_int_equal(bh_proc_run(argv, &o, &res, &err), 0);
    assert_int_equal(res.exit_code, 0);
    assert_string_equal(res.out, "hello");
    bh_proc_result_free(&res);

    const char *fail[] = {"sh", "-c", "echo boom >&2; exit 3", NULL};
    assert_int_equal(bh_proc_check(fail, &err), -1);
    assert_non_null(strstr(err.msg, "exited 3: boom"));

    const char *slow[] = {"sleep", "5", NULL};
    struct bh_proc_opts t = {.timeout_ms = 100, .stdout_fd = -1};
    assert_int_equal(bh_proc_run(slow, &t, &res, &err), -1);
    assert_int_equal(err.code, BH_ETIMEOUT);
    bh_proc_result_free(&res);
}

/* Runs fn in a child process and returns its wait status. */
static int in_child(void (*fn)(void))
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        fn();
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

static void strdup_null(void)
{
    free(bh_xstrdup(NULL));
}

/* The sanitizers reserve terabytes of address space up front: an address-space limit cannot
 * make malloc fail under them (the normal pass checks the cJSON half). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#else
#define SANITIZED 0

/* Under an address-space limit 64 MB above what the process uses now, cJSON allocates until
 * memory runs out: hooked to the aborting allocator it aborts; unhooked it would return NULL
 * and this would exit 0. */
static void cjson_until_oom(void)
{
    long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%ld", &pages) != 1)
        _exit(2);
    fclose(f);
    rlim_t limit = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + (64u << 20);
    struct rlimit rl = {limit, limit};
    if (setrlimit(RLIMIT_AS, &rl) < 0)
        _exit(2);
    char *big = malloc(1 << 20);
    if (!big)
        _exit(2);
    memset(big, 'x', (1 << 20) - 1);
    big[(1 << 20) - 1] = '\0';
    while (cJSON_CreateString(big)) /* leaked on purpose: the point is to run out */
        ;
    _exit(0);
}
#endif

static void test_allocation_failures_abort(void **state)
{
    int st = in_child(strdup_null);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
#if !SANITIZED
    st = in_child(cjson_until_oom);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
#endif
}

/* A value or key borrowed from the item being replaced stays valid until it is copied (the
 * ASan pass turns a regression into a heap-use-after-free). */
static void test_json_set_borrowed_from_replaced(void **state)
{
    cJSON *obj = cJSON_Parse("{\"phase\":\"Running\",\"n\":1}");
    bh_json_set_str(obj, "phase", bh_json_str(obj, "phase"));
    assert_string_equal(bh_json_str(obj, "phase"), "Running");
    bh_json_set_str(obj, cJSON_GetObjectItemCaseSensitive(obj, "phase")->string, "Stopped");
    assert_string_equal(bh_json_str(obj, "phase"), "Stopped");
    bh_json_set_num(obj, cJSON_GetObjectItemCaseSensitive(obj, "n")->string, 2);
    assert_int_equal(bh_json_int(obj, "n", 0), 2);
    bh_json_set_str(obj, "detail", "new");
    bh_json_set_str(obj, "phase", NULL);
    assert_null(bh_json_get(obj, "phase"));
    assert_string_equal(bh_json_str(obj, "detail"), "new");
    cJSON_Delete(obj);
}

/* The backoff pools, the queue and triggers share: doubling from min, capped at max. */
static void test_backoff_doubles_to_cap(void **state)
{
    assert_int_equal(bh_clock_backoff_ms(1, 1000, 60000), 1000);
    assert_int_equal(bh_clock_backoff_ms(2, 1000, 60000), 2000);
    assert_int_equal(bh_clock_backoff_ms(6, 1000, 60000), 32000);
    assert_int_equal(bh_clock_backoff_ms(7, 1000, 60000), 60000);
    assert_int_equal(bh_clock_backoff_ms(1000, 1000, 60000), 60000);
    assert_int_equal(bh_clock_backoff_ms(3, 100, 250), 250);
}

static void test_num_parse_strict(void **state)
{
    (void)state;
    struct bh_err err;
    long long n = 7;
    assert_int_equal(bh_num_parse("42", 0, 100, &n, &err), 0);
    assert_int_equal(n, 42);
    assert_int_equal(bh_num_parse("-3", -5, 5, &n, &err), 0);
    assert_int_equal(n, -3);
    const char *bad[] = {"",   "-",    "+4",  " 4",  "4 ",
                         "4x", "0x10", "1e3", "--1", "99999999999999999999"};
    for (size_t i = 0; i < BH_ARRAY_LEN(bad); i++) {
        n = 7;
        assert_int_equal(bh_num_parse(bad[i], LLONG_MIN, LLONG_MAX, &n, &err), -1);
        assert_int_equal(n, 7); /* unchanged on failure */
    }
    assert_int_equal(bh_num_parse("101", 0, 100, &n, &err), -1);
    assert_non_null(strstr(err.msg, "from 0 to 100"));
    assert_int_equal(bh_num_parse(NULL, 0, 1, &n, NULL), -1);
}

static void test_rfc3339_parse(void **state)
{
    (void)state;
    assert_int_equal(bh_clock_parse_rfc3339("1970-01-01T00:00:01Z"), 1000);
    assert_int_equal(bh_clock_parse_rfc3339("2026-12-02T05:00:00Z"), 1796187600000LL);
    /* a fraction is a fraction: .5 is 500 ms, digits past milliseconds are dropped */
    assert_int_equal(bh_clock_parse_rfc3339("1970-01-01T00:00:01.5Z"), 1500);
    assert_int_equal(bh_clock_parse_rfc3339("1970-01-01T00:00:01.123456Z"), 1123);
    const char *bad[] = {"",
                         "2026-12-02",
                         "2026-12-02T05:00:00",
                         "2026-12-02T05:00:00+01:00",
                         "2026-12-02T05:00:00.Z",
                         "2026-12-02T05:00:00Zx",
                         "yesterday"};
    for (size_t i = 0; i < BH_ARRAY_LEN(bad); i++)
        assert_int_equal(bh_clock_parse_rfc3339(bad[i]), -1);
    assert_int_equal(bh_clock_parse_rfc3339(NULL), -1);
    char now[32];
    bh_clock_rfc3339(now); /* what we write, we read back */
    long long ms = bh_clock_parse_rfc3339(now);
    assert_true(ms / 1000 >= (long long)time(NULL) - 5 && ms / 1000 <= (long long)time(NULL));
}

/* Frames as both ends build and parse them: sizes at each length encoding, a client's
 * masking undone, partial input, wrong masking and oversize refused; RFC 6455's example key. */
static void test_wsframe_round_trips(void **state)
{
    static const size_t sizes[] = {0, 5, 125, 126, 65535, 65536};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        for (int mask = 0; mask <= 1; mask++) {
            char *data = bh_xmalloc(sizes[i] + 1);
            for (size_t j = 0; j < sizes[i]; j++)
                data[j] = (char)('a' + j % 26);
            char *buf = NULL;
            size_t len = 0;
            bh_wsframe_append(&buf, &len, BH_WS_OP_TEXT, data, sizes[i], mask);
            struct bh_wsframe f;
            /* Every strict prefix is incomplete, not an error. */
            size_t step = len > 300 ? len / 7 + 1 : 1;
            for (size_t cut = 0; cut < len; cut += step)
                assert_int_equal(bh_wsframe_parse((unsigned char *)buf, cut, 1 << 20, mask, &f), 0);
            assert_int_equal(bh_wsframe_parse((unsigned char *)buf, len, 1 << 20, !mask, &f), -1);
            assert_int_equal(bh_wsframe_parse((unsigned char *)buf, len, 1 << 20, mask, &f),
                             (ssize_t)len);
            assert_int_equal(f.opcode, BH_WS_OP_TEXT);
            assert_true(f.fin);
            assert_int_equal(f.len, sizes[i]);
            assert_memory_equal(f.payload, data, sizes[i]);
            if (sizes[i] > 0)
                assert_int_equal(
                    bh_wsframe_parse((unsigned char *)buf, len, sizes[i] - 1, mask, &f), -1);
            free(buf);
            free(data);
        }
    char accept[29];
    bh_wsframe_accept_key("dGhlIHNhbXBsZSBub25jZQ==", accept);
    assert_string_equal(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_err_wrap_keeps_code),
        cmocka_unit_test(test_backoff_doubles_to_cap),
        cmocka_unit_test(test_num_parse_strict),
        cmocka_unit_test(test_rfc3339_parse),
        cmocka_unit_test(test_allocation_failures_abort),
        cmocka_unit_test(test_write_atomic_replaces),
        cmocka_unit_test(test_safe_component),
        cmocka_unit_test(test_proc_captures_and_feeds_stdin),
        cmocka_unit_test(test_json_set_borrowed_from_replaced),
        cmocka_unit_test(test_wsframe_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
