/* Token buckets and the authentication-failure slow-down (ratelimit.h). */
#include "ratelimit.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "crypto.h"
#include "mem.h"
#include "hash.h"

#define RL_BUCKETS 4096
#define RL_DEFAULT_ENTRIES 65536
#define RL_BACKOFF_MIN_MS 1000
#define RL_BACKOFF_MAX_MS 60000
#define RL_FAILURES_FORGOTTEN_MS (15 * 60 * 1000) /* a quiet address starts over */

/* One key: "c:<hash of a credential>" or "a:<client address>". */
struct rl_entry {
    struct rl_entry *next;
    char key[72];
    double tokens;
    long long refilled_ms;
    long long failures;     /* authentication failures in a row (address keys) */
    long long last_fail_ms; /* when the last one was */
    long long barred_until_ms;
};

struct bh_ratelimit {
    struct bh_ratelimit_cfg cfg;
    pthread_mutex_t lock;
    int n;
    struct rl_entry *tab[RL_BUCKETS];
};

struct bh_ratelimit *bh_ratelimit_new(const struct bh_ratelimit_cfg *cfg)
{
    struct bh_ratelimit *rl = bh_xcalloc(1, sizeof(*rl));
    rl->cfg = *cfg;
    if (rl->cfg.max_entries <= 0)
        rl->cfg.max_entries = RL_DEFAULT_ENTRIES;
    pthread_mutex_init(&rl->lock, NULL);
    return rl;
}

void bh_ratelimit_free(struct bh_ratelimit *rl)
{
    if (!rl)
        return;
    for (int i = 0; i < RL_BUCKETS; i++) {
        while (rl->tab[i]) {
            struct rl_entry *e = rl->tab[i];
            rl->tab[i] = e->next;
            free(e);
        }
    }
    pthread_mutex_destroy(&rl->lock);
    free(rl);
}

static void rl_refill(const struct bh_ratelimit *rl, struct rl_entry *e, long long now)
{
    e->tokens += (double)(now - e->refilled_ms) / 1000.0 * rl->cfg.rate_per_s;
    if (e->tokens > rl->cfg.burst)
        e->tokens = rl->cfg.burst;
    e->refilled_ms = now;
}

/* An entry that remembers nothing a new one would not: a full bucket, no recent failure. */
static int rl_idle(const struct bh_ratelimit *rl, struct rl_entry *e, long long now)
{
    rl_refill(rl, e, now);
    return e->tokens >= rl->cfg.burst && now >= e->barred_until_ms &&
           (e->failures == 0 || now - e->last_fail_ms > RL_FAILURES_FORGOTTEN_MS);
}

static void rl_sweep(struct bh_ratelimit *rl, long long now)
{
    for (int i = 0; i < RL_BUCKETS; i++) {
        for (struct rl_entry **p = &rl->tab[i]; *p;) {
            struct rl_entry *e = *p;
            if (rl_idle(rl, e, now)) {
                *p = e->next;
                free(e);
                rl->n--;
            } else {
                p = &e->next;
            }
        }
    }
}

/* key's entry, made when missing; NULL when the table is full of live entries. Lock held. */
static struct rl_entry *rl_entry(struct bh_ratelimit *rl, const char *key, long long now)
{
    unsigned h = bh_hash_str(BH_HASH_SEED, key) % RL_BUCKETS;
    for (struct rl_entry *e = rl->tab[h]; e; e = e->next)
        if (strcmp(e->key, key) == 0)
            return e;
    if (rl->n >= rl->cfg.max_entries)
        rl_sweep(rl, now);
    if (rl->n >= rl->cfg.max_entries)
        return NULL;
    struct rl_entry *e = bh_xcalloc(1, sizeof(*e));
    snprintf(e->key, sizeof(e->key), "%s", key);
    e->tokens = rl->cfg.burst;
    e->refilled_ms = now;
    e->next = rl->tab[h];
    rl->tab[h] = e;
    rl->n++;
    return e;
}

