/* The settings table and the three things it drives: environment, flags, help. */
#include "settings.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "image.h"
#include "log.h"
#include "mem.h"
#include "num.h"

#define SETTINGS_DEFAULT_STATE "/var/lib/boilerhouse"

/* How a value is parsed and where it is stored. */
enum settings_type {
    SET_STR,    /* char *; choices "a|b" if given */
    SET_PATH,   /* char *, made absolute (instance paths derived from it go to the runtime) */
    SET_INT,    /* int in [min, max], times scale */
    SET_SIZE,   /* size_t in [min, max] */
    SET_U32,    /* uint32_t in [min, max] */
    SET_LEVEL,  /* int: a log level name */
    SET_LISTEN, /* HOST:PORT into the char * at offset and the int at ndef (flag only);
                 * "off" (port 0) where min is 0 */
};

struct settings_entry {
    const char *env;  /* NULL: flag only */
    const char *flag; /* NULL: environment only */
    const char *arg;  /* the value's name in help */
    enum settings_type type;
    size_t offset;      /* in struct bh_settings */
    const char *sdef;   /* string default (NULL: unset) */
    long long ndef;     /* numeric default, in the unit of the input; SET_LISTEN: the
                         * offset of the port's int (the host's char * is at offset) */
    long long min, max; /* numeric range */
    int scale;          /* stored = input * scale (0: 1) */
    const char *choices;
    const char *help;
};

#define S_OFF(f) offsetof(struct bh_settings, f)

