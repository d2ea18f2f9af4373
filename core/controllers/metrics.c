/* Metrics (metrics.h): fixed tables of histograms and counters under one mutex, filled from
 * published events, and a renderer that adds the gauges read from the store and /proc. */
#include "metrics.h"

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "events.h"
#include "json.h"
#include "mem.h"
#include "plugin.h"
#include "queue.h"
#include "store.h"

#define METRICS_MAX_TRIGGER_SERIES 512

static const double metrics_secs[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                      1,     2.5,  5,     10,   30,  60,   120};
static const double metrics_bytes[] = {1 << 10, 1 << 14, 1 << 17, 1 << 20,  1 << 23,
                                       1 << 26, 1 << 28, 1 << 30, 1LL << 32};
/* Store commits and policy runs take micro- to milliseconds. */
static const double metrics_fast[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                      0.025,  0.05,    0.1,    0.25,  0.5,    1,     5};
#define METRICS_NFAST BH_ARRAY_LEN(metrics_fast)
#define METRICS_NSECS BH_ARRAY_LEN(metrics_secs)
#define METRICS_NBYTES BH_ARRAY_LEN(metrics_bytes)

struct metrics_hist {
    unsigned long long bucket[16]; /* per bound, not cumulative; rendered cumulative */
    unsigned long long count;
    double sum;
};

static const char *const metrics_sources[] = {"existing", "pool",      "pool+data",
                                              "cold",     "cold+data", "other"};
static const char *const metrics_outcomes[] = {"success", "error"};
static const char *const metrics_variants[] = {"normal", "force", BH_RELEASE_IDLE,
                                               BH_RELEASE_WORKLOAD_DELETED, "other"};
static const char *const metrics_ops[] = {"hibernate", "restore"};
static const char *const metrics_policy_kinds[] = {"claim_policy", "guard"};
static const char *const metrics_verdicts[] = {"allow", "deny", "error"};
#define N_SOURCES BH_ARRAY_LEN(metrics_sources)
#define N_VARIANTS BH_ARRAY_LEN(metrics_variants)

struct metrics_trigger {
    char *trigger, *verdict;
    unsigned long long n;
    struct metrics_trigger *next;
};

struct bh_metrics {
    pthread_mutex_t lock;
    struct metrics_hist claim[N_SOURCES][2];
    unsigned long long releases[N_VARIANTS];
    unsigned long long idle_timeouts;
    struct metrics_hist op_secs[2][2]; /* [hibernate|restore][success|error] */
    struct metrics_hist op_bytes[2];   /* successful ones */
    struct metrics_trigger *triggers;
    int n_triggers;
    struct metrics_hist policy[2][3]; /* [claim_policy|guard][allow|deny|error] */
    struct metrics_hist commit;       /* store commits */
};

static size_t metrics_index(const char *const *names, size_t n, const char *v)
{
    for (size_t i = 0; i + 1 < n; i++)
        if (v && strcmp(names[i], v) == 0)
            return i;
    return n - 1; /* the last name is the catch-all */
}

static void metrics_observe(struct metrics_hist *h, const double *bounds, size_t n, double v)
{
    size_t i = 0;
    while (i < n && v > bounds[i])
        i++;
    if (i < n)
        h->bucket[i]++;
    h->count++;
    h->sum += v;
}

static void metrics_count_trigger(struct bh_metrics *m, const char *trigger, const char *verdict)
{
    struct metrics_trigger *t = m->triggers;
    if (m->n_triggers >= METRICS_MAX_TRIGGER_SERIES)
        trigger = "_other"; /* bounded even if triggers come and go by the thousand */
    while (t && (strcmp(t->trigger, trigger) != 0 || strcmp(t->verdict, verdict) != 0))
        t = t->next;
    if (!t) {
        t = bh_xcalloc(1, sizeof(*t));
        t->trigger = bh_xstrdup(trigger);
        t->verdict = bh_xstrdup(verdict);
        t->next = m->triggers;
        m->triggers = t;
        m->n_triggers++;
    }
    t->n++;
}

static void metrics_op(struct bh_metrics *m, int op, int failed, const cJSON *ev)
{
    metrics_observe(&m->op_secs[op][failed], metrics_secs, METRICS_NSECS,
                    bh_json_num(ev, "ms", 0) / 1000.0);
    if (!failed)
        metrics_observe(&m->op_bytes[op], metrics_bytes, METRICS_NBYTES,
                        bh_json_num(ev, "bytes", 0));
}

