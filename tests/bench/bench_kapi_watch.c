/* The watch client of scripts/bench-kapi.py: N watches of one path over TLS, all read by one
 * thread with epoll, each event's arrival stamped with CLOCK_MONOTONIC (the clock Python's
 * time.monotonic reads, so the script compares it with its writes' times).
 *
 * Why not Python: 50 Python watcher processes on 2 CPUs measured mostly Python (wake-up, TLS
 * and readline in the interpreter, scheduled behind one another), more so for the larger Table
 * lines. Here a watcher's share is an SSL_read and a scan; the stamp is taken when the bytes are
 * in hand, so a watcher read after others in one wake-up carries their (microseconds of) work.
 *
 *   bench_kapi_watch PORT CAFILE PATH ACCEPT WATCHERS EVENTS
 *
 * Prints "ready" once every watch has its 200 and headers, then, when each watch has EVENTS
 * events (a line with the label "seq") or has ended, one "SEQ SECONDS" line per arrival. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

struct arrival {
    long seq;
    double t;
};

/* One watch: its TLS stream, the chunked body being undone, the line being assembled. */
struct watch {
    int fd;
    SSL *ssl;
    long chunk_left; /* body bytes left in this chunk; -1 reading a size line */
    int skip_crlf;   /* the CRLF after a chunk's data */
    char size_line[32];
    size_t size_len;
    char *line;
    size_t line_len, line_cap;
    int seen, ended;
};

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_kapi_watch: %s: %s\n", what, strerror(errno));
    ERR_print_errors_fp(stderr);
    exit(1);
}

static struct arrival *arrivals;
static size_t n_arrivals, cap_arrivals;

/* A complete event line: its "seq" label, if it has one, is an arrival. */
static void watch_line(struct watch *w, double t)
{
    static const char key[] = "\"seq\":\"";
    w->line[w->line_len] = '\0';
    const char *p = strstr(w->line, key);
    w->line_len = 0;
    if (!p)
        return;
    if (n_arrivals == cap_arrivals) {
        cap_arrivals = cap_arrivals ? cap_arrivals * 2 : 65536;
        arrivals = realloc(arrivals, cap_arrivals * sizeof(*arrivals));
        if (!arrivals)
            die("realloc");
    }
    arrivals[n_arrivals++] = (struct arrival){strtol(p + sizeof(key) - 1, NULL, 10), t};
    w->seen++;
}

static void watch_body_byte(struct watch *w, char c, double t)
{
    if (c == '\n') {
        watch_line(w, t);
        return;
    }
    if (w->line_len + 2 > w->line_cap) {
        w->line_cap = w->line_cap ? w->line_cap * 2 : 8192;
        w->line = realloc(w->line, w->line_cap);
        if (!w->line)
            die("realloc");
    }
    w->line[w->line_len++] = c;
}

/* Undoes the chunked transfer encoding, byte by byte (the bytes are few). */
static void watch_feed(struct watch *w, const char *buf, size_t n, double t)
{
    for (size_t i = 0; i < n; i++) {
        char c = buf[i];
        if (w->skip_crlf) {
            w->skip_crlf -= c == '\n';
        } else if (w->chunk_left < 0) {
            if (c != '\n') {
                if (w->size_len + 1 < sizeof(w->size_line))
                    w->size_line[w->size_len++] = c;
                continue;
            }
            w->size_line[w->size_len] = '\0';
            w->chunk_left = strtol(w->size_line, NULL, 16);
            w->size_len = 0;
            if (w->chunk_left == 0)
                w->ended = 1;
        } else {
            watch_body_byte(w, c, t);
            if (--w->chunk_left == 0) {
                w->chunk_left = -1;
                w->skip_crlf = 1;
            }
        }
    }
}

static SSL *watch_connect(SSL_CTX *ctx, int port, int *fd_out)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
        die("connect");
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, "127.0.0.1");
    if (SSL_connect(ssl) != 1)
        die("TLS handshake");
    *fd_out = fd;
    return ssl;
}

/* Sends the request and reads up to the end of the headers (blocking); exits unless 200. */
static void watch_start(struct watch *w, const char *path, const char *accept)
{
    char req[2048], head[8192];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: %s\r\n"
                     "User-Agent: bench_kapi_watch\r\n\r\n",
                     path, accept);
    if (SSL_write(w->ssl, req, n) != n)
        die("request");
    size_t len = 0;
    char *end = NULL;
    while (!end) {
        int r = SSL_read(w->ssl, head + len, 1); /* byte by byte: the body stays for later */
        if (r <= 0 || ++len == sizeof(head))
            die("response headers");
        head[len] = '\0';
        end = strstr(head, "\r\n\r\n");
    }
    if (strncmp(head, "HTTP/1.1 200", 12) != 0) {
        fprintf(stderr, "bench_kapi_watch: %.200s\n", head);
        exit(1);
    }
    w->chunk_left = -1;
}

/* Reads what w has; 1 when it is done (its events all in, or its stream over). */
static int watch_read(struct watch *w, int events)
{
    char buf[16384];
    for (;;) {
        int r = SSL_read(w->ssl, buf, sizeof(buf));
        if (r > 0) {
            watch_feed(w, buf, (size_t)r, mono_s());
            continue;
        }
        int e = SSL_get_error(w->ssl, r);
        if (e == SSL_ERROR_WANT_READ)
            return w->seen >= events || w->ended;
        return 1; /* closed or failed: what came is what there is */
    }
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: bench_kapi_watch PORT CAFILE PATH ACCEPT WATCHERS EVENTS\n");
        return 2;
    }
    int port = atoi(argv[1]), count = atoi(argv[5]), events = atoi(argv[6]);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || SSL_CTX_load_verify_locations(ctx, argv[2], NULL) != 1)
        die("CA file");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    struct watch *ws = calloc((size_t)count, sizeof(*ws));
    int ep = epoll_create1(0);
    for (int i = 0; i < count; i++) {
        ws[i].ssl = watch_connect(ctx, port, &ws[i].fd);
        watch_start(&ws[i], argv[3], argv[4]);
    }
    for (int i = 0; i < count; i++) {
        fcntl(ws[i].fd, F_SETFL, fcntl(ws[i].fd, F_GETFL) | O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &ws[i]};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, ws[i].fd, &ev) < 0)
            die("epoll_ctl");
    }
    printf("ready\n");
    fflush(stdout);
    /* Bytes may already sit in a stream's TLS buffer: read each once before waiting. */
    int left = count;
    for (int i = 0; i < count; i++)
        if (watch_read(&ws[i], events)) {
            epoll_ctl(ep, EPOLL_CTL_DEL, ws[i].fd, NULL);
            left--;
        }
    while (left > 0) {
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, 120000);
        if (n == 0)
            break; /* two minutes of nothing: report what came */
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        for (int i = 0; i < n; i++) {
            struct watch *w = evs[i].data.ptr;
            if (watch_read(w, events)) {
                epoll_ctl(ep, EPOLL_CTL_DEL, w->fd, NULL);
                left--;
            }
        }
    }
    for (size_t i = 0; i < n_arrivals; i++)
        printf("%ld %.9f\n", arrivals[i].seq, arrivals[i].t);
    return 0;
}
