/* `boilerhouse snapshot-agent`: the agent of agent.h as a process, what the Pod's sidecar and
 * restore init container run (docs/kubernetes-mode.md). */
#include <arpa/inet.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "agent.h"
#include "fs.h"
#include "log.h"
#include "mem.h"

#define CLI_MAX_DIRS 64
#define CLI_TOKEN_MAX 4096
#define CLI_DEFAULT_PORT 15090

struct agent_cli {
    struct bh_agent_cfg cfg;
    char *dirs[CLI_MAX_DIRS + 1];
    int n_dirs;
    char *watch[CLI_MAX_DIRS + 1];
    int n_watch;
    char host[64];
    char *token, *scratch; /* owned */
};

static int cli_usage(void)
{
    fputs("usage: boilerhouse snapshot-agent --root DIR --dir PATH [--dir PATH]...\n"
          "         [--listen HOST:PORT (0.0.0.0:15090)] [--token-file FILE]\n"
          "         [--scratch DIR (ROOT/.boilerhouse-agent)] [--compression zstd|gzip|lz4]\n"
          "         [--watch PATH]... [--probe-peer IP] [--restore-once]\n",
          stderr);
    return 2;
}

static int cli_fail(const char *fmt, const char *what)
{
    fputs("boilerhouse snapshot-agent: ", stderr);
    fprintf(stderr, fmt, what);
    fputc('\n', stderr);
    return 2;
}

/* An overlay directory as the workload sees it: absolute, no "." or ".." parts, not "/". */
static int cli_dir_ok(const char *d)
{
    if (d[0] != '/' || !d[1] || strlen(d) > 1024)
        return 0;
    bh_autofree char *copy = bh_xstrdup(d + 1);
    char *save = NULL;
    for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save))
        if (!bh_fs_safe_component(c))
            return 0;
    return d[strlen(d) - 1] != '/';
}

static int cli_listen(struct agent_cli *c, const char *v)
{
    const char *colon = strrchr(v, ':');
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    if (!colon || colon == v || (size_t)(colon - v) >= sizeof(c->host) || !end || *end ||
        port < 0 || port > 65535)
        return cli_fail("--listen %s: expected HOST:PORT", v);
    snprintf(c->host, sizeof(c->host), "%.*s", (int)(colon - v), v);
    c->cfg.port = (int)port;
    return 0;
}

static int cli_token(struct agent_cli *c, const char *path)
{
    size_t len = 0;
    struct bh_err err = {0};
    char *t = NULL;
    if (bh_fs_read_all(path, CLI_TOKEN_MAX, &t, &len, &err) < 0)
        return cli_fail("--token-file: %s", err.msg);
    t[strcspn(t, "\r\n")] = '\0';
    if (!t[0]) {
        free(t);
        return cli_fail("--token-file %s: the file is empty", path);
    }
    c->token = t;
    c->cfg.token = t;
    return 0;
}

/* A watched directory must be one of the overlay directories or below one: they are all the
 * agent has of the workload's files. */
static int cli_watch(struct agent_cli *c, const char *v)
{
    if (!cli_dir_ok(v))
        return cli_fail("--watch %s: expected an absolute path without . or .. parts", v);
    if (c->n_watch == CLI_MAX_DIRS)
        return cli_fail("--watch %s: too many directories", v);
    c->watch[c->n_watch++] = (char *)v;
    return 0;
}

static int cli_watch_check(const struct agent_cli *c)
{
    for (int i = 0; i < c->n_watch; i++) {
        int under = 0;
        for (int j = 0; j < c->n_dirs && !under; j++) {
            size_t n = strlen(c->dirs[j]);
            under = !strncmp(c->watch[i], c->dirs[j], n) &&
                    (c->watch[i][n] == '\0' || c->watch[i][n] == '/');
        }
        if (!under)
            return cli_fail("--watch %s: not an overlay directory (--dir) or below one",
                            c->watch[i]);
    }
    return 0;
}

static int cli_probe_peer(struct agent_cli *c, const char *v)
{
    unsigned char addr[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, v, addr) != 1 && inet_pton(AF_INET6, v, addr) != 1)
        return cli_fail("--probe-peer %s: expected an IPv4 or IPv6 address", v);
    c->cfg.probe_peer = v;
    return 0;
}

