/* Leader election on a coordination.k8s.io/v1 Lease (lease.h). */
#include "lease.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "json.h"
#include "log.h"
#include "mem.h"

struct bh_kube_lease {
    struct bh_kube_client *client;
    char *name, *identity, *path, *coll;
    int duration_s;
    bh_kube_lease_fn on_start, on_stop;
    void *ud;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int stop;
    int leading;           /* on_start called and on_stop not yet (under mu) */
    long long term_end;    /* monotonic ms: the term runs out then (under mu) */
    char *observed;        /* the other holder's record as last seen: holder|renewTime|rv */
    long long observed_at; /* monotonic ms when it was first seen so */
};

/* A MicroTime: RFC 3339 with microseconds. */
static void lease_now(char buf[40])
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, 40, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, 40 - n, ".%06ldZ", ts.tv_nsec / 1000);
}

/* The Lease as this replica writes it: holding it from now (take: newly acquired). */
static cJSON *lease_body(const struct bh_kube_lease *l, const cJSON *cur, int take)
{
    char now[40];
    lease_now(now);
    cJSON *b = cur ? cJSON_Duplicate(cur, 1) : cJSON_CreateObject();
    if (!cur) {
        cJSON_AddStringToObject(b, "apiVersion", "coordination.k8s.io/v1");
        cJSON_AddStringToObject(b, "kind", "Lease");
        cJSON_AddStringToObject(cJSON_AddObjectToObject(b, "metadata"), "name", l->name);
    }
    cJSON_DeleteItemFromObjectCaseSensitive(bh_json_obj(b, "metadata"), "managedFields");
    cJSON *spec = bh_json_obj(b, "spec");
    const char *holder = bh_json_str(spec, "holderIdentity");
    int had_holder = holder && *holder; /* holder is freed when the field is replaced */
    long long transitions = bh_json_int(spec, "leaseTransitions", 0);
    bh_json_set_str(spec, "holderIdentity", l->identity);
    bh_json_set_num(spec, "leaseDurationSeconds", l->duration_s);
    bh_json_set_str(spec, "renewTime", now);
    if (take) {
        bh_json_set_str(spec, "acquireTime", now);
        bh_json_set_num(spec, "leaseTransitions", (double)(transitions + had_holder));
    }
    return b;
}

/* Whether another holder's record is still live: unchanged for less than its duration on our
 * own clock (its renewTime is another machine's clock, never compared with ours). */
static int lease_other_live(struct bh_kube_lease *l, const cJSON *cur)
{
    const char *holder = bh_json_str(cur, "spec.holderIdentity");
    if (!holder || !*holder)
        return 0;
    const char *renew = bh_json_str(cur, "spec.renewTime");
    const char *rv = bh_json_str(cur, "metadata.resourceVersion");
    bh_autofree char *rec = bh_xasprintf("%s|%s|%s", holder, renew ? renew : "", rv ? rv : "");
    long long now = bh_clock_ms();
    if (!l->observed || strcmp(l->observed, rec) != 0) {
        free(l->observed);
        l->observed = BH_STEAL(rec);
        l->observed_at = now;
    }
    long long dur = bh_json_int(cur, "spec.leaseDurationSeconds", l->duration_s);
    return now < l->observed_at + dur * 1000;
}

/* One round: 1 if this replica holds the Lease after it, 0 if another does, -1 on error. */
static int lease_try(struct bh_kube_lease *l, struct bh_err *err)
{
    cJSON *cur = NULL, *body = NULL;
    int rc;
    if (bh_kube_request(l->client, "GET", l->path, NULL, NULL, &cur, NULL, err) < 0) {
        if (err->code != BH_ENOTFOUND)
            return -1;
        body = lease_body(l, NULL, 1);
        rc = bh_kube_request(l->client, "POST", l->coll, body, NULL, NULL, NULL, err);
    } else {
        const char *holder = bh_json_str(cur, "spec.holderIdentity");
        int mine = holder && strcmp(holder, l->identity) == 0;
        if (!mine && lease_other_live(l, cur)) {
            cJSON_Delete(cur);
            return 0;
        }
        body = lease_body(l, cur, !mine);
        rc = bh_kube_request(l->client, "PUT", l->path, body, NULL, NULL, NULL, err);
    }
    cJSON_Delete(cur);
    cJSON_Delete(body);
    if (rc < 0)
        return err->code == BH_ECONFLICT ? 0 : -1; /* another replica wrote first */
    return 1;
}

