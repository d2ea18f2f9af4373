/* Log following for /ws watchers (ws_log.h). */
#include "ws_log.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "instance.h"
#include "json.h"
#include "mem.h"

struct bh_ws_log {
    char *id, *path;
    int ifd;       /* inotify on the instance's directory */
    long long off; /* bytes of the log sent; -1 before the tail */
    int pending;   /* the log may hold bytes not sent */
};

struct bh_ws_log *bh_ws_log_open(struct bh_ctx *ctx, const char *id)
{
    bh_autofree char *dir = NULL;
    struct bh_ws_log *l = bh_xcalloc(1, sizeof(*l));
    l->id = bh_xstrdup(id);
    l->path = bh_instance_log_path(ctx, id);
    dir = bh_xstrdup(l->path);
    *strrchr(dir, '/') = '\0';
    l->off = -1;
    l->pending = 1;
    l->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (l->ifd < 0 ||
        inotify_add_watch(l->ifd, dir, IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_ONLYDIR) < 0) {
        bh_ws_log_close(l);
        return NULL;
    }
    return l;
}

void bh_ws_log_close(struct bh_ws_log *l)
{
    if (!l)
        return;
    if (l->ifd >= 0)
        close(l->ifd);
    free(l->id);
    free(l->path);
    free(l);
}

int bh_ws_log_fd(const struct bh_ws_log *l)
{
    return l->ifd;
}

static long long ws_log_size(const struct bh_ws_log *l)
{
    struct stat st;
    return stat(l->path, &st) == 0 ? (long long)st.st_size : 0;
}

long long bh_ws_log_woken(struct bh_ws_log *l)
{
    char buf[4096];
    while (read(l->ifd, buf, sizeof(buf)) > 0)
        ; /* which file changed does not matter: the size tells */
    l->pending = 1;
    long long size = ws_log_size(l);
    return l->off >= 0 && size > l->off ? size - l->off : 0;
}

/* Length of the UTF-8 sequence starting at p (n bytes available): its length if valid, 0 if
 * cut short by the end, -1 if invalid. */
static int ws_log_utf8_len(const unsigned char *p, size_t n)
{
    int len = p[0] < 0x80             ? 1
              : (p[0] & 0xE0) == 0xC0 ? 2
              : (p[0] & 0xF0) == 0xE0 ? 3
              : (p[0] & 0xF8) == 0xF0 ? 4
                                      : -1;
    if (len < 0 || (len == 2 && p[0] < 0xC2) || (len == 4 && p[0] > 0xF4))
        return -1;
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n)
            return 0;
        if ((p[i] & 0xC0) != 0x80)
            return -1;
    }
    if ((len == 3 && p[0] == 0xE0 && p[1] < 0xA0) || (len == 3 && p[0] == 0xED && p[1] > 0x9F) ||
        (len == 4 && p[0] == 0xF0 && p[1] < 0x90) || (len == 4 && p[0] == 0xF4 && p[1] > 0x8F))
        return -1;
    return len;
}

/* buf as valid UTF-8 (owned), invalid bytes as U+FFFD; *used gets the bytes taken (a
 * sequence cut short at the end is left for the next read). */
static char *ws_log_utf8(const unsigned char *buf, size_t n, size_t *used)
{
    char *out = bh_xmalloc(n * 3 + 1);
    size_t o = 0, i = 0;
    while (i < n) {
        int len = ws_log_utf8_len(buf + i, n - i);
        if (len == 0)
            break;
        if (len < 0) {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
            continue;
        }
        memcpy(out + o, buf + i, (size_t)len);
        o += (size_t)len;
        i += (size_t)len;
    }
    out[o] = '\0';
    *used = i;
    return out;
}

/* Where the first message starts: the last BH_WS_LOG_TAIL bytes, from a line start. */
static long long ws_log_tail_start(int fd, long long size)
{
    if (size <= BH_WS_LOG_TAIL)
        return 0;
    char buf[BH_WS_LOG_TAIL];
    long long start = size - BH_WS_LOG_TAIL;
    ssize_t n = pread(fd, buf, sizeof(buf), start);
    char *nl = n > 0 ? memchr(buf, '\n', (size_t)n) : NULL;
    return nl ? start + (nl - buf) + 1 : start;
}

static char *ws_log_message(const struct bh_ws_log *l, long long off, const char *text, int reset)
{
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "type", "instance.log");
    cJSON_AddStringToObject(m, "instance", l->id);
    cJSON_AddNumberToObject(m, "offset", (double)off);
    cJSON_AddStringToObject(m, "text", text);
    cJSON_AddBoolToObject(m, "reset", reset);
    char *json = bh_json_print(m);
    cJSON_Delete(m);
    return json;
}

char *bh_ws_log_next(struct bh_ws_log *l)
{
    if (!l->pending)
        return NULL;
    int fd = open(l->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    long long size = fd >= 0 && fstat(fd, &st) == 0 ? (long long)st.st_size : 0;
    int reset = l->off < 0;
    if (reset)
        l->off = fd >= 0 ? ws_log_tail_start(fd, size) : 0;
    else if (size < l->off)
        l->off = 0; /* rotated (bh_runtime_log_rotate truncates it): go on from its start */
    unsigned char buf[BH_WS_LOG_CHUNK];
    long long want = size - l->off < BH_WS_LOG_CHUNK ? size - l->off : BH_WS_LOG_CHUNK;
    ssize_t n = fd >= 0 && want > 0 ? pread(fd, buf, (size_t)want, l->off) : 0;
    if (fd >= 0)
        close(fd);
    size_t used = 0;
    bh_autofree char *text = ws_log_utf8(buf, n > 0 ? (size_t)n : 0, &used);
    long long at = l->off;
    l->off += (long long)used;
    l->pending = n > 0 && l->off < size && used > 0;
    return reset || used ? ws_log_message(l, at, text, reset) : NULL;
}
