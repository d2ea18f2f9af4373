/* Keys and authenticated encryption (OpenSSL 3): the daemon's master key, HKDF-SHA256
 * derivation of per-object keys, and AES-256-GCM for snapshots and the secret store. */
#ifndef BH_CRYPTO_H
#define BH_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define BH_KEY_LEN 32

/* The master key: BOILERHOUSE_SECRET_KEY (64 hex chars or base64 of 32 bytes) if set, else
 * <state_dir>/master.key (32 random bytes, created 0600 atomically on first use). */
int bh_crypto_master_key(const char *state_dir, uint8_t key[BH_KEY_LEN], struct bh_err *err);
/* HKDF-SHA256(master, salt, info=context) -> out. */
int bh_crypto_derive(const uint8_t master[BH_KEY_LEN], const uint8_t *salt, size_t salt_len,
                     const char *context, uint8_t out[BH_KEY_LEN], struct bh_err *err);
/* Lowercase hex SHA-256 of a file, into hex[65]. */
int bh_crypto_sha256_file(const char *path, char hex[65], struct bh_err *err);
/* Zeroes memory in a way the compiler keeps. */
void bh_crypto_wipe(void *p, size_t n);

#endif
