#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "etc_files.h"
#include "fs.h"
#include "mem.h"
#include "oci_config.h"

static char *const test_args[] = {"/bin/sh", "-c", "true", NULL};
static char *const test_env[] = {"PATH=/bin", NULL};

static cJSON *build(double vcpus, const char *socket_dir)
{
    struct bh_oci_params p = {.rootfs = "/tmp/rootfs",
                              .args = test_args,
                              .env = test_env,
                              .hostname = "h",
                              .vcpus = vcpus,
                              .memory_mb = 64,
                              .uid_base = 1000000000,
                              .uid_size = 65536,
                              .socket_dir = socket_dir,
                              .cgroup_path = "/boilerhouse/x"};
    return bh_oci_config_build(&p);
}

static const cJSON *path(const cJSON *o, const char *a, const char *b, const char *c)
{
    o = cJSON_GetObjectItemCaseSensitive(o, a);
    if (b)
        o = cJSON_GetObjectItemCaseSensitive(o, b);
    if (c)
        o = cJSON_GetObjectItemCaseSensitive(o, c);
    return o;
}

static int has_string(const cJSON *a, const char *s)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, a)
        if (cJSON_IsString(it) && strcmp(it->valuestring, s) == 0)
            return 1;
    return 0;
}

static const cJSON *find_mount(const cJSON *c, const char *dest)
{
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItem(c, "mounts")) {
        if (strcmp(cJSON_GetObjectItem(m, "destination")->valuestring, dest) == 0)
            return m;
    }
    return NULL;
}

static void test_hardening(void **state)
{
    cJSON *c = build(0.5, NULL);
    static const char *const sets[] = {"bounding", "effective", "inheritable", "permitted",
                                       "ambient"};
    for (size_t i = 0; i < 5; i++) {
        const cJSON *s = path(c, "process", "capabilities", sets[i]);
        assert_true(cJSON_IsArray(s));
        assert_int_equal(cJSON_GetArraySize(s), 0);
    }
    assert_true(cJSON_IsTrue(path(c, "process", "noNewPrivileges", NULL)));
    int user = 0;
    const cJSON *ns;
    cJSON_ArrayForEach(ns, path(c, "linux", "namespaces", NULL)) {
        user |= strcmp(cJSON_GetObjectItem(ns, "type")->valuestring, "user") == 0;
    }
    assert_true(user);
    const cJSON *map = cJSON_GetArrayItem(path(c, "linux", "uidMappings", NULL), 0);
    assert_int_equal(cJSON_GetObjectItem(map, "hostID")->valuedouble, 1000000000);
    assert_int_equal(cJSON_GetObjectItem(map, "size")->valueint, 65536);
    assert_non_null(cJSON_GetArrayItem(path(c, "linux", "gidMappings", NULL), 0));
    assert_true(has_string(path(c, "linux", "maskedPaths", NULL), "/proc/kcore"));
    assert_true(has_string(path(c, "linux", "readonlyPaths", NULL), "/proc/sys"));
    const cJSON *sc = path(c, "linux", "seccomp", NULL);
    assert_string_equal(cJSON_GetObjectItem(sc, "defaultAction")->valuestring, "SCMP_ACT_ALLOW");
    const cJSON *rule = cJSON_GetArrayItem(cJSON_GetObjectItem(sc, "syscalls"), 0);
    assert_true(has_string(cJSON_GetObjectItem(rule, "names"), "kexec_load"));
    assert_int_equal(cJSON_GetObjectItem(rule, "errnoRet")->valueint, 1);
    cJSON_Delete(c);
}

static void test_resources(void **state)
{
    cJSON *c = build(0.5, NULL);
    const cJSON *cpu = path(c, "linux", "resources", "cpu");
    assert_int_equal(cJSON_GetObjectItem(cpu, "quota")->valueint, 50000);
    assert_int_equal(cJSON_GetObjectItem(cpu, "period")->valueint, 100000);
    const cJSON *mem = path(c, "linux", "resources", "memory");
    assert_int_equal(cJSON_GetObjectItem(mem, "limit")->valuedouble, 64.0 * 1024 * 1024);
    assert_int_equal(cJSON_GetObjectItem(mem, "swap")->valuedouble, 64.0 * 1024 * 1024);
    assert_int_equal(path(c, "linux", "resources", "pids")->child->valueint, 512);
    assert_string_equal(path(c, "linux", "cgroupsPath", NULL)->valuestring, "/boilerhouse/x");
    cJSON_Delete(c);
    c = build(0, NULL);
    assert_null(path(c, "linux", "resources", "cpu"));
    cJSON_Delete(c);
}

/* Every device is denied but the usual character devices; the pty slaves (major 136) are
 * allowed by the spec's wildcard, an absent minor (crun refuses -1). */
