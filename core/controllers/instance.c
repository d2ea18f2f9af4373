/* Instances: one container for one workload (and, once claimed, one tenant).
 *
 * Every step that leaves something on the machine happens only after the Instance record
 * is durable in the store, so after a crash the record says what to clean up; and the
 * record is deleted only after everything it names is gone. */
#include "instance.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "crashpoint.h"
#include "crypto.h"
#include "ctx.h"
#include "fs.h"
#include "etc_files.h"
#include "health.h"
#include "hibernate.h"
#include "image.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "oci_config.h"
#include "plugin.h"
#include "proc.h"
#include "resource.h"
#include "runtime.h"
#include "store.h"

#define INSTANCE_KIND "Instance"
#define BH_CA_BUNDLE_PATH "/etc/ssl/certs/ca-certificates.crt"
#define BH_CA_OWN_PATH "/etc/boilerhouse/ca-bundle.crt"
#define INSTANCE_UID_SIZE 65536
#define INSTANCE_PROBE_GAP_MIN_MS 2
#define INSTANCE_PROBE_GAP_MAX_MS 100
/* A remote runtime is asked over the network (an API server): gently. */
#define INSTANCE_REMOTE_GAP_MIN_MS 50
#define INSTANCE_REMOTE_GAP_MAX_MS 1000

static char *instance_new_id(void)
{
    unsigned char raw[6];
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
        abort(); /* the kernel's RNG does not fail for 6 bytes; if it does, nothing is safe */
    char *id = bh_xmalloc(13);
    for (size_t i = 0; i < sizeof(raw); i++)
        sprintf(id + 2 * i, "%02x", raw[i]);
    return id;
}

/* Instances run elsewhere, from the workload object (runtime.h BH_RUNTIME_CAP_REMOTE): none
 * of the host's steps (layers, rootfs, disk, /etc files, network plugins) apply to them. */
static int instance_remote(const struct bh_ctx *ctx)
{
    return bh_runtime_has(ctx->runtime, BH_RUNTIME_CAP_REMOTE);
}

static char *instance_dir(struct bh_ctx *ctx, const char *id)
{
    return bh_xasprintf("%s/instances/%s", ctx->cfg.state_dir, id);
}

char *bh_instance_disk_path(struct bh_ctx *ctx, const char *id)
{
    return bh_xasprintf("%s/instances/%s/disk", ctx->cfg.state_dir, id);
}

char *bh_instance_log_path(struct bh_ctx *ctx, const char *id)
{
    return bh_xasprintf("%s/instances/%s/log", ctx->cfg.state_dir, id);
}

static const char *instance_network_mode(const cJSON *workload)
{
    const char *mode = bh_json_str(workload, "spec.network.access");
    return mode ? mode : "none";
}

static struct bh_plugin *instance_net_plugin(struct bh_ctx *ctx, const char *mode,
                                             struct bh_err *err)
{
    struct bh_plugin *p = bh_plugins_find(ctx->plugins, BH_PLUGIN_NETWORK, mode);
    if (!p)
        bh_err_set(err, BH_EUNAVAIL, "network mode %s: plugin bh-network-%s.so is not loaded", mode,
                   mode);
    return p;
}

/* Who an Instance record says the instance is; every pointer borrowed. */
struct instance_who {
    const char *workload;
    long long generation; /* the workload's metadata.generation it runs */
    const char *network;  /* spec.network.access */
    const char *tenant, *claim, *pool;
};

static cJSON *instance_record_of(const char *id, const struct instance_who *w)
{
    cJSON *obj = bh_resource_new(INSTANCE_KIND, id);
    cJSON *labels = bh_json_obj(obj, "metadata.labels");
    cJSON_AddStringToObject(labels, "boilerhouse.dev/managed", "true");
    cJSON_AddStringToObject(labels, "boilerhouse.dev/workload", w->workload);
    if (w->tenant)
        cJSON_AddStringToObject(labels, "boilerhouse.dev/tenant", w->tenant);
    if (w->pool) {
        cJSON_AddStringToObject(labels, "boilerhouse.dev/pool", w->pool);
        cJSON_AddStringToObject(labels, "boilerhouse.dev/pool-status", "warming");
    }
    cJSON *spec = cJSON_AddObjectToObject(obj, "spec");
    cJSON_AddStringToObject(spec, "workload", w->workload);
    cJSON_AddNumberToObject(spec, "workloadGeneration", (double)w->generation);
    cJSON_AddStringToObject(spec, "network", w->network);
    if (w->tenant)
        cJSON_AddStringToObject(spec, "tenantId", w->tenant);
    if (w->claim)
        cJSON_AddStringToObject(spec, "claim", w->claim);
    if (w->pool)
        cJSON_AddStringToObject(spec, "pool", w->pool);
    cJSON *status = cJSON_AddObjectToObject(obj, "status");
    cJSON_AddStringToObject(status, "phase", "Starting");
    return obj;
}

static cJSON *instance_record(const char *id, const struct bh_boot_req *req)
{
    const struct instance_who w = {
        .workload = bh_json_str(req->workload, "metadata.name"),
        .generation = bh_json_int(req->workload, "metadata.generation", 0),
        .network = instance_network_mode(req->workload),
        .tenant = req->tenant,
        .claim = req->claim,
        .pool = req->pool,
    };
    return instance_record_of(id, &w);
}

/* The state of a boot in progress; owns what it holds. */
struct boot {
    struct bh_ctx *ctx;
    const char *id;
    const struct bh_boot_req *req;
    const cJSON *workload;
    char *dir;
    char *cid;
    char *disk, *disk_image, *upper, *work, *rootfs, *log, *sock, *etc;
    char *api, *api_sock;        /* the per-claim token's dir and the daemon's instance socket */
    struct bh_runtime_spec spec; /* points into the above */
    struct bh_plugin *net;
    struct bh_net_result net_res;
    struct bh_image *image;
    char **args, **env;
    char *extra_env; /* NAME=value lines to add once env is resolved */
    char *cwd;
    char **keep; /* overlay dirs (borrowed strings) when the disk is a restored image */
    int pid;
    long long create_ms, net_ms; /* boot_container's first two steps, for the debug line */
};

static void boot_free(struct boot *b)
{
    free(b->dir);
    free(b->cid);
    free(b->disk);
    free(b->disk_image);
    free(b->upper);
    free(b->work);
    free(b->rootfs);
    free(b->log);
    free(b->sock);
    free(b->etc);
    free(b->api);
    free(b->api_sock);
    free(b->keep);
    if (b->image)
        bh_image_free(b->image);
    bh_strv_free(b->args);
    bh_strv_free(b->env);
    free(b->cwd);
    free(b->extra_env);
}

