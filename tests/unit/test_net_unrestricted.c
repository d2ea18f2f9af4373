/* Drives the real bh-network-unrestricted.so against real namespaces: a test bridge, and
 * `unshare --net sleep` processes standing in for containers. Everything the test makes is
 * named after this process (bridge bhtest<pid%1000>, temp dir) and removed in teardown even
 * when a test fails. Needs root, iproute2, util-linux and busybox. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fs.h"
#include "mem.h"
#include "plugin.h"
#include "proc.h"

extern char **environ;

#define N_SLEEPERS 4
#define SUBNET "10.214.0.0/24"

struct net_fixture {
    char dir[64];
    char bridge[16];
    pid_t sleepers[N_SLEEPERS];
    struct bh_plugin *plugin;
};

/* Waits until pid has left our network namespace (unshare has run and exec'd sleep). */
static int sleeper_wait_unshared(pid_t pid)
{
    struct stat self, child;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
    if (stat("/proc/self/ns/net", &self) < 0)
        return -1;
    for (int i = 0; i < 200; i++) {
        if (stat(path, &child) == 0 && child.st_ino != self.st_ino)
            return 0;
        usleep(10000);
    }
    return -1;
}

static pid_t sleeper_start(void)
{
    const char *argv[] = {"unshare", "--net", "sleep", "60", NULL};
    pid_t pid;
    if (posix_spawnp(&pid, argv[0], NULL, NULL, (char *const *)argv, environ) != 0)
        return -1;
    if (sleeper_wait_unshared(pid) < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
    }
    return pid;
}

static int run_quiet(const char *const argv[])
{
    struct bh_err err;
    return bh_proc_check(argv, &err);
}

static int link_exists(const char *ifname)
{
    const char *show[] = {"ip", "link", "show", "dev", ifname, NULL};
    return run_quiet(show) == 0;
}

static void link_del(const char *ifname)
{
    const char *del[] = {"ip", "link", "del", "dev", ifname, NULL};
    if (link_exists(ifname))
        run_quiet(del);
}

/* The plugin names host veths bhv<address in hex>. */
static void veth_name(const char *ip, char out[16])
{
    struct in_addr in;
    assert_int_equal(inet_pton(AF_INET, ip, &in), 1);
    snprintf(out, 16, "bhv%08x", ntohl(in.s_addr));
}

static int lease_exists(const struct net_fixture *f, const char *ip)
{
    bh_autofree char *path = bh_xasprintf("%s/net/unrestricted/leases/%s", f->dir, ip);
    return bh_fs_exists(path);
}

static int fixture_load(struct net_fixture *f, const char *subnet, struct bh_err *err)
{
    bh_autofree char *path = bh_xasprintf("%s/bh-network-unrestricted.so", BH_PLUGIN_DIR);
    cJSON *cfg = cJSON_CreateObject();
    cJSON_AddStringToObject(cfg, "bridge", f->bridge);
    cJSON_AddStringToObject(cfg, "subnet", subnet);
    int rc = bh_plugin_load(path, cfg, &f->plugin, err);
    cJSON_Delete(cfg);
    return rc;
}

/* Removes the veths of every lease this test's state dir still holds. */
static void teardown_veths(struct net_fixture *f)
{
    for (int host = 2; host < 255; host++) {
        char ip[16], ifname[16];
        snprintf(ip, sizeof(ip), "10.214.0.%d", host);
        veth_name(ip, ifname);
        if (lease_exists(f, ip))
            link_del(ifname);
    }
}

static int teardown(void **state)
{
    struct net_fixture *f = *state;
    if (!f)
        return 0;
    for (int i = 0; i < N_SLEEPERS; i++) {
        if (f->sleepers[i] > 0) {
            kill(f->sleepers[i], SIGKILL);
            waitpid(f->sleepers[i], NULL, 0);
        }
    }
    bh_plugin_unload(f->plugin);
    link_del(f->bridge);
    if (f->dir[0]) {
        struct bh_err err;
        teardown_veths(f);
        bh_fs_rmtree(f->dir, &err);
    }
    bh_plugin_set_state_dir(NULL);
    free(f);
    *state = NULL;
    return 0;
}

