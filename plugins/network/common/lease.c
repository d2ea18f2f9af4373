#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bridge.h"

#define LEASE_TMP_PREFIX ".tmp."

void bhn_ip_text(uint32_t addr, char buf[16])
{
    struct in_addr in = {.s_addr = htonl(addr)};
    inet_ntop(AF_INET, &in, buf, 16);
}

static int lease_errno(struct bh_err *err, const char *what, const char *path)
{
    return bhn_host->err_set(bhn_handle, err, BH_EIO, "%s %s: %s", what, path, strerror(errno));
}

static int lease_fsync_dir(const char *dir, struct bh_err *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return lease_errno(err, "open", dir);
    int rc = fsync(fd);
    close(fd);
    return rc < 0 ? lease_errno(err, "fsync", dir) : 0;
}

/* 1 if the lease file at path names id. A file that vanished meanwhile names nobody. */
static int lease_names(const char *path, const char *id)
{
    char buf[128];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    return strcmp(buf, id) == 0;
}

int bhn_lease_lookup(const char *dir, const char *id, uint32_t *addr, struct bh_err *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return lease_errno(err, "open", dir);
    struct dirent *e;
    struct in_addr in;
    char path[PATH_MAX];
    int found = 0;
    while (!found && (e = readdir(d))) {
        if (inet_pton(AF_INET, e->d_name, &in) != 1)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        found = lease_names(path, id);
        if (found)
            *addr = ntohl(in.s_addr);
    }
    closedir(d);
    return found;
}

/* Writes id into a fresh temp file in dir; path receives its name. */
static int lease_write_tmp(const char *dir, const char *id, char path[PATH_MAX], struct bh_err *err)
{
    snprintf(path, PATH_MAX, "%s/" LEASE_TMP_PREFIX "XXXXXX", dir);
    int fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0)
        return lease_errno(err, "create", path);
    size_t len = strlen(id);
    int ok = write(fd, id, len) == (ssize_t)len && fsync(fd) == 0;
    if (!ok)
        lease_errno(err, "write", path);
    close(fd);
    if (!ok)
        unlink(path);
    return ok ? 0 : -1;
}

/* Links tmp at the first free address; 1 if one was free, 0 if the subnet is full. */
static int lease_link_free(const char *dir, const char *tmp, uint32_t net, int prefix,
                           uint32_t *addr, struct bh_err *err)
{
    uint32_t broadcast = net | (uint32_t)((1ull << (32 - prefix)) - 1);
    char path[PATH_MAX], ip[16];
    for (uint32_t a = net + 2; a < broadcast; a++) {
        bhn_ip_text(a, ip);
        snprintf(path, sizeof(path), "%s/%s", dir, ip);
        if (link(tmp, path) == 0) {
            *addr = a;
            return 1;
        }
        if (errno != EEXIST)
            return lease_errno(err, "link", path);
    }
    return 0;
}

int bhn_lease_acquire(const char *dir, uint32_t net, int prefix, const char *id, uint32_t *addr,
                      struct bh_err *err)
{
    int found = bhn_lease_lookup(dir, id, addr, err);
    if (found != 0)
        return found < 0 ? -1 : 0;
    char tmp[PATH_MAX];
    if (lease_write_tmp(dir, id, tmp, err) < 0)
        return -1;
    int linked = lease_link_free(dir, tmp, net, prefix, addr, err);
    unlink(tmp);
    if (linked < 0)
        return -1;
    if (linked == 0)
        return bhn_host->err_set(bhn_handle, err, BH_EUNAVAIL,
                                 "no free address left in the subnet for %s", id);
    return lease_fsync_dir(dir, err);
}

int bhn_lease_release(const char *dir, uint32_t addr, struct bh_err *err)
{
    char path[PATH_MAX], ip[16];
    bhn_ip_text(addr, ip);
    snprintf(path, sizeof(path), "%s/%s", dir, ip);
    if (unlink(path) < 0 && errno != ENOENT)
        return lease_errno(err, "remove", path);
    return lease_fsync_dir(dir, err);
}

int bhn_lease_clean(const char *dir, struct bh_err *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return lease_errno(err, "open", dir);
    struct dirent *e;
    char path[PATH_MAX];
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, LEASE_TMP_PREFIX, strlen(LEASE_TMP_PREFIX)) != 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    return 0;
}

int bhn_lease_each(const char *dir, bhn_lease_fn fn, void *ctx, struct bh_err *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return lease_errno(err, "open", dir);
    struct dirent *e;
    struct in_addr in;
    char path[PATH_MAX], id[128];
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        if (inet_pton(AF_INET, e->d_name, &in) != 1)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, id, sizeof(id) - 1);
        close(fd);
        if (n <= 0)
            continue;
        id[n] = '\0';
        rc = fn(ntohl(in.s_addr), id, ctx, err);
    }
    closedir(d);
    return rc;
}