static struct bh_net_request boot_net_request(struct boot *b, const char *tenant, const char *netns,
                                              char *net_json)
{
    struct bh_net_request req = {
        .size = sizeof(req),
        .instance_id = b->id,
        .tenant_id = tenant,
        .workload = bh_json_str(b->workload, "metadata.name"),
        .network_json = net_json,
        .netns_path = netns,
        .pid = b->pid,
    };
    return req;
}

static int boot_dirs(struct boot *b, struct bh_err *err)
{
    if (bh_fs_mkdirp(b->dir, 0711, err) < 0 || bh_fs_mkdirp(b->rootfs, 0700, err) < 0 ||
        bh_fs_mkdirp(b->disk, 0700, err) < 0)
        return -1;
    /* etc holds files the container's root reads through bind mounts. */
    return bh_fs_mkdirp(b->etc, 0711, err);
}

static int boot_image(struct boot *b, struct bh_err *err)
{
    const char *ref = bh_json_str(b->workload, "status.imageRef");
    if (!ref)
        ref = bh_json_str(b->workload, "spec.image.ref");
    if (!ref)
        return bh_err_set(err, BH_EUNAVAIL, "workload has no resolved image yet");
    if (bh_image_resolve(b->ctx->images, ref, &b->image, err) < 0)
        return bh_err_wrap(err, "image %s", ref);
    return 0;
}

/* The instance's directory layout, as the runtime is told it. */
static void boot_init(struct boot *b, struct bh_ctx *ctx, const char *id)
{
    b->dir = instance_dir(ctx, id);
    b->cid = bh_runtime_container_id(id);
    b->disk = bh_instance_disk_path(ctx, id);
    b->disk_image = bh_xasprintf("%s/disk.img", b->dir);
    b->upper = bh_xasprintf("%s/upper", b->disk);
    b->work = bh_xasprintf("%s/work", b->disk);
    b->rootfs = bh_instance_rootfs(ctx, id);
    b->log = bh_instance_log_path(ctx, id);
    b->sock = bh_xasprintf("%s/sock", b->disk);
    b->etc = bh_xasprintf("%s/etc", b->dir);
    b->spec = (struct bh_runtime_spec){.id = b->cid,
                                       .bundle = b->dir,
                                       .disk = b->disk,
                                       .disk_image = b->disk_image,
                                       .upper = b->upper,
                                       .work = b->work,
                                       .rootfs = b->rootfs,
                                       .log_path = b->log,
                                       .hostname = b->cid,
                                       .uid_base = ctx->cfg.uid_base,
                                       .uid_size = INSTANCE_UID_SIZE};
}

/* The rootfs on a disk of diskGb; the socket dir is on that disk too, so that every file the
 * container can create outside tmpfs counts against it. */
static int boot_rootfs(struct boot *b, struct bh_err *err)
{
    uint32_t owner = b->ctx->cfg.uid_base;
    b->spec.layers = b->image->layer_dirs;
    b->spec.n_layers = b->image->n_layers;
    b->spec.disk_bytes = (uint64_t)bh_json_int(b->workload, "spec.resources.diskGb", 0) << 30;
    if (bh_runtime_rootfs_prepare(b->ctx->runtime, &b->spec, err) < 0 ||
        bh_fs_mkdirp(b->sock, 0700, err) < 0)
        return -1;
    /* The container's root (mapped to owner) serves its socket dir. */
    if (chown(b->sock, owner, owner) < 0)
        return bh_err_errno(err, BH_EIO, "chown %s", b->sock);
    return 0;
}

/* Appends the network plugin's "NAME=value\n" lines to the environment. */
static void boot_env_append(struct boot *b, const char *lines)
{
    size_t n = 0;
    while (b->env && b->env[n])
        n++;
    bh_autofree char *copy = bh_xstrdup(lines);
    char *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (!strchr(line, '='))
            continue;
        b->env = bh_xrealloc(b->env, (n + 2) * sizeof(char *));
        b->env[n++] = bh_xstrdup(line);
        b->env[n] = NULL;
    }
}

static void boot_env_append_pending(struct boot *b, const char *lines);

/* cold+data from an image snapshot: the tenant's disk is put in place (from the hot tier by
 * rename, or from storage) before the runtime mounts it; only its overlay dirs are kept. */
static int boot_disk(struct boot *b, struct bh_err *err)
{
    if (!b->req->snapshot)
        return 0;
    int rc = bh_hibernate_disk(b->ctx, b->workload, b->req->snapshot, b->disk_image, err);
    if (rc <= 0)
        return rc;
    const cJSON *dirs = bh_json_get(b->workload, "spec.filesystem.overlayDirs");
    int n = cJSON_GetArraySize(dirs);
    b->keep = bh_xcalloc((size_t)n + 1, sizeof(char *));
    for (int i = 0; i < n; i++)
        b->keep[i] = cJSON_GetArrayItem(dirs, i)->valuestring;
    b->spec.disk_reuse = 1;
    b->spec.disk_keep = b->keep;
    return 0;
}

/* cold+data: the tenant's files are in place before any of its processes start. */
static int boot_restore(struct boot *b, struct bh_err *err)
{
    if (!b->req->snapshot || b->spec.disk_reuse)
        return 0;
    bh_autofree char *rootfs = bh_instance_rootfs(b->ctx, b->id);
    return bh_hibernate_restore(b->ctx, b->workload, b->req->snapshot, rootfs, err);
}

/* The network plugin's CA (egress interception) is appended to the image's CA bundle and
 * written as a bundle of its own; the env points the common stacks at it. Paths inside the
 * rootfs are resolved by the kernel as if the rootfs were / (no symlink leads out). */
