/*
 * Boilerhouse plugin SDK: the only header a plugin includes.
 *
 * A plugin is a shared object named bh-<kind>-<name>.so that exports exactly one symbol,
 * bh_plugin_entry(). The host calls it once at startup with its function table and reads
 * back a constant struct bh_plugin_info. Before reading anything else the host checks
 * info->size, info->abi_major and info->build_sig; a mismatch refuses the plugin with an
 * error naming the file, and the daemon starts without it.
 *
 * ABI rules (docs/plugin-abi.md): every struct that crosses the boundary starts with its size
 * and only grows at the end; a new field is read only when the peer's size says it is there.
 * A minor adds only optional ops and fields, so a plugin built against an older minor of the
 * same major loads. Every host call takes the plugin instance's handle first. Memory the host
 * hands out is released through host->free. Fallible calls return int (< 0 is an error) and
 * take a caller-owned struct bh_err last. Threading: see BH_PLUGIN_THREADSAFE.
 */
#ifndef BOILERHOUSE_PLUGIN_H
#define BOILERHOUSE_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BH_PLUGIN_ABI_MAJOR 2
#define BH_PLUGIN_ABI_MINOR 3

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

/* Fixed-width constants, not enums: an enum's size is the compiler's choice. */
#define BH_PLUGIN_TRIGGER 1u
#define BH_PLUGIN_GUARD 2u
#define BH_PLUGIN_STORAGE 3u
#define BH_PLUGIN_NETWORK 4u

/* struct bh_plugin_info.flags */
/* Every op may be called concurrently (from the 8 reconciler workers and the pool boot
 * threads). Without this flag the host holds a per-plugin mutex around each op and init/fini,
 * so the plugin sees one call at a time. */
#define BH_PLUGIN_THREADSAFE 0x1u

/* ---- configuration ---------------------------------------------------------------------- */

#define BH_CFG_STRING 1u
#define BH_CFG_INT 2u
#define BH_CFG_BOOL 3u
#define BH_CFG_LIST 4u /* a JSON array; only in a served-value schema (info->serves_schema) */
/* 2.1: any JSON value (a string or an object, say); only in a served-value schema. Read it
 * with host->config_json. */
#define BH_CFG_JSON 5u

/* One declared key. The host validates a plugin's config against this table (types, required
 * keys, defaults) and rejects unknown keys before the plugin sees it. The same shape declares
 * the keys of the plugin's part of a resource (info->serves_schema). Tables are read with
 * the element size the plugin declares (info->field_size), so this struct may grow. */
struct bh_config_field {
    const char *key;
    uint32_t type;             /* BH_CFG_* */
    uint32_t required;         /* 0 or 1 */
    const char *default_value; /* as text; NULL for none */
    const char *help;
};

/* One instance of a plugin, owned by the host: the first argument of every host call. The
 * host attributes log lines, keeps the config, the state directory and secret access per
 * handle. A plugin kind may get several instances (one per trigger resource); each init gets
 * its own handle, valid until its fini returns. */
struct bh_plugin_handle;

#define BH_LOG_ERROR 0u
#define BH_LOG_WARN 1u
#define BH_LOG_INFO 2u
#define BH_LOG_DEBUG 3u

/* ---- events (2.1): what triggers emit and guards judge ------------------------------------ */

/* A normalised event. Strings are borrowed for the duration of the call they are passed to. */
struct bh_event {
    size_t size;
    const char *text;     /* the message for the agent; "" if none */
    const char *source;   /* who sent it, free text for logs ("telegram:@jane", "cron") */
    const char *raw_json; /* the payload as JSON text; tenant.from reads dot paths in it */
    /* Set by the host when it hands the event to a guard; triggers leave them NULL. */
    const char *tenant;  /* the resolved tenant ID */
    const char *trigger; /* the trigger's name */
};

/* struct bh_event_reply.verdict */
#define BH_VERDICT_ALLOW 0u /* delivered: body is the driver's answer */
#define BH_VERDICT_DENY 1u  /* refused (tenant not resolvable, or a guard said no): see reason */
#define BH_VERDICT_BUSY 2u  /* the tenant's queue is full: try again later */
#define BH_VERDICT_ERROR 3u /* a guard errored (fail closed) or the claim or delivery failed */

struct bh_event_reply {
    size_t size;
    uint32_t verdict; /* BH_VERDICT_* */
    uint32_t status;  /* the HTTP status a request/response channel answers with */
    char *body;       /* the driver's answer, host-owned: release with host->reply_free */
    size_t body_len;
    char tenant[64];  /* the resolved tenant, "" if none */
    char reason[512]; /* for DENY/BUSY/ERROR: what to tell the sender */
};

