/* Snapshots of an instance's overlay directories: a tar archive (libarchive, zstd by default,
 * gzip selectable) of each overlayDir as seen in the instance's merged rootfs, optionally
 * encrypted with AES-256-GCM under a per-snapshot key derived from the master key.
 *
 * File format (documented in docs/snapshot-format.md):
 *   plain:     the compressed tar itself
 *   encrypted: "BHSNAP1\0" magic, 16-byte salt, then chunks of
 *              [u32 BE length][12-byte nonce][ciphertext][16-byte tag], the last chunk's
 *              length has the top bit set, so truncation is detected; the key is
 *              HKDF(master, salt, "boilerhouse snapshot v1 <context>").
 * Ownership: uids/gids are stored relative to the instance's uid base (container view), and
 * shifted back on restore, so archives are portable between hosts with other bases. */
#ifndef BH_SNAPSHOT_H
#define BH_SNAPSHOT_H

#include <stdint.h>

#include "crypto.h"
#include "err.h"

/* zstd (level 3): compact; gzip (level 1); lz4 (level 1): about twice the size of zstd on text,
 * but several times faster to decompress (docs/benchmarks.md). */
enum bh_snapshot_compression { BH_SNAP_ZSTD = 0, BH_SNAP_GZIP = 1, BH_SNAP_LZ4 = 2 };
/* "zstd", "gzip" or "lz4"; -1 for anything else. */
int bh_snapshot_compression_parse(const char *name, enum bh_snapshot_compression *out);

struct bh_snapshot_opts {
    const char *rootfs; /* host path of the instance's merged rootfs */
    char *const *dirs;  /* overlayDirs: absolute in-container paths, NULL-terminated */
    uint32_t uid_base;  /* host uid of container root */
    uint32_t uid_size;  /* mapping size; ids outside it are refused on restore */
    enum bh_snapshot_compression compression;
    const uint8_t *master_key; /* NULL: no encryption */
    const char *context;       /* binds the key to its owner, e.g. "<workload>/<tenant>" */
};

struct bh_snapshot_info {
    char digest[65]; /* sha256 of the file as stored (after encryption) */
    uint64_t size;   /* bytes as stored */
    uint64_t files;  /* entries archived */
};

/* Archives opts->dirs into out_path (created 0600, written, fsync'd; the caller renames or
 * hands it to storage). A missing overlay dir is archived as absent (restore removes it). */
BH_MUST_CHECK int bh_snapshot_create(const struct bh_snapshot_opts *opts, const char *out_path,
                                     struct bh_snapshot_info *info, struct bh_err *err);
/* Verifies in_path against expected_digest first (BH_EINVAL "digest mismatch" if not), then
 * decrypts and extracts each overlay dir into a staging dir next to it, and only once the whole
 * archive verified (BH_EINVAL on a wrong key, tampering or a refused entry, live dirs
 * untouched) exchanges each staging dir with its overlay dir: atomic per dir. Refuses absolute
 * paths, "..", entries outside the listed dirs, symlink escapes, device nodes; ids are shifted
 * by uid_base. Safe against a running instance writing concurrently only if frozen. */
BH_MUST_CHECK int bh_snapshot_restore(const struct bh_snapshot_opts *opts, const char *in_path,
                                      const char *expected_digest, struct bh_err *err);

/* Re-wraps a snapshot file (either format) between plain and encrypted: in_path is verified
 * against in_digest first, decrypted with in_key (NULL: it must be plain), and written to
 * out_path (0600, fsync'd; removed on failure) encrypted under out_key (NULL: plain). The
 * archive inside is copied, not unpacked. info describes out_path. */
struct bh_snapshot_convert_opts {
    const char *in_path, *in_digest;
    const uint8_t *in_key;
    const char *out_path;
    const uint8_t *out_key;
    const char *context; /* of both keys */
};
BH_MUST_CHECK int bh_snapshot_convert(const struct bh_snapshot_convert_opts *o,
                                      struct bh_snapshot_info *info, struct bh_err *err);

/* Image snapshots ("image-v1", docs/snapshot-format.md): an instance's disk image (a sparse
 * ext4 file that holds the overlay's upper layer) as one stream of its non-zero blocks, in
 * the same file layer (digest, optional encryption) and compression as the tar format. */
struct bh_snapshot_image_opts {
    const char *image; /* the disk image: read by create, made (O_EXCL) by restore */
    enum bh_snapshot_compression compression;
    const uint8_t *master_key; /* NULL: no encryption */
    const char *context;
};

/* Streams opts->image (which nothing may write meanwhile) into out_path (0600, fsync'd).
 * info->files is 0: the stream does not know files. */
BH_MUST_CHECK int bh_snapshot_image_create(const struct bh_snapshot_image_opts *opts,
                                           const char *out_path, struct bh_snapshot_info *info,
                                           struct bh_err *err);
/* Verifies in_path against expected_digest, then writes the blocks into a new sparse file
 * opts->image; on any failure (wrong key, tampering, truncation) the image is removed. */
BH_MUST_CHECK int bh_snapshot_image_restore(const struct bh_snapshot_image_opts *opts,
                                            const char *in_path, const char *expected_digest,
                                            struct bh_err *err);

#endif
