/* Instance disks: sparse ext4 images on loop devices (see disk.h). */
#include "disk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "fs.h"
#include "log.h"
#include "mem.h"
#include "proc.h"

#define DISK_LOOP_MAJOR 7
/* Another process may take the free loop device between our asking and our claiming it. */
#define DISK_LOOP_TRIES 16

/* An e2fsprogs program (mkfs.ext4, e2fsck, resize2fs) by absolute path, or NULL. */
static const char *disk_tool(const char *name, char *buf, size_t len)
{
    static const char *const dirs[] = {"/usr/sbin", "/sbin", "/usr/local/sbin"};
    for (size_t i = 0; i < BH_ARRAY_LEN(dirs); i++) {
        snprintf(buf, len, "%s/%s", dirs[i], name);
        if (access(buf, X_OK) == 0)
            return buf;
    }
    return NULL;
}

int bh_disk_create(const char *image, uint64_t bytes, struct bh_err *err)
{
    char mkfs_path[64];
    const char *mkfs = disk_tool("mkfs.ext4", mkfs_path, sizeof(mkfs_path));
    if (!mkfs)
        return bh_err_set(err, BH_EUNAVAIL, "mkfs.ext4 not found (install e2fsprogs)");
    bh_autoclose int fd = open(image, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)bytes) < 0)
        return bh_err_errno(err, BH_EIO, "disk image %s", image);
    /* No reserved blocks: the tenant gets all of diskGb. No journal: the writable layer is not
     * durable state (a host crash destroys the instance; hibernate archives it while frozen),
     * and without one mkfs writes less than 1 MB. */
    const char *argv[] = {
        mkfs, "-q", "-F", "-m", "0", "-O", "^has_journal", "-E", "lazy_itable_init=1", image, NULL};
    if (bh_proc_check(argv, err) < 0)
        return bh_err_wrap(err, "mkfs.ext4 %s", image);
    return 0;
}

/* Opens /dev/loopN, making the node when the host's /dev is not a devtmpfs. */
static int disk_loop_open(int n, char *dev, size_t len)
{
    snprintf(dev, len, "/dev/loop%d", n);
    int fd = open(dev, O_RDWR | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && mknod(dev, S_IFBLK | 0660, makedev(DISK_LOOP_MAJOR, n)) == 0)
        fd = open(dev, O_RDWR | O_CLOEXEC);
    return fd;
}

/* Binds a free loop device to img_fd with autoclear; returns its fd, dev names it. */
static int disk_loop_attach(int img_fd, char *dev, size_t len, struct bh_err *err)
{
    bh_autoclose int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0)
        return bh_err_errno(err, BH_EUNAVAIL, "open /dev/loop-control");
    struct loop_config cfg = {.fd = (uint32_t)img_fd, .info.lo_flags = LO_FLAGS_AUTOCLEAR};
    for (int i = 0; i < DISK_LOOP_TRIES; i++) {
        int n = ioctl(ctl, LOOP_CTL_GET_FREE);
        if (n < 0)
            return bh_err_errno(err, BH_EUNAVAIL, "no free loop device");
        int fd = disk_loop_open(n, dev, len);
        if (fd < 0)
            return bh_err_errno(err, BH_EUNAVAIL, "open %s", dev);
        if (ioctl(fd, LOOP_CONFIGURE, &cfg) == 0)
            return fd;
        int e = errno;
        close(fd);
        if (e != EBUSY)
            return bh_err_set(err, BH_EIO, "loop device %s: %s", dev, strerror(e));
    }
    return bh_err_set(err, BH_EUNAVAIL, "loop devices: always taken by another process");
}

int bh_disk_mount(const char *image, const char *target, struct bh_err *err)
{
    bh_autoclose int img = open(image, O_RDWR | O_CLOEXEC);
    if (img < 0)
        return bh_err_errno(err, BH_EIO, "open disk image %s", image);
    char dev[32];
    bh_autoclose int loop = disk_loop_attach(img, dev, sizeof(dev), err);
    if (loop < 0)
        return -1;
    /* Closing our fds leaves the mount as the loop device's only user: unmounting frees it. */
    if (mount(dev, target, "ext4", MS_NOSUID | MS_NODEV | MS_NOATIME, NULL) < 0)
        return bh_err_errno(err, BH_EIO, "mount %s (%s) at %s", image, dev, target);
    return 0;
}

/* Grows the unmounted filesystem in image to fill bytes. Offline, with e2fsprogs: the
 * kernel's online grow needs CAP_SYS_RESOURCE, which a daemon in a container may lack, and
 * resize2fs wants a checked filesystem (the image was taken mounted, frozen: consistent, but
 * not marked clean), so e2fsck -p runs first. */
static int disk_grow(const char *image, uint64_t bytes, struct bh_err *err)
{
    char fsck_path[64], resize_path[64];
    const char *fsck = disk_tool("e2fsck", fsck_path, sizeof(fsck_path));
    const char *resize = disk_tool("resize2fs", resize_path, sizeof(resize_path));
    if (!fsck || !resize)
        return bh_err_set(err, BH_EUNAVAIL, "e2fsck or resize2fs not found (install e2fsprogs)");
    if (truncate(image, (off_t)bytes) < 0)
        return bh_err_errno(err, BH_EIO, "grow disk image %s", image);
    const char *check[] = {fsck, "-f", "-p", image, NULL};
    struct bh_proc_result res;
    if (bh_proc_run(check, NULL, &res, err) < 0)
        return -1;
    int code = res.exit_code;
    bh_proc_result_free(&res);
    if (code > 1) /* 1: errors corrected */
        return bh_err_set(err, BH_EIO, "e2fsck %s exited %d", image, code);
    const char *grow[] = {resize, image, NULL};
    return bh_proc_check(grow, err);
}

