/* Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it:
 * the holder renews renewTime every duration/4; a replica that has seen the same record
 * (holder, renewTime, resourceVersion) unchanged for leaseDurationSeconds on its own monotonic
 * clock takes the Lease over (leaseTransitions + 1). Every write carries the resourceVersion
 * it read, so two replicas racing for it cannot both win.
 *
 * Fencing: the holder counts its term from the moment it sent the write that won or renewed
 * the Lease; bh_kube_lease_held is false once duration has passed since then without a
 * renewal, before any other replica can have taken over (they count from later). */
#ifndef BH_KUBE_LEASE_H
#define BH_KUBE_LEASE_H

#include "client.h"
#include "err.h"

struct bh_kube_lease;

/* Called from the lease's thread when this replica becomes the holder, and when it stops
 * being it (a renewal failed past the term, or another replica holds it). */
typedef void (*bh_kube_lease_fn)(void *ud);

struct bh_kube_lease_cfg {
    struct bh_kube_client *client; /* borrowed; outlives the lease */
    const char *name;              /* the Lease's name in the client's namespace */
    const char *identity;          /* this replica's holderIdentity */
    int duration_s;                /* leaseDurationSeconds */
    bh_kube_lease_fn on_start, on_stop;
    void *ud;
};

/* Starts competing for the Lease on a thread of its own. */
BH_MUST_CHECK int bh_kube_lease_start(const struct bh_kube_lease_cfg *cfg,
                                      struct bh_kube_lease **out, struct bh_err *err);
/* Whether this replica holds the Lease and its term has not run out (any thread). */
int bh_kube_lease_held(struct bh_kube_lease *l);
/* Stops competing; a holder gives the Lease up (holderIdentity cleared) so that another
 * replica takes over at once. Frees l. */
void bh_kube_lease_stop(struct bh_kube_lease *l);

#endif