/* One request to a trigger's route on the shared listener. Borrowed for the handler call. */
struct bh_http_request {
    size_t size;
    const char *method;
    const char *path;
    const char *body; /* NUL-terminated */
    size_t body_len;
    /* A request header by name (case-insensitive); NULL if absent. */
    const char *(*header)(const struct bh_http_request *req, const char *name);
    void *host_ctx; /* the host's; leave alone */
};

/* The answer a handler builds with host->http_respond; opaque to plugins. */
struct bh_http_response;

typedef void (*bh_http_handler_fn)(void *arg, const struct bh_http_request *req,
                                   struct bh_http_response *resp);

/* ---- the host's function table ---------------------------------------------------------- */

struct bh_host_api {
    size_t size;
    uint32_t abi_major;
    uint32_t abi_minor;
    /* Structured log line; the host names the plugin from the handle. */
    void (*log)(struct bh_plugin_handle *h, uint32_t level, const char *fmt, ...) BH_PRINTF(3, 4);
    /* Fills err and returns -1, so plugins can write `return host->err_set(h, err, ...)`. */
    int (*err_set)(struct bh_plugin_handle *h, struct bh_err *err, int code, const char *fmt, ...)
        BH_PRINTF(4, 5);
    /* Typed access to the instance's validated config; keys must be declared in the schema.
     * Strings are owned by the host and valid until fini. */
    const char *(*config_string)(struct bh_plugin_handle *h, const char *key);
    long long (*config_int)(struct bh_plugin_handle *h, const char *key);
    int (*config_bool)(struct bh_plugin_handle *h, const char *key);
    /* Runs argv[0] (absolute path or PATH lookup) without a shell, waits, captures up to
     * outlen-1 bytes of stdout into out (may be NULL). Non-zero exit is an error carrying
     * the command's stderr; a command still running after 60 s is killed (BH_ETIMEOUT). */
    int (*run)(struct bh_plugin_handle *h, const char *const argv[], char *out, size_t outlen,
               struct bh_err *err);
    /* This plugin's own directory (absolute) under the daemon's state dir; it may not exist
     * yet. Owned by the host, valid until fini. */
    const char *(*state_dir)(struct bh_plugin_handle *h);
    /* A secret value from the daemon's secret store. With tenant set, looks up the tenant's
     * own secret (tenantSecretKeyRef). *value is allocated by the host: release it with
     * host->free (which wipes it). BH_ENOTFOUND if absent. */
    int (*secret_get)(struct bh_plugin_handle *h, const char *name, const char *key,
                      const char *tenant, char **value, struct bh_err *err);
    /* Releases memory the host handed out (wiped first); NULL is a no-op. */
    void (*free)(struct bh_plugin_handle *h, void *p);

    /* ---- 2.1: triggers and guards. Read them only when BH_HAS_OP(host, ...) says so. ---- */

    /* A config value of any type as JSON text (BH_CFG_JSON keys); NULL if unset. Owned by
     * the host, valid until the instance stops. */
    const char *(*config_json)(struct bh_plugin_handle *h, const char *key);
    /* Trigger instances: runs one event through the pipeline (tenant, guards, claim, driver)
     * and waits for the outcome, which it writes into *reply. Thread-safe; blocks for as long
     * as the claim and the delivery take. 0 when the event got a verdict (allowed or not);
     * -1 only when the call itself was wrong (err says why). */
    int (*emit)(struct bh_plugin_handle *h, const struct bh_event *ev, struct bh_event_reply *reply,
                struct bh_err *err);
    /* Releases what emit wrote into *reply (reply->body). */
    void (*reply_free)(struct bh_plugin_handle *h, struct bh_event_reply *reply);
    /* Trigger instances: serves POSTs to path ("/hooks/..." on the daemon's listener) with
     * fn until the instance stops. BH_ECONFLICT if another trigger holds path. */
    int (*http_route)(struct bh_plugin_handle *h, const char *path, bh_http_handler_fn fn,
                      void *arg, struct bh_err *err);
    /* From a route handler: the answer. The host copies body. */
    void (*http_respond)(struct bh_plugin_handle *h, struct bh_http_response *resp, uint32_t status,
                         const char *content_type, const char *body, size_t len);
    /* Trigger instances: the adapter has stopped working (its poll loop died). The host
     * reports reason in the trigger's status, stops the instance and starts it again with
     * backoff. Callable from any thread; the instance must not emit afterwards. */
    void (*failed)(struct bh_plugin_handle *h, const char *reason);
    /* Status the host shows beside the trigger's phase (status.adapter.<key>), e.g. the next
     * scheduled time of a cron trigger. value NULL removes it. */
    void (*status_set)(struct bh_plugin_handle *h, const char *key, const char *value);
};