static int rl_secs(long long ms)
{
    return ms <= 0 ? 1 : (int)((ms + 999) / 1000);
}

/* A failed authentication from the address: bars it once failures pass the allowance. */
static void rl_failed(const struct bh_ratelimit *rl, struct rl_entry *a, long long now)
{
    if (now - a->last_fail_ms > RL_FAILURES_FORGOTTEN_MS)
        a->failures = 0;
    a->failures++;
    a->last_fail_ms = now;
    long long over = a->failures - rl->cfg.auth_failures;
    if (over > 0)
        a->barred_until_ms = now + bh_clock_backoff_ms(over, RL_BACKOFF_MIN_MS, RL_BACKOFF_MAX_MS);
}

/* Takes a token from key's bucket: 0, or the milliseconds until one is there. */
static long long rl_take(const struct bh_ratelimit *rl, struct rl_entry *e, long long now)
{
    rl_refill(rl, e, now);
    if (e->tokens >= 1.0) {
        e->tokens -= 1.0;
        return 0;
    }
    return (long long)((1.0 - e->tokens) / rl->cfg.rate_per_s * 1000.0) + 1;
}

static void rl_credential_key(const char *credential, char out[72])
{
    struct bh_sha256 *h = bh_crypto_sha256_new();
    bh_crypto_sha256_update(h, credential, strlen(credential));
    char hex[65];
    bh_crypto_sha256_final(h, hex);
    snprintf(out, 72, "c:%.32s", hex);
}

/* The verdict with the lock held. */
static enum bh_ratelimit_verdict rl_judge(struct bh_ratelimit *rl, const char *addr,
                                          const char *credential, int authorized, long long *wait)
{
    long long now = bh_clock_ms();
    char key[72];
    struct rl_entry *a = NULL;
    if (addr) {
        snprintf(key, sizeof(key), "a:%s", addr);
        a = rl_entry(rl, key, now);
    }
    if (a && now < a->barred_until_ms) {
        *wait = a->barred_until_ms - now;
        return BH_RATELIMIT_AUTH_THROTTLED;
    }
    if (!authorized) {
        if (a)
            rl_failed(rl, a, now);
        return BH_RATELIMIT_UNAUTHORIZED;
    }
    if (a)
        a->failures = 0;
    if (rl->cfg.rate_per_s <= 0)
        return BH_RATELIMIT_OK;
    struct rl_entry *e = a;
    if (credential) {
        rl_credential_key(credential, key);
        e = rl_entry(rl, key, now);
    }
    if (e && (*wait = rl_take(rl, e, now)) > 0)
        return BH_RATELIMIT_RATE_LIMITED;
    return BH_RATELIMIT_OK;
}

enum bh_ratelimit_verdict bh_ratelimit_check(struct bh_ratelimit *rl, const char *addr,
                                             const char *credential, int authorized,
                                             int *retry_after, struct bh_listen_stats *stats)
{
    long long wait = 0;
    enum bh_ratelimit_verdict v = authorized ? BH_RATELIMIT_OK : BH_RATELIMIT_UNAUTHORIZED;
    if (rl) {
        pthread_mutex_lock(&rl->lock);
        v = rl_judge(rl, addr, credential, authorized, &wait);
        pthread_mutex_unlock(&rl->lock);
    }
    *retry_after =
        v == BH_RATELIMIT_AUTH_THROTTLED || v == BH_RATELIMIT_RATE_LIMITED ? rl_secs(wait) : 0;
    if (stats && !authorized)
        __atomic_add_fetch(&stats->auth_failures, 1, __ATOMIC_RELAXED);
    if (stats && v == BH_RATELIMIT_AUTH_THROTTLED)
        __atomic_add_fetch(&stats->auth_throttled, 1, __ATOMIC_RELAXED);
    if (stats && v == BH_RATELIMIT_RATE_LIMITED)
        __atomic_add_fetch(&stats->rate_limited, 1, __ATOMIC_RELAXED);
    return v;
}
