/* The settings table (core/settings.c): defaults, environment, flags, and malformed values
 * refused naming their variable or flag. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "operator.h"
#include "settings.h"

extern char **environ;

/* No BOILERHOUSE_* variable from the caller's environment leaks into a test. */
static int clean_env(void **state)
{
    for (int again = 1; again;) {
        again = 0;
        for (char **e = environ; *e; e++) {
            if (strncmp(*e, "BOILERHOUSE_", 12) == 0) {
                char name[128];
                snprintf(name, sizeof(name), "%.*s", (int)strcspn(*e, "="), *e);
                unsetenv(name);
                again = 1;
                break;
            }
        }
    }
    return 0;
}

/* Parses env then argv (NULL-terminated, argv[0] "serve"); returns the status, err filled. */
static int parse(struct bh_settings *s, char **argv, struct bh_err *err)
{
    int argc = 0, help = 0;
    while (argv && argv[argc])
        argc++;
    int rc = bh_settings_from_env(s, err);
    return rc < 0 || !argv ? rc : bh_settings_from_args(s, argc, argv, &help, err);
}

/* Parsing fails with an error message containing msg. */
static void expect_refused(char **argv, const char *msg)
{
    struct bh_settings s;
    struct bh_err err;
    assert_int_equal(parse(&s, argv, &err), -1);
    if (!strstr(err.msg, msg))
        fail_msg("expected \"%s\", got \"%s\"", msg, err.msg);
    bh_settings_free(&s);
}

static void test_defaults(void **state)
{
    struct bh_settings s;
    struct bh_err err;
    assert_int_equal(parse(&s, NULL, &err), 0);
    assert_string_equal(s.state_dir, "/var/lib/boilerhouse");
    assert_string_equal(s.listen_host, "127.0.0.1");
    assert_int_equal(s.port, 3000);
    assert_null(s.api_key);
    assert_null(s.runtime);
    assert_int_equal(s.claim_timeout_ms, 60000);
    assert_int_equal(s.workers, 8);
    assert_int_equal(s.max_body, 1 << 20);
    assert_int_equal(s.log_cap, 10 << 20);
    assert_int_equal(s.uid_base, 1000000000u);
    assert_string_equal(s.storage, "local");
    assert_string_equal(s.snapshot_compression, "zstd");
    assert_int_equal(s.log_level, BH_LOG_INFO);
    bh_settings_free(&s);
}

static void test_environment_then_flags(void **state)
{
    setenv("BOILERHOUSE_PORT", "8080", 1);
    setenv("BOILERHOUSE_CLAIM_TIMEOUT_SECONDS", "5", 1);
    setenv("BOILERHOUSE_STATE_DIR", "rel/state", 1);
    setenv("BOILERHOUSE_RUNTIME", "", 1); /* empty: unset */
    setenv("BOILERHOUSE_WORKERS", "4", 1);
    char *argv[] = {"serve",        "--workers",   "3",     "--listen",
                    "0.0.0.0:9000", "--log-level", "debug", NULL};
    struct bh_settings s;
    struct bh_err err;
    assert_int_equal(parse(&s, argv, &err), 0);
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(strncmp(s.state_dir, cwd, strlen(cwd)), 0);
    assert_string_equal(s.state_dir + strlen(cwd), "/rel/state");
    assert_null(s.runtime);
    assert_int_equal(s.claim_timeout_ms, 5000);
    assert_int_equal(s.workers, 3); /* the flag wins over the variable */
    assert_string_equal(s.listen_host, "0.0.0.0");
    assert_int_equal(s.port, 9000);
    assert_int_equal(s.log_level, BH_LOG_DEBUG);
    bh_settings_free(&s);
}

/* A malformed value of a variable or flag (name) and the error expected. */
struct bad_value {
    const char *name, *value, *msg;
};

