/* The controllers (claim, pool, instance, idle, hibernate) on the fake runtime, a temporary
 * SQLite store, the real image store fed a generated one-layer OCI layout, the real local
 * storage plugin and a fake network plugin. The real queue and dispatch run them; tests wait
 * on conditions with generous deadlines, never fixed sleeps. Needs neither root nor runc. */
#include <archive.h>
#include <archive_entry.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "admit.h"
#include "boots.h"
#include "claim.h"
#include "claim_index.h"
#include "clock.h"
#include "crypto.h"
#include "ctx.h"
#include "dispatch.h"
#include "fake_runtime.h"
#include "fs.h"
#include "idle.h"
#include "image.h"
#include "instance.h"
#include "json.h"
#include "lua_host.h"
#include "mem.h"
#include "name.h"
#include "plugin.h"
#include "pool.h"
#include "queue.h"
#include "resource.h"
#include "store.h"
#include "workload.h"

#define WAIT_MS 20000
#define TENANT "alice"

static struct bh_ctx *g_ctx;
static char *g_dir;
static char *g_image_ref;

/* ---- a one-layer OCI layout ---- */

/* Writes data as a blob; hex receives its digest. */
static void blob_put(const char *layout, const char *data, size_t len, char hex[65])
{
    struct bh_sha256 *h = bh_crypto_sha256_new();
    bh_crypto_sha256_update(h, data, len);
    bh_crypto_sha256_final(h, hex);
    bh_autofree char *path = bh_xasprintf("%s/blobs/sha256/%s", layout, hex);
    struct bh_err err;
    assert_int_equal(bh_fs_write_atomic(path, data, len, 0644, &err), 0);
}

/* A tar holding /data (a directory) and /etc/hello, owned by root. *len set; owned. */
static char *layer_tar(size_t *len)
{
    static char buf[16384];
    size_t used = 0;
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    archive_write_open_memory(a, buf, sizeof(buf), &used);
    const char *text = "hello\n";
    const char *names[] = {"data", "etc", "etc/hello"};
    for (size_t i = 0; i < BH_ARRAY_LEN(names); i++) {
        int file = i == 2;
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, names[i]);
        archive_entry_set_filetype(e, file ? AE_IFREG : AE_IFDIR);
        archive_entry_set_perm(e, file ? 0644 : 0755);
        archive_entry_set_size(e, file ? (la_int64_t)strlen(text) : 0);
        assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
        if (file)
            archive_write_data(a, text, strlen(text));
        archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
    *len = used;
    char *out = bh_xmalloc(used);
    memcpy(out, buf, used);
    return out;
}

static cJSON *descriptor(const char *media, const char *hex, size_t size)
{
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "mediaType", media);
    bh_autofree char *digest = bh_xasprintf("sha256:%s", hex);
    cJSON_AddStringToObject(d, "digest", digest);
    cJSON_AddNumberToObject(d, "size", (double)size);
    return d;
}

static void put_json(const char *layout, cJSON *j, char hex[65], size_t *len)
{
    bh_autofree char *text = cJSON_PrintUnformatted(j);
    *len = strlen(text);
    blob_put(layout, text, *len, hex);
    cJSON_Delete(j);
}

static void make_layout(const char *layout)
{
    struct bh_err err;
    bh_autofree char *blobs = bh_xasprintf("%s/blobs/sha256", layout);
    assert_int_equal(bh_fs_mkdirp(blobs, 0755, &err), 0);
    char layer_hex[65], config_hex[65], manifest_hex[65];
    size_t layer_len, config_len, manifest_len;
    bh_autofree char *tar = layer_tar(&layer_len);
    blob_put(layout, tar, layer_len, layer_hex);
    bh_autofree char *config_text = bh_xasprintf(
        "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Cmd\":[\"/bin/app\"]},"
        "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:%s\"]}}",
        layer_hex);
    put_json(layout, cJSON_Parse(config_text), config_hex, &config_len);
    cJSON *m = cJSON_CreateObject();
    cJSON_AddNumberToObject(m, "schemaVersion", 2);
    cJSON_AddStringToObject(m, "mediaType", "application/vnd.oci.image.manifest.v1+json");
    cJSON_AddItemToObject(
        m, "config",
        descriptor("application/vnd.oci.image.config.v1+json", config_hex, config_len));
    cJSON *layers = cJSON_AddArrayToObject(m, "layers");
    cJSON_AddItemToArray(
        layers, descriptor("application/vnd.oci.image.layer.v1.tar", layer_hex, layer_len));
    put_json(layout, m, manifest_hex, &manifest_len);
    cJSON *index = cJSON_CreateObject();
    cJSON_AddNumberToObject(index, "schemaVersion", 2);
    cJSON *d = descriptor("application/vnd.oci.image.manifest.v1+json", manifest_hex, manifest_len);
    cJSON_AddItemToObject(d, "annotations",
                          cJSON_Parse("{\"org.opencontainers.image.ref.name\":\"1\"}"));
    cJSON_AddItemToArray(cJSON_AddArrayToObject(index, "manifests"), d);
    bh_autofree char *text = cJSON_PrintUnformatted(index);
    cJSON_Delete(index);
    bh_autofree char *ipath = bh_xasprintf("%s/index.json", layout);
    bh_autofree char *lpath = bh_xasprintf("%s/oci-layout", layout);
    const char *ver = "{\"imageLayoutVersion\":\"1.0.0\"}";
    assert_int_equal(bh_fs_write_atomic(ipath, text, strlen(text), 0644, &err), 0);
    assert_int_equal(bh_fs_write_atomic(lpath, ver, strlen(ver), 0644, &err), 0);
}

/* ---- the context: what bh_daemon_open builds, with the fakes ---- */

/* A plugin dir of links: the fake network plugin and the real local storage plugin. */
static void load_plugins(struct bh_ctx *ctx)
{
    struct bh_err err;
    bh_autofree char *dir = bh_xasprintf("%s/plugins", g_dir);
    assert_int_equal(bh_fs_mkdirp(dir, 0755, &err), 0);
    const char *links[][2] = {{BH_FAKE_PLUGIN_DIR "/bh-network-none.so", "bh-network-none.so"},
                              {BH_PLUGIN_DIR "/bh-storage-local.so", "bh-storage-local.so"}};
    for (size_t i = 0; i < BH_ARRAY_LEN(links); i++) {
        bh_autofree char *to = bh_xasprintf("%s/%s", dir, links[i][1]);
        assert_int_equal(symlink(links[i][0], to), 0);
    }
    const struct bh_plugin_env env = {.state_dir = g_dir};
    assert_int_equal(bh_plugins_load_dir(&env, dir, NULL, &ctx->plugins, &err), 0);
    assert_non_null(bh_plugins_find(ctx->plugins, BH_PLUGIN_NETWORK, "none"));
    assert_non_null(bh_plugins_find(ctx->plugins, BH_PLUGIN_STORAGE, "local"));
}

