/* Resource bodies and files (JSON or YAML) from API clients: parsing, then validation of
 * every document, whole and as each kind's spec. */
#include "fuzz.h"
#include "resource.h"

static const char *const kinds[] = {"BoilerhouseWorkload", "BoilerhousePool", "BoilerhouseClaim",
                                    "BoilerhouseTrigger"};

static void validate(cJSON *obj)
{
    struct bh_err err = {0};
    cJSON *spec = cJSON_GetObjectItemCaseSensitive(obj, "spec");
    for (size_t i = 0; spec && i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        cJSON *copy = cJSON_Duplicate(spec, 1);
        /* a fuzzer looks for crashes, not verdicts */
        BH_IGNORE(bh_resource_validate_spec(kinds[i], copy, &err));
        cJSON_Delete(copy);
    }
    /* a fuzzer looks for crashes, not verdicts */
    BH_IGNORE(bh_resource_validate(obj, &err));
    char *text = cJSON_PrintUnformatted(obj);
    cJSON_free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct bh_err err = {0};
    cJSON *doc = NULL, *all = NULL, *item;
    if (bh_resource_parse((const char *)data, size, &doc, &err) == 0) {
        validate(doc);
        cJSON_Delete(doc);
    }
    if (bh_resource_parse_all((const char *)data, size, &all, &err) == 0) {
        cJSON_ArrayForEach(item, all) {
            validate(item);
        }
        cJSON_Delete(all);
    }
    return 0;
}