/* cmocka skips teardown when setup fails, so a failed setup undoes itself. */
static int setup(void **state)
{
    if (geteuid() != 0)
        return 0; /* the tests skip themselves */
    struct net_fixture *f = bh_xcalloc(1, sizeof(*f));
    *state = f;
    snprintf(f->bridge, sizeof(f->bridge), "bhtest%d", (int)(getpid() % 1000));
    snprintf(f->dir, sizeof(f->dir), "/tmp/bh-test-net-XXXXXX");
    int ok = mkdtemp(f->dir) != NULL;
    if (!ok)
        f->dir[0] = '\0';
    bh_plugin_set_state_dir(f->dir);
    for (int i = 0; ok && i < N_SLEEPERS; i++)
        ok = (f->sleepers[i] = sleeper_start()) > 0;
    if (!ok)
        teardown(state);
    return ok ? 0 : -1;
}

static struct net_fixture *fixture_loaded(void **state)
{
    struct net_fixture *f = *state;
    if (!f)
        skip();
    struct bh_err err;
    if (fixture_load(f, SUBNET, &err) < 0)
        fail_msg("%s", err.msg);
    return f;
}

static int attach_pid(struct net_fixture *f, pid_t pid, const char *id, char ip[64],
                      struct bh_err *err)
{
    const struct bh_network_ops *ops = f->plugin->info->ops;
    char netns[64];
    snprintf(netns, sizeof(netns), "/proc/%d/ns/net", (int)pid);
    struct bh_net_request req = {.size = sizeof(req),
                                 .instance_id = id,
                                 .workload = "test",
                                 .network_json = "{}",
                                 .netns_path = netns,
                                 .pid = pid};
    struct bh_net_result res = {.size = sizeof(res)};
    int rc = ops->attach(f->plugin->state, &req, &res, err);
    memcpy(ip, res.host, 64);
    return rc;
}

static int attach(struct net_fixture *f, int sleeper, const char *id, char ip[64],
                  struct bh_err *err)
{
    return attach_pid(f, f->sleepers[sleeper], id, ip, err);
}

static int detach(struct net_fixture *f, const char *id, struct bh_err *err)
{
    const struct bh_network_ops *ops = f->plugin->info->ops;
    struct bh_net_request req = {.size = sizeof(req), .instance_id = id, .workload = "test"};
    return ops->detach(f->plugin->state, &req, err);
}

static void attach_ok(struct net_fixture *f, int sleeper, const char *id, char ip[64])
{
    struct bh_err err;
    if (attach(f, sleeper, id, ip, &err) < 0)
        fail_msg("attach %s: %s", id, err.msg);
}

static void assert_pings(const char *ip)
{
    const char *ping[] = {"busybox", "ping", "-c1", "-W1", ip, NULL};
    struct bh_err err;
    if (bh_proc_check(ping, &err) < 0)
        fail_msg("ping %s: %s", ip, err.msg);
}

static void test_prepare_asks_for_netns(void **state)
{
    struct net_fixture *f = fixture_loaded(state);
    const struct bh_network_ops *ops = f->plugin->info->ops;
    struct bh_net_request req = {.size = sizeof(req), .instance_id = "a", .workload = "w"};
    struct bh_net_result res = {.size = sizeof(res)};
    struct bh_err err;
    assert_int_equal(ops->prepare(f->plugin->state, &req, &res, &err), 0);
    assert_int_equal(res.flags, BH_NET_NEW_NETNS);
    assert_string_equal(res.env, "");
    assert_true(link_exists(f->bridge));
}

