/* The body of a push to the egress sidecar's control port (sidecar/control.c): what reaches
 * it from the network once the token matched. A refusal takes nothing; an acceptance holds
 * one value per tenant header, each fit for a request head. */
#include "../../plugins/network/restricted/sidecar/sidecar.h"

#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

static const char CONFIG[] =
    "{\"workload\":\"web\",\"allowlist\":[],\"credentials\":[{\"domain\":\"api.example.com\","
    "\"headers\":[{\"name\":\"x-plain\",\"value\":\"v\"},{\"name\":\"x-tenant\","
    "\"tenantSecretKeyRef\":{\"name\":\"own\",\"key\":\"k\"}}]},{\"domain\":\"b.example\","
    "\"headers\":[{\"name\":\"authorization\",\"tenantSecretKeyRef\":{\"name\":\"o\","
    "\"key\":\"k\"}}]}],\"ports\":{\"http\":1,\"tls\":2,\"dns\":3},\"caDir\":\"/ca\","
    "\"control\":{\"port\":4,\"tokenFile\":\"/t\"}}";

static const char *no_env(const char *name)
{
    (void)name;
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct sidecar_config c;
    static int parsed;
    struct bh_err err = {0};
    if (!parsed) { /* once: the config a Pod's sidecar would have */
        parsed = 1;
        if (sidecar_config_parse(CONFIG, no_env, &c, &err) < 0)
            abort();
    }
    struct sidecar_values v = {0};
    if (sidecar_values_parse((const char *)data, size, &c, &v, &err) < 0) {
        if (v.v || !err.msg[0])
            abort(); /* refused: nothing taken, and said why */
        return 0;
    }
    if (v.n != c.n_tenant)
        abort();
    for (size_t i = 0; i < v.n; i++)
        for (const char *p = v.v[i]; *p; p++)
            if (*p == '\r' || *p == '\n')
                abort();
    sidecar_values_free(&v);
    return 0;
}
