/* DNS queries from instances (UDP and TCP) to the restricted network's DNS filter. */
#include "../../plugins/network/restricted/egress.c"

#include "fuzz.h"
#include "fuzz_egress.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct egress *eg = fuzz_egress();
    if (size < 1)
        return 0;
    const char *src = data[0] & 1 ? FUZZ_SRC_KNOWN : FUZZ_SRC_UNKNOWN;
    size_t caps[] = {512, 4096}; /* UDP, TCP */
    for (size_t i = 0; i < 2; i++) {
        unsigned char *out = malloc(caps[i]), *q = malloc(size - 1 ? size - 1 : 1);
        if (!out || !q)
            abort();
        memcpy(q, data + 1, size - 1);
        size_t n = eg_dns_answer(eg, src, q, size - 1, out, caps[i]);
        if (n > caps[i])
            abort();
        free(q);
        free(out);
    }
    return 0;
}
