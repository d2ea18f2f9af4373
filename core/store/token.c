/* API tokens in the store's "tokens" table: minting (random secret, SHA-256 kept), lookup by
 * hash, listing and revocation. See token.h. */
#include "token.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crypto.h"
#include "json.h"
#include "mem.h"
#include "name.h"

#define TOKEN_SECRET_BYTES 32
#define TOKEN_PREFIX "bht_"

/* A live row: not revoked, and no expiry or one still ahead (?1 is now, in ms). */
#define TOKEN_LIVE "revoked_ms = 0 AND (expires_ms = 0 OR expires_ms > ?1)"

static long long token_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void token_hex(const unsigned char *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static void token_hash(const char *secret, char hex[65])
{
    struct bh_sha256 *h = bh_crypto_sha256_new();
    bh_crypto_sha256_update(h, secret, strlen(secret));
    bh_crypto_sha256_final(h, hex);
}

int bh_token_scope_valid(const char *scope)
{
    if (!scope)
        return 0;
    if (strcmp(scope, "admin") == 0 || strcmp(scope, "viewer") == 0)
        return 1;
    return strncmp(scope, "tenant:", 7) == 0 && bh_name_tenant_valid(scope + 7);
}

static int token_spec_check(const struct bh_token_spec *spec, struct bh_err *err)
{
    if (!spec->name || !bh_name_tenant_valid(spec->name))
        return bh_err_set(err, BH_EINVAL,
                          "name: 1 to 63 of [A-Za-z0-9._-], beginning and ending with a letter "
                          "or digit");
    if (spec->n_scopes < 1 || spec->n_scopes > BH_TOKEN_MAX_SCOPES)
        return bh_err_set(err, BH_EINVAL, "scopes: 1 to %d scopes", BH_TOKEN_MAX_SCOPES);
    for (int i = 0; i < spec->n_scopes; i++)
        if (!bh_token_scope_valid(spec->scopes[i]))
            return bh_err_set(err, BH_EINVAL,
                              "scopes[%d]: \"%s\" is not admin, viewer or tenant:<tenant id>", i,
                              spec->scopes[i] ? spec->scopes[i] : "");
    if (spec->ttl_s < 0 || spec->ttl_s > 10LL * 365 * 24 * 3600)
        return bh_err_set(err, BH_EINVAL, "ttlSeconds: 0 (no expiry) to 10 years");
    return 0;
}

static char *token_scopes_json(const struct bh_token_spec *spec)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < spec->n_scopes; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(spec->scopes[i]));
    char *out = bh_json_print(a);
    cJSON_Delete(a);
    return out;
}

