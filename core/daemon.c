/* Daemon lifecycle: configuration, opening the parts in order, startup recovery, the store
 * subscription that feeds the reconciler, and applying manifests. */
#include "daemon.h"

#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "admit.h"
#include "audit.h"
#include "boots.h"
#include "claim.h"
#include "claim_index.h"
#include "crypto.h"
#include "ctx.h"
#include "dispatch.h"
#include "events.h"
#include "fs.h"
#include "guard_lua.h"
#include "idle.h"
#include "image.h"
#include "hibernate.h"
#include "instance.h"
#include "json.h"
#include "kevents.h"
#include "metrics.h"
#include "samples.h"
#include "log.h"
#include "lua_host.h"
#include "mem.h"
#include "operator.h"
#include "plugin.h"
#include "queue.h"
#include "ratelimit.h"
#include "resource.h"
#include "runtime_oci.h"
#include "secret.h"
#include "settings.h"
#include "store.h"
#include "trigger.h"

/* Kubernetes Events kept for kubectl describe (kevents.h): the least recently seen go. */
#define DAEMON_KEVENTS_KEPT 1000

/* ---- open / close ---- */

static int daemon_read_json_file(const char *path, cJSON **out, struct bh_err *err)
{
    bh_autofree char *text = NULL;
    size_t len = 0;
    if (bh_fs_read_all(path, 1 << 20, &text, &len, err) < 0)
        return -1;
    if (bh_resource_parse(text, len, out, err) < 0)
        return bh_err_wrap(err, "%s", path);
    return 0;
}

static int daemon_open_plugins(struct bh_ctx *ctx, struct bh_err *err)
{
    cJSON *pcfg = NULL;
    if (ctx->cfg.plugin_config && daemon_read_json_file(ctx->cfg.plugin_config, &pcfg, err) < 0)
        return -1;
    const struct bh_plugin_env env = {.state_dir = ctx->cfg.state_dir, .secrets = ctx->secrets};
    int rc = bh_plugins_load_dir(&env, ctx->cfg.plugin_dir, pcfg, &ctx->plugins, err);
    cJSON_Delete(pcfg);
    return rc;
}

/* The policy dir defaults to <state>/policies; scripts load on first use. */
static int daemon_open_policies(struct bh_ctx *ctx, struct bh_err *err)
{
    if (!ctx->cfg.policy_dir)
        ctx->cfg.policy_dir = bh_xasprintf("%s/policies", ctx->cfg.state_dir);
    const struct bh_lua_limits limits = BH_LUA_LIMITS_DEFAULT;
    if (bh_lua_policies_open(ctx->cfg.policy_dir, ctx->store, &limits, &ctx->policies, err) < 0)
        return bh_err_wrap(err, "policies");
    return bh_guard_lua_register(ctx, err);
}

static int daemon_open_parts(struct bh_ctx *ctx, struct bh_err *err)
{
    const struct bh_settings *c = &ctx->cfg;
    bh_autofree char *db = bh_xasprintf("%s/store.db", c->state_dir);
    bh_autofree char *images = bh_xasprintf("%s/images", c->state_dir);
    bh_autofree char *rtroot = bh_xasprintf("%s/runtime", c->state_dir);
    cJSON *regcfg = NULL;
    if (bh_fs_mkdirp(c->state_dir, 0711, err) < 0)
        return -1;
    /* Instances run as an unprivileged uid range; their rootfs and socket dirs live below the
     * state dir, which must therefore be traversable (but not listable) by others. */
    if (chmod(c->state_dir, 0711) < 0)
        return bh_err_errno(err, BH_EIO, "chmod %s", c->state_dir);
    bh_autofree char *audit = bh_xasprintf("%s/audit.db", c->state_dir);
    if (bh_store_open(db, &ctx->store, err) < 0 ||
        bh_audit_open(audit, (long long)c->audit_max, &ctx->audit, err) < 0 ||
        bh_audit_start_writer(ctx->audit, c->audit_flush_ms, err) < 0)
        return -1;
    /* Every claim call reads its workload; workloads change seldom. */
    bh_store_cache_kind(ctx->store, "BoilerhouseWorkload");
    if (c->registry_config && daemon_read_json_file(c->registry_config, &regcfg, err) < 0)
        return -1;
    /* Temp files of snapshots in flight belong to a previous run if they exist now. */
    bh_autofree char *tmp = bh_xasprintf("%s/tmp", c->state_dir);
    if (bh_fs_rmtree(tmp, err) < 0 || bh_fs_mkdirp(tmp, 0700, err) < 0 ||
        bh_crypto_master_key(c->state_dir, ctx->master_key, err) < 0)
        return -1;
    if (bh_secrets_open(c->state_dir, &ctx->secrets, err) < 0)
        return -1;
    int rc = bh_image_store_open(images, c->uid_base, regcfg, &ctx->images, err);
    cJSON_Delete(regcfg);
    /* Pods are opened with the cluster connection (bh_operator_open). */
    if (rc < 0 || (!bh_operator_runs_pods(c) &&
                   bh_runtime_oci_open(rtroot, c->runtime, &ctx->runtime, err) < 0))
        return -1;
    if (daemon_open_policies(ctx, err) < 0)
        return -1;
    return daemon_open_plugins(ctx, err);
}

