/* Daemon lifecycle: configuration, opening the parts in order, startup recovery, the store
 * subscription that feeds the reconciler, and applying manifests. */
#include "daemon.h"

#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "crypto.h"
#include "fs.h"
#include "image.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "plugin.h"
#include "queue.h"
#include "resource.h"
#include "runtime.h"
#include "secret.h"
#include "store.h"

#define DAEMON_DEFAULT_STATE "/var/lib/boilerhouse"

long long bh_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void bh_now_rfc3339(char buf[32])
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static char *config_env(const char *name, const char *def)
{
    const char *v = getenv(name);
    return (v && *v) ? bh_xstrdup(v) : (def ? bh_xstrdup(def) : NULL);
}

static long config_env_long(const char *name, long def)
{
    const char *v = getenv(name);
    char *end = NULL;
    long n = v ? strtol(v, &end, 10) : def;
    return (v && end && *end == '\0' && end != v) ? n : def;
}

void bh_daemon_config_defaults(struct bh_daemon_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->state_dir = config_env("BOILERHOUSE_STATE_DIR", DAEMON_DEFAULT_STATE);
    cfg->listen_host = config_env("BOILERHOUSE_LISTEN_HOST", "127.0.0.1");
    cfg->port = (int)config_env_long("BOILERHOUSE_PORT", 3000);
    cfg->api_key = config_env("BOILERHOUSE_API_KEY", NULL);
    cfg->plugin_dir = config_env("BOILERHOUSE_PLUGIN_DIR", BH_DEFAULT_PLUGIN_DIR);
    cfg->plugin_config = config_env("BOILERHOUSE_PLUGIN_CONFIG", NULL);
    cfg->registry_config = config_env("BOILERHOUSE_REGISTRY_CONFIG", NULL);
    cfg->workloads_dir = config_env("BOILERHOUSE_WORKLOADS_DIR", NULL);
    cfg->runtime = config_env("BOILERHOUSE_RUNTIME", NULL);
    cfg->claim_timeout_ms = (int)config_env_long("BOILERHOUSE_CLAIM_TIMEOUT_SECONDS", 60) * 1000;
    cfg->workers = (int)config_env_long("BOILERHOUSE_WORKERS", 8);
    cfg->max_body = (size_t)config_env_long("BOILERHOUSE_MAX_BODY_BYTES", 1 << 20);
    cfg->log_cap = (size_t)config_env_long("BOILERHOUSE_LOG_CAP_BYTES", 10 << 20);
    cfg->uid_base = (uint32_t)config_env_long("BOILERHOUSE_UID_BASE", BH_DEFAULT_UID_BASE);
    cfg->storage = config_env("BOILERHOUSE_STORAGE", "local");
    cfg->snapshot_compression = config_env("BOILERHOUSE_SNAPSHOT_COMPRESSION", "zstd");
}

void bh_daemon_config_free(struct bh_daemon_config *cfg)
{
    char **strs[] = {&cfg->state_dir,           &cfg->listen_host,   &cfg->api_key,
                     &cfg->plugin_dir,          &cfg->plugin_config, &cfg->registry_config,
                     &cfg->workloads_dir,       &cfg->runtime,       &cfg->storage,
                     &cfg->snapshot_compression};
    for (size_t i = 0; i < BH_ARRAY_LEN(strs); i++) {
        free(*strs[i]);
        *strs[i] = NULL;
    }
}

void bh_crashpoint(const char *name)
{
    const char *at = getenv("BOILERHOUSE_CRASH_AT");
    if (at && strcmp(at, name) == 0) {
        bh_warn("daemon", "crash point %s reached: killing the daemon (test hook)", name);
        raise(SIGKILL);
    }
}

/* ---- reconciler wiring ---- */

int bh_controller_reconcile(void *daemon, const char *key, long *requeue_ms, struct bh_err *err)
{
    struct bh_daemon *d = daemon;
    const char *slash = strchr(key, '/');
    if (!slash)
        return bh_err_set(err, BH_EINVAL, "bad queue key %s", key);
    size_t klen = (size_t)(slash - key);
    if (strncmp(key, "BoilerhouseWorkload", klen) == 0 && klen == 19)
        return bh_workload_reconcile(d, slash + 1, requeue_ms, err);
    if (strncmp(key, "BoilerhouseClaim", klen) == 0 && klen == 16)
        return bh_claim_reconcile(d, slash + 1, requeue_ms, err);
    if (strncmp(key, "BoilerhousePool", klen) == 0 && klen == 15)
        return bh_pool_reconcile(d, slash + 1, requeue_ms, err);
    return 0; /* kinds without a controller yet are stored only */
}

