/* Hashing for the in-memory tables (FNV-1a over short keys: validated names and ids, client
 * addresses, credential digests; buckets are chained, so a collision costs a longer chain). */
#ifndef BH_HASH_H
#define BH_HASH_H

#include <stdint.h>

#define BH_HASH_SEED 2166136261u

#include <stddef.h>

/* Continues hash h over the bytes of s (start from BH_HASH_SEED). */
uint32_t bh_hash_str(uint32_t h, const char *s);
/* Continues hash h over n bytes at p. */
uint32_t bh_hash_bytes(uint32_t h, const void *p, size_t n);

#endif
