/* Listener certificates (tls.h): a private CA and a serving certificate it signs, made once
 * with OpenSSL and kept in the state dir, so a kubeconfig or a CA file handed out once keeps
 * working. */
#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs.h"
#include "tls.h"
#include "mem.h"

#define TLS_DAYS_CA 3650
#define TLS_DAYS_SERVING 825

static EVP_PKEY *tls_key_new(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    if (!k)
        abort(); /* only fails without memory or a broken libcrypto */
    return k;
}

static int tls_add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (!ext)
        return -1;
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

/* A certificate for key, named cn, signed by (issuer, issuer_key) or self-signed. */
static X509 *tls_cert_new(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key,
                          int days)
{
    X509 *c = X509_new();
    unsigned char serial[16];
    RAND_bytes(serial, sizeof(serial));
    serial[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c));
    BN_free(bn);
    X509_set_version(c, 2);
    X509_gmtime_adj(X509_getm_notBefore(c), -3600);
    X509_gmtime_adj(X509_getm_notAfter(c), (long)days * 86400);
    X509_set_pubkey(c, key);
    X509_NAME *name = X509_get_subject_name(c);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : name);
    return c;
}

static int tls_sign(X509 *c, EVP_PKEY *key)
{
    return X509_sign(c, key, EVP_sha256()) > 0 ? 0 : -1;
}

static char *tls_pem(int (*write)(BIO *, void *), void *obj)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data = NULL;
    if (write(b, obj) <= 0) {
        BIO_free(b);
        return NULL;
    }
    long n = BIO_get_mem_data(b, &data);
    char *out = bh_xstrndup(data, (size_t)n);
    BIO_free(b);
    return out;
}

static int tls_write_cert(BIO *b, void *c)
{
    return PEM_write_bio_X509(b, c);
}

static int tls_write_key(BIO *b, void *k)
{
    return PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
}

/* The serving certificate's names: always localhost and 127.0.0.1, plus the listen host. */
static char *tls_san(const char *host)
{
    struct in_addr a;
    if (!host || strcmp(host, "127.0.0.1") == 0 || strcmp(host, "localhost") == 0 ||
        strcmp(host, "0.0.0.0") == 0)
        return bh_xstrdup("DNS:localhost,IP:127.0.0.1");
    return bh_xasprintf("DNS:localhost,IP:127.0.0.1,%s:%s",
                        inet_pton(AF_INET, host, &a) == 1 ? "IP" : "DNS", host);
}

/* The CA's extensions, then its self-signature. */
static int tls_ca_finish(X509 *ca, EVP_PKEY *ca_key)
{
    return tls_add_ext(ca, ca, NID_basic_constraints, "critical,CA:TRUE") < 0 ||
                   tls_add_ext(ca, ca, NID_key_usage, "critical,keyCertSign,cRLSign") < 0 ||
                   tls_add_ext(ca, ca, NID_subject_key_identifier, "hash") < 0 ||
                   tls_sign(ca, ca_key) < 0
               ? -1
               : 0;
}

int bh_tls_ca_new(const char *cn, char **cert_pem, char **key_pem, struct bh_err *err)
{
    EVP_PKEY *key = tls_key_new();
    X509 *ca = tls_cert_new(key, cn, NULL, NULL, TLS_DAYS_CA);
    int rc = tls_ca_finish(ca, key);
    if (rc == 0) {
        *cert_pem = tls_pem(tls_write_cert, ca);
        *key_pem = tls_pem(tls_write_key, key);
        rc = *cert_pem && *key_pem ? 0 : -1;
    }
    X509_free(ca);
    EVP_PKEY_free(key);
    return rc == 0 ? 0 : bh_err_set(err, BH_EIO, "cannot make a CA certificate");
}

