/* Image references from resources and the CLI. A parsed reference must format to a
 * normalised form that parses back to itself. */
#include "fuzz.h"
#include "image_int.h"
#include "mem.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size + 1);
    if (!in)
        abort();
    memcpy(in, data, size);
    in[size] = '\0';
    struct bh_err err = {0};
    struct bh_image_ref ref, again;
    if (bh_image_ref_parse(in, &ref, &err) == 0) {
        char *norm = bh_image_ref_format(&ref);
        if (bh_image_ref_parse(norm, &again, &err) < 0)
            abort(); /* a normalised reference must parse */
        char *norm2 = bh_image_ref_format(&again);
        if (strcmp(norm, norm2) != 0)
            abort(); /* normalisation must be idempotent */
        free(norm2);
        free(norm);
        bh_image_ref_clear(&again);
        bh_image_ref_clear(&ref);
    }
    char *out = NULL;
    if (bh_image_ref_normalize(in, &out, &err) == 0)
        free(out);
    bh_image_digest_valid(in);
    free(in);
    return 0;
}