static void metrics_on_event(const char *type, const cJSON *ev, void *ud)
{
    struct bh_metrics *m = ud;
    int failed = strcmp(type, BH_EVT_CLAIM_FAILED) == 0;
    pthread_mutex_lock(&m->lock);
    if (failed || strcmp(type, BH_EVT_CLAIMED) == 0) {
        size_t s = metrics_index(metrics_sources, N_SOURCES, bh_json_str(ev, "source"));
        metrics_observe(&m->claim[s][failed], metrics_secs, METRICS_NSECS,
                        bh_json_num(ev, "latencyMs", 0) / 1000.0);
    } else if (strcmp(type, BH_EVT_RELEASED) == 0) {
        m->releases[metrics_index(metrics_variants, N_VARIANTS, bh_json_str(ev, "variant"))]++;
    } else if (strcmp(type, BH_EVT_IDLE_TIMEOUT) == 0) {
        m->idle_timeouts++;
    } else if (strncmp(type, "hibernate.", 10) == 0 || strncmp(type, "restore.", 8) == 0) {
        metrics_op(m, type[0] == 'r', strstr(type, ".failed") != NULL, ev);
    } else if (strcmp(type, BH_EVT_TRIGGER_EVENT) == 0) {
        const char *t = bh_json_str(ev, "trigger"), *v = bh_json_str(ev, "verdict");
        metrics_count_trigger(m, t ? t : "?", v ? v : "?");
    }
    pthread_mutex_unlock(&m->lock);
}

struct bh_metrics *bh_metrics_new(struct bh_ctx *ctx)
{
    struct bh_metrics *m = bh_xcalloc(1, sizeof(*m));
    pthread_mutex_init(&m->lock, NULL);
    bh_events_listen(ctx->events, metrics_on_event, m);
    return m;
}

double bh_metrics_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void bh_metrics_policy_run(struct bh_metrics *m, enum bh_metrics_policy kind,
                           enum bh_metrics_verdict verdict, double seconds)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->lock);
    metrics_observe(&m->policy[kind][verdict], metrics_fast, METRICS_NFAST, seconds);
    pthread_mutex_unlock(&m->lock);
}

void bh_metrics_store_commit(double seconds, void *ud)
{
    struct bh_metrics *m = ud;
    if (!m)
        return;
    pthread_mutex_lock(&m->lock);
    metrics_observe(&m->commit, metrics_fast, METRICS_NFAST, seconds);
    pthread_mutex_unlock(&m->lock);
}

void bh_metrics_free(struct bh_metrics *m)
{
    if (!m)
        return;
    for (struct metrics_trigger *t = m->triggers, *n; t; t = n) {
        n = t->next;
        free(t->trigger);
        free(t->verdict);
        free(t);
    }
    pthread_mutex_destroy(&m->lock);
    free(m);
}

/* ---- rendering ---- */