/* True if a size-prefixed struct from a peer is large enough to hold `field` (and, for a
 * function pointer, that it is set): how both sides read fields added in later minors. */
#define BH_HAS_FIELD(s, type, field) ((s)->size >= offsetof(type, field) + sizeof((s)->field))
#define BH_HAS_OP(s, type, field) (BH_HAS_FIELD(s, type, field) && (s)->field != NULL)

/* Every ops table starts with these three members; init and fini may be NULL for a plugin
 * that keeps no state (the host then passes a NULL state to the other calls). init gets the
 * instance's handle; a plugin that calls the host from its ops keeps it in *state. */
#define BH_PLUGIN_OPS_HEAD                                                                         \
    size_t size;                                                                                   \
    int (*init)(struct bh_plugin_handle * h, void **state, struct bh_err *err);                    \
    void (*fini)(void *state)

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
    uint32_t flags; /* BH_NET_* from prepare() */
    char host[64];  /* attach(): address the host reaches the instance at; "" if none */
    char env[1024]; /* prepare(): extra NAME=value lines for the container, '\n'-separated */
    /* prepare(): a PEM file (host path) the instance must trust; the host appends it
     * to the instance's CA bundle and points SSL_CERT_FILE and friends at it. "" if none. */
    char ca_pem_path[256];
    /* prepare(): the nameservers the instance's /etc/resolv.conf lists, space-separated IPv4
     * addresses the instance can reach; "" for none (lookups then fail at once). Written only
     * by a plugin that sees the field (BH_HAS_FIELD); the host keeps the image's resolv.conf
     * for a plugin that does not set BH_NET_RESOLVER. */
    char nameservers[128];
};

/* Required: the head, prepare, attach, detach. The host loads a table that ends after detach
 * (a plugin built against an older minor) and treats the later ops as absent. A network
 * plugin serves one value of spec.network.access (info->serves) and declares the other keys
 * of spec.network it reads (info->serves_schema); the host refuses workloads that ask for
 * an access no loaded plugin serves or give keys its plugin does not declare. */
struct bh_network_ops {
    BH_PLUGIN_OPS_HEAD;
    /* Before the container exists: say what the container needs. */
    int (*prepare)(void *state, const struct bh_net_request *req, struct bh_net_result *res,
                   struct bh_err *err);
    /* After `create`, before `start`: wire the container's namespace. */
    int (*attach)(void *state, const struct bh_net_request *req, struct bh_net_result *res,
                  struct bh_err *err);
    /* Undo attach; must be idempotent and succeed when nothing is left to undo. */
    int (*detach)(void *state, const struct bh_net_request *req, struct bh_err *err);
    /* Optional: the instance now belongs to req->tenant_id (a cold boot for a tenant,
     * or a warm pool instance being claimed). Per-tenant policy (credentials) is bound here,
     * without restarting the instance. */
    int (*bind_tenant)(void *state, const struct bh_net_request *req, struct bh_err *err);
    /* Optional (2.3): counters since init, per workload, as JSON into json[cap]:
     * {"<workload>": {"requests": n, "bytes": n, "denials": n}, ...}; the host exports them as
     * boilerhouse_egress_*_total{workload}. Keep the keys bounded (a few hundred at most).
     * Called at scrape time from any thread. 0, or -1 if there is nothing to say. */
    int (*stats)(void *state, char *json, size_t cap);
};

/* ---- storage plugins ---------------------------------------------------------------------- */

/* Keys are relative paths built by the host from validated names: "<workload>/<tenant>.snap".
 * put() must be atomic and durable: after it returns 0 the object survives a crash, and
 * until then the previous object under the key is untouched. put() may keep src_path's
 * inode (a hard link) instead of copying it: the host never modifies src_path afterwards (it
 * only unlinks it). get() writes a scratch copy for the host and need not sync it. All ops
 * are required. */
struct bh_storage_ops {
    BH_PLUGIN_OPS_HEAD;
    int (*put)(void *state, const char *key, const char *src_path, struct bh_err *err);
    int (*get)(void *state, const char *key, const char *dst_path, struct bh_err *err);
    /* 0 and *size set if present; BH_ENOTFOUND error if absent. */
    int (*stat)(void *state, const char *key, uint64_t *size, struct bh_err *err);
    int (*del)(void *state, const char *key, struct bh_err *err);
    /* 2.3, optional (a table whose size ends before it has none): calls each(ud, key, mtime) for
     * every complete object whose key starts with prefix ("" for all), mtime in seconds since
     * the epoch; stops with that result when each returns nonzero. The host uses it to remove
     * objects that no record names (left by a crash between put and the record switch). */
    int (*list)(void *state, const char *prefix,
                int (*each)(void *ud, const char *key, long long mtime), void *ud,
                struct bh_err *err);
};

