/* The egress engine against a fake internet on 127.0.0.x: transparent HTTP and TLS, TLS
 * interception with credential injection, the explicit proxy, the DNS filter, and policies
 * changing under traffic. Upstream certificates come from a test CA the engine trusts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "../../plugins/network/restricted/egress.h"
#include "fake_upstream.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECRET "sekret-0123456789"

static char dir[64];
static char logbuf[65536];
static size_t loglen;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static struct egress *eg;
static struct fake https, http2, http3;
static int p_explicit, p_http, p_tls, p_dns;

static void test_log(struct bh_plugin_handle *h, uint32_t level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&log_mu);
    int n = vsnprintf(logbuf + loglen, sizeof(logbuf) - loglen, fmt, ap);
    if (n > 0 && loglen + (size_t)n + 1 < sizeof(logbuf)) {
        loglen += (size_t)n;
        logbuf[loglen++] = '\n';
    }
    pthread_mutex_unlock(&log_mu);
    va_end(ap);
}

static const struct bh_host_api host = {.size = sizeof(host), .log = test_log};

static char *path(const char *name)
{
    static char buf[8][256];
    static int i;
    i = (i + 1) % 8;
    snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, name);
    return buf[i];
}

static int sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    return system(cmd);
}

static void make_certs(void)
{
    FILE *f = fopen(path("ext.cnf"), "w");
    fprintf(f, "subjectAltName=DNS:api.example.test,DNS:www.allowed.test,DNS:a.allowed.test,"
               "DNS:allowed.test,DNS:plain.test\nbasicConstraints=CA:FALSE\n"
               "extendedKeyUsage=serverAuth\n");
    fclose(f);
    assert_int_equal(
        sh("cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
           "-keyout testca.key -out testca.crt -days 2 -subj /CN=TestCA "
           "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign "
           "2>/dev/null && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
           "-keyout srv.key -out srv.csr -subj /CN=api.example.test 2>/dev/null && "
           "openssl x509 -req -in srv.csr -CA testca.crt -CAkey testca.key -CAcreateserial "
           "-out srv.crt -days 2 -extfile ext.cnf 2>/dev/null",
           dir),
        0);
}

static const char *allow_default[] = {"plain.test", "*.allowed.test"};
static const struct egress_header cred_headers[] = {{"X-Api-Key", SECRET}};
static const struct egress_credential creds[] = {{"api.example.test", cred_headers, 1}};

static void set_default_policy(void)
{
    struct egress_policy p = {"agent", allow_default, 2, creds, 1};
    struct bh_err err;
    assert_int_equal(egress_set_policy(eg, "127.0.0.1", &p, &err), 0);
}

/* http2 and http3 serve one port on two addresses (the engine has one upstream HTTP port). A
 * port free on 127.0.0.2 may be taken on 127.0.0.3, e.g. by the connections another test
 * running beside this one (integration/test_listen) made from there, still in TIME_WAIT: try
 * ports until one is free on both. */
static int start_http_pair(void)
{
    for (int i = 0; i < 100; i++) {
        if (fake_start(&http2, "127.0.0.2", 0, NULL) < 0)
            return -1;
        if (fake_start(&http3, "127.0.0.3", http2.port, NULL) == 0)
            return 0;
        fake_stop(&http2);
    }
    return -1;
}

static int setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/egress-test-XXXXXX");
    assert_non_null(mkdtemp(dir));
    make_certs();
    FILE *f = fopen(path("hosts"), "w");
    fprintf(f, "127.0.0.2 api.example.test www.allowed.test a.allowed.test allowed.test\n"
               "127.0.0.3 plain.test # comment\n");
    fclose(f);
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    assert_int_equal(SSL_CTX_use_certificate_file(ctx, path("srv.crt"), SSL_FILETYPE_PEM), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, path("srv.key"), SSL_FILETYPE_PEM), 1);
    assert_int_equal(fake_start(&https, "127.0.0.2", 0, ctx), 0);
    assert_int_equal(start_http_pair(), 0);
    struct egress_config cfg = {.listen_ip = "127.0.0.1",
                                .ca_dir = path("ca"),
                                .trust_bundle = path("testca.crt"),
                                .hosts_file = path("hosts"),
                                .host = &host};
    struct bh_err err = {0};
    int rc = egress_start(&cfg, &eg, &err);
    if (rc < 0)
        fprintf(stderr, "egress_start: %s\n", err.msg);
    assert_int_equal(rc, 0);
    egress_ports(eg, &p_explicit, &p_http, &p_tls, &p_dns);
    egress_set_upstream_ports(eg, http2.port, https.port);
    set_default_policy();
    return 0;
}

