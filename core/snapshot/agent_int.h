/* Inside the snapshot agent (agent.h): the activity sampler the server answers
 * GET /v1/activity from (agent_activity.c). */
#ifndef BH_AGENT_INT_H
#define BH_AGENT_INT_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>

#include "agent.h"

/* A TCP socket as last seen: its cookie and the bytes it had moved. */
struct bh_agent_socket {
    uint64_t cookie;
    uint64_t bytes; /* acknowledged + received */
};

struct bh_agent_activity {
    const struct bh_agent_cfg *cfg; /* borrowed: root and watch */
    uint16_t own_port;
    int probe_family; /* 0: no probe peer */
    struct in6_addr probe;
    pthread_mutex_t mu;
    struct bh_agent_socket *seen; /* the last scan, sorted by cookie; under mu */
    size_t n_seen;
    unsigned long long net; /* the activity counter; under mu */
    pthread_t thread;
    int running;
    int stop[2];
};

/* Takes a first look (so what exists at start is not activity) and samples every second
 * until stopped. */
BH_MUST_CHECK int bh_agent_activity_start(struct bh_agent_activity *t,
                                          const struct bh_agent_cfg *cfg, int port,
                                          struct bh_err *err);
void bh_agent_activity_stop(struct bh_agent_activity *t);
/* Looks now, so the answer includes what happened up to the question. */
BH_MUST_CHECK int bh_agent_activity_sample(struct bh_agent_activity *t, struct bh_err *err);
/* Bytes moved plus connections seen since start: grows with activity, never shrinks. */
long long bh_agent_activity_net(struct bh_agent_activity *t);
/* Newest mtime (wall ms) under the watched directories; 0 when none. */
long long bh_agent_activity_newest_mtime(const struct bh_agent_activity *t);

#endif
