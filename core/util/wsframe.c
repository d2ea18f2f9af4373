/* RFC 6455 frames (wsframe.h). */
#include "wsframe.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "crypto.h"
#include "mem.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

void bh_wsframe_append(char **buf, size_t *len, int opcode, const void *data, size_t n, int mask)
{
    unsigned char head[14];
    size_t h = 2;
    head[0] = (unsigned char)(0x80 | opcode);
    if (n < 126) {
        head[1] = (unsigned char)n;
    } else if (n < 65536) {
        head[1] = 126;
        head[2] = (unsigned char)(n >> 8);
        head[3] = (unsigned char)n;
        h = 4;
    } else {
        head[1] = 127;
        for (int i = 0; i < 8; i++)
            head[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
        h = 10;
    }
    unsigned char key[4] = {0};
    if (mask) {
        head[1] |= 0x80;
        if (RAND_bytes(key, sizeof(key)) != 1) /* predictable masks only weaken proxies' caches */
            memset(key, 0x5a, sizeof(key));
        memcpy(head + h, key, 4);
        h += 4;
    }
    *buf = bh_xrealloc(*buf, *len + h + n);
    unsigned char *out = (unsigned char *)*buf + *len;
    memcpy(out, head, h);
    const unsigned char *src = data;
    for (size_t i = 0; i < n; i++)
        out[h + i] = mask ? src[i] ^ key[i % 4] : src[i];
    *len += h + n;
}

ssize_t bh_wsframe_parse(unsigned char *in, size_t n, size_t max, int masked, struct bh_wsframe *f)
{
    if (n < 2)
        return 0;
    uint64_t len = in[1] & 0x7f;
    size_t h = 2;
    if (!(in[1] & 0x80) != !masked)
        return -1;
    if (len == 126) {
        if (n < 4)
            return 0;
        len = (uint64_t)in[2] << 8 | in[3];
        h = 4;
    } else if (len == 127) {
        if (n < 10)
            return 0;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | in[2 + i];
        h = 10;
    }
    size_t mlen = masked ? 4 : 0;
    if (len > max)
        return -1;
    if (n < h + mlen + len)
        return 0;
    unsigned char *p = in + h + mlen;
    for (size_t i = 0; masked && i < len; i++)
        p[i] ^= in[h + i % 4];
    f->opcode = in[0] & 0x0f;
    f->fin = !!(in[0] & 0x80);
    f->payload = p;
    f->len = (size_t)len;
    return (ssize_t)(h + mlen + len);
}

void bh_wsframe_accept_key(const char *key, char out[29])
{
    bh_autofree char *cat = bh_xasprintf("%s%s", key, WS_GUID);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(cat, strlen(cat), md, &n, EVP_sha1(), NULL);
    bh_autofree char *b64 = bh_crypto_base64(md, n);
    snprintf(out, 29, "%s", b64);
}
