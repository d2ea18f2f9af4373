/* Server-side apply: field ownership (metadata.managedFields, fieldsV1 sets) and the
 * structured merge of an applied configuration into the live object, as the API server does
 * for custom resources whose schema marks no list as keyed: maps merge field by field, lists
 * and scalars are atomic (one owner for the whole value).
 *
 * A field set is a fieldsV1 tree: {"f:spec": {"f:image": {"f:ref": {}}}}; an empty object is
 * a leaf (the whole value at that path is owned). Outside input (the applied body, the
 * managedFields a client sent back): fuzzed by tests/fuzz/fuzz_kapi.c. */
#ifndef BH_SSA_H
#define BH_SSA_H

#include <cjson/cJSON.h>

#include "err.h"

/* The fields a configuration sets (all but apiVersion, kind, status and the system
 * metadata). Owned. */
cJSON *bh_ssa_fields(const cJSON *config);

/* One conflict: a field another manager owns, set to a different value. */
struct bh_ssa_conflict {
    char manager[128];
    char field[256]; /* ".spec.version" */
};
#define BH_SSA_CONFLICTS_MAX 16

struct bh_ssa_result {
    int n_conflicts; /* counted past BH_SSA_CONFLICTS_MAX; the first ones are listed */
    struct bh_ssa_conflict conflicts[BH_SSA_CONFLICTS_MAX];
};

/* Applies config (the apply body) as manager onto *live (in place; its
 * metadata.managedFields are read and rewritten; *live may be replaced). Without force, a
 * field owned by another manager whose value config changes is a conflict: then *live is
 * untouched, res lists them and the call returns BH_ECONFLICT. With force the applier takes
 * those fields over. Fields the manager applied before and applies no more are removed unless
 * another manager owns them. api_version goes into the managedFields entry; now is its time. */
int bh_ssa_apply(cJSON **live, const cJSON *config, const char *manager, int force,
                 const char *api_version, const char *now, struct bh_ssa_result *res,
                 struct bh_err *err);

/* Records a non-apply write (create, update, patch) by manager: the fields whose values
 * changed from old (NULL on create) to *obj become manager's (operation Update) and no one
 * else's. managedFields are taken from old and written into *obj. */
void bh_ssa_update(const cJSON *old, cJSON *obj, const char *manager, const char *api_version,
                   const char *now);

/* The message kubectl prints for conflicts: "Apply failed with 1 conflict: conflict with
 * \"m\" using <api_version>: .spec.version". Owned. */
char *bh_ssa_conflict_message(const struct bh_ssa_result *res, const char *api_version);

#endif