static int boot_trust_ca(struct boot *b, struct bh_err *err)
{
    static const char *const env_names[] = {"SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS",
                                            "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"};
    if (!BH_HAS_FIELD(&b->net_res, struct bh_net_result, ca_pem_path) || !b->net_res.ca_pem_path[0])
        return 0;
    bh_autofree char *pem = NULL;
    bh_autofree char *bundle = NULL;
    size_t pem_len = 0, bundle_len = 0;
    bh_autofree char *rootfs = bh_instance_rootfs(b->ctx, b->id);
    if (bh_fs_read_all(b->net_res.ca_pem_path, 1 << 20, &pem, &pem_len, err) < 0)
        return -1;
    if (bh_fs_read_in_root(rootfs, BH_CA_BUNDLE_PATH, 8 << 20, &bundle, &bundle_len, NULL) < 0)
        bundle = bh_xstrdup("");
    bh_autofree char *joined = bh_xasprintf("%s%s%s", bundle, bundle[0] ? "\n" : "", pem);
    if (bh_fs_write_in_root(rootfs, BH_CA_BUNDLE_PATH, joined, strlen(joined), 0644, err) < 0 ||
        bh_fs_write_in_root(rootfs, BH_CA_OWN_PATH, joined, strlen(joined), 0644, err) < 0)
        return bh_err_wrap(err, "install the egress CA");
    char lines[1024] = "";
    for (size_t i = 0; i < BH_ARRAY_LEN(env_names); i++)
        snprintf(lines + strlen(lines), sizeof(lines) - strlen(lines), "%s=%s\n", env_names[i],
                 BH_CA_OWN_PATH);
    boot_env_append_pending(b, lines);
    return 0;
}

static void boot_env_append_pending(struct boot *b, const char *lines)
{
    char *joined = bh_xasprintf("%s%s", b->extra_env ? b->extra_env : "", lines);
    free(b->extra_env);
    b->extra_env = joined;
}

/* The resolver the network plugin names, or NULL to keep the image's own resolv.conf (a
 * plugin built before the field existed). */
static const char *boot_nameservers(const struct boot *b)
{
    if (!BH_HAS_FIELD(&b->net_res, struct bh_net_result, nameservers) ||
        !(b->net_res.flags & BH_NET_RESOLVER))
        return NULL;
    return b->net_res.nameservers;
}

static struct bh_etc_params boot_etc_params(const struct boot *b)
{
    struct bh_etc_params p = {
        .hostname = b->cid,
        .address = b->net_res.host[0] ? b->net_res.host : NULL,
        .nameservers = boot_nameservers(b),
    };
    return p;
}

/* The identity files the runtime binds over the image's own (/etc/hostname, hosts and, when
 * the network plugin names a resolver, resolv.conf). */
static int boot_etc(struct boot *b, struct bh_err *err)
{
    struct bh_etc_params p = boot_etc_params(b);
    if (bh_etc_files_write(b->etc, &p, err) < 0)
        return bh_err_wrap(err, "instance /etc files");
    b->spec.etc_dir = b->etc;
    b->spec.n_etc_files = p.nameservers ? BH_ETC_N_FILES : BH_ETC_N_FILES - 1;
    return 0;
}

/* ---- the daemon's API inside the instance (per-claim tokens) ---- */

int bh_instance_api_wanted(const cJSON *workload)
{
    const cJSON *s;
    int want = 0;
    cJSON_ArrayForEach(s, bh_json_get(workload, "spec.apiAccess.scopes")) {
        const char *v = cJSON_GetStringValue(s);
        if (v && strcmp(v, "none") == 0)
            return 0;
        want |= v && strcmp(v, "tenant") == 0;
    }
    return want;
}

char *bh_instance_api_socket(struct bh_ctx *ctx)
{
    return bh_xasprintf("%s/api.sock", ctx->cfg.state_dir);
}

static char *instance_api_dir(struct bh_ctx *ctx, const char *id)
{
    return bh_xasprintf("%s/instances/%s/api", ctx->cfg.state_dir, id);
}

/* A workload that asks for API access gets, whatever its network mode, a read-only dir with
 * the daemon's instance socket in it; the token lands there when a claim takes the instance
 * (a pool instance boots long before). The dir is beside the disk, never in a snapshot. */
static int boot_api(struct boot *b, struct bh_err *err)
{
    if (!bh_instance_api_wanted(b->workload))
        return 0;
    b->api = instance_api_dir(b->ctx, b->id);
    b->api_sock = bh_instance_api_socket(b->ctx);
    bh_autofree char *mount_point = bh_xasprintf("%s/api.sock", b->api);
    if (bh_fs_mkdirp(b->api, 0755, err) < 0 ||
        bh_fs_write_replace(mount_point, "", 0, 0644, err) < 0)
        return bh_err_wrap(err, "instance API dir");
    b->spec.api_dir = b->api;
    b->spec.api_socket = b->api_sock;
    boot_env_append(b, "BOILERHOUSE_API_URL=http://localhost\n"
                       "BOILERHOUSE_API_SOCKET=" BH_RUNTIME_API_DIR "/api.sock\n"
                       "BOILERHOUSE_API_KEY_FILE=" BH_RUNTIME_API_DIR "/token\n"
                       "BOILERHOUSE_API_ENV=" BH_RUNTIME_API_DIR "/env\n");
    return 0;
}

int bh_instance_api_grant(struct bh_ctx *ctx, const char *id, const char *token, struct bh_err *err)
{
    if (!bh_runtime_id_valid(id))
        return bh_err_set(err, BH_EINVAL, "invalid instance id");
    if (instance_remote(ctx))
        return bh_err_set(err, BH_EUNAVAIL, "per-claim API tokens cannot reach a %s instance yet",
                          bh_runtime_name(ctx->runtime));
    bh_autofree char *dir = instance_api_dir(ctx, id);
    bh_autofree char *key = bh_xasprintf("%s/token", dir);
    bh_autofree char *env = bh_xasprintf("%s/env", dir);
    bh_autofree char *lines = bh_xasprintf(
        "BOILERHOUSE_API_URL=http://localhost\nBOILERHOUSE_API_SOCKET=" BH_RUNTIME_API_DIR
        "/api.sock\nBOILERHOUSE_API_KEY=%s\n",
        token);
    /* Readable by the container's root, which is an unprivileged uid on the host. */
    int rc = bh_fs_write_replace(key, token, strlen(token), 0444, err);
    if (rc == 0)
        rc = bh_fs_write_replace(env, lines, strlen(lines), 0444, err);
    bh_crypto_wipe(lines, strlen(lines));
    return rc < 0 ? bh_err_wrap(err, "instance %s: API token", id) : 0;
}

void bh_instance_api_clear(struct bh_ctx *ctx, const char *id)
{
    if (!bh_runtime_id_valid(id))
        return;
    bh_autofree char *dir = instance_api_dir(ctx, id);
    bh_autofree char *key = bh_xasprintf("%s/token", dir);
    bh_autofree char *env = bh_xasprintf("%s/env", dir);
    unlink(key);
    unlink(env);
}

/* The process and its limits: the image's config merged with the workload's entrypoint, the
 * network plugin's environment added. */
