/* The claim index: the Active claim of each (tenant, workload) pair, kept in memory from the
 * store's own change events, so that a tenant claiming what it already holds is answered
 * without a store read (bh_claim_open's fast path). Everything else reads the store. */
#ifndef BH_CLAIM_INDEX_H
#define BH_CLAIM_INDEX_H

#include <cjson/cJSON.h>
#include <stdint.h>

struct bh_claim_index;

struct bh_claim_index *bh_claim_index_new(void);
void bh_claim_index_free(struct bh_claim_index *ix);
/* Records a claim as stored at resourceVersion rv: active (the claim controller's call: Active
 * and not being deleted) or not (any other phase, or gone). An older rv than the one recorded
 * for its pair is ignored: store callbacks of two writers may arrive out of commit order.
 * claim borrowed. */
void bh_claim_index_observe(struct bh_claim_index *ix, const cJSON *claim, int64_t rv, int active);
/* A copy (owned) of (tenant, workload)'s claim if it was last recorded active; else NULL. ix
 * may be NULL (no index: always NULL). */
cJSON *bh_claim_index_active(struct bh_claim_index *ix, const char *tenant, const char *workload);

#endif
