/* Built against an older minor of ABI 2, whose network ops ended after detach: the host must
 * load it and read bind_tenant, which this table does not have, as absent. */
#include <boilerhouse/plugin.h>

struct older_network_ops {
    BH_PLUGIN_OPS_HEAD;
    int (*prepare)(void *state, const struct bh_net_request *req, struct bh_net_result *res,
                   struct bh_err *err);
    int (*attach)(void *state, const struct bh_net_request *req, struct bh_net_result *res,
                  struct bh_err *err);
    int (*detach)(void *state, const struct bh_net_request *req, struct bh_err *err);
};

#define FX_NAME "older"
#define FX_OPS_TYPE struct older_network_ops
#define FX_NO_BIND_TENANT
#include "../fixture.h"