static const struct settings_entry settings_table[] = {
    {"BOILERHOUSE_STATE_DIR", "state-dir", "DIR", SET_PATH, S_OFF(state_dir),
     SETTINGS_DEFAULT_STATE, 0, 0, 0, 0, NULL, "store, images, instances and snapshots"},
    {NULL, "listen", "HOST:PORT", SET_LISTEN, S_OFF(listen_host), NULL, S_OFF(port), 1, 65535, 0,
     NULL, "address of the REST API (sets both variables below)"},
    {"BOILERHOUSE_LISTEN_HOST", NULL, "HOST", SET_STR, S_OFF(listen_host), "127.0.0.1", 0, 0, 0, 0,
     NULL, "host of the REST API; off loopback BOILERHOUSE_API_KEY is required"},
    {"BOILERHOUSE_PORT", NULL, "PORT", SET_INT, S_OFF(port), NULL, 3000, 1, 65535, 0, NULL,
     "port of the REST API"},
    {NULL, "kube-listen", "HOST:PORT|off", SET_LISTEN, S_OFF(kube_host), NULL, S_OFF(kube_port), 0,
     65535, 0, NULL, "address of the Kubernetes-compatible API, HTTPS (sets both variables below)"},
    {"BOILERHOUSE_KUBE_LISTEN_HOST", NULL, "HOST", SET_STR, S_OFF(kube_host), "127.0.0.1", 0, 0, 0,
     0, NULL, "host of the Kubernetes-compatible API; off loopback the API key is required"},
    {"BOILERHOUSE_KUBE_PORT", NULL, "PORT", SET_INT, S_OFF(kube_port), NULL, 6443, 0, 65535, 0,
     NULL, "port of the Kubernetes-compatible API; 0: not served"},
    {"BOILERHOUSE_API_KEY", NULL, "KEY", SET_STR, S_OFF(api_key), NULL, 0, 0, 0, 0, NULL,
     "bearer key for /api/v1 (environment only: flags show in ps)"},
    {"BOILERHOUSE_PLUGIN_DIR", "plugin-dir", "DIR", SET_STR, S_OFF(plugin_dir),
     bh_settings_default_plugin_dir, 0, 0, 0, 0, NULL, "where bh-*.so plugins are loaded from"},
    {"BOILERHOUSE_UI_DIR", "ui-dir", "DIR", SET_PATH, S_OFF(ui_dir), bh_settings_default_ui_dir, 0,
     0, 0, 0, NULL, "the dashboard's built files, served at /ui"},
    {"BOILERHOUSE_PLUGIN_CONFIG", "plugin-config", "FILE", SET_STR, S_OFF(plugin_config), NULL, 0,
     0, 0, 0, NULL, "plugin settings, YAML/JSON: {\"network/x\": {...}}"},
    {"BOILERHOUSE_REGISTRY_CONFIG", "registry-config", "FILE", SET_STR, S_OFF(registry_config),
     NULL, 0, 0, 0, 0, NULL, "registry credentials and mirrors (JSON)"},
    {"BOILERHOUSE_WORKLOADS_DIR", "workloads-dir", "DIR", SET_PATH, S_OFF(workloads_dir), NULL, 0,
     0, 0, 0, NULL, "apply the *.yaml files there at startup"},
    {"BOILERHOUSE_POLICY_DIR", "policy-dir", "DIR", SET_PATH, S_OFF(policy_dir), NULL, 0, 0, 0, 0,
     NULL, "Lua claim policies and guards (docs/lua.md); default STATE_DIR/policies"},
    {"BOILERHOUSE_RUNTIME", "runtime", "NAME", SET_STR, S_OFF(runtime), NULL, 0, 0, 0, 0,
     "runc|crun|kube",
     "where instances run: runc or crun on this host (detected when unset), or kube: Pods of "
     "the cluster (the default in operator mode)"},
    {"BOILERHOUSE_BUILD_NETWORK", "build-network", "MODE", SET_STR, S_OFF(build_network), "none", 0,
     0, 0, 0, "none|host", "network of Dockerfile RUN steps (buildah --network)"},
    {"BOILERHOUSE_LOG_LEVEL", "log-level", "LEVEL", SET_LEVEL, S_OFF(log_level), "info", 0, 0, 0, 0,
     "error|warn|info|debug", "least severe level logged"},
    {"BOILERHOUSE_CLAIM_TIMEOUT_SECONDS", "claim-timeout", "SECONDS", SET_INT,
     S_OFF(claim_timeout_ms), NULL, 60, 1, 86400, 1000, NULL,
     "how long a claim waits for its instance"},
    {"BOILERHOUSE_WORKERS", "workers", "N", SET_INT, S_OFF(workers), NULL, 8, 1, 256, 0, NULL,
     "reconciler threads"},
    {"BOILERHOUSE_MAX_BOOTS", "max-boots", "N", SET_INT, S_OFF(max_boots), NULL, 4, 1, 1024, 0,
     NULL,
     "instance boots and snapshot restores claims run at once; a claim needing one more is "
     "refused with 503 and Retry-After"},
    {"BOILERHOUSE_MAX_TENANT_INSTANCES", "max-tenant-instances", "N", SET_INT,
     S_OFF(max_tenant_instances), NULL, 16, 0, 1000000, 0, NULL,
     "instances one tenant may hold at once (0: no limit); a claim past it is refused with 429"},
    {"BOILERHOUSE_MAX_BODY_BYTES", "max-body-bytes", "BYTES", SET_SIZE, S_OFF(max_body), NULL,
     1 << 20, 1024, 1LL << 30, 0, NULL, "request body limit"},
    {"BOILERHOUSE_LOG_CAP_BYTES", "log-cap-bytes", "BYTES", SET_SIZE, S_OFF(log_cap), NULL,
     10 << 20, 4096, 1LL << 40, 0, NULL, "container log cap"},
    {"BOILERHOUSE_UID_BASE", "uid-base", "UID", SET_U32, S_OFF(uid_base), NULL, BH_DEFAULT_UID_BASE,
     0, 4294901759LL, 0, NULL, "host uid that container root maps to; 65536 uids from there"},
    {"BOILERHOUSE_EVENTS_BUFFER", "events-buffer", "N", SET_SIZE, S_OFF(events_buffer), NULL, 4096,
     16, 1 << 20, 0, NULL, "operator events kept for /ws replay"},
    {"BOILERHOUSE_WS_QUEUE", "ws-queue", "N", SET_SIZE, S_OFF(ws_queue), NULL, 256, 1, 1 << 20, 0,
     NULL, "events a /ws client may fall behind before it is cut"},
    {"BOILERHOUSE_AUDIT_MAX_RECORDS", "audit-max-records", "N", SET_SIZE, S_OFF(audit_max), NULL,
     100000, 10, 1LL << 32, 0, NULL, "audit records kept (the oldest are dropped)"},
    {"BOILERHOUSE_AUDIT_FLUSH_MS", "audit-flush-ms", "MS", SET_INT, S_OFF(audit_flush_ms), NULL,
     100, 1, 3600000, 0, NULL,
     "audit records of calls that changed nothing (a claim of the instance already held) are "
     "committed this often, not before the answer: a daemon crash may lose this window of them"},
    {"BOILERHOUSE_WS_PING_SECONDS", "ws-ping", "SECONDS", SET_INT, S_OFF(ws_ping_ms), NULL, 20, 1,
     3600, 1000, NULL, "/ws keepalive ping interval"},
    {"BOILERHOUSE_HTTP_IDLE_TIMEOUT_SECONDS", "http-idle-timeout", "SECONDS", SET_INT,
     S_OFF(http_idle_timeout_s), NULL, 30, 1, 3600, 0, NULL,
     "listeners close a connection that sends nothing this long (a request head, a body, "
     "keep-alive)"},
    {"BOILERHOUSE_HTTP_HEAD_TIMEOUT_SECONDS", "http-head-timeout", "SECONDS", SET_INT,
     S_OFF(http_head_timeout_s), NULL, 30, 1, 3600, 0, NULL,
     "listeners cut a connection whose request head is not complete this long after it opened "
     "(or after its previous answer), however slowly it arrives"},
    {"BOILERHOUSE_HTTP_MAX_CONNECTIONS", "http-max-connections", "N", SET_INT,
     S_OFF(http_max_conns), NULL, 2048, 1, 1 << 20, 0, NULL,
     "open connections per listener; more are refused"},
    {"BOILERHOUSE_HTTP_MAX_CONNECTIONS_PER_IP", "http-max-connections-per-ip", "N", SET_INT,
     S_OFF(http_max_conns_per_ip), NULL, 512, 1, 1 << 20, 0, NULL,
     "open connections per listener from one client address; more are refused"},
    {"BOILERHOUSE_RATE_LIMIT", "rate-limit", "PER_SECOND", SET_INT, S_OFF(rate_limit), NULL, 200, 0,
     1000000, 0, NULL,
     "authenticated requests per second per credential (per address without a key); over it "
     "429 + Retry-After; 0: unlimited"},
    {"BOILERHOUSE_RATE_BURST", "rate-burst", "N", SET_INT, S_OFF(rate_burst), NULL, 400, 1,
     10000000, 0, NULL, "requests a credential may make at once above the rate"},
    {"BOILERHOUSE_AUTH_FAILURES", "auth-failures", "N", SET_INT, S_OFF(auth_failures), NULL, 5, 1,
     1000000, 0, NULL,
     "failed authentications in a row from one address before each further one bars it "
     "(429 + Retry-After, 1 s doubling to 60 s)"},
    {"BOILERHOUSE_TLS", "tls", "MODE", SET_STR, S_OFF(tls), "auto", 0, 0, 0, 0, "auto|on|off",
     "TLS on the REST API (/ws and the dashboard too); auto: on off loopback or with --tls-cert"},
    {"BOILERHOUSE_TLS_CERT", "tls-cert", "FILE", SET_PATH, S_OFF(tls_cert), NULL, 0, 0, 0, 0, NULL,
     "the REST API's certificate (PEM, chain after it); unset: made with a CA of its own in "
     "STATE_DIR/tls"},
    {"BOILERHOUSE_TLS_KEY", "tls-key", "FILE", SET_PATH, S_OFF(tls_key), NULL, 0, 0, 0, 0, NULL,
     "the private key of --tls-cert (PEM)"},
    {"BOILERHOUSE_INSECURE_HTTP", "insecure-http", "0|1", SET_INT, S_OFF(insecure_http), NULL, 0, 0,
     1, 0, NULL, "1: allow plain HTTP off loopback (the API key then travels in cleartext)"},
    {"BOILERHOUSE_STORAGE", "storage", "NAME", SET_STR, S_OFF(storage), "local", 0, 0, 0, 0, NULL,
     "snapshot storage plugin"},
    {"BOILERHOUSE_SNAPSHOT_COMPRESSION", "snapshot-compression", "NAME", SET_STR,
     S_OFF(snapshot_compression), "zstd", 0, 0, 0, 0, "zstd|gzip|lz4", "snapshot compression"},
    {"BOILERHOUSE_SNAPSHOT_HOT_BYTES", "snapshot-hot-bytes", "BYTES", SET_SIZE,
     S_OFF(snapshot_hot_bytes), NULL, 8LL << 30, 0, 1LL << 50, 0, NULL,
     "disk kept for parked tenant disks (hot tier, LRU); 0 = none"},
    {"BOILERHOUSE_SNAPSHOT_SHARED", "snapshot-shared", "0|1", SET_INT, S_OFF(snapshot_shared), NULL,
     0, 0, 1, 0, NULL,
     "restore snapshots other daemons stored in the same storage (their records are kept beside "
     "the objects)"},
    {"BOILERHOUSE_KUBECONFIG", "kubeconfig", "FILE", SET_PATH, S_OFF(kubeconfig), NULL, 0, 0, 0, 0,
     NULL,
     "operator mode: the cluster of this kubeconfig's current context (and its namespace) holds "
     "the four kinds; the store is its cache (docs/kubernetes-mode.md)"},
    {"BOILERHOUSE_IN_CLUSTER", "in-cluster", "0|1", SET_INT, S_OFF(kube_in_cluster), NULL, 0, 0, 1,
     0, NULL, "operator mode with the Pod's service account (KUBERNETES_SERVICE_HOST/PORT)"},
    {"BOILERHOUSE_LEASE_DURATION", "lease-duration", "SECONDS", SET_INT, S_OFF(lease_duration_s),
     NULL, 15, 2, 600, 0, NULL,
     "operator mode: the leader's Lease lasts this long unrenewed; a standby takes over after it"},
    {"BOILERHOUSE_OPERATOR_ID", "operator-id", "NAME", SET_STR, S_OFF(operator_id), NULL, 0, 0, 0,
     0, NULL, "operator mode: this replica's Lease holderIdentity (default: hostname_pid)"},
    {"BOILERHOUSE_KUBE_CLUSTER_CIDRS", "kube-cluster-cidrs", "CIDR,...", SET_STR,
     S_OFF(kube_cluster_cidrs), NULL, 0, 0, 0, 0, NULL,
     "Pods: the cluster's Pod and Service ranges, which unrestricted and restricted instances may "
     "not reach (their NetworkPolicies); none when unset"},
    {"BOILERHOUSE_KUBE_OPERATOR_NAMESPACE", "kube-operator-namespace", "NS", SET_STR,
     S_OFF(kube_operator_namespace), NULL, 0, 0, 0, 0, NULL,
     "Pods: where the operator's Pods run, the only ingress of instances (default: the "
     "kubeconfig's namespace)"},
    {"BOILERHOUSE_KUBE_DNS_NAMESPACE", "kube-dns-namespace", "NS", SET_STR,
     S_OFF(kube_dns_namespace), NULL, 0, 0, 0, 0, NULL,
     "Pods: the cluster resolver's namespace (default kube-system)"},
    {"BOILERHOUSE_KUBE_DNS_LABEL", "kube-dns-label", "KEY=VALUE", SET_STR, S_OFF(kube_dns_label),
     NULL, 0, 0, 0, 0, NULL, "Pods: the cluster resolver Pods' label (default k8s-app=kube-dns)"},
    {"BOILERHOUSE_KUBE_PROXY_IMAGE", "kube-proxy-image", "IMAGE", SET_STR, S_OFF(kube_proxy_image),
     NULL, 0, 0, 0, 0, NULL,
     "Pods: the image of restricted instances' egress sidecar (default boilerhouse:latest)"},
};

