#include "crypto.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs.h"
#include "mem.h"

#define CRYPTO_ENV_KEY "BOILERHOUSE_SECRET_KEY"
#define CRYPTO_KEY_FILE "master.key"

void bh_crypto_wipe(void *p, size_t n)
{
    OPENSSL_cleanse(p, n);
}

int bh_crypto_random(void *buf, size_t n, struct bh_err *err)
{
    if (RAND_bytes(buf, (int)n) != 1)
        return bh_err_set(err, BH_EIO, "RAND_bytes failed");
    return 0;
}

/* ---- the master key ---------------------------------------------------------------------- */

static int crypto_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int crypto_parse_hex(const char *s, uint8_t key[BH_KEY_LEN])
{
    if (strlen(s) != 2 * BH_KEY_LEN)
        return -1;
    for (size_t i = 0; i < BH_KEY_LEN; i++) {
        int hi = crypto_hexval(s[2 * i]), lo = crypto_hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        key[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

char *bh_crypto_base64(const void *data, size_t n)
{
    char *out = bh_xmalloc(4 * ((n + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)out, data, (int)n);
    return out;
}

unsigned char *bh_crypto_unbase64(const char *in, size_t *len)
{
    size_t n = strlen(in);
    if (n % 4)
        return NULL;
    unsigned char *out = bh_xmalloc(n / 4 * 3 + 1);
    int got = EVP_DecodeBlock(out, (const unsigned char *)in, (int)n);
    if (got < 0) {
        free(out);
        return NULL;
    }
    /* EVP_DecodeBlock counts each '=' of padding as a decoded zero byte. */
    for (const char *p = in + n; p > in && p[-1] == '='; p--)
        got--;
    out[got] = '\0';
    *len = (size_t)got;
    return out;
}

int bh_crypto_bearer_matches(const char *header, const char *key)
{
    if (!header || strncmp(header, "Bearer ", 7) != 0)
        return 0;
    size_t n = strlen(key);
    return strlen(header + 7) == n && CRYPTO_memcmp(header + 7, key, n) == 0;
}

/* The base64 form of the master key: 32 bytes, so 44 characters with one '='. */
static int crypto_parse_base64(const char *s, uint8_t key[BH_KEY_LEN])
{
    size_t n = 0;
    unsigned char *buf = strlen(s) == 44 ? bh_crypto_unbase64(s, &n) : NULL;
    int ok = buf && n == BH_KEY_LEN;
    if (ok)
        memcpy(key, buf, BH_KEY_LEN);
    if (buf)
        bh_crypto_wipe(buf, n);
    free(buf);
    return ok ? 0 : -1;
}

static int crypto_key_from_env(const char *s, uint8_t key[BH_KEY_LEN], struct bh_err *err)
{
    if (crypto_parse_hex(s, key) == 0 || crypto_parse_base64(s, key) == 0)
        return 0;
    bh_crypto_wipe(key, BH_KEY_LEN);
    return bh_err_set(err, BH_EINVAL,
                      CRYPTO_ENV_KEY " must be 64 hex characters or the base64 of 32 bytes");
}

/* 1 if read, 0 if the file does not exist, -1 on error. Refuses a key others can read. */
static int crypto_read_key_file(const char *path, uint8_t key[BH_KEY_LEN], struct bh_err *err)
{
    bh_autoclose int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT)
        return 0;
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        return bh_err_errno(err, BH_EIO, "open %s", path);
    if (!S_ISREG(st.st_mode) || (st.st_mode & 077))
        return bh_err_set(err, BH_EFORBIDDEN, "%s must be a regular file with mode 0600", path);
    uint8_t buf[BH_KEY_LEN + 1];
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n == BH_KEY_LEN)
        memcpy(key, buf, BH_KEY_LEN);
    bh_crypto_wipe(buf, sizeof(buf));
    if (n < 0)
        return bh_err_errno(err, BH_EIO, "read %s", path);
    if (n != BH_KEY_LEN)
        return bh_err_set(err, BH_EIO, "%s: expected %d bytes", path, BH_KEY_LEN);
    return 1;
}

/* Two processes may race here: each writes a complete temp file and link()s it into place,
 * which fails with EEXIST for all but one, so every process then reads the winner's key. */
static int crypto_create_key_file(const char *dir, const char *path, struct bh_err *err)
{
    uint8_t key[BH_KEY_LEN], nonce[8];
    if (bh_fs_mkdirp(dir, 0711, err) < 0 || bh_crypto_random(nonce, sizeof(nonce), err) < 0 ||
        bh_crypto_random(key, sizeof(key), err) < 0)
        return -1;
    bh_autofree char *tmp = bh_xasprintf("%s.new.%d.%02x%02x%02x%02x", path, (int)getpid(),
                                         nonce[0], nonce[1], nonce[2], nonce[3]);
    int rc = bh_fs_write_atomic(tmp, key, sizeof(key), 0600, err);
    bh_crypto_wipe(key, sizeof(key));
    if (rc < 0)
        return -1;
    if (link(tmp, path) < 0 && errno != EEXIST) {
        bh_err_errno(err, BH_EIO, "link %s", path);
        unlink(tmp);
        return -1;
    }
    unlink(tmp);
    return bh_fs_fsync_dir(dir, err);
}

int bh_crypto_master_key(const char *state_dir, uint8_t key[BH_KEY_LEN], struct bh_err *err)
{
    const char *env = getenv(CRYPTO_ENV_KEY);
    if (env && *env)
        return crypto_key_from_env(env, key, err);
    bh_autofree char *path = bh_xasprintf("%s/" CRYPTO_KEY_FILE, state_dir);
    int found = crypto_read_key_file(path, key, err);
    if (found != 0)
        return found < 0 ? -1 : 0;
    if (crypto_create_key_file(state_dir, path, err) < 0)
        return -1;
    found = crypto_read_key_file(path, key, err);
    if (found == 0)
        return bh_err_set(err, BH_EIO, "%s vanished after creation", path);
    return found < 0 ? -1 : 0;
}

/* ---- derivation, AEAD, hashing ------------------------------------------------------------ */

int bh_crypto_hkdf(const uint8_t *ikm, size_t ikm_len, const uint8_t *salt, size_t salt_len,
                   const uint8_t *info, size_t info_len, uint8_t *out, size_t out_len,
                   struct bh_err *err)
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    EVP_KDF_free(kdf);
    if (!ctx)
        return bh_err_set(err, BH_EIO, "HKDF unavailable");
    /* No salt means RFC 5869's default (zeros), which OpenSSL applies when the param is absent;
     * it rejects an empty one. */
    OSSL_PARAM params[5], *p = params;
    *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256", 0);
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikm_len);
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, info_len);
    if (salt_len)
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len);
    *p = OSSL_PARAM_construct_end();
    int ok = EVP_KDF_derive(ctx, out, out_len, params);
    EVP_KDF_CTX_free(ctx);
    return ok == 1 ? 0 : bh_err_set(err, BH_EIO, "HKDF failed");
}

