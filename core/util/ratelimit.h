/* Request rate limits for the daemon's listeners: a token bucket per credential presented
 * (a hash of it, never the secret) or per client address when there is none, and a
 * slow-down for an address that keeps failing to authenticate (after a number of failures
 * in a row, each further failure bars the address for an exponentially growing time, up to
 * a minute; a success clears it). Answers say how long to wait, for Retry-After. The table
 * is bounded: idle entries are dropped first, and a full table lets requests through rather
 * than refusing everyone. Thread-safe. */
#ifndef BH_RATELIMIT_H
#define BH_RATELIMIT_H

#include "listen.h"

struct bh_ratelimit_cfg {
    double rate_per_s; /* sustained requests per second per key; 0: no rate limit */
    double burst;      /* requests a key may make at once */
    int auth_failures; /* failures in a row from one address before it is slowed down */
    int max_entries;   /* keys tracked at most; 0: a default */
};

enum bh_ratelimit_verdict {
    BH_RATELIMIT_OK,
    BH_RATELIMIT_UNAUTHORIZED,   /* the credential is missing or wrong: 401 */
    BH_RATELIMIT_AUTH_THROTTLED, /* the address failed too often: 429 */
    BH_RATELIMIT_RATE_LIMITED,   /* over the key's rate: 429 */
};

struct bh_ratelimit;
struct bh_ratelimit *bh_ratelimit_new(const struct bh_ratelimit_cfg *cfg); /* owned */
void bh_ratelimit_free(struct bh_ratelimit *rl);                           /* NULL ok */

/* The verdict on one request from client address addr that presented credential (the raw
 * Authorization header, or NULL) which the caller found valid or not (authorized). addr
 * NULL: the listener cannot tell clients apart (the instances' shared unix socket), so no
 * address is barred or limited, only the credential's rate counts. When
 * not OK and waiting helps, *retry_after is the seconds to wait (else 0). Counts the
 * outcome in stats (may be NULL). rl NULL: only the authorization counts. */
enum bh_ratelimit_verdict bh_ratelimit_check(struct bh_ratelimit *rl, const char *addr,
                                             const char *credential, int authorized,
                                             int *retry_after, struct bh_listen_stats *stats);

#endif
