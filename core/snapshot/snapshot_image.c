/* Image snapshots: the allocated, non-zero blocks of an instance's disk image as one
 * sequential stream (docs/snapshot-format.md, "image-v1"). Restore writes them back into a
 * sparse file of the same size: its cost is the bytes, never the number of files in it.
 *
 * The stream goes through the same file layer as the tar format (snapshot_io.c: hashing and
 * optional AES-GCM chunks) and the same compression, as libarchive's "raw" format. */
#include "snapshot_int.h"

#include <archive_entry.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lz4frame.h>
#include <zstd.h>

#include "mem.h"

#define IMG_MAGIC "BHIMG1\0\0"
#define IMG_BLOCK 4096u
#define IMG_BUF (1u << 20) /* bytes read from the image at a time; the longest record */
#define IMG_END UINT64_MAX /* offset of the end record */
#define IMG_HEAD_LEN 24    /* magic, u64 size, u32 block, u32 reserved */
#define IMG_REC_LEN 12     /* u64 offset, u32 length */
/* Written bytes between two writeback starts of a restore (see img_writeback). */
#define IMG_WRITEBACK_STEP (8u << 20)
/* The restore's writer (img_writer): batches of records in flight between the thread that
 * decompresses and the one that writes. A batch holds whole records, up to IMG_BATCH_RECS of
 * them (many small records cost one handover, not one each). */
#define IMG_BATCHES 3
#define IMG_BATCH_BYTES (2u * IMG_BUF)
#define IMG_BATCH_RECS 512

struct img_out {
    struct archive *a;
    uint64_t data; /* data bytes written so far */
    struct bh_err *err;
};

static int img_write(struct img_out *o, const void *p, size_t n)
{
    if (n && archive_write_data(o->a, p, n) != (la_ssize_t)n)
        return bh_err_set(o->err, BH_EIO, "snapshot image: write: %s", archive_error_string(o->a));
    return 0;
}

static int img_record(struct img_out *o, uint64_t off, const uint8_t *p, uint32_t len)
{
    uint8_t h[IMG_REC_LEN];
    uint64_t be_off = htobe64(off);
    uint32_t be_len = htobe32(len);
    memcpy(h, &be_off, 8);
    memcpy(h + 8, &be_len, 4);
    o->data += len;
    return img_write(o, h, sizeof(h)) < 0 ? -1 : img_write(o, p, len);
}

static int img_zero(const uint8_t *p)
{
    static const uint8_t zero[IMG_BLOCK];
    return memcmp(p, zero, IMG_BLOCK) == 0;
}

/* Emits the non-zero block runs of buf (n bytes read at off): zero blocks are holes. */
static int img_emit(struct img_out *o, const uint8_t *buf, size_t n, uint64_t off)
{
    size_t i = 0;
    while (i < n) {
        while (i < n && n - i >= IMG_BLOCK && img_zero(buf + i))
            i += IMG_BLOCK;
        size_t j = i;
        while (j < n && (n - j < IMG_BLOCK || !img_zero(buf + j)))
            j += n - j < IMG_BLOCK ? n - j : IMG_BLOCK;
        if (j > i && img_record(o, off + i, buf + i, (uint32_t)(j - i)) < 0)
            return -1;
        i = j;
    }
    return 0;
}

/* One data extent [start, end) of the image, a buffer at a time. */
static int img_extent(struct img_out *o, int fd, uint8_t *buf, off_t start, off_t end)
{
    for (off_t off = start; off < end;) {
        size_t want = (size_t)(end - off) < IMG_BUF ? (size_t)(end - off) : IMG_BUF;
        ssize_t n = pread(fd, buf, want, off);
        if (n <= 0)
            return bh_err_errno(o->err, BH_EIO, "snapshot image: read at %lld", (long long)off);
        if (img_emit(o, buf, (size_t)n, (uint64_t)off) < 0)
            return -1;
        off += n;
    }
    return 0;
}

