/* Manifest, index and image config bytes as a registry (or an OCI layout) serves them. The
 * fetch is network-bound (reg_manifest, static); this drives what it does with the bytes:
 * parse, index or manifest, linux/amd64 pick, descriptor digests, and the image config's
 * process (Entrypoint, Cmd, Env, WorkingDir) merged as an instance would. */
#include "fuzz.h"
#include "image_int.h"
#include "mem.h"
#include "oci_config.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct bh_err err = {0};
    cJSON *m = cJSON_ParseWithLength((const char *)data, size);
    if (!m)
        return 0;
    if (bh_image_manifest_is_index(m)) {
        const cJSON *d = bh_image_index_pick(m, &err);
        if (d)
            bh_image_desc_digest(d, &err);
    } else {
        bh_image_desc_digest(cJSON_GetObjectItemCaseSensitive(m, "config"), &err);
        const cJSON *l;
        cJSON_ArrayForEach(l, cJSON_GetObjectItemCaseSensitive(m, "layers")) {
            bh_image_desc_digest(l, &err);
        }
    }
    char **args = NULL, **env = NULL, *cwd = NULL;
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(m, "config");
    const cJSON *entry = cJSON_GetObjectItemCaseSensitive(m, "entrypoint");
    if (bh_oci_process_resolve(cJSON_IsObject(cfg) ? cfg : NULL,
                               cJSON_IsObject(entry) ? entry : NULL, &args, &env, &cwd,
                               &err) == 0) {
        bh_strv_free(args);
        bh_strv_free(env);
        free(cwd);
    }
    cJSON_Delete(m);
    return 0;
}