static void metrics_head(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Writes v as a label value (quotes, backslashes and newlines escaped). */
static void metrics_label_value(FILE *f, const char *v)
{
    for (; *v; v++) {
        if (*v == '"' || *v == '\\')
            fputc('\\', f);
        if (*v == '\n')
            fputs("\\n", f);
        else
            fputc(*v, f);
    }
}

static void metrics_hist_write(FILE *f, const char *name, const char *labels,
                               const struct metrics_hist *h, const double *bounds, size_t n)
{
    unsigned long long cum = 0;
    const char *sep = labels ? "," : "";
    labels = labels ? labels : "";
    for (size_t i = 0; i < n; i++) {
        cum += h->bucket[i];
        fprintf(f, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, bounds[i], cum);
    }
    fprintf(f, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, h->count);
    const char *open = *labels ? "{" : "", *close = *labels ? "}" : "";
    fprintf(f, "%s_sum%s%s%s %.6f\n%s_count%s%s%s %llu\n", name, open, labels, close, h->sum, name,
            open, labels, close, h->count);
}

static void metrics_write_claims(FILE *f, struct bh_metrics *m)
{
    metrics_head(f, "boilerhouse_claim_duration_seconds", "histogram",
                 "Time the claim controller took to serve a claim, by source and outcome.");
    for (size_t s = 0; s < N_SOURCES; s++)
        for (int o = 0; o < 2; o++) {
            char labels[96];
            snprintf(labels, sizeof(labels), "source=\"%s\",outcome=\"%s\"", metrics_sources[s],
                     metrics_outcomes[o]);
            metrics_hist_write(f, "boilerhouse_claim_duration_seconds", labels, &m->claim[s][o],
                               metrics_secs, METRICS_NSECS);
        }
    metrics_head(f, "boilerhouse_claims_total", "counter", "Claims served, by source and outcome.");
    for (size_t s = 0; s < N_SOURCES; s++)
        for (int o = 0; o < 2; o++)
            fprintf(f, "boilerhouse_claims_total{source=\"%s\",outcome=\"%s\"} %llu\n",
                    metrics_sources[s], metrics_outcomes[o], m->claim[s][o].count);
    metrics_head(f, "boilerhouse_releases_total", "counter",
                 "Claims released, by variant (normal, force, idle, workload-deleted).");
    for (size_t v = 0; v < N_VARIANTS; v++)
        fprintf(f, "boilerhouse_releases_total{variant=\"%s\"} %llu\n", metrics_variants[v],
                m->releases[v]);
    metrics_head(f, "boilerhouse_idle_timeouts_total", "counter",
                 "Claims released because their instance went idle.");
    fprintf(f, "boilerhouse_idle_timeouts_total %llu\n", m->idle_timeouts);
}

static void metrics_write_ops(FILE *f, struct bh_metrics *m)
{
    metrics_head(f, "boilerhouse_snapshot_duration_seconds", "histogram",
                 "Hibernate (save) and restore durations, by operation and outcome.");
    for (int op = 0; op < 2; op++)
        for (int o = 0; o < 2; o++) {
            char labels[64];
            snprintf(labels, sizeof(labels), "op=\"%s\",outcome=\"%s\"", metrics_ops[op],
                     metrics_outcomes[o]);
            metrics_hist_write(f, "boilerhouse_snapshot_duration_seconds", labels,
                               &m->op_secs[op][o], metrics_secs, METRICS_NSECS);
        }
    metrics_head(f, "boilerhouse_snapshot_transfer_bytes", "histogram",
                 "Archive size of successful hibernates and restores.");
    for (int op = 0; op < 2; op++) {
        char labels[32];
        snprintf(labels, sizeof(labels), "op=\"%s\"", metrics_ops[op]);
        metrics_hist_write(f, "boilerhouse_snapshot_transfer_bytes", labels, &m->op_bytes[op],
                           metrics_bytes, METRICS_NBYTES);
    }
    metrics_head(f, "boilerhouse_trigger_events_total", "counter",
                 "Trigger events, by trigger and verdict.");
    for (const struct metrics_trigger *t = m->triggers; t; t = t->next) {
        fputs("boilerhouse_trigger_events_total{trigger=\"", f);
        metrics_label_value(f, t->trigger);
        fprintf(f, "\",verdict=\"%s\"} %llu\n", t->verdict, t->n);
    }
}

static void metrics_write_runs(FILE *f, struct bh_metrics *m)
{
    metrics_head(f, "boilerhouse_policy_duration_seconds", "histogram",
                 "Run time of Lua claim policies and trigger guards, by kind and verdict.");
    for (size_t k = 0; k < BH_ARRAY_LEN(metrics_policy_kinds); k++)
        for (size_t v = 0; v < BH_ARRAY_LEN(metrics_verdicts); v++) {
            char labels[64];
            snprintf(labels, sizeof(labels), "kind=\"%s\",verdict=\"%s\"", metrics_policy_kinds[k],
                     metrics_verdicts[v]);
            metrics_hist_write(f, "boilerhouse_policy_duration_seconds", labels, &m->policy[k][v],
                               metrics_fast, METRICS_NFAST);
        }
    metrics_head(f, "boilerhouse_store_commit_duration_seconds", "histogram",
                 "Time a store write took to commit, waiting for the store included.");
    metrics_hist_write(f, "boilerhouse_store_commit_duration_seconds", NULL, &m->commit,
                       metrics_fast, METRICS_NFAST);
}

/* Adds 1 (or v) to the count kept under a label-set key in map. */
static void metrics_tally(cJSON *map, const char *key, double v)
{
    cJSON *n = cJSON_GetObjectItemCaseSensitive(map, key);
    if (n)
        cJSON_SetNumberValue(n, n->valuedouble + v);
    else
        cJSON_AddNumberToObject(map, key, v);
}

static void metrics_write_map(FILE *f, const char *name, const cJSON *map)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, map)
        fprintf(f, "%s{%s} %.0f\n", name, it->string, it->valuedouble);
}

