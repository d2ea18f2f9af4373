/* The runtime driver against the real runc/crun: a busybox container on an overlay rootfs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bh_test.h"
#include "fs.h"
#include "mem.h"
#include "health.h"
#include "oci_config.h"
#include "rootfs.h"
#include "runc.h"

#define UID_BASE 1000000000u
#define TEST_PREFIX "bh-test-runtime-"
#define TEST_CGROUP "boilerhouse-test"

struct fixture {
    char *base, *root, *lower, *upper, *work, *bundle, *rootfs, *sock, *log;
    char id[64];
    struct bh_runc *rt;
};

static struct fixture fx;

/* ---- helpers ---- */

static void check(int rc, const struct bh_err *err)
{
    if (rc < 0)
        fail_msg("%s", err->msg);
}

static int chown_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    return lchown(path, UID_BASE, UID_BASE);
}

/* A rootfs holding busybox and a symlink per applet, owned by container root. */
static void make_busybox_rootfs(const char *dir)
{
    struct bh_err err;
    static const char *const dirs[] = {"bin", "proc", "dev", "sys", "tmp", "run", "etc"};
    for (size_t i = 0; i < BH_ARRAY_LEN(dirs); i++) {
        bh_autofree char *d = bh_xasprintf("%s/%s", dir, dirs[i]);
        check(bh_fs_mkdirp(d, 0755, &err), &err);
    }
    bh_autofree char *bb = bh_xasprintf("%s/bin/busybox", dir);
    const char *cp[] = {"cp", "/bin/busybox", bb, NULL};
    check(bh_proc_check(cp, &err), &err);
    const char *list[] = {"/bin/busybox", "--list", NULL};
    struct bh_proc_result res;
    check(bh_proc_run(list, NULL, &res, &err), &err);
    for (char *a = strtok(res.out, "\n"); a; a = strtok(NULL, "\n")) {
        bh_autofree char *link = bh_xasprintf("%s/bin/%s", dir, a);
        if (strcmp(a, "busybox") != 0)
            assert_int_equal(symlink("busybox", link), 0);
    }
    bh_proc_result_free(&res);
    assert_int_equal(nftw(dir, chown_entry, 16, FTW_PHYS), 0);
}

/* Deletes the containers under root_dir, unmounts the rootfs and removes base. */
static void cleanup_base(const char *base)
{
    struct bh_err err;
    bh_autofree char *root = bh_xasprintf("%s/state", base);
    bh_autofree char *rootfs = bh_xasprintf("%s/bundle/rootfs", base);
    struct bh_runc *rt = NULL;
    char **ids = NULL;
    if (bh_fs_exists(root) && bh_runc_open(root, "runc", &rt, &err) == 0 &&
        bh_runc_list(rt, &ids, &err) == 0)
        for (size_t i = 0; ids[i]; i++)
            bh_runc_delete(rt, ids[i], &err);
    bh_strv_free(ids);
    bh_runc_close(rt);
    bh_rootfs_umount(rootfs, &err);
    if (bh_fs_rmtree(base, &err) < 0)
        print_error("cleanup %s: %s\n", base, err.msg);
}

/* runc removes a container's own cgroup on delete but not the parent the tests chose. */
static void cleanup_cgroups(void)
{
    DIR *d = opendir("/sys/fs/cgroup");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        bh_autofree char *cg = bh_xasprintf("/sys/fs/cgroup/%s/" TEST_CGROUP, e->d_name);
        rmdir(cg);
    }
    if (d)
        closedir(d);
    rmdir("/sys/fs/cgroup/" TEST_CGROUP);
}

/* Leftovers of an earlier run that was killed before its teardown. */
static void cleanup_leftovers(void)
{
    DIR *d = opendir("/tmp");
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (bh_test_leftover(e->d_name, TEST_PREFIX)) {
            bh_autofree char *base = bh_xasprintf("/tmp/%s", e->d_name);
            cleanup_base(base);
        }
    if (d)
        closedir(d);
}