static int cli_option(struct agent_cli *c, int opt, const char *v)
{
    switch (opt) {
    case 'r':
        c->cfg.root = v;
        return 0;
    case 'd':
        if (!cli_dir_ok(v))
            return cli_fail("--dir %s: expected an absolute path without . or .. parts", v);
        if (c->n_dirs == CLI_MAX_DIRS)
            return cli_fail("--dir %s: too many directories", v);
        c->dirs[c->n_dirs++] = (char *)v;
        return 0;
    case 'l':
        return cli_listen(c, v);
    case 't':
        return cli_token(c, v);
    case 's':
        c->cfg.scratch = v;
        return 0;
    case 'c':
        return bh_snapshot_compression_parse(v, &c->cfg.compression) < 0
                   ? cli_fail("--compression %s: expected zstd, gzip or lz4", v)
                   : 0;
    case 'o':
        c->cfg.restore_once = 1;
        return 0;
    case 'w':
        return cli_watch(c, v);
    case 'p':
        return cli_probe_peer(c, v);
    default:
        return cli_usage();
    }
}

static int cli_parse(struct agent_cli *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"root", required_argument, NULL, 'r'},       {"dir", required_argument, NULL, 'd'},
        {"listen", required_argument, NULL, 'l'},     {"token-file", required_argument, NULL, 't'},
        {"scratch", required_argument, NULL, 's'},    {"compression", required_argument, NULL, 'c'},
        {"restore-once", no_argument, NULL, 'o'},     {"watch", required_argument, NULL, 'w'},
        {"probe-peer", required_argument, NULL, 'p'}, {NULL, 0, NULL, 0}};
    int opt, rc;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1)
        if ((rc = cli_option(c, opt, optarg)) != 0)
            return rc;
    if (optind < argc)
        return cli_fail("unexpected argument %s", argv[optind]);
    if (!c->cfg.root || !c->n_dirs)
        return cli_usage();
    return cli_watch_check(c);
}

/* The scratch dir must share root's filesystem (a restore renames into place) and must not
 * be inside an overlay directory (it would be archived). */
static int cli_scratch(struct agent_cli *c)
{
    struct stat st;
    if (stat(c->cfg.root, &st) < 0 || !S_ISDIR(st.st_mode))
        return cli_fail("--root %s: not a directory", c->cfg.root);
    if (!c->cfg.scratch)
        c->cfg.scratch = c->scratch = bh_xasprintf("%s/.boilerhouse-agent", c->cfg.root);
    for (int i = 0; i < c->n_dirs; i++) {
        bh_autofree char *d = bh_xasprintf("%s%s/", c->cfg.root, c->dirs[i]);
        if (!strncmp(c->cfg.scratch, d, strlen(d)))
            return cli_fail("--scratch %s: inside an overlay directory", c->cfg.scratch);
    }
    if (mkdir(c->cfg.scratch, 0700) < 0 && !bh_fs_exists(c->cfg.scratch))
        return cli_fail("--scratch %s: cannot create it", c->cfg.scratch);
    return 0;
}

/* In a Pod's fresh volume nothing exists yet (the kubelet makes subPath directories only when
 * the workload starts, after a restore): the overlay directories' parents are made here, as
 * an image's rootfs would have them, so a restore can put the directories in place. */
static int cli_parents(struct agent_cli *c)
{
    for (int i = 0; i < c->n_dirs; i++) {
        bh_autofree char *d = bh_xasprintf("%s%s", c->cfg.root, c->dirs[i]);
        *strrchr(d, '/') = '\0';
        struct bh_err err = {0};
        if (bh_fs_mkdirp(d, 0755, &err) < 0)
            return cli_fail("--dir: %s", err.msg);
    }
    return 0;
}

static int cli_run(struct agent_cli *c)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* before any thread: bh_agent_wait takes them */
    struct bh_err err = {0};
    struct bh_agent *a = NULL;
    if (bh_agent_start(&c->cfg, &a, &err) < 0) {
        fprintf(stderr, "boilerhouse snapshot-agent: %s\n", err.msg);
        return 1;
    }
    bh_info("agent", "serving %d overlay director%s of %s on %s:%d%s", c->n_dirs,
            c->n_dirs == 1 ? "y" : "ies", c->cfg.root, c->host, bh_agent_port(a),
            c->cfg.restore_once ? " until one restore" : "");
    int rc = bh_agent_wait(a);
    bh_agent_stop(a);
    return rc < 0 ? 1 : 0;
}

int bh_agent_main(int argc, char **argv)
{
    struct agent_cli c = {.cfg = {.port = CLI_DEFAULT_PORT}};
    snprintf(c.host, sizeof(c.host), "0.0.0.0");
    c.cfg.host = c.host;
    c.cfg.dirs = c.dirs;
    c.cfg.watch = c.watch;
    int rc = cli_parse(&c, argc, argv);
    if (rc == 0)
        rc = cli_scratch(&c);
    if (rc == 0)
        rc = cli_parents(&c);
    if (rc == 0)
        rc = cli_run(&c);
    free(c.token);
    free(c.scratch);
    return rc;
}