#define SETTINGS_N ((int)BH_ARRAY_LEN(settings_table))
/* getopt_long's value for the table's entry i: above every character it returns itself. */
#define SETTINGS_OPT(i) (1000 + (i))

static void *settings_field(struct bh_settings *s, const struct settings_entry *e)
{
    return (char *)s + e->offset;
}

static int settings_is_string(const struct settings_entry *e)
{
    return e->type == SET_STR || e->type == SET_PATH;
}

/* 1 if value is one of the "a|b|c" choices. */
static int settings_choice_ok(const char *choices, const char *value)
{
    size_t n = strlen(value);
    for (const char *p = choices; p; p = strchr(p, '|')) {
        p += *p == '|';
        if (strncmp(p, value, n) == 0 && (p[n] == '|' || p[n] == '\0'))
            return 1;
    }
    return 0;
}

static int settings_number(const char *value, long long *out)
{
    return bh_num_parse(value, LLONG_MIN, LLONG_MAX, out, NULL);
}

static int settings_set_number(struct bh_settings *s, const struct settings_entry *e, long long n)
{
    void *field = settings_field(s, e);
    if (e->type == SET_INT)
        *(int *)field = (int)(n * (e->scale ? e->scale : 1));
    else if (e->type == SET_SIZE)
        *(size_t *)field = (size_t)n;
    else
        *(uint32_t *)field = (uint32_t)n;
    return 0;
}

