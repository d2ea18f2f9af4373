/* /etc/hostname, /etc/hosts and /etc/resolv.conf of an instance. */
#include "etc_files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs.h"
#include "mem.h"

const char *const bh_etc_files[BH_ETC_N_FILES] = {"hostname", "hosts", "resolv.conf"};

/* Docker's layout; without an address of its own (network `none`) the name maps to 127.0.1.1
 * as Debian does, so programs that resolve their own hostname still work. */
static char *etc_hosts_text(const struct bh_etc_params *p)
{
    return bh_xasprintf("127.0.0.1\tlocalhost\n"
                        "::1\tlocalhost ip6-localhost ip6-loopback\n"
                        "fe00::0\tip6-localnet\n"
                        "ff00::0\tip6-mcastprefix\n"
                        "ff02::1\tip6-allnodes\n"
                        "ff02::2\tip6-allrouters\n"
                        "%s\t%s\n",
                        p->address ? p->address : "127.0.1.1", p->hostname);
}

/* With no nameserver line glibc would try 127.0.0.1; nothing listens there, so the lookup is
 * refused at once, and timeout/attempts bound it anyway if a packet is lost. */
static char *etc_resolv_text(const char *nameservers)
{
    char *text = bh_xstrdup(nameservers[0] ? "# written by boilerhouse\n"
                                           : "# written by boilerhouse: no network, no resolver\n");
    bh_autofree char *copy = bh_xstrdup(nameservers);
    char *save = NULL;
    for (char *ns = strtok_r(copy, " ", &save); ns; ns = strtok_r(NULL, " ", &save)) {
        char *more = bh_xasprintf("%snameserver %s\n", text, ns);
        free(text);
        text = more;
    }
    char *done = bh_xasprintf("%soptions timeout:2 attempts:2\n", text);
    free(text);
    return done;
}

static int etc_write(const char *dir, const char *name, const char *text, struct bh_err *err)
{
    bh_autofree char *path = bh_xasprintf("%s/%s", dir, name);
    return bh_fs_write_replace(path, text, strlen(text), 0644, err);
}

int bh_etc_files_write(const char *dir, const struct bh_etc_params *p, struct bh_err *err)
{
    bh_autofree char *hostname = bh_xasprintf("%s\n", p->hostname);
    bh_autofree char *hosts = etc_hosts_text(p);
    if (etc_write(dir, "hostname", hostname, err) < 0 || etc_write(dir, "hosts", hosts, err) < 0)
        return -1;
    if (!p->nameservers)
        return 0;
    bh_autofree char *resolv = etc_resolv_text(p->nameservers);
    return etc_write(dir, "resolv.conf", resolv, err);
}

int bh_etc_hosts_update(const char *dir, const struct bh_etc_params *p, struct bh_err *err)
{
    bh_autofree char *path = bh_xasprintf("%s/hosts", dir);
    bh_autofree char *text = etc_hosts_text(p);
    int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return bh_err_errno(err, BH_EIO, "open %s", path);
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            close(fd);
            return bh_err_errno(err, BH_EIO, "write %s", path);
        }
        off += (size_t)n;
    }
    close(fd);
    return 0;
}

int bh_etc_mountpoints(const char *rootfs, size_t n, struct bh_err *err)
{
    for (size_t i = 0; i < n && i < BH_ETC_N_FILES; i++) {
        bh_autofree char *path = bh_xasprintf("/etc/%s", bh_etc_files[i]);
        int fd = bh_fs_open_in_root(rootfs, path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC);
        if (fd < 0 && errno != EEXIST)
            return bh_err_errno(err, BH_EIO, "create %s in %s", path, rootfs);
        if (fd >= 0 && (fchmod(fd, 0644) < 0 || close(fd) < 0))
            return bh_err_errno(err, BH_EIO, "chmod %s in %s", path, rootfs);
    }
    return 0;
}
