/* TLS side of the egress engine: ClientHello/SNI parsing, the per-workload CAs (EC P-256,
 * created on first use and kept in ca_dir, or loaded from files made elsewhere), leaf certificates
 * for intercepted names (cached per workload and name), and the verifying client context for
 * upstreams. */
#include "egress_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EG_LEAF_CACHE 512
#define EG_CA_MAX 256

struct eg_ca {
    char *workload;
    char *crt_path;
    X509 *cert;
    EVP_PKEY *key;
};

struct eg_leaf {
    char *key; /* "workload/name" */
    SSL_CTX *ctx;
};

struct eg_tls {
    char *ca_dir; /* NULL: only the CAs of eg_tls_ca_add, none created */
    SSL_CTX *upstream;
    pthread_mutex_t mu;
    struct eg_ca cas[EG_CA_MAX];
    size_t n_cas;
    struct eg_leaf leaves[EG_LEAF_CACHE];
    size_t next_leaf; /* ring: the oldest entry is replaced when full */
};

/* ---- ClientHello ------------------------------------------------------------------------- */

struct rd {
    const unsigned char *p;
    size_t n;
};

static int rd_skip(struct rd *r, size_t k)
{
    if (r->n < k)
        return -1;
    r->p += k;
    r->n -= k;
    return 0;
}

static int rd_u8(struct rd *r, size_t *v)
{
    if (r->n < 1)
        return -1;
    *v = r->p[0];
    return rd_skip(r, 1);
}

static int rd_u16(struct rd *r, size_t *v)
{
    if (r->n < 2)
        return -1;
    *v = ((size_t)r->p[0] << 8) | r->p[1];
    return rd_skip(r, 2);
}

/* A sub-reader of the next len bytes (a length-prefixed vector). */
static int rd_sub(struct rd *r, size_t len, struct rd *sub)
{
    if (r->n < len)
        return -1;
    sub->p = r->p;
    sub->n = len;
    return rd_skip(r, len);
}

long eg_tls_record_need(const unsigned char *buf, size_t len)
{
    if (len < 5)
        return 5;
    if (buf[0] != 0x16 || buf[1] != 0x03)
        return -1;
    size_t rec = ((size_t)buf[3] << 8) | buf[4];
    if (rec < 4 || rec > 16384)
        return -1;
    return (long)(5 + rec);
}

static int sni_from_ext(struct rd *ext, char *out, size_t cap)
{
    size_t list_len, type, name_len;
    struct rd list, name;
    if (rd_u16(ext, &list_len) < 0 || rd_sub(ext, list_len, &list) < 0)
        return -1;
    while (list.n > 0) {
        if (rd_u8(&list, &type) < 0 || rd_u16(&list, &name_len) < 0 ||
            rd_sub(&list, name_len, &name) < 0)
            return -1;
        if (type == 0)
            return eg_name_norm((const char *)name.p, name.n, out, cap) < 0 ? -1 : 1;
    }
    return 0;
}

static int hello_skip_fixed(struct rd *h)
{
    size_t len;
    if (rd_skip(h, 2 + 32) < 0) /* client_version, random */
        return -1;
    if (rd_u8(h, &len) < 0 || len > 32 || rd_skip(h, len) < 0) /* session_id */
        return -1;
    if (rd_u16(h, &len) < 0 || len % 2 || rd_skip(h, len) < 0) /* cipher_suites */
        return -1;
    if (rd_u8(h, &len) < 0 || rd_skip(h, len) < 0) /* compression_methods */
        return -1;
    return 0;
}

int eg_sni_parse(const unsigned char *buf, size_t len, char *out, size_t cap)
{
    long need = eg_tls_record_need(buf, len);
    if (need < 0 || (size_t)need > len)
        return -1;
    struct rd rec = {buf + 5, (size_t)need - 5}, h, exts, ext;
    size_t type, hlen, ext_len, ext_type;
    if (rd_u8(&rec, &type) < 0 || type != 1 || rec.n < 3)
        return -1;
    hlen = ((size_t)rec.p[0] << 16) | ((size_t)rec.p[1] << 8) | rec.p[2];
    if (rd_skip(&rec, 3) < 0 || rd_sub(&rec, hlen, &h) < 0) /* must fit in one record */
        return -1;
    if (hello_skip_fixed(&h) < 0)
        return -1;
    if (h.n == 0)
        return 0; /* no extensions */
    if (rd_u16(&h, &ext_len) < 0 || rd_sub(&h, ext_len, &exts) < 0)
        return -1;
    while (exts.n > 0) {
        if (rd_u16(&exts, &ext_type) < 0 || rd_u16(&exts, &ext_len) < 0 ||
            rd_sub(&exts, ext_len, &ext) < 0)
            return -1;
        if (ext_type == 0)
            return sni_from_ext(&ext, out, cap);
    }
    return 0;
}