static int boot_process(struct boot *b, struct bh_err *err)
{
    const cJSON *entry = bh_json_get(b->workload, "spec.entrypoint");
    if (bh_oci_process_resolve(b->image->config, entry, &b->args, &b->env, &b->cwd, err) < 0)
        return -1;
    boot_env_append(b, b->net_res.env);
    if (b->extra_env)
        boot_env_append(b, b->extra_env);
    if (boot_api(b, err) < 0)
        return -1;
    b->spec.args = b->args;
    b->spec.env = b->env;
    b->spec.cwd = b->cwd;
    b->spec.vcpus = bh_json_num(b->workload, "spec.resources.vcpus", 1);
    b->spec.memory_mb = (long)bh_json_int(b->workload, "spec.resources.memoryMb", 256);
    b->spec.socket_dir = (b->net_res.flags & BH_NET_SOCKET_DIR) ? b->sock : NULL;
    return boot_etc(b, err);
}

static int boot_container(struct boot *b, const char *tenant, struct bh_err *err)
{
    long long t0 = bh_clock_ms();
    if (bh_runtime_create(b->ctx->runtime, &b->spec, &b->pid, err) < 0)
        return -1;
    long long t1 = bh_clock_ms();
    b->create_ms = t1 - t0;
    bh_autofree char *netns = bh_runtime_netns_path(b->ctx->runtime, b->cid, b->pid);
    bh_autofree char *net_json = bh_json_print(bh_json_get(b->workload, "spec.network"));
    struct bh_net_request req = boot_net_request(b, tenant, netns, net_json);
    const struct bh_network_ops *ops = b->net->info->ops;
    if (BH_PLUGIN_CALL(b->net, ops->attach(b->net->state, &req, &b->net_res, err)) < 0)
        return bh_err_wrap(err, "network %s", b->net->info->name);
    struct bh_etc_params etc_p = boot_etc_params(b); /* the address attach just learnt */
    if (etc_p.address && bh_etc_hosts_update(b->etc, &etc_p, err) < 0)
        return bh_err_wrap(err, "instance /etc/hosts");
    if (tenant && BH_HAS_OP(ops, struct bh_network_ops, bind_tenant) &&
        BH_PLUGIN_CALL(b->net, ops->bind_tenant(b->net->state, &req, err)) < 0)
        return bh_err_wrap(err, "network %s: bind tenant", b->net->info->name);
    b->net_ms = bh_clock_ms() - t1;
    bh_crashpoint("boot.before-start");
    return bh_runtime_start(b->ctx->runtime, b->cid, err);
}

static int boot_prepare_net(struct boot *b, const char *tenant, struct bh_err *err)
{
    b->net = instance_net_plugin(b->ctx, instance_network_mode(b->workload), err);
    if (!b->net)
        return -1;
    bh_autofree char *net_json = bh_json_print(bh_json_get(b->workload, "spec.network"));
    struct bh_net_request req = boot_net_request(b, tenant, NULL, net_json);
    b->net_res.size = sizeof(b->net_res);
    const struct bh_network_ops *ops = b->net->info->ops;
    int rc = BH_PLUGIN_CALL(b->net, ops->prepare(b->net->state, &req, &b->net_res, err));
    b->net_res.nameservers[sizeof(b->net_res.nameservers) - 1] = '\0';
    return rc;
}

/* Endpoint as the claim reports it: {host, port} for addressable instances, {socket} for
 * instances without a network. */
static cJSON *boot_endpoint(struct boot *b)
{
    cJSON *ep = cJSON_CreateObject();
    const cJSON *expose = bh_json_get(b->workload, "spec.network.expose");
    int port = (int)bh_json_int(cJSON_GetArrayItem(expose, 0), "guest", 0);
    if (b->net_res.host[0]) {
        cJSON_AddStringToObject(ep, "host", b->net_res.host);
        cJSON_AddNumberToObject(ep, "port", port);
    }
    if (b->net_res.flags & BH_NET_SOCKET_DIR)
        cJSON_AddStringToObject(ep, "socket", b->sock);
    return ep;
}

static int instance_probe_remote(struct bh_ctx *ctx, const char *id, struct bh_err *err)
{
    bh_autofree char *cid = bh_runtime_container_id(id);
    int rc = bh_runtime_ready(ctx->runtime, cid, err);
    return rc == 1 ? 0 : -1;
}

/* One probe of the workload's health check. */
int bh_instance_probe(struct bh_ctx *ctx, const cJSON *workload, const char *id, int pid,
                      struct bh_err *err)
{
    if (instance_remote(ctx)) /* where it runs, its health check is the runtime's readiness */
        return instance_probe_remote(ctx, id, err);
    const cJSON *health = bh_json_get(workload, "spec.health");
    int timeout_ms = (int)bh_json_int(health, "timeoutSeconds", 2) * 1000;
    if (bh_json_get(health, "httpGet")) {
        /* Probed on the instance's own loopback: it works for every network mode, and probe
         * traffic never counts as tenant activity (idle detection ignores lo). */
        const char *path = bh_json_str(health, "httpGet.path");
        int port = (int)bh_json_int(health, "httpGet.port", 80);
        bh_autofree char *cid = bh_runtime_container_id(id);
        bh_autofree char *netns = bh_runtime_netns_path(ctx->runtime, cid, pid);
        return bh_health_http(netns, "127.0.0.1", port, path ? path : "/", timeout_ms, err);
    }
    const cJSON *cmd = bh_json_get(health, "exec.command");
    if (cJSON_IsArray(cmd)) {
        int n = cJSON_GetArraySize(cmd);
        char **argv = bh_xcalloc((size_t)n + 1, sizeof(char *));
        for (int i = 0; i < n; i++)
            argv[i] = cJSON_GetArrayItem(cmd, i)->valuestring;
        cJSON *res = NULL;
        int rc = bh_instance_exec(ctx, id, argv, timeout_ms, &res, err);
        free(argv);
        long long code = bh_json_int(res, "exitCode", -1);
        cJSON_Delete(res);
        if (rc == 0 && code != 0)
            rc = bh_err_set(err, BH_EUNAVAIL, "health command exited %lld", code);
        return rc;
    }
    return 0;
}

/* The last bytes of the container log, for error details. */
static char *instance_log_tail(struct bh_ctx *ctx, const char *id)
{
    bh_autofree char *path = bh_instance_log_path(ctx, id);
    char *data = NULL;
    size_t len = 0;
    if (bh_fs_read_all(path, 1 << 20, &data, &len, NULL) < 0)
        return bh_xstrdup("");
    char *tail = bh_xstrdup(len > 300 ? data + len - 300 : data);
    free(data);
    return tail;
}

