/* A tiny HTTPS client for tests, linked statically (gcc -static ... -lssl -lcrypto) and copied
 * into a test image, because Debian's busybox wget has no TLS. No name resolution (a static
 * glibc cannot load NSS): the caller passes the address to dial.
 *
 *   tlsget [-x] NAME IP PATH
 *
 * Connects to IP:443 (with -x: to the proxy in $HTTPS_PROXY, http://a.b.c.d:port, and asks it
 * to CONNECT NAME:443), does TLS with SNI NAME, verifies the chain against $SSL_CERT_FILE
 * (default /etc/ssl/certs/ca-certificates.crt) and the certificate against NAME, sends
 * GET PATH and prints the response. Exit 0 on a response, 2 if TLS failed, 3 if the
 * connection (or the CONNECT) failed, 1 on usage errors. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static int dial(const char *ip, int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1)
        return -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = {.tv_sec = 3};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* CONNECT name:443 through the proxy in $HTTPS_PROXY; the socket on success. */
static int dial_proxy(const char *name)
{
    const char *p = getenv("HTTPS_PROXY");
    char ip[64];
    int port;
    if (!p || sscanf(p, "http://%63[0-9.]:%d", ip, &port) != 2)
        return -1;
    int fd = dial(ip, port);
    if (fd < 0)
        return -1;
    char buf[4096];
    int n =
        snprintf(buf, sizeof(buf), "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", name, name);
    if (write(fd, buf, (size_t)n) != n)
        return close(fd), -1;
    size_t got = 0;
    buf[0] = '\0';
    while (got < sizeof(buf) - 1 && !strstr(buf, "\r\n\r\n")) {
        if (read(fd, buf + got, 1) != 1)
            return close(fd), -1;
        buf[++got] = '\0';
    }
    if (strncmp(buf, "HTTP/1.1 200", 12) != 0 && strncmp(buf, "HTTP/1.0 200", 12) != 0) {
        fprintf(stderr, "proxy said: %.80s\n", buf);
        return close(fd), -1;
    }
    return fd;
}

static int https_get(int fd, const char *name, const char *path)
{
    const char *ca = getenv("SSL_CERT_FILE");
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_load_verify_locations(ctx, ca ? ca : "/etc/ssl/certs/ca-certificates.crt", NULL) !=
        1)
        return fprintf(stderr, "cannot load the CA bundle\n"), 2;
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, name);
    SSL_set1_host(ssl, name);
    if (SSL_connect(ssl) != 1) {
        ERR_print_errors_fp(stderr);
        return 2;
    }
    char req[2048];
    int n =
        snprintf(req, sizeof(req),
                 "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: tlsget\r\nConnection: close\r\n\r\n",
                 path, name);
    if (SSL_write(ssl, req, n) != n)
        return 2;
    char buf[4096];
    int r, any = 0;
    while ((r = SSL_read(ssl, buf, sizeof(buf))) > 0) {
        fwrite(buf, 1, (size_t)r, stdout);
        any = 1;
    }
    return any ? 0 : 2;
}

int main(int argc, char **argv)
{
    int use_proxy = argc > 1 && strcmp(argv[1], "-x") == 0;
    if (argc != 4 + use_proxy) {
        fprintf(stderr, "usage: tlsget [-x] NAME IP PATH\n");
        return 1;
    }
    const char *name = argv[1 + use_proxy], *ip = argv[2 + use_proxy], *path = argv[3 + use_proxy];
    int fd = use_proxy ? dial_proxy(name) : dial(ip, 443);
    if (fd < 0) {
        fprintf(stderr, "cannot connect\n");
        return 3;
    }
    return https_get(fd, name, path);
}