static int settings_set_path(struct bh_settings *s, const struct settings_entry *e,
                             const char *value, const char *what, struct bh_err *err)
{
    char **slot = settings_field(s, e);
    char cwd[4096];
    if (value[0] != '/' && !getcwd(cwd, sizeof(cwd)))
        return bh_err_errno(err, BH_EINVAL, "%s: cannot make %s absolute", what, value);
    free(*slot);
    *slot = value[0] == '/' ? bh_xstrdup(value) : bh_xasprintf("%s/%s", cwd, value);
    return 0;
}

static int settings_set_listen(struct bh_settings *s, const struct settings_entry *e,
                               const char *value, const char *what, struct bh_err *err)
{
    int *port_slot = (int *)((char *)s + e->ndef);
    if (e->min == 0 && strcmp(value, "off") == 0) {
        *port_slot = 0;
        return 0;
    }
    const char *colon = strrchr(value, ':');
    long long port = 0;
    if (!colon || colon == value || settings_number(colon + 1, &port) < 0 || port < 1 ||
        port > e->max)
        return bh_err_set(err, BH_EINVAL, "%s: expected %s (port 1..%lld)", what, e->arg, e->max);
    char **host_slot = settings_field(s, e);
    free(*host_slot);
    *host_slot = bh_xstrndup(value, (size_t)(colon - value));
    *port_slot = (int)port;
    return 0;
}

