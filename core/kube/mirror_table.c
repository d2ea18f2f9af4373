/* The mirror's per-object bookkeeping (mirror_int.h). An entry lives while it holds a cluster
 * copy or waits in the FIFO, and goes when it does neither. */
#include "mirror_int.h"

#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "mem.h"

#define TABLE_MIN_BUCKETS 256

static size_t table_slot(const struct mirror_table *t, const char *key)
{
    return bh_hash_str(BH_HASH_SEED, key) & (t->n_buckets - 1);
}

void mirror_table_init(struct mirror_table *t)
{
    memset(t, 0, sizeof(*t));
    t->n_buckets = TABLE_MIN_BUCKETS;
    t->buckets = bh_xcalloc(t->n_buckets, sizeof(*t->buckets));
}

void mirror_table_free(struct mirror_table *t)
{
    for (size_t i = 0; i < t->n_buckets; i++) {
        while (t->buckets[i]) {
            struct mirror_entry *e = t->buckets[i];
            t->buckets[i] = e->chain;
            cJSON_Delete(e->seen);
            free(e->key);
            free(e);
        }
    }
    free(t->buckets);
    memset(t, 0, sizeof(*t));
}

struct mirror_entry *mirror_table_find(const struct mirror_table *t, const char *key)
{
    for (struct mirror_entry *e = t->buckets[table_slot(t, key)]; e; e = e->chain)
        if (strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

/* Twice the buckets once there are more entries than buckets: chains stay short. */
static void table_grow(struct mirror_table *t)
{
    size_t old_n = t->n_buckets;
    struct mirror_entry **old = t->buckets;
    t->n_buckets = old_n * 2;
    t->buckets = bh_xcalloc(t->n_buckets, sizeof(*t->buckets));
    for (size_t i = 0; i < old_n; i++) {
        while (old[i]) {
            struct mirror_entry *e = old[i];
            old[i] = e->chain;
            size_t s = table_slot(t, e->key);
            e->chain = t->buckets[s];
            t->buckets[s] = e;
        }
    }
    free(old);
}

static struct mirror_entry *table_get(struct mirror_table *t, const char *key)
{
    struct mirror_entry *e = mirror_table_find(t, key);
    if (e)
        return e;
    if (t->count >= t->n_buckets)
        table_grow(t);
    e = bh_xcalloc(1, sizeof(*e));
    e->key = bh_xstrdup(key);
    size_t s = table_slot(t, key);
    e->chain = t->buckets[s];
    t->buckets[s] = e;
    t->count++;
    return e;
}

/* Frees e if it holds nothing any more. */
static void table_drop_if_empty(struct mirror_table *t, struct mirror_entry *e)
{
    if (e->seen || e->queued)
        return;
    struct mirror_entry **p = &t->buckets[table_slot(t, e->key)];
    while (*p != e)
        p = &(*p)->chain;
    *p = e->chain;
    t->count--;
    free(e->key);
    free(e);
}

void mirror_table_set_seen(struct mirror_table *t, const char *key, cJSON *seen)
{
    struct mirror_entry *e = seen ? table_get(t, key) : mirror_table_find(t, key);
    if (!e)
        return;
    cJSON_Delete(e->seen);
    e->seen = seen;
    table_drop_if_empty(t, e);
}

void mirror_table_queue(struct mirror_table *t, const char *key)
{
    struct mirror_entry *e = table_get(t, key);
    if (e->queued)
        return;
    e->queued = 1;
    t->queued++;
    e->qnext = NULL;
    if (t->qtail)
        t->qtail->qnext = e;
    else
        t->qhead = e;
    t->qtail = e;
}

char *mirror_table_pop(struct mirror_table *t)
{
    struct mirror_entry *e = t->qhead;
    if (!e)
        return NULL;
    t->qhead = e->qnext;
    if (!t->qhead)
        t->qtail = NULL;
    e->queued = 0;
    t->queued--;
    e->qnext = NULL;
    char *key = bh_xstrdup(e->key);
    table_drop_if_empty(t, e);
    return key;
}

int mirror_table_queued(const struct mirror_table *t, const char *key)
{
    const struct mirror_entry *e = mirror_table_find(t, key);
    return e && e->queued;
}
