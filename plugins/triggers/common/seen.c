/* The window of seen ids (seen.h). */
#include "seen.h"

#include <stdio.h>
#include <string.h>

int bht_seen_check(struct bht_seen *s, const char *id, long long now, long long ttl)
{
    size_t slot = s->n, oldest = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (s->e[i].expires < now && slot == s->n)
            slot = i;
        else if (s->e[i].expires >= now && strcmp(s->e[i].id, id) == 0)
            return 1;
        if (s->e[i].expires < s->e[oldest].expires)
            oldest = i;
    }
    if (slot == s->n && s->n == BHT_SEEN_MAX)
        slot = oldest;
    else if (slot == s->n)
        s->n++;
    s->e[slot].expires = now + ttl;
    snprintf(s->e[slot].id, sizeof(s->e[slot].id), "%s", id);
    return 0;
}