static void open_parts(struct bh_ctx *ctx)
{
    struct bh_err err;
    bh_autofree char *db = bh_xasprintf("%s/store.db", g_dir);
    bh_autofree char *images = bh_xasprintf("%s/images", g_dir);
    bh_autofree char *tmp = bh_xasprintf("%s/tmp", g_dir);
    bh_autofree char *layout = bh_xasprintf("%s/layout", g_dir);
    assert_int_equal(bh_fs_mkdirp(tmp, 0700, &err), 0);
    assert_int_equal(bh_store_open(db, &ctx->store, &err), 0);
    assert_int_equal(bh_image_store_open(images, ctx->cfg.uid_base, NULL, &ctx->images, &err), 0);
    make_layout(layout);
    if (bh_image_import(ctx->images, layout, "test/app:1", &g_image_ref, &err) < 0)
        fail_msg("import: %s", err.msg);
    ctx->runtime = fake_rt_new();
    load_plugins(ctx);
}

/* The context as the daemon has it at startup, before the reconciler runs: recovery first. */
static int setup_stopped(void **state)
{
    const char *tmp = getenv("TMPDIR");
    g_dir = bh_xasprintf("%s/bh-ctl-XXXXXX", tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(g_dir));
    struct bh_ctx *ctx = bh_xcalloc(1, sizeof(*ctx));
    ctx->cfg.state_dir = bh_xstrdup(g_dir);
    ctx->cfg.claim_timeout_ms = WAIT_MS;
    ctx->cfg.log_cap = 1 << 20;
    ctx->cfg.uid_base = (uint32_t)getuid(); /* container root = us: no chown needs privilege */
    ctx->cfg.storage = bh_xstrdup("local");
    ctx->cfg.snapshot_compression = bh_xstrdup("zstd");
    pthread_mutex_init(&ctx->claim_lock, NULL);
    pthread_cond_init(&ctx->claim_cond, NULL);
    pthread_mutex_init(&ctx->boot_lock, NULL);
    pthread_cond_init(&ctx->boot_cond, NULL);
    bh_admit_locks_init(ctx);
    ctx->claim_index = bh_claim_index_new();
    ctx->idle = bh_idle_new();
    ctx->boots = bh_boots_new(0);
    open_parts(ctx);
    g_ctx = ctx;
    return 0;
}

static int setup(void **state)
{
    setup_stopped(state);
    g_ctx->queue = bh_queue_new(4, bh_dispatch_reconcile, g_ctx);
    bh_store_subscribe(g_ctx->store, bh_dispatch_event, g_ctx);
    return 0;
}

static int teardown(void **state)
{
    struct bh_ctx *ctx = g_ctx;
    struct bh_err err;
    if (ctx->queue)
        bh_queue_stop(ctx->queue);
    pthread_mutex_lock(&ctx->boot_lock);
    while (ctx->boots_running > 0)
        pthread_cond_wait(&ctx->boot_cond, &ctx->boot_lock);
    pthread_mutex_unlock(&ctx->boot_lock);
    if (ctx->queue)
        bh_queue_free(ctx->queue);
    bh_claim_index_free(ctx->claim_index);
    bh_idle_free(ctx->idle);
    bh_boots_free(ctx->boots);
    bh_plugins_free(ctx->plugins);
    bh_lua_policies_close(ctx->policies);
    bh_runtime_close(ctx->runtime);
    bh_image_store_close(ctx->images);
    bh_store_close(ctx->store);
    free(ctx->cfg.state_dir);
    free(ctx->cfg.storage);
    free(ctx->cfg.snapshot_compression);
    free(ctx);
    BH_IGNORE(bh_fs_rmtree(g_dir, &err)); /* teardown: best effort */
    free(g_dir);
    free(g_image_ref);
    return 0;
}

/* ---- records ---- */

/* Creates (or replaces the spec of) a Ready workload; spec_json is its spec. */
static void put_workload(const char *name, const char *spec_json)
{
    struct bh_err err;
    cJSON *old = NULL, *saved = NULL;
    cJSON *wl = bh_resource_new("BoilerhouseWorkload", name);
    cJSON_AddItemToObject(wl, "spec", cJSON_Parse(spec_json));
    int rc = bh_store_get(g_ctx->store, "BoilerhouseWorkload", name, &old, &err) == 0
                 ? bh_store_update(g_ctx->store, wl, &saved, &err)
                 : bh_store_create(g_ctx->store, wl, &saved, &err);
    if (rc < 0)
        fail_msg("workload %s: %s", name, err.msg);
    cJSON *status = bh_json_obj(saved, "status");
    bh_json_set_str(status, "phase", "Ready");
    bh_json_set_str(status, "imageRef", g_image_ref);
    bh_json_set_num(status, "observedGeneration",
                    (double)bh_json_int(saved, "metadata.generation", 0));
    cJSON_DeleteItemFromObjectCaseSensitive(bh_json_obj(saved, "metadata"), "resourceVersion");
    assert_int_equal(bh_store_update_status(g_ctx->store, saved, NULL, &err), 0);
    cJSON_Delete(wl);
    cJSON_Delete(old);
    cJSON_Delete(saved);
}

static void put_pool(const char *name, const char *workload, int size)
{
    struct bh_err err;
    cJSON *p = bh_resource_new("BoilerhousePool", name);
    cJSON *spec = cJSON_AddObjectToObject(p, "spec");
    cJSON_AddStringToObject(spec, "workloadRef", workload);
    cJSON_AddNumberToObject(spec, "size", size);
    if (bh_store_create(g_ctx->store, p, NULL, &err) < 0)
        fail_msg("pool %s: %s", name, err.msg);
    cJSON_Delete(p);
}

static cJSON *get(const char *kind, const char *name)
{
    cJSON *obj = NULL;
    struct bh_err err;
    return bh_store_get(g_ctx->store, kind, name, &obj, &err) == 0 ? obj : NULL;
}

static int exists(const char *kind, const char *name)
{
    cJSON *obj = get(kind, name);
    cJSON_Delete(obj);
    return obj != NULL;
}

static int count(const char *kind, const char *selector)
{
    cJSON *list = NULL;
    struct bh_err err;
    assert_int_equal(bh_store_list(g_ctx->store, kind, selector, &list, NULL, &err), 0);
    int n = cJSON_GetArraySize(list);
    cJSON_Delete(list);
    return n;
}

