/* bh-egress, the egress sidecar of a `restricted` workload's Pod in Kubernetes mode: the
 * restricted plugin's egress engine (egress.h) as a program of its own. Its configuration is
 * what core/kube/objects_egress.c puts in the sidecar container:
 *
 *   BOILERHOUSE_EGRESS_CONFIG  JSON {"workload": NAME, "allowlist": [PATTERN...],
 *                              "credentials": [{"domain": D, "headers": [HEADER...]}],
 *                              "ports": {"http": P, "tls": P, "dns": P}, "caDir": DIR,
 *                              "control": {"port": P, "tokenFile": FILE}}
 *                              where HEADER is {"name", "value"} (a literal),
 *                              {"name", "env": "BOILERHOUSE_EGRESS_CRED_<n>"} (the value is in
 *                              that variable, set from a Kubernetes Secret), or
 *                              {"name", "tenantSecretKeyRef"} (a tenant's secret: the daemon
 *                              pushes its value per claim to the control endpoint);
 *                              "control" is there exactly when a tenantSecretKeyRef header is
 *   BOILERHOUSE_EGRESS_CRED_*  the credential values
 *   DIR/tls.crt, DIR/tls.key   the workload's CA, from its kubernetes.io/tls Secret
 *   FILE                       the bearer token of the control endpoint (the namespace's
 *                              boilerhouse-agent Secret, mounted in the sidecars only)
 *
 * The control endpoint (control.c), on 0.0.0.0:P, takes the tenant's values:
 *
 *   PUT /v1/credentials  Authorization: Bearer <token>, Content-Type: application/json,
 *                        {"headers": [{"domain": D, "name": N, "value": V}, ...]} with one
 *                        entry for every tenantSecretKeyRef header of the config and nothing
 *                        else -> 204; they replace the values held before, all at once
 *   GET  /v1/credentials  -> 200 {"headers": [{"domain", "name"}...], "set": bool}: the headers
 *                        it takes, and whether a push set them (never a value)
 *   GET  /healthz         -> 200 (no token)
 *
 * Anything else is refused with a text/plain error naming what is wrong, and changes nothing.
 * The values live in the engine's policy only (memory; wiped when replaced).
 *
 * This header is the program's config parser (sidecar_config.c) and the control endpoint's
 * parts (control.c), kept apart from main.c so the unit tests can drive them. */
#ifndef BH_SIDECAR_H
#define BH_SIDECAR_H

#include <stddef.h>

#include "egress.h"

#define SIDECAR_CONFIG_ENV "BOILERHOUSE_EGRESS_CONFIG"
#define SIDECAR_CRED_ENV "BOILERHOUSE_EGRESS_CRED_"
#define SIDECAR_CONTROL_PATH "/v1/credentials"

/* A tenantSecretKeyRef header of the config: its value arrives through the control endpoint. */
struct sidecar_tenant_header {
    size_t cred; /* index into sidecar_config.creds */
    char *name;
};

struct sidecar_config {
    char *workload;
    char **allow;
    size_t n_allow;
    struct egress_credential *creds; /* domains, headers and values owned (values wiped) */
    size_t n_creds;
    struct sidecar_tenant_header *tenant; /* in config order */
    size_t n_tenant;
    int http_port, tls_port, dns_port;
    char *ca_dir;
    int control_port;    /* 0: no control endpoint (no tenant headers) */
    char *control_token; /* path of its token file */
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

/* ---- the control endpoint (control.c) ---- */

/* The tenant's values, one per sidecar_config.tenant entry (same order). Owned; wiped. */
struct sidecar_values {
    char **v;
    size_t n;
};

/* Parses a PUT body against c: every tenant header exactly once, nothing unknown, names and
 * values that can go into a request head (no CR, LF or NUL). *out is filled only on success. */
int sidecar_values_parse(const char *body, size_t len, const struct sidecar_config *c,
                         struct sidecar_values *out, struct bh_err *err);
void sidecar_values_free(struct sidecar_values *v);
/* The config's policy with the tenant's values (NULL: without them) added to their domains,
 * into eg (egress_set_default_policy). */
int sidecar_apply(struct egress *eg, const struct sidecar_config *c, const struct sidecar_values *v,
                  struct bh_err *err);
/* The token of the control endpoint, from its file: at least 32 characters, no whitespace
 * inside (a trailing newline is dropped). Owned. */
int sidecar_token_read(const char *path, char **out, struct bh_err *err);

struct sidecar_control;
/* Listens on 0.0.0.0:c->control_port and serves in a thread of its own until stopped; log is
 * the program's host API. c and eg are borrowed until sidecar_control_stop. */
int sidecar_control_start(const struct sidecar_config *c, struct egress *eg,
                          const struct bh_host_api *log, struct sidecar_control **out,
                          struct bh_err *err);
void sidecar_control_stop(struct sidecar_control *ctl);

#endif
