/* bh-egress, the egress sidecar of a `restricted` workload's Pod in Kubernetes mode: the
 * restricted plugin's egress engine (egress.h) as a program of its own. Its configuration is
 * what core/kube/objects_egress.c puts in the sidecar container:
 *
 *   BOILERHOUSE_EGRESS_CONFIG  JSON {"workload": NAME, "allowlist": [PATTERN...],
 *                              "credentials": [{"domain": D, "headers": [HEADER...]}],
 *                              "ports": {"http": P, "tls": P, "dns": P}, "caDir": DIR}
 *                              where HEADER is {"name", "value"} (a literal),
 *                              {"name", "env": "BOILERHOUSE_EGRESS_CRED_<n>"} (the value is in
 *                              that variable, set from a Kubernetes Secret), or
 *                              {"name", "tenantSecretKeyRef"} (not delivered to the sidecar)
 *   BOILERHOUSE_EGRESS_CRED_*  the credential values
 *   DIR/tls.crt, DIR/tls.key   the workload's CA, from its kubernetes.io/tls Secret
 *
 * This header is the program's config parser (sidecar_config.c), kept apart from main.c so
 * the unit tests can drive it. */
#ifndef BH_SIDECAR_H
#define BH_SIDECAR_H

#include <stddef.h>

#include "egress.h"

#define SIDECAR_CONFIG_ENV "BOILERHOUSE_EGRESS_CONFIG"
#define SIDECAR_CRED_ENV "BOILERHOUSE_EGRESS_CRED_"

struct sidecar_config {
    char *workload;
    char **allow;
    size_t n_allow;
    struct egress_credential *creds; /* domains, headers and values owned (values wiped) */
    size_t n_creds;
    char **skipped; /* "<domain> <header>" of each tenantSecretKeyRef header: not injected */
    size_t n_skipped;
    int http_port, tls_port, dns_port;
    char *ca_dir;
};

/* Looks up an environment variable (getenv in the program; a table in the tests). */
typedef const char *(*sidecar_env_fn)(const char *name);

/* Parses the JSON text of BOILERHOUSE_EGRESS_CONFIG, resolving credential values with env.
 * Unknown keys, missing or mistyped fields and unset variables are errors naming the field.
 * out is always filled: sidecar_config_free it even on error. */
int sidecar_config_parse(const char *json, sidecar_env_fn env, struct sidecar_config *out,
                         struct bh_err *err);
void sidecar_config_free(struct sidecar_config *c);
/* The policy c describes, for egress_set_default_policy. Borrows from c. */
struct egress_policy sidecar_config_policy(const struct sidecar_config *c);

#endif