static void daemon_enqueue_claims_of(struct bh_daemon *d, const char *workload)
{
    bh_autofree char *sel = bh_xasprintf("boilerhouse.dev/workload=%s", workload);
    cJSON *list = NULL;
    struct bh_err err;
    if (bh_store_list(d->store, "BoilerhouseClaim", sel, &list, NULL, &err) < 0)
        return;
    const cJSON *c;
    cJSON_ArrayForEach(c, list)
    {
        bh_autofree char *key =
            bh_xasprintf("BoilerhouseClaim/%s", bh_json_str(c, "metadata.name"));
        bh_queue_add(d->queue, key);
    }
    cJSON_Delete(list);
}

static void daemon_enqueue_pools_of(struct bh_daemon *d, const char *workload)
{
    cJSON *list = NULL;
    struct bh_err err;
    if (bh_store_list(d->store, "BoilerhousePool", NULL, &list, NULL, &err) < 0)
        return;
    const cJSON *p;
    cJSON_ArrayForEach(p, list)
    {
        const char *ref = bh_json_str(p, "spec.workloadRef");
        if (ref && strcmp(ref, workload) == 0) {
            bh_autofree char *key =
                bh_xasprintf("BoilerhousePool/%s", bh_json_str(p, "metadata.name"));
            bh_queue_add(d->queue, key);
        }
    }
    cJSON_Delete(list);
}

static void daemon_enqueue(struct bh_daemon *d, const char *kind, const char *name)
{
    bh_autofree char *key = bh_xasprintf("%s/%s", kind, name);
    bh_queue_add(d->queue, key);
}

/* Maps a change to the keys whose desired state it may affect (level-triggered: extra
 * reconciles are harmless, missing ones are bugs). */
static void daemon_on_event(const struct bh_store_event *ev, void *ud)
{
    struct bh_daemon *d = ud;
    if (strcmp(ev->kind, "Instance") == 0) {
        const char *pool = bh_json_label(ev->object, "boilerhouse.dev/pool");
        if (pool)
            daemon_enqueue(d, "BoilerhousePool", pool);
        return;
    }
    if (strcmp(ev->kind, "BoilerhouseClaim") == 0) {
        pthread_mutex_lock(&d->claim_lock);
        d->claim_seq++;
        pthread_cond_broadcast(&d->claim_cond);
        pthread_mutex_unlock(&d->claim_lock);
    }
    if (strcmp(ev->kind, "Snapshot") == 0)
        return;
    /* A deleted pool still has instances to drain. */
    if (ev->type != BH_EV_DELETED || strcmp(ev->kind, "BoilerhousePool") == 0)
        daemon_enqueue(d, ev->kind, ev->name);
    if (strcmp(ev->kind, "BoilerhouseWorkload") == 0) {
        const char *phase = bh_json_str(ev->object, "status.phase");
        if (phase && strcmp(phase, "Creating") != 0)
            daemon_enqueue_claims_of(d, ev->name);
        daemon_enqueue_pools_of(d, ev->name);
    }
}

void bh_daemon_wait_claim_change(struct bh_daemon *d, uint64_t *seq, long long deadline_ms)
{
    pthread_mutex_lock(&d->claim_lock);
    while (d->claim_seq == *seq) {
        long long left = deadline_ms - bh_now_ms();
        if (left <= 0)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += left / 1000;
        ts.tv_nsec += (left % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&d->claim_cond, &d->claim_lock, &ts);
    }
    *seq = d->claim_seq;
    pthread_mutex_unlock(&d->claim_lock);
}

static void daemon_enqueue_all(struct bh_daemon *d, const char *kind)
{
    cJSON *list = NULL;
    struct bh_err err;
    if (bh_store_list(d->store, kind, NULL, &list, NULL, &err) < 0)
        return;
    const cJSON *o;
    cJSON_ArrayForEach(o, list)
    {
        bh_autofree char *key = bh_xasprintf("%s/%s", kind, bh_json_str(o, "metadata.name"));
        bh_queue_add(d->queue, key);
    }
    cJSON_Delete(list);
}

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

static int daemon_open_plugins(struct bh_daemon *d, struct bh_err *err)
{
    cJSON *pcfg = NULL;
    if (d->cfg.plugin_config && daemon_read_json_file(d->cfg.plugin_config, &pcfg, err) < 0)
        return -1;
    bh_plugin_set_state_dir(d->cfg.state_dir);
    bh_plugin_set_secrets(d->secrets);
    int rc = bh_plugins_load_dir(d->cfg.plugin_dir, pcfg, &d->plugins, err);
    cJSON_Delete(pcfg);
    return rc;
}

static int daemon_open_parts(struct bh_daemon *d, struct bh_err *err)
{
    const struct bh_daemon_config *c = &d->cfg;
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
    if (bh_store_open(db, &d->store, err) < 0)
        return -1;
    if (c->registry_config && daemon_read_json_file(c->registry_config, &regcfg, err) < 0)
        return -1;
    /* Temp files of snapshots in flight belong to a previous run if they exist now. */
    bh_autofree char *tmp = bh_xasprintf("%s/tmp", c->state_dir);
    if (bh_fs_rmtree(tmp, err) < 0 || bh_fs_mkdirp(tmp, 0700, err) < 0 ||
        bh_crypto_master_key(c->state_dir, d->master_key, err) < 0)
        return -1;
    if (bh_secrets_open(c->state_dir, &d->secrets, err) < 0)
        return -1;
    int rc = bh_image_store_open(images, c->uid_base, regcfg, &d->images, err);
    cJSON_Delete(regcfg);
    if (rc < 0 || bh_runtime_open(rtroot, c->runtime, &d->runtime, err) < 0)
        return -1;
    return daemon_open_plugins(d, err);
}