/* Polls cond until it holds or WAIT_MS passes; the poll gap is short, the deadline long. */
#define WAIT_FOR(cond)                                                                             \
    do {                                                                                           \
        long long deadline_ = bh_clock_ms() + WAIT_MS;                                             \
        while (!(cond) && bh_clock_ms() < deadline_)                                               \
            usleep(5000);                                                                          \
        if (!(cond))                                                                               \
            fail_msg("timed out waiting for %s", #cond);                                           \
    } while (0)

/* Opens TENANT's claim on workload; asserts Active from source. Returns the instance id
 * (owned). */
static char *claim_active(const char *workload, const char *source)
{
    struct bh_claim_req req = {.tenant = TENANT, .workload = workload};
    struct bh_claim_answer ans;
    struct bh_err err;
    if (bh_claim_open(g_ctx, &req, &ans, &err) < 0)
        fail_msg("claim: %s", err.msg);
    assert_false(ans.timed_out);
    const char *phase = bh_json_str(ans.claim, "status.phase");
    if (strcmp(phase, BH_CLAIM_ACTIVE) != 0)
        fail_msg("claim is %s: %s", phase, bh_json_str(ans.claim, "status.detail"));
    assert_string_equal(bh_json_str(ans.claim, "status.source"), source);
    char *id = bh_xstrdup(bh_json_str(ans.claim, "status.instanceId"));
    bh_claim_answer_free(&ans);
    return id;
}

static void release(const char *workload, enum bh_claim_release_mode mode, const char *want_phase)
{
    struct bh_claim_answer ans;
    struct bh_err err;
    if (bh_claim_release(g_ctx, TENANT, workload, mode, &ans, &err) < 0)
        fail_msg("release: %s", err.msg);
    assert_false(ans.timed_out);
    if (want_phase)
        assert_string_equal(bh_json_str(ans.claim, "status.phase"), want_phase);
    else
        assert_null(ans.claim);
    bh_claim_answer_free(&ans);
}

/* A retry after ReleaseFailed; the queue's own backoff retry may have finished it first. */
static void retry_release(const char *workload)
{
    struct bh_claim_answer ans;
    struct bh_err err;
    if (bh_claim_release(g_ctx, TENANT, workload, BH_CLAIM_RELEASE_RETRY, &ans, &err) < 0 &&
        err.code != BH_ENOTFOUND)
        fail_msg("retry: %s", err.msg);
    assert_null(ans.claim);
    bh_autofree char *name = bh_name_claim(TENANT, workload);
    assert_false(exists("BoilerhouseClaim", name));
}

static int container_status_is(const char *id, const char *status)
{
    bh_autofree char *cid = bh_runtime_container_id(id);
    const char *st = fake_rt_status(g_ctx->runtime, cid);
    return status ? st && strcmp(st, status) == 0 : st == NULL;
}

/* Writes a tenant file into the instance's rootfs (the fake's rootfs is a plain dir). */
static void write_data(const char *id, const char *text)
{
    bh_autofree char *rootfs = bh_instance_rootfs(g_ctx, id);
    bh_autofree char *path = bh_xasprintf("%s/data/note", rootfs);
    bh_autofree char *dir = bh_xasprintf("%s/data", rootfs);
    struct bh_err err;
    assert_int_equal(bh_fs_mkdirp(dir, 0755, &err), 0);
    assert_int_equal(bh_fs_write_atomic(path, text, strlen(text), 0644, &err), 0);
}

static void assert_data(const char *id, const char *text)
{
    bh_autofree char *rootfs = bh_instance_rootfs(g_ctx, id);
    bh_autofree char *path = bh_xasprintf("%s/data/note", rootfs);
    bh_autofree char *data = NULL;
    size_t len = 0;
    struct bh_err err;
    if (bh_fs_read_all(path, 1024, &data, &len, &err) < 0)
        fail_msg("%s", err.msg);
    assert_string_equal(data, text);
}

static int snapshot_exists(const char *workload)
{
    bh_autofree char *name = bh_name_pair(TENANT, workload);
    return exists("Snapshot", name);
}

#define WL_DATA "{\"image\":{\"ref\":\"test/app:1\"},\"filesystem\":{\"overlayDirs\":[\"/data\"]}}"
#define WL_PLAIN "{\"image\":{\"ref\":\"test/app:1\"}}"

/* ---- claim sources ---- */

static void test_claim_cold_then_existing(void **state)
{
    put_workload("cold", WL_PLAIN);
    bh_autofree char *id = claim_active("cold", "cold");
    assert_true(container_status_is(id, "running"));
    /* An ended claim whose instance still runs gets that instance back. */
    bh_autofree char *name = bh_name_claim(TENANT, "cold");
    cJSON *c = get("BoilerhouseClaim", name);
    bh_json_set_str(bh_json_obj(c, "status"), "phase", BH_CLAIM_ERROR);
    struct bh_err err;
    assert_int_equal(bh_store_update_status(g_ctx->store, c, NULL, &err), 0);
    cJSON_Delete(c);
    bh_autofree char *again = claim_active("cold", "existing");
    assert_string_equal(again, id);
    release("cold", BH_CLAIM_RELEASE_NORMAL, NULL);
    assert_true(container_status_is(id, NULL));
    assert_false(exists("Instance", id));
}

static void test_claim_pool_sources(void **state)
{
    put_workload("pooled", WL_DATA);
    put_pool("pooled", "pooled", 1);
    WAIT_FOR(count("Instance", "boilerhouse.dev/pool-status=ready") == 1);
    bh_autofree char *id = claim_active("pooled", "pool");
    write_data(id, "from the pool instance");
    release("pooled", BH_CLAIM_RELEASE_NORMAL, NULL); /* saves a snapshot */
    assert_true(snapshot_exists("pooled"));
    assert_false(exists("Instance", id));
    WAIT_FOR(count("Instance", "boilerhouse.dev/pool-status=ready") == 1);
    bh_autofree char *id2 = claim_active("pooled", "pool+data");
    assert_data(id2, "from the pool instance");
    release("pooled", BH_CLAIM_RELEASE_FORCE, NULL);
    assert_false(exists("Instance", id2));
}

static void test_claim_cold_data_and_release_paths(void **state)
{
    put_workload("data", WL_DATA);
    bh_autofree char *id = claim_active("data", "cold");
    write_data(id, "v1");
    /* The save freezes the instance first: a failed freeze fails the release, which keeps
     * the instance running and the claim (the queue retries it with backoff) until a save
     * works. */
    fake_rt_fail(g_ctx->runtime, FAKE_RT_PAUSE, 1000);
    release("data", BH_CLAIM_RELEASE_NORMAL, BH_CLAIM_RELEASE_FAILED);
    assert_true(container_status_is(id, "running"));
    assert_false(snapshot_exists("data"));
    fake_rt_fail(g_ctx->runtime, FAKE_RT_PAUSE, 0);
    retry_release("data");
    assert_true(snapshot_exists("data"));
    assert_true(container_status_is(id, NULL));
    bh_autofree char *id2 = claim_active("data", "cold+data");
    assert_data(id2, "v1");
    /* Force destroys without saving: the snapshot keeps v1. */
    write_data(id2, "v2");
    int pauses = fake_rt_calls(g_ctx->runtime, FAKE_RT_PAUSE);
    release("data", BH_CLAIM_RELEASE_FORCE, NULL);
    assert_int_equal(fake_rt_calls(g_ctx->runtime, FAKE_RT_PAUSE), pauses);
    assert_true(container_status_is(id2, NULL));
    bh_autofree char *id3 = claim_active("data", "cold+data");
    assert_data(id3, "v1");
    release("data", BH_CLAIM_RELEASE_FORCE, NULL);
}

/* ---- pools ---- */

static int pool_ready_at(const char *workload, long long gen)
{
    bh_autofree char *sel =
        bh_xasprintf("boilerhouse.dev/workload=%s,boilerhouse.dev/pool-status=ready", workload);
    cJSON *list = NULL, *m;
    struct bh_err err;
    assert_int_equal(bh_store_list(g_ctx->store, "Instance", sel, &list, NULL, &err), 0);
    int n = 0;
    cJSON_ArrayForEach(m, list)
        n += bh_json_int(m, "spec.workloadGeneration", -1) == gen;
    cJSON_Delete(list);
    return n;
}

static void test_pool_drains_stale_generation(void **state)
{
    put_workload("gen", WL_PLAIN);
    put_pool("gen", "gen", 1);
    WAIT_FOR(pool_ready_at("gen", 1) == 1);
    put_workload("gen", "{\"image\":{\"ref\":\"test/app:1\"},\"resources\":{\"vcpus\":2}}");
    cJSON *wl = get("BoilerhouseWorkload", "gen");
    long long gen = bh_json_int(wl, "metadata.generation", 0);
    cJSON_Delete(wl);
    assert_true(gen > 1);
    /* The pool is resynced on workload changes; the old instance goes, a new one comes. */
    WAIT_FOR(pool_ready_at("gen", 1) == 0 && pool_ready_at("gen", gen) == 1);
    WAIT_FOR(count("Instance", "boilerhouse.dev/workload=gen") == 1);
    assert_int_equal(fake_rt_count(g_ctx->runtime), count("Instance", NULL));
}

/* A ready pool member of workload "race" built from generation gen, running in the fake. */
static void put_member(const char *id, long long gen)
{
    cJSON *inst = bh_resource_new("Instance", id);
    cJSON *labels = bh_json_obj(inst, "metadata.labels");
    cJSON_AddStringToObject(labels, "boilerhouse.dev/workload", "race");
    cJSON_AddStringToObject(labels, "boilerhouse.dev/pool", "race");
    cJSON_AddStringToObject(labels, "boilerhouse.dev/pool-status", "ready");
    cJSON *spec = cJSON_Parse("{\"workload\":\"race\",\"network\":\"none\"}");
    cJSON_AddNumberToObject(spec, "workloadGeneration", (double)gen);
    cJSON_AddItemToObject(inst, "spec", spec);
    cJSON_AddItemToObject(inst, "status", cJSON_Parse("{\"phase\":\"Running\",\"pid\":1}"));
    struct bh_err err;
    if (bh_store_create(g_ctx->store, inst, NULL, &err) < 0)
        fail_msg("instance %s: %s", id, err.msg);
    cJSON_Delete(inst);
    bh_autofree char *cid = bh_runtime_container_id(id);
    fake_rt_add(g_ctx->runtime, cid);
}

#define RACE_TAKERS 8

struct race_taker {
    const cJSON *wl; /* the workload as this claim read it */
    char tenant[16];
    cJSON *got;
    int rc;
};

static void *race_take(void *arg)
{
    struct race_taker *t = arg;
    struct bh_err err;
    t->rc = bh_pool_acquire(g_ctx, t->wl, t->tenant, t->tenant, 0, &t->got, &err);
    return NULL;
}

/* Claims that read the workload before its change and take after it, racing claims that read
 * it after: whatever the interleaving, no stale member is handed out, no member twice, and
 * every current member is handed out once. (The pool controller is not running here, so the
 * stale members are still listed as ready when the takers come.) */
static void test_pool_never_hands_out_stale_generation(void **state)
{
    put_workload("race", WL_PLAIN);
    cJSON *old = get("BoilerhouseWorkload", "race");
    put_workload("race", "{\"image\":{\"ref\":\"test/app:1\"},\"resources\":{\"vcpus\":2}}");
    cJSON *now = get("BoilerhouseWorkload", "race");
    long long gen = bh_json_int(now, "metadata.generation", 0);
    assert_true(gen > bh_json_int(old, "metadata.generation", 0));
    const char *stale[] = {"aaaaaaaaaab1", "aaaaaaaaaab2", "aaaaaaaaaab3", "aaaaaaaaaab4"};
    const char *current[] = {"aaaaaaaaaac1", "aaaaaaaaaac2"};
    for (size_t i = 0; i < BH_ARRAY_LEN(stale); i++)
        put_member(stale[i], bh_json_int(old, "metadata.generation", 0));
    for (size_t i = 0; i < BH_ARRAY_LEN(current); i++)
        put_member(current[i], gen);
    struct race_taker t[RACE_TAKERS];
    pthread_t th[RACE_TAKERS];
    for (int i = 0; i < RACE_TAKERS; i++) {
        t[i] = (struct race_taker){.wl = i % 2 ? now : old};
        snprintf(t[i].tenant, sizeof(t[i].tenant), "taker%d", i);
        assert_int_equal(pthread_create(&th[i], NULL, race_take, &t[i]), 0);
    }
    int handed = 0;
    for (int i = 0; i < RACE_TAKERS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(t[i].rc, 0);
        if (!t[i].got)
            continue;
        handed++;
        assert_int_equal(bh_json_int(t[i].got, "spec.workloadGeneration", -1), gen);
        assert_string_equal(bh_json_str(t[i].got, "spec.tenantId"), t[i].tenant);
        /* The take kept the member's status and stamped its activity in the same write. */
        cJSON *stored = get("Instance", bh_json_str(t[i].got, "metadata.name"));
        assert_true(cJSON_Compare(stored, t[i].got, 1));
        assert_string_equal(bh_json_str(stored, "status.phase"), "Running");
        assert_non_null(bh_json_str(stored, "status.lastActivity"));
        cJSON_Delete(stored);
        for (int j = 0; j < i; j++)
            if (t[j].got)
                assert_string_not_equal(bh_json_str(t[j].got, "metadata.name"),
                                        bh_json_str(t[i].got, "metadata.name"));
    }
    assert_int_equal(handed, (int)BH_ARRAY_LEN(current));
    /* A stale member a taker took is destroyed, not left to anyone: none is held by a tenant. */
    for (size_t i = 0; i < BH_ARRAY_LEN(stale); i++) {
        cJSON *m = get("Instance", stale[i]);
        assert_true(!m || !bh_json_str(m, "spec.tenantId"));
        cJSON_Delete(m);
    }
    for (int i = 0; i < RACE_TAKERS; i++) {
        struct bh_err err;
        if (t[i].got)
            assert_int_equal(
                bh_instance_destroy(g_ctx, bh_json_str(t[i].got, "metadata.name"), &err), 0);
        cJSON_Delete(t[i].got);
    }
    cJSON_Delete(old);
    cJSON_Delete(now);
}

static long long pool_failures(const char *name)
{
    cJSON *p = get("BoilerhousePool", name);
    long long n = bh_json_int(p, "status.failures", 0);
    cJSON_Delete(p);
    return n;
}

static int pool_phase_is(const char *name, const char *phase)
{
    cJSON *p = get("BoilerhousePool", name);
    const char *ph = bh_json_str(p, "status.phase");
    int is = ph && strcmp(ph, phase) == 0;
    cJSON_Delete(p);
    return is;
}

static void test_pool_backoff_after_boot_failures(void **state)
{
    put_workload("flaky", WL_PLAIN);
    int creates = fake_rt_calls(g_ctx->runtime, FAKE_RT_CREATE);
    fake_rt_fail(g_ctx->runtime, FAKE_RT_CREATE, 2);
    put_pool("flaky", "flaky", 1);
    /* Both failures counted, and the pool Degraded while it backs off (2 s after the second). */
    WAIT_FOR(pool_failures("flaky") == 2 && pool_phase_is("flaky", "Degraded"));
    WAIT_FOR(pool_phase_is("flaky", "Healthy") && pool_failures("flaky") == 0);
    /* Two failed boots, then one that worked: no retry storm. A failure is counted before the
     * failed boot's record goes, so no reconcile in between boots again early. */
    int tries = fake_rt_calls(g_ctx->runtime, FAKE_RT_CREATE) - creates;
    assert_int_equal(tries, 3);
    assert_int_equal(count("Instance", "boilerhouse.dev/pool=flaky"), 1);
}

/* ---- idle ---- */

static int claim_phase_is_for(const char *tenant, const char *workload, const char *phase)
{
    bh_autofree char *name = bh_claim_name(g_ctx, tenant, workload);
    cJSON *c = get("BoilerhouseClaim", name);
    const char *ph = bh_json_str(c, "status.phase");
    int is = ph && strcmp(ph, phase) == 0;
    cJSON_Delete(c);
    return is;
}

static int claim_phase_is(const char *workload, const char *phase)
{
    return claim_phase_is_for(TENANT, workload, phase);
}

#define WL_IDLE(action)                                                                            \
    "{\"image\":{\"ref\":\"test/app:1\"},\"filesystem\":{\"overlayDirs\":[\"/data\"]},"            \
    "\"idle\":{\"timeoutSeconds\":1,\"action\":\"" action "\"}}"

static void test_idle_hibernate_keeps_claim_released(void **state)
{
    put_workload("idle", WL_IDLE("hibernate"));
    bh_autofree char *id = claim_active("idle", "cold");
    write_data(id, "idle data");
    WAIT_FOR(claim_phase_is("idle", BH_CLAIM_RELEASED));
    assert_true(snapshot_exists("idle"));
    assert_true(container_status_is(id, NULL));
    bh_autofree char *id2 = claim_active("idle", "cold+data");
    assert_data(id2, "idle data");
    /* destroy: the instance goes and so does the snapshot; the claim stays Released. */
    put_workload("idle", WL_IDLE("destroy"));
    WAIT_FOR(claim_phase_is("idle", BH_CLAIM_RELEASED));
    assert_false(snapshot_exists("idle"));
    assert_true(container_status_is(id2, NULL));
    release("idle", BH_CLAIM_RELEASE_NORMAL, NULL);
}

/* ---- deleting a workload ---- */

/* Opens tenant's claim on workload and asserts it is Active; returns its instance (owned). */
static char *claim_active_for(const char *tenant, const char *workload)
{
    struct bh_claim_req req = {.tenant = tenant, .workload = workload};
    struct bh_claim_answer ans;
    struct bh_err err;
    if (bh_claim_open(g_ctx, &req, &ans, &err) < 0)
        fail_msg("claim: %s", err.msg);
    assert_string_equal(bh_json_str(ans.claim, "status.phase"), BH_CLAIM_ACTIVE);
    char *id = bh_xstrdup(bh_json_str(ans.claim, "status.instanceId"));
    bh_claim_answer_free(&ans);
    return id;
}

static int has_finalizer(const char *kind, const char *name)
{
    cJSON *o = get(kind, name);
    const cJSON *f = cJSON_GetArrayItem(bh_json_get(o, "metadata.finalizers"), 0);
    int has = cJSON_IsString(f) && strcmp(f->valuestring, BH_RESOURCE_FINALIZER) == 0;
    cJSON_Delete(o);
    return has;
}

/* The cascade: the workload stays (Terminating) until both live claims are released, saved
 * and kept Released, and its pool is drained; meanwhile it takes no new claim. */
static void test_workload_delete_cascade(void **state)
{
    put_workload("doomed", WL_DATA);
    put_pool("doomed-pool", "doomed", 1);
    WAIT_FOR(has_finalizer("BoilerhouseWorkload", "doomed")); /* the controller adds it */
    WAIT_FOR(count("Instance", "boilerhouse.dev/pool=doomed-pool,"
                               "boilerhouse.dev/pool-status=ready") == 1);
    bh_autofree char *a = claim_active_for("ann", "doomed");
    bh_autofree char *b = claim_active_for("ben", "doomed");
    write_data(a, "ann's");
    write_data(b, "ben's");
    struct bh_err err;
    assert_int_equal(bh_store_delete(g_ctx->store, "BoilerhouseWorkload", "doomed", &err), 0);
    struct bh_claim_req req = {.tenant = "cid", .workload = "doomed"};
    struct bh_claim_answer ans;
    assert_int_equal(bh_claim_open(g_ctx, &req, &ans, &err), -1);
    assert_int_equal(err.code, BH_ECONFLICT);
    assert_non_null(strstr(err.msg, "workload doomed is being deleted"));
    cJSON *left = NULL;
    assert_int_equal(bh_workload_wait_gone(g_ctx, "doomed", WAIT_MS, &left), 1);
    assert_null(left);
    /* Gone only after: both claims were saved and kept, and nothing of it runs. */
    const char *const tenants[] = {"ann", "ben"};
    for (size_t i = 0; i < BH_ARRAY_LEN(tenants); i++) {
        assert_true(claim_phase_is_for(tenants[i], "doomed", BH_CLAIM_RELEASED));
        bh_autofree char *snap = bh_name_pair(tenants[i], "doomed");
        assert_true(exists("Snapshot", snap));
    }
    assert_true(container_status_is(a, NULL));
    assert_true(container_status_is(b, NULL));
    assert_int_equal(count("Instance", "boilerhouse.dev/workload=doomed"), 0);
    assert_false(exists("BoilerhouseClaim", "claim-cid-doomed"));
}

/* ---- claim policies ---- */

/* A claim made straight in the store, as the Kubernetes-compatible API makes kubectl's. */
static void put_claim(const char *tenant, const char *workload)
{
    bh_autofree char *name = bh_name_pair(tenant, workload);
    cJSON *c = bh_resource_new("BoilerhouseClaim", name);
    cJSON *labels = bh_json_obj(c, "metadata.labels");
    bh_json_set_str(labels, "boilerhouse.dev/tenant", tenant);
    bh_json_set_str(labels, "boilerhouse.dev/workload", workload);
    cJSON *spec = bh_json_obj(c, "spec");
    bh_json_set_str(spec, "tenantId", tenant);
    bh_json_set_str(spec, "workloadRef", workload);
    struct bh_err err;
    assert_int_equal(bh_store_create(g_ctx->store, c, NULL, &err), 0);
    cJSON_Delete(c);
}

static void test_claim_policy(void **state)
{
    struct bh_err err;
    bh_autofree char *dir = bh_xasprintf("%s/policies", g_dir);
    const struct bh_lua_limits lim = BH_LUA_LIMITS_DEFAULT;
    assert_int_equal(bh_lua_policies_open(dir, g_ctx->store, &lim, &g_ctx->policies, &err), 0);
    bh_autofree char *path = bh_xasprintf("%s/p.lua", dir);
    const char *src = "function policy(e)\n"
                      "  if e.tenantId == 'bob' then return false, 'bob is banned' end\n"
                      "  return {idleTimeoutSeconds = 1, idleAction = 'destroy',\n"
                      "          labels = {tier = 'gold'}}\n"
                      "end\n";
    assert_int_equal(bh_fs_write_atomic(path, src, strlen(src), 0600, &err), 0);
    put_workload("pol", "{\"image\":{\"ref\":\"test/app:1\"},\"claimPolicy\":\"p.lua\","
                        "\"idle\":{\"timeoutSeconds\":300,\"action\":\"hibernate\"}}");
    /* kubectl's claim meets the policy in the controller: Error, the reason as detail. */
    put_claim("bob", "pol");
    WAIT_FOR(claim_phase_is_for("bob", "pol", BH_CLAIM_ERROR));
    bh_autofree char *bob = bh_name_pair("bob", "pol");
    cJSON *c = get("BoilerhouseClaim", bob);
    assert_string_equal(bh_json_str(c, "status.detail"), "bob is banned");
    assert_string_equal(bh_json_str(c, "status.reason"), "PolicyDenied");
    cJSON_Delete(c);
    assert_int_equal(count("Instance", "boilerhouse.dev/tenant=bob"), 0);
    /* The front door's claim: admitted with overrides, which the controller applies: the
     * policy's 1 s idle timeout (not the workload's 300) releases it, destroying. */
    bh_autofree char *id = claim_active("pol", "cold");
    bh_autofree char *mine = bh_name_claim(TENANT, "pol");
    c = get("BoilerhouseClaim", mine);
    assert_string_equal(bh_json_label(c, "tier"), "gold");
    assert_string_equal(bh_json_str(c, "status.policy.script"), "p.lua");
    cJSON_Delete(c);
    WAIT_FOR(claim_phase_is("pol", BH_CLAIM_RELEASED));
    assert_false(snapshot_exists("pol"));
    assert_true(container_status_is(id, NULL));
}

/* ---- restart recovery ---- */

static void put_instance(const char *id, int restoring)
{
    cJSON *inst = bh_resource_new("Instance", id);
    cJSON *labels = bh_json_obj(inst, "metadata.labels");
    cJSON_AddStringToObject(labels, "boilerhouse.dev/workload", "rec");
    if (restoring)
        cJSON_AddStringToObject(labels, BH_LABEL_RESTORING, "true");
    cJSON_AddItemToObject(inst, "spec", cJSON_Parse("{\"workload\":\"rec\",\"network\":\"none\"}"));
    cJSON_AddItemToObject(inst, "status", cJSON_Parse("{\"phase\":\"Running\",\"pid\":1}"));
    struct bh_err err;
    if (bh_store_create(g_ctx->store, inst, NULL, &err) < 0)
        fail_msg("instance %s: %s", id, err.msg);
    cJSON_Delete(inst);
}

/* An Active claim of (tenant, "rec") recorded as holding instance id. */
static void put_active_claim(const char *tenant, const char *id)
{
    bh_autofree char *name = bh_name_claim(tenant, "rec");
    cJSON *c = bh_resource_new("BoilerhouseClaim", name);
    cJSON *spec = cJSON_AddObjectToObject(c, "spec");
    cJSON_AddStringToObject(spec, "tenantId", tenant);
    cJSON_AddStringToObject(spec, "workloadRef", "rec");
    cJSON *status = cJSON_AddObjectToObject(c, "status");
    cJSON_AddStringToObject(status, "phase", BH_CLAIM_ACTIVE);
    cJSON_AddStringToObject(status, "instanceId", id);
    struct bh_err err;
    if (bh_store_create(g_ctx->store, c, NULL, &err) < 0)
        fail_msg("claim of %s: %s", tenant, err.msg);
    cJSON_Delete(c);
}

/* ---- admission control ---- */

/* The health command answers "not ready" until the gate opens: a boot stays in flight. */
static int g_gate_open;

static int gated_exec(void *ud, const char *id, char *const *argv, struct bh_proc_result *res,
                      struct bh_err *err)
{
    memset(res, 0, sizeof(*res));
    res->out = bh_xstrdup("");
    res->errout = bh_xstrdup("");
    res->exit_code = __atomic_load_n(&g_gate_open, __ATOMIC_SEQ_CST) ? 0 : 1;
    return 0;
}

/* bh_claim_open for tenant; the claim as answered (owned). */
static cJSON *open_claim(const char *tenant, const char *workload)
{
    struct bh_claim_req req = {.tenant = tenant, .workload = workload};
    struct bh_claim_answer ans;
    struct bh_err err;
    if (bh_claim_open(g_ctx, &req, &ans, &err) < 0)
        fail_msg("claim %s/%s: %s", tenant, workload, err.msg);
    assert_false(ans.timed_out);
    return ans.claim;
}

static void assert_refused(const cJSON *claim, const char *reason, const char *detail_part)
{
    assert_string_equal(bh_json_str(claim, "status.phase"), BH_CLAIM_ERROR);
    assert_string_equal(bh_json_str(claim, "status.reason"), reason);
    assert_true(bh_json_int(claim, "status.retryAfterSeconds", 0) >= 1);
    if (!strstr(bh_json_str(claim, "status.detail"), detail_part))
        fail_msg("detail \"%s\" does not say \"%s\"", bh_json_str(claim, "status.detail"),
                 detail_part);
    assert_null(bh_json_str(claim, "status.instanceId"));
}

static void force_release(const char *tenant, const char *workload)
{
    struct bh_claim_answer ans;
    struct bh_err err;
    if (bh_claim_release(g_ctx, tenant, workload, BH_CLAIM_RELEASE_FORCE, &ans, &err) < 0)
        fail_msg("release %s/%s: %s", tenant, workload, err.msg);
    assert_null(ans.claim);
}

#define WL_GATED                                                                                   \
    "{\"image\":{\"ref\":\"test/app:1\"},\"health\":{\"exec\":{\"command\":[\"ready\"]}}}"

/* One boot slot: a second claim that needs a boot while the first boots is refused at once,
 * with nothing made for it; the first completes; a retry then succeeds. An existing claim
 * needs no slot. */
static void test_admission_bounds_boots(void **state)
{
    bh_boots_free(g_ctx->boots);
    g_ctx->boots = bh_boots_new(1);
    __atomic_store_n(&g_gate_open, 0, __ATOMIC_SEQ_CST);
    fake_rt_set_exec(g_ctx->runtime, gated_exec, NULL);
    put_workload("gated", WL_GATED);
    struct bh_claim_req first = {.tenant = "ann", .workload = "gated"};
    cJSON *c = NULL;
    struct bh_err err;
    assert_int_equal(bh_claim_ensure(g_ctx, &first, &c, &err), 0);
    cJSON_Delete(c);
    WAIT_FOR(fake_rt_calls(g_ctx->runtime, FAKE_RT_EXEC) > 0); /* ann's boot holds the slot */

    cJSON *refused = open_claim("bob", "gated");
    assert_refused(refused, BH_CLAIM_REASON_OVERLOADED, "booting or restoring");
    cJSON_Delete(refused);
    assert_int_equal(count("Instance", "boilerhouse.dev/tenant=bob"), 0);
    assert_int_equal(fake_rt_count(g_ctx->runtime), 1);
    assert_true(claim_phase_is_for("ann", "gated", BH_CLAIM_PENDING)); /* still booting */

    __atomic_store_n(&g_gate_open, 1, __ATOMIC_SEQ_CST);
    WAIT_FOR(claim_phase_is_for("ann", "gated", BH_CLAIM_ACTIVE)); /* admitted: it completes */
    cJSON *again = open_claim("bob", "gated");
    assert_string_equal(bh_json_str(again, "status.phase"), BH_CLAIM_ACTIVE);
    assert_string_equal(bh_json_str(again, "status.source"), "cold");
    assert_null(bh_json_str(again, "status.reason"));
    cJSON_Delete(again);
    /* Ann claiming again is answered by her instance: no slot needed, none taken. */
    int retry_s, busy;
    assert_true(bh_boots_take(g_ctx->boots, &retry_s, &busy)); /* hold the only slot */
    cJSON *existing = open_claim("ann", "gated");
    assert_string_equal(bh_json_str(existing, "status.phase"), BH_CLAIM_ACTIVE);
    cJSON_Delete(existing);
    bh_boots_give(g_ctx->boots, -1);
    force_release("ann", "gated");
    force_release("bob", "gated");
    assert_int_equal(fake_rt_count(g_ctx->runtime), 0);
    fake_rt_set_exec(g_ctx->runtime, NULL, NULL);
}

/* A tenant at its instance limit is refused, whichever door made the claim (a claim object
 * created in the store, as kubectl's is, goes the same way); other tenants are not; after a
 * release the tenant's retry succeeds. */
static void test_admission_tenant_limit(void **state)
{
    g_ctx->cfg.max_tenant_instances = 2;
    put_workload("w1", WL_PLAIN);
    put_workload("w2", WL_PLAIN);
    put_workload("w3", WL_PLAIN);
    bh_autofree char *id1 = claim_active("w1", "cold");
    bh_autofree char *id2 = claim_active("w2", "cold");
    cJSON *refused = open_claim(TENANT, "w3");
    assert_refused(refused, BH_CLAIM_REASON_TENANT_LIMIT, "the limit per tenant is 2");
    cJSON_Delete(refused);
    assert_int_equal(count("Instance", "boilerhouse.dev/tenant=" TENANT), 2);

    /* The same through the store (the Kubernetes-compatible API's way in). */
    cJSON *obj = bh_resource_new("BoilerhouseClaim", "kubectl-made");
    cJSON *spec = cJSON_AddObjectToObject(obj, "spec");
    cJSON_AddStringToObject(spec, "tenantId", TENANT);
    cJSON_AddStringToObject(spec, "workloadRef", "w4");
    put_workload("w4", WL_PLAIN);
    struct bh_err err;
    assert_int_equal(bh_claim_admit(g_ctx, obj, &err), 0);
    assert_int_equal(bh_store_create(g_ctx->store, obj, NULL, &err), 0);
    cJSON_Delete(obj);
    cJSON *k = NULL;
    WAIT_FOR((cJSON_Delete(k), k = get("BoilerhouseClaim", "kubectl-made")) &&
             bh_json_str(k, "status.phase") &&
             strcmp(bh_json_str(k, "status.phase"), BH_CLAIM_ERROR) == 0);
    assert_refused(k, BH_CLAIM_REASON_TENANT_LIMIT, "the limit per tenant is 2");
    cJSON_Delete(k);
    assert_int_equal(count("Instance", "boilerhouse.dev/tenant=" TENANT), 2);

    cJSON *other = open_claim("carol", "w3"); /* another tenant is not limited by alice */
    assert_string_equal(bh_json_str(other, "status.phase"), BH_CLAIM_ACTIVE);
    cJSON_Delete(other);
    release("w1", BH_CLAIM_RELEASE_FORCE, NULL);
    bh_autofree char *id3 = claim_active("w3", "cold"); /* room again */
    release("w2", BH_CLAIM_RELEASE_FORCE, NULL);
    release("w3", BH_CLAIM_RELEASE_FORCE, NULL);
    force_release("carol", "w3");
    assert_int_equal(bh_store_delete(g_ctx->store, "BoilerhouseClaim", "kubectl-made", &err), 0);
    WAIT_FOR(!exists("BoilerhouseClaim", "kubectl-made"));
    assert_int_equal(fake_rt_count(g_ctx->runtime), 0);
    g_ctx->cfg.max_tenant_instances = 0;
}

static void test_recover_decisions(void **state)
{
    put_workload("rec", WL_PLAIN);
    struct bh_runtime *rt = g_ctx->runtime;
    const char *runs = "aaaaaaaaaaa1", *gone = "aaaaaaaaaaa2", *orphan = "aaaaaaaaaaa3",
               *restoring = "aaaaaaaaaaa4";
    put_instance(runs, 0);
    put_instance(gone, 0);
    put_instance(restoring, 1);
    bh_autofree char *c_runs = bh_runtime_container_id(runs);
    bh_autofree char *c_orphan = bh_runtime_container_id(orphan);
    bh_autofree char *c_restoring = bh_runtime_container_id(restoring);
    fake_rt_add(rt, c_runs);
    fake_rt_add(rt, c_orphan);
    fake_rt_add(rt, c_restoring);
    fake_rt_add(rt, "not-ours");
    put_active_claim("tenant-runs", runs);
    put_active_claim("tenant-gone", gone);
    struct bh_err err;
    if (bh_instance_recover(g_ctx, &err) < 0 || bh_claim_recover(g_ctx, &err) < 0)
        fail_msg("recover: %s", err.msg);
    assert_true(claim_phase_is_for("tenant-runs", "rec", BH_CLAIM_ACTIVE));
    assert_true(claim_phase_is_for("tenant-gone", "rec", BH_CLAIM_PENDING));
    assert_true(exists("Instance", runs));
    assert_true(container_status_is(runs, "running"));
    assert_false(exists("Instance", gone));
    assert_true(container_status_is(orphan, NULL));
    assert_false(exists("Instance", restoring));
    assert_true(container_status_is(restoring, NULL));
    assert_null(fake_rt_status(rt, "not-ours"));
    assert_int_equal(bh_instance_destroy(g_ctx, runs, &err), 0);
}

/* What a new leader adopts (adopt.h): records rebuilt from what the runtime says of its
 * instances; a standby's startup recovery touches no claim, the leader's does once it has
 * adopted; nothing is adopted twice. */
static void test_adopt_records(void **state)
{
    (void)state;
    put_workload("rec", WL_PLAIN);
    cJSON *wl = get("BoilerhouseWorkload", "rec");
    struct bh_runtime_found held = {.instance_id = "bbbbbbbbbbb1",
                                    .workload = "rec",
                                    .generation = 1,
                                    .tenant = "tenant-held",
                                    .claim = "c1",
                                    .pool = "p",
                                    .image_digest = "sha256:ab",
                                    .state = BH_RUNTIME_FOUND_READY,
                                    .endpoint = {.host = "10.96.0.9", .port = 8080}};
    struct bh_runtime_found warm = {.instance_id = "bbbbbbbbbbb2",
                                    .workload = "rec",
                                    .generation = 1,
                                    .pool = "p",
                                    .state = BH_RUNTIME_FOUND_READY};
    struct bh_err err;
    assert_int_equal(bh_instance_adopt(g_ctx, &held, wl, &err), 0);
    assert_int_equal(bh_instance_adopt(g_ctx, &warm, wl, &err), 0);
    cJSON *rec = get("Instance", held.instance_id);
    assert_string_equal(bh_json_str(rec, "status.phase"), "Running");
    assert_string_equal(bh_json_label(rec, "boilerhouse.dev/tenant"), "tenant-held");
    assert_null(bh_json_label(rec, "boilerhouse.dev/pool")); /* a tenant's: no member */
    assert_string_equal(bh_json_str(rec, "spec.claim"), "c1");
    assert_string_equal(bh_json_str(rec, "status.imageDigest"), "sha256:ab");
    assert_string_equal(bh_json_str(rec, "status.endpoint.host"), "10.96.0.9");
    assert_int_equal(bh_json_int(rec, "status.endpoint.port", 0), 8080);
    cJSON_Delete(rec);
    rec = get("Instance", warm.instance_id);
    assert_string_equal(bh_json_label(rec, "boilerhouse.dev/pool-status"), "ready");
    assert_string_equal(bh_json_label(rec, "boilerhouse.dev/pool"), "p");
    cJSON_Delete(rec);
    /* Nothing twice: a record of it exists. */
    assert_int_equal(bh_instance_adopt(g_ctx, &held, wl, &err), -1);
    assert_int_equal(err.code, BH_ECONFLICT);
    cJSON_Delete(wl);
    /* A claim whose instance is unknown: left alone by a standby, booted again by the
     * leader once it has adopted what runs. */
    put_active_claim("tenant-held", held.instance_id);
    put_active_claim("tenant-lost", "bbbbbbbbbbb3");
    g_ctx->standby = 1;
    if (bh_claim_recover(g_ctx, &err) < 0)
        fail_msg("recover: %s", err.msg);
    assert_true(claim_phase_is_for("tenant-lost", "rec", BH_CLAIM_ACTIVE));
    g_ctx->standby = 0;
    if (bh_claim_recover_lost(g_ctx, &err) < 0)
        fail_msg("recover: %s", err.msg);
    assert_true(claim_phase_is_for("tenant-held", "rec", BH_CLAIM_ACTIVE));
    assert_true(claim_phase_is_for("tenant-lost", "rec", BH_CLAIM_PENDING));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_claim_cold_then_existing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_pool_sources, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_cold_data_and_release_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_drains_stale_generation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_backoff_after_boot_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_never_hands_out_stale_generation, setup_stopped,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_idle_hibernate_keeps_claim_released, setup, teardown),
        cmocka_unit_test_setup_teardown(test_workload_delete_cascade, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_policy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admission_bounds_boots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admission_tenant_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recover_decisions, setup_stopped, teardown),
        cmocka_unit_test_setup_teardown(test_adopt_records, setup_stopped, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
