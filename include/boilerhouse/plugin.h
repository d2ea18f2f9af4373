/*
 * Boilerhouse plugin SDK: the only header a plugin includes.
 *
 * A plugin is a shared object named bh-<kind>-<name>.so that exports exactly one symbol,
 * bh_plugin_entry(). The host calls it once at startup with its function table and reads
 * back a constant struct bh_plugin_info. Before reading anything else the host checks
 * info->size, info->abi_major and info->build_sig; a mismatch refuses the plugin with an
 * error naming the file, and the daemon starts without it.
 *
 * ABI rules: every struct that crosses the boundary starts with its size and only grows at
 * the end; a new field is read only when the peer's size says it is there. Fallible calls
 * return int (< 0 is an error) and take a caller-owned struct bh_err last.
 */
#ifndef BOILERHOUSE_PLUGIN_H
#define BOILERHOUSE_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BH_PLUGIN_ABI_MAJOR 1
#define BH_PLUGIN_ABI_MINOR 1

/* Changes whenever a layout-affecting build property differs (pointer size, byte order). */
#define BH_PLUGIN_STR2(x) #x
#define BH_PLUGIN_STR(x) BH_PLUGIN_STR2(x)
#define BH_PLUGIN_BUILD_SIG                                                                        \
    "bh-abi-" BH_PLUGIN_STR(BH_PLUGIN_ABI_MAJOR) "-ptr" BH_PLUGIN_STR(                             \
        __SIZEOF_POINTER__) "-" BH_PLUGIN_STR(__BYTE_ORDER__)

#if defined(__GNUC__)
#define BH_PLUGIN_EXPORT __attribute__((visibility("default")))
#define BH_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define BH_PLUGIN_EXPORT
#define BH_PRINTF(a, b)
#endif

/* ---- errors ----------------------------------------------------------------------------- */

/* Error classes; the REST layer maps them to HTTP status codes. */
enum bh_err_code {
    BH_OK = 0,
    BH_EINVAL = 1,    /* bad input: 400 / 422 */
    BH_ENOTFOUND = 2, /* 404 */
    BH_ECONFLICT = 3, /* 409: already exists, stale resourceVersion */
    BH_EIO = 4,       /* 500: system or dependency failure */
    BH_EUNAVAIL = 5,  /* 503: not ready yet, try again */
    BH_ETIMEOUT = 6,  /* 504 */
    BH_ETOOLARGE = 7, /* 413 */
    BH_EAUTH = 8,     /* 401 */
    BH_EFORBIDDEN = 9 /* 403 */
};

struct bh_err {
    int code;
    char msg[512];
};

/* ---- plugin kinds ------------------------------------------------------------------------ */

enum bh_plugin_kind {
    BH_PLUGIN_TRIGGER = 1,
    BH_PLUGIN_GUARD = 2,
    BH_PLUGIN_STORAGE = 3,
    BH_PLUGIN_NETWORK = 4
};

/* ---- configuration ---------------------------------------------------------------------- */

enum bh_config_type { BH_CFG_STRING = 1, BH_CFG_INT = 2, BH_CFG_BOOL = 3 };

/* One declared configuration key. The host validates a plugin's config against this table
 * (types, required keys, defaults) and rejects unknown keys before the plugin sees it. */
struct bh_config_field {
    const char *key;
    enum bh_config_type type;
    int required;
    const char *default_value; /* as text; NULL for none */
    const char *help;
};

struct bh_config; /* opaque, owned by the host, valid for the plugin's lifetime */

enum bh_log_level { BH_LOG_ERROR = 0, BH_LOG_WARN = 1, BH_LOG_INFO = 2, BH_LOG_DEBUG = 3 };

/* ---- the host's function table ---------------------------------------------------------- */

struct bh_host_api {
    size_t size;
    uint32_t abi_major;
    uint32_t abi_minor;
    /* Structured log line attributed to the plugin. */
    void (*log)(enum bh_log_level level, const char *plugin, const char *fmt, ...) BH_PRINTF(3, 4);
    /* Fills err and returns -1, so plugins can write `return host->err_set(err, ...)`. */
    int (*err_set)(struct bh_err *err, int code, const char *fmt, ...) BH_PRINTF(3, 4);
    /* Typed access to the validated config; keys must be declared in the schema. */
    const char *(*config_string)(const struct bh_config *cfg, const char *key);
    long long (*config_int)(const struct bh_config *cfg, const char *key);
    int (*config_bool)(const struct bh_config *cfg, const char *key);
    /* Runs argv[0] (absolute path or PATH lookup) without a shell, waits, captures up to
     * outlen-1 bytes of stdout into out (may be NULL). Non-zero exit is an error carrying
     * the command's stderr; a command still running after 60 s is killed (BH_ETIMEOUT). */
    int (*run)(const char *const argv[], char *out, size_t outlen, struct bh_err *err);
    /* The daemon's state directory (absolute); plugins keep their files below it. */
    const char *(*state_dir)(void);
    /* ABI 1.1: a secret value from the daemon's secret store. With tenant set, looks up the
     * tenant's own secret (tenantSecretKeyRef). *value is malloc'd; the plugin frees it
     * (and should wipe it first). BH_ENOTFOUND if absent. */
    int (*secret_get)(const char *name, const char *key, const char *tenant, char **value,
                      struct bh_err *err);
};