static void test_attach_ping_reattach_detach(void **state)
{
    struct net_fixture *f = fixture_loaded(state);
    char a[64], again[64], b[64], veth[16];
    attach_ok(f, 0, "inst-a", a);
    assert_string_equal(a, "10.214.0.2");
    assert_pings(a);
    attach_ok(f, 0, "inst-a", again);
    assert_string_equal(again, a);
    assert_pings(a);
    attach_ok(f, 1, "inst-b", b);
    assert_string_not_equal(b, a);
    assert_pings(b);

    struct bh_err err;
    veth_name(a, veth);
    assert_true(link_exists(veth));
    assert_int_equal(detach(f, "inst-a", &err), 0);
    assert_false(link_exists(veth));
    assert_false(lease_exists(f, a));
    assert_int_equal(detach(f, "inst-a", &err), 0);
    assert_true(lease_exists(f, b));
    assert_int_equal(detach(f, "inst-b", &err), 0);
    assert_false(lease_exists(f, b));
}

static void test_failed_attach_leaves_nothing(void **state)
{
    struct net_fixture *f = fixture_loaded(state);
    /* A pid that just exited: moving the veth into its namespace fails. */
    pid_t gone;
    const char *argv[] = {"true", NULL};
    assert_int_equal(posix_spawnp(&gone, "true", NULL, NULL, (char *const *)argv, environ), 0);
    waitpid(gone, NULL, 0);
    char ip[64], veth[16];
    struct bh_err err;
    assert_int_equal(attach_pid(f, gone, "inst-gone", ip, &err), -1);
    assert_false(lease_exists(f, "10.214.0.2"));
    veth_name("10.214.0.2", veth);
    assert_false(link_exists(veth));
}

struct attach_job {
    struct net_fixture *f;
    int sleeper;
    char id[16];
    char ip[64];
    struct bh_err err;
    int rc;
};

static void *attach_thread(void *arg)
{
    struct attach_job *j = arg;
    j->rc = attach(j->f, j->sleeper, j->id, j->ip, &j->err);
    return NULL;
}

static void test_concurrent_attaches_get_distinct_addresses(void **state)
{
    struct net_fixture *f = fixture_loaded(state);
    struct attach_job jobs[N_SLEEPERS];
    pthread_t threads[N_SLEEPERS];
    for (int i = 0; i < N_SLEEPERS; i++) {
        jobs[i] = (struct attach_job){.f = f, .sleeper = i};
        snprintf(jobs[i].id, sizeof(jobs[i].id), "inst-%d", i);
        assert_int_equal(pthread_create(&threads[i], NULL, attach_thread, &jobs[i]), 0);
    }
    for (int i = 0; i < N_SLEEPERS; i++)
        pthread_join(threads[i], NULL);
    for (int i = 0; i < N_SLEEPERS; i++) {
        if (jobs[i].rc < 0)
            fail_msg("attach %s: %s", jobs[i].id, jobs[i].err.msg);
        for (int k = 0; k < i; k++)
            assert_string_not_equal(jobs[i].ip, jobs[k].ip);
    }
    assert_pings(jobs[N_SLEEPERS - 1].ip);
}

static void test_bad_config_refused(void **state)
{
    struct net_fixture *f = *state;
    if (!f)
        skip();
    struct bh_err err;
    assert_int_equal(fixture_load(f, "10.214.0.1/24", &err), -1);
    assert_non_null(strstr(err.msg, "host bits set"));
    assert_int_equal(fixture_load(f, "10.214.0.0/31", &err), -1);
    assert_non_null(strstr(err.msg, "is not a.b.c.d/8..30"));
    assert_false(link_exists(f->bridge));
}

#define NET_TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        NET_TEST(test_prepare_asks_for_netns),
        NET_TEST(test_attach_ping_reattach_detach),
        NET_TEST(test_failed_attach_leaves_nothing),
        NET_TEST(test_concurrent_attaches_get_distinct_addresses),
        NET_TEST(test_bad_config_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