static int settings_set_level(struct bh_settings *s, const struct settings_entry *e,
                              const char *value)
{
    uint32_t level;
    if (bh_log_parse_level(value, &level) < 0)
        return -1;
    *(int *)settings_field(s, e) = (int)level;
    return 0;
}

/* Parses value (from what: "BOILERHOUSE_X=\"v\"" or "--x v") into e's field. */
static int settings_set(struct bh_settings *s, const struct settings_entry *e, const char *value,
                        const char *what, struct bh_err *err)
{
    if (e->choices && !settings_choice_ok(e->choices, value))
        return bh_err_set(err, BH_EINVAL, "%s: expected one of %s", what, e->choices);
    long long n = 0;
    switch (e->type) {
    case SET_STR:
        free(*(char **)settings_field(s, e));
        *(char **)settings_field(s, e) = bh_xstrdup(value);
        return 0;
    case SET_PATH:
        return settings_set_path(s, e, value, what, err);
    case SET_LEVEL: /* a name among the choices checked above */
        return settings_set_level(s, e, value);
    case SET_LISTEN:
        return settings_set_listen(s, e, value, what, err);
    default:
        if (settings_number(value, &n) < 0 || n < e->min || n > e->max)
            return bh_err_set(err, BH_EINVAL, "%s: expected an integer in %lld..%lld", what, e->min,
                              e->max);
        return settings_set_number(s, e, n);
    }
}

