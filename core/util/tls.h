/* Certificates for the daemon's TLS listeners (the REST API, the Kubernetes-compatible API):
 * a private EC P-256 CA and a serving certificate it signs, made once with OpenSSL and kept
 * in a directory of the state dir; and the SHA-256 fingerprint an operator pins or checks. */
#ifndef BH_TLS_H
#define BH_TLS_H

#include "err.h"

#define BH_TLS_FINGERPRINT_LEN 96 /* "AB:CD:..." for 32 bytes, and the NUL */

/* Loads, or makes and stores, <dir>/ca.crt, ca.key, tls.crt, tls.key (keys 0600): a CA and a
 * serving certificate it signs for localhost, 127.0.0.1 and host. PEM strings owned; any out
 * pointer may be NULL. */
BH_MUST_CHECK int bh_tls_ensure(const char *dir, const char *host, char **ca_pem, char **cert_pem,
                                char **key_pem, struct bh_err *err);
/* A new self-signed CA (EC P-256, ten years) named cn, in memory only: certificate and key as
 * PEM, owned (the key is the caller's to wipe). */
BH_MUST_CHECK int bh_tls_ca_new(const char *cn, char **cert_pem, char **key_pem,
                                struct bh_err *err);
/* The SHA-256 fingerprint of a PEM certificate's DER, as colon-separated upper-case hex. */
BH_MUST_CHECK int bh_tls_fingerprint(const char *cert_pem, char out[BH_TLS_FINGERPRINT_LEN],
                                     struct bh_err *err);

#endif
