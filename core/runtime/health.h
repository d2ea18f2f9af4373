/* HTTP health probes of instances. */
#ifndef BH_HEALTH_H
#define BH_HEALTH_H

#include "err.h"

/* HTTP GET http://host:port/path; 2xx or 3xx is healthy. With netns_path set, the socket is
 * created inside that network namespace (so instances without a host-visible address can be
 * probed on their loopback) and host is normally "127.0.0.1". */
int bh_health_http(const char *netns_path, const char *host, int port, const char *path,
                   int timeout_ms, struct bh_err *err);

#endif
