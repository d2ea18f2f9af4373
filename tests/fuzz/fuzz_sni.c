/* The first TLS record of a transparent TLS connection: record framing and the SNI of the
 * ClientHello, which decide where (and whether) the connection goes. */
#include "../../plugins/network/restricted/egress_int.h"

#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char name[EG_NAME_MAX], small[8], norm[EG_NAME_MAX];
    long need = eg_tls_record_need(data, size);
    if (need != -1 && need < 5)
        abort();
    if (eg_sni_parse(data, size, name, sizeof(name)) == 1) {
        size_t l = strnlen(name, sizeof(name));
        if (l == sizeof(name) || eg_name_norm(name, l, norm, sizeof(norm)) < 0 ||
            strcmp(name, norm) != 0)
            abort(); /* a found name is normalised and fits */
    }
    if (eg_sni_parse(data, size, small, sizeof(small)) == 1 && strnlen(small, 8) == 8)
        abort();
    return 0;
}