/* ---- trigger plugins (2.1) ------------------------------------------------------------------ */

/* A trigger plugin serves one value of a BoilerhouseTrigger's spec.type (info->serves; the
 * plugin's name if NULL) and declares the keys of spec.config in info->serves_schema; the
 * host validates a trigger's config against it when the trigger is applied (a 4xx naming the
 * key), so start() sees only declared, typed keys through host->config_*(inst, key). A key
 * named "path" is a route on the shared listener: the host refuses two triggers with one.
 *
 * start() is called once per trigger object, with that trigger's own handle `inst` (its
 * config, log attribution, state dir); it must return promptly, starting any thread it
 * needs, and emit events with host->emit(inst, ...). stop() undoes start(): when it returns
 * no thread of the instance may call the host any more. A spec change is stop() then start()
 * with the new config. Required: the head, start, stop. */
struct bh_trigger_ops {
    BH_PLUGIN_OPS_HEAD;
    int (*start)(void *state, struct bh_plugin_handle *inst, void **inst_state, struct bh_err *err);
    void (*stop)(void *inst_state);
    /* 2.2, optional: checks a trigger's config beyond its schema's types (a cron expression,
     * a zone name) when the trigger is applied; an error is the apply's 4xx, so it should
     * name the key (spec.config.<key>). inst serves config_*, err_set and log only; it is
     * never started. */
    int (*check)(void *state, struct bh_plugin_handle *inst, struct bh_err *err);
};

/* ---- guard plugins (2.1) ----------------------------------------------------------------------
 */

/* struct bh_guard_verdict.verdict */
#define BH_GUARD_ALLOW 0u
#define BH_GUARD_DENY 1u

struct bh_guard_verdict {
    size_t size;
    uint32_t verdict; /* BH_GUARD_* */
    char reason[512]; /* for DENY: shown to the sender */
};

/* A guard plugin serves one guard type (spec.guards[].type: info->serves, or its name) and
 * declares the keys of spec.guards[].config in info->serves_schema. open() makes one guard
 * instance per guard entry of a running trigger, with its own handle. evaluate() judges one
 * event: 0 with *v filled, or -1 for an error, which refuses the event (fail closed). The host
 * gives evaluate a deadline (BH_GUARD_DEADLINE_MS): past it the event is refused and the
 * late answer ignored, so evaluate must not keep pointers into ev after it returns. Required:
 * the head, open, close, evaluate. */
#define BH_GUARD_DEADLINE_MS 5000

struct bh_guard_ops {
    BH_PLUGIN_OPS_HEAD;
    int (*open)(void *state, struct bh_plugin_handle *inst, void **inst_state, struct bh_err *err);
    void (*close)(void *inst_state);
    int (*evaluate)(void *inst_state, const struct bh_event *ev, struct bh_guard_verdict *v,
                    struct bh_err *err);
};

/* ---- the entry point ---------------------------------------------------------------------- */

struct bh_plugin_info {
    size_t size;
    uint32_t abi_major;
    uint32_t abi_minor;
    const char *build_sig; /* BH_PLUGIN_BUILD_SIG */
    uint32_t kind;         /* BH_PLUGIN_* */
    uint32_t flags;        /* BH_PLUGIN_THREADSAFE */
    const char *name;      /* must match the file name: bh-<kind>-<name>.so */
    const char *version;
    size_t field_size; /* sizeof(struct bh_config_field) as the plugin was built */
    const struct bh_config_field *config_schema; /* may be NULL */
    size_t n_config;
    /* The value of the resource field the plugin serves (network: spec.network.access), a
     * DNS label; NULL for none. serves_schema declares the keys of the plugin's part of the
     * resource (network: spec.network besides access and websocket; trigger: spec.config of a
     * BoilerhouseTrigger; guard: spec.guards[].config). */
    const char *serves;
    const struct bh_config_field *serves_schema; /* may be NULL */
    size_t n_serves_schema;
    /* struct bh_network_ops, bh_storage_ops, bh_trigger_ops or bh_guard_ops, by kind
     * (trigger and guard ops since 2.1). */
    const void *ops;
};

typedef const struct bh_plugin_info *(*bh_plugin_entry_fn)(const struct bh_host_api *host);

#define BH_PLUGIN_ENTRY_SYMBOL "bh_plugin_entry"

#ifdef __cplusplus
}
#endif

#endif
