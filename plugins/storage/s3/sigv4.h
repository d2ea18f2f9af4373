/* AWS Signature Version 4 for the S3 plugin: pure functions over a request description, so the
 * signer is tested against AWS's published vectors without a network. */
#ifndef S3_SIGV4_H
#define S3_SIGV4_H

#include <stddef.h>

#define S3_HEX_SHA256_LEN 65 /* 64 hex digits and the NUL */

struct s3_header {
    const char *name;  /* lowercase */
    const char *value; /* trimmed, single-spaced */
};

struct s3_sign_req {
    const char *method;
    const char *uri;                 /* canonical: each path segment URI-encoded, slashes kept */
    const char *query;               /* canonical: sorted, encoded; "" for none */
    const struct s3_header *headers; /* every signed header, sorted by name */
    size_t n_headers;
    const char *payload_hash; /* hex sha256 of the body (or "UNSIGNED-PAYLOAD") */
    const char *amz_date;     /* YYYYMMDDTHHMMSSZ */
    const char *region;
    const char *service;
    const char *access_key;
    const char *secret_key;
};

/* Hex sha256 of len bytes. */
void s3_sha256_hex(const void *data, size_t len, char out[S3_HEX_SHA256_LEN]);
/* The hex sha256 of the canonical request (what the string to sign carries). */
int s3_sigv4_canonical_hash(const struct s3_sign_req *r, char out[S3_HEX_SHA256_LEN]);
/* The hex signature of r. */
int s3_sigv4_signature(const struct s3_sign_req *r, char out[S3_HEX_SHA256_LEN]);
/* The Authorization header's value for r; 0, or -1 if it does not fit or memory runs out. */
int s3_sigv4_authorization(const struct s3_sign_req *r, char *out, size_t outlen);
/* URI-encodes in per AWS's rules (unreserved kept; '/' kept when keep_slash). -1 if it does
 * not fit in outlen. */
int s3_uri_encode(const char *in, int keep_slash, char *out, size_t outlen);

#endif