/* Probes until healthy, the container dies, or the deadline passes. The gap between probes
 * starts small (most servers listen within milliseconds) and backs off. */
static int boot_wait_healthy(struct boot *b, struct bh_err *err)
{
    long long deadline = bh_clock_ms() + b->ctx->cfg.claim_timeout_ms;
    struct bh_err probe_err = {0};
    int gap_ms = INSTANCE_PROBE_GAP_MIN_MS;
    for (;;) {
        if (!bh_runtime_alive(b->ctx->runtime, b->cid, b->pid)) {
            bh_autofree char *tail = instance_log_tail(b->ctx, b->id);
            return bh_err_set(err, BH_EIO, "container exited during start; log: %s", tail);
        }
        if (bh_instance_probe(b->ctx, b->workload, b->id, b->pid, &probe_err) == 0)
            return 0;
        if (bh_clock_ms() > deadline)
            return bh_err_set(err, BH_ETIMEOUT, "not healthy after %d ms: %s",
                              b->ctx->cfg.claim_timeout_ms, probe_err.msg);
        usleep((useconds_t)gap_ms * 1000);
        gap_ms = gap_ms * 2 > INSTANCE_PROBE_GAP_MAX_MS ? INSTANCE_PROBE_GAP_MAX_MS : gap_ms * 2;
    }
}

static int boot_run(struct boot *b, const char *tenant, struct bh_err *err)
{
    long long t[5];
    t[0] = bh_clock_ms();
    if (boot_image(b, err) < 0 || boot_dirs(b, err) < 0 || boot_prepare_net(b, tenant, err) < 0)
        return -1;
    t[1] = bh_clock_ms();
    if (boot_disk(b, err) < 0 || boot_rootfs(b, err) < 0 || boot_restore(b, err) < 0 ||
        boot_trust_ca(b, err) < 0 || boot_process(b, err) < 0)
        return -1;
    t[2] = bh_clock_ms();
    if (boot_container(b, tenant, err) < 0)
        return -1;
    t[3] = bh_clock_ms();
    int rc = boot_wait_healthy(b, err);
    t[4] = bh_clock_ms();
    bh_debug("instance",
             "boot %s: prepare %lld ms, rootfs+bundle %lld ms, container+network %lld "
             "ms (create %lld, network %lld, start %lld), healthy %lld ms",
             b->id, t[1] - t[0], t[2] - t[1], t[3] - t[2], b->create_ms, b->net_ms,
             t[3] - t[2] - b->create_ms - b->net_ms, t[4] - t[3]);
    return rc;
}

/* ep (owned) is where clients reach it; digest the image it runs, or NULL if unknown. */
static int instance_mark_running(struct boot *b, cJSON *ep, const char *digest, cJSON **out,
                                 struct bh_err *err)
{
    cJSON *obj = NULL;
    if (bh_store_get(b->ctx->store, INSTANCE_KIND, b->id, &obj, err) < 0) {
        cJSON_Delete(ep);
        return -1;
    }
    cJSON *status = bh_json_obj(obj, "status");
    char now[32];
    bh_clock_rfc3339(now);
    bh_json_set_str(status, "phase", "Running");
    bh_json_set_num(status, "pid", b->pid);
    bh_json_set_str(status, "startedAt", now);
    bh_json_set_str(status, "lastActivity", now);
    if (digest)
        bh_json_set_str(status, "imageDigest", digest);
    cJSON_DeleteItemFromObjectCaseSensitive(status, "endpoint");
    cJSON_AddItemToObject(status, "endpoint", ep);
    int rc = bh_store_update_status_lazy(b->ctx->store, obj, out, err);
    cJSON_Delete(obj);
    return rc;
}

/* On this host: image layers, rootfs, disk, network plugin, container. */
static int boot_host(struct boot *b, cJSON **out, struct bh_err *err)
{
    if (boot_run(b, b->req->tenant, err) < 0)
        return -1;
    /* The image the workload had resolved when this boot began: a rebuilt Dockerfile keeps
     * its tag, so pools compare this with the workload's digest to drain members of an older
     * build. The workload's, not the one resolved here: an image re-imported under the same
     * ref (the workload not re-resolved) must not make every new member look stale. */
    const char *digest = bh_json_str(b->workload, "status.imageDigest");
    return instance_mark_running(b, boot_endpoint(b), digest ? digest : b->image->digest, out, err);
}

/* ---- the remote boot ---- */

static struct bh_runtime_instance instance_identity(const char *cid, const char *id,
                                                    const cJSON *workload, const char *tenant,
                                                    const char *claim, const char *pool)
{
    return (struct bh_runtime_instance){.id = cid,
                                        .instance_id = id,
                                        .workload = workload,
                                        .tenant = tenant,
                                        .claim = claim,
                                        .pool = pool};
}

/* Asks the runtime until the instance is ready, failed for good, or the claim timeout (the
 * same deadline as a local boot's health checks) passed. */
static int boot_remote_wait(struct boot *b, struct bh_err *err)
{
    long long deadline = bh_clock_ms() + b->ctx->cfg.claim_timeout_ms;
    int gap_ms = INSTANCE_REMOTE_GAP_MIN_MS;
    for (;;) {
        struct bh_err look = {0};
        int rc = bh_runtime_ready(b->ctx->runtime, b->cid, &look);
        if (rc != 0) {
            if (rc < 0)
                *err = look;
            return rc < 0 ? -1 : 0;
        }
        if (bh_clock_ms() > deadline)
            return bh_err_set(err, BH_ETIMEOUT, "not ready after %d ms: %s",
                              b->ctx->cfg.claim_timeout_ms, look.msg);
        usleep((useconds_t)gap_ms * 1000);
        gap_ms = gap_ms * 2 > INSTANCE_REMOTE_GAP_MAX_MS ? INSTANCE_REMOTE_GAP_MAX_MS : gap_ms * 2;
    }
}

static cJSON *instance_remote_endpoint(struct bh_ctx *ctx, const char *cid, struct bh_err *err)
{
    struct bh_runtime_endpoint ep;
    if (bh_runtime_endpoint(ctx->runtime, cid, &ep, err) < 0)
        return NULL;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "host", ep.host);
    cJSON_AddNumberToObject(o, "port", ep.port);
    return o;
}

/* Launched, the tenant's data in, ready, then the tenant's secrets in: the claim timeout
 * bounds each wait, and the secrets get what is left of it. */