int bh_disk_mount_resized(const char *image, const char *target, uint64_t bytes, struct bh_err *err)
{
    struct stat st;
    if (stat(image, &st) < 0)
        return bh_err_errno(err, BH_EIO, "disk image %s", image);
    uint64_t had = (uint64_t)st.st_size;
    struct bh_err grow_err;
    if (bytes > had && disk_grow(image, bytes, &grow_err) < 0)
        bh_warn("disk", "%s: %s; the disk keeps its old size", image, grow_err.msg);
    else if (bytes > had)
        bh_info("disk", "%s grown from %llu to %llu bytes", image, (unsigned long long)had,
                (unsigned long long)bytes);
    else if (bytes < had)
        bh_warn("disk",
                "%s keeps %llu bytes, more than the %llu its workload now asks for: a disk is "
                "not shrunk (a fresh disk of the new size comes with a claim that does not "
                "restore it)",
                image, (unsigned long long)had, (unsigned long long)bytes);
    return bh_disk_mount(image, target, err);
}

/* How path (in-container, "/a/b") relates to the kept paths: 2 kept (equal or below one),
 * 1 on the way to one, 0 neither. */
static int disk_kept(const char *path, char *const *keep)
{
    int best = 0;
    size_t n = strlen(path);
    for (char *const *k = keep; k && *k; k++) {
        size_t m = strlen(*k);
        if (n >= m && strncmp(path, *k, m) == 0 && (path[m] == '\0' || path[m] == '/'))
            return 2;
        if (m > n && strncmp(*k, path, n) == 0 && (*k)[n] == '/')
            best = 1;
    }
    return best;
}

static int disk_prune(const char *dir, const char *rel, char *const *keep, struct bh_err *err);

static int disk_prune_entry(const char *dir, const char *rel, const char *name, char *const *keep,
                            struct bh_err *err)
{
    bh_autofree char *path = bh_xasprintf("%s/%s", dir, name);
    bh_autofree char *crel = bh_xasprintf("%s/%s", rel, name);
    struct stat st;
    if (lstat(path, &st) < 0)
        return bh_err_errno(err, BH_EIO, "stat %s", path);
    int kept = disk_kept(crel, keep);
    if (kept == 2)
        return 0;
    if (kept == 1 && S_ISDIR(st.st_mode))
        return disk_prune(path, crel, keep, err);
    return bh_fs_rmtree(path, err);
}

static int disk_prune(const char *dir, const char *rel, char *const *keep, struct bh_err *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return bh_err_errno(err, BH_EIO, "open %s", dir);
    int rc = 0;
    for (struct dirent *de; rc == 0 && (de = readdir(d));)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            rc = disk_prune_entry(dir, rel, de->d_name, keep, err);
    closedir(d);
    return rc;
}

int bh_disk_keep(const char *disk, const char *upper, char *const *keep, struct bh_err *err)
{
    const char *base = strrchr(upper, '/');
    base = base ? base + 1 : upper;
    DIR *d = opendir(disk);
    if (!d)
        return bh_err_errno(err, BH_EIO, "open %s", disk);
    int rc = 0;
    for (struct dirent *de; rc == 0 && (de = readdir(d));) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") || !strcmp(de->d_name, base) ||
            !strcmp(de->d_name, "lost+found"))
            continue;
        bh_autofree char *path = bh_xasprintf("%s/%s", disk, de->d_name);
        rc = bh_fs_rmtree(path, err);
    }
    closedir(d);
    if (rc < 0 || !bh_fs_exists(upper))
        return rc;
    return disk_prune(upper, "", keep, err);
}

/* Retries of an EBUSY unmount, DISK_UMOUNT_WAIT_MS apart: a path lookup through the mount
 * point (the sampler's statvfs, a stat) holds a reference for microseconds. */
#define DISK_UMOUNT_TRIES 200
#define DISK_UMOUNT_WAIT_MS 10

int bh_disk_umount(const char *target, struct bh_err *err)
{
    for (int i = 0;; i++) {
        if (umount2(target, 0) == 0 || errno == EINVAL || errno == ENOENT)
            return 0;
        if (errno != EBUSY || i == DISK_UMOUNT_TRIES)
            return bh_err_errno(err, BH_EIO, "umount disk %s", target);
        struct timespec ts = {0, DISK_UMOUNT_WAIT_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
}

int bh_disk_quiesce(const char *mnt, struct bh_err *err)
{
    bh_autoclose int fd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || syncfs(fd) < 0)
        return bh_err_errno(err, BH_EIO, "sync disk %s", mnt);
    struct fstrim_range r = {.start = 0, .len = UINT64_MAX, .minlen = 0};
    /* Without discard on the loop device the image keeps freed blocks: bigger, not wrong. */
    if (ioctl(fd, FITRIM, &r) < 0 && errno != EOPNOTSUPP && errno != ENOTTY)
        return bh_err_errno(err, BH_EIO, "trim disk %s", mnt);
    return 0;
}
