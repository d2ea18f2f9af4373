/* REST for the dashboard's chart history (samples.h): what a chart shows when it opens,
 * before the /ws stream continues it. */
#include "api.h"
#include "json.h"
#include "samples.h"
#include "store.h"

/* GET /api/v1/instances/{id}/samples: {instance, stepSeconds, points} (404 for an instance
 * the store does not hold). */
void bh_api_samples_instance(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    cJSON *inst = NULL;
    struct bh_err err;
    if (bh_store_get(req->ctx->store, "Instance", req->params[0], &inst, &err) < 0) {
        bh_api_error(resp, 404, "instance %.64s not found", req->params[0]);
        return;
    }
    cJSON_Delete(inst);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "instance", req->params[0]);
    cJSON_AddNumberToObject(o, "stepSeconds", BH_SAMPLES_STEP_MS / 1000.0);
    cJSON_AddItemToObject(o, "points",
                          req->ctx->samples ? bh_samples_instance(req->ctx->samples, req->params[0])
                                            : cJSON_CreateArray());
    bh_api_json(resp, 200, o);
}

/* GET /api/v1/samples: pool depth, claim latencies and hibernate/restore times. */
void bh_api_samples_overview(const struct bh_api_req *req, struct bh_api_resp *resp)
{
    if (!req->ctx->samples) {
        bh_api_error(resp, 503, "no chart history in this daemon");
        return;
    }
    bh_api_json(resp, 200, bh_samples_overview(req->ctx->samples));
}