static char *metrics_labels2(const char *k1, const char *v1, const char *k2, const char *v2)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    fprintf(f, "%s=\"", k1);
    metrics_label_value(f, v1 ? v1 : "");
    if (k2) {
        fprintf(f, "\",%s=\"", k2);
        metrics_label_value(f, v2 ? v2 : "");
    }
    fputc('"', f);
    fclose(f);
    return buf;
}

static int metrics_write_instances(FILE *f, struct bh_ctx *ctx, struct bh_err *err)
{
    cJSON *list = NULL, *map = cJSON_CreateObject();
    if (bh_store_list(ctx->store, "Instance", NULL, &list, NULL, err) < 0) {
        cJSON_Delete(map);
        return -1;
    }
    const cJSON *o;
    cJSON_ArrayForEach(o, list) {
        const char *phase = bh_json_str(o, "status.phase");
        bh_autofree char *k = metrics_labels2("workload", bh_json_str(o, "spec.workload"), "phase",
                                              phase ? phase : "Unknown");
        metrics_tally(map, k, 1);
    }
    metrics_head(f, "boilerhouse_instances", "gauge", "Instances, by workload and phase.");
    metrics_write_map(f, "boilerhouse_instances", map);
    cJSON_Delete(map);
    cJSON_Delete(list);
    return 0;
}

static int metrics_write_pools(FILE *f, struct bh_ctx *ctx, struct bh_err *err)
{
    static const char *const fields[][3] = {
        {"boilerhouse_pool_ready", "status.ready", "Ready instances of a pool."},
        {"boilerhouse_pool_warming", "status.warming", "Instances of a pool still booting."},
        {"boilerhouse_pool_size", "spec.size", "The size a pool is kept at."},
    };
    cJSON *list = NULL;
    if (bh_store_list(ctx->store, "BoilerhousePool", NULL, &list, NULL, err) < 0)
        return -1;
    for (size_t i = 0; i < BH_ARRAY_LEN(fields); i++) {
        metrics_head(f, fields[i][0], "gauge", fields[i][2]);
        const cJSON *o;
        cJSON_ArrayForEach(o, list) {
            bh_autofree char *k = metrics_labels2("pool", bh_json_str(o, "metadata.name"),
                                                  "workload", bh_json_str(o, "spec.workloadRef"));
            fprintf(f, "%s{%s} %lld\n", fields[i][0], k, bh_json_int(o, fields[i][1], 0));
        }
    }
    cJSON_Delete(list);
    return 0;
}

static int metrics_write_snapshots(FILE *f, struct bh_ctx *ctx, struct bh_err *err)
{
    cJSON *list = NULL, *bytes = cJSON_CreateObject(), *count = cJSON_CreateObject();
    int rc = bh_store_list(ctx->store, "Snapshot", NULL, &list, NULL, err);
    const cJSON *o;
    cJSON_ArrayForEach(o, list) {
        bh_autofree char *k =
            metrics_labels2("workload", bh_json_str(o, "spec.workloadRef"), NULL, NULL);
        metrics_tally(bytes, k, bh_json_num(o, "spec.sizeBytes", 0));
        metrics_tally(count, k, 1);
    }
    metrics_head(f, "boilerhouse_snapshot_stored_bytes", "gauge",
                 "Bytes of hibernated tenant snapshots stored, by workload.");
    metrics_write_map(f, "boilerhouse_snapshot_stored_bytes", bytes);
    metrics_head(f, "boilerhouse_snapshots", "gauge", "Hibernated tenant snapshots, by workload.");
    metrics_write_map(f, "boilerhouse_snapshots", count);
    cJSON_Delete(bytes);
    cJSON_Delete(count);
    cJSON_Delete(list);
    return rc;
}

/* The egress counters network plugins keep (bh_network_ops.stats), summed per workload over
 * the plugins that have them. */
