/* Internal to the snapshot module: the file layer (snapshot_io.c) that sits between
 * libarchive and the snapshot file, encrypting and hashing on the way. */
#ifndef BH_SNAPSHOT_INT_H
#define BH_SNAPSHOT_INT_H

#include <archive.h>
#include <sys/types.h>

#include "snapshot.h"

#define SNAP_MAGIC_LEN 8
#define SNAP_SALT_LEN 16
#define SNAP_CHUNK (1u << 20)  /* plaintext bytes per encrypted chunk, at most */
#define SNAP_FINAL 0x80000000u /* length-word flag of the last chunk */

struct bh_snapshot_writer {
    int fd;                /* borrowed */
    struct bh_sha256 *sha; /* owned; of every byte written */
    uint64_t size;
    int encrypted;
    uint8_t key[BH_KEY_LEN];
    uint8_t *plain, *sealed; /* owned: pending chunk, and its encrypted form */
    size_t len;              /* bytes pending in plain */
    uint64_t index;          /* next chunk number */
    struct bh_err err;       /* set when a callback fails (libarchive only sees -1) */
};

struct bh_snapshot_reader {
    int fd; /* borrowed */
    off_t start, off;
    int encrypted, done, failed;
    uint8_t key[BH_KEY_LEN];
    uint8_t *buf;        /* owned: one chunk as read, decrypted in place */
    const uint8_t *data; /* what the last callback returned, inside buf */
    uint64_t index;
    struct bh_err err; /* set when a callback fails */
};

/* master NULL: plain. Encrypted: writes the magic and a fresh salt. */
BH_MUST_CHECK int bh_snapshot_writer_init(struct bh_snapshot_writer *w, int fd,
                                          const uint8_t *master, const char *context,
                                          struct bh_err *err);
/* archive_write_open callback. */
ssize_t bh_snapshot_writer_cb(struct archive *a, void *ud, const void *buf, size_t n);
/* Seals the final chunk, fsyncs, and fills info's digest and size. */
BH_MUST_CHECK int bh_snapshot_writer_finish(struct bh_snapshot_writer *w,
                                            struct bh_snapshot_info *info, struct bh_err *err);
void bh_snapshot_writer_free(struct bh_snapshot_writer *w);

/* Detects the format by its magic and refuses a mismatch with master (NULL: expect plain). */
BH_MUST_CHECK int bh_snapshot_reader_init(struct bh_snapshot_reader *r, int fd,
                                          const uint8_t *master, const char *context,
                                          struct bh_err *err);
void bh_snapshot_reader_rewind(struct bh_snapshot_reader *r);
/* archive_read_open callback: plaintext only after its chunk's tag verified. */
ssize_t bh_snapshot_reader_cb(struct archive *a, void *ud, const void **buf);
/* Reads and verifies the chunks libarchive did not ask for, through the final one. */
BH_MUST_CHECK int bh_snapshot_reader_drain(struct bh_snapshot_reader *r, struct bh_err *err);
void bh_snapshot_reader_free(struct bh_snapshot_reader *r);

/* Creates out_path (0600), runs body(w, ud, err) on a writer over it, finishes (fsync, info's
 * digest and size); removes the file on any failure. */
BH_MUST_CHECK int
bh_snapshot_write_file(const char *out_path, const uint8_t *master, const char *context,
                       int (*body)(struct bh_snapshot_writer *w, void *ud, struct bh_err *err),
                       void *ud, struct bh_snapshot_info *info, struct bh_err *err);
/* Adds the compression filter (zstd level 3 or gzip level 1) to a writer. */
BH_MUST_CHECK int bh_snapshot_set_filter(struct archive *a, enum bh_snapshot_compression comp,
                                         struct bh_err *err);
/* SHA-256 of the whole file at fd against expected (BH_EINVAL "digest mismatch" if not). */
BH_MUST_CHECK int bh_snapshot_check_digest(int fd, const char *expected, struct bh_err *err);

#endif
