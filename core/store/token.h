/* API tokens: bearer credentials beyond the admin key, each with scopes ("admin", "viewer",
 * "tenant:<id>"), an optional expiry, and revocation. Kept in the store's database (the
 * "tokens" table, created by a store migration) as the SHA-256 of the token: the token itself
 * exists only in the mint answer. A lookup reads the table every time, so an expiry or a
 * revocation takes effect on the very next request. */
#ifndef BH_TOKEN_H
#define BH_TOKEN_H

#include <cjson/cJSON.h>

#include "err.h"
#include "store.h"

#define BH_TOKEN_MAX_SCOPES 8
#define BH_TOKEN_ID_LEN 17 /* "tok-" + 12 hex + NUL */

/* What to mint; every field borrowed. */
struct bh_token_spec {
    const char *name;          /* [A-Za-z0-9._-], 1..63 (a label value) */
    const char *const *scopes; /* 1..BH_TOKEN_MAX_SCOPES valid scopes */
    int n_scopes;
    long long ttl_s;        /* > 0: expires after that; 0: never */
    const char *workload;   /* per-claim tokens: the one workload it covers */
    const char *claim;      /* per-claim tokens: the claim that owns it */
    const char *created_by; /* the actor minting it */
};

/* "admin", "viewer" or "tenant:<valid tenant id>". */
int bh_token_scope_valid(const char *scope);
/* Mints a token: *secret (owned; wipe it when done) is the only copy of the bearer value, id
 * its public name. BH_EINVAL naming the bad field. */
BH_MUST_CHECK int bh_token_mint(struct bh_store *s, const struct bh_token_spec *spec, char **secret,
                                char id[BH_TOKEN_ID_LEN], struct bh_err *err);
/* The live (unexpired, unrevoked) token whose secret this is, as an owned object {id, name,
 * scopes: [...], workload?, claim?}; *out NULL if none. */
BH_MUST_CHECK int bh_token_lookup(struct bh_store *s, const char *secret, cJSON **out,
                                  struct bh_err *err);
/* Every token, without hashes: [{id, name, scopes, workload?, claim?, createdBy, createdAt,
 * expiresAt?, revokedAt?}], owned. */
BH_MUST_CHECK int bh_token_list(struct bh_store *s, cJSON **out, struct bh_err *err);
/* Revokes one token at once. BH_ENOTFOUND if no such id. */
BH_MUST_CHECK int bh_token_revoke(struct bh_store *s, const char *id, struct bh_err *err);
/* Revokes the live tokens of a claim; *n (optional) how many. */
BH_MUST_CHECK int bh_token_revoke_claim(struct bh_store *s, const char *claim, int *n,
                                        struct bh_err *err);

/* `boilerhouse token create NAME --scope S... [--ttl SECONDS] | list | revoke ID` with
 * --state-dir (core/cli/token_cli.c); argv[0] is "token". */
int bh_token_cli_main(int argc, char **argv);

#endif