/* ---- certificates ------------------------------------------------------------------------ */

int eg_workload_valid(const char *w)
{
    size_t n = w ? strlen(w) : 0;
    if (n == 0 || n > 63 || w[0] == '-' || w[n - 1] == '-')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((w[i] >= 'a' && w[i] <= 'z') || (w[i] >= '0' && w[i] <= '9') || w[i] == '-'))
            return 0;
    return 1;
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ext)
        return -1;
    int rc = X509_add_ext(cert, ext, -1) ? 0 : -1;
    X509_EXTENSION_free(ext);
    return rc;
}

static int set_serial(X509 *cert)
{
    unsigned char raw[16];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return -1;
    raw[0] &= 0x7f; /* positive */
    BIGNUM *bn = BN_bin2bn(raw, sizeof(raw), NULL);
    int ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) != NULL;
    BN_free(bn);
    return ok ? 0 : -1;
}

/* A v3 certificate for key with subject CN=cn, valid from an hour ago for `days`. */
static X509 *cert_new(EVP_PKEY *key, const char *cn, long days)
{
    X509 *cert = X509_new();
    if (!cert)
        return NULL;
    X509_NAME *name = X509_get_subject_name(cert);
    if (!X509_set_version(cert, 2) || set_serial(cert) < 0 ||
        !X509_gmtime_adj(X509_getm_notBefore(cert), -3600) ||
        !X509_gmtime_adj(X509_getm_notAfter(cert), days * 86400L) ||
        !X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"Boilerhouse",
                                    -1, -1, 0) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1,
                                    0) ||
        !X509_set_pubkey(cert, key)) {
        X509_free(cert);
        return NULL;
    }
    return cert;
}

static X509 *ca_cert_new(EVP_PKEY *key, const char *workload)
{
    char cn[128];
    snprintf(cn, sizeof(cn), "Boilerhouse egress CA %s", workload);
    X509 *cert = cert_new(key, cn, 3652);
    if (!cert)
        return NULL;
    if (!X509_set_issuer_name(cert, X509_get_subject_name(cert)) ||
        add_ext(cert, cert, NID_basic_constraints, "critical,CA:TRUE") < 0 ||
        add_ext(cert, cert, NID_key_usage, "critical,keyCertSign,cRLSign") < 0 ||
        add_ext(cert, cert, NID_subject_key_identifier, "hash") < 0 ||
        !X509_sign(cert, key, EVP_sha256())) {
        X509_free(cert);
        return NULL;
    }
    return cert;
}

static X509 *leaf_cert_new(EVP_PKEY *key, const char *name, const struct eg_ca *ca)
{
    char san[EG_NAME_MAX + 8];
    snprintf(san, sizeof(san), "DNS:%s", name);
    X509 *cert = cert_new(key, name, 365);
    if (!cert)
        return NULL;
    if (!X509_set_issuer_name(cert, X509_get_subject_name(ca->cert)) ||
        add_ext(cert, ca->cert, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
        add_ext(cert, ca->cert, NID_key_usage, "critical,digitalSignature") < 0 ||
        add_ext(cert, ca->cert, NID_ext_key_usage, "serverAuth") < 0 ||
        add_ext(cert, ca->cert, NID_subject_alt_name, san) < 0 ||
        add_ext(cert, ca->cert, NID_subject_key_identifier, "hash") < 0 ||
        add_ext(cert, ca->cert, NID_authority_key_identifier, "keyid:always") < 0 ||
        !X509_sign(cert, ca->key, EVP_sha256())) {
        X509_free(cert);
        return NULL;
    }
    return cert;
}

/* Writes via a temporary file and rename, so a crash never leaves half a key. */
static int write_pem(const char *path, mode_t mode, EVP_PKEY *key, X509 *cert)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return -1;
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        unlink(tmp);
        return -1;
    }
    int ok =
        key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) : PEM_write_X509(f, cert);
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) < 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* Reads ca->crt_path and key_path; 0 if both parse and the key is the certificate's. */
static int ca_load(struct eg_ca *ca, const char *key_path)
{
    FILE *kf = fopen(key_path, "re");
    FILE *cf = fopen(ca->crt_path, "re");
    if (kf)
        ca->key = PEM_read_PrivateKey(kf, NULL, NULL, NULL);
    if (cf)
        ca->cert = PEM_read_X509(cf, NULL, NULL, NULL);
    if (kf)
        fclose(kf);
    if (cf)
        fclose(cf);
    if (ca->key && ca->cert && X509_check_private_key(ca->cert, ca->key))
        return 0;
    EVP_PKEY_free(ca->key);
    X509_free(ca->cert);
    ca->key = NULL;
    ca->cert = NULL;
    return -1;
}