/* Walks the image's data extents (SEEK_DATA/SEEK_HOLE), so a sparse image costs its data. */
static int img_walk(struct img_out *o, int fd, off_t size)
{
    bh_autofree uint8_t *buf = bh_xmalloc(IMG_BUF);
    off_t pos = 0;
    while (pos < size) {
        off_t data = lseek(fd, pos, SEEK_DATA);
        if (data < 0 && errno == ENXIO)
            return 0;
        off_t hole = data < 0 ? -1 : lseek(fd, data, SEEK_HOLE);
        if (data < 0 || hole < 0)
            return bh_err_errno(o->err, BH_EIO, "snapshot image: seek");
        if (img_extent(o, fd, buf, data, hole) < 0)
            return -1;
        pos = hole;
    }
    return 0;
}

static int img_head(struct img_out *o, uint64_t size)
{
    uint8_t h[IMG_HEAD_LEN] = {0};
    uint64_t be_size = htobe64(size);
    uint32_t be_block = htobe32(IMG_BLOCK);
    memcpy(h, IMG_MAGIC, 8);
    memcpy(h + 8, &be_size, 8);
    memcpy(h + 16, &be_block, 4);
    return img_write(o, h, sizeof(h));
}

static int img_tail(struct img_out *o)
{
    uint64_t total = htobe64(o->data);
    if (img_record(o, IMG_END, NULL, 0) < 0)
        return -1;
    return img_write(o, &total, sizeof(total));
}

static void img_write_freep(struct archive **a)
{
    if (*a)
        archive_write_free(*a);
}

static int img_stream(int img, off_t size, enum bh_snapshot_compression comp,
                      struct bh_snapshot_writer *w, struct bh_err *err)
{
    __attribute__((cleanup(img_write_freep))) struct archive *a = archive_write_new();
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, "disk.img");
    archive_entry_set_filetype(e, AE_IFREG);
    struct img_out o = {.a = a, .err = err};
    int rc = -1;
    if (archive_write_set_format_raw(a) != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK ||
        bh_snapshot_set_filter(a, comp, err) < 0)
        goto out;
    if (archive_write_open(a, w, NULL, bh_snapshot_writer_cb, NULL) != ARCHIVE_OK ||
        archive_write_header(a, e) != ARCHIVE_OK) {
        bh_err_set(err, BH_EIO, "snapshot image: %s", archive_error_string(a));
        goto out;
    }
    if (img_head(&o, (uint64_t)size) < 0 || img_walk(&o, img, size) < 0 || img_tail(&o) < 0)
        goto out;
    if (archive_write_close(a) != ARCHIVE_OK) {
        bh_err_set(err, BH_EIO, "snapshot image: close: %s", archive_error_string(a));
        goto out;
    }
    rc = 0;
out:
    if (rc < 0 && w->err.code)
        bh_err_set(err, w->err.code, "snapshot image: %s", w->err.msg);
    archive_entry_free(e);
    return rc;
}

struct img_body {
    int img;
    off_t size;
    enum bh_snapshot_compression comp;
};

static int img_body(struct bh_snapshot_writer *w, void *ud, struct bh_err *err)
{
    struct img_body *b = ud;
    return img_stream(b->img, b->size, b->comp, w, err);
}

