/* HTTP request heads from instances to the egress proxy (explicit and transparent): the head
 * parser, body framing, absolute-form URIs and Host authorities, and the head rebuilt for the
 * upstream. The bytes are preloaded into the reader's buffer; it never reads a socket. */
#include "../../plugins/network/restricted/egress.c"

#include "fuzz.h"
#include "fuzz_egress.h"

static void check_authority(const char *auth, int port)
{
    char *copy = eg_xstrdup(auth), name[EG_NAME_MAX];
    const char *why = NULL;
    if (split_authority(copy, port, name, sizeof(name), &why) == 0 && strlen(name) >= EG_NAME_MAX)
        abort();
    free(copy);
}

static void one_head(struct http_head *h)
{
    enum body_kind kind;
    unsigned long long len;
    body_framing(h, &kind, &len);
    wants_close(h);
    const char *host = head_get(h, "Host");
    if (host) {
        check_authority(host, 80);
        check_authority(host, 443);
    }
    char *target = eg_xstrdup(h->start[1]), *uhost = NULL, *path = NULL;
    if (absolute_uri(target, &uhost, &path) == 0)
        check_authority(uhost, 80);
    free(target);
    const struct eg_policy *p = fuzz_egress()->srcs[0].pol;
    struct sbuf *b = eg_xcalloc(1, sizeof(*b));
    build_request(b, h, h->start[1], "allowed.test", &p->creds[0]);
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > EG_IO_BUF)
        return 0;
    fuzz_egress();
    struct eg_io *io = eg_xcalloc(1, sizeof(*io));
    struct http_head *h = eg_xcalloc(1, sizeof(*h));
    io->fd = -1; /* a read fails: the head must be complete in the buffer */
    memcpy(io->buf, data, size);
    io->len = size;
    while (head_read(io, h) == 1) /* pipelined heads, as on a keep-alive connection */
        one_head(h);
    free(h);
    free(io);
    return 0;
}
