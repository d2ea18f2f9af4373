/* Ids seen within a time window (webhook delivery ids, Slack event ids), so a replayed or
 * retried request is recognised. Code shared by the trigger plugins, compiled into each that
 * pulls it in through its deps.cmake. Not locked: the caller serialises access. */
#ifndef BH_TRIGGER_COMMON_SEEN_H
#define BH_TRIGGER_COMMON_SEEN_H

#include <stddef.h>

#define BHT_SEEN_MAX 4096
#define BHT_SEEN_ID 80 /* longer ids are the caller's to refuse */

struct bht_seen {
    struct {
        long long expires;
        char id[BHT_SEEN_ID];
    } e[BHT_SEEN_MAX];
    size_t n;
};

/* 1 if id was seen and has not expired at now; otherwise remembers it until now + ttl and
 * returns 0. Full: the entry closest to expiry makes room (the least useful to keep). */
int bht_seen_check(struct bht_seen *s, const char *id, long long now, long long ttl);

#endif