int bh_snapshot_image_create(const struct bh_snapshot_image_opts *opts, const char *out_path,
                             struct bh_snapshot_info *info, struct bh_err *err)
{
    memset(info, 0, sizeof(*info));
    bh_autoclose int img = open(opts->image, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (img < 0 || fstat(img, &st) < 0)
        return bh_err_errno(err, BH_EIO, "snapshot image: open %s", opts->image);
    if (!S_ISREG(st.st_mode))
        return bh_err_set(err, BH_EINVAL, "snapshot image: %s is not a file", opts->image);
    struct img_body b = {img, st.st_size, opts->compression};
    return bh_snapshot_write_file(out_path, opts->master_key, opts->context, img_body, &b, info,
                                  err);
}

/* ---- restore ------------------------------------------------------------------------------- */

struct img_check;

/* zstd (the default) and lz4 streams are decoded here, straight into the writer's batches
 * (libarchive decoded them into its buffer and copied them out again, and checked lz4's
 * XXH32 with a slow one of its own: a third of a restore's time); gzip by libarchive. */
struct img_in {
    struct archive *a;  /* owned: gzip (or an unknown stream) through libarchive, or NULL */
    ZSTD_DStream *z;    /* owned: zstd, or NULL */
    LZ4F_dctx *l;       /* owned: lz4 frames, or NULL */
    const uint8_t *src; /* the file layer's last buffer, consumed up to src_pos */
    size_t src_len, src_pos;
    size_t rc; /* the decoder's last result: 0 when its frame is complete */
    struct bh_snapshot_reader *r;
    struct img_check *check;
    uint64_t handed; /* data bytes handed to the writer so far */
    struct bh_err *err;
};

static int img_read_failed(struct img_in *in, const char *why)
{
    if (in->r->failed)
        return bh_err_set(in->err, in->r->err.code, "snapshot image: %s", in->r->err.msg);
    return bh_err_set(in->err, BH_EINVAL, "snapshot image: truncated or corrupt: %s", why);
}

/* The file layer's next buffer: 1, 0 at the end of the file, -1. */
static int img_fill(struct img_in *in)
{
    const void *buf;
    ssize_t k = bh_snapshot_reader_cb(NULL, in->r, &buf);
    if (k < 0)
        return -1;
    in->src = buf, in->src_len = (size_t)k, in->src_pos = 0;
    return k > 0;
}

/* One call of the decoder: into dst[*pos, len) from what is left of src. Its checksums are
 * not computed: the stored object's SHA-256 covers every byte (img_check). */
static int img_decode(struct img_in *in, uint8_t *dst, size_t len, size_t *pos)
{
    const uint8_t *src = in->src + in->src_pos;
    size_t dn = len - *pos, sn = in->src_len - in->src_pos;
    if (in->z) {
        ZSTD_outBuffer o = {dst + *pos, dn, 0};
        ZSTD_inBuffer i = {src, sn, 0};
        in->rc = ZSTD_decompressStream(in->z, &o, &i);
        dn = o.pos, sn = i.pos;
        if (ZSTD_isError(in->rc))
            return img_read_failed(in, ZSTD_getErrorName(in->rc));
    } else {
        LZ4F_decompressOptions_t opt = {.skipChecksums = 1};
        in->rc = LZ4F_decompress(in->l, dst + *pos, &dn, src, &sn, &opt);
        if (LZ4F_isError(in->rc))
            return img_read_failed(in, LZ4F_getErrorName(in->rc));
    }
    *pos += dn, in->src_pos += sn;
    return 0;
}

/* Exactly n decoded bytes into p. */
static int img_decode_n(struct img_in *in, uint8_t *p, size_t n)
{
    for (size_t pos = 0; pos < n;) {
        size_t was = pos;
        if (img_decode(in, p, n, &pos) < 0)
            return -1;
        /* Nothing out and all its input taken: the decoder needs more. */
        if (pos == was && in->src_pos == in->src_len && img_fill(in) <= 0)
            return img_read_failed(in, "early end");
    }
    return 0;
}

/* Exactly n bytes of the stream; a short stream is a corrupt one. */
static int img_read(struct img_in *in, void *p, size_t n)
{
    if (!in->a)
        return img_decode_n(in, p, n);
    for (size_t got = 0; got < n;) {
        la_ssize_t k = archive_read_data(in->a, (uint8_t *)p + got, n - got);
        if (k < 0 || (k == 0 && got < n))
            return img_read_failed(in, k < 0 ? archive_error_string(in->a) : "early end");
        got += (size_t)k;
    }
    return 0;
}

static int img_extra(struct img_in *in)
{
    return bh_err_set(in->err, BH_EINVAL, "snapshot image: bytes after the end record");
}

/* After the data count the stream ends: its frame complete, no byte after it. */
static int img_end(struct img_in *in)
{
    char extra;
    if (in->a)
        return archive_read_data(in->a, &extra, 1) != 0 ? img_extra(in) : 0;
    for (;;) {
        if (in->src_pos == in->src_len) {
            int k = img_fill(in);
            if (k < 0 || (k == 0 && in->rc != 0))
                return img_read_failed(in, "early end");
            if (k == 0)
                return 0;
        }
        size_t pos = 0;
        if (img_decode(in, (uint8_t *)&extra, 1, &pos) < 0)
            return -1;
        if (pos)
            return img_extra(in);
    }
}

static int img_read_head(struct img_in *in, uint64_t *size)
{
    uint8_t h[IMG_HEAD_LEN];
    uint32_t block;
    if (img_read(in, h, sizeof(h)) < 0)
        return -1;
    memcpy(size, h + 8, 8);
    memcpy(&block, h + 16, 4);
    *size = be64toh(*size);
    if (memcmp(h, IMG_MAGIC, 8) != 0 || be32toh(block) != IMG_BLOCK || *size == 0 ||
        *size > (UINT64_C(1) << 46))
        return bh_err_set(in->err, BH_EINVAL, "snapshot image: not an image stream");
    return 0;
}

/* Starts (does not wait for) the writeback of the image's pages written since *from: attaching
 * a loop device to a file flushes its dirty pages first (~70 ms for 100 MB here, all of it
 * on the claim's path); started while the stream is still being decompressed, the writeback
 * runs beside it. A failure only loses that overlap. */
static void img_writeback(int out, uint64_t *from, uint64_t upto, int last)
{
    if (upto <= *from || (!last && upto - *from < IMG_WRITEBACK_STEP))
        return;
    BH_IGNORE(sync_file_range(out, (off_t)*from, (off_t)(upto - *from), SYNC_FILE_RANGE_WRITE));
    *from = upto;
}

/* ---- the restore's writer: pwrite beside the decompression ---- */

struct img_batch {
    uint8_t *buf; /* IMG_BATCH_BYTES, the records' data one after another */
    size_t used;
    int n;
    uint64_t off[IMG_BATCH_RECS];
    uint32_t len[IMG_BATCH_RECS];
};

struct img_writer {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct img_batch batch[IMG_BATCHES];
    unsigned filled, written; /* batches handed over / written, counting up */
    int done;                 /* no batch will come any more; -1: no thread was started */
    int werr;                 /* errno of the write that failed, 0 */
    uint64_t wat;             /* where it failed */
    int out;
    pthread_t thread;
};

/* Writes one batch; 0, or the errno of the failing write with *at its offset. */
static int img_batch_write(int out, const struct img_batch *b, uint64_t *at)
{
    size_t pos = 0;
    for (int i = 0; i < b->n; pos += b->len[i], i++) {
        ssize_t k = pwrite(out, b->buf + pos, b->len[i], (off_t)b->off[i]);
        if (k != (ssize_t)b->len[i]) {
            *at = b->off[i];
            return k < 0 ? errno : ENOSPC; /* short: the filesystem is full */
        }
    }
    return 0;
}

static void *img_writer_run(void *arg)
{
    struct img_writer *w = arg;
    uint64_t flushed = 0, next = 0, at = 0;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->written == w->filled && !w->done)
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->written == w->filled)
            break;
        const struct img_batch *b = &w->batch[w->written % IMG_BATCHES];
        pthread_mutex_unlock(&w->mu);
        int e = img_batch_write(w->out, b, &at);
        if (!e && b->n) {
            next = b->off[b->n - 1] + b->len[b->n - 1];
            img_writeback(w->out, &flushed, next, 0);
        }
        pthread_mutex_lock(&w->mu);
        w->written++;
        pthread_cond_broadcast(&w->cv);
        if (e) {
            w->werr = e, w->wat = at;
            break;
        }
    }
    int failed = w->werr;
    pthread_mutex_unlock(&w->mu);
    if (!failed)
        img_writeback(w->out, &flushed, next, 1);
    return NULL;
}

