/* AWS Signature Version 4: canonical request -> string to sign -> HMAC chain of the date,
 * region, service and "aws4_request" -> signature. */
#include "sigv4.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#define S3_ALGO "AWS4-HMAC-SHA256"

static void s3_hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void s3_sha256_hex(const void *data, size_t len, char out[S3_HEX_SHA256_LEN])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(data, len, md);
    s3_hex(md, sizeof(md), out);
}

static void s3_hmac(const void *key, size_t klen, const char *msg, unsigned char out[32])
{
    unsigned int n = 32;
    HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out, &n);
}

int s3_uri_encode(const char *in, int keep_slash, char *out, size_t outlen)
{
    static const char digits[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        int plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                    (*p >= '0' && *p <= '9') || strchr("-._~", *p) || (keep_slash && *p == '/');
        if (o + (plain ? 1 : 3) >= outlen)
            return -1;
        if (plain) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = digits[*p >> 4];
            out[o++] = digits[*p & 15];
        }
    }
    out[o] = '\0';
    return 0;
}

/* The canonical request as a heap string; NULL if out of memory. */
static char *s3_canonical_request(const struct s3_sign_req *r)
{
    size_t cap =
        strlen(r->method) + strlen(r->uri) + strlen(r->query) + strlen(r->payload_hash) + 8;
    for (size_t i = 0; i < r->n_headers; i++)
        cap += 2 * strlen(r->headers[i].name) + strlen(r->headers[i].value) + 3;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    size_t o = (size_t)snprintf(s, cap, "%s\n%s\n%s\n", r->method, r->uri, r->query);
    for (size_t i = 0; i < r->n_headers; i++)
        o += (size_t)snprintf(s + o, cap - o, "%s:%s\n", r->headers[i].name, r->headers[i].value);
    o += (size_t)snprintf(s + o, cap - o, "\n");
    for (size_t i = 0; i < r->n_headers; i++)
        o += (size_t)snprintf(s + o, cap - o, "%s%s", i ? ";" : "", r->headers[i].name);
    snprintf(s + o, cap - o, "\n%s", r->payload_hash);
    return s;
}

int s3_sigv4_canonical_hash(const struct s3_sign_req *r, char out[S3_HEX_SHA256_LEN])
{
    char *canon = s3_canonical_request(r);
    if (!canon)
        return -1;
    s3_sha256_hex(canon, strlen(canon), out);
    free(canon);
    return 0;
}

int s3_sigv4_signature(const struct s3_sign_req *r, char out[S3_HEX_SHA256_LEN])
{
    char hash[S3_HEX_SHA256_LEN], key[256], sts[512];
    unsigned char k[32];
    if (s3_sigv4_canonical_hash(r, hash) < 0)
        return -1;
    snprintf(sts, sizeof(sts), S3_ALGO "\n%s\n%.8s/%s/%s/aws4_request\n%s", r->amz_date,
             r->amz_date, r->region, r->service, hash);
    snprintf(key, sizeof(key), "AWS4%s", r->secret_key);
    char date[9];
    snprintf(date, sizeof(date), "%.8s", r->amz_date);
    s3_hmac(key, strlen(key), date, k);
    s3_hmac(k, sizeof(k), r->region, k);
    s3_hmac(k, sizeof(k), r->service, k);
    s3_hmac(k, sizeof(k), "aws4_request", k);
    s3_hmac(k, sizeof(k), sts, k);
    s3_hex(k, sizeof(k), out);
    OPENSSL_cleanse(key, sizeof(key));
    return 0;
}

int s3_sigv4_authorization(const struct s3_sign_req *r, char *out, size_t outlen)
{
    char sig[S3_HEX_SHA256_LEN];
    if (s3_sigv4_signature(r, sig) < 0)
        return -1;
    int n = snprintf(out, outlen, S3_ALGO " Credential=%s/%.8s/%s/%s/aws4_request, SignedHeaders=",
                     r->access_key, r->amz_date, r->region, r->service);
    for (size_t i = 0; i < r->n_headers && n >= 0 && (size_t)n < outlen; i++)
        n += snprintf(out + n, outlen - (size_t)n, "%s%s", i ? ";" : "", r->headers[i].name);
    if (n >= 0 && (size_t)n < outlen)
        n += snprintf(out + n, outlen - (size_t)n, ", Signature=%s", sig);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}