static int teardown(void **state)
{
    egress_stop(eg);
    fake_stop(&https);
    fake_stop(&http2);
    fake_stop(&http3);
    SSL_CTX_free(https.ctx);
    /* no secret ever reaches the log */
    assert_null(memmem(logbuf, loglen, SECRET, strlen(SECRET)));
    assert_int_equal(sh("rm -rf %s", dir), 0);
    return 0;
}

/* ---- client helpers ---------------------------------------------------------------------- */

static int dial(const char *src, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, src, &a.sin_addr);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    a.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

struct cli {
    int fd;
    SSL *ssl;
    SSL_CTX *ctx;
};

static int cli_read(struct cli *c, char *p, size_t n)
{
    return c->ssl ? SSL_read(c->ssl, p, (int)n) : (int)recv(c->fd, p, n, 0);
}

static void cli_write(struct cli *c, const char *s)
{
    int n = c->ssl ? SSL_write(c->ssl, s, (int)strlen(s)) : (int)send(c->fd, s, strlen(s), 0);
    assert_int_equal(n, (int)strlen(s));
}

/* Reads one response (Content-Length or chunked) into out; returns the status. */
static int cli_response(struct cli *c, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    for (;;) {
        char *end = strstr(out, "\r\n\r\n");
        if (end) {
            char *cl = strcasestr(out, "content-length:");
            size_t need = (size_t)(end - out) + 4 + (cl ? strtoul(cl + 15, NULL, 10) : 0);
            if (cl && len >= need)
                break;
            if (!cl && strstr(end, "\r\n0\r\n\r\n"))
                break;
        }
        if (len + 1 >= cap)
            break;
        int r = cli_read(c, out + len, cap - len - 1);
        if (r <= 0)
            break;
        len += (size_t)r;
        out[len] = '\0';
    }
    int status = 0;
    sscanf(out, "HTTP/1.1 %d", &status);
    return status;
}

static int tls_open(struct cli *c, int fd, const char *sni, const char *ca)
{
    c->fd = fd;
    c->ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_load_verify_locations(c->ctx, ca, NULL);
    c->ssl = SSL_new(c->ctx);
    if (sni) {
        SSL_set_tlsext_host_name(c->ssl, sni);
        SSL_set1_host(c->ssl, sni);
    }
    SSL_set_fd(c->ssl, fd);
    int ok = SSL_connect(c->ssl) == 1 && SSL_get_verify_result(c->ssl) == X509_V_OK;
    ERR_clear_error();
    return ok ? 0 : -1;
}

static void cli_close(struct cli *c)
{
    if (c->ssl)
        SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
    close(c->fd);
    memset(c, 0, sizeof(*c));
}

/* One request on a fresh plain connection from src to port. */
static int http_once(const char *src, int port, const char *req, char *out, size_t cap)
{
    struct cli c = {.fd = dial(src, port)};
    cli_write(&c, req);
    int status = cli_response(&c, out, cap);
    cli_close(&c);
    return status;
}

static int get_host(const char *hostname, char *out, size_t cap)
{
    char req[512];
    snprintf(req, sizeof(req), "GET /x HTTP/1.1\r\nHost: %s\r\nUser-Agent: t\r\n\r\n", hostname);
    return http_once("127.0.0.1", p_http, req, out, cap);
}

/* ---- transparent HTTP -------------------------------------------------------------------- */

static void test_http_allowlisted(void **state)
{
    char out[4096], head[8192];
    assert_int_equal(get_host("plain.test", out, sizeof(out)), 200);
    assert_non_null(strstr(out, "ok plain.test"));
    fake_snapshot(&http3, NULL, head, sizeof(head));
    assert_non_null(strstr(head, "Host: plain.test"));
    assert_int_equal(get_host("PLAIN.test:80", out, sizeof(out)), 200);
}

