/* bh-trigger-cron: emits an event on a cron schedule in an IANA time zone.
 *
 * A scheduler thread per trigger sleeps until the next scheduled instant (waking at least
 * every CRON_TICK_S to notice wall-clock jumps) and starts each run on a thread of its own, so
 * a slow agent never delays the schedule: with concurrencyPolicy Forbid a run that finds the
 * previous one still going is skipped, with Allow it runs beside it. The last scheduled time
 * is persisted in the trigger's state directory; after downtime the latest missed run is
 * started if it is no later than startingDeadlineSeconds (Kubernetes CronJob semantics:
 * unset means no deadline, and more than CRON_MISSED_MAX missed runs start nothing). */
#include <boilerhouse/plugin.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cron_expr.h"
#include "state_file.h"
#include "tz.h"

#define CRON_TICK_S 30
#define CRON_MISSED_MAX 100
#define CRON_INFLIGHT_MAX 64 /* Allow: runs in flight before the next is skipped */
#define CRON_STATE_FILE "last-schedule"

static const struct bh_host_api *host;

struct cron {
    struct bh_plugin_handle *h;
    struct cron_expr expr;
    struct tz *zone; /* NULL: UTC */
    int forbid;
    long long deadline; /* startingDeadlineSeconds, -1 when unset */
    char *text, *raw;   /* the event: text and payload JSON */
    pthread_t thread;
    int thread_started;
    pthread_mutex_t lock;
    pthread_cond_t wake; /* CLOCK_MONOTONIC: stop() or the next run */
    pthread_cond_t idle; /* a run finished */
    int stopping;
    int inflight;
    long long skipped;
};

struct cron_run {
    struct cron *c;
    int64_t scheduled;
};

/* ---- time text ---- */

/* RFC 3339 of instant t shown with offset off ("Z" for 0). */
static void cron_fmt(int64_t t, int32_t off, char out[40])
{
    time_t local = (time_t)(t + off);
    struct tm tm;
    gmtime_r(&local, &tm);
    size_t n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
    int32_t a = off < 0 ? -off : off;
    if (off == 0)
        snprintf(out + n, 40 - n, "Z");
    else
        snprintf(out + n, 40 - n, "%c%02d:%02d", off < 0 ? '-' : '+', a / 3600, a % 3600 / 60);
}

static void cron_status_time(struct cron *c, const char *key, int64_t t)
{
    char text[40];
    cron_fmt(t, c->zone ? tz_offset(c->zone, t) : 0, text);
    host->status_set(c->h, key, text);
}

/* ---- the persisted last scheduled time ---- */

/* Written before the run starts, atomically, so a crash never starts a run twice. */
static void cron_state_write(struct cron *c, int64_t scheduled)
{
    if (bht_state_write(host, c->h, CRON_STATE_FILE, (long long)scheduled) < 0)
        host->log(c->h, BH_LOG_WARN, "cannot record the last run in %s/" CRON_STATE_FILE ": %s",
                  host->state_dir(c->h), strerror(errno));
}

/* ---- runs ---- */

static const char *cron_verdict(uint32_t v)
{
    static const char *const names[] = {"allow", "deny", "busy", "error"};
    return names[v < 4 ? v : 3];
}

