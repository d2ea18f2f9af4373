/* The snapshot file layer under libarchive: plain passthrough or the chunked AES-256-GCM
 * format of docs/snapshot-format.md, hashed with SHA-256 while written. */
#include "snapshot_int.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crypto.h"
#include "mem.h"

static const uint8_t snap_magic[SNAP_MAGIC_LEN] = "BHSNAP1";

static int snap_key(const uint8_t *master, const uint8_t *salt, const char *context,
                    uint8_t key[BH_KEY_LEN], struct bh_err *err)
{
    bh_autofree char *info = bh_xasprintf("boilerhouse snapshot v1 %s", context ? context : "");
    return bh_crypto_derive(master, salt, SNAP_SALT_LEN, info, key, err);
}

/* Chunk i's nonce is i (big-endian) in the last 8 bytes: unique under a per-snapshot key,
 * and a reader that expects i refuses reordered or replayed chunks. */
static void snap_nonce(uint64_t index, uint8_t nonce[BH_GCM_NONCE_LEN])
{
    memset(nonce, 0, BH_GCM_NONCE_LEN);
    for (int i = 0; i < 8; i++)
        nonce[BH_GCM_NONCE_LEN - 1 - i] = (uint8_t)(index >> (8 * i));
}

static void snap_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t snap_get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ---- writing ------------------------------------------------------------------------------- */

