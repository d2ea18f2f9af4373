/* Internal to the mirror (mirror.c, mirror_table.c): its bookkeeping per object, keyed
 * "Kind/name": the cluster's last copy, and whether a store change waits to be sent, in the
 * order the changes came. A chained hash table and a FIFO of the waiting entries, so an event
 * and a write cost O(1) and a re-list O(n) however many objects the namespace holds (the cJSON
 * objects used before made each a linear scan). The caller holds the mirror's lock. */
#ifndef BH_KUBE_MIRROR_INT_H
#define BH_KUBE_MIRROR_INT_H

#include <cjson/cJSON.h>
#include <stddef.h>

struct mirror_entry {
    char *key;
    cJSON *seen;                /* the cluster's last copy, owned; NULL if none */
    int queued;                 /* a store change to send */
    struct mirror_entry *chain; /* next in its bucket */
    struct mirror_entry *qnext; /* next in the FIFO while queued */
};

struct mirror_table {
    struct mirror_entry **buckets;
    size_t n_buckets, count;
    struct mirror_entry *qhead, *qtail;
    size_t queued; /* entries in the FIFO */
};

void mirror_table_init(struct mirror_table *t);
void mirror_table_free(struct mirror_table *t);
/* The entry of key, or NULL. */
struct mirror_entry *mirror_table_find(const struct mirror_table *t, const char *key);
/* Replaces key's cluster copy with seen (owned; NULL forgets it). */
void mirror_table_set_seen(struct mirror_table *t, const char *key, cJSON *seen);
/* Queues key at the end of the FIFO unless it waits already. */
void mirror_table_queue(struct mirror_table *t, const char *key);
/* Takes the oldest waiting key off the FIFO: owned, NULL when none waits. */
char *mirror_table_pop(struct mirror_table *t);
/* 1 if a change of key waits. */
int mirror_table_queued(const struct mirror_table *t, const char *key);

#endif
