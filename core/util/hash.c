#include "hash.h"

#include <string.h>

uint32_t bh_hash_bytes(uint32_t h, const void *p, size_t n)
{
    for (const unsigned char *b = p; n--; b++)
        h = (h ^ *b) * 16777619u;
    return h;
}

uint32_t bh_hash_str(uint32_t h, const char *s)
{
    return bh_hash_bytes(h, s, strlen(s));
}