static void test_devices(void **state)
{
    cJSON *c = build(0.5, NULL);
    const cJSON *devs = path(c, "linux", "resources", "devices");
    const cJSON *first = cJSON_GetArrayItem(devs, 0);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(first, "allow")));
    assert_null(cJSON_GetObjectItem(first, "type"));
    int ptys = 0, allowed = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, devs) {
        const cJSON *minor = cJSON_GetObjectItem(d, "minor");
        if (!cJSON_IsTrue(cJSON_GetObjectItem(d, "allow")))
            continue;
        allowed++;
        assert_string_equal(cJSON_GetObjectItem(d, "type")->valuestring, "c");
        if (cJSON_GetObjectItem(d, "major")->valueint == 136) {
            ptys++;
            assert_null(minor);
        } else {
            assert_non_null(minor);
            assert_true(minor->valueint >= 0);
        }
    }
    assert_int_equal(ptys, 1);
    assert_int_equal(allowed, 8);
    cJSON_Delete(c);
}

/* /etc/hostname, /etc/hosts and (when the network plugin names resolvers) /etc/resolv.conf
 * are read-only binds of the instance's own files. */
static void test_etc_mounts(void **state)
{
    struct bh_oci_params p = {.rootfs = "/r",
                              .args = test_args,
                              .env = test_env,
                              .etc_dir = "/st/etc",
                              .n_etc_files = BH_ETC_N_FILES};
    cJSON *c = bh_oci_config_build(&p);
    const cJSON *m = find_mount(c, "/etc/resolv.conf");
    assert_non_null(m);
    assert_string_equal(cJSON_GetObjectItem(m, "source")->valuestring, "/st/etc/resolv.conf");
    assert_true(has_string(cJSON_GetObjectItem(m, "options"), "ro"));
    assert_true(has_string(cJSON_GetObjectItem(m, "options"), "bind"));
    assert_non_null(find_mount(c, "/etc/hosts"));
    assert_non_null(find_mount(c, "/etc/hostname"));
    cJSON_Delete(c);
    p.n_etc_files = BH_ETC_N_FILES - 1;
    c = bh_oci_config_build(&p);
    assert_null(find_mount(c, "/etc/resolv.conf"));
    assert_non_null(find_mount(c, "/etc/hosts"));
    cJSON_Delete(c);
}

static char *read_text(const char *dir, const char *name)
{
    bh_autofree char *path = bh_xasprintf("%s/%s", dir, name);
    char *out = NULL;
    size_t len = 0;
    struct bh_err err;
    assert_int_equal(bh_fs_read_all(path, 1 << 16, &out, &len, &err), 0);
    return out;
}

static void test_etc_files(void **state)
{
    char dir[] = "/tmp/bh-etc-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct bh_err err;
    struct bh_etc_params p = {.hostname = "bh-abc", .nameservers = "10.0.0.1 10.0.0.2"};
    assert_int_equal(bh_etc_files_write(dir, &p, &err), 0);
    bh_autofree char *hostname = read_text(dir, "hostname");
    assert_string_equal(hostname, "bh-abc\n");
    bh_autofree char *hosts = read_text(dir, "hosts");
    assert_non_null(strstr(hosts, "127.0.0.1\tlocalhost\n"));
    assert_non_null(strstr(hosts, "::1\tlocalhost"));
    assert_non_null(strstr(hosts, "127.0.1.1\tbh-abc\n"));
    bh_autofree char *resolv = read_text(dir, "resolv.conf");
    assert_non_null(strstr(resolv, "nameserver 10.0.0.1\nnameserver 10.0.0.2\n"));
    /* The address arrives after the container exists: same inode, new content. */
    bh_autofree char *hosts_path = bh_xasprintf("%s/hosts", dir);
    struct stat before, after;
    assert_int_equal(stat(hosts_path, &before), 0);
    p.address = "10.9.0.7";
    assert_int_equal(bh_etc_hosts_update(dir, &p, &err), 0);
    assert_int_equal(stat(hosts_path, &after), 0);
    assert_int_equal(before.st_ino, after.st_ino);
    bh_autofree char *hosts2 = read_text(dir, "hosts");
    assert_non_null(strstr(hosts2, "10.9.0.7\tbh-abc\n"));
    assert_null(strstr(hosts2, "127.0.1.1"));
    /* No resolver named: no nameserver line at all, so lookups fail at once. */
    p.nameservers = "";
    assert_int_equal(bh_etc_files_write(dir, &p, &err), 0);
    bh_autofree char *empty = read_text(dir, "resolv.conf");
    assert_null(strstr(empty, "nameserver"));
    assert_int_equal(bh_fs_rmtree(dir, &err), 0);
}