static cJSON *metrics_egress_collect(struct bh_ctx *ctx)
{
    cJSON *sum = cJSON_CreateObject();
    struct bh_plugin *pl;
    static char buf[64 << 10]; /* under egress_lock: one scrape at a time */
    for (size_t i = 0; ctx->plugins && (pl = bh_plugins_nth(ctx->plugins, BH_PLUGIN_NETWORK, i));
         i++) {
        const struct bh_network_ops *ops = pl->info->ops;
        if (!BH_HAS_OP(ops, struct bh_network_ops, stats) ||
            BH_PLUGIN_CALL(pl, ops->stats(pl->state, buf, sizeof(buf))) < 0)
            continue;
        buf[sizeof(buf) - 1] = '\0';
        cJSON *one = cJSON_Parse(buf), *w;
        cJSON_ArrayForEach(w, one) {
            cJSON *mine = cJSON_GetObjectItemCaseSensitive(sum, w->string);
            if (!mine)
                mine = cJSON_AddObjectToObject(sum, w->string);
            static const char *const keys[] = {"requests", "bytes", "denials"};
            for (size_t k = 0; k < BH_ARRAY_LEN(keys); k++)
                metrics_tally(mine, keys[k], bh_json_num(w, keys[k], 0));
        }
        cJSON_Delete(one);
    }
    return sum;
}

static void metrics_write_egress(FILE *f, struct bh_ctx *ctx)
{
    static pthread_mutex_t egress_lock = PTHREAD_MUTEX_INITIALIZER;
    static const char *const series[][3] = {
        {"boilerhouse_egress_requests_total", "requests",
         "Requests (and TLS connections) the egress proxy let through, by workload."},
        {"boilerhouse_egress_bytes_total", "bytes",
         "Bytes through the egress proxy (client side, both ways), by workload."},
        {"boilerhouse_egress_denials_total", "denials",
         "Requests and TLS handshakes the egress proxy refused, by workload."},
    };
    pthread_mutex_lock(&egress_lock);
    cJSON *sum = metrics_egress_collect(ctx);
    pthread_mutex_unlock(&egress_lock);
    for (size_t i = 0; i < BH_ARRAY_LEN(series); i++) {
        metrics_head(f, series[i][0], "counter", series[i][2]);
        const cJSON *w;
        cJSON_ArrayForEach(w, sum) {
            bh_autofree char *k = metrics_labels2("workload", w->string, NULL, NULL);
            fprintf(f, "%s{%s} %.0f\n", series[i][0], k, bh_json_num(w, series[i][1], 0));
        }
    }
    cJSON_Delete(sum);
}

/* A "Key:   value kB" line of /proc/self/status, in units of the file. */
static long long metrics_proc_status(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long long v = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, key, n) == 0 && line[n] == ':') {
            v = atoll(line + n + 1);
            break;
        }
    if (f)
        fclose(f);
    return v;
}

static long long metrics_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    long long n = 0;
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n - 3; /* ".", ".." and the directory's own descriptor */
}

/* The listeners' counters (listen.h), labelled by listener: "api" (REST, /ws, /hooks) or
 * "kube" (the Kubernetes-compatible API). */
