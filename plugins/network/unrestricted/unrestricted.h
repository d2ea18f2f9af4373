/* Internals shared by the files of the `unrestricted` network plugin (hidden in the .so). */
#ifndef BH_NET_UNRESTRICTED_H
#define BH_NET_UNRESTRICTED_H

#include <boilerhouse/plugin.h>
#include <stdint.h>

extern const struct bh_host_api *ur_host;

/* Addresses are host byte order throughout; ur_ip_text formats one into buf[16]. */
void ur_ip_text(uint32_t addr, char buf[16]);

/* Leases: one file per address, <dir>/<a.b.c.d>, holding the instance id. The file appears
 * with its content already in place (link() of a written temp file), so a crash never leaves
 * a lease that names nobody, and link()'s EEXIST makes two threads never share an address. */

/* Returns the address leased to id, or leases the lowest free one in net/prefix (the network
 * address and the gateway .1 and the broadcast address are never handed out). */
int ur_lease_acquire(const char *dir, uint32_t net, int prefix, const char *id, uint32_t *addr,
                     struct bh_err *err);
/* 1 and *addr set if some lease names id, 0 if none. */
int ur_lease_lookup(const char *dir, const char *id, uint32_t *addr, struct bh_err *err);
/* Removes the lease file for addr (absent is fine) and makes that durable. */
int ur_lease_release(const char *dir, uint32_t addr, struct bh_err *err);
/* Removes temp files a crash left between writing and linking a lease. */
int ur_lease_clean(const char *dir, struct bh_err *err);

#endif