int bh_token_mint(struct bh_store *s, const struct bh_token_spec *spec, char **secret,
                  char id[BH_TOKEN_ID_LEN], struct bh_err *err)
{
    unsigned char raw[TOKEN_SECRET_BYTES], rid[6];
    char sec[sizeof(TOKEN_PREFIX) + 2 * TOKEN_SECRET_BYTES], hash[65];
    if (token_spec_check(spec, err) < 0)
        return -1;
    if (bh_crypto_random(raw, sizeof(raw), err) < 0 || bh_crypto_random(rid, sizeof(rid), err) < 0)
        return -1;
    memcpy(sec, TOKEN_PREFIX, sizeof(TOKEN_PREFIX) - 1);
    token_hex(raw, sizeof(raw), sec + sizeof(TOKEN_PREFIX) - 1);
    bh_crypto_wipe(raw, sizeof(raw));
    token_hash(sec, hash);
    memcpy(id, "tok-", 4);
    token_hex(rid, sizeof(rid), id + 4);
    long long now = token_now_ms();
    char created[24], expires[24];
    snprintf(created, sizeof(created), "%lld", now);
    snprintf(expires, sizeof(expires), "%lld", spec->ttl_s ? now + spec->ttl_s * 1000 : 0);
    bh_autofree char *scopes = token_scopes_json(spec);
    const char *args[] = {id,
                          spec->name,
                          hash,
                          scopes,
                          spec->workload,
                          spec->claim,
                          spec->created_by ? spec->created_by : "admin",
                          created,
                          expires};
    int rc = bh_store_sql(s,
                          "INSERT INTO tokens (id, name, hash, scopes, workload, claim, created_by,"
                          " created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                          args, (int)BH_ARRAY_LEN(args), NULL, NULL, err);
    if (rc == 0)
        *secret = bh_xstrdup(sec);
    bh_crypto_wipe(sec, sizeof(sec));
    return rc;
}

/* The scopes column back to an array, in place. */
static void token_row_scopes(cJSON *row)
{
    cJSON *parsed = cJSON_Parse(bh_json_str(row, "scopes") ?: "[]");
    cJSON_ReplaceItemInObjectCaseSensitive(row, "scopes", parsed ? parsed : cJSON_CreateArray());
}

int bh_token_lookup(struct bh_store *s, const char *secret, cJSON **out, struct bh_err *err)
{
    char hash[65], now[24];
    *out = NULL;
    if (!secret || strncmp(secret, TOKEN_PREFIX, sizeof(TOKEN_PREFIX) - 1) != 0)
        return 0; /* not one of ours: no query */
    token_hash(secret, hash);
    snprintf(now, sizeof(now), "%lld", token_now_ms());
    const char *args[] = {now, hash};
    cJSON *rows = NULL;
    if (bh_store_sql(
            s,
            "SELECT id, name, scopes, workload, claim FROM tokens WHERE hash = ?2 AND " TOKEN_LIVE,
            args, 2, &rows, NULL, err) < 0)
        return -1;
    cJSON *row = cJSON_DetachItemFromArray(rows, 0);
    cJSON_Delete(rows);
    if (row)
        token_row_scopes(row);
    *out = row;
    return 0;
}

/* ms since the epoch as RFC 3339 UTC, or nothing for 0. */
static void token_add_time(cJSON *row, const char *col, const char *key)
{
    long long ms = bh_json_int(row, col, 0);
    cJSON_DeleteItemFromObjectCaseSensitive(row, col);
    if (!ms)
        return;
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char buf[32];
    gmtime_r(&t, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    cJSON_AddStringToObject(row, key, buf);
}

int bh_token_list(struct bh_store *s, cJSON **out, struct bh_err *err)
{
    cJSON *rows = NULL, *row;
    if (bh_store_sql(s,
                     "SELECT id, name, scopes, workload, claim, created_by AS createdBy,"
                     " created_ms, expires_ms, revoked_ms FROM tokens ORDER BY created_ms, id",
                     NULL, 0, &rows, NULL, err) < 0)
        return -1;
    cJSON_ArrayForEach(row, rows) {
        token_row_scopes(row);
        token_add_time(row, "created_ms", "createdAt");
        token_add_time(row, "expires_ms", "expiresAt");
        token_add_time(row, "revoked_ms", "revokedAt");
        if (cJSON_IsNull(cJSON_GetObjectItem(row, "workload")))
            cJSON_DeleteItemFromObjectCaseSensitive(row, "workload");
        if (cJSON_IsNull(cJSON_GetObjectItem(row, "claim")))
            cJSON_DeleteItemFromObjectCaseSensitive(row, "claim");
    }
    *out = rows;
    return 0;
}

int bh_token_revoke(struct bh_store *s, const char *id, struct bh_err *err)
{
    char now[24];
    snprintf(now, sizeof(now), "%lld", token_now_ms());
    const char *args[] = {now, id};
    int changed = 0;
    /* Revoking a revoked token changes nothing and is not an error; an unknown id is. */
    if (bh_store_sql(s,
                     "UPDATE tokens SET revoked_ms = CASE WHEN revoked_ms = 0 THEN ?1 ELSE "
                     "revoked_ms END WHERE id = ?2",
                     args, 2, NULL, &changed, err) < 0)
        return -1;
    return changed ? 0 : bh_err_set(err, BH_ENOTFOUND, "token %s not found", id);
}

int bh_token_revoke_claim(struct bh_store *s, const char *claim, int *n, struct bh_err *err)
{
    char now[24];
    snprintf(now, sizeof(now), "%lld", token_now_ms());
    const char *args[] = {now, claim};
    int changed = 0;
    int rc =
        bh_store_sql(s, "UPDATE tokens SET revoked_ms = ?1 WHERE claim = ?2 AND revoked_ms = 0",
                     args, 2, NULL, &changed, err);
    if (n)
        *n = changed;
    return rc;
}