static void test_http_refused(void **state)
{
    char out[4096];
    assert_int_equal(get_host("evil.test", out, sizeof(out)), 403);
    assert_non_null(strstr(out, "egress to evil.test is not on this workload's allowlist"));
    const char *literals[] = {"127.0.0.3", "2130706435",   "0x7f000003", "0x7f.3",
                              "[::1]",     "127.0.0.3:80", "::1"};
    for (size_t i = 0; i < sizeof(literals) / sizeof(literals[0]); i++)
        assert_int_equal(get_host(literals[i], out, sizeof(out)), 403);
    assert_int_equal(get_host("plain.test:8080", out, sizeof(out)), 403);
    assert_int_equal(http_once("127.0.0.1", p_http, "GET / HTTP/1.1\r\n\r\n", out, sizeof(out)),
                     403);
    assert_int_equal(http_once("127.0.0.1", p_http, "garbage\r\n\r\n", out, sizeof(out)), 400);
}

static void test_http_wildcard(void **state)
{
    char out[4096];
    assert_int_equal(get_host("a.allowed.test", out, sizeof(out)), 200);
    assert_non_null(strstr(out, "ok a.allowed.test"));
    assert_int_equal(get_host("allowed.test", out, sizeof(out)), 403);
    assert_int_equal(get_host("xallowed.test", out, sizeof(out)), 403);
}