static struct bh_ratelimit *daemon_ratelimit(const struct bh_settings *cfg)
{
    struct bh_ratelimit_cfg rc = {
        .rate_per_s = cfg->rate_limit,
        .burst = cfg->rate_burst,
        .auth_failures = cfg->auth_failures,
    };
    return bh_ratelimit_new(&rc);
}

int bh_daemon_open(struct bh_settings *cfg, struct bh_ctx **out, struct bh_err *err)
{
    struct bh_ctx *ctx = bh_xcalloc(1, sizeof(*ctx));
    ctx->cfg = *cfg;
    memset(cfg, 0, sizeof(*cfg));
    pthread_mutex_init(&ctx->claim_lock, NULL);
    pthread_cond_init(&ctx->claim_cond, NULL);
    pthread_mutex_init(&ctx->boot_lock, NULL);
    bh_admit_locks_init(ctx);
    pthread_cond_init(&ctx->boot_cond, NULL);
    /* Before the parts open: controllers may publish from recovery on. */
    ctx->events = bh_events_new(ctx->cfg.events_buffer, ctx->cfg.ws_queue);
    ctx->kevents = bh_kevents_new(DAEMON_KEVENTS_KEPT);
    bh_events_listen(ctx->events, bh_kevents_on_hub, ctx->kevents);
    ctx->metrics = bh_metrics_new(ctx);
    ctx->samples = bh_samples_new(ctx);
    bh_events_listen(ctx->events, bh_samples_on_event, ctx->samples);
    ctx->claim_index = bh_claim_index_new();
    ctx->idle = bh_idle_new();
    ctx->boots = bh_boots_new(ctx->cfg.max_boots);
    ctx->ratelimit = daemon_ratelimit(&ctx->cfg);
    if (bh_operator_check_settings(&ctx->cfg, err) < 0 || daemon_open_parts(ctx, err) < 0 ||
        (bh_operator_enabled(&ctx->cfg) && bh_operator_open(ctx, bh_daemon_check, err) < 0) ||
        bh_instance_recover(ctx, err) < 0 || bh_claim_recover(ctx, err) < 0 ||
        bh_hibernate_gc(ctx, 0, err) < 0) {
        bh_daemon_close(ctx);
        return -1;
    }
    bh_store_on_commit(ctx->store, bh_metrics_store_commit, ctx->metrics);
    ctx->triggers = bh_triggers_new(ctx);
    ctx->queue = bh_queue_new(ctx->cfg.workers, bh_dispatch_reconcile, ctx);
    bh_store_subscribe(ctx->store, bh_events_store_event, ctx->events);
    bh_store_subscribe(ctx->store, bh_dispatch_event, ctx);
    bh_dispatch_all(ctx);
    if (bh_samples_start(ctx->samples, err) < 0 || (ctx->op && bh_operator_elect(ctx, err) < 0)) {
        bh_daemon_close(ctx);
        return -1;
    }
    bh_info("daemon", "state %s, runtime %s", ctx->cfg.state_dir, bh_runtime_name(ctx->runtime));
    *out = ctx;
    return 0;
}