static void test_mounts(void **state)
{
    cJSON *c = build(1, NULL);
    assert_null(find_mount(c, "/run/boilerhouse"));
    const cJSON *tmp = find_mount(c, "/tmp");
    assert_non_null(tmp);
    assert_string_equal(cJSON_GetObjectItem(tmp, "type")->valuestring, "tmpfs");
    assert_non_null(find_mount(c, "/proc"));
    cJSON_Delete(c);
    c = build(1, "/var/lib/bh/sock/x");
    const cJSON *s = find_mount(c, "/run/boilerhouse");
    assert_non_null(s);
    assert_string_equal(cJSON_GetObjectItem(s, "source")->valuestring, "/var/lib/bh/sock/x");
    assert_true(has_string(cJSON_GetObjectItem(s, "options"), "rbind"));
    assert_true(has_string(cJSON_GetObjectItem(s, "options"), "rw"));
    cJSON_Delete(c);
}

struct resolved {
    char **args, **env, *cwd;
};

static int resolve(const char *img, const char *ep, struct resolved *r, struct bh_err *err)
{
    cJSON *i = img ? cJSON_Parse(img) : NULL, *e = ep ? cJSON_Parse(ep) : NULL;
    int rc = bh_oci_process_resolve(i, e, &r->args, &r->env, &r->cwd, err);
    cJSON_Delete(i);
    cJSON_Delete(e);
    return rc;
}

static void resolved_free(struct resolved *r)
{
    bh_strv_free(r->args);
    bh_strv_free(r->env);
    free(r->cwd);
}

static const char *img_cfg = "{\"Entrypoint\":[\"/entry\"],\"Cmd\":[\"serve\",\"-v\"],"
                             "\"Env\":[\"PATH=/usr/bin\",\"A=1\"],\"WorkingDir\":\"/app\"}";

static void test_resolve_image_only(void **state)
{
    struct resolved r;
    struct bh_err err;
    assert_int_equal(resolve(img_cfg, NULL, &r, &err), 0);
    assert_string_equal(r.args[0], "/entry");
    assert_string_equal(r.args[1], "serve");
    assert_string_equal(r.args[2], "-v");
    assert_null(r.args[3]);
    assert_string_equal(r.env[0], "PATH=/usr/bin");
    assert_string_equal(r.env[1], "A=1");
    assert_null(r.env[2]);
    assert_string_equal(r.cwd, "/app");
    resolved_free(&r);
}

static void test_resolve_cmd_overrides(void **state)
{
    struct resolved r;
    struct bh_err err;
    assert_int_equal(
        resolve(img_cfg, "{\"cmd\":\"/bin/other\",\"args\":[\"x\"],\"workdir\":\"/w\"}", &r, &err),
        0);
    assert_string_equal(r.args[0], "/bin/other");
    assert_string_equal(r.args[1], "x");
    assert_null(r.args[2]);
    assert_string_equal(r.cwd, "/w");
    resolved_free(&r);
}

static void test_resolve_args_override_cmd(void **state)
{
    struct resolved r;
    struct bh_err err;
    assert_int_equal(resolve(img_cfg, "{\"args\":[\"a\",\"b\"]}", &r, &err), 0);
    assert_string_equal(r.args[0], "/entry");
    assert_string_equal(r.args[1], "a");
    assert_string_equal(r.args[2], "b");
    assert_null(r.args[3]);
    resolved_free(&r);
}

static void test_resolve_env_override(void **state)
{
    struct resolved r;
    struct bh_err err;
    assert_int_equal(resolve(img_cfg, "{\"env\":{\"A\":\"2\",\"B\":\"x=y\"}}", &r, &err), 0);
    assert_string_equal(r.env[0], "PATH=/usr/bin");
    assert_string_equal(r.env[1], "A=2");
    assert_string_equal(r.env[2], "B=x=y");
    assert_null(r.env[3]);
    resolved_free(&r);
    /* Without any PATH the default one is supplied, so bare program names resolve. */
    assert_int_equal(resolve("{\"Cmd\":[\"sh\"]}", NULL, &r, &err), 0);
    assert_string_equal(r.env[0],
                        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    assert_string_equal(r.cwd, "/");
    resolved_free(&r);
}

static void test_resolve_no_program(void **state)
{
    struct resolved r;
    struct bh_err err;
    assert_int_equal(resolve("{\"Env\":[\"A=1\"]}", NULL, &r, &err), -1);
    assert_int_equal(err.code, BH_EINVAL);
    assert_int_equal(resolve(NULL, "{\"args\":[]}", &r, &err), -1);
    assert_int_equal(err.code, BH_EINVAL);
    assert_int_equal(resolve(NULL, "{\"cmd\":42}", &r, &err), -1);
    assert_int_equal(err.code, BH_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hardening),
        cmocka_unit_test(test_resources),
        cmocka_unit_test(test_devices),
        cmocka_unit_test(test_mounts),
        cmocka_unit_test(test_etc_mounts),
        cmocka_unit_test(test_etc_files),
        cmocka_unit_test(test_resolve_image_only),
        cmocka_unit_test(test_resolve_cmd_overrides),
        cmocka_unit_test(test_resolve_args_override_cmd),
        cmocka_unit_test(test_resolve_env_override),
        cmocka_unit_test(test_resolve_no_program),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
