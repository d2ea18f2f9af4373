/* The claim index; see claim_index.h. A chained hash table under one read-write lock (lookups,
 * one per existing claim call, copy their claim side by side): an entry per pair
 * ever seen (a tombstone once its claim is not Active), so an out-of-order older event can be
 * recognised and dropped. The number of pairs is bounded by the claims the store holds. */
#include "claim_index.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "json.h"
#include "mem.h"

#define CLAIM_INDEX_BUCKETS 4096

struct claim_entry {
    struct claim_entry *next;
    char *key;     /* "tenant\nworkload" (neither holds a newline: both are validated names) */
    int64_t rv;    /* of the newest change seen */
    cJSON *active; /* the claim while Active and not being deleted, else NULL */
};

struct bh_claim_index {
    pthread_rwlock_t lock;
    struct claim_entry *buckets[CLAIM_INDEX_BUCKETS];
};

struct bh_claim_index *bh_claim_index_new(void)
{
    struct bh_claim_index *ix = bh_xcalloc(1, sizeof(*ix));
    /* Writers first: a flood of lookups must not hold off the store's callbacks. */
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&ix->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    return ix;
}

void bh_claim_index_free(struct bh_claim_index *ix)
{
    if (!ix)
        return;
    for (size_t i = 0; i < CLAIM_INDEX_BUCKETS; i++)
        for (struct claim_entry *e = ix->buckets[i], *next; e; e = next) {
            next = e->next;
            cJSON_Delete(e->active);
            free(e->key);
            free(e);
        }
    pthread_rwlock_destroy(&ix->lock);
    free(ix);
}

static size_t claim_index_hash(const char *tenant, const char *workload)
{
    return bh_hash_str(bh_hash_str(bh_hash_str(BH_HASH_SEED, tenant), "\n"), workload) %
           CLAIM_INDEX_BUCKETS;
}

/* Locked. The entry of the pair, or NULL. */
static struct claim_entry *claim_index_find(struct bh_claim_index *ix, size_t b, const char *tenant,
                                            const char *workload)
{
    size_t tlen = strlen(tenant);
    for (struct claim_entry *e = ix->buckets[b]; e; e = e->next)
        if (strncmp(e->key, tenant, tlen) == 0 && e->key[tlen] == '\n' &&
            strcmp(e->key + tlen + 1, workload) == 0)
            return e;
    return NULL;
}

void bh_claim_index_observe(struct bh_claim_index *ix, const cJSON *claim, int64_t rv, int active)
{
    const char *tenant = bh_json_str(claim, "spec.tenantId");
    const char *workload = bh_json_str(claim, "spec.workloadRef");
    if (!ix || !tenant || !workload)
        return;
    /* Copied outside the lock: the REST threads' lookups wait on it. */
    cJSON *copy = active ? cJSON_Duplicate(claim, 1) : NULL;
    size_t b = claim_index_hash(tenant, workload);
    pthread_rwlock_wrlock(&ix->lock);
    struct claim_entry *e = claim_index_find(ix, b, tenant, workload);
    if (!e) {
        e = bh_xcalloc(1, sizeof(*e));
        e->key = bh_xasprintf("%s\n%s", tenant, workload);
        e->rv = -1;
        e->next = ix->buckets[b];
        ix->buckets[b] = e;
    }
    if (rv >= e->rv) {
        e->rv = rv;
        cJSON *old = e->active;
        e->active = copy;
        copy = old;
    }
    pthread_rwlock_unlock(&ix->lock);
    cJSON_Delete(copy); /* the replaced one, or ours if it came too late */
}

cJSON *bh_claim_index_active(struct bh_claim_index *ix, const char *tenant, const char *workload)
{
    if (!ix)
        return NULL;
    size_t b = claim_index_hash(tenant, workload);
    cJSON *out = NULL;
    pthread_rwlock_rdlock(&ix->lock);
    struct claim_entry *e = claim_index_find(ix, b, tenant, workload);
    if (e && e->active)
        out = cJSON_Duplicate(e->active, 1);
    pthread_rwlock_unlock(&ix->lock);
    return out;
}