static void settings_defaults(struct bh_settings *s)
{
    memset(s, 0, sizeof(*s));
    for (int i = 0; i < SETTINGS_N; i++) {
        const struct settings_entry *e = &settings_table[i];
        if (e->type == SET_LISTEN)
            continue;
        if (e->sdef)
            BH_IGNORE(settings_set(s, e, e->sdef, "default", NULL)); /* the table's own value */
        else if (!settings_is_string(e))
            BH_IGNORE(settings_set_number(s, e, e->ndef)); /* cannot fail */
    }
}

int bh_settings_from_env(struct bh_settings *s, struct bh_err *err)
{
    settings_defaults(s);
    for (int i = 0; i < SETTINGS_N; i++) {
        const struct settings_entry *e = &settings_table[i];
        const char *v = e->env ? getenv(e->env) : NULL;
        if (!v || !*v)
            continue;
        bh_autofree char *what = bh_xasprintf("%s=\"%.64s\"", e->env, v);
        if (settings_set(s, e, v, what, err) < 0)
            return -1;
    }
    return 0;
}

int bh_settings_from_args(struct bh_settings *s, int argc, char **argv, int *help,
                          struct bh_err *err)
{
    struct option opts[SETTINGS_N + 2];
    int n = 0;
    for (int i = 0; i < SETTINGS_N; i++)
        if (settings_table[i].flag)
            opts[n++] =
                (struct option){settings_table[i].flag, required_argument, NULL, SETTINGS_OPT(i)};
    opts[n++] = (struct option){"help", no_argument, NULL, 'h'};
    opts[n] = (struct option){NULL, 0, NULL, 0};
    *help = 0;
    optind = 0; /* GNU: start over (the tests parse several argument lists) */
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (c == 'h') {
            *help = 1;
            return 0;
        }
        if (c == ':' || c == '?')
            return bh_err_set(err, BH_EINVAL, "%s: %s", argv[optind - 1],
                              c == ':' ? "needs a value" : "unknown option");
        const struct settings_entry *e = &settings_table[c - SETTINGS_OPT(0)];
        bh_autofree char *what = bh_xasprintf("--%s %.64s", e->flag, optarg);
        if (settings_set(s, e, optarg, what, err) < 0)
            return -1;
    }
    if (optind != argc)
        return bh_err_set(err, BH_EINVAL, "unexpected argument %s", argv[optind]);
    return 0;
}

static void settings_print_default(FILE *f, const struct settings_entry *e)
{
    if (e->sdef)
        fprintf(f, " (default %s)", e->sdef);
    else if (!settings_is_string(e) && e->type != SET_LISTEN)
        fprintf(f, " (default %lld, %lld..%lld)", e->ndef, e->min, e->max);
}

void bh_settings_print_help(FILE *f)
{
    fputs("usage: boilerhouse serve [options]\n"
          "Each setting comes from its flag, else its environment variable, else its default;\n"
          "a malformed value stops the daemon (exit 2) naming the flag or variable.\n",
          f);
    for (int i = 0; i < SETTINGS_N; i++) {
        const struct settings_entry *e = &settings_table[i];
        fputs("  ", f);
        if (e->flag)
            fprintf(f, "--%s %s%s", e->flag, e->arg, e->env ? ", " : "");
        if (e->env)
            fprintf(f, "%s=%s", e->env, e->arg);
        fprintf(f, "\n      %s", e->help);
        if (e->choices)
            fprintf(f, ": %s", e->choices);
        settings_print_default(f, e);
        fputc('\n', f);
    }
}

void bh_settings_free(struct bh_settings *s)
{
    for (int i = 0; i < SETTINGS_N; i++) {
        if (settings_is_string(&settings_table[i])) {
            char **slot = settings_field(s, &settings_table[i]);
            free(*slot);
            *slot = NULL;
        }
    }
}