static int boot_remote_run(struct boot *b, const struct bh_runtime_instance *ri,
                           const struct bh_instance_creds *creds, struct bh_err *err)
{
    const struct bh_boot_req *r = b->req;
    int timeout_ms = b->ctx->cfg.claim_timeout_ms;
    long long t0 = bh_clock_ms();
    if (bh_runtime_launch(b->ctx->runtime, ri, err) < 0 ||
        (r->snapshot && bh_hibernate_restore_remote(b->ctx, b->workload, r->snapshot, b->cid,
                                                    timeout_ms, err) < 0) ||
        boot_remote_wait(b, err) < 0)
        return -1;
    long long ready_ms = bh_clock_ms() - t0;
    bh_debug("instance", "boot %s: ready on %s after %lld ms", b->id,
             bh_runtime_name(b->ctx->runtime), ready_ms);
    int left_ms = ready_ms < timeout_ms ? timeout_ms - (int)ready_ms : 0;
    return bh_instance_creds_push(b->ctx, b->id, creds, left_ms, err);
}

/* Elsewhere: the runtime gets the workload and who the instance is, and does the rest. */
static int boot_remote(struct boot *b, cJSON **out, struct bh_err *err)
{
    const struct bh_boot_req *r = b->req;
    struct bh_runtime_instance ri =
        instance_identity(b->cid, b->id, b->workload, r->tenant, r->claim, r->pool);
    ri.restore = r->snapshot != NULL; /* its workload waits until the data is in */
    /* The image the workload resolved to says which user it runs as: a numeric non-root one
     * makes the Pod runAsNonRoot. Unknown (not in the store): the kubelet still runs it. */
    struct bh_err ierr;
    if (boot_image(b, &ierr) == 0)
        ri.image_user = bh_json_str(b->image->config, "User");
    else
        bh_debug("instance", "boot %s: image user unknown: %s", b->id, ierr.msg);
    /* The tenant's secrets first: one that is missing fails the claim before a Pod exists. */
    struct bh_instance_creds creds;
    if (bh_instance_creds_resolve(b->ctx, b->workload, r->tenant, &creds, err) < 0)
        return -1;
    int rc = boot_remote_run(b, &ri, &creds, err);
    bh_instance_creds_free(&creds);
    cJSON *ep = rc < 0 ? NULL : instance_remote_endpoint(b->ctx, b->cid, err);
    return ep ? instance_mark_running(b, ep, bh_json_str(b->workload, "status.imageDigest"), out,
                                      err)
              : -1;
}

int bh_instance_assign(struct bh_ctx *ctx, const cJSON *instance, const cJSON *workload,
                       const char *tenant, const char *claim, struct bh_err *err)
{
    if (!instance_remote(ctx))
        return 0; /* the record's relabelling (pool.c) was the whole hand-over */
    const char *id = bh_json_str(instance, "metadata.name");
    bh_autofree char *cid = bh_runtime_container_id(id);
    struct bh_runtime_instance ri = instance_identity(cid, id, workload, tenant, claim, NULL);
    return bh_runtime_assign(ctx->runtime, &ri, err);
}

int bh_instance_adopt(struct bh_ctx *ctx, const struct bh_runtime_found *f, const cJSON *workload,
                      struct bh_err *err)
{
    const struct instance_who w = {
        .workload = f->workload,
        .generation = f->generation,
        .network = instance_network_mode(workload),
        .tenant = f->tenant,
        .claim = f->claim,
        .pool = f->tenant ? NULL : f->pool, /* a tenant's is no pool's member any more */
    };
    cJSON *rec = instance_record_of(f->instance_id, &w);
    if (w.pool)
        bh_json_set_str(bh_json_obj(rec, "metadata.labels"), "boilerhouse.dev/pool-status",
                        "ready");
    cJSON *status = bh_json_obj(rec, "status");
    char now[32];
    bh_clock_rfc3339(now);
    bh_json_set_str(status, "phase", "Running");
    bh_json_set_num(status, "pid", 0);
    bh_json_set_str(status, "startedAt", now);
    bh_json_set_str(status, "lastActivity", now); /* its idle time starts over */
    if (f->image_digest)
        bh_json_set_str(status, "imageDigest", f->image_digest);
    cJSON *ep = cJSON_AddObjectToObject(status, "endpoint");
    if (f->endpoint.host[0]) {
        cJSON_AddStringToObject(ep, "host", f->endpoint.host);
        cJSON_AddNumberToObject(ep, "port", f->endpoint.port);
    }
    int rc = bh_store_create_lazy(ctx->store, rec, NULL, err);
    cJSON_Delete(rec);
    return rc;
}

int bh_instance_forget(struct bh_ctx *ctx, const char *id, struct bh_err *err)
{
    if (bh_store_delete(ctx->store, INSTANCE_KIND, id, err) < 0 && err->code != BH_ENOTFOUND)
        return -1;
    bh_info("instance", "instance %s forgotten (its runtime keeps it)", id);
    return 0;
}

char *bh_instance_reserve(struct bh_ctx *ctx, const struct bh_boot_req *req, struct bh_err *err)
{
    char *id = instance_new_id();
    cJSON *rec = instance_record(id, req);
    int rc = bh_store_create_lazy(ctx->store, rec, NULL, err);
    cJSON_Delete(rec);
    if (rc < 0) {
        free(id);
        return NULL;
    }
    return id;
}

int bh_instance_boot(struct bh_ctx *ctx, const struct bh_boot_req *req, cJSON **out,
                     struct bh_err *err)
{
    bh_autofree char *id = req->id ? bh_xstrdup(req->id) : bh_instance_reserve(ctx, req, err);
    if (!id)
        return -1;
    int rc;
    struct boot b = {.ctx = ctx, .id = id, .req = req, .workload = req->workload};
    boot_init(&b, ctx, id);
    long long t0 = bh_clock_ms();
    rc = instance_remote(ctx) ? boot_remote(&b, out, err) : boot_host(&b, out, err);
    boot_free(&b);
    if (rc < 0) {
        if (req->on_failure)
            req->on_failure(ctx, req, err->msg);
        struct bh_err cleanup = {0};
        if (bh_instance_destroy(ctx, id, &cleanup) < 0)
            bh_error("instance", "cleanup of failed instance %s: %s", id, cleanup.msg);
        return -1;
    }
    bh_info("instance", "instance %s of workload %s running after %lld ms", id,
            bh_json_str(req->workload, "metadata.name"), bh_clock_ms() - t0);
    return 0;
}

