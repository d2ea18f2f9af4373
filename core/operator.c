/* Operator mode: the cluster connection, the store's mirror of it and the leader election,
 * wired to the daemon (operator.h). */
#include "operator.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adopt.h"
#include "client.h"
#include "dispatch.h"
#include "lease.h"
#include "log.h"
#include "mem.h"
#include "mirror.h"
#include "runtime_kube.h"
#include "store.h"

#define OPERATOR_LEASE_NAME "boilerhouse-operator"
/* How long a replica stopping waits for its queued writes to reach the cluster (and so how
 * much later a standby takes over). Within the Deployment's 30 s termination grace, with room
 * for the rest of the shutdown: 5 s dropped answered writes on a loaded machine (2 of 40
 * workloads created through REST just before SIGTERM, in an ASan run). */
#define OPERATOR_FLUSH_MS 20000

struct bh_operator {
    struct bh_kube_client *client;
    struct bh_kube_mirror *mirror;
    struct bh_kube_lease *lease;
    bh_operator_check_fn check;
};

int bh_operator_enabled(const struct bh_settings *cfg)
{
    return cfg->kubeconfig != NULL || cfg->kube_in_cluster;
}

int bh_operator_runs_pods(const struct bh_settings *cfg)
{
    return cfg->runtime ? strcmp(cfg->runtime, "kube") == 0 : bh_operator_enabled(cfg);
}

int bh_operator_check_settings(const struct bh_settings *cfg, struct bh_err *err)
{
    if (bh_operator_runs_pods(cfg) && !bh_operator_enabled(cfg))
        return bh_err_set(err, BH_EINVAL,
                          "--runtime kube runs instances as Pods of a cluster: it needs "
                          "--kubeconfig FILE or --in-cluster 1");
    return 0;
}

static int operator_admit(cJSON *obj, void *ud, struct bh_err *err)
{
    struct bh_ctx *ctx = ud;
    return ctx->op->check(ctx, obj, err);
}

static int operator_may_write_status(void *ud)
{
    struct bh_ctx *ctx = ud;
    return ctx->op->lease && bh_kube_lease_held(ctx->op->lease);
}

/* Instances as Pods of the cluster (core/kube/runtime_kube.h), on the operator's client. */
static int operator_open_runtime(struct bh_ctx *ctx, struct bh_err *err)
{
    const struct bh_settings *c = &ctx->cfg;
    const struct bh_runtime_kube_cfg rc = {.cluster_cidrs = c->kube_cluster_cidrs,
                                           .operator_namespace = c->kube_operator_namespace,
                                           .dns_namespace = c->kube_dns_namespace,
                                           .dns_label = c->kube_dns_label,
                                           .proxy_image = c->kube_proxy_image};
    return bh_runtime_kube_open(ctx->op->client, &rc, &ctx->runtime, err);
}

int bh_operator_open(struct bh_ctx *ctx, bh_operator_check_fn check, struct bh_err *err)
{
    struct bh_kube_config kc;
    int rc = ctx->cfg.kubeconfig ? bh_kube_config_load(ctx->cfg.kubeconfig, &kc, err)
                                 : bh_kube_config_in_cluster(BH_KUBE_SA_DIR, &kc, err);
    if (rc < 0)
        return -1;
    ctx->op = bh_xcalloc(1, sizeof(*ctx->op));
    ctx->op->client = bh_kube_client_new(&kc);
    ctx->op->check = check;
    ctx->standby = 1;
    const struct bh_kube_mirror_cfg mc = {
        .client = ctx->op->client,
        .store = ctx->store,
        .admit = operator_admit,
        .may_write_status = operator_may_write_status,
        .ud = ctx,
    };
    if (bh_kube_mirror_start(&mc, &ctx->op->mirror, err) < 0)
        return bh_err_wrap(err, "operator mode");
    if (bh_operator_runs_pods(&ctx->cfg) && operator_open_runtime(ctx, err) < 0)
        return bh_err_wrap(err, "operator mode");
    bh_store_subscribe(ctx->store, bh_kube_mirror_on_store, ctx->op->mirror);
    bh_info("operator", "mirroring namespace %s of %s", bh_kube_client_namespace(ctx->op->client),
            ctx->cfg.kubeconfig ? ctx->cfg.kubeconfig : "the in-cluster service account");
    return 0;
}

/* The instances its predecessor ran are adopted before any controller runs, so that no
 * claim boots a second one and no pool fills up twice (adopt.h). A leader that cannot see
 * them must not lead: it shuts down, giving the Lease up, as on losing it. */
static void operator_on_lead(void *ud)
{
    struct bh_ctx *ctx = ud;
    struct bh_err err;
    if (bh_adopt_run(ctx, &err) < 0) {
        bh_error("operator", "cannot adopt the instances that run: %s: shutting down", err.msg);
        kill(getpid(), SIGTERM);
        return;
    }
    ctx->standby = 0;
    bh_kube_mirror_push_all(ctx->op->mirror);
    bh_dispatch_all(ctx);
}

/* Controllers cannot be stopped halfway through a reconcile; like controller-runtime's
 * managers, a replica that lost the Lease shuts down (status writes are fenced already) and
 * its supervisor restarts it as a standby. */
static void operator_on_lose(void *ud)
{
    struct bh_ctx *ctx = ud;
    ctx->standby = 1;
    bh_error("operator", "lost the lease: shutting down");
    /* To the process (raise would aim at this thread, which blocks it): main's sigwait. */
    kill(getpid(), SIGTERM);
}

int bh_operator_elect(struct bh_ctx *ctx, struct bh_err *err)
{
    char host[256] = "boilerhouse";
    if (gethostname(host, sizeof(host) - 1) < 0)
        strcpy(host, "boilerhouse");
    bh_autofree char *id = ctx->cfg.operator_id ? bh_xstrdup(ctx->cfg.operator_id)
                                                : bh_xasprintf("%s_%d", host, (int)getpid());
    const struct bh_kube_lease_cfg lc = {
        .client = ctx->op->client,
        .name = OPERATOR_LEASE_NAME,
        .identity = id,
        .duration_s = ctx->cfg.lease_duration_s,
        .on_start = operator_on_lead,
        .on_stop = operator_on_lose,
        .ud = ctx,
    };
    return bh_kube_lease_start(&lc, &ctx->op->lease, err);
}

void bh_operator_close(struct bh_ctx *ctx)
{
    if (!ctx->op)
        return;
    /* What this replica has answered for (a REST write, a status its controllers computed)
     * goes out before it gives up the Lease: a leader's status writes are fenced by it. */
    size_t left = ctx->op->mirror ? bh_kube_mirror_flush(ctx->op->mirror, OPERATOR_FLUSH_MS) : 0;
    if (left)
        bh_warn("operator", "%zu change%s not sent to the cluster after %d ms: dropped", left,
                left == 1 ? "" : "s", OPERATOR_FLUSH_MS);
    bh_kube_lease_stop(ctx->op->lease);
    ctx->op->lease = NULL;
    bh_kube_mirror_stop(ctx->op->mirror);
}

void bh_operator_free(struct bh_ctx *ctx)
{
    if (!ctx->op)
        return;
    /* Boot threads that outlived the stop wrote the store until bh_daemon_close waited for
     * them, and the mirror, still subscribed, had to be there for it. */
    bh_kube_mirror_free(ctx->op->mirror);
    bh_kube_client_free(ctx->op->client);
    free(ctx->op);
    ctx->op = NULL;
}