static int runtime_installed(void)
{
    return access("/usr/sbin/runc", X_OK) == 0 || access("/usr/bin/runc", X_OK) == 0 ||
           access("/usr/bin/crun", X_OK) == 0 || access("/usr/local/bin/runc", X_OK) == 0 ||
           access("/usr/local/bin/crun", X_OK) == 0;
}

static int group_setup(void **state)
{
    cleanup_leftovers();
    fx.base = bh_xasprintf("/tmp/" TEST_PREFIX "%d", (int)getpid());
    fx.root = bh_xasprintf("%s/state", fx.base);
    fx.lower = bh_xasprintf("%s/lower", fx.base);
    fx.upper = bh_xasprintf("%s/upper", fx.base);
    fx.work = bh_xasprintf("%s/work", fx.base);
    fx.bundle = bh_xasprintf("%s/bundle", fx.base);
    fx.rootfs = bh_xasprintf("%s/bundle/rootfs", fx.base);
    fx.sock = bh_xasprintf("%s/sock", fx.base);
    fx.log = bh_xasprintf("%s/ctr.log", fx.base);
    snprintf(fx.id, sizeof(fx.id), "bhtest-%d-1", (int)getpid());
    struct bh_err err;
    if (bh_fs_mkdirp(fx.sock, 0755, &err) < 0 || chown(fx.sock, UID_BASE, UID_BASE) < 0)
        return -1;
    if (bh_runc_open(fx.root, NULL, &fx.rt, &err) < 0) {
        print_error("runtime open: %s\n", err.msg);
        return -1;
    }
    make_busybox_rootfs(fx.lower);
    return 0;
}

static int group_teardown(void **state)
{
    struct bh_err err;
    if (fx.rt)
        bh_runc_delete(fx.rt, fx.id, &err);
    bh_runc_close(fx.rt);
    cleanup_base(fx.base);
    cleanup_cgroups();
    char **all[] = {&fx.base,   &fx.root,   &fx.lower, &fx.upper, &fx.work,
                    &fx.bundle, &fx.rootfs, &fx.sock,  &fx.log};
    for (size_t i = 0; i < BH_ARRAY_LEN(all); i++)
        free(*all[i]);
    return 0;
}

static void write_config(void)
{
    char *const args[] = {"/bin/sh", "-c",
                          "echo hello; mkdir -p /tmp/www; echo ok > /tmp/www/index.html; "
                          "httpd -p 127.0.0.1:8080 -h /tmp/www; exec sleep 3600",
                          NULL};
    char *const env[] = {"PATH=/bin", NULL};
    bh_autofree char *cg = bh_xasprintf("/" TEST_CGROUP "/%s", fx.id);
    struct bh_oci_params p = {.rootfs = fx.rootfs,
                              .args = args,
                              .env = env,
                              .hostname = "bhtest",
                              .vcpus = 0.5,
                              .memory_mb = 64,
                              .uid_base = UID_BASE,
                              .uid_size = 65536,
                              .socket_dir = fx.sock,
                              .cgroup_path = cg};
    cJSON *c = bh_oci_config_build(&p);
    bh_autofree char *json = cJSON_Print(c);
    cJSON_Delete(c);
    bh_autofree char *path = bh_xasprintf("%s/config.json", fx.bundle);
    struct bh_err err;
    check(bh_fs_write_atomic(path, json, strlen(json), 0644, &err), &err);
}

static void expect_status(const char *status)
{
    struct bh_runtime_state st;
    struct bh_err err;
    check(bh_runc_state(fx.rt, fx.id, &st, &err), &err);
    assert_string_equal(st.status, status);
}

/* Polls for up to 30 s: a bound on a hang, generous for a slow machine. */
static int wait_for_file_text(const char *path, const char *text)
{
    for (int i = 0; i < 1500; i++) {
        char *data = NULL;
        size_t len;
        struct bh_err err;
        int found = bh_fs_read_all(path, 1 << 20, &data, &len, &err) == 0 && strstr(data, text);
        free(data);
        if (found)
            return 1;
        usleep(20000);
    }
    return 0;
}