char *bh_instance_rootfs(struct bh_ctx *ctx, const char *id)
{
    return bh_xasprintf("%s/instances/%s/rootfs", ctx->cfg.state_dir, id);
}

enum instance_net_call { NET_ATTACH, NET_BIND_TENANT };

/* Calls a network op for a running instance outside of its boot. */
static int instance_net_call(struct bh_ctx *ctx, const cJSON *instance, const cJSON *workload,
                             const char *tenant, enum instance_net_call what, struct bh_err *err)
{
    const char *mode = bh_json_str(instance, "spec.network");
    struct bh_plugin *p = instance_net_plugin(ctx, mode ? mode : "none", err);
    if (!p)
        return -1;
    const struct bh_network_ops *ops = p->info->ops;
    if (what == NET_BIND_TENANT && !BH_HAS_OP(ops, struct bh_network_ops, bind_tenant))
        return 0;
    bh_autofree char *net_json = bh_json_print(bh_json_get(workload, "spec.network"));
    int pid = (int)bh_json_int(instance, "status.pid", 0);
    bh_autofree char *cid = bh_runtime_container_id(bh_json_str(instance, "metadata.name"));
    bh_autofree char *netns = bh_runtime_netns_path(ctx->runtime, cid, pid);
    struct bh_net_request req = {
        .size = sizeof(req),
        .instance_id = bh_json_str(instance, "metadata.name"),
        .tenant_id = tenant,
        .workload = bh_json_str(workload, "metadata.name"),
        .network_json = net_json,
        .netns_path = netns,
        .pid = pid,
    };
    struct bh_net_result res = {.size = sizeof(res)};
    int rc = what == NET_ATTACH ? BH_PLUGIN_CALL(p, ops->attach(p->state, &req, &res, err))
                                : BH_PLUGIN_CALL(p, ops->bind_tenant(p->state, &req, err));
    return rc < 0 ? bh_err_wrap(err, "network %s", p->info->name) : 0;
}

int bh_instance_bind_tenant(struct bh_ctx *ctx, const cJSON *instance, const cJSON *workload,
                            const char *tenant, struct bh_err *err)
{
    if (!instance_remote(ctx))
        return instance_net_call(ctx, instance, workload, tenant, NET_BIND_TENANT, err);
    /* No network plugin is involved (bh_instance_assign handed it over); its egress proxy
     * runs with it and takes the tenant's values from the runtime. */
    struct bh_instance_creds creds;
    if (bh_instance_creds_resolve(ctx, workload, tenant, &creds, err) < 0)
        return -1;
    int rc = bh_instance_creds_push(ctx, bh_json_str(instance, "metadata.name"), &creds,
                                    ctx->cfg.claim_timeout_ms, err);
    bh_instance_creds_free(&creds);
    return rc;
}

/* After a restart the network plugins have lost their in-memory state (egress policies):
 * attach again (idempotent; the address is kept) and rebind the tenant. */
static void instance_readopt_network(struct bh_ctx *ctx, const cJSON *inst)
{
    cJSON *wl = NULL;
    struct bh_err err;
    const char *tenant = bh_json_str(inst, "spec.tenantId");
    if (bh_store_get(ctx->store, "BoilerhouseWorkload", bh_json_str(inst, "spec.workload"), &wl,
                     &err) < 0 ||
        instance_net_call(ctx, inst, wl, tenant, NET_ATTACH, &err) < 0 ||
        (tenant && instance_net_call(ctx, inst, wl, tenant, NET_BIND_TENANT, &err) < 0))
        bh_warn("instance", "re-wiring the network of %s: %s", bh_json_str(inst, "metadata.name"),
                err.msg);
    cJSON_Delete(wl);
}

/* Detaches the instance from its network; with mode unknown, asks every loaded network
 * plugin (detach is idempotent), so leftovers of unrecorded instances are cleaned too. */
static void instance_net_detach(struct bh_ctx *ctx, const char *id, const char *mode)
{
    struct bh_plugin *p;
    for (size_t i = 0; (p = bh_plugins_nth(ctx->plugins, BH_PLUGIN_NETWORK, i)); i++) {
        if (mode && strcmp(mode, p->info->name) != 0)
            continue;
        struct bh_net_request req = {.size = sizeof(req), .instance_id = id};
        struct bh_err err = {0};
        const struct bh_network_ops *ops = p->info->ops;
        if (BH_PLUGIN_CALL(p, ops->detach(p->state, &req, &err)) < 0)
            bh_warn("instance", "network detach of %s: %s", id, err.msg);
    }
}

/* Everything but the record; safe to repeat. */
static int instance_teardown(struct bh_ctx *ctx, const char *id, const char *mode,
                             struct bh_err *err)
{
    bh_autofree char *cid = bh_runtime_container_id(id);
    bh_autofree char *dir = instance_dir(ctx, id);
    bh_autofree char *rootfs = bh_instance_rootfs(ctx, id);
    bh_autofree char *disk = bh_instance_disk_path(ctx, id);
    if (bh_runtime_delete(ctx->runtime, cid, err) < 0)
        return bh_err_wrap(err, "delete container %s", cid);
    if (instance_remote(ctx)) /* nothing of it was made on this host */
        return 0;
    instance_net_detach(ctx, id, mode);
    if (bh_runtime_rootfs_release(ctx->runtime, rootfs, disk, err) < 0)
        return -1;
    return bh_fs_rmtree(dir, err);
}

int bh_instance_destroy(struct bh_ctx *ctx, const char *id, struct bh_err *err)
{
    if (!bh_runtime_id_valid(id))
        return bh_err_set(err, BH_EINVAL, "invalid instance id");
    cJSON *rec = NULL;
    struct bh_err get_err;
    const char *mode = NULL;
    if (bh_store_get(ctx->store, INSTANCE_KIND, id, &rec, &get_err) == 0)
        mode = bh_json_str(rec, "spec.network");
    int rc = instance_teardown(ctx, id, mode, err);
    cJSON_Delete(rec);
    if (rc < 0)
        return -1;
    if (bh_store_delete(ctx->store, INSTANCE_KIND, id, &get_err) < 0 &&
        get_err.code != BH_ENOTFOUND) {
        *err = get_err;
        return -1;
    }
    bh_info("instance", "instance %s destroyed", id);
    return 0;
}

/* Running, or frozen by a hibernate in progress (which thaws or destroys it). */
int bh_instance_alive(struct bh_ctx *ctx, const cJSON *instance)
{
    const char *id = bh_json_str(instance, "metadata.name");
    if (!bh_runtime_id_valid(id))
        return 0;
    bh_autofree char *cid = bh_runtime_container_id(id);
    return bh_runtime_alive(ctx->runtime, cid, (int)bh_json_int(instance, "status.pid", 0));
}

