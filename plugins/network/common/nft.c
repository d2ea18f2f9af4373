/* nftables through libnftables, in process: the same ruleset text `nft -f` read, applied as
 * one transaction, without a process per change (attach, detach and every host port used to
 * cost an `nft` run). One context per plugin instance, behind a mutex: attaches overlap
 * (BH_PLUGIN_THREADSAFE) and a context is not safe to share, while the kernel serialises
 * nftables transactions anyway, so a lock costs nothing a second context would win. */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <nftables/libnftables.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bridge.h"

struct bhn_nft {
    pthread_mutex_t lock;
    struct nft_ctx *ctx;
};

/* libnftables 1.0.6 opens its netfilter socket without SOCK_CLOEXEC, and the daemon spawns
 * runc, mkfs and tar expecting every fd of its own to close on exec: mark each netfilter
 * netlink socket of the process that lacks the flag (only libnftables makes them). Called
 * right after the context is made, at plugin init. */
static void bhn_nft_cloexec(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        int fd = atoi(de->d_name), domain = 0, proto = 0;
        socklen_t len = sizeof(int), plen = sizeof(int);
        int flags = fd > 2 ? fcntl(fd, F_GETFD) : -1;
        if (flags < 0 || (flags & FD_CLOEXEC) ||
            getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0 ||
            getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &plen) < 0)
            continue;
        if (domain == AF_NETLINK && proto == NETLINK_NETFILTER)
            fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
    }
    closedir(d);
}

/* nft_ctx_new points GMP's process-wide allocation functions at libnftables' own, and the
 * daemon has libgmp loaded for good (libcurl -> librtmp -> gnutls): a plugin unloaded after a
 * failed init took libnftables with it, and the daemon's next GMP call jumped into unmapped
 * code (SIGSEGV). Once loaded, libnftables stays. */
static void bhn_nft_pin(void)
{
    Dl_info info;
    if (dladdr((void *)nft_ctx_new, &info) && info.dli_fname)
        dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE); /* never closed */
}

/* libnftables 1.0 ends the process (exit) when nft_ctx_new cannot open its netlink socket
 * (no fd left, no nf_tables): the same socket opened first here makes that this plugin's
 * error instead, but for a failure in the moment between the two. */
static int bhn_nft_socket_check(struct bh_err *err)
{
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
    if (fd < 0)
        return bhn_host->err_set(bhn_handle, err, BH_EUNAVAIL, "nftables netlink socket: %s",
                                 strerror(errno));
    close(fd);
    return 0;
}

int bhn_nft_open(struct bhn_nft **out, struct bh_err *err)
{
    if (bhn_nft_socket_check(err) < 0)
        return -1;
    struct bhn_nft *nft = calloc(1, sizeof(*nft));
    if (!nft)
        return bhn_host->err_set(bhn_handle, err, BH_EIO, "out of memory");
    bhn_nft_pin();
    nft->ctx = nft_ctx_new(NFT_CTX_DEFAULT);
    /* Buffered: errors go into bh_err, and nothing reaches the daemon's stdout/stderr. */
    if (!nft->ctx || nft_ctx_buffer_output(nft->ctx) < 0 || nft_ctx_buffer_error(nft->ctx) < 0) {
        bhn_nft_close(nft);
        return bhn_host->err_set(bhn_handle, err, BH_EIO, "libnftables: cannot create a context");
    }
    bhn_nft_cloexec();
    pthread_mutex_init(&nft->lock, NULL);
    *out = nft;
    return 0;
}

void bhn_nft_close(struct bhn_nft *nft)
{
    if (!nft)
        return;
    if (nft->ctx) {
        nft_ctx_free(nft->ctx);
        pthread_mutex_destroy(&nft->lock);
    }
    free(nft);
}

/* The error as nft prints it ("Error: ...", the offending line, carets), trimmed, on one
 * line so it reads in a log. */
static int bhn_nft_error(const char *text, struct bh_err *err)
{
    char msg[400];
    snprintf(msg, sizeof(msg), "%s", text && text[0] ? text : "failed (no message)");
    size_t len = strlen(msg);
    while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
        msg[--len] = '\0';
    for (char *p = msg; *p; p++)
        if (*p == '\n')
            *p = ' ';
    return bhn_host->err_set(bhn_handle, err, BH_EIO, "nft: %s", msg);
}

int bhn_nft_run(struct bhn_nft *nft, const char *text, struct bh_err *err)
{
    pthread_mutex_lock(&nft->lock);
    int rc = nft_run_cmd_from_buffer(nft->ctx, text);
    /* Reading a buffer also empties it for the next run. */
    nft_ctx_get_output_buffer(nft->ctx);
    const char *msg = nft_ctx_get_error_buffer(nft->ctx);
    if (rc != 0)
        rc = bhn_nft_error(msg, err);
    pthread_mutex_unlock(&nft->lock);
    return rc;
}
