/* boilerhouse: `serve` runs the daemon; `image` manages the local image store. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "daemon.h"
#include "image.h"
#include "log.h"
#include "lua_host.h"
#include "mem.h"
#include "secret.h"

static void usage(FILE *f)
{
    fputs("usage: boilerhouse serve [options]\n"
          "       boilerhouse image import PATH [NAME:TAG] | pull REF | ls\n"
          "       boilerhouse policy test SCRIPT --event FILE|JSON [--workload FILE|JSON]\n"
          "       boilerhouse version\n"
          "serve options (each also settable by environment):\n"
          "  --state-dir DIR       BOILERHOUSE_STATE_DIR (default /var/lib/boilerhouse)\n"
          "  --listen HOST:PORT    BOILERHOUSE_LISTEN_HOST / BOILERHOUSE_PORT (127.0.0.1:3000)\n"
          "  --plugin-dir DIR      BOILERHOUSE_PLUGIN_DIR\n"
          "  --plugin-config FILE  BOILERHOUSE_PLUGIN_CONFIG (YAML/JSON: {\"network/x\": {...}})\n"
          "  --registry-config F   BOILERHOUSE_REGISTRY_CONFIG (JSON)\n"
          "  --workloads-dir DIR   BOILERHOUSE_WORKLOADS_DIR: apply *.yaml there at startup\n"
          "  --runtime runc|crun   BOILERHOUSE_RUNTIME (default: detect)\n"
          "  --policy-dir DIR      BOILERHOUSE_POLICY_DIR: Lua claim policies and guards\n"
          "                        (default STATE_DIR/policies)\n"
          "  --log-level LEVEL     BOILERHOUSE_LOG_LEVEL: error, warn, info, debug\n"
          "  BOILERHOUSE_API_KEY   bearer key for /api/v1 (required off loopback)\n",
          f);
}

static int main_set_listen(struct bh_settings *cfg, const char *arg)
{
    const char *colon = strrchr(arg, ':');
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : 0;
    if (!colon || !end || *end || port < 1 || port > 65535) {
        fprintf(stderr, "boilerhouse: --listen %s: expected HOST:PORT\n", arg);
        return -1;
    }
    free(cfg->listen_host);
    cfg->listen_host = bh_xstrndup(arg, (size_t)(colon - arg));
    cfg->port = (int)port;
    return 0;
}

static int main_set_level(const char *name)
{
    uint32_t level;
    if (bh_log_parse_level(name, &level) < 0) {
        fprintf(stderr, "boilerhouse: unknown log level %s\n", name);
        return -1;
    }
    bh_log_set_level(level);
    return 0;
}

static void main_replace(char **slot, const char *value)
{
    free(*slot);
    *slot = bh_xstrdup(value);
}

static int main_parse_serve(int argc, char **argv, struct bh_settings *cfg)
{
    static const struct option opts[] = {{"state-dir", required_argument, NULL, 's'},
                                         {"listen", required_argument, NULL, 'l'},
                                         {"plugin-dir", required_argument, NULL, 'p'},
                                         {"plugin-config", required_argument, NULL, 'c'},
                                         {"registry-config", required_argument, NULL, 'r'},
                                         {"workloads-dir", required_argument, NULL, 'w'},
                                         {"runtime", required_argument, NULL, 'R'},
                                         {"policy-dir", required_argument, NULL, 'P'},
                                         {"log-level", required_argument, NULL, 'v'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            main_replace(&cfg->state_dir, optarg);
            break;
        case 'l':
            if (main_set_listen(cfg, optarg) < 0)
                return -1;
            break;
        case 'p':
            main_replace(&cfg->plugin_dir, optarg);
            break;
        case 'c':
            main_replace(&cfg->plugin_config, optarg);
            break;
        case 'r':
            main_replace(&cfg->registry_config, optarg);
            break;
        case 'w':
            main_replace(&cfg->workloads_dir, optarg);
            break;
        case 'R':
            main_replace(&cfg->runtime, optarg);
            break;
        case 'P':
            main_replace(&cfg->policy_dir, optarg);
            break;
        case 'v':
            if (main_set_level(optarg) < 0)
                return -1;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "boilerhouse: unexpected argument %s\n", argv[optind]);
        return -1;
    }
    return 0;
}

/* The state dir must be absolute: instance paths derived from it are handed to the runtime. */
static int main_absolutize(char **path)
{
    if (!*path || (*path)[0] == '/')
        return 0;
    char cwd[4096];
    if (!getcwd(cwd, sizeof(cwd)))
        return -1;
    char *abs = bh_xasprintf("%s/%s", cwd, *path);
    free(*path);
    *path = abs;
    return 0;
}

static int main_serve(int argc, char **argv)
{
    struct bh_settings cfg;
    bh_daemon_config_defaults(&cfg);
    const char *lvl = getenv("BOILERHOUSE_LOG_LEVEL");
    if ((lvl && main_set_level(lvl) < 0) || main_parse_serve(argc, argv, &cfg) < 0 ||
        main_absolutize(&cfg.state_dir) < 0 || main_absolutize(&cfg.workloads_dir) < 0 ||
        main_absolutize(&cfg.policy_dir) < 0) {
        bh_daemon_config_free(&cfg);
        return 2;
    }
    /* Signals are taken synchronously by the main thread; every other thread blocks them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct bh_ctx *ctx = NULL;
    struct bh_api *api = NULL;
    struct bh_err err = {0};
    if (bh_daemon_open(&cfg, &ctx, &err) < 0) {
        bh_error("main", "cannot start: %s", err.msg);
        bh_daemon_config_free(&cfg);
        return 1;
    }
    if ((ctx->cfg.workloads_dir && bh_daemon_apply_dir(ctx, ctx->cfg.workloads_dir, &err) < 0) ||
        bh_api_start(ctx, &api, &err) < 0) {
        bh_error("main", "cannot start: %s", err.msg);
        bh_daemon_close(ctx);
        return 1;
    }
    bh_info("main", "listening on http://%s:%d (auth %s)", ctx->cfg.listen_host, ctx->cfg.port,
            ctx->cfg.api_key ? "bearer" : "off");
    int sig = 0;
    sigwait(&set, &sig);
    bh_info("main", "signal %d: shutting down", sig);
    bh_api_stop(api);
    bh_daemon_close(ctx);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "serve") == 0)
        return main_serve(argc - 1, argv + 1);
    if (strcmp(argv[1], "image") == 0)
        return bh_image_cli_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "secret") == 0)
        return bh_secret_cli_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "policy") == 0)
        return bh_lua_cli_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "version") == 0) {
        printf("boilerhouse %s\n", BH_VERSION);
        return 0;
    }
    usage(stderr);
    return 2;
}