int bh_daemon_open(struct bh_daemon_config *cfg, struct bh_daemon **out, struct bh_err *err)
{
    struct bh_daemon *d = bh_xcalloc(1, sizeof(*d));
    d->cfg = *cfg;
    memset(cfg, 0, sizeof(*cfg));
    pthread_mutex_init(&d->claim_lock, NULL);
    pthread_cond_init(&d->claim_cond, NULL);
    if (daemon_open_parts(d, err) < 0 || bh_instance_recover(d, err) < 0) {
        bh_daemon_close(d);
        return -1;
    }
    d->queue = bh_queue_new(d->cfg.workers, bh_controller_reconcile, d);
    bh_store_subscribe(d->store, daemon_on_event, d);
    daemon_enqueue_all(d, "BoilerhouseWorkload");
    daemon_enqueue_all(d, "BoilerhouseClaim");
    daemon_enqueue_all(d, "BoilerhousePool");
    bh_info("daemon", "state %s, runtime %s", d->cfg.state_dir, bh_runtime_name(d->runtime));
    *out = d;
    return 0;
}

void bh_daemon_close(struct bh_daemon *d)
{
    if (!d)
        return;
    if (d->queue)
        bh_queue_stop(d->queue);
    /* Pool boot threads use everything below, the queue included; let them finish (a boot
     * is bounded by the claim timeout) before anything is freed. */
    pthread_mutex_lock(&d->claim_lock);
    while (d->boots_running > 0)
        pthread_cond_wait(&d->claim_cond, &d->claim_lock);
    pthread_mutex_unlock(&d->claim_lock);
    if (d->queue)
        bh_queue_free(d->queue);
    if (d->plugins)
        bh_plugins_free(d->plugins);
    bh_plugin_set_secrets(NULL);
    if (d->secrets)
        bh_secrets_close(d->secrets);
    if (d->runtime)
        bh_runtime_close(d->runtime);
    if (d->images)
        bh_image_store_close(d->images);
    if (d->store)
        bh_store_close(d->store);
    bh_daemon_config_free(&d->cfg);
    bh_crypto_wipe(d->master_key, sizeof(d->master_key));
    pthread_mutex_destroy(&d->claim_lock);
    pthread_cond_destroy(&d->claim_cond);
    free(d);
}

/* ---- apply ---- */

int bh_daemon_apply(struct bh_daemon *d, cJSON *obj, cJSON **out, struct bh_err *err)
{
    if (bh_resource_validate(obj, err) < 0)
        return -1;
    const char *kind = bh_json_str(obj, "kind");
    const char *name = bh_json_str(obj, "metadata.name");
    cJSON *cur = NULL;
    struct bh_err gerr;
    if (bh_store_get(d->store, kind, name, &cur, &gerr) < 0)
        return bh_store_create(d->store, obj, out, err);
    /* Apply replaces the desired state; system metadata stays the store's. */
    cJSON *next = cJSON_Duplicate(obj, 1);
    cJSON_DeleteItemFromObjectCaseSensitive(bh_json_obj(next, "metadata"), "resourceVersion");
    int rc = bh_store_update(d->store, next, out, err);
    cJSON_Delete(next);
    cJSON_Delete(cur);
    return rc;
}

static int daemon_apply_file(struct bh_daemon *d, const char *path, struct bh_err *err)
{
    bh_autofree char *text = NULL;
    size_t len = 0;
    cJSON *docs = NULL;
    if (bh_fs_read_all(path, 1 << 20, &text, &len, err) < 0 ||
        bh_resource_parse_all(text, len, &docs, err) < 0)
        return bh_err_wrap(err, "%s", path);
    int rc = 0;
    cJSON *doc;
    cJSON_ArrayForEach(doc, docs)
    {
        if ((rc = bh_daemon_apply(d, doc, NULL, err)) < 0) {
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

int bh_daemon_apply_dir(struct bh_daemon *d, const char *dir, struct bh_err *err)
{
    struct dirent **names = NULL;
    int n = scandir(dir, &names, NULL, alphasort);
    if (n < 0)
        return bh_err_errno(err, BH_EIO, "read %s", dir);
    int rc = 0;
    for (int i = 0; i < n; i++) {
        if (rc == 0 && daemon_is_manifest(names[i]->d_name)) {
            bh_autofree char *path = bh_xasprintf("%s/%s", dir, names[i]->d_name);
            rc = daemon_apply_file(d, path, err);
        }
        free(names[i]);
    }
    free(names);
    return rc;
}
