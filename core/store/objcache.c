/* The object read cache; see objcache.h. A chained hash table of owned copies. */
#include "objcache.h"

#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "mem.h"

#define OBJCACHE_BUCKETS 256

struct objcache_entry {
    struct objcache_entry *next;
    char *kind, *name;
    cJSON *obj;
};

struct bh_objcache {
    struct objcache_entry *buckets[OBJCACHE_BUCKETS];
    size_t n, max;
};

struct bh_objcache *bh_objcache_new(size_t max_entries)
{
    struct bh_objcache *c = bh_xcalloc(1, sizeof(*c));
    c->max = max_entries;
    return c;
}

static void objcache_entry_free(struct objcache_entry *e)
{
    cJSON_Delete(e->obj);
    free(e->kind);
    free(e->name);
    free(e);
}

void bh_objcache_free(struct bh_objcache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < OBJCACHE_BUCKETS; i++)
        for (struct objcache_entry *e = c->buckets[i], *next; e; e = next) {
            next = e->next;
            objcache_entry_free(e);
        }
    free(c);
}

/* The link that points at (kind, name)'s entry, or at the chain's terminating NULL. */
static struct objcache_entry **objcache_slot(struct bh_objcache *c, const char *kind,
                                             const char *name)
{
    uint32_t h = bh_hash_str(bh_hash_bytes(bh_hash_str(BH_HASH_SEED, kind), "", 1), name);
    struct objcache_entry **p = &c->buckets[h % OBJCACHE_BUCKETS];
    while (*p && (strcmp((*p)->name, name) != 0 || strcmp((*p)->kind, kind) != 0))
        p = &(*p)->next;
    return p;
}

cJSON *bh_objcache_get(struct bh_objcache *c, const char *kind, const char *name)
{
    struct objcache_entry *e = *objcache_slot(c, kind, name);
    return e ? cJSON_Duplicate(e->obj, 1) : NULL;
}

void bh_objcache_put(struct bh_objcache *c, const char *kind, const char *name, const cJSON *obj)
{
    struct objcache_entry **p = objcache_slot(c, kind, name);
    if (*p) {
        cJSON_Delete((*p)->obj);
        (*p)->obj = cJSON_Duplicate(obj, 1);
        return;
    }
    if (c->n >= c->max)
        return; /* full: later reads of it go to the database, as without a cache */
    struct objcache_entry *e = bh_xcalloc(1, sizeof(*e));
    e->kind = bh_xstrdup(kind);
    e->name = bh_xstrdup(name);
    e->obj = cJSON_Duplicate(obj, 1);
    *p = e;
    c->n++;
}

void bh_objcache_drop(struct bh_objcache *c, const char *kind, const char *name)
{
    struct objcache_entry **p = objcache_slot(c, kind, name);
    struct objcache_entry *e = *p;
    if (!e)
        return;
    *p = e->next;
    objcache_entry_free(e);
    c->n--;
}