static void test_http_keepalive_each_request_checked(void **state)
{
    char out[4096];
    struct cli c = {.fd = dial("127.0.0.1", p_http)};
    cli_write(&c, "GET / HTTP/1.1\r\nHost: plain.test\r\n\r\n");
    assert_int_equal(cli_response(&c, out, sizeof(out)), 200);
    cli_write(&c, "GET /chunked HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n");
    assert_int_equal(cli_response(&c, out, sizeof(out)), 200);
    assert_non_null(strstr(out, "a.allowed.test"));
    cli_write(&c, "POST / HTTP/1.1\r\nHost: plain.test\r\nContent-Length: 5\r\n\r\nhello");
    assert_int_equal(cli_response(&c, out, sizeof(out)), 200);
    cli_write(&c, "POST / HTTP/1.1\r\nHost: plain.test\r\nContent-Length: 2\r\n"
                  "Expect: 100-continue\r\n\r\n");
    assert_int_equal(cli_response(&c, out, 26), 100); /* just the interim response */
    cli_write(&c, "hi");
    assert_int_equal(cli_response(&c, out, sizeof(out)), 200);
    cli_write(&c, "POST / HTTP/1.1\r\nHost: plain.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "2\r\nhi\r\n0\r\n\r\n");
    assert_int_equal(cli_response(&c, out, sizeof(out)), 200);
    cli_write(&c, "POST / HTTP/1.1\r\nHost: plain.test\r\nContent-Length: 1\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n");
    assert_int_equal(cli_response(&c, out, sizeof(out)), 400); /* smuggling shape */
    cli_close(&c);
    c.fd = dial("127.0.0.1", p_http);
    cli_write(&c, "GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n");
    assert_int_equal(cli_response(&c, out, sizeof(out)), 403);
    cli_close(&c);
}

static void test_unknown_source(void **state)
{
    char out[4096];
    assert_int_equal(http_once("127.0.0.5", p_http, "GET / HTTP/1.1\r\nHost: plain.test\r\n\r\n",
                               out, sizeof(out)),
                     403);
    assert_non_null(strstr(out, "no egress policy"));
}

/* One counter of egress_stats: {"<workload>":{"requests":n,"bytes":n,"denials":n},...}. */
static unsigned long long stat_of(const char *workload, const char *key)
{
    char json[4096], want[96];
    assert_int_equal(egress_stats(eg, json, sizeof(json)), 0);
    snprintf(want, sizeof(want), "\"%s\":{", workload);
    const char *w = strstr(json, want);
    if (!w)
        return 0;
    snprintf(want, sizeof(want), "\"%s\":", key);
    const char *k = strstr(w, want);
    assert_non_null(k);
    return strtoull(k + strlen(want), NULL, 10);
}

static void test_stats_per_workload(void **state)
{
    char out[4096];
    unsigned long long req = stat_of("agent", "requests"), den = stat_of("agent", "denials");
    unsigned long long bytes = stat_of("agent", "bytes"), unk = stat_of("_unknown", "denials");
    assert_int_equal(get_host("plain.test", out, sizeof(out)), 200);
    assert_int_equal(get_host("evil.test", out, sizeof(out)), 403);
    assert_int_equal(http_once("127.0.0.5", p_http, "GET / HTTP/1.1\r\nHost: plain.test\r\n\r\n",
                               out, sizeof(out)),
                     403);
    assert_int_equal(stat_of("agent", "requests") - req, 1);
    assert_int_equal(stat_of("agent", "denials") - den, 1);
    assert_int_equal(stat_of("_unknown", "denials") - unk, 1);
    /* A connection's bytes are added once the proxy is done with it (after the client closed). */
    for (int i = 0; i < 500 && stat_of("agent", "bytes") - bytes < 100; i++)
        usleep(10000);
    assert_true(stat_of("agent", "bytes") - bytes >= 100);
}

/* ---- transparent TLS --------------------------------------------------------------------- */

static void test_tls_passthrough(void **state)
{
    char out[4096];
    struct cli c;
    /* the client verifies the real server's certificate: nothing was intercepted */
    assert_int_equal(tls_open(&c, dial("127.0.0.1", p_tls), "www.allowed.test", path("testca.crt")),
                     0);
    cli_write(&c, "GET / HTTP/1.1\r\nHost: www.allowed.test\r\n\r\n");
    assert_int_equal(cli_response(&c, out, sizeof(out)), 200);
    assert_non_null(strstr(out, "ok www.allowed.test"));
    cli_close(&c);
}

static void test_tls_refused(void **state)
{
    struct cli c;
    int before, after;
    fake_snapshot(&https, &before, NULL, 0);
    assert_int_equal(tls_open(&c, dial("127.0.0.1", p_tls), "evil.test", path("testca.crt")), -1);
    cli_close(&c);
    assert_int_equal(tls_open(&c, dial("127.0.0.1", p_tls), NULL, path("testca.crt")), -1);
    cli_close(&c);
    assert_int_equal(tls_open(&c, dial("127.0.0.1", p_tls), "allowed.test", path("testca.crt")),
                     -1);
    cli_close(&c);
    /* the refusal is a handshake_failure alert */
    int fd = dial("127.0.0.1", p_tls);
    const unsigned char junk[] = {0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00};
    assert_int_equal(send(fd, junk, sizeof(junk), 0), (ssize_t)sizeof(junk));
    unsigned char alert[7] = {0};
    assert_int_equal(recv(fd, alert, sizeof(alert), MSG_WAITALL), 7);
    assert_int_equal(alert[0], 0x15);
    assert_int_equal(alert[6], 0x28);
    close(fd);
    fake_snapshot(&https, &after, NULL, 0);
    assert_int_equal(before, after);
}

static void assert_injected(const char *seen_by_client)
{
    char head[8192];
    fake_snapshot(&https, NULL, head, sizeof(head));
    assert_non_null(strstr(head, "X-Api-Key: " SECRET "\r\n"));
    assert_null(strstr(head, "forged"));
    assert_null(strstr(seen_by_client, SECRET));
}

static void test_tls_intercept_injects(void **state)
{
    struct bh_err err;
    const char *ca = egress_ca_cert(eg, "agent", &err);
    assert_non_null(ca);
    struct stat st;
    assert_int_equal(stat(path("ca/agent.key"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_null(egress_ca_cert(eg, "../etc", &err));
    char out[8192];
    struct cli c;
    assert_int_equal(tls_open(&c, dial("127.0.0.1", p_tls), "api.example.test", ca), 0);
    X509 *leaf = SSL_get1_peer_certificate(c.ssl);
    assert_int_equal(X509_check_host(leaf, "api.example.test", 0, 0, NULL), 1);
    X509_free(leaf);
    for (int i = 0; i < 3; i++) { /* keep-alive through the interception */
        cli_write(&c, i == 1 ? "GET /chunked HTTP/1.1\r\nHost: api.example.test\r\n\r\n"
                             : "GET /v1 HTTP/1.1\r\nHost: api.example.test\r\n"
                               "x-api-key: forged\r\n\r\n");
        assert_int_equal(cli_response(&c, out, sizeof(out)), 200);
        assert_non_null(strstr(out, "api.example.test"));
        assert_injected(out);
    }
    /* a Host that differs from the SNI is refused */
    cli_write(&c, "GET / HTTP/1.1\r\nHost: plain.test\r\n\r\n");
    assert_int_equal(cli_response(&c, out, sizeof(out)), 403);
    cli_close(&c);
    /* the same CA is reused, not recreated */
    X509 *a = NULL;
    FILE *f = fopen(ca, "r");
    a = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_int_equal(X509_check_ca(a), 1);
    X509_free(a);
    assert_string_equal(egress_ca_cert(eg, "agent", &err), ca);
}

static void test_http_to_credentials_domain_goes_tls(void **state)
{
    char out[4096];
    int before, after;
    fake_snapshot(&https, &before, NULL, 0);
    assert_int_equal(get_host("api.example.test", out, sizeof(out)), 200);
    fake_snapshot(&https, &after, NULL, 0);
    assert_int_equal(after, before + 1);
    assert_injected(out);
}

/* ---- explicit proxy ---------------------------------------------------------------------- */

static void test_explicit_get(void **state)
{
    char out[4096];
    assert_int_equal(http_once("127.0.0.1", p_explicit,
                               "GET http://plain.test/a HTTP/1.1\r\nHost: evil.test\r\n\r\n", out,
                               sizeof(out)),
                     200);
    assert_non_null(strstr(out, "ok plain.test"));
    assert_int_equal(http_once("127.0.0.1", p_explicit, "GET http://evil.test/ HTTP/1.1\r\n\r\n",
                               out, sizeof(out)),
                     403);
    assert_non_null(strstr(out, "evil.test"));
    assert_int_equal(http_once("127.0.0.1", p_explicit, "GET http://127.0.0.3/ HTTP/1.1\r\n\r\n",
                               out, sizeof(out)),
                     403);
    assert_int_equal(
        http_once("127.0.0.1", p_explicit, "GET http://[::1]/ HTTP/1.1\r\n\r\n", out, sizeof(out)),
        403);
    assert_int_equal(http_once("127.0.0.1", p_explicit,
                               "GET http://api.example.test/ HTTP/1.1\r\n\r\n", out, sizeof(out)),
                     200);
    assert_injected(out);
}

static void test_explicit_connect(void **state)
{
    char out[4096];
    struct cli c = {.fd = dial("127.0.0.1", p_explicit)};
    cli_write(&c, "CONNECT www.allowed.test:443 HTTP/1.1\r\nHost: www.allowed.test:443\r\n\r\n");
    int n = cli_read(&c, out, sizeof(out) - 1);
    assert_true(n > 0);
    out[n] = '\0';
    assert_non_null(strstr(out, "200"));
    struct cli t;
    assert_int_equal(tls_open(&t, c.fd, "www.allowed.test", path("testca.crt")), 0);
    cli_write(&t, "GET / HTTP/1.1\r\nHost: www.allowed.test\r\n\r\n");
    assert_int_equal(cli_response(&t, out, sizeof(out)), 200);
    SSL_free(t.ssl);
    SSL_CTX_free(t.ctx);
    cli_close(&c);
    const char *bad[] = {
        "CONNECT evil.test:443 HTTP/1.1\r\n\r\n", "CONNECT 127.0.0.2:443 HTTP/1.1\r\n\r\n",
        "CONNECT [::1]:443 HTTP/1.1\r\n\r\n", "CONNECT www.allowed.test:22 HTTP/1.1\r\n\r\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(http_once("127.0.0.1", p_explicit, bad[i], out, sizeof(out)), 403);
    /* intercepted through CONNECT too */
    struct bh_err err;
    c.fd = dial("127.0.0.1", p_explicit);
    cli_write(&c, "CONNECT api.example.test:443 HTTP/1.1\r\n\r\n");
    assert_true(cli_read(&c, out, sizeof(out) - 1) > 0);
    assert_int_equal(tls_open(&t, c.fd, "api.example.test", egress_ca_cert(eg, "agent", &err)), 0);
    cli_write(&t, "GET / HTTP/1.1\r\nHost: api.example.test\r\n\r\n");
    assert_int_equal(cli_response(&t, out, sizeof(out)), 200);
    assert_injected(out);
    SSL_free(t.ssl);
    SSL_CTX_free(t.ctx);
    cli_close(&c);
}

/* ---- DNS --------------------------------------------------------------------------------- */

static size_t dns_query(unsigned char *q, const char *name, int type)
{
    size_t n = 12;
    memset(q, 0, 12);
    q[0] = 0x12;
    q[1] = 0x34;
    q[2] = 0x01; /* RD */
    q[5] = 1;
    for (const char *p = name; *p;) {
        const char *dot = strchr(p, '.');
        size_t l = dot ? (size_t)(dot - p) : strlen(p);
        q[n++] = (unsigned char)l;
        memcpy(q + n, p, l);
        n += l;
        p += l + (dot ? 1 : 0);
    }
    q[n++] = 0;
    q[n++] = 0;
    q[n++] = (unsigned char)type;
    q[n++] = 0;
    q[n++] = 1;
    return n;
}

/* Sends q over UDP from src; returns the reply length (0 = none within 1 s). */
static int dns_udp(const char *src, const unsigned char *q, size_t n, unsigned char *r)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, src, &a.sin_addr);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    a.sin_port = htons((uint16_t)p_dns);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    struct timeval tv = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    sendto(fd, q, n, 0, (struct sockaddr *)&a, sizeof(a));
    ssize_t got = recv(fd, r, 512, 0);
    close(fd);
    return got < 0 ? 0 : (int)got;
}

static void test_dns(void **state)
{
    unsigned char q[512], r[512];
    size_t n = dns_query(q, "plain.test", 1);
    int got = dns_udp("127.0.0.1", q, n, r);
    assert_int_equal(got, (int)n + 16);
    assert_int_equal(r[3] & 0xf, 0);
    assert_int_equal(r[7], 1);
    assert_memory_equal(r + got - 4, "\x7f\x00\x00\x03", 4);
    n = dns_query(q, "A.Allowed.Test", 1);
    got = dns_udp("127.0.0.1", q, n, r);
    assert_memory_equal(r + got - 4, "\x7f\x00\x00\x02", 4);
    n = dns_query(q, "allowed.test", 1);
    assert_true(dns_udp("127.0.0.1", q, n, r) > 0);
    assert_int_equal(r[3] & 0xf, 3);
    n = dns_query(q, "evil.test", 1);
    assert_true(dns_udp("127.0.0.1", q, n, r) > 0);
    assert_int_equal(r[3] & 0xf, 3);
    n = dns_query(q, "c2VjcmV0.evil.test", 16); /* TXT exfiltration attempt */
    assert_true(dns_udp("127.0.0.1", q, n, r) > 0);
    assert_int_equal(r[3] & 0xf, 3);
    n = dns_query(q, "plain.test", 16); /* TXT for an allowed name: empty NOERROR */
    assert_int_equal(dns_udp("127.0.0.1", q, n, r), (int)n);
    assert_int_equal(r[3] & 0xf, 0);
    n = dns_query(q, "plain.test", 1);
    assert_true(dns_udp("127.0.0.5", q, n, r) > 0);
    assert_int_equal(r[3] & 0xf, 5);
    /* malformed: truncated, a compression pointer, two questions, garbage */
    assert_int_equal(dns_udp("127.0.0.1", q, n - 3, r), 12);
    assert_int_equal(r[3] & 0xf, 1);
    unsigned char ptr[] = {1, 2, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1};
    assert_int_equal(dns_udp("127.0.0.1", ptr, sizeof(ptr), r), 12);
    assert_int_equal(r[3] & 0xf, 1);
    q[5] = 2;
    assert_int_equal(dns_udp("127.0.0.1", q, n, r), 12);
    q[5] = 1;
    srand(7);
    for (int i = 0; i < 2000; i++) {
        unsigned char junk[64];
        size_t jl = (size_t)(rand() % 64);
        for (size_t k = 0; k < jl; k++)
            junk[k] = (unsigned char)rand();
        if (jl > 2)
            junk[2] &= 0x7f; /* a query, so a reply comes and the loop stays quick */
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p_dns)};
        inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
        sendto(fd, junk, jl, 0, (struct sockaddr *)&a, sizeof(a));
        close(fd);
    }
    int alive = 0; /* the flood may overflow the socket buffer: retry */
    for (int i = 0; i < 5 && !alive; i++)
        alive = dns_udp("127.0.0.1", q, n, r) == (int)n + 16;
    assert_true(alive);
    /* TCP */
    int fd = dial("127.0.0.1", p_dns);
    unsigned char framed[514] = {0, (unsigned char)n};
    memcpy(framed + 2, q, n);
    assert_int_equal(send(fd, framed, n + 2, 0), (ssize_t)n + 2);
    unsigned char lb[2];
    assert_int_equal(recv(fd, lb, 2, MSG_WAITALL), 2);
    assert_int_equal(lb[1], n + 16);
    assert_int_equal(recv(fd, r, n + 16, MSG_WAITALL), (ssize_t)n + 16);
    assert_memory_equal(r + n + 12, "\x7f\x00\x00\x03", 4);
    close(fd);
}

/* ---- parsers under random input ---------------------------------------------------------- */

/* Plugin-internal parsers, linked in from the engine. */
int eg_sni_parse(const unsigned char *buf, size_t len, char *out, size_t cap);
size_t eg_dns_answer(struct egress *eg, const char *src_ip, const unsigned char *q, size_t qlen,
                     unsigned char *out, size_t cap);

static size_t client_hello(unsigned char *out, size_t cap, const char *sni)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = SSL_new(ctx);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl, rb, wb);
    SSL_set_tlsext_host_name(ssl, sni);
    SSL_set_connect_state(ssl);
    SSL_do_handshake(ssl);
    int n = BIO_read(wb, out, (int)cap);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return n > 0 ? (size_t)n : 0;
}