static int img_writer_start(struct img_writer *w, int out, struct bh_err *err)
{
    *w = (struct img_writer){.out = out};
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    for (int i = 0; i < IMG_BATCHES; i++)
        w->batch[i].buf = bh_xmalloc(IMG_BATCH_BYTES);
    int e = pthread_create(&w->thread, NULL, img_writer_run, w);
    if (e == 0)
        return 0;
    w->done = -1; /* no thread to join */
    return bh_err_set(err, BH_EIO, "snapshot image: writer thread: %s", strerror(e));
}

/* The batch to fill next, empty, once the writer has freed one; NULL after a write failed. */
static struct img_batch *img_writer_next(struct img_writer *w)
{
    pthread_mutex_lock(&w->mu);
    while (w->filled - w->written == IMG_BATCHES && !w->werr)
        pthread_cond_wait(&w->cv, &w->mu);
    struct img_batch *b = w->werr ? NULL : &w->batch[w->filled % IMG_BATCHES];
    pthread_mutex_unlock(&w->mu);
    if (b)
        b->used = 0, b->n = 0;
    return b;
}

static void img_writer_hand(struct img_writer *w)
{
    pthread_mutex_lock(&w->mu);
    w->filled++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Waits for the writer to write what it was handed (or to fail) and frees it. A failed write
 * is the error reported (the reader stops at it without one of its own). */
static int img_writer_finish(struct img_writer *w, int rc, struct bh_err *err)
{
    if (w->done != -1) {
        pthread_mutex_lock(&w->mu);
        w->done = 1;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL);
    }
    if (w->werr)
        rc = bh_err_set(err, BH_EIO, "snapshot image: write at %llu: %s",
                        (unsigned long long)w->wat, strerror(w->werr));
    for (int i = 0; i < IMG_BATCHES; i++)
        free(w->batch[i].buf);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    return rc;
}

