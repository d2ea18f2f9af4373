/* The egress engine of the `restricted` network mode (plugin-internal, not part of the SDK):
 * a DNS filter and an HTTP/TLS egress proxy that instances reach on their bridge gateway.
 *
 *  - DNS (UDP and TCP): answers A/AAAA for names on the instance's allowlist (exact names and
 *    "*.example.com" wildcards, which match subdomains only), NXDOMAIN for everything else,
 *    so DNS cannot carry data out.
 *  - Transparent HTTP (TCP 80 redirected here): allowed by Host header.
 *  - Transparent TLS (TCP 443 redirected here): allowed by the ClientHello SNI; passed
 *    through untouched, or, for a credentials domain, terminated with a leaf certificate
 *    signed by the workload's CA, headers injected, and re-encrypted to the real upstream
 *    with certificate verification.
 *  - Explicit proxy (HTTP_PROXY/HTTPS_PROXY): absolute-URI requests and CONNECT, same rules.
 *  - Refused: IP-literal destinations, names not on the allowlist (HTTP 403 with a body that
 *    says why; a TLS handshake_failure alert for TLS).
 *  - Plain HTTP to a credentials domain is sent upstream over TLS (so
 *    ANTHROPIC_BASE_URL=http://api.anthropic.com works while the key stays outside).
 * Policies are keyed by the instance's source address on the bridge; a default policy, when
 * set, covers every source without one of its own (the Kubernetes sidecar, where all traffic
 * is the one Pod's and arrives from 127.0.0.1 or the Pod IP, whichever the kernel picked). */
#ifndef BH_EGRESS_H
#define BH_EGRESS_H

#include <boilerhouse/plugin.h>
#include <stddef.h>

struct egress;

struct egress_config {
    const char *listen_ip;           /* the bridge gateway address */
    int explicit_port;               /* HTTP_PROXY / HTTPS_PROXY (e.g. 3128); -1: none */
    int http_port;                   /* transparent HTTP (e.g. 3129) */
    int tls_port;                    /* transparent TLS (e.g. 3130) */
    int dns_port;                    /* DNS, UDP+TCP (53) */
    const char *ca_dir;              /* per-workload CA keys/certs are created and kept here
                                        (0700; keys 0600); NULL: none is ever created, only
                                        the CAs given to egress_ca_load are used */
    const char *trust_bundle;        /* PEM bundle to verify upstreams; NULL = system store */
    const char *hosts_file;          /* optional "ip name..." file consulted before the system
                                        resolver for upstream names (tests use it) */
    const struct bh_host_api *host;  /* for logging and errors */
    struct bh_plugin_handle *handle; /* the plugin instance the log lines belong to */
};

struct egress_header {
    const char *name;
    const char *value; /* resolved secret value; the engine keeps its own copy */
};

struct egress_credential {
    const char *domain;
    const struct egress_header *headers;
    size_t n_headers;
};

struct egress_policy {
    const char *workload; /* selects the CA that signs intercepted leaves */
    const char *const *allowlist;
    size_t n_allow;
    const struct egress_credential *credentials;
    size_t n_credentials;
};

int egress_start(const struct egress_config *cfg, struct egress **out, struct bh_err *err);
void egress_stop(struct egress *eg);
/* Installs or replaces the policy for traffic from src_ip (copied). */
int egress_set_policy(struct egress *eg, const char *src_ip, const struct egress_policy *p,
                      struct bh_err *err);
void egress_clear_policy(struct egress *eg, const char *src_ip);
/* Installs or replaces (p NULL: removes) the policy of every source without one of its own. */
int egress_set_default_policy(struct egress *eg, const struct egress_policy *p, struct bh_err *err);
/* Uses the CA in crt_path/key_path (PEM, the key matching the certificate) for workload's
 * intercepted leaves, instead of one the engine would create: a CA made elsewhere, which the
 * workload already trusts. Fails if the files cannot be read or do not match. */
int egress_ca_load(struct egress *eg, const char *workload, const char *crt_path,
                   const char *key_path, struct bh_err *err);
/* PEM path of the workload's CA certificate (created on first use), for the instance's trust
 * store. Owned by the engine, valid until egress_stop. */
const char *egress_ca_cert(struct egress *eg, const char *workload, struct bh_err *err);

/* Additions for tests and benchmarks. The ports actually bound (useful when the config asked
 * for port 0), and the upstream ports the proxy dials (80 and 443 unless changed). */
void egress_ports(struct egress *eg, int *explicit_port, int *http_port, int *tls_port,
                  int *dns_port);
void egress_set_upstream_ports(struct egress *eg, int http_port, int tls_port);
/* Counters per workload since the start, as JSON into json[cap]:
 * {"<workload>": {"requests": n, "bytes": n, "denials": n}, ...}. requests: HTTP requests and
 * TLS connections let through; bytes: what crossed the client side, both ways; denials: 403s
 * and refused handshakes. -1 if cap is too small. */
int egress_stats(struct egress *eg, char *json, size_t cap);

#endif
