/* REST for the Lua policy dir: GET /api/v1/policies lists the scripts and their stats;
 * POST /api/v1/policies/test runs one on a sample event under the same limits, changing
 * nothing (its bh.kv is a scratch one). */
#include <string.h>

#include "api.h"
#include "json.h"
#include "lua_host.h"
#include "resource.h"
#include "store.h"

void bh_api_policies_list(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    if (!req->ctx->policies) {
        bh_api_error(resp, 503, "no policy dir");
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "dir", req->ctx->cfg.policy_dir);
    cJSON_AddItemToObject(o, "policies", bh_lua_policies_list(req->ctx->policies));
    bh_api_json(resp, 200, o);
}

/* {script | source, event, workload?}: names what is wrong, or NULL. */
static const char *api_policy_test_check(const cJSON *body)
{
    static const char *const fields[] = {"script", "source", "event", "workload"};
    for (const cJSON *it = body->child; it; it = it->next) {
        int known = 0;
        for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
            known |= strcmp(it->string, fields[i]) == 0;
        if (!known)
            return "unknown field (expected script, source, event, workload)";
    }
    const char *script = bh_json_str(body, "script");
    const char *source = bh_json_str(body, "source");
    if (!script == !source)
        return "exactly one of script (a file of the policy dir) or source is required";
    if (!cJSON_IsObject(bh_json_get(body, "event")))
        return "event: required (an object)";
    const cJSON *wl = bh_json_get(body, "workload");
    if (wl && !cJSON_IsString(wl))
        return "workload: must be a workload name";
    return NULL;
}

void bh_api_policies_test(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    cJSON *body = NULL;
    if (!req->ctx->policies) {
        bh_api_error(resp, 503, "no policy dir");
        return;
    }
    if (bh_resource_parse(req->body ? req->body : "", req->body_len, &body, NULL) < 0 ||
        !cJSON_IsObject(body)) {
        cJSON_Delete(body);
        bh_api_error(resp, 400, "request body must be a JSON object");
        return;
    }
    const char *bad = api_policy_test_check(body);
    cJSON *wl = NULL, *out = NULL;
    struct bh_err err;
    const char *wname = bh_json_str(body, "workload");
    if (!bad && wname && bh_store_get(req->ctx->store, "BoilerhouseWorkload", wname, &wl, &err) < 0)
        bad = "workload: not found";
    if (bad) {
        bh_api_error(resp, 400, "%s", bad);
    } else if (bh_lua_policy_test(req->ctx->policies, bh_json_str(body, "script"),
                                  bh_json_str(body, "source"), bh_json_get(body, "event"), wl, &out,
                                  &err) < 0) {
        bh_api_error(resp, err.code == BH_ENOTFOUND ? 404 : 400, "%s", err.msg);
    } else {
        bh_api_json(resp, 200, out);
    }
    cJSON_Delete(wl);
    cJSON_Delete(body);
}
