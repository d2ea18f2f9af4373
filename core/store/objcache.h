/* A read cache of parsed store objects, keyed by (kind, name): the store keeps the objects of
 * the kinds it is asked to (bh_store_cache_kind) so that a hot read (the workload every claim
 * call reads) is a copy from memory instead of a SQLite read and a JSON parse. Not
 * thread-safe: the store calls it under its own lock, the one its writes hold, which is what
 * keeps it exact (see store.c). Bounded: a full cache takes no more entries. */
#ifndef BH_OBJCACHE_H
#define BH_OBJCACHE_H

#include <cjson/cJSON.h>

struct bh_objcache;

struct bh_objcache *bh_objcache_new(size_t max_entries); /* owned */
void bh_objcache_free(struct bh_objcache *c);            /* NULL ok */
/* A copy (owned) of the cached object of (kind, name), or NULL if none is cached. */
cJSON *bh_objcache_get(struct bh_objcache *c, const char *kind, const char *name);
/* Caches a copy of obj (borrowed) as (kind, name), replacing what was there. */
void bh_objcache_put(struct bh_objcache *c, const char *kind, const char *name, const cJSON *obj);
/* Forgets (kind, name), if cached. */
void bh_objcache_drop(struct bh_objcache *c, const char *kind, const char *name);

#endif
