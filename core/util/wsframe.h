/* RFC 6455 framing, shared by the /ws server (api/ws.c) and the websocket trigger driver
 * (controllers/trigger_ws.c): building frames (masked when a client sends them), parsing
 * the next frame of a buffer, and the handshake's accept key. No I/O here. */
#ifndef BH_WSFRAME_H
#define BH_WSFRAME_H

#include <stddef.h>
#include <sys/types.h>

enum {
    BH_WS_OP_CONT = 0x0,
    BH_WS_OP_TEXT = 0x1,
    BH_WS_OP_BINARY = 0x2,
    BH_WS_OP_CLOSE = 0x8,
    BH_WS_OP_PING = 0x9,
    BH_WS_OP_PONG = 0xA,
};

struct bh_wsframe {
    int opcode;
    int fin;
    unsigned char *payload; /* points into the parsed buffer, unmasked in place */
    size_t len;
};

/* Appends one final frame to *buf (grown with bh_xrealloc). mask: a client's frame, masked
 * with a fresh random key as RFC 6455 §5.3 requires of clients. */
void bh_wsframe_append(char **buf, size_t *len, int opcode, const void *data, size_t n, int mask);
/* Parses the frame at the start of in[0..n): its size in bytes (> 0), 0 when in holds only
 * part of it, -1 on a protocol error — masking other than `masked` (servers get masked
 * frames, clients unmasked ones) or a payload over max bytes (a frame's header adds at most
 * 14). */
ssize_t bh_wsframe_parse(unsigned char *in, size_t n, size_t max, int masked, struct bh_wsframe *f);
/* Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key + GUID)) into out[29]. */
void bh_wsframe_accept_key(const char *key, char out[29]);

#endif