/* ---- the digest, checked beside the decompression ---- */

/* The stored object's SHA-256 is computed on a thread of its own while the stream is decoded
 * and written (both read the same fd, with pread): hashing the compressed bytes is several
 * times faster than decoding them, so it is off the restore's path. The image is renamed into
 * place only after it matched. Until the digest is known at most IMG_UNCHECKED data bytes go
 * to the writer: a tampered stream could decompress to any size, and that much of it is all a
 * refused object can make us write (into the .part file, removed). */
#define IMG_UNCHECKED (256u << 20)

struct img_check {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int state;         /* 0 computing, 1 matched, -1 did not (err) */
    struct bh_err err; /* written by the thread before state, read after */
    int fd;
    const char *expected;
    pthread_t thread;
    int threaded;
};

static void img_check_done(struct img_check *c, int rc)
{
    pthread_mutex_lock(&c->mu);
    c->state = rc < 0 ? -1 : 1;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void *img_check_run(void *arg)
{
    struct img_check *c = arg;
    img_check_done(c, bh_snapshot_check_digest(c->fd, c->expected, &c->err));
    return NULL;
}

/* Without a thread the digest is checked here, before anything is decoded. */
static void img_check_start(struct img_check *c, int fd, const char *expected)
{
    *c = (struct img_check){.fd = fd, .expected = expected};
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->threaded = pthread_create(&c->thread, NULL, img_check_run, c) == 0;
    if (!c->threaded)
        img_check_done(c, bh_snapshot_check_digest(fd, expected, &c->err));
}

/* -1 with the digest's error once it is known not to match; waits for it when wait is set. */
static int img_check_state(struct img_check *c, int wait, struct bh_err *err)
{
    pthread_mutex_lock(&c->mu);
    while (wait && c->state == 0)
        pthread_cond_wait(&c->cv, &c->mu);
    int state = c->state;
    pthread_mutex_unlock(&c->mu);
    return state < 0 ? bh_err_set(err, c->err.code, "%s", c->err.msg) : 0;
}

/* Waits for the digest; a mismatch is the error reported, whatever the decoding said (a
 * tampered object usually fails both ways: the digest says why). */
static int img_check_finish(struct img_check *c, int rc, struct bh_err *err)
{
    if (c->threaded)
        pthread_join(c->thread, NULL);
    if (img_check_state(c, 0, err) < 0)
        rc = -1;
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    return rc;
}

/* Hands the filled batch to the writer, unless the digest is known to mismatch; past
 * IMG_UNCHECKED bytes only once it is known to match. */
static int img_hand(struct img_in *in, struct img_writer *w)
{
    if (img_check_state(in->check, in->handed > IMG_UNCHECKED, in->err) < 0)
        return -1;
    img_writer_hand(w);
    return 0;
}

/* Reads one record's data into the batch, handing the batch over first when it is full. */
static int img_read_into(struct img_in *in, struct img_writer *w, struct img_batch **b,
                         uint64_t off, uint32_t len)
{
    if ((*b)->n == IMG_BATCH_RECS || (*b)->used + len > IMG_BATCH_BYTES) {
        if (img_hand(in, w) < 0)
            return -1;
        if (!(*b = img_writer_next(w)))
            return -1; /* the writer failed: its error is the one reported */
    }
    if (img_read(in, (*b)->buf + (*b)->used, len) < 0)
        return -1;
    (*b)->off[(*b)->n] = off;
    (*b)->len[(*b)->n++] = len;
    (*b)->used += len;
    in->handed += len;
    return 0;
}

/* The records, checked (in order, inside the image, at most IMG_BUF) and handed to w. */
static int img_read_records(struct img_in *in, struct img_writer *w, uint64_t size)
{
    struct img_batch *b = img_writer_next(w);
    uint64_t next = 0, total = 0;
    for (;;) {
        uint8_t h[IMG_REC_LEN];
        uint64_t off;
        uint32_t len;
        if (img_read(in, h, sizeof(h)) < 0)
            return -1;
        memcpy(&off, h, 8);
        memcpy(&len, h + 8, 4);
        off = be64toh(off), len = be32toh(len);
        if (off == IMG_END && len == 0)
            break;
        if (off < next || len == 0 || len > IMG_BUF || off > size || len > size - off)
            return bh_err_set(in->err, BH_EINVAL, "snapshot image: bad record at %llu",
                              (unsigned long long)off);
        if (img_read_into(in, w, &b, off, len) < 0)
            return -1;
        next = off + len, total += len;
    }
    if (b->n && img_hand(in, w) < 0)
        return -1;
    uint64_t want;
    if (img_read(in, &want, sizeof(want)) < 0)
        return -1;
    if (be64toh(want) != total)
        return bh_err_set(in->err, BH_EINVAL, "snapshot image: data count mismatch");
    return 0;
}

static const uint8_t img_zstd_magic[4] = {0x28, 0xb5, 0x2f, 0xfd};
static const uint8_t img_lz4_magic[4] = {0x04, 0x22, 0x4d, 0x18};

static int img_magic(const struct img_in *in, const uint8_t magic[4])
{
    return in->src_len >= 4 && memcmp(in->src, magic, 4) == 0;
}

/* Picks the decoder by the stream's magic (docs/snapshot-format.md: a plain .zst, .lz4 or
 * .gz stream under the file layer). */
static int img_open(struct img_in *in)
{
    struct bh_snapshot_reader *r = in->r;
    bh_snapshot_reader_rewind(r);
    if (img_fill(in) < 0)
        return img_read_failed(in, "");
    if (img_magic(in, img_zstd_magic)) {
        in->z = ZSTD_createDStream();
        if (!in->z || ZSTD_isError(ZSTD_initDStream(in->z)))
            return bh_err_set(in->err, BH_EIO, "snapshot image: zstd decoder");
        return 0;
    }
    if (img_magic(in, img_lz4_magic)) {
        if (LZ4F_isError(LZ4F_createDecompressionContext(&in->l, LZ4F_VERSION)))
            return bh_err_set(in->err, BH_EIO, "snapshot image: lz4 decoder");
        return 0;
    }
    bh_snapshot_reader_rewind(r);
    struct archive *a = in->a = archive_read_new();
    archive_read_support_filter_gzip(a);
    archive_read_support_filter_lz4(a); /* lz4's legacy format */
    archive_read_support_format_raw(a);
    struct archive_entry *e;
    if (archive_read_open(a, r, NULL, bh_snapshot_reader_cb, NULL) != ARCHIVE_OK ||
        archive_read_next_header(a, &e) != ARCHIVE_OK)
        return bh_err_set(in->err, BH_EINVAL, "snapshot image: %s",
                          r->failed ? r->err.msg : archive_error_string(a));
    return 0;
}

static void img_in_free(struct img_in *in)
{
    if (in->a)
        archive_read_free(in->a);
    ZSTD_freeDStream(in->z);
    LZ4F_freeDecompressionContext(in->l);
}

static int img_unpack(struct img_in *in, int out)
{
    uint64_t size;
    if (img_open(in) < 0 || img_read_head(in, &size) < 0)
        return -1;
    if (ftruncate(out, (off_t)size) < 0)
        return bh_err_errno(in->err, BH_EIO, "snapshot image: size");
    struct img_writer w;
    int rc = img_writer_start(&w, out, in->err);
    if (rc == 0)
        rc = img_read_records(in, &w, size);
    if (img_writer_finish(&w, rc, in->err) < 0 || img_end(in) < 0)
        return -1;
    return bh_snapshot_reader_drain(in->r, in->err);
}

/* Decodes into <image>.part while the digest is checked beside it; renamed to image only
 * once both succeeded, so nothing unverified is ever at the name that gets mounted. */
int bh_snapshot_image_restore(const struct bh_snapshot_image_opts *opts, const char *in_path,
                              const char *expected_digest, struct bh_err *err)
{
    bh_autoclose int fd = open(in_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return bh_err_errno(err, errno == ENOENT ? BH_ENOTFOUND : BH_EIO, "snapshot image: open %s",
                            in_path);
    struct stat st;
    if (lstat(opts->image, &st) == 0)
        return bh_err_set(err, BH_EIO, "snapshot image: %s already exists", opts->image);
    bh_autofree char *part = bh_xasprintf("%s.part", opts->image);
    bh_autoclose int out = open(part, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out < 0)
        return bh_err_errno(err, BH_EIO, "snapshot image: create %s", part);
    struct img_check check;
    img_check_start(&check, fd, expected_digest);
    struct bh_snapshot_reader r = {0};
    struct img_in in = {.r = &r, .check = &check, .err = err};
    int rc = img_check_state(&check, 0, err);
    if (rc == 0)
        rc = bh_snapshot_reader_init(&r, fd, opts->master_key, opts->context, err);
    if (rc == 0)
        rc = img_unpack(&in, out);
    rc = img_check_finish(&check, rc, err);
    img_in_free(&in);
    bh_snapshot_reader_free(&r);
    if (rc == 0 && renameat2(AT_FDCWD, part, AT_FDCWD, opts->image, RENAME_NOREPLACE) < 0)
        rc = bh_err_errno(err, BH_EIO, "snapshot image: rename to %s", opts->image);
    if (rc < 0)
        unlink(part); /* never leave a half-written or unverified image */
    return rc;
}
