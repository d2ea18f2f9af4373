/* String hashing for the in-memory indexes (FNV-1a: short keys, no adversary to fear since
 * every key is a validated name or id, and buckets are chained). */
#ifndef BH_HASH_H
#define BH_HASH_H

#include <stdint.h>

#define BH_HASH_SEED 2166136261u

/* Continues hash h over the bytes of s (start from BH_HASH_SEED). */
uint32_t bh_hash_str(uint32_t h, const char *s);

#endif