static int tls_make(const char *host, char **pem, struct bh_err *err)
{
    EVP_PKEY *ca_key = tls_key_new(), *key = tls_key_new();
    X509 *ca = tls_cert_new(ca_key, "boilerhouse-ca", NULL, NULL, TLS_DAYS_CA);
    X509 *srv = tls_cert_new(key, "boilerhouse", ca, ca_key, TLS_DAYS_SERVING);
    bh_autofree char *san = tls_san(host);
    /* In order, each step only after the last succeeded: a certificate is signed after its
     * extensions are in, and the serving one after its issuer is complete. */
    int rc = tls_ca_finish(ca, ca_key) < 0 ||
                     tls_add_ext(srv, ca, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
                     tls_add_ext(srv, ca, NID_key_usage, "critical,digitalSignature") < 0 ||
                     tls_add_ext(srv, ca, NID_ext_key_usage, "serverAuth") < 0 ||
                     tls_add_ext(srv, ca, NID_subject_alt_name, san) < 0 ||
                     tls_sign(srv, ca_key) < 0
                 ? -1
                 : 0;
    if (rc == 0) {
        pem[0] = tls_pem(tls_write_cert, ca);
        pem[1] = tls_pem(tls_write_key, ca_key);
        pem[2] = tls_pem(tls_write_cert, srv);
        pem[3] = tls_pem(tls_write_key, key);
    }
    X509_free(ca);
    X509_free(srv);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(key);
    return rc == 0 ? 0 : bh_err_set(err, BH_EIO, "cannot make the API certificates");
}

static const char *const tls_files[4] = {"ca.crt", "ca.key", "tls.crt", "tls.key"};

static int tls_store(const char *dir, char **pem, struct bh_err *err)
{
    if (bh_fs_mkdirp(dir, 0700, err) < 0)
        return -1;
    for (int i = 3; i >= 0; i--) { /* ca.crt last: its presence means all four are there */
        bh_autofree char *path = bh_xasprintf("%s/%s", dir, tls_files[i]);
        if (bh_fs_write_atomic(path, pem[i], strlen(pem[i]), i % 2 ? 0600 : 0644, err) < 0)
            return -1;
    }
    return 0;
}

static int tls_load(const char *dir, char **pem, struct bh_err *err)
{
    for (int i = 0; i < 4; i++) {
        bh_autofree char *path = bh_xasprintf("%s/%s", dir, tls_files[i]);
        size_t len;
        if (bh_fs_read_all(path, 1 << 20, &pem[i], &len, err) < 0)
            return -1;
    }
    return 0;
}

int bh_tls_ensure(const char *dir, const char *host, char **ca_pem, char **cert_pem, char **key_pem,
                  struct bh_err *err)
{
    char *pem[4] = {0};
    bh_autofree char *ca_path = bh_xasprintf("%s/ca.crt", dir);
    int rc = bh_fs_exists(ca_path) ? tls_load(dir, pem, err)
                                   : (tls_make(host, pem, err) < 0 ? -1 : tls_store(dir, pem, err));
    char **outs[4] = {ca_pem, NULL, cert_pem, key_pem};
    for (int i = 0; i < 4; i++) {
        if (rc == 0 && outs[i]) {
            *outs[i] = pem[i];
            pem[i] = NULL;
        }
        if (pem[i])
            OPENSSL_cleanse(pem[i], strlen(pem[i]));
        free(pem[i]);
    }
    return rc;
}

int bh_tls_fingerprint(const char *cert_pem, char out[BH_TLS_FINGERPRINT_LEN], struct bh_err *err)
{
    BIO *b = BIO_new_mem_buf(cert_pem, -1);
    X509 *c = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    int ok = c && X509_digest(c, EVP_sha256(), md, &n) == 1 && n == 32;
    X509_free(c);
    if (!ok)
        return bh_err_set(err, BH_EINVAL, "not a PEM certificate");
    for (unsigned i = 0; i < n; i++)
        snprintf(out + 3 * i, 4, "%02X%s", md[i], i + 1 < n ? ":" : "");
    return 0;
}