static int ca_create(struct eg_ca *ca, const char *key_path)
{
    ca->key = EVP_EC_gen("P-256");
    if (!ca->key)
        return -1;
    ca->cert = ca_cert_new(ca->key, ca->workload);
    if (ca->cert && write_pem(key_path, 0600, ca->key, NULL) == 0 &&
        write_pem(ca->crt_path, 0644, NULL, ca->cert) == 0)
        return 0;
    return -1;
}

static void ca_clear(struct eg_ca *ca)
{
    free(ca->workload);
    free(ca->crt_path);
    X509_free(ca->cert);
    EVP_PKEY_free(ca->key);
    memset(ca, 0, sizeof(*ca));
}

/* The workload's CA, loaded or created; called with t->mu held. */
static struct eg_ca *ca_get(struct eg_tls *t, const char *workload, struct bh_err *err)
{
    for (size_t i = 0; i < t->n_cas; i++)
        if (strcmp(t->cas[i].workload, workload) == 0)
            return &t->cas[i];
    if (t->n_cas == EG_CA_MAX || !t->ca_dir)
        return NULL;
    struct eg_ca *ca = &t->cas[t->n_cas];
    char key_path[PATH_MAX];
    snprintf(key_path, sizeof(key_path), "%s/%s.key", t->ca_dir, workload);
    ca->workload = strdup(workload);
    if (asprintf(&ca->crt_path, "%s/%s.crt", t->ca_dir, workload) < 0)
        ca->crt_path = NULL;
    if (ca->workload && ca->crt_path &&
        (ca_load(ca, key_path) == 0 || ca_create(ca, key_path) == 0)) {
        t->n_cas++;
        return ca;
    }
    ca_clear(ca);
    return NULL;
}

const char *eg_tls_ca_path(struct eg_tls *t, const char *workload, struct bh_err *err)
{
    if (!eg_workload_valid(workload)) {
        if (err) {
            err->code = BH_EINVAL;
            snprintf(err->msg, sizeof(err->msg), "egress: invalid workload name");
        }
        return NULL;
    }
    pthread_mutex_lock(&t->mu);
    struct eg_ca *ca = ca_get(t, workload, err);
    const char *path = ca ? ca->crt_path : NULL;
    pthread_mutex_unlock(&t->mu);
    if (!path && err) {
        err->code = BH_EIO;
        snprintf(err->msg, sizeof(err->msg), "egress: cannot load or create the CA of %s",
                 workload);
    }
    return path;
}

/* The CA of workload from files; called with t->mu held. */
static int ca_add_locked(struct eg_tls *t, const char *workload, const char *crt_path,
                         const char *key_path, struct bh_err *err)
{
    for (size_t i = 0; i < t->n_cas; i++)
        if (strcmp(t->cas[i].workload, workload) == 0)
            return eg_fail(err, BH_ECONFLICT, "egress: a CA for %s is already loaded", workload);
    if (t->n_cas == EG_CA_MAX)
        return eg_fail(err, BH_EIO, "egress: too many CAs");
    const char *unreadable = access(crt_path, R_OK) < 0   ? crt_path
                             : access(key_path, R_OK) < 0 ? key_path
                                                          : NULL;
    if (unreadable)
        return eg_fail(err, BH_EIO, "egress: CA of %s: %s: %s", workload, unreadable,
                       strerror(errno));
    struct eg_ca *ca = &t->cas[t->n_cas];
    if (!(ca->workload = strdup(workload)) || !(ca->crt_path = strdup(crt_path)) ||
        ca_load(ca, key_path) < 0) {
        ca_clear(ca);
        return eg_fail(err, BH_EINVAL,
                       "egress: CA of %s: %s and %s: not a PEM certificate and its private key",
                       workload, crt_path, key_path);
    }
    t->n_cas++;
    return 0;
}

