/* The Kubernetes-compatible API's parsers of outside input: request paths, label and field
 * selectors, the protobuf Secret decoder, and the patch appliers: merge, JSON patch and
 * server-side apply (the patch document as an applied configuration, then as an update, with
 * the target's managedFields as they came). The input is split at the first two NUL bytes:
 * path-or-selector, patch document, target document. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "kapi.h"
#include "ssa.h"

static void fuzz_patches(const char *patch_text, size_t patch_len, const char *doc_text)
{
    cJSON *patch = cJSON_ParseWithLength(patch_text, patch_len);
    if (!patch)
        return;
    cJSON *doc = cJSON_Parse(doc_text);
    cJSON *copy = cJSON_Duplicate(doc, 1);
    struct bh_err err = {0};
    cJSON *applied = cJSON_Duplicate(doc, 1), *updated = cJSON_Duplicate(patch, 1);
    struct bh_ssa_result res;
    if (bh_ssa_apply(&applied, patch, "fuzz", 0, "v1", "now", &res, &err) < 0)
        bh_ssa_apply(&applied, patch, "fuzz", 1, "v1", "now", &res, &err);
    if (cJSON_IsObject(updated))
        bh_ssa_update(doc, updated, "fuzz-update", "v1", "now");
    cJSON_Delete(applied);
    cJSON_Delete(updated);
    bh_kapi_merge_patch(&doc, patch);
    bh_kapi_json_patch(&copy, patch, &err);
    cJSON_Delete(doc);
    cJSON_Delete(copy);
    cJSON_Delete(patch);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    struct bh_kapi_path p;
    struct bh_kapi_sel sel;
    struct bh_err err = {0};
    bh_kapi_path_parse(text, &p, &err);
    if (bh_kapi_sel_parse(text, &sel, &err) == 0) {
        cJSON *obj = cJSON_Parse("{\"metadata\":{\"name\":\"a\",\"labels\":{\"k\":\"v\"}}}");
        bh_kapi_sel_match_labels(&sel, obj);
        bh_kapi_sel_match_fields(&sel, obj);
        cJSON_Delete(obj);
    }
    cJSON *secret = NULL;
    if (bh_kapi_proto_secret(data, size, &secret, &err) == 0)
        cJSON_Delete(secret);
    size_t first = strlen(text);
    if (first < size) {
        const char *patch = text + first + 1;
        fuzz_patches(patch, strlen(patch),
                     patch + strlen(patch) < text + size ? patch + strlen(patch) + 1 : "{}");
    }
    free(text);
    return 0;
}