static void metrics_write_http(FILE *f, struct bh_ctx *ctx)
{
    static const struct {
        const char *name, *type, *labels, *help;
        size_t off;
    } rows[] = {
        {"boilerhouse_http_connections_open", "gauge", "", "Connections open now.",
         offsetof(struct bh_listen_stats, open)},
        {"boilerhouse_http_connections_total", "counter", "", "Connections accepted.",
         offsetof(struct bh_listen_stats, accepted)},
        {"boilerhouse_http_connections_refused_total", "counter", ",reason=\"global\"",
         "Connections refused over a cap (global: the listener's, per_ip: one address's).",
         offsetof(struct bh_listen_stats, refused_global)},
        {"boilerhouse_http_connections_refused_total", NULL, ",reason=\"per_ip\"", NULL,
         offsetof(struct bh_listen_stats, refused_per_ip)},
        {"boilerhouse_http_head_timeouts_total", "counter", "",
         "Connections cut because their request head was not complete in time.",
         offsetof(struct bh_listen_stats, head_timeouts)},
        {"boilerhouse_http_rate_limited_total", "counter", ",reason=\"rate\"",
         "Requests answered 429 (rate: over the credential's rate, auth_backoff: the address "
         "failed to authenticate too often).",
         offsetof(struct bh_listen_stats, rate_limited)},
        {"boilerhouse_http_rate_limited_total", NULL, ",reason=\"auth_backoff\"", NULL,
         offsetof(struct bh_listen_stats, auth_throttled)},
        {"boilerhouse_http_auth_failures_total", "counter", "",
         "Requests with a missing or wrong credential.",
         offsetof(struct bh_listen_stats, auth_failures)},
    };
    const struct {
        const char *name;
        const struct bh_listen_stats *s;
    } listeners[] = {{"api", &ctx->api_stats}, {"kube", &ctx->kapi_stats}};
    for (size_t i = 0; i < BH_ARRAY_LEN(rows); i++) {
        if (rows[i].type)
            metrics_head(f, rows[i].name, rows[i].type, rows[i].help);
        for (size_t j = 0; j < BH_ARRAY_LEN(listeners); j++) {
            const char *field = (const char *)listeners[j].s + rows[i].off;
            long long v =
                rows[i].off == offsetof(struct bh_listen_stats, open)
                    ? (long long)__atomic_load_n((const int64_t *)field, __ATOMIC_RELAXED)
                    : (long long)__atomic_load_n((const uint64_t *)field, __ATOMIC_RELAXED);
            fprintf(f, "%s{listener=\"%s\"%s} %lld\n", rows[i].name, listeners[j].name,
                    rows[i].labels, v);
        }
    }
}

static void metrics_write_process(FILE *f, struct bh_ctx *ctx)
{
    long long readers = 0, cut = 0;
    if (ctx->events)
        bh_events_stats(ctx->events, &readers, &cut);
    metrics_head(f, "boilerhouse_ws_clients", "gauge", "Clients connected to /ws.");
    fprintf(f, "boilerhouse_ws_clients %lld\n", readers);
    metrics_head(f, "boilerhouse_ws_slow_clients_cut_total", "counter",
                 "/ws clients cut for falling too far behind.");
    fprintf(f, "boilerhouse_ws_slow_clients_cut_total %lld\n", cut);
    metrics_head(f, "boilerhouse_reconcile_queue_depth", "gauge",
                 "Keys queued, delayed or being reconciled.");
    fprintf(f, "boilerhouse_reconcile_queue_depth %d\n",
            ctx->queue ? bh_queue_pending(ctx->queue) : 0);
    metrics_head(f, "boilerhouse_reconcile_retries_total", "counter",
                 "Reconciles that failed and were queued again with backoff.");
    fprintf(f, "boilerhouse_reconcile_retries_total %llu\n",
            ctx->queue ? bh_queue_retries(ctx->queue) : 0ULL);
    metrics_head(f, "process_resident_memory_bytes", "gauge", "Resident memory of the daemon.");
    fprintf(f, "process_resident_memory_bytes %lld\n", metrics_proc_status("VmRSS") * 1024);
    metrics_head(f, "process_open_fds", "gauge", "Open file descriptors of the daemon.");
    fprintf(f, "process_open_fds %lld\n", metrics_open_fds());
    metrics_head(f, "process_threads", "gauge", "Threads of the daemon.");
    fprintf(f, "process_threads %lld\n", metrics_proc_status("Threads"));
}

int bh_metrics_render(struct bh_ctx *ctx, char **out, struct bh_err *err)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return bh_err_errno(err, BH_EIO, "open_memstream");
    struct bh_metrics *m = ctx->metrics;
    if (m) {
        pthread_mutex_lock(&m->lock);
        metrics_write_claims(f, m);
        metrics_write_ops(f, m);
        metrics_write_runs(f, m);
        pthread_mutex_unlock(&m->lock);
    }
    int rc = metrics_write_instances(f, ctx, err);
    if (rc == 0)
        rc = metrics_write_pools(f, ctx, err);
    if (rc == 0)
        rc = metrics_write_snapshots(f, ctx, err);
    metrics_write_egress(f, ctx);
    metrics_write_http(f, ctx);
    metrics_write_process(f, ctx);
    fclose(f);
    if (rc < 0) {
        free(buf);
        return -1;
    }
    *out = buf;
    return 0;
}