static void test_parsers_fuzz(void **state)
{
    unsigned char hello[4096], mut[4096], r[4096];
    char sni[256];
    size_t n = client_hello(hello, sizeof(hello), "API.Example.test");
    assert_true(n > 50);
    assert_int_equal(eg_sni_parse(hello, n, sni, sizeof(sni)), 1);
    assert_string_equal(sni, "api.example.test");
    for (size_t cut = 0; cut < n; cut++) /* every truncation is refused */
        assert_int_not_equal(eg_sni_parse(hello, cut, sni, sizeof(sni)), 1);
    srand(11);
    for (int i = 0; i < 50000; i++) {
        memcpy(mut, hello, n);
        for (int k = 0; k < 1 + rand() % 4; k++)
            mut[rand() % n] = (unsigned char)rand();
        eg_sni_parse(mut, n, sni, sizeof(sni));
        size_t ql = (size_t)(rand() % 300);
        for (size_t k = 0; k < ql; k++)
            mut[k] = (unsigned char)rand();
        if (ql > 5) { /* mostly well-formed headers, so the question parser gets exercised */
            mut[2] &= 0x07;
            mut[4] = 0;
            mut[5] = 1;
            memset(mut + 6, 0, 6);
        }
        eg_dns_answer(eg, "127.0.0.1", mut, ql, r, 512);
    }
}

