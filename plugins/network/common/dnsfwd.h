/* A small forwarding resolver on a bridge gateway, for hosts whose own resolvers are loopback
 * (systemd-resolved's 127.0.0.53, a local dnsmasq) or host addresses, which an instance may
 * not reach: it relays each UDP query on <listen_ip>:53 to the upstream resolver on port 53
 * and the answer back, and nothing else. Queries are relayed as they are (the upstream
 * validates them); each waits at most BHN_DNSFWD_TIMEOUT_MS for its answer. TCP is not
 * relayed: an answer too large for UDP reaches the client truncated. */
#ifndef BH_NET_COMMON_DNSFWD_H
#define BH_NET_COMMON_DNSFWD_H

#include <boilerhouse/plugin.h>

#define BHN_DNSFWD_TIMEOUT_MS 3000

struct bhn_dnsfwd;

int bhn_dnsfwd_start(const char *listen_ip, const char *upstream_ip, struct bhn_dnsfwd **out,
                     struct bh_err *err);
/* Stops the thread and closes every socket; NULL is fine. */
void bhn_dnsfwd_stop(struct bhn_dnsfwd *f);

#endif