static const struct bad_value bad_env[] = {
    {"BOILERHOUSE_PORT", "abc", "BOILERHOUSE_PORT=\"abc\": expected an integer in 1..65535"},
    {"BOILERHOUSE_PORT", "0", "BOILERHOUSE_PORT=\"0\": expected an integer in 1..65535"},
    {"BOILERHOUSE_PORT", "65536", "BOILERHOUSE_PORT=\"65536\": expected an integer"},
    {"BOILERHOUSE_PORT", " 80", "BOILERHOUSE_PORT=\" 80\": expected an integer"},
    {"BOILERHOUSE_WORKERS", "8x", "BOILERHOUSE_WORKERS=\"8x\": expected an integer in 1..256"},
    {"BOILERHOUSE_CLAIM_TIMEOUT_SECONDS", "99999999999999999999",
     "BOILERHOUSE_CLAIM_TIMEOUT_SECONDS=\"99999999999999999999\": expected an integer"},
    {"BOILERHOUSE_UID_BASE", "-1", "BOILERHOUSE_UID_BASE=\"-1\": expected an integer"},
    {"BOILERHOUSE_LOG_LEVEL", "loud", "BOILERHOUSE_LOG_LEVEL=\"loud\": expected one of error|"},
    {"BOILERHOUSE_SNAPSHOT_COMPRESSION", "brotli", "expected one of zstd|gzip|lz4"},
    {"BOILERHOUSE_RUNTIME", "runcc", "BOILERHOUSE_RUNTIME=\"runcc\": expected one of runc|crun"},
};

static void test_malformed_environment_names_the_variable(void **state)
{
    for (size_t i = 0; i < sizeof(bad_env) / sizeof(bad_env[0]); i++) {
        clean_env(state);
        setenv(bad_env[i].name, bad_env[i].value, 1);
        expect_refused(NULL, bad_env[i].msg);
    }
}

static const struct bad_value bad_flags[] = {
    {"--workers", "0", "--workers 0: expected an integer in 1..256"},
    {"--listen", "nope", "--listen nope: expected HOST:PORT"},
    {"--listen", ":80", "--listen :80: expected HOST:PORT"},
    {"--listen", "h:99999", "--listen h:99999: expected HOST:PORT"},
    {"--bogus", "1", "--bogus: unknown option"},
    {"--workers", NULL, "--workers: needs a value"},
};

static void test_malformed_flag_names_the_flag(void **state)
{
    for (size_t i = 0; i < sizeof(bad_flags) / sizeof(bad_flags[0]); i++) {
        char *argv[] = {"serve", (char *)bad_flags[i].name, (char *)bad_flags[i].value, NULL};
        expect_refused(argv, bad_flags[i].msg);
    }
}

static void test_help_stops_parsing(void **state)
{
    char *argv[] = {"serve", "--help", "--workers", "0", NULL};
    struct bh_settings s;
    struct bh_err err;
    int help = 0;
    assert_int_equal(bh_settings_from_env(&s, &err), 0);
    assert_int_equal(bh_settings_from_args(&s, 4, argv, &help, &err), 0);
    assert_true(help);
    bh_settings_free(&s);
}

/* Where instances run: Pods by default in operator mode, runc/crun when named; Pods without a
 * cluster are refused naming what is missing. */
static void test_runtime_choice(void **state)
{
    static const struct {
        const char *runtime, *kubeconfig;
        int pods, ok;
    } cases[] = {
        {NULL, NULL, 0, 1},   {NULL, "/k", 1, 1},   {"kube", "/k", 1, 1},
        {"runc", "/k", 0, 1}, {"crun", NULL, 0, 1}, {"kube", NULL, 1, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *argv[6] = {"serve"};
        int n = 1;
        if (cases[i].runtime) {
            argv[n++] = "--runtime";
            argv[n++] = (char *)cases[i].runtime;
        }
        if (cases[i].kubeconfig) {
            argv[n++] = "--kubeconfig";
            argv[n++] = (char *)cases[i].kubeconfig;
        }
        struct bh_settings s;
        struct bh_err err = {0};
        assert_int_equal(parse(&s, argv, &err), 0);
        assert_int_equal(bh_operator_runs_pods(&s), cases[i].pods);
        int rc = bh_operator_check_settings(&s, &err);
        assert_int_equal(rc, cases[i].ok ? 0 : -1);
        if (!cases[i].ok)
            assert_non_null(strstr(err.msg, "--runtime kube runs instances as Pods"));
        bh_settings_free(&s);
    }
    char *bad[] = {"serve", "--runtime", "docker", NULL};
    expect_refused(bad, "runc|crun|kube");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, clean_env),
        cmocka_unit_test_setup(test_environment_then_flags, clean_env),
        cmocka_unit_test_setup(test_malformed_environment_names_the_variable, clean_env),
        cmocka_unit_test_setup(test_malformed_flag_names_the_flag, clean_env),
        cmocka_unit_test_setup(test_help_stops_parsing, clean_env),
        cmocka_unit_test_setup(test_runtime_choice, clean_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
