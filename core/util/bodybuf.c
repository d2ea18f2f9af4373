/* HTTP answer bodies up to a bound (bodybuf.h). */
#include "bodybuf.h"

#include <string.h>

#include "mem.h"

size_t bh_bodybuf_write(char *p, size_t size, size_t n, void *buf)
{
    struct bh_bodybuf *b = buf;
    size_t add = size * n;
    if (b->len + add > b->max) {
        b->over = 1;
        return 0;
    }
    b->data = bh_xrealloc(b->data, b->len + add + 1);
    memcpy(b->data + b->len, p, add);
    b->len += add;
    b->data[b->len] = '\0';
    return add;
}