/* ---- policy changes ---------------------------------------------------------------------- */

static void test_policy_runtime(void **state)
{
    char out[4096];
    struct bh_err err;
    const char *only[] = {"www.allowed.test"};
    struct egress_policy p = {"agent", only, 1, NULL, 0};
    struct cli c = {.fd = dial("127.0.0.1", p_http)};
    cli_write(&c, "GET / HTTP/1.1\r\nHost: plain.test\r\n\r\n");
    assert_int_equal(cli_response(&c, out, sizeof(out)), 200);
    assert_int_equal(egress_set_policy(eg, "127.0.0.1", &p, &err), 0);
    cli_write(&c, "GET / HTTP/1.1\r\nHost: plain.test\r\n\r\n"); /* same connection */
    assert_int_equal(cli_response(&c, out, sizeof(out)), 403);
    cli_close(&c);
    assert_int_equal(get_host("www.allowed.test", out, sizeof(out)), 200);
    egress_clear_policy(eg, "127.0.0.1");
    assert_int_equal(get_host("www.allowed.test", out, sizeof(out)), 403);
    const char *bad[] = {"*.*.x", "1.2.3.4", "a b"};
    for (int i = 0; i < 3; i++) {
        struct egress_policy b = {"agent", &bad[i], 1, NULL, 0};
        assert_int_equal(egress_set_policy(eg, "127.0.0.1", &b, &err), -1);
    }
    const struct egress_header crlf[] = {{"X-Key", "a\r\nEvil: 1"}};
    const struct egress_credential cc[] = {{"api.example.test", crlf, 1}};
    struct egress_policy b = {"agent", NULL, 0, cc, 1};
    assert_int_equal(egress_set_policy(eg, "127.0.0.1", &b, &err), -1);
    set_default_policy();
    assert_int_equal(get_host("plain.test", out, sizeof(out)), 200);
}

