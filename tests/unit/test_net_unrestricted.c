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
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/netlink.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bh_test.h"
#include "fs.h"
#include "mem.h"
#include "plugin.h"
#include "net_test.h"
#include "proc.h"

#define N_SLEEPERS 4

#define N_SERVERS 4

struct net_fixture {
    char dir[64];
    char bridge[16];
    char table[32];
    pid_t sleepers[N_SLEEPERS];
    struct bh_plugin *plugin;
    /* The fake internet: netns bhtest-inet-<pid> behind veth bti<n>, 10.250.<n>.0/24 (host
     * .1, server .2). The host side also holds 169.254.169.254 (this kernel has no dummy
     * links), where a stand-in metadata service listens. */
    char inet_ns[32];
    char inet_if[16];
    int n;
    pid_t servers[N_SERVERS];
};

/* This process's instance subnet, 10.214.<pid % 200>.0/24: two runs of this test at once (two
 * checkouts on one host) must not hand out the same addresses on two bridges. */
static char *inst_ip(int host)
{
    return bh_xasprintf("10.214.%d.%d", (int)(getpid() % 200), host);
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
    /* BH_NET_PLUGIN_DIR measures another build of the plugin (attach timing). */
    const char *dir = getenv("BH_NET_PLUGIN_DIR");
    bh_autofree char *path =
        bh_xasprintf("%s/bh-network-unrestricted.so", dir ? dir : BH_PLUGIN_DIR);
    cJSON *cfg = cJSON_CreateObject();
    cJSON_AddStringToObject(cfg, "bridge", f->bridge);
    cJSON_AddStringToObject(cfg, "subnet", subnet);
    int rc =
        bh_plugin_load(&(struct bh_plugin_env){.state_dir = f->dir}, path, cfg, &f->plugin, err);
    cJSON_Delete(cfg);
    return rc;
}

