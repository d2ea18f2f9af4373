/* A bounded, growing buffer for an HTTP answer's body, filled by libcurl's write callback
 * (CURLOPT_WRITEFUNCTION bh_bodybuf_write, CURLOPT_WRITEDATA the buffer). Past max bytes the
 * callback refuses the rest (curl then fails the transfer) and sets over. data is
 * NUL-terminated, owned by the caller (free), NULL while nothing arrived. */
#ifndef BH_BODYBUF_H
#define BH_BODYBUF_H

#include <stddef.h>

struct bh_bodybuf {
    char *data;
    size_t len;
    size_t max; /* set by the caller */
    int over;   /* set when the body exceeded max */
};

size_t bh_bodybuf_write(char *p, size_t size, size_t n, void *buf);

#endif
