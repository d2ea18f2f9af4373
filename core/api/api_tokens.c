/* Token routes: mint, list and revoke API tokens (token.h), and GET /api/v1/whoami. The
 * minted token is in the mint answer only; the audit log records its name and id. */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "auth.h"
#include "crypto.h"
#include "json.h"
#include "mem.h"
#include "token.h"

static const char *const tokens_fields[] = {"name", "scopes", "ttlSeconds"};

/* Unknown fields are refused, so a misspelt ttl never mints a token that does not expire. */
static int tokens_check_fields(const cJSON *body, struct bh_api_resp *resp)
{
    const cJSON *f;
    cJSON_ArrayForEach(f, body) {
        size_t i = 0;
        while (i < BH_ARRAY_LEN(tokens_fields) && strcmp(f->string, tokens_fields[i]) != 0)
            i++;
        if (i == BH_ARRAY_LEN(tokens_fields)) {
            bh_api_error(resp, 400, "%s: unknown field (expected name, scopes, ttlSeconds)",
                         f->string);
            return -1;
        }
    }
    return 0;
}

/* scopes: an array of strings, into spec (borrowing from body). */
static int tokens_scopes(const cJSON *body, const char **scopes, struct bh_token_spec *spec,
                         struct bh_api_resp *resp)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(body, "scopes"), *s;
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) < 1 ||
        cJSON_GetArraySize(arr) > BH_TOKEN_MAX_SCOPES) {
        bh_api_error(resp, 400,
                     "scopes: required, an array of 1 to %d of admin, viewer, "
                     "tenant:<tenant id>",
                     BH_TOKEN_MAX_SCOPES);
        return -1;
    }
    cJSON_ArrayForEach(s, arr) {
        if (!cJSON_IsString(s)) {
            bh_api_error(resp, 400, "scopes[%d]: must be a string", spec->n_scopes);
            return -1;
        }
        scopes[spec->n_scopes++] = s->valuestring;
    }
    spec->scopes = scopes;
    return 0;
}

static int tokens_ttl(const cJSON *body, struct bh_token_spec *spec, struct bh_api_resp *resp)
{
    const cJSON *ttl = cJSON_GetObjectItemCaseSensitive(body, "ttlSeconds");
    if (!ttl)
        return 0;
    if (!cJSON_IsNumber(ttl) || ttl->valuedouble != (double)(long long)ttl->valuedouble ||
        ttl->valuedouble < 0) {
        bh_api_error(resp, 400, "ttlSeconds: a whole number of seconds (0: no expiry)");
        return -1;
    }
    spec->ttl_s = (long long)ttl->valuedouble;
    return 0;
}

void bh_api_tokens_create(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    cJSON *body = NULL;
    const char *scopes[BH_TOKEN_MAX_SCOPES];
    struct bh_token_spec spec = {.created_by = req->who ? req->who->actor : "admin"};
    if (bh_api_body(req, resp, &body) < 0)
        return;
    spec.name = bh_json_str(body, "name");
    if (tokens_check_fields(body, resp) == 0 && tokens_scopes(body, scopes, &spec, resp) == 0 &&
        tokens_ttl(body, &spec, resp) == 0) {
        char id[BH_TOKEN_ID_LEN];
        char *secret = NULL;
        struct bh_err err;
        if (bh_token_mint(req->ctx->store, &spec, &secret, id, &err) < 0) {
            bh_api_from_err(resp, &err);
        } else {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "id", id);
            cJSON_AddStringToObject(o, "name", spec.name);
            cJSON_AddItemToObject(o, "scopes",
                                  cJSON_Duplicate(cJSON_GetObjectItem(body, "scopes"), 1));
            cJSON_AddNumberToObject(o, "ttlSeconds", (double)spec.ttl_s);
            cJSON_AddStringToObject(o, "token", secret);
            bh_crypto_wipe(secret, strlen(secret));
            free(secret);
            bh_api_json(resp, 201, o);
        }
    }
    cJSON_Delete(body);
}

void bh_api_tokens_list(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    cJSON *list = NULL;
    struct bh_err err;
    if (bh_token_list(req->ctx->store, &list, &err) < 0)
        bh_api_from_err(resp, &err);
    else
        bh_api_json(resp, 200, list);
}

void bh_api_tokens_revoke(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    struct bh_err err;
    if (bh_token_revoke(req->ctx->store, req->params[0], &err) < 0) {
        bh_api_from_err(resp, &err);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", req->params[0]);
    cJSON_AddBoolToObject(o, "revoked", 1);
    bh_api_json(resp, 200, o);
}

void bh_api_whoami(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    bh_api_json(resp, 200, bh_auth_whoami(req->who));
}
