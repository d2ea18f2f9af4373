/* An instance's log as /ws messages, for a client watching the instance (ws.h): first its
 * tail ({"type":"instance.log","reset":true,...}), then what is appended, as it is written
 * (inotify on the instance's directory, no timer). Memory per follower is one chunk: the
 * file is read only when the connection's queue is empty, so a slow client lags in the file,
 * not in memory, and is cut (4008) when it lags more than BH_WS_LOG_LAG_MAX bytes.
 *
 * Message: {type, instance, offset (bytes of the log before text), text (valid UTF-8:
 * invalid bytes become U+FFFD), reset (true: replace what is shown)}. Log messages carry no
 * event id and are not replayed: a reconnecting watcher gets the tail again. */
#ifndef BH_WS_LOG_H
#define BH_WS_LOG_H

#include "ctx.h"

#define BH_WS_LOG_TAIL (32 << 10)  /* bytes of the tail sent first */
#define BH_WS_LOG_CHUNK (16 << 10) /* bytes read per message */
#define BH_WS_LOG_LAG_MAX (1 << 20)

struct bh_ws_log;

/* Follows the log of instance id (a validated name; its directory must exist). NULL if it
 * cannot be watched. Owned; bh_ws_log_close. */
struct bh_ws_log *bh_ws_log_open(struct bh_ctx *ctx, const char *id);
void bh_ws_log_close(struct bh_ws_log *l);
/* Readable when the instance's directory changed; bh_ws_log_woken drains it. */
int bh_ws_log_fd(const struct bh_ws_log *l);
/* Drains the descriptor and notes that the log may have grown; returns how many bytes the
 * log holds beyond what was sent. */
long long bh_ws_log_woken(struct bh_ws_log *l);
/* The next message as JSON text (owned), or NULL when nothing is new. */
char *bh_ws_log_next(struct bh_ws_log *l);

#endif