/* Removes the veths of every lease this test's state dir still holds. */
static void teardown_veths(struct net_fixture *f)
{
    for (int host = 2; host < 255; host++) {
        char ifname[16];
        bh_autofree char *ip = inst_ip(host);
        veth_name(ip, ifname);
        if (lease_exists(f, ip))
            nt_link_del(ifname);
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
    for (int i = 0; i < N_SERVERS; i++)
        nt_reap(&f->servers[i]);
    bh_plugin_unload(f->plugin);
    nt_link_del(f->bridge);
    nt_link_del(f->inet_if);
    const char *ns_del[] = {"ip", "netns", "del", f->inet_ns, NULL};
    nt_run_quiet(ns_del);
    nt_nft_table_del("inet", f->table);
    nt_nft_table_del("bridge", f->table);
    if (f->dir[0]) {
        struct bh_err err;
        teardown_veths(f);
        BH_IGNORE(bh_fs_rmtree(f->dir, &err)); /* teardown: best effort */
    }
    free(f);
    *state = NULL;
    return 0;
}

/* cmocka skips teardown when setup fails, so a failed setup undoes itself. */
static int setup(void **state)
{
    struct net_fixture *f = bh_xcalloc(1, sizeof(*f));
    *state = f;
    snprintf(f->bridge, sizeof(f->bridge), "bhtest%d", (int)(getpid() % 1000));
    snprintf(f->table, sizeof(f->table), "boilerhouse_%s", f->bridge);
    f->n = (int)(getpid() % 200) + 20;
    snprintf(f->inet_ns, sizeof(f->inet_ns), "bhtest-inet-%d", (int)getpid());
    snprintf(f->inet_if, sizeof(f->inet_if), "bti%d", f->n);
    snprintf(f->dir, sizeof(f->dir), "/tmp/bh-test-net-XXXXXX");
    int ok = mkdtemp(f->dir) != NULL;
    if (!ok)
        f->dir[0] = '\0';
    for (int i = 0; ok && i < N_SLEEPERS; i++)
        ok = (f->sleepers[i] = nt_sleeper_start()) > 0;
    if (!ok)
        teardown(state);
    return ok ? 0 : -1;
}

static struct net_fixture *fixture_loaded(void **state)
{
    struct net_fixture *f = *state;
    struct bh_err err;
    bh_autofree char *subnet = bh_xasprintf("10.214.%d.0/24", (int)(getpid() % 200));
    if (fixture_load(f, subnet, &err) < 0)
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

/* -w: ping keeps asking, once a second, until the first reply or the deadline: a fresh veth's
 * first packets can wait on neighbour resolution longer than one -W1 try on a loaded host. */
static void assert_pings(const char *ip)
{
    const char *ping[] = {"busybox", "ping", "-c1", "-w20", ip, NULL};
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
    assert_int_equal(res.flags, BH_NET_NEW_NETNS | BH_NET_RESOLVER);
    assert_string_equal(res.env, "");
    /* The host's resolvers, or the gateway's forwarder: never a loopback address. */
    assert_true(res.nameservers[0] != '\0');
    assert_null(strstr(res.nameservers, "127."));
    assert_true(nt_link_exists(f->bridge));
}

static void test_attach_ping_reattach_detach(void **state)
{
    struct net_fixture *f = fixture_loaded(state);
    char a[64], again[64], b[64], veth[16];
    attach_ok(f, 0, "inst-a", a);
    bh_autofree char *first = inst_ip(2);
    assert_string_equal(a, first);
    assert_pings(a);
    attach_ok(f, 0, "inst-a", again);
    assert_string_equal(again, a);
    assert_pings(a);
    attach_ok(f, 1, "inst-b", b);
    assert_string_not_equal(b, a);
    assert_pings(b);

    struct bh_err err;
    veth_name(a, veth);
    assert_true(nt_link_exists(veth));
    /* Set by hand in the netlink message (libnl 3.7 has no setter): check it took. */
    const char *port[] = {"bridge", "-d", "link", "show", "dev", veth, NULL};
    char out[4096] = "";
    assert_int_equal(bh_plugin_host_api()->run(NULL, port, out, sizeof(out), &err), 0);
    assert_non_null(strstr(out, "isolated on"));
    assert_int_equal(detach(f, "inst-a", &err), 0);
    assert_false(nt_link_exists(veth));
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
    bh_autofree char *first = inst_ip(2);
    assert_false(lease_exists(f, first));
    veth_name(first, veth);
    assert_false(nt_link_exists(veth));
}

/* 1 if the bridge table's ports set holds an element of the veth. */
static int port_element_exists(const struct net_fixture *f, const char *veth)
{
    const char *list[] = {"nft", "list", "set", "bridge", f->table, "ports", NULL};
    char out[4096] = "";
    struct bh_err err;
    if (bh_plugin_host_api()->run(NULL, list, out, sizeof(out), &err) < 0)
        fail_msg("%s", err.msg);
    return strstr(out, veth) != NULL;
}

static void assert_nothing_left(const struct net_fixture *f, const char *ip)
{
    char veth[16];
    veth_name(ip, veth);
    assert_false(lease_exists(f, ip));
    assert_false(nt_link_exists(veth));
    assert_false(port_element_exists(f, veth));
}

/* A namespace path that does not open: the error names it, and nothing is left behind. */
static void test_attach_missing_netns_leaves_nothing(void **state)
{
    struct net_fixture *f = fixture_loaded(state);
    const struct bh_network_ops *ops = f->plugin->info->ops;
    struct bh_net_request req = {.size = sizeof(req),
                                 .instance_id = "inst-nons",
                                 .workload = "test",
                                 .network_json = "{}",
                                 .netns_path = "/nonexistent/bh-netns",
                                 .pid = f->sleepers[0]};
    struct bh_net_result res = {.size = sizeof(res)};
    struct bh_err err;
    assert_int_equal(ops->attach(f->plugin->state, &req, &res, &err), -1);
    assert_non_null(strstr(err.msg, "/nonexistent/bh-netns"));
    bh_autofree char *first = inst_ip(2);
    assert_nothing_left(f, first);
}

/* An nftables failure (the bridge table deleted behind the plugin's back) reaches the caller
 * as nft's own message, and the veth and lease made before it are undone. */
static void test_nft_failure_is_reported_and_undone(void **state)
{
    struct net_fixture *f = fixture_loaded(state);
    nt_nft_table_del("bridge", f->table);
    char ip[64], veth[16];
    struct bh_err err;
    assert_int_equal(attach(f, 0, "inst-nft", ip, &err), -1);
    assert_non_null(strstr(err.msg, "nft: Error"));
    bh_autofree char *first = inst_ip(2);
    veth_name(first, veth);
    assert_false(lease_exists(f, first));
    assert_false(nt_link_exists(veth));
}

/* Detach of an instance whose veth went with its namespace (or an operator's ip link del). */
static void test_detach_after_veth_gone(void **state)
{
    struct net_fixture *f = fixture_loaded(state);
    char ip[64], veth[16];
    struct bh_err err;
    attach_ok(f, 0, "inst-gone", ip);
    veth_name(ip, veth);
    assert_true(port_element_exists(f, veth));
    nt_link_del(veth);
    assert_false(nt_link_exists(veth));
    if (detach(f, "inst-gone", &err) < 0)
        fail_msg("detach: %s", err.msg);
    assert_nothing_left(f, ip);
}

/* The daemon spawns runc, mkfs and tar expecting its fds to close on exec: every netlink
 * socket the plugin keeps open (libnftables' among them, which it opens without the flag)
 * must have it. */
static void test_netlink_sockets_close_on_exec(void **state)
{
    struct net_fixture *f = fixture_loaded(state);
    char ip[64];
    attach_ok(f, 0, "inst-fd", ip);
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int netlink = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        int fd = atoi(de->d_name), domain = 0;
        socklen_t len = sizeof(domain);
        if (fd < 3 || getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0 ||
            domain != AF_NETLINK)
            continue;
        netlink++;
        if (!(fcntl(fd, F_GETFD) & FD_CLOEXEC))
            fail_msg("netlink socket fd %d does not close on exec", fd);
    }
    closedir(d);
    assert_true(netlink > 0); /* libnftables' context holds one */
}

/* libnftables sets GMP's process-wide allocators to its own, and the daemon keeps libgmp
 * (libcurl -> gnutls): unloading the plugin must not unload libnftables, or the daemon's
 * next GMP call crashes (it did, in the image's operator, after a failed plugin init). */
static void test_unload_keeps_libnftables(void **state)
{
    struct net_fixture *f = fixture_loaded(state);
    bh_plugin_unload(f->plugin);
    f->plugin = NULL;
    void *nft = dlopen("libnftables.so.1", RTLD_NOW | RTLD_NOLOAD);
    assert_non_null(nft);
    dlclose(nft);
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

static void run_ok(const char *const argv[])
{
    struct bh_err err;
    if (bh_proc_check(argv, &err) < 0)
        fail_msg("%s: %s", argv[0], err.msg);
}

/* Builds the fake internet and the metadata address, and starts the servers: the internet
 * at 10.250.n.2:80, the metadata service at 169.254.169.254:80 and a host service at
 * 10.250.n.1:8081 (the host's own address). */
static void fake_internet(struct net_fixture *f)
{
    char host_cidr[24], peer_cidr[24], peer_if[16], inet_listen[32], host_listen[32];
    snprintf(host_cidr, sizeof(host_cidr), "10.250.%d.1/24", f->n);
    snprintf(peer_cidr, sizeof(peer_cidr), "10.250.%d.2/24", f->n);
    snprintf(peer_if, sizeof(peer_if), "bto%d", f->n);
    snprintf(inet_listen, sizeof(inet_listen), "10.250.%d.2:80", f->n);
    snprintf(host_listen, sizeof(host_listen), "10.250.%d.1:8081", f->n);
    const char *ns = f->inet_ns;
    const char *const cmds[][12] = {
        {"ip", "netns", "add", ns},
        {"ip", "link", "add", f->inet_if, "type", "veth", "peer", "name", peer_if, "netns", ns},
        {"ip", "addr", "add", host_cidr, "dev", f->inet_if},
        {"ip", "link", "set", "dev", f->inet_if, "up"},
        {"ip", "-n", ns, "addr", "add", peer_cidr, "dev", peer_if},
        {"ip", "-n", ns, "link", "set", "dev", peer_if, "up"},
        {"ip", "-n", ns, "link", "set", "dev", "lo", "up"},
        {"ip", "addr", "add", "169.254.169.254/32", "dev", f->inet_if},
    };
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        run_ok(cmds[i]);
    bh_autofree char *doc = bh_xasprintf("%s/www", f->dir);
    bh_autofree char *index = bh_xasprintf("%s/index.html", doc);
    struct bh_err err;
    assert_int_equal(bh_fs_mkdirp(doc, 0755, &err), 0);
    assert_int_equal(bh_fs_write_atomic(index, "ok\n", 3, 0644, &err), 0);
    const char *inet[] = {"ip", "netns", "exec",      ns,   "busybox", "httpd",
                          "-f", "-p",    inet_listen, "-h", doc,       NULL};
    f->servers[0] = nt_spawn(inet);
    f->servers[1] = nt_httpd(0, "169.254.169.254:80", doc);
    f->servers[2] = nt_httpd(0, host_listen, doc);
}

static void test_isolation(void **state)
{
    struct net_fixture *f = fixture_loaded(state);
    fake_internet(f);
    char a[64], b[64], inet_url[64], host_url[64], b_url[80];
    attach_ok(f, 0, "inst-a", a);
    attach_ok(f, 1, "inst-b", b);
    bh_autofree char *doc = bh_xasprintf("%s/www", f->dir);
    f->servers[3] = nt_httpd(f->sleepers[1], "8080", doc);
    snprintf(inet_url, sizeof(inet_url), "http://10.250.%d.2/", f->n);
    snprintf(host_url, sizeof(host_url), "http://10.250.%d.1:8081/", f->n);
    snprintf(b_url, sizeof(b_url), "http://%s:8080/", b);
    const char *meta_url = "http://169.254.169.254/";
    bh_autofree char *gw = inst_ip(1), *spoof_ip = inst_ip(200);
    bh_autofree char *gw_url = bh_xasprintf("http://%s:8081/", gw);
    bh_autofree char *spoof_cidr = bh_xasprintf("%s/24", spoof_ip);
    /* Every listener answers the host, so a refusal below is the policy's doing. */
    assert_true(nt_wait_http(inet_url));
    assert_true(nt_wait_http(meta_url));
    assert_true(nt_wait_http(host_url));
    assert_true(nt_wait_http(b_url));

    pid_t pa = f->sleepers[0];
    assert_true(nt_http_ok(pa, inet_url)); /* out through NAT */
    assert_false(nt_http_ok(pa, meta_url));
    assert_false(nt_http_ok(pa, host_url));
    assert_false(nt_http_ok(pa, gw_url)); /* the host service via the gateway address */
    assert_false(nt_http_ok(pa, b_url));
    /* A spoofed source address is dropped at the bridge port, though its own goes out. */
    char netns[64], inet_ip[16];
    snprintf(netns, sizeof(netns), "--net=/proc/%d/ns/net", (int)pa);
    snprintf(inet_ip, sizeof(inet_ip), "10.250.%d.2", f->n);
    const char *spoof[] = {"nsenter", netns, "ip", "addr", "add", spoof_cidr, "dev", "eth0", NULL};
    run_ok(spoof);
    const char *ping[] = {"nsenter", netns, "busybox", "ping",  "-c1",
                          "-w20",    "-I",  a,         inet_ip, NULL};
    const char *spoofed[] = {"nsenter", netns, "busybox", "ping",  "-c1",
                             "-W1",     "-I",  spoof_ip,  inet_ip, NULL};
    run_ok(ping);
    assert_int_not_equal(nt_run_quiet(spoofed), 0);

    struct bh_err err;
    assert_int_equal(detach(f, "inst-a", &err), 0);
    assert_int_equal(detach(f, "inst-b", &err), 0);
    assert_false(port_element_exists(f, "bhv")); /* no port element outlives its instance */
}

/* Mean wall time of attach + detach, to compare plugin builds (BH_NET_PLUGIN_DIR). */
static void test_attach_timing(void **state)
{
    struct net_fixture *f = fixture_loaded(state);
    struct timespec t0, t1, t2;
    double attach_ms = 0, detach_ms = 0;
    const int rounds = 10;
    for (int i = 0; i < rounds; i++) {
        char ip[64];
        struct bh_err err;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        attach_ok(f, i % N_SLEEPERS, "inst-t", ip);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        assert_int_equal(detach(f, "inst-t", &err), 0);
        clock_gettime(CLOCK_MONOTONIC, &t2);
        attach_ms += (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
        detach_ms += (t2.tv_sec - t1.tv_sec) * 1e3 + (t2.tv_nsec - t1.tv_nsec) / 1e6;
    }
    printf("attach %.1f ms, detach %.1f ms (mean of %d)\n", attach_ms / rounds, detach_ms / rounds,
           rounds);
}

static void test_bad_config_refused(void **state)
{
    struct net_fixture *f = *state;
    struct bh_err err;
    assert_int_equal(fixture_load(f, "10.214.0.1/24", &err), -1);
    assert_non_null(strstr(err.msg, "host bits set"));
    assert_int_equal(fixture_load(f, "10.214.0.0/31", &err), -1);
    assert_non_null(strstr(err.msg, "is not a.b.c.d/8..30"));
    assert_false(nt_link_exists(f->bridge));
}

/* Refuses socket(AF_NETLINK, *, NETLINK_NETFILTER) with EACCES from here on (this process). */
static int deny_nfnetlink(void)
{
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 0, 5),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_NETLINK, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NETLINK_NETFILTER, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EACCES),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = BH_ARRAY_LEN(code), .filter = code};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -1;
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

/* libnftables exits the process when it cannot open its netlink socket: the plugin checks
 * first, so the daemon gets an error it can report (in a child: the filter stays). */
static void test_no_nftables_socket_is_an_error(void **state)
{
    struct net_fixture *f = *state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct bh_err err = {0};
        if (deny_nfnetlink() < 0)
            _exit(2);
        int rc = fixture_load(f, "10.214.0.0/24", &err);
        _exit(rc < 0 && strstr(err.msg, "nftables netlink socket") ? 42 : 43);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 42); /* libnftables' exit is 3 */
    assert_false(nt_link_exists(f->bridge));
}

#define NET_TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    if (geteuid() != 0)
        bh_test_skip_or_fail("needs root (namespaces, bridges, nftables)");
    const struct CMUnitTest tests[] = {
        NET_TEST(test_prepare_asks_for_netns),
        NET_TEST(test_attach_ping_reattach_detach),
        NET_TEST(test_failed_attach_leaves_nothing),
        NET_TEST(test_attach_missing_netns_leaves_nothing),
        NET_TEST(test_nft_failure_is_reported_and_undone),
        NET_TEST(test_detach_after_veth_gone),
        NET_TEST(test_netlink_sockets_close_on_exec),
        NET_TEST(test_unload_keeps_libnftables),
        NET_TEST(test_concurrent_attaches_get_distinct_addresses),
        NET_TEST(test_bad_config_refused),
        NET_TEST(test_no_nftables_socket_is_an_error),
        NET_TEST(test_isolation),
        NET_TEST(test_attach_timing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
