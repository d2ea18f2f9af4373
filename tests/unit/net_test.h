/* Helpers shared by the network plugin tests: processes standing in for containers
 * (`unshare --net sleep`), servers inside or outside namespaces, and probes with busybox
 * wget. Header-only (static inline), included by each test_net_*.c. */
#ifndef BH_TEST_NET_TEST_H
#define BH_TEST_NET_TEST_H

#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proc.h"

extern char **environ;

/* Waits until pid has left our network namespace (unshare has run and exec'd sleep). */
static inline int nt_wait_unshared(pid_t pid)
{
    struct stat self, child;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
    if (stat("/proc/self/ns/net", &self) < 0)
        return -1;
    for (int i = 0; i < 3000; i++) { /* up to 30 s: generous for a slow machine */
        if (stat(path, &child) == 0 && child.st_ino != self.st_ino)
            return 0;
        usleep(10000);
    }
    return -1;
}

static inline pid_t nt_spawn(const char *const argv[])
{
    pid_t pid;
    if (posix_spawnp(&pid, argv[0], NULL, NULL, (char *const *)argv, environ) != 0)
        return -1;
    return pid;
}

static inline void nt_reap(pid_t *pid)
{
    if (*pid > 0) {
        kill(*pid, SIGKILL);
        waitpid(*pid, NULL, 0);
    }
    *pid = 0;
}

static inline pid_t nt_sleeper_start(void)
{
    const char *argv[] = {"unshare", "--net", "sleep", "60", NULL};
    pid_t pid = nt_spawn(argv);
    if (pid > 0 && nt_wait_unshared(pid) < 0)
        nt_reap(&pid);
    return pid;
}

static inline int nt_run_quiet(const char *const argv[])
{
    struct bh_err err;
    return bh_proc_check(argv, &err);
}

static inline int nt_link_exists(const char *ifname)
{
    const char *show[] = {"ip", "link", "show", "dev", ifname, NULL};
    return nt_run_quiet(show) == 0;
}

static inline void nt_link_del(const char *ifname)
{
    const char *del[] = {"ip", "link", "del", "dev", ifname, NULL};
    if (nt_link_exists(ifname))
        nt_run_quiet(del);
}

static inline int nt_nft_table_exists(const char *family, const char *name)
{
    const char *argv[] = {"nft", "list", "table", family, name, NULL};
    return nt_run_quiet(argv) == 0;
}

static inline void nt_nft_table_del(const char *family, const char *name)
{
    const char *argv[] = {"nft", "delete", "table", family, name, NULL};
    if (nt_nft_table_exists(family, name))
        nt_run_quiet(argv);
}

/* 1 if an HTTP GET of url succeeds from the namespace of pid (0: from here) within ~1 s. */
static inline int nt_http_ok(pid_t pid, const char *url)
{
    char netns[64];
    snprintf(netns, sizeof(netns), "--net=/proc/%d/ns/net", (int)pid);
    /* timeout(1), not wget -T: Debian's busybox 1.35 wget crashes with -T. */
    const char *in_ns[] = {"nsenter", netns, "timeout",   "1", "busybox", "wget",
                           "-q",      "-O",  "/dev/null", url, NULL};
    const char *here[] = {"timeout", "1", "busybox", "wget", "-q", "-O", "/dev/null", url, NULL};
    return nt_run_quiet(pid > 0 ? in_ns : here) == 0;
}

/* Polls until url answers from here (a server just spawned is listening). */
static inline int nt_wait_http(const char *url)
{
    for (int i = 0; i < 50; i++) {
        if (nt_http_ok(0, url))
            return 1;
        usleep(50000);
    }
    return 0;
}

/* Starts `busybox httpd -f -p addr:port -h dir` (in pid's namespace if pid > 0). */
static inline pid_t nt_httpd(pid_t pid, const char *listen, const char *dir)
{
    char netns[64];
    snprintf(netns, sizeof(netns), "--net=/proc/%d/ns/net", (int)pid);
    const char *in_ns[] = {"nsenter", netns,  "busybox", "httpd", "-f",
                           "-p",      listen, "-h",      dir,     NULL};
    const char *here[] = {"busybox", "httpd", "-f", "-p", listen, "-h", dir, NULL};
    return nt_spawn(pid > 0 ? in_ns : here);
}

#endif