static void *cron_run_main(void *arg)
{
    struct cron_run *r = arg;
    struct cron *c = r->c;
    char when[40], source[64];
    cron_fmt(r->scheduled, 0, when);
    snprintf(source, sizeof(source), "cron:%s", when);
    const struct bh_event ev = {
        .size = sizeof(ev), .text = c->text, .source = source, .raw_json = c->raw};
    struct bh_event_reply reply = {.size = sizeof(reply)};
    struct bh_err err = {0};
    if (host->emit(c->h, &ev, &reply, &err) < 0)
        host->log(c->h, BH_LOG_ERROR, "run %s: %s", when, err.msg);
    else if (reply.verdict == BH_VERDICT_ALLOW)
        host->log(c->h, BH_LOG_DEBUG, "run %s: answer: %.300s", when, reply.body ? reply.body : "");
    else
        host->log(c->h, BH_LOG_WARN, "run %s: %s: %s", when, cron_verdict(reply.verdict),
                  reply.reason);
    host->status_set(c->h, "lastResult", cron_verdict(reply.verdict));
    host->reply_free(c->h, &reply);
    free(r);
    pthread_mutex_lock(&c->lock);
    c->inflight--;
    pthread_cond_broadcast(&c->idle);
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

/* 1 if a run may start now (and it is counted in flight), 0 if the policy skips it. */
static int cron_admit(struct cron *c)
{
    pthread_mutex_lock(&c->lock);
    int ok = c->inflight < (c->forbid ? 1 : CRON_INFLIGHT_MAX);
    c->inflight += ok;
    c->skipped += !ok;
    long long skipped = c->skipped;
    pthread_mutex_unlock(&c->lock);
    if (!ok) {
        char n[24];
        snprintf(n, sizeof(n), "%lld", skipped);
        host->status_set(c->h, "skippedRuns", n);
    }
    return ok;
}

static void cron_fire(struct cron *c, int64_t scheduled)
{
    cron_state_write(c, scheduled);
    cron_status_time(c, "lastScheduleTime", scheduled);
    if (!cron_admit(c)) {
        host->log(c->h, BH_LOG_WARN, "run at %lld skipped: the previous run is still going%s",
                  (long long)scheduled, c->forbid ? " (concurrencyPolicy Forbid)" : "");
        return;
    }
    struct cron_run *r = malloc(sizeof(*r));
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (r) {
        *r = (struct cron_run){c, scheduled};
        if (pthread_create(&t, &attr, cron_run_main, r) == 0)
            r = NULL;
    }
    pthread_attr_destroy(&attr);
    if (r) {
        free(r);
        host->log(c->h, BH_LOG_ERROR, "run at %lld: cannot start a thread", (long long)scheduled);
        pthread_mutex_lock(&c->lock);
        c->inflight--;
        pthread_mutex_unlock(&c->lock);
    }
}

/* ---- the schedule ---- */

/* After downtime: the latest run missed since `last`, started if within the deadline.
 * Returns the first scheduled time after now. */
static int64_t cron_catch_up(struct cron *c, int64_t last, int64_t now)
{
    int64_t from = last, missed = -1, next;
    if (c->deadline >= 0 && from < now - c->deadline - 1) /* older runs would be too late */
        from = now - c->deadline - 1;
    int n = 0;
    while (cron_next(&c->expr, c->zone, from, &next) && next <= now && n <= CRON_MISSED_MAX) {
        missed = from = next;
        n++;
    }
    if (n > CRON_MISSED_MAX) {
        host->log(c->h, BH_LOG_WARN,
                  "more than %d runs missed since the last one; none started (set "
                  "startingDeadlineSeconds to start the latest)",
                  CRON_MISSED_MAX);
        return cron_next(&c->expr, c->zone, now, &next) ? next : -1;
    }
    if (missed >= 0) {
        host->log(c->h, BH_LOG_INFO, "starting the run missed at %lld (%lld s late)",
                  (long long)missed, (long long)(now - missed));
        cron_fire(c, missed);
    }
    return cron_next(&c->expr, c->zone, now, &next) ? next : -1;
}

/* Sleeps until wall time `at` or stop; 1 if it is time, 0 if stopping. */
static int cron_sleep_until(struct cron *c, int64_t at)
{
    pthread_mutex_lock(&c->lock);
    while (!c->stopping && (int64_t)time(NULL) < at) {
        int64_t wait = at - (int64_t)time(NULL);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += wait < CRON_TICK_S ? wait : CRON_TICK_S;
        pthread_cond_timedwait(&c->wake, &c->lock, &ts);
    }
    int go = !c->stopping;
    pthread_mutex_unlock(&c->lock);
    return go;
}

static void *cron_main(void *arg)
{
    struct cron *c = arg;
    int64_t now = (int64_t)time(NULL), next;
    int64_t last = bht_state_read(host, c->h, CRON_STATE_FILE, -1);
    if (last >= 0 && last < now)
        next = cron_catch_up(c, last, now);
    else if (!cron_next(&c->expr, c->zone, last > now ? last : now, &next))
        next = -1;
    while (next >= 0) {
        cron_status_time(c, "nextRun", next);
        if (!cron_sleep_until(c, next))
            return NULL;
        now = (int64_t)time(NULL);
        if (c->deadline >= 0 && now - next > c->deadline)
            host->log(c->h, BH_LOG_WARN, "run at %lld missed its deadline (%lld s late)",
                      (long long)next, (long long)(now - next));
        else
            cron_fire(c, next);
        if (!cron_next(&c->expr, c->zone, next > now ? next : now, &next))
            break;
    }
    host->status_set(c->h, "nextRun", NULL);
    host->log(c->h, BH_LOG_WARN, "the schedule has no further run");
    return NULL;
}

/* ---- config ---- */

/* payload: a string is the event's text (and {"text": s} its payload); an object is the
 * payload, its "text" the event's text. */
static int cron_payload(struct cron *c, struct bh_err *err)
{
    const char *json = host->config_json(c->h, "payload");
    cJSON *p = cJSON_Parse(json ? json : "{}");
    if (cJSON_IsString(p)) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "text", p->valuestring);
        cJSON_Delete(p);
        p = o;
    }
    if (!cJSON_IsObject(p)) {
        cJSON_Delete(p);
        return host->err_set(c->h, err, BH_EINVAL, "spec.config.payload: a string or an object");
    }
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(p, "text");
    c->text = strdup(cJSON_IsString(text) ? text->valuestring : "");
    c->raw = cJSON_PrintUnformatted(p);
    cJSON_Delete(p);
    return c->text && c->raw ? 0 : host->err_set(c->h, err, BH_EIO, "out of memory");
}

