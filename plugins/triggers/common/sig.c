/* Signature verification. Every comparison of a computed MAC with a given one is
 * constant-time (CRYPTO_memcmp) over equal lengths, so timing leaks nothing of the MAC. */
#include "sig.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

static int sig_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* header: "<prefix><64 hex>", the HMAC-SHA256 of msg under key. */
static int sig_hex_verify(const uint8_t *key, size_t key_len, const char *prefix,
                          const char *header, const char *msg, size_t msg_len)
{
    size_t pn = strlen(prefix);
    if (!header)
        return SIG_MISSING;
    if (strncmp(header, prefix, pn) != 0 || strlen(header + pn) != 64)
        return SIG_MALFORMED;
    uint8_t given[32];
    for (int i = 0; i < 32; i++) {
        int hi = sig_hexval(header[pn + 2 * i]), lo = sig_hexval(header[pn + 1 + 2 * i]);
        if (hi < 0 || lo < 0)
            return SIG_MALFORMED;
        given[i] = (uint8_t)(hi * 16 + lo);
    }
    uint8_t mac[32];
    unsigned int mac_len = 0;
    if (!HMAC(EVP_sha256(), key, (int)key_len, (const uint8_t *)msg, msg_len, mac, &mac_len))
        return SIG_MISMATCH;
    return CRYPTO_memcmp(mac, given, 32) == 0 ? SIG_OK : SIG_MISMATCH;
}

int sig_github_verify(const uint8_t *key, size_t key_len, const char *header, const char *body,
                      size_t body_len)
{
    return sig_hex_verify(key, key_len, "sha256=", header, body, body_len);
}

/* Decodes standard base64 of n chars into out (room for n*3/4); length or -1. */
static int sig_b64_decode(const char *in, size_t n, uint8_t *out)
{
    if (n == 0 || n % 4 != 0)
        return -1;
    int len = EVP_DecodeBlock(out, (const uint8_t *)in, (int)n);
    if (len < 0)
        return -1;
    /* EVP_DecodeBlock counts padding as data bytes. */
    len -= in[n - 1] == '=';
    len -= in[n - 2] == '=';
    return len;
}

static int sig_ts_ok(const char *ts, long long now)
{
    if (!ts[0] || strlen(ts) > 12 || strspn(ts, "0123456789") != strlen(ts))
        return SIG_MALFORMED;
    long long t = strtoll(ts, NULL, 10);
    return (t > now + SIG_WINDOW_S || t < now - SIG_WINDOW_S) ? SIG_STALE : SIG_OK;
}

/* The key: base64 after "whsec_", else the secret's bytes. *key malloc'd. */
static int sig_standard_key(const char *secret, uint8_t **key, size_t *key_len)
{
    size_t n = strlen(secret);
    if (strncmp(secret, "whsec_", 6) != 0) {
        *key = (uint8_t *)strdup(secret);
        *key_len = n;
        return *key ? 0 : -1;
    }
    *key = malloc(n);
    int len = *key ? sig_b64_decode(secret + 6, n - 6, *key) : -1;
    if (len < 0) {
        free(*key);
        return -1;
    }
    *key_len = (size_t)len;
    return 0;
}

/* 1 if one "v1,<b64>" entry of header equals mac. */
static int sig_any_matches(const char *header, const uint8_t mac[32])
{
    const char *p = header;
    while (*p) {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, " ");
        uint8_t given[64];
        if (n > 3 && n - 3 <= 88 && strncmp(p, "v1,", 3) == 0 &&
            sig_b64_decode(p + 3, n - 3, given) == 32 && CRYPTO_memcmp(given, mac, 32) == 0)
            return 1;
        p += n;
    }
    return 0;
}

int sig_standard_verify(const char *secret, const char *id, const char *ts, const char *header,
                        const char *body, size_t body_len, long long now)
{
    if (!id || !ts || !header)
        return SIG_MISSING;
    if (!id[0] || strlen(id) > 256)
        return SIG_MALFORMED;
    int rc = sig_ts_ok(ts, now);
    if (rc != SIG_OK)
        return rc;
    uint8_t *key;
    size_t key_len;
    if (sig_standard_key(secret, &key, &key_len) < 0)
        return SIG_MISMATCH;
    size_t head_len = strlen(id) + strlen(ts) + 2;
    char *msg = malloc(head_len + body_len + 1);
    uint8_t mac[32];
    unsigned int mac_len = 0;
    int ok = msg != NULL;
    if (ok) {
        strcpy(msg, id);
        strcat(msg, ".");
        strcat(msg, ts);
        strcat(msg, ".");
        memcpy(msg + head_len, body, body_len);
        ok = HMAC(EVP_sha256(), key, (int)key_len, (uint8_t *)msg, head_len + body_len, mac,
                  &mac_len) != NULL;
    }
    free(msg);
    OPENSSL_cleanse(key, key_len);
    free(key);
    return ok && sig_any_matches(header, mac) ? SIG_OK : SIG_MISMATCH;
}

int sig_slack_verify(const char *secret, const char *ts, const char *header, const char *body,
                     size_t body_len, long long now)
{
    if (!ts || !header)
        return SIG_MISSING;
    int rc = sig_ts_ok(ts, now);
    if (rc != SIG_OK)
        return rc;
    /* The signed base string: "v0:<timestamp>:<body>". */
    size_t head_len = strlen(ts) + 4;
    char *msg = malloc(head_len + body_len + 1);
    if (!msg)
        return SIG_MISMATCH;
    memcpy(msg, "v0:", 3);
    memcpy(msg + 3, ts, strlen(ts));
    msg[head_len - 1] = ':';
    memcpy(msg + head_len, body, body_len);
    rc = sig_hex_verify((const uint8_t *)secret, strlen(secret), "v0=", header, msg,
                        head_len + body_len);
    free(msg);
    return rc;
}

int sig_token_verify(const char *expected, const char *given)
{
    if (!given)
        return SIG_MISSING;
    size_t n = strlen(expected);
    /* Lengths first (a token's length is no secret), then every byte, in constant time. */
    if (strlen(given) != n || n == 0)
        return SIG_MISMATCH;
    return CRYPTO_memcmp(expected, given, n) == 0 ? SIG_OK : SIG_MISMATCH;
}

const char *sig_error(int rc)
{
    switch (rc) {
    case SIG_OK:
        return "ok";
    case SIG_MISSING:
        return "missing signature headers";
    case SIG_MALFORMED:
        return "malformed signature headers";
    case SIG_STALE:
        return "timestamp outside the 5-minute window";
    }
    return "signature does not verify";
}