/* A policy for every source without its own (the Kubernetes sidecar's): the own policy
 * still wins, and removing the default refuses the others again. */
static void test_default_policy(void **state)
{
    char out[4096];
    struct bh_err err;
    const char *req = "GET / HTTP/1.1\r\nHost: plain.test\r\n\r\n";
    const char *only[] = {"plain.test"};
    struct egress_policy p = {"agent", only, 1, NULL, 0};
    assert_int_equal(egress_set_default_policy(eg, &p, &err), 0);
    assert_int_equal(http_once("127.0.0.5", p_http, req, out, sizeof(out)), 200);
    assert_int_equal(http_once("127.0.0.6", p_http,
                               "GET / HTTP/1.1\r\nHost: www.allowed.test\r\n\r\n", out,
                               sizeof(out)),
                     403);
    assert_int_equal(get_host("www.allowed.test", out, sizeof(out)), 200); /* 127.0.0.1's */
    const char *bad[] = {"1.2.3.4"};
    struct egress_policy b = {"agent", bad, 1, NULL, 0};
    assert_int_equal(egress_set_default_policy(eg, &b, &err), -1);
    assert_int_equal(http_once("127.0.0.5", p_http, req, out, sizeof(out)), 200); /* kept */
    assert_int_equal(egress_set_default_policy(eg, NULL, &err), 0);
    assert_int_equal(http_once("127.0.0.5", p_http, req, out, sizeof(out)), 403);
    assert_non_null(strstr(out, "no egress policy"));
}