static int cron_policy(struct cron *c, struct bh_err *err)
{
    const char *p = host->config_string(c->h, "concurrencyPolicy");
    if (strcmp(p, "Allow") != 0 && strcmp(p, "Forbid") != 0)
        return host->err_set(c->h, err, BH_EINVAL,
                             "spec.config.concurrencyPolicy: \"%.32s\" (Allow or Forbid)", p);
    c->forbid = strcmp(p, "Forbid") == 0;
    int has_deadline = host->config_json(c->h, "startingDeadlineSeconds") != NULL;
    c->deadline = has_deadline ? host->config_int(c->h, "startingDeadlineSeconds") : -1;
    if (has_deadline && c->deadline < 0)
        return host->err_set(c->h, err, BH_EINVAL,
                             "spec.config.startingDeadlineSeconds: must not be negative");
    return 0;
}

static int cron_configure(struct cron *c, struct bh_err *err)
{
    const char *zone = host->config_string(c->h, "timeZone");
    const char *dir = getenv("TZDIR");
    int64_t probe;
    struct bh_err e = {0};
    if (cron_parse(host->config_string(c->h, "schedule"), &c->expr, &e) < 0)
        return host->err_set(c->h, err, BH_EINVAL, "spec.config.%s", e.msg);
    if (strcmp(zone, "UTC") != 0 && tz_load(dir ? dir : TZ_DIR_DEFAULT, zone, &c->zone, &e) < 0)
        return host->err_set(c->h, err, e.code, "spec.config.timeZone: \"%.64s\": %s", zone, e.msg);
    if (!cron_next(&c->expr, c->zone, (int64_t)time(NULL), &probe))
        return host->err_set(c->h, err, BH_EINVAL,
                             "spec.config.schedule: no time matches it in the next 30 years");
    return cron_policy(c, err) < 0 ? -1 : cron_payload(c, err);
}

/* ---- start and stop ---- */

static void cron_stop(void *inst)
{
    struct cron *c = inst;
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    c->stopping = 1;
    pthread_cond_broadcast(&c->wake);
    pthread_mutex_unlock(&c->lock);
    if (c->thread_started)
        pthread_join(c->thread, NULL);
    /* No host call may follow stop(): wait for the runs in flight. */
    pthread_mutex_lock(&c->lock);
    while (c->inflight > 0)
        pthread_cond_wait(&c->idle, &c->lock);
    pthread_mutex_unlock(&c->lock);
    tz_free(c->zone);
    free(c->text);
    free(c->raw);
    pthread_cond_destroy(&c->wake);
    pthread_cond_destroy(&c->idle);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static int cron_start(void *state, struct bh_plugin_handle *h, void **inst, struct bh_err *err)
{
    struct cron *c = calloc(1, sizeof(*c));
    if (!c)
        return host->err_set(h, err, BH_EIO, "out of memory");
    c->h = h;
    pthread_mutex_init(&c->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->wake, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&c->idle, NULL);
    if (cron_configure(c, err) < 0) {
        cron_stop(c);
        return -1;
    }
    if (pthread_create(&c->thread, NULL, cron_main, c) != 0) {
        cron_stop(c);
        return host->err_set(h, err, BH_EIO, "cannot start the scheduler thread");
    }
    c->thread_started = 1;
    *inst = c;
    return 0;
}

/* Apply time: the schedule, zone, policy and payload, as start() would read them. */
static int cron_check(void *state, struct bh_plugin_handle *h, struct bh_err *err)
{
    struct cron c = {.h = h};
    int rc = cron_configure(&c, err);
    tz_free(c.zone);
    free(c.text);
    free(c.raw);
    return rc;
}

static const struct bh_config_field cron_schema[] = {
    {"schedule", BH_CFG_STRING, 1, NULL,
     "5-field cron expression, @hourly-style macro, or @every <n>s|m|h"},
    {"timeZone", BH_CFG_STRING, 0, "UTC", "IANA zone the schedule's wall clock is in"},
    {"concurrencyPolicy", BH_CFG_STRING, 0, "Allow",
     "Allow, or Forbid (skip a run while the previous one is going)"},
    {"startingDeadlineSeconds", BH_CFG_INT, 0, NULL,
     "start a run missed (downtime) only if at most this late; unset: no deadline"},
    {"payload", BH_CFG_JSON, 0, NULL, "the event: a string (its text) or an object"},
};

static const struct bh_trigger_ops cron_ops = {
    .size = sizeof(struct bh_trigger_ops),
    .start = cron_start,
    .stop = cron_stop,
    .check = cron_check,
};

static const struct bh_plugin_info cron_info = {
    .size = sizeof(struct bh_plugin_info),
    .abi_major = BH_PLUGIN_ABI_MAJOR,
    .abi_minor = BH_PLUGIN_ABI_MINOR,
    .build_sig = BH_PLUGIN_BUILD_SIG,
    .kind = BH_PLUGIN_TRIGGER,
    .flags = BH_PLUGIN_THREADSAFE,
    .name = "cron",
    .version = "0.1.0",
    .field_size = sizeof(struct bh_config_field),
    .serves_schema = cron_schema,
    .n_serves_schema = sizeof(cron_schema) / sizeof(cron_schema[0]),
    .ops = &cron_ops,
};

BH_PLUGIN_EXPORT const struct bh_plugin_info *bh_plugin_entry(const struct bh_host_api *h)
{
    if (!BH_HAS_OP(h, struct bh_host_api, status_set))
        return NULL;
    host = h;
    return &cron_info;
}
