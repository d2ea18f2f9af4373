/* The forwarding resolver (dnsfwd.h): one thread, one poll loop over the listening socket,
 * a wake pipe and one connected socket per query in flight (so answers need no matching of
 * ids, and a forged answer from elsewhere is dropped by the kernel). */
#include "dnsfwd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bridge.h"

#define FWD_SLOTS 64
#define FWD_MSG_MAX 4096

struct fwd_slot {
    int fd; /* -1 when free */
    struct sockaddr_in client;
    long long deadline_ms;
};

struct bhn_dnsfwd {
    int lfd, wake[2];
    struct sockaddr_in upstream;
    struct fwd_slot slots[FWD_SLOTS];
    pthread_t thread;
};

static long long fwd_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fwd_slot_free(struct fwd_slot *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

/* A query from an instance: a fresh socket connected to the upstream carries it. When every
 * slot is busy the query is dropped, and the client's own retry comes back later. */
static void fwd_query(struct bhn_dnsfwd *f)
{
    unsigned char msg[FWD_MSG_MAX];
    struct sockaddr_in from;
    socklen_t fl = sizeof(from);
    ssize_t n = recvfrom(f->lfd, msg, sizeof(msg), 0, (struct sockaddr *)&from, &fl);
    if (n < 12 || from.sin_family != AF_INET)
        return;
    for (int i = 0; i < FWD_SLOTS; i++) {
        struct fwd_slot *s = &f->slots[i];
        if (s->fd >= 0)
            continue;
        s->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (s->fd < 0)
            return;
        if (connect(s->fd, (struct sockaddr *)&f->upstream, sizeof(f->upstream)) < 0 ||
            send(s->fd, msg, (size_t)n, 0) != n) {
            fwd_slot_free(s);
            return;
        }
        s->client = from;
        s->deadline_ms = fwd_now_ms() + BHN_DNSFWD_TIMEOUT_MS;
        return;
    }
}

static void fwd_answer(struct bhn_dnsfwd *f, struct fwd_slot *s)
{
    unsigned char msg[FWD_MSG_MAX];
    ssize_t n = recv(s->fd, msg, sizeof(msg), 0);
    if (n > 0)
        sendto(f->lfd, msg, (size_t)n, 0, (struct sockaddr *)&s->client, sizeof(s->client));
    fwd_slot_free(s);
}

static void *fwd_loop(void *arg)
{
    struct bhn_dnsfwd *f = arg;
    for (;;) {
        struct pollfd pfd[FWD_SLOTS + 2] = {{.fd = f->wake[0], .events = POLLIN},
                                            {.fd = f->lfd, .events = POLLIN}};
        for (int i = 0; i < FWD_SLOTS; i++)
            pfd[i + 2] = (struct pollfd){.fd = f->slots[i].fd, .events = POLLIN};
        if (poll(pfd, FWD_SLOTS + 2, 500) < 0 && errno != EINTR)
            return NULL;
        if (pfd[0].revents)
            return NULL;
        long long now = fwd_now_ms();
        for (int i = 0; i < FWD_SLOTS; i++) {
            struct fwd_slot *s = &f->slots[i];
            if (s->fd >= 0 && pfd[i + 2].revents)
                fwd_answer(f, s);
            else if (s->fd >= 0 && now > s->deadline_ms)
                fwd_slot_free(s);
        }
        if (pfd[1].revents & POLLIN)
            fwd_query(f);
    }
}

static int fwd_addr(const char *ip, struct sockaddr_in *out, struct bh_err *err)
{
    memset(out, 0, sizeof(*out));
    out->sin_family = AF_INET;
    out->sin_port = htons(53);
    if (inet_pton(AF_INET, ip, &out->sin_addr) != 1)
        return bhn_host->err_set(bhn_handle, err, BH_EINVAL,
                                 "dns forwarder: %s is not an IPv4 address", ip);
    return 0;
}

static int fwd_listen(struct bhn_dnsfwd *f, const char *listen_ip, struct bh_err *err)
{
    struct sockaddr_in a;
    if (fwd_addr(listen_ip, &a, err) < 0)
        return -1;
    f->lfd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (f->lfd < 0 || bind(f->lfd, (struct sockaddr *)&a, sizeof(a)) < 0)
        return bhn_host->err_set(bhn_handle, err, BH_EIO, "dns forwarder: bind %s:53: %s",
                                 listen_ip, strerror(errno));
    return 0;
}

static void fwd_close(struct bhn_dnsfwd *f)
{
    for (int i = 0; i < FWD_SLOTS; i++)
        fwd_slot_free(&f->slots[i]);
    int fds[] = {f->lfd, f->wake[0], f->wake[1]};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(f);
}

int bhn_dnsfwd_start(const char *listen_ip, const char *upstream_ip, struct bhn_dnsfwd **out,
                     struct bh_err *err)
{
    struct bhn_dnsfwd *f = calloc(1, sizeof(*f));
    if (!f)
        return bhn_host->err_set(bhn_handle, err, BH_EIO, "out of memory");
    f->lfd = f->wake[0] = f->wake[1] = -1;
    for (int i = 0; i < FWD_SLOTS; i++)
        f->slots[i].fd = -1;
    if (fwd_addr(upstream_ip, &f->upstream, err) < 0 || fwd_listen(f, listen_ip, err) < 0) {
        fwd_close(f);
        return -1;
    }
    if (pipe2(f->wake, O_CLOEXEC) < 0 || pthread_create(&f->thread, NULL, fwd_loop, f) != 0) {
        fwd_close(f);
        return bhn_host->err_set(bhn_handle, err, BH_EIO, "dns forwarder: cannot start its thread");
    }
    *out = f;
    return 0;
}

void bhn_dnsfwd_stop(struct bhn_dnsfwd *f)
{
    if (!f)
        return;
    if (write(f->wake[1], "x", 1) != 1)
        bhn_host->log(bhn_handle, BH_LOG_WARN, "dnsfwd: cannot wake the forwarder: %s",
                      strerror(errno));
    else
        pthread_join(f->thread, NULL);
    fwd_close(f);
}