void bh_daemon_close(struct bh_ctx *ctx)
{
    if (!ctx)
        return;
    /* The Lease first, so that a standby takes over while this one winds down. */
    bh_operator_close(ctx);
    if (ctx->queue)
        bh_queue_stop(ctx->queue);
    bh_samples_stop(ctx->samples); /* its thread reads the store and the runtime */
    /* Pool boot threads use everything below, the queue included; let them finish (a boot
     * is bounded by the claim timeout) before anything is freed. */
    pthread_mutex_lock(&ctx->boot_lock);
    while (ctx->boots_running > 0)
        pthread_cond_wait(&ctx->boot_cond, &ctx->boot_lock);
    pthread_mutex_unlock(&ctx->boot_lock);
    /* Adapters emit into the pipeline, which uses the queue: stop them before freeing it. */
    bh_triggers_free(ctx->triggers);
    if (ctx->queue)
        bh_queue_free(ctx->queue);
    if (ctx->plugins)
        bh_plugins_free(ctx->plugins);
    bh_lua_policies_close(ctx->policies);
    if (ctx->secrets)
        bh_secrets_close(ctx->secrets);
    if (ctx->runtime)
        bh_runtime_close(ctx->runtime);
    bh_operator_free(ctx); /* after the runtime: the Pod runtime borrows its client */
    if (ctx->images)
        bh_image_store_close(ctx->images);
    if (ctx->store)
        bh_store_close(ctx->store);
    bh_audit_close(ctx->audit);
    bh_metrics_free(ctx->metrics);
    bh_claim_index_free(ctx->claim_index);
    bh_idle_free(ctx->idle);
    bh_boots_free(ctx->boots); /* its threads are done: boots_running was waited for above */
    bh_ratelimit_free(ctx->ratelimit);
    bh_events_free(ctx->events);
    bh_samples_free(ctx->samples); /* after the hub: it listens to it */
    bh_kevents_free(ctx->kevents);
    bh_settings_free(&ctx->cfg);
    bh_crypto_wipe(ctx->master_key, sizeof(ctx->master_key));
    pthread_mutex_destroy(&ctx->claim_lock);
    pthread_cond_destroy(&ctx->claim_cond);
    pthread_mutex_destroy(&ctx->boot_lock);
    bh_admit_locks_destroy(ctx);
    pthread_cond_destroy(&ctx->boot_cond);
    free(ctx);
}

/* ---- apply ---- */

int bh_daemon_check(struct bh_ctx *ctx, cJSON *obj, struct bh_err *err)
{
    if (bh_resource_validate(obj, err) < 0 ||
        bh_plugins_check_resource(ctx->plugins, obj, err) < 0 ||
        bh_trigger_check(ctx, obj, err) < 0)
        return -1;
    return 0;
}

int bh_daemon_apply(struct bh_ctx *ctx, cJSON *obj, cJSON **out, struct bh_err *err)
{
    if (bh_daemon_check(ctx, obj, err) < 0)
        return -1;
    const char *kind = bh_json_str(obj, "kind");
    const char *name = bh_json_str(obj, "metadata.name");
    cJSON *cur = NULL;
    struct bh_err gerr;
    if (bh_store_get(ctx->store, kind, name, &cur, &gerr) < 0)
        return bh_store_create(ctx->store, obj, out, err);
    /* Apply replaces the desired state; system metadata stays the store's. */
    cJSON *next = cJSON_Duplicate(obj, 1);
    cJSON_DeleteItemFromObjectCaseSensitive(bh_json_obj(next, "metadata"), "resourceVersion");
    int rc = bh_store_update(ctx->store, next, out, err);
    cJSON_Delete(next);
    cJSON_Delete(cur);
    return rc;
}

static int daemon_apply_file(struct bh_ctx *ctx, const char *path, struct bh_err *err)
{
    bh_autofree char *text = NULL;
    size_t len = 0;
    cJSON *docs = NULL;
    if (bh_fs_read_all(path, 1 << 20, &text, &len, err) < 0 ||
        bh_resource_parse_all(text, len, &docs, err) < 0)
        return bh_err_wrap(err, "%s", path);
    int rc = 0;
    cJSON *doc;
    cJSON_ArrayForEach(doc, docs) {
        if ((rc = bh_daemon_apply(ctx, doc, NULL, err)) < 0) {
            bh_err_wrap(err, "%s", path);
            break;
        }
        bh_info("daemon", "applied %s %s from %s", bh_json_str(doc, "kind"),
                bh_json_str(doc, "metadata.name"), path);
    }
    cJSON_Delete(docs);
    return rc;
}

static int daemon_is_manifest(const char *name)
{
    size_t n = strlen(name);
    return (n > 5 && strcmp(name + n - 5, ".yaml") == 0) ||
           (n > 4 && strcmp(name + n - 4, ".yml") == 0);
}

int bh_daemon_apply_dir(struct bh_ctx *ctx, const char *dir, struct bh_err *err)
{
    struct dirent **names = NULL;
    int n = scandir(dir, &names, NULL, alphasort);
    if (n < 0)
        return bh_err_errno(err, BH_EIO, "read %s", dir);
    int rc = 0;
    for (int i = 0; i < n; i++) {
        if (rc == 0 && daemon_is_manifest(names[i]->d_name)) {
            bh_autofree char *path = bh_xasprintf("%s/%s", dir, names[i]->d_name);
            rc = daemon_apply_file(ctx, path, err);
        }
        free(names[i]);
    }
    free(names);
    return rc;
}