/* After a round that started at t0: starts or ends the term; calls back outside the lock. */
static void lease_update(struct bh_kube_lease *l, int got, long long t0)
{
    bh_kube_lease_fn call = NULL;
    pthread_mutex_lock(&l->mu);
    if (got == 1) {
        l->term_end = t0 + (long long)l->duration_s * 1000;
        if (!l->leading) {
            l->leading = 1;
            call = l->on_start;
        }
    } else if (l->leading && (got == 0 || bh_clock_ms() >= l->term_end)) {
        l->leading = 0;
        call = l->on_stop;
    }
    pthread_mutex_unlock(&l->mu);
    if (call == l->on_start && call)
        bh_info("kube", "lease %s: %s is the leader", l->name, l->identity);
    else if (call)
        bh_warn("kube", "lease %s: %s lost it", l->name, l->identity);
    if (call)
        call(l->ud);
}

static void *lease_main(void *arg)
{
    struct bh_kube_lease *l = arg;
    long retry_ms = (long)l->duration_s * 1000 / 4;
    do {
        struct bh_err err = {0};
        long long t0 = bh_clock_ms();
        int got = lease_try(l, &err);
        if (got < 0)
            bh_warn("kube", "lease %s: %s", l->name, err.msg);
        lease_update(l, got, t0);
    } while (bh_clock_sleep_unless(&l->mu, &l->cond, &l->stop, retry_ms));
    return NULL;
}

int bh_kube_lease_start(const struct bh_kube_lease_cfg *cfg, struct bh_kube_lease **out,
                        struct bh_err *err)
{
    struct bh_kube_lease *l = bh_xcalloc(1, sizeof(*l));
    l->client = cfg->client;
    l->name = bh_xstrdup(cfg->name);
    l->identity = bh_xstrdup(cfg->identity);
    l->coll = bh_xasprintf("/apis/coordination.k8s.io/v1/namespaces/%s/leases",
                           bh_kube_client_namespace(cfg->client));
    l->path = bh_xasprintf("%s/%s", l->coll, cfg->name);
    l->duration_s = cfg->duration_s;
    l->on_start = cfg->on_start;
    l->on_stop = cfg->on_stop;
    l->ud = cfg->ud;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cond, NULL);
    if (pthread_create(&l->th, NULL, lease_main, l) != 0) {
        l->th = 0;
        bh_kube_lease_stop(l);
        return bh_err_set(err, BH_EIO, "lease %s: cannot start its thread", cfg->name);
    }
    *out = l;
    return 0;
}

int bh_kube_lease_held(struct bh_kube_lease *l)
{
    pthread_mutex_lock(&l->mu);
    int held = l->leading && bh_clock_ms() < l->term_end;
    pthread_mutex_unlock(&l->mu);
    return held;
}

/* Gives the Lease up if this replica still holds it there. */
static void lease_release(struct bh_kube_lease *l)
{
    cJSON *cur = NULL;
    struct bh_err err;
    if (bh_kube_request(l->client, "GET", l->path, NULL, NULL, &cur, NULL, &err) < 0)
        return;
    const char *holder = bh_json_str(cur, "spec.holderIdentity");
    if (holder && strcmp(holder, l->identity) == 0) {
        cJSON *spec = bh_json_obj(cur, "spec");
        bh_json_set_str(spec, "holderIdentity", "");
        bh_json_set_num(spec, "leaseDurationSeconds", 1);
        if (bh_kube_request(l->client, "PUT", l->path, cur, NULL, NULL, NULL, &err) < 0)
            bh_warn("kube", "lease %s: release: %s", l->name, err.msg);
        else
            bh_info("kube", "lease %s: released by %s", l->name, l->identity);
    }
    cJSON_Delete(cur);
}

void bh_kube_lease_stop(struct bh_kube_lease *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->mu);
    if (l->th)
        pthread_join(l->th, NULL);
    if (l->leading)
        lease_release(l);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cond);
    free(l->name);
    free(l->identity);
    free(l->path);
    free(l->coll);
    free(l->observed);
    free(l);
}