int bh_crypto_derive(const uint8_t master[BH_KEY_LEN], const uint8_t *salt, size_t salt_len,
                     const char *context, uint8_t out[BH_KEY_LEN], struct bh_err *err)
{
    return bh_crypto_hkdf(master, BH_KEY_LEN, salt, salt_len, (const uint8_t *)context,
                          strlen(context), out, BH_KEY_LEN, err);
}

static int crypto_gcm(int enc, const uint8_t *key, const uint8_t *nonce, const void *aad,
                      size_t aad_len, const void *in, size_t len, void *out, uint8_t *tag)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n = 0, ok = ctx && EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce, enc) == 1;
    ok = ok && (!aad_len || EVP_CipherUpdate(ctx, NULL, &n, aad, (int)aad_len) == 1);
    ok = ok && (!len || EVP_CipherUpdate(ctx, out, &n, in, (int)len) == 1);
    ok = ok && (enc || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, BH_GCM_TAG_LEN, tag) == 1);
    ok = ok && EVP_CipherFinal_ex(ctx, (uint8_t *)out + len, &n) == 1;
    ok = ok && (!enc || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, BH_GCM_TAG_LEN, tag) == 1);
    EVP_CIPHER_CTX_free(ctx);
    return ok ? 0 : -1;
}

int bh_crypto_seal(const uint8_t key[BH_KEY_LEN], const uint8_t nonce[BH_GCM_NONCE_LEN],
                   const void *aad, size_t aad_len, const void *in, size_t len, void *out,
                   uint8_t tag[BH_GCM_TAG_LEN], struct bh_err *err)
{
    if (crypto_gcm(1, key, nonce, aad, aad_len, in, len, out, tag) < 0)
        return bh_err_set(err, BH_EIO, "AES-256-GCM encryption failed");
    return 0;
}

int bh_crypto_open(const uint8_t key[BH_KEY_LEN], const uint8_t nonce[BH_GCM_NONCE_LEN],
                   const void *aad, size_t aad_len, const void *in, size_t len, void *out,
                   const uint8_t tag[BH_GCM_TAG_LEN], struct bh_err *err)
{
    if (crypto_gcm(0, key, nonce, aad, aad_len, in, len, out, (uint8_t *)tag) < 0)
        return bh_err_set(err, BH_EINVAL, "authentication failed (wrong key or tampered data)");
    return 0;
}

struct bh_sha256 {
    EVP_MD_CTX *ctx;
};

struct bh_sha256 *bh_crypto_sha256_new(void)
{
    struct bh_sha256 *h = bh_xcalloc(1, sizeof(*h));
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1)
        abort(); /* only fails on OOM, like the bh_x allocators */
    return h;
}

void bh_crypto_sha256_update(struct bh_sha256 *h, const void *data, size_t len)
{
    EVP_DigestUpdate(h->ctx, data, len);
}

void bh_crypto_sha256_free(struct bh_sha256 *h)
{
    if (!h)
        return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

void bh_crypto_sha256_final(struct bh_sha256 *h, char hex[65])
{
    uint8_t md[32];
    unsigned int n = 0;
    EVP_DigestFinal_ex(h->ctx, md, &n);
    for (unsigned int i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    hex[64] = '\0';
    bh_crypto_sha256_free(h);
}

int bh_crypto_sha256_file(const char *path, char hex[65], struct bh_err *err)
{
    bh_autoclose int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return bh_err_errno(err, errno == ENOENT ? BH_ENOTFOUND : BH_EIO, "open %s", path);
    return bh_crypto_sha256_fd(fd, hex, err);
}

int bh_crypto_sha256_fd(int fd, char hex[65], struct bh_err *err)
{
    struct bh_sha256 *h = bh_crypto_sha256_new();
    bh_autofree uint8_t *buf = bh_xmalloc(1 << 20);
    for (off_t off = 0;;) {
        ssize_t n = pread(fd, buf, 1 << 20, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            bh_crypto_sha256_free(h);
            return bh_err_errno(err, BH_EIO, "read for sha256");
        }
        if (n == 0)
            break;
        bh_crypto_sha256_update(h, buf, (size_t)n);
        off += n;
    }
    bh_crypto_sha256_final(h, hex);
    return 0;
}
