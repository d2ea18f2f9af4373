/* bh-egress: the egress sidecar of a `restricted` Pod (sidecar.h says what it reads).
 *
 * Why a program of its own, built from the restricted plugin's sources: the engine is
 * plugin-internal (the core includes no plugin source, and plugins see only the SDK header),
 * and the sidecar needs nothing of the daemon, so it stays small (OpenSSL and cJSON, no
 * store, HTTP server or Lua) with a tiny host API that logs to stderr. The Pod runs
 * `boilerhouse egress-proxy`, which execs this program (core/main.c), so the image keeps one
 * entry point.
 *
 * It listens on 127.0.0.1 at the configured ports (the init container's nft rules redirect
 * the Pod's TCP 80/443 and DNS there) and, for a workload with tenantSecretKeyRef headers, on
 * the control port where the daemon pushes a claim's values (control.c), enforces one policy
 * for every source (a Pod's traffic arrives from 127.0.0.1 or the Pod IP, both the
 * workload's), signs intercepted leaves with the workload's CA from the mounted Secret (never
 * a new one: the main container trusts that certificate), and exits 0 on SIGTERM or SIGINT
 * after closing its connections. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sidecar.h"

/* The files of a kubernetes.io/tls Secret mounted whole at caDir. */
#define SIDECAR_CA_CRT "tls.crt"
#define SIDECAR_CA_KEY "tls.key"

static uint32_t log_max = BH_LOG_INFO;

static void sidecar_log(struct bh_plugin_handle *h, uint32_t level, const char *fmt, ...)
    BH_PRINTF(3, 4);
static void sidecar_log(struct bh_plugin_handle *h, uint32_t level, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    if (level > log_max)
        return;
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s %s bh-egress: %s\n", when, names[level < 4 ? level : 3], line);
}

/* The engine logs through the host API; this program is its host. */
static const struct bh_host_api sidecar_host = {
    .size = sizeof(struct bh_host_api),
    .abi_major = BH_PLUGIN_ABI_MAJOR,
    .abi_minor = BH_PLUGIN_ABI_MINOR,
    .log = sidecar_log,
};

static const char *sidecar_getenv(const char *name)
{
    return getenv(name);
}

static int sidecar_run(const struct sidecar_config *c, const sigset_t *stop, struct bh_err *err)
{
    struct egress_config ec = {.listen_ip = "127.0.0.1",
                               .explicit_port = -1,
                               .http_port = c->http_port,
                               .tls_port = c->tls_port,
                               .dns_port = c->dns_port,
                               .host = &sidecar_host};
    char crt[4096], key[4096];
    snprintf(crt, sizeof(crt), "%s/" SIDECAR_CA_CRT, c->ca_dir);
    snprintf(key, sizeof(key), "%s/" SIDECAR_CA_KEY, c->ca_dir);
    struct egress *eg = NULL;
    struct sidecar_control *ctl = NULL;
    if (egress_start(&ec, &eg, err) < 0)
        return -1;
    /* Until the daemon pushes the tenant's values, their headers are not injected (a warm
     * Pod has no tenant yet): the upstream sees the request without them. */
    if (egress_ca_load(eg, c->workload, crt, key, err) < 0 || sidecar_apply(eg, c, NULL, err) < 0 ||
        (c->control_port && sidecar_control_start(c, eg, &sidecar_host, &ctl, err) < 0)) {
        egress_stop(eg);
        return -1;
    }
    if (ctl)
        sidecar_log(NULL, BH_LOG_INFO,
                    "control on 0.0.0.0:%d: %zu tenantSecretKeyRef headers, not injected until "
                    "the daemon sends their values",
                    c->control_port, c->n_tenant);
    sidecar_log(NULL, BH_LOG_INFO, "workload %s: %zu allowed, %zu credential domains, ready",
                c->workload, c->n_allow, c->n_creds);
    int sig = 0;
    sigwait(stop, &sig);
    sidecar_log(NULL, BH_LOG_INFO, "signal %d: stopping", sig);
    sidecar_control_stop(ctl);
    egress_stop(eg);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        fprintf(stderr, "usage: bh-egress (configured by " SIDECAR_CONFIG_ENV
                        ", see docs/kubernetes-mode.md)\n");
        return 2;
    }
    const char *level = getenv("BOILERHOUSE_LOG_LEVEL");
    if (level && strcmp(level, "debug") == 0)
        log_max = BH_LOG_DEBUG;
    /* Blocked before the engine starts its threads, so only sigwait takes them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct sidecar_config c;
    struct bh_err err = {0};
    int rc = sidecar_config_parse(getenv(SIDECAR_CONFIG_ENV), sidecar_getenv, &c, &err);
    if (rc == 0)
        rc = sidecar_run(&c, &stop, &err);
    if (rc < 0)
        sidecar_log(NULL, BH_LOG_ERROR, "%s", err.msg);
    sidecar_config_free(&c);
    return rc < 0 ? 1 : 0;
}