/* True if a size-prefixed struct from a peer is large enough to hold `field` (and, for a
 * function pointer, that it is set): how both sides read fields added in later minors. */
#define BH_HAS_FIELD(s, type, field) ((s)->size >= offsetof(type, field) + sizeof((s)->field))
#define BH_HAS_OP(s, type, field) (BH_HAS_FIELD(s, type, field) && (s)->field != NULL)

/* ---- network plugins ---------------------------------------------------------------------- */

/* Flags a network plugin returns from prepare(). */
#define BH_NET_SOCKET_DIR 0x1 /* bind-mount a per-instance socket dir at /run/boilerhouse */
#define BH_NET_NEW_NETNS 0x2  /* the container gets a fresh network namespace */
#define BH_NET_RESOLVER 0x4   /* nameservers below is set: the host writes /etc/resolv.conf */

struct bh_net_request {
    size_t size;
    const char *instance_id;  /* [a-z0-9-], chosen by the host */
    const char *tenant_id;    /* validated; may be NULL for pool instances */
    const char *workload;     /* workload name */
    const char *network_json; /* the workload's spec.network as JSON text (may be "{}") */
    const char *netns_path;   /* set for attach/detach: /proc/<pid>/ns/net; NULL for prepare */
    int pid;                  /* set for attach: the container's init pid */
};

struct bh_net_result {
    size_t size;
    unsigned flags; /* BH_NET_* from prepare() */
    char host[64];  /* attach(): address the host reaches the instance at; "" if none */
    char env[1024]; /* prepare(): extra NAME=value lines for the container, '\n'-separated */
    /* ABI 1.1, prepare(): a PEM file (host path) the instance must trust; the host appends it
     * to the instance's CA bundle and points SSL_CERT_FILE and friends at it. "" if none. */
    char ca_pem_path[256];
    /* prepare(): the nameservers the instance's /etc/resolv.conf lists, space-separated IPv4
     * addresses the instance can reach; "" for none (lookups then fail at once). Written only
     * by a plugin that sees the field (BH_HAS_FIELD); the host keeps the image's resolv.conf
     * for a plugin that does not set BH_NET_RESOLVER. */
    char nameservers[128];
};

/* In every ops table, init and fini may be NULL for a plugin that keeps no state; the host
 * then passes a NULL state to the other calls. */
struct bh_network_ops {
    size_t size;
    int (*init)(void **state, const struct bh_config *cfg, struct bh_err *err);
    void (*fini)(void *state);
    /* Before the container exists: say what the container needs. */
    int (*prepare)(void *state, const struct bh_net_request *req, struct bh_net_result *res,
                   struct bh_err *err);
    /* After `create`, before `start`: wire the container's namespace. */
    int (*attach)(void *state, const struct bh_net_request *req, struct bh_net_result *res,
                  struct bh_err *err);
    /* Undo attach; must be idempotent and succeed when nothing is left to undo. */
    int (*detach)(void *state, const struct bh_net_request *req, struct bh_err *err);
    /* ABI 1.1, optional: the instance now belongs to req->tenant_id (a cold boot for a tenant,
     * or a warm pool instance being claimed). Per-tenant policy (credentials) is bound here,
     * without restarting the instance. */
    int (*bind_tenant)(void *state, const struct bh_net_request *req, struct bh_err *err);
};

/* ---- storage plugins ---------------------------------------------------------------------- */

/* Keys are relative paths built by the host from validated names: "<workload>/<tenant>.snap".
 * put() must be atomic and durable: after it returns 0 the object survives a crash, and
 * until then the previous object under the key is untouched. put() may keep src_path's
 * inode (a hard link) instead of copying it: the host never modifies src_path afterwards (it
 * only unlinks it). get() writes a scratch copy for the host and need not sync it. */
struct bh_storage_ops {
    size_t size;
    int (*init)(void **state, const struct bh_config *cfg, struct bh_err *err);
    void (*fini)(void *state);
    int (*put)(void *state, const char *key, const char *src_path, struct bh_err *err);
    int (*get)(void *state, const char *key, const char *dst_path, struct bh_err *err);
    /* 0 and *size set if present; BH_ENOTFOUND error if absent. */
    int (*stat)(void *state, const char *key, uint64_t *size, struct bh_err *err);
    int (*del)(void *state, const char *key, struct bh_err *err);
};

/* ---- the entry point ---------------------------------------------------------------------- */

struct bh_plugin_info {
    size_t size;
    uint32_t abi_major;
    uint32_t abi_minor;
    const char *build_sig; /* BH_PLUGIN_BUILD_SIG */
    enum bh_plugin_kind kind;
    const char *name; /* must match the file name: bh-<kind>-<name>.so */
    const char *version;
    const struct bh_config_field *config_schema; /* may be NULL */
    size_t n_config;
    /* struct bh_network_ops or struct bh_storage_ops, by kind. ABI 1.0 defines no ops for
     * trigger and guard plugins yet: the host refuses them until it does. */
    const void *ops;
};

typedef const struct bh_plugin_info *(*bh_plugin_entry_fn)(const struct bh_host_api *host);

#define BH_PLUGIN_ENTRY_SYMBOL "bh_plugin_entry"

#ifdef __cplusplus
}
#endif

#endif
