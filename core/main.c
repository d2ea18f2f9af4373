/* boilerhouse: `serve` runs the daemon; `image` and `secret` manage the local image and
 * secret stores. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "api.h"
#include "daemon.h"
#include "image.h"
#include "kapi.h"
#include "listen.h"
#include "log.h"
#include "lua_host.h"
#include "objects.h"
#include "secret.h"
#include "token.h"
#include "settings.h"

static void usage(FILE *f)
{
    fputs("usage: boilerhouse COMMAND [ARGS]\n"
          "  serve [options]        run the daemon (boilerhouse serve --help: every setting)\n"
          "  image import PATH [NAME:TAG] | pull REF | ls\n"
          "                         manage the local image store\n"
          "  secret set NAME KEY (value on stdin) | get NAME KEY | list | delete NAME [KEY]\n"
          "                         manage workload secrets (--tenant T for a tenant's own)\n"
          "  token create NAME --scope admin|viewer|tenant:ID [--ttl S] | list | revoke ID\n"
          "                         manage API tokens (the token is printed once)\n"
          "  kubeconfig [options]   print a kubeconfig for the Kubernetes-compatible API\n"
          "                         (takes serve's options: --state-dir, --kube-listen)\n"
          "  kube render --workload FILE [--tenant ID] [--kind KIND] [--output yaml|json]\n"
          "                         print the Kubernetes objects of an instance of a workload\n"
          "  policy test SCRIPT --event FILE|JSON [--workload FILE|JSON]\n"
          "                         run a Lua claim policy or guard on a sample event\n"
          "  snapshot-agent --root DIR --dir PATH...\n"
          "                         serve a Pod's overlay directories to the daemon\n"
          "  egress-proxy           the egress sidecar of a restricted Pod (configured by\n"
          "                         the environment the Pod builder sets)\n"
          "  version                print the version\n"
          "  help                   this text\n",
          f);
}

/* Settings from the table (settings.c): environment, then flags. 0 to run, else the exit
 * code (2: a malformed value; 0: --help printed). */
static int main_settings(int argc, char **argv, struct bh_settings *cfg)
{
    struct bh_err err = {0};
    int help = 0;
    if (bh_settings_from_env(cfg, &err) < 0 ||
        bh_settings_from_args(cfg, argc, argv, &help, &err) < 0) {
        fprintf(stderr, "boilerhouse serve: %s\n", err.msg);
        return 2;
    }
    if (help)
        bh_settings_print_help(stdout);
    return help ? -1 : 0;
}

static int main_serve(int argc, char **argv)
{
    struct bh_settings cfg;
    int rc = main_settings(argc, argv, &cfg);
    if (rc != 0) {
        bh_settings_free(&cfg);
        return rc < 0 ? 0 : rc;
    }
    bh_log_set_level((uint32_t)cfg.log_level);
    /* Signals are taken synchronously by the main thread; every other thread blocks them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    long nofile = bh_listen_raise_nofile();
    /* Two listeners at their caps, with room for the store, containers and logs. */
    if (nofile > 0 && nofile < 2L * cfg.http_max_conns + 1024)
        bh_warn("main",
                "open-file limit %ld is low for --http-max-connections %d: raise it "
                "(ulimit -n) or clients past it wait",
                nofile, cfg.http_max_conns);

    struct bh_ctx *ctx = NULL;
    struct bh_api *api = NULL;
    struct bh_kapi *kapi = NULL;
    struct bh_err err = {0};
    if (bh_daemon_open(&cfg, &ctx, &err) < 0) {
        bh_error("main", "cannot start: %s", err.msg);
        bh_settings_free(&cfg);
        return 1;
    }
    /* The kube API first: once REST answers, its certificates exist (a `boilerhouse
     * kubeconfig` run then reads them instead of racing to make a second CA). */
    if ((ctx->cfg.workloads_dir && bh_daemon_apply_dir(ctx, ctx->cfg.workloads_dir, &err) < 0) ||
        (ctx->cfg.kube_port &&
         bh_kapi_start(ctx, ctx->cfg.kube_host, ctx->cfg.kube_port, &kapi, &err) < 0) ||
        bh_api_start(ctx, &api, &err) < 0) {
        bh_error("main", "cannot start: %s", err.msg);
        bh_kapi_stop(kapi);
        bh_api_stop(api);
        bh_daemon_close(ctx);
        return 1;
    }
    int sig = 0;
    sigwait(&set, &sig);
    bh_info("main", "signal %d: shutting down", sig);
    bh_kapi_stop(kapi);
    bh_api_stop(api);
    bh_daemon_close(ctx);
    return 0;
}

/* Prints a kubeconfig for the Kubernetes-compatible API (making its certificates if this is
 * before the first serve), with the API key as the token. */
static int main_kubeconfig(int argc, char **argv)
{
    struct bh_settings cfg;
    int rc = main_settings(argc, argv, &cfg);
    char *out = NULL;
    struct bh_err err = {0};
    if (rc == 0 && bh_kapi_kubeconfig(cfg.state_dir, cfg.kube_host,
                                      cfg.kube_port ? cfg.kube_port : BH_KAPI_DEFAULT_PORT,
                                      cfg.api_key, &out, &err) < 0) {
        fprintf(stderr, "boilerhouse kubeconfig: %s\n", err.msg);
        rc = 1;
    }
    if (out)
        fputs(out, stdout);
    free(out);
    bh_settings_free(&cfg);
    return rc < 0 ? 0 : rc;
}

/* The sidecar is its own program (bh-egress: the restricted plugin's engine, which the core
 * does not include; plugins/network/restricted/sidecar/main.c). The Pod's command names this
 * subcommand so the image has one entry point. exec, not a child: the kubelet's SIGTERM
 * reaches the sidecar itself, with the environment the Pod builder set. */
static int main_egress_proxy(char **argv)
{
    argv[0] = (char *)bh_settings_default_egress_proxy;
    execv(bh_settings_default_egress_proxy, argv);
    fprintf(stderr, "boilerhouse egress-proxy: cannot run %s: %s\n",
            bh_settings_default_egress_proxy, strerror(errno));
    return 127;
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
    if (strcmp(argv[1], "kubeconfig") == 0)
        return main_kubeconfig(argc - 1, argv + 1);
    if (strcmp(argv[1], "secret") == 0)
        return bh_secret_cli_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "token") == 0)
        return bh_token_cli_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "kube") == 0)
        return bh_kube_cli_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "policy") == 0)
        return bh_lua_cli_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "snapshot-agent") == 0)
        return bh_agent_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "egress-proxy") == 0)
        return main_egress_proxy(argv + 1);
    if (strcmp(argv[1], "version") == 0) {
        printf("boilerhouse %s\n", BH_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "boilerhouse: unknown command %s\n", argv[1]);
    usage(stderr);
    return 2;
}
