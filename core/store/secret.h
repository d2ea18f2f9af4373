/* The local-mode secret store: named secrets with string keys (like Kubernetes Secrets),
 * optionally per tenant, encrypted at rest with AES-256-GCM under a key derived from the
 * master key, in <state_dir>/secrets/ (one file per secret, written atomically).
 * Values are never logged and never listed. */
#ifndef BH_SECRET_H
#define BH_SECRET_H

#include <cjson/cJSON.h>

#include "err.h"

struct bh_secrets;

BH_MUST_CHECK int bh_secrets_open(const char *state_dir, struct bh_secrets **out,
                                  struct bh_err *err);
void bh_secrets_close(struct bh_secrets *s);
/* tenant may be NULL (workload-wide secret) or a valid tenant id. Names and keys:
 * [A-Za-z0-9._-]{1,253}. */
BH_MUST_CHECK int bh_secrets_set(struct bh_secrets *s, const char *tenant, const char *name,
                                 const char *key, const char *value, struct bh_err *err);
/* *value owned (wipe with bh_crypto_wipe before free). BH_ENOTFOUND if absent. */
BH_MUST_CHECK int bh_secrets_get(struct bh_secrets *s, const char *tenant, const char *name,
                                 const char *key, char **value, struct bh_err *err);
/* Deletes one key, or the whole secret when key is NULL. */
BH_MUST_CHECK int bh_secrets_delete(struct bh_secrets *s, const char *tenant, const char *name,
                                    const char *key, struct bh_err *err);
/* [{"name", "tenant"?, "keys": [...]}] without values. Owned. */
BH_MUST_CHECK int bh_secrets_list(struct bh_secrets *s, cJSON **out, struct bh_err *err);

/* `boilerhouse secret set NAME KEY [--tenant T] (value from stdin) | get NAME KEY [--tenant T]
 * | list | delete NAME [KEY] [--tenant T]` with --state-dir; argv[0] is "secret". */
int bh_secret_cli_main(int argc, char **argv);

#endif
