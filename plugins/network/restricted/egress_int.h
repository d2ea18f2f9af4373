/* Internals shared by egress.c (proxy), egress_tls.c (ClientHello, CA, leaves) and dns.c
 * (filter). Plugin-internal: nothing here is exported from the .so. */
#ifndef BH_EGRESS_INT_H
#define BH_EGRESS_INT_H

#include "egress.h"

#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

#define EG_NAME_MAX 254 /* a DNS name in text form, NUL included */

struct eg_cred {
    char *domain;
    size_t n;
    char **names;
    char **values; /* secrets: wiped on free, never logged */
};

/* An immutable, refcounted copy of one source's policy: readers hold a reference for the
 * length of one request, writers swap the pointer under the rwlock. */
struct eg_policy {
    atomic_int refs;
    char *workload;
    char **allow;
    size_t n_allow;
    struct eg_cred *creds;
    size_t n_creds;
};

struct eg_addr {
    int family; /* AF_INET or AF_INET6 */
    unsigned char bytes[16];
};

struct eg_tls;

/* ---- egress.c -------------------------------------------------------------------------- */
struct eg_policy *eg_policy_get(struct egress *eg, const char *src_ip);
void eg_policy_put(struct eg_policy *p);
/* 1 if name (normalized) is on the allowlist or is a credentials domain. */
int eg_policy_allows(const struct eg_policy *p, const char *name);
const struct eg_cred *eg_policy_cred(const struct eg_policy *p, const char *name);
/* Lowercases, strips one trailing dot, checks [a-z0-9-_.] and label/total lengths. */
int eg_name_norm(const char *in, size_t len, char *out, size_t cap);
/* Upstream addresses for name: the hosts file first, then the system resolver. family is
 * AF_INET, AF_INET6 or AF_UNSPEC. Returns the count (0 = none). */
size_t eg_resolve(struct egress *eg, const char *name, int family, struct eg_addr *out, size_t cap);
void eg_log(struct egress *eg, uint32_t lvl, const char *fmt, ...) BH_PRINTF(3, 4);
/* Allocators that abort on OOM (eg_xstrdup(NULL) is ""; eg_xcalloc(0, ...) is not NULL). */
char *eg_xstrdup(const char *s);
void *eg_xcalloc(size_t n, size_t sz);
/* Fills err (may be NULL) and returns -1. */
int eg_fail(struct bh_err *err, int code, const char *fmt, ...) BH_PRINTF(3, 4);
int eg_stopping(struct egress *eg);

/* ---- egress_tls.c ------------------------------------------------------------------------ */
/* ca_dir NULL: CAs come from eg_tls_ca_add only, none is created. */
int eg_tls_init(struct eg_tls **out, const char *ca_dir, const char *trust_bundle,
                struct bh_err *err);
void eg_tls_fini(struct eg_tls *t);
/* SNI host name from a complete TLS record holding a ClientHello: 1 found, 0 absent,
 * -1 malformed. */
int eg_sni_parse(const unsigned char *buf, size_t len, char *out, size_t cap);
/* Bytes needed to hold the first TLS record given what has been seen (>= 5), or -1 if the
 * data cannot be a TLS handshake record. */
long eg_tls_record_need(const unsigned char *buf, size_t len);
const char *eg_tls_ca_path(struct eg_tls *t, const char *workload, struct bh_err *err);
/* Adds workload's CA from existing files (egress_ca_load). */
int eg_tls_ca_add(struct eg_tls *t, const char *workload, const char *crt_path,
                  const char *key_path, struct bh_err *err);
/* A server context with a leaf for name signed by the workload's CA; the caller frees it. */
SSL_CTX *eg_tls_leaf_ctx(struct eg_tls *t, const char *workload, const char *name,
                         struct bh_err *err);
/* Client context verifying upstreams against trust_bundle or the system store. Borrowed. */
SSL_CTX *eg_tls_upstream_ctx(struct eg_tls *t);
int eg_workload_valid(const char *w);

/* ---- dns.c ------------------------------------------------------------------------------- */
/* Builds the reply to query q from src_ip into out; returns its length, or 0 to drop. */
size_t eg_dns_answer(struct egress *eg, const char *src_ip, const unsigned char *q, size_t qlen,
                     unsigned char *out, size_t cap);

#endif
