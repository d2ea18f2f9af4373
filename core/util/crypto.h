/* Keys and authenticated encryption (OpenSSL 3): the daemon's master key, HKDF-SHA256
 * derivation of per-object keys, and AES-256-GCM for snapshots and the secret store. */
#ifndef BH_CRYPTO_H
#define BH_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define BH_KEY_LEN 32
#define BH_GCM_NONCE_LEN 12
#define BH_GCM_TAG_LEN 16

/* The master key: BOILERHOUSE_SECRET_KEY (64 hex chars or base64 of 32 bytes) if set, else
 * <state_dir>/master.key (32 random bytes, created 0600 atomically on first use). */
BH_MUST_CHECK int bh_crypto_master_key(const char *state_dir, uint8_t key[BH_KEY_LEN],
                                       struct bh_err *err);
/* HKDF-SHA256(master, salt, info=context) -> out. */
BH_MUST_CHECK int bh_crypto_derive(const uint8_t master[BH_KEY_LEN], const uint8_t *salt,
                                   size_t salt_len, const char *context, uint8_t out[BH_KEY_LEN],
                                   struct bh_err *err);
/* General HKDF-SHA256 (RFC 5869), which bh_crypto_derive specializes. */
BH_MUST_CHECK int bh_crypto_hkdf(const uint8_t *ikm, size_t ikm_len, const uint8_t *salt,
                                 size_t salt_len, const uint8_t *info, size_t info_len,
                                 uint8_t *out, size_t out_len, struct bh_err *err);
/* Lowercase hex SHA-256 of a file, into hex[65]. */
BH_MUST_CHECK int bh_crypto_sha256_file(const char *path, char hex[65], struct bh_err *err);
/* The same for an open file, read from offset 0 with pread (the offset is left alone). */
BH_MUST_CHECK int bh_crypto_sha256_fd(int fd, char hex[65], struct bh_err *err);
/* Standard padded base64 of n bytes: owned, NUL-terminated. */
char *bh_crypto_base64(const void *data, size_t n);
/* Decodes standard padded base64 into an owned buffer with a NUL after its *len bytes;
 * NULL if in is not base64. */
unsigned char *bh_crypto_unbase64(const char *in, size_t *len);
/* True if an Authorization header value is "Bearer <key>", compared in constant time. */
int bh_crypto_bearer_matches(const char *header, const char *key);
/* Fills buf with n bytes from the CSPRNG. */
BH_MUST_CHECK int bh_crypto_random(void *buf, size_t n, struct bh_err *err);
/* AES-256-GCM encryption of len bytes in -> out (same length; may alias), authenticating aad
 * too; writes the tag. A (key, nonce) pair must never be reused. */
BH_MUST_CHECK int bh_crypto_seal(const uint8_t key[BH_KEY_LEN],
                                 const uint8_t nonce[BH_GCM_NONCE_LEN], const void *aad,
                                 size_t aad_len, const void *in, size_t len, void *out,
                                 uint8_t tag[BH_GCM_TAG_LEN], struct bh_err *err);
/* The inverse; BH_EINVAL if the tag does not verify (wrong key or tampering). out is
 * unspecified on failure, so callers must not use it. */
BH_MUST_CHECK int bh_crypto_open(const uint8_t key[BH_KEY_LEN],
                                 const uint8_t nonce[BH_GCM_NONCE_LEN], const void *aad,
                                 size_t aad_len, const void *in, size_t len, void *out,
                                 const uint8_t tag[BH_GCM_TAG_LEN], struct bh_err *err);

/* Incremental SHA-256 for streams that are hashed while written or read. */
struct bh_sha256;
struct bh_sha256 *bh_crypto_sha256_new(void); /* owned; aborts on OOM */
void bh_crypto_sha256_update(struct bh_sha256 *h, const void *data, size_t len);
/* Writes the lowercase hex digest into hex[65] and frees h. */
void bh_crypto_sha256_final(struct bh_sha256 *h, char hex[65]);
void bh_crypto_sha256_free(struct bh_sha256 *h); /* without a digest; NULL ok */

/* Zeroes memory in a way the compiler keeps. */
void bh_crypto_wipe(void *p, size_t n);

#endif