/* A CA made elsewhere signs the leaves of its workload; nothing is created for it. */
static void test_ca_load(void **state)
{
    struct bh_err err = {0};
    assert_int_equal(egress_ca_load(eg, "loaded", path("testca.crt"), path("srv.key"), &err), -1);
    assert_int_equal(err.code, BH_EINVAL);
    assert_int_equal(egress_ca_load(eg, "loaded", path("none.crt"), path("testca.key"), &err), -1);
    assert_non_null(strstr(err.msg, "none.crt"));
    assert_int_equal(egress_ca_load(eg, "../x", path("testca.crt"), path("testca.key"), &err), -1);
    assert_int_equal(egress_ca_load(eg, "loaded", path("testca.crt"), path("testca.key"), &err), 0);
    assert_int_equal(egress_ca_load(eg, "loaded", path("testca.crt"), path("testca.key"), &err),
                     -1);
    assert_int_equal(err.code, BH_ECONFLICT);
    struct egress_policy p = {"loaded", NULL, 0, creds, 1};
    assert_int_equal(egress_set_policy(eg, "127.0.0.7", &p, &err), 0);
    struct cli c;
    assert_int_equal(tls_open(&c, dial("127.0.0.7", p_tls), "api.example.test", path("testca.crt")),
                     0);
    char out[8192];
    cli_write(&c, "GET /loaded HTTP/1.1\r\nHost: api.example.test\r\n\r\n");
    assert_int_equal(cli_response(&c, out, sizeof(out)), 200);
    assert_injected(out);
    cli_close(&c);
    egress_clear_policy(eg, "127.0.0.7");
    struct stat st;
    assert_int_equal(stat(path("ca/loaded.key"), &st), -1);
}

/* Without ca_dir no CA is ever created, and explicit_port -1 opens no explicit proxy. */
static void test_no_ca_dir(void **state)
{
    struct egress_config cfg = {.listen_ip = "127.0.0.1", .explicit_port = -1, .host = &host};
    struct egress *e2 = NULL;
    struct bh_err err = {0};
    assert_int_equal(egress_start(&cfg, &e2, &err), 0);
    int ex, h, t, d;
    egress_ports(e2, &ex, &h, &t, &d);
    assert_int_equal(ex, -1);
    assert_true(h > 0 && t > 0 && d > 0);
    assert_null(egress_ca_cert(e2, "agent", &err));
    egress_stop(e2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_allowlisted),
        cmocka_unit_test(test_http_refused),
        cmocka_unit_test(test_http_wildcard),
        cmocka_unit_test(test_http_keepalive_each_request_checked),
        cmocka_unit_test(test_unknown_source),
        cmocka_unit_test(test_stats_per_workload),
        cmocka_unit_test(test_tls_passthrough),
        cmocka_unit_test(test_tls_refused),
        cmocka_unit_test(test_tls_intercept_injects),
        cmocka_unit_test(test_http_to_credentials_domain_goes_tls),
        cmocka_unit_test(test_explicit_get),
        cmocka_unit_test(test_explicit_connect),
        cmocka_unit_test(test_dns),
        cmocka_unit_test(test_policy_runtime),
        cmocka_unit_test(test_parsers_fuzz),
        cmocka_unit_test(test_default_policy),
        cmocka_unit_test(test_ca_load),
        cmocka_unit_test(test_no_ca_dir),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