int eg_tls_ca_add(struct eg_tls *t, const char *workload, const char *crt_path,
                  const char *key_path, struct bh_err *err)
{
    if (!eg_workload_valid(workload))
        return eg_fail(err, BH_EINVAL, "egress: invalid workload name");
    pthread_mutex_lock(&t->mu);
    int rc = ca_add_locked(t, workload, crt_path, key_path, err);
    pthread_mutex_unlock(&t->mu);
    return rc;
}

static SSL_CTX *leaf_ctx_new(const struct eg_ca *ca, const char *name)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = key ? leaf_cert_new(key, name, ca) : NULL;
    SSL_CTX *ctx = cert ? SSL_CTX_new(TLS_server_method()) : NULL;
    if (ctx && (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
                SSL_CTX_use_certificate(ctx, cert) != 1 || SSL_CTX_use_PrivateKey(ctx, key) != 1)) {
        SSL_CTX_free(ctx);
        ctx = NULL;
    }
    X509_free(cert);
    EVP_PKEY_free(key);
    return ctx;
}

/* Cached context for key, or a new one stored in the ring; t->mu held. */
static SSL_CTX *leaf_lookup(struct eg_tls *t, const struct eg_ca *ca, const char *key,
                            const char *name)
{
    for (size_t i = 0; i < EG_LEAF_CACHE; i++)
        if (t->leaves[i].key && strcmp(t->leaves[i].key, key) == 0)
            return t->leaves[i].ctx;
    SSL_CTX *ctx = leaf_ctx_new(ca, name);
    char *dup = ctx ? strdup(key) : NULL;
    if (!dup) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    struct eg_leaf *slot = &t->leaves[t->next_leaf];
    t->next_leaf = (t->next_leaf + 1) % EG_LEAF_CACHE;
    free(slot->key);
    SSL_CTX_free(slot->ctx); /* SSLs made from it hold their own reference */
    slot->key = dup;
    slot->ctx = ctx;
    return ctx;
}

SSL_CTX *eg_tls_leaf_ctx(struct eg_tls *t, const char *workload, const char *name,
                         struct bh_err *err)
{
    char key[EG_NAME_MAX + 80];
    if (!eg_workload_valid(workload))
        return NULL;
    snprintf(key, sizeof(key), "%s/%s", workload, name);
    pthread_mutex_lock(&t->mu);
    struct eg_ca *ca = ca_get(t, workload, err);
    SSL_CTX *ctx = ca ? leaf_lookup(t, ca, key, name) : NULL;
    if (ctx)
        SSL_CTX_up_ref(ctx);
    pthread_mutex_unlock(&t->mu);
    return ctx;
}

SSL_CTX *eg_tls_upstream_ctx(struct eg_tls *t)
{
    return t->upstream;
}

static SSL_CTX *upstream_ctx_new(const char *trust_bundle)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return NULL;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int ok = SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) &&
             (trust_bundle ? SSL_CTX_load_verify_locations(ctx, trust_bundle, NULL)
                           : SSL_CTX_set_default_verify_paths(ctx));
    if (!ok) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int eg_tls_init(struct eg_tls **out, const char *ca_dir, const char *trust_bundle,
                struct bh_err *err)
{
    if (ca_dir && mkdir(ca_dir, 0700) < 0 && errno != EEXIST)
        return eg_fail(err, BH_EIO, "egress: mkdir %s: %s", ca_dir, strerror(errno));
    struct eg_tls *t = calloc(1, sizeof(*t));
    if (!t || (ca_dir && !(t->ca_dir = strdup(ca_dir))) ||
        !(t->upstream = upstream_ctx_new(trust_bundle))) {
        eg_tls_fini(t);
        err->code = BH_EIO;
        snprintf(err->msg, sizeof(err->msg), "egress: cannot set up TLS (trust bundle %s)",
                 trust_bundle ? trust_bundle : "system");
        return -1;
    }
    pthread_mutex_init(&t->mu, NULL);
    *out = t;
    return 0;
}

void eg_tls_fini(struct eg_tls *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n_cas; i++)
        ca_clear(&t->cas[i]);
    for (size_t i = 0; i < EG_LEAF_CACHE; i++) {
        free(t->leaves[i].key);
        SSL_CTX_free(t->leaves[i].ctx);
    }
    SSL_CTX_free(t->upstream);
    free(t->ca_dir);
    pthread_mutex_destroy(&t->mu);
    free(t);
}