static int snap_emit(struct bh_snapshot_writer *w, const void *data, size_t len)
{
    const uint8_t *p = data;
    bh_crypto_sha256_update(w->sha, data, len);
    w->size += len;
    while (len > 0) {
        ssize_t n = write(w->fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return bh_err_errno(&w->err, BH_EIO, "write snapshot");
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int snap_seal_chunk(struct bh_snapshot_writer *w, int final)
{
    uint8_t *out = w->sealed;
    uint32_t word = (uint32_t)w->len | (final ? SNAP_FINAL : 0);
    snap_put32(out, word);
    snap_nonce(w->index++, out + 4);
    uint8_t *ct = out + 4 + BH_GCM_NONCE_LEN;
    if (bh_crypto_seal(w->key, out + 4, out, 4, w->plain, w->len, ct, ct + w->len, &w->err) < 0)
        return -1;
    size_t total = 4 + BH_GCM_NONCE_LEN + w->len + BH_GCM_TAG_LEN;
    w->len = 0;
    return snap_emit(w, out, total);
}

int bh_snapshot_writer_init(struct bh_snapshot_writer *w, int fd, const uint8_t *master,
                            const char *context, struct bh_err *err)
{
    memset(w, 0, sizeof(*w));
    w->fd = fd;
    w->sha = bh_crypto_sha256_new();
    if (!master)
        return 0;
    uint8_t salt[SNAP_SALT_LEN];
    if (bh_crypto_random(salt, sizeof(salt), err) < 0 ||
        snap_key(master, salt, context, w->key, err) < 0)
        return -1;
    w->encrypted = 1;
    w->plain = bh_xmalloc(SNAP_CHUNK);
    w->sealed = bh_xmalloc(SNAP_CHUNK + 4 + BH_GCM_NONCE_LEN + BH_GCM_TAG_LEN);
    if (snap_emit(w, snap_magic, SNAP_MAGIC_LEN) < 0 || snap_emit(w, salt, sizeof(salt)) < 0)
        return bh_err_set(err, w->err.code, "%s", w->err.msg);
    return 0;
}

ssize_t bh_snapshot_writer_cb(struct archive *a, void *ud, const void *buf, size_t n)
{
    struct bh_snapshot_writer *w = ud;
    if (!w->encrypted)
        return snap_emit(w, buf, n) < 0 ? -1 : (ssize_t)n;
    for (size_t done = 0; done < n;) {
        size_t take = SNAP_CHUNK - w->len < n - done ? SNAP_CHUNK - w->len : n - done;
        memcpy(w->plain + w->len, (const uint8_t *)buf + done, take);
        w->len += take;
        done += take;
        if (w->len == SNAP_CHUNK && snap_seal_chunk(w, 0) < 0)
            return -1;
    }
    return (ssize_t)n;
}

int bh_snapshot_writer_finish(struct bh_snapshot_writer *w, struct bh_snapshot_info *info,
                              struct bh_err *err)
{
    if (w->encrypted && snap_seal_chunk(w, 1) < 0)
        return bh_err_set(err, w->err.code, "%s", w->err.msg);
    if (fsync(w->fd) < 0)
        return bh_err_errno(err, BH_EIO, "fsync snapshot");
    info->size = w->size;
    bh_crypto_sha256_final(w->sha, info->digest);
    w->sha = NULL;
    return 0;
}

void bh_snapshot_writer_free(struct bh_snapshot_writer *w)
{
    bh_crypto_sha256_free(w->sha);
    bh_crypto_wipe(w->key, sizeof(w->key));
    if (w->plain)
        bh_crypto_wipe(w->plain, SNAP_CHUNK);
    free(w->plain);
    free(w->sealed);
    memset(w, 0, sizeof(*w));
}

/* ---- reading ------------------------------------------------------------------------------- */

/* Reads exactly len bytes at r->off; a short read is a truncated file. */
static int snap_pread_full(struct bh_snapshot_reader *r, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(r->fd, (uint8_t *)buf + got, len - got, r->off + (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return bh_err_errno(&r->err, BH_EIO, "read snapshot");
        if (n == 0)
            return bh_err_set(&r->err, BH_EINVAL, "snapshot is truncated");
        got += (size_t)n;
    }
    r->off += (off_t)len;
    return 0;
}

int bh_snapshot_reader_init(struct bh_snapshot_reader *r, int fd, const uint8_t *master,
                            const char *context, struct bh_err *err)
{
    memset(r, 0, sizeof(*r));
    r->fd = fd;
    r->buf = bh_xmalloc(SNAP_CHUNK + 4 + BH_GCM_NONCE_LEN + BH_GCM_TAG_LEN);
    uint8_t head[SNAP_MAGIC_LEN + SNAP_SALT_LEN];
    ssize_t n = pread(fd, head, sizeof(head), 0);
    int magic = n == (ssize_t)sizeof(head) && !memcmp(head, snap_magic, SNAP_MAGIC_LEN);
    if (magic && !master)
        return bh_err_set(err, BH_EINVAL, "snapshot is encrypted but no master key was given");
    if (!magic && master)
        return bh_err_set(err, BH_EINVAL, "snapshot is not encrypted (expected encryption)");
    if (!magic)
        return 0;
    r->encrypted = 1;
    r->start = (off_t)sizeof(head);
    r->off = r->start;
    return snap_key(master, head + SNAP_MAGIC_LEN, context, r->key, err);
}

void bh_snapshot_reader_rewind(struct bh_snapshot_reader *r)
{
    r->off = r->start;
    r->index = 0;
    r->done = 0;
}

/* After the final chunk the file must end: appended data is tampering too. */
static int snap_expect_eof(struct bh_snapshot_reader *r)
{
    uint8_t extra;
    ssize_t n = pread(r->fd, &extra, 1, r->off);
    if (n != 0)
        return bh_err_set(&r->err, BH_EINVAL, "snapshot has data after its final chunk");
    return 0;
}

static ssize_t snap_read_chunk(struct bh_snapshot_reader *r)
{
    uint8_t *p = r->buf;
    if (snap_pread_full(r, p, 4 + BH_GCM_NONCE_LEN) < 0)
        return -1;
    uint32_t word = snap_get32(p), len = word & ~SNAP_FINAL;
    uint8_t nonce[BH_GCM_NONCE_LEN];
    snap_nonce(r->index++, nonce);
    if (len > SNAP_CHUNK || memcmp(nonce, p + 4, BH_GCM_NONCE_LEN))
        return bh_err_set(&r->err, BH_EINVAL, "snapshot chunk header is corrupt");
    uint8_t *ct = p + 4 + BH_GCM_NONCE_LEN;
    if (snap_pread_full(r, ct, len + BH_GCM_TAG_LEN) < 0 ||
        bh_crypto_open(r->key, nonce, p, 4, ct, len, ct, ct + len, &r->err) < 0)
        return -1;
    r->done = (word & SNAP_FINAL) != 0;
    if (r->done && snap_expect_eof(r) < 0)
        return -1;
    r->data = ct;
    return len;
}

ssize_t bh_snapshot_reader_cb(struct archive *a, void *ud, const void **buf)
{
    struct bh_snapshot_reader *r = ud;
    if (r->failed)
        return -1;
    ssize_t n;
    if (!r->encrypted) {
        n = pread(r->fd, r->buf, SNAP_CHUNK, r->off);
        if (n < 0)
            bh_err_errno(&r->err, BH_EIO, "read snapshot");
        r->off += n > 0 ? n : 0;
        r->data = r->buf;
    } else {
        n = r->done ? 0 : snap_read_chunk(r);
    }
    r->failed = n < 0;
    *buf = r->data;
    return n;
}

int bh_snapshot_reader_drain(struct bh_snapshot_reader *r, struct bh_err *err)
{
    const void *buf;
    while (r->encrypted && !r->done)
        if (bh_snapshot_reader_cb(NULL, r, &buf) < 0)
            return bh_err_set(err, r->err.code, "%s", r->err.msg);
    return 0;
}

void bh_snapshot_reader_free(struct bh_snapshot_reader *r)
{
    bh_crypto_wipe(r->key, sizeof(r->key));
    if (r->buf && r->encrypted)
        bh_crypto_wipe(r->buf, SNAP_CHUNK);
    free(r->buf);
    memset(r, 0, sizeof(*r));
}

int bh_snapshot_write_file(const char *out_path, const uint8_t *master, const char *context,
                           int (*body)(struct bh_snapshot_writer *w, void *ud, struct bh_err *err),
                           void *ud, struct bh_snapshot_info *info, struct bh_err *err)
{
    bh_autoclose int fd =
        open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 || fchmod(fd, 0600) < 0)
        return bh_err_errno(err, BH_EIO, "snapshot: create %s", out_path);
    struct bh_snapshot_writer w;
    int rc = bh_snapshot_writer_init(&w, fd, master, context, err);
    if (rc == 0)
        rc = body(&w, ud, err);
    if (rc == 0)
        rc = bh_snapshot_writer_finish(&w, info, err);
    bh_snapshot_writer_free(&w);
    if (rc < 0)
        unlink(out_path);
    return rc;
}