static int exec_in(char *const *argv, char **out)
{
    struct bh_proc_result res;
    struct bh_err err;
    check(bh_runc_exec(fx.rt, fx.id, argv, 10000, &res, &err), &err);
    int code = res.exit_code;
    if (out)
        *out = BH_STEAL(res.out);
    bh_proc_result_free(&res);
    return code;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- tests, run in order on one container ---- */

static void test_create_start(void **state)
{
    struct bh_err err;
    char *lowers[] = {fx.lower};
    check(bh_rootfs_mount(lowers, 1, fx.upper, fx.work, fx.rootfs, UID_BASE, &err), &err);
    write_config();
    double t0 = now_s();
    check(bh_runc_create(fx.rt, fx.id, fx.bundle, fx.log, &err), &err);
    double t1 = now_s();
    expect_status("created");
    check(bh_runc_start(fx.rt, fx.id, &err), &err);
    print_message("%s: create %.0f ms, start %.0f ms\n", bh_runc_name(fx.rt), (t1 - t0) * 1000,
                  (now_s() - t1) * 1000);
    expect_status("running");
    assert_true(wait_for_file_text(fx.log, "hello"));
}

static void test_unprivileged(void **state)
{
    char *out = NULL;
    char *const id[] = {"id", "-u", NULL};
    assert_int_equal(exec_in(id, &out), 0);
    assert_string_equal(out, "0\n");
    free(out);
    struct bh_runtime_state st;
    struct bh_err err;
    check(bh_runc_state(fx.rt, fx.id, &st, &err), &err);
    bh_autofree char *status_path = bh_xasprintf("/proc/%d/status", st.pid);
    assert_true(wait_for_file_text(status_path, "Uid:\t1000000000\t"));
    char *const sysctl[] = {"sh", "-c", "echo x > /proc/sys/kernel/hostname", NULL};
    assert_int_not_equal(exec_in(sysctl, NULL), 0);
    char *const hostname[] = {"hostname", "x", NULL};
    assert_int_not_equal(exec_in(hostname, NULL), 0);
    char *const sys_write[] = {"touch", "/sys/x", NULL};
    assert_int_not_equal(exec_in(sys_write, NULL), 0);
    char *const netdevs[] = {"ls", "/sys/class/net", NULL};
    assert_int_equal(exec_in(netdevs, &out), 0);
    assert_string_equal(out, "lo\n");
    free(out);
    char *const mount[] = {"mount", "-t", "tmpfs", "none", "/mnt", NULL};
    assert_int_not_equal(exec_in(mount, NULL), 0);
}

static void test_socket_dir(void **state)
{
    char *const w[] = {"sh", "-c", "echo hi > /run/boilerhouse/x", NULL};
    assert_int_equal(exec_in(w, NULL), 0);
    bh_autofree char *x = bh_xasprintf("%s/x", fx.sock);
    assert_true(wait_for_file_text(x, "hi"));
}

static void test_exec_errors(void **state)
{
    struct bh_proc_result res;
    struct bh_err err;
    char *const missing[] = {"/no/such/program", NULL};
    assert_int_equal(bh_runc_exec(fx.rt, fx.id, missing, 10000, &res, &err), -1);
    print_message("exec error: %s\n", err.msg);
    bh_proc_result_free(&res);
    char *const slow[] = {"sleep", "30", NULL};
    double t0 = now_s();
    assert_int_equal(bh_runc_exec(fx.rt, fx.id, slow, 300, &res, &err), -1);
    assert_int_equal(err.code, BH_ETIMEOUT);
    assert_true(now_s() - t0 < 5);
    bh_proc_result_free(&res);
    char *out = NULL;
    char *const ps[] = {"ps", NULL};
    assert_int_equal(exec_in(ps, &out), 0);
    assert_null(strstr(out, "sleep 30"));
    free(out);
}

static void test_list(void **state)
{
    char **ids = NULL;
    struct bh_err err;
    check(bh_runc_list(fx.rt, &ids, &err), &err);
    int found = 0;
    for (size_t i = 0; ids[i]; i++)
        found |= strcmp(ids[i], fx.id) == 0;
    bh_strv_free(ids);
    assert_true(found);
}

static void test_health(void **state)
{
    struct bh_runtime_state st;
    struct bh_err err;
    check(bh_runc_state(fx.rt, fx.id, &st, &err), &err);
    bh_autofree char *ns = bh_xasprintf("/proc/%d/ns/net", st.pid);
    int rc = -1;
    for (int i = 0; i < 600 && rc < 0; i++, usleep(50000)) /* up to 30 s */
        rc = bh_health_http(ns, "127.0.0.1", 8080, "/", 2000, &err);
    check(rc, &err);
    assert_int_equal(bh_health_http(ns, "127.0.0.1", 8081, "/", 2000, &err), -1);
    print_message("probe of a closed port: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "refused"));
    assert_int_equal(bh_health_http(ns, "127.0.0.1", 8080, "/missing", 2000, &err), -1);
    assert_non_null(strstr(err.msg, "HTTP 404"));
    /* From the host's namespace the container's loopback is out of reach. */
    assert_int_equal(bh_health_http(NULL, "127.0.0.1", 1, "/", 2000, &err), -1);
}

static void test_pause_resume(void **state)
{
    struct bh_err err;
    check(bh_runc_pause(fx.rt, fx.id, &err), &err);
    expect_status("paused");
    check(bh_runc_resume(fx.rt, fx.id, &err), &err);
    expect_status("running");
}

static void test_kill_delete(void **state)
{
    struct bh_err err;
    struct bh_runtime_state st;
    check(bh_runc_kill(fx.rt, fx.id, SIGKILL, &err), &err);
    double t0 = now_s();
    check(bh_runc_delete(fx.rt, fx.id, &err), &err);
    print_message("delete %.0f ms\n", (now_s() - t0) * 1000);
    assert_int_equal(bh_runc_state(fx.rt, fx.id, &st, &err), -1);
    assert_int_equal(err.code, BH_ENOTFOUND);
    check(bh_runc_delete(fx.rt, fx.id, &err), &err);
    assert_int_equal(bh_runc_start(fx.rt, fx.id, &err), -1);
    assert_int_equal(err.code, BH_ENOTFOUND);
    char **ids = NULL;
    check(bh_runc_list(fx.rt, &ids, &err), &err);
    assert_null(ids[0]);
    bh_strv_free(ids);
    check(bh_rootfs_umount(fx.rootfs, &err), &err);
    check(bh_rootfs_umount(fx.rootfs, &err), &err);
    bh_autofree char *bin = bh_xasprintf("%s/bin/busybox", fx.rootfs);
    assert_false(bh_fs_exists(bin));
}

static void test_create_error_message(void **state)
{
    struct bh_err err;
    bh_autofree char *empty = bh_xasprintf("%s/empty-bundle", fx.base);
    check(bh_fs_mkdirp(empty, 0755, &err), &err);
    assert_int_equal(bh_runc_create(fx.rt, "bhtest-nobundle", empty, fx.log, &err), -1);
    print_message("create error: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "config.json"));
    check(bh_runc_delete(fx.rt, "bhtest-nobundle", &err), &err);
}

/* Both runtimes' ways of saying "no such container" map to BH_ENOTFOUND; crun is only driven
 * this far because it cannot create containers on hosts with hybrid cgroups. */
static void test_unknown_id(void **state)
{
    static const char *const names[] = {"runc", "crun"};
    for (size_t i = 0; i < BH_ARRAY_LEN(names); i++) {
        struct bh_runc *rt = NULL;
        struct bh_err err;
        if (bh_runc_open(fx.root, names[i], &rt, &err) < 0) {
            print_message("%s: %s\n", names[i], err.msg);
            continue;
        }
        struct bh_runtime_state st;
        assert_int_equal(bh_runc_state(rt, "bhtest-nope", &st, &err), -1);
        assert_int_equal(err.code, BH_ENOTFOUND);
        assert_int_equal(bh_runc_kill(rt, "bhtest-nope", SIGTERM, &err), -1);
        assert_int_equal(err.code, BH_ENOTFOUND);
        check(bh_runc_delete(rt, "bhtest-nope", &err), &err);
        assert_int_equal(bh_runc_start(rt, "--help", &err), -1);
        assert_int_equal(err.code, BH_EINVAL);
        bh_runc_close(rt);
    }
}

/* n lower layers each holding f = its index; the top (last) layer must win. Long layer paths
 * push the mount options beyond a page, which takes the fsconfig path. */
static void mount_layers(size_t n, const char *pad)
{
    struct bh_err err;
    bh_autofree char *dir = bh_xasprintf("%s/layers-%zu", fx.base, n);
    char **lowers = bh_xcalloc(n + 1, sizeof(*lowers));
    for (size_t i = 0; i < n; i++) {
        lowers[i] = bh_xasprintf("%s/%s-%zu", dir, pad, i);
        check(bh_fs_mkdirp(lowers[i], 0755, &err), &err);
        bh_autofree char *f = bh_xasprintf("%s/f", lowers[i]);
        bh_autofree char *data = bh_xasprintf("%zu", i);
        check(bh_fs_write_atomic(f, data, strlen(data), 0644, &err), &err);
    }
    bh_autofree char *upper = bh_xasprintf("%s/upper", dir);
    bh_autofree char *work = bh_xasprintf("%s/work", dir);
    bh_autofree char *target = bh_xasprintf("%s/merged", dir);
    check(bh_rootfs_mount(lowers, n, upper, work, target, UID_BASE, &err), &err);
    bh_autofree char *f = bh_xasprintf("%s/f", target);
    bh_autofree char *top = bh_xasprintf("%zu", n - 1);
    char *data = NULL;
    size_t len;
    int rc = bh_fs_read_all(f, 64, &data, &len, &err);
    check(bh_rootfs_umount(target, &err), &err);
    check(rc, &err);
    assert_string_equal(data, top);
    free(data);
    struct stat st;
    assert_int_equal(stat(upper, &st), 0);
    assert_int_equal(st.st_uid, UID_BASE);
    bh_strv_free(lowers);
}

static void test_rootfs_layers(void **state)
{
    mount_layers(3, "l");
    char pad[200];
    memset(pad, 'p', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    mount_layers(40, pad);
}

static void test_log_rotate(void **state)
{
    struct bh_err err;
    bh_autofree char *path = bh_xasprintf("%s/rot.log", fx.base);
    bh_autofree char *old = bh_xasprintf("%s.1", path);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0600);
    assert_true(fd >= 0);
    char buf[1500];
    memset(buf, 'a', sizeof(buf));
    assert_int_equal(write(fd, buf, sizeof(buf)), sizeof(buf));
    check(bh_runtime_log_rotate(path, 2000, &err), &err);
    assert_false(bh_fs_exists(old));
    assert_int_equal(write(fd, buf, sizeof(buf)), sizeof(buf));
    check(bh_runtime_log_rotate(path, 2000, &err), &err);
    struct stat st;
    assert_int_equal(stat(old, &st), 0);
    assert_int_equal(st.st_size, 3000);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 0);
    /* The writer's O_APPEND fd continues at the start of the emptied file. */
    assert_int_equal(write(fd, "b", 1), 1);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 1);
    close(fd);
    bh_autofree char *missing = bh_xasprintf("%s/none.log", fx.base);
    check(bh_runtime_log_rotate(missing, 10, &err), &err);
}

int main(void)
{
    if (!runtime_installed())
        bh_test_skip_or_fail("no OCI runtime (runc or crun) is installed");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_start),
        cmocka_unit_test(test_unprivileged),
        cmocka_unit_test(test_socket_dir),
        cmocka_unit_test(test_exec_errors),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_health),
        cmocka_unit_test(test_pause_resume),
        cmocka_unit_test(test_kill_delete),
        cmocka_unit_test(test_create_error_message),
        cmocka_unit_test(test_log_rotate),
        cmocka_unit_test(test_rootfs_layers),
        cmocka_unit_test(test_unknown_id),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