int bh_instance_exec(struct bh_ctx *ctx, const char *id, char *const *argv, int timeout_ms,
                     cJSON **out, struct bh_err *err)
{
    if (!bh_runtime_id_valid(id))
        return bh_err_set(err, BH_ENOTFOUND, "instance not found");
    bh_autofree char *cid = bh_runtime_container_id(id);
    struct bh_proc_result res;
    if (bh_runtime_exec(ctx->runtime, cid, argv, timeout_ms, &res, err) < 0) {
        bh_proc_result_free(&res);
        return -1;
    }
    for (size_t n = res.out_len; n > 0 && res.out[n - 1] == '\n'; n--)
        res.out[n - 1] = '\0';
    for (size_t n = res.err_len; n > 0 && res.errout[n - 1] == '\n'; n--)
        res.errout[n - 1] = '\0';
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "stdout", res.out);
    cJSON_AddStringToObject(o, "stderr", res.errout);
    cJSON_AddNumberToObject(o, "exitCode", res.exit_code);
    bh_proc_result_free(&res);
    *out = o;
    return 0;
}

/* ---- recovery ---- */

/* A host instance found running: thawed (a crash during hibernate leaves it frozen; the
 * release resumes from scratch) and wired to its network plugin again. */
static void instance_readopt_host(struct bh_ctx *ctx, const cJSON *inst)
{
    const char *id = bh_json_str(inst, "metadata.name");
    bh_autofree char *cid = bh_runtime_container_id(id);
    struct bh_err rerr;
    if (bh_runtime_resume(ctx->runtime, cid, &rerr) < 0)
        bh_debug("instance", "resume %s: %s", id, rerr.msg);
    instance_readopt_network(ctx, inst);
}

static int recover_records(struct bh_ctx *ctx, struct bh_err *err)
{
    cJSON *list = NULL;
    if (bh_store_list(ctx->store, INSTANCE_KIND, NULL, &list, NULL, err) < 0)
        return -1;
    const cJSON *inst;
    cJSON_ArrayForEach(inst, list) {
        const char *id = bh_json_str(inst, "metadata.name");
        const char *phase = bh_json_str(inst, "status.phase");
        if (phase && strcmp(phase, "Running") == 0 && !bh_json_label(inst, BH_LABEL_RESTORING) &&
            bh_instance_alive(ctx, inst)) {
            if (!instance_remote(ctx))
                instance_readopt_host(ctx, inst);
            bh_info("instance", "re-adopted running instance %s", id);
            continue;
        }
        bh_info("instance", "instance %s was %s at restart; removing it", id,
                phase ? phase : "unknown");
        struct bh_err derr = {0};
        if (bh_instance_destroy(ctx, id, &derr) < 0)
            bh_error("instance", "remove %s: %s", id, derr.msg);
    }
    cJSON_Delete(list);
    return 0;
}

static int recover_has_record(struct bh_ctx *ctx, const char *id)
{
    cJSON *obj = NULL;
    struct bh_err err;
    int found = bh_store_get(ctx->store, INSTANCE_KIND, id, &obj, &err) == 0;
    cJSON_Delete(obj);
    return found;
}

/* Containers under our runtime root that no record accounts for. */
static int recover_containers(struct bh_ctx *ctx, struct bh_err *err)
{
    char **ids = NULL;
    if (bh_runtime_list(ctx->runtime, &ids, err) < 0)
        return -1;
    for (char **p = ids; p && *p; p++) {
        const char *id = bh_runtime_instance_id(*p);
        if (id && bh_runtime_id_valid(id) && recover_has_record(ctx, id))
            continue;
        bh_info("instance", "deleting orphan container %s", *p);
        struct bh_err derr = {0};
        if (bh_runtime_delete(ctx->runtime, *p, &derr) < 0)
            bh_error("instance", "delete orphan %s: %s", *p, derr.msg);
    }
    bh_strv_free(ids);
    return 0;
}

/* Instance directories (and their mounts, network state) without a record. */
static int recover_dirs(struct bh_ctx *ctx, struct bh_err *err)
{
    bh_autofree char *root = bh_xasprintf("%s/instances", ctx->cfg.state_dir);
    DIR *dir = opendir(root);
    if (!dir)
        return errno == ENOENT ? 0 : bh_err_errno(err, BH_EIO, "open %s", root);
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        if (!bh_runtime_id_valid(de->d_name) || recover_has_record(ctx, de->d_name))
            continue;
        bh_info("instance", "removing leftovers of unrecorded instance %s", de->d_name);
        struct bh_err terr = {0};
        if (instance_teardown(ctx, de->d_name, NULL, &terr) < 0)
            bh_error("instance", "leftovers of %s: %s", de->d_name, terr.msg);
    }
    closedir(dir);
    return 0;
}

/* A shared runtime's records are what this daemon knew when it last led: stale now (another
 * replica may have led since), and never a reason to delete anything, since a standby acts on
 * nothing. They go; the runtime's instances are adopted from its inventory when this replica
 * leads (bh_adopt_run). */
static int recover_forget_all(struct bh_ctx *ctx, struct bh_err *err)
{
    cJSON *names = NULL;
    if (bh_store_list_names(ctx->store, INSTANCE_KIND, NULL, &names, err) < 0)
        return -1;
    const cJSON *n;
    cJSON_ArrayForEach(n, names) {
        struct bh_err derr;
        if (bh_store_delete(ctx->store, INSTANCE_KIND, n->valuestring, &derr) < 0 &&
            derr.code != BH_ENOTFOUND)
            bh_warn("instance", "forget %s: %s", n->valuestring, derr.msg);
    }
    if (cJSON_GetArraySize(names))
        bh_info("instance",
                "%d instance record%s of a previous run forgotten: the leader adopts "
                "what runs",
                cJSON_GetArraySize(names), cJSON_GetArraySize(names) == 1 ? "" : "s");
    cJSON_Delete(names);
    return 0;
}

int bh_instance_recover(struct bh_ctx *ctx, struct bh_err *err)
{
    if (bh_runtime_has(ctx->runtime, BH_RUNTIME_CAP_SHARED))
        return recover_forget_all(ctx, err);
    if (recover_records(ctx, err) < 0)
        return -1;
    if (recover_containers(ctx, err) < 0)
        return -1;
    return recover_dirs(ctx, err);
}
