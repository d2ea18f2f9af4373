/* Instance disks against the real kernel: sparse ext4 images on loop devices, alone and as the
 * OCI driver's writable layer. Root, /dev/loop-control and mkfs.ext4 are required. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "bh_test.h"
#include "disk.h"
#include "fs.h"
#include "mem.h"
#include "rootfs.h"
#include "runtime.h"
#include "runtime_oci.h"

#define TEST_PREFIX "bh-test-disk-"
#define DISK_BYTES (64ull << 20)
#define UID_BASE 1000000000u

static char *base;

static void check(int rc, const struct bh_err *err)
{
    if (rc < 0)
        fail_msg("%s", err->msg);
}

static char *path_of(const char *name)
{
    return bh_xasprintf("%s/%s", base, name);
}

/* The mounts a test may leave under dir (overlay on top of disk), then dir itself. */
static void cleanup_base(const char *dir)
{
    static const char *const mounts[] = {"rootfs", "disk", "mnt"};
    struct bh_err err;
    for (size_t i = 0; i < BH_ARRAY_LEN(mounts); i++) {
        bh_autofree char *m = bh_xasprintf("%s/%s", dir, mounts[i]);
        if (bh_rootfs_umount(m, &err) < 0)
            print_error("cleanup %s: %s\n", m, err.msg);
    }
    if (bh_fs_rmtree(dir, &err) < 0)
        print_error("cleanup %s: %s\n", dir, err.msg);
}

/* Leftovers of an earlier run killed before its teardown. */
static void cleanup_leftovers(void)
{
    DIR *d = opendir("/tmp");
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (bh_test_leftover(e->d_name, TEST_PREFIX)) {
            bh_autofree char *dir = bh_xasprintf("/tmp/%s", e->d_name);
            cleanup_base(dir);
        }
    if (d)
        closedir(d);
}

/* The number of loop devices whose backing file is image. */
static int loops_backing(const char *image)
{
    int n = 0;
    DIR *d = opendir("/sys/block");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (strncmp(e->d_name, "loop", 4) != 0)
            continue;
        bh_autofree char *p = bh_xasprintf("/sys/block/%s/loop/backing_file", e->d_name);
        bh_autofree char *data = NULL;
        size_t len = 0;
        if (bh_fs_read_all(p, 4096, &data, &len, NULL) == 0 &&
            strncmp(data, image, strlen(image)) == 0)
            n++;
    }
    if (d)
        closedir(d);
    return n;
}

/* After the last unmount, an autoclear loop device is let go by the kernel's own work item,
 * not before umount returns: waited for (up to a generous deadline), not assumed. */
static void no_loop_backing(const char *image)
{
    for (int i = 0; i < 200 && loops_backing(image) > 0; i++)
        usleep(50 * 1000);
    assert_int_equal(loops_backing(image), 0);
}

static int is_mount_point(const char *dir)
{
    struct stat a, b;
    bh_autofree char *parent = bh_xasprintf("%s/..", dir);
    return stat(dir, &a) == 0 && stat(parent, &b) == 0 && a.st_dev != b.st_dev;
}

/* Writes 1 MiB blocks to path until a write fails; returns that errno, *written the bytes. */
static int fill(const char *path, uint64_t limit, uint64_t *written)
{
    static char block[1 << 20];
    memset(block, 'x', sizeof(block));
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    int e = 0;
    for (*written = 0; *written < limit && !e;) {
        ssize_t w = write(fd, block, sizeof(block));
        if (w < 0)
            e = errno;
        else
            *written += (uint64_t)w;
    }
    if (!e && fsync(fd) < 0)
        e = errno;
    close(fd);
    return e;
}

static uint64_t allocated(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (uint64_t)st.st_blocks * 512;
}

static int setup(void **state)
{
    base = bh_xasprintf("/tmp/" TEST_PREFIX "%d", (int)getpid());
    struct bh_err err;
    return bh_fs_mkdirp(base, 0755, &err);
}

static int teardown(void **state)
{
    cleanup_base(base);
    free(base);
    return 0;
}

/* A write past the size fails with ENOSPC; the host file stays within the size; unmounting
 * frees the loop device. */
static void test_quota(void **state)
{
    struct bh_err err;
    bh_autofree char *image = path_of("disk.img");
    bh_autofree char *mnt = path_of("mnt");
    check(bh_disk_create(image, DISK_BYTES, &err), &err);
    assert_true(allocated(image) < (4u << 20)); /* sparse: mkfs wrote metadata only */
    check(bh_fs_mkdirp(mnt, 0700, &err), &err);
    check(bh_disk_mount(image, mnt, &err), &err);
    assert_int_equal(loops_backing(image), 1);
    bh_autofree char *big = bh_xasprintf("%s/big", mnt);
    uint64_t written = 0;
    assert_int_equal(fill(big, 2 * DISK_BYTES, &written), ENOSPC);
    assert_true(written > DISK_BYTES / 2 && written <= DISK_BYTES);
    assert_true(allocated(image) <= DISK_BYTES);
    check(bh_rootfs_umount(mnt, &err), &err);
    no_loop_backing(image);
    /* A full disk mounts again with its data intact. */
    check(bh_disk_mount(image, mnt, &err), &err);
    struct stat st;
    assert_int_equal(stat(big, &st), 0);
    assert_int_equal((uint64_t)st.st_size, written);
    check(bh_rootfs_umount(mnt, &err), &err);
    no_loop_backing(image);
}

static uint64_t fs_bytes(const char *mnt)
{
    struct statvfs vfs;
    assert_int_equal(statvfs(mnt, &vfs), 0);
    return (uint64_t)vfs.f_blocks * vfs.f_frsize;
}

/* A restored disk follows a larger diskGb: the image grows and its full filesystem with it,
 * online, the files intact and the new room writable; a smaller size leaves it as it was. */
static void test_resized_mount(void **state)
{
    struct bh_err err;
    bh_autofree char *image = path_of("disk.img");
    bh_autofree char *mnt = path_of("mnt");
    check(bh_disk_create(image, DISK_BYTES, &err), &err);
    check(bh_fs_mkdirp(mnt, 0700, &err), &err);
    check(bh_disk_mount(image, mnt, &err), &err);
    bh_autofree char *big = bh_xasprintf("%s/big", mnt);
    uint64_t written = 0;
    assert_int_equal(fill(big, 2 * DISK_BYTES, &written), ENOSPC);
    uint64_t before = fs_bytes(mnt);
    check(bh_rootfs_umount(mnt, &err), &err);

    check(bh_disk_mount_resized(image, mnt, 2 * DISK_BYTES, &err), &err);
    struct stat st;
    assert_int_equal(stat(image, &st), 0);
    assert_int_equal((uint64_t)st.st_size, 2 * DISK_BYTES);
    assert_true(fs_bytes(mnt) > before + DISK_BYTES / 2);
    assert_int_equal(stat(big, &st), 0);
    assert_int_equal((uint64_t)st.st_size, written);
    bh_autofree char *more = bh_xasprintf("%s/more", mnt);
    uint64_t more_written = 0;
    assert_int_equal(fill(more, 2 * DISK_BYTES, &more_written), ENOSPC);
    assert_true(more_written > DISK_BYTES / 2);
    assert_true(allocated(image) <= 2 * DISK_BYTES);
    check(bh_rootfs_umount(mnt, &err), &err);

    check(bh_disk_mount_resized(image, mnt, DISK_BYTES, &err), &err);
    assert_int_equal(stat(image, &st), 0);
    assert_int_equal((uint64_t)st.st_size, 2 * DISK_BYTES);
    assert_int_equal(stat(more, &st), 0);
    assert_int_equal((uint64_t)st.st_size, more_written);
    check(bh_rootfs_umount(mnt, &err), &err);
    no_loop_backing(image);
}

/* A disk kept busy is not detached lazily (the image would still be written to after the
 * caller moved on): the unmount fails and the disk stays mounted on its loop device; once
 * the user goes, it unmounts and frees the device. */
static void test_busy_disk_is_never_detached(void **state)
{
    struct bh_err err;
    bh_autofree char *image = path_of("disk.img");
    bh_autofree char *mnt = path_of("mnt");
    bh_autofree char *file = path_of("mnt/held");
    check(bh_disk_create(image, DISK_BYTES, &err), &err);
    check(bh_fs_mkdirp(mnt, 0700, &err), &err);
    check(bh_disk_mount(image, mnt, &err), &err);
    int fd = open(file, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(bh_disk_umount(mnt, &err), -1);
    assert_non_null(strstr(err.msg, "umount disk"));
    assert_int_equal(loops_backing(image), 1);
    struct stat st;
    assert_int_equal(stat(file, &st), 0); /* still reachable where it was mounted */
    close(fd);
    check(bh_disk_umount(mnt, &err), &err);
    no_loop_backing(image);
    check(bh_disk_umount(mnt, &err), &err); /* nothing mounted: success */
}

/* An image that holds no filesystem is refused, and the loop device is not left bound. */
static void test_mount_garbage(void **state)
{
    struct bh_err err;
    bh_autofree char *image = path_of("garbage.img");
    bh_autofree char *mnt = path_of("mnt");
    check(bh_fs_write_atomic(image, "not ext4", 8, 0600, &err), &err);
    assert_int_equal(truncate(image, 8 << 20), 0);
    check(bh_fs_mkdirp(mnt, 0700, &err), &err);
    assert_int_equal(bh_disk_mount(image, mnt, &err), -1);
    assert_non_null(strstr(err.msg, "garbage.img"));
    assert_false(is_mount_point(mnt));
    no_loop_backing(image);
}

/* The OCI driver puts upper and work on the disk and releases both mounts. */
static void test_oci_rootfs(void **state)
{
    struct bh_err err;
    bh_autofree char *lower = path_of("lower");
    bh_autofree char *disk = path_of("disk");
    bh_autofree char *image = path_of("disk.img");
    bh_autofree char *upper = path_of("disk/upper");
    bh_autofree char *work = path_of("disk/work");
    bh_autofree char *rootfs = path_of("rootfs");
    bh_autofree char *runroot = path_of("runc");
    check(bh_fs_mkdirp(lower, 0755, &err), &err);
    struct bh_runtime *rt = NULL;
    if (bh_runtime_oci_open(runroot, NULL, &rt, &err) < 0)
        bh_test_skip_or_fail(err.msg);
    char *layers[] = {lower};
    struct bh_runtime_spec spec = {.id = "bh-disktest",
                                   .bundle = base,
                                   .layers = layers,
                                   .n_layers = 1,
                                   .disk = disk,
                                   .disk_image = image,
                                   .disk_bytes = DISK_BYTES,
                                   .upper = upper,
                                   .work = work,
                                   .rootfs = rootfs,
                                   .uid_base = UID_BASE,
                                   .uid_size = 65536};
    check(bh_runtime_rootfs_prepare(rt, &spec, &err), &err);
    assert_true(is_mount_point(disk));
    bh_autofree char *big = bh_xasprintf("%s/big", rootfs);
    uint64_t written = 0;
    assert_int_equal(fill(big, 2 * DISK_BYTES, &written), ENOSPC);
    assert_true(allocated(image) <= DISK_BYTES);
    /* A file on the disk reports the overlay's device, as the snapshot's mount check needs. */
    struct stat root_st, file_st;
    assert_int_equal(stat(rootfs, &root_st), 0);
    assert_int_equal(stat(big, &file_st), 0);
    assert_int_equal(root_st.st_dev, file_st.st_dev);
    check(bh_runtime_rootfs_release(rt, rootfs, disk, &err), &err);
    assert_false(is_mount_point(rootfs));
    assert_false(is_mount_point(disk));
    no_loop_backing(image);
    /* Releasing again (startup recovery repeats it) finds nothing and succeeds. */
    check(bh_runtime_rootfs_release(rt, rootfs, disk, &err), &err);
    bh_runtime_close(rt);
}

int main(void)
{
    if (geteuid() != 0)
        bh_test_skip_or_fail("instance disks need root (loop devices, mounts)");
    if (access("/dev/loop-control", R_OK | W_OK) != 0)
        bh_test_skip_or_fail("no /dev/loop-control");
    if (access("/usr/sbin/mkfs.ext4", X_OK) != 0 && access("/sbin/mkfs.ext4", X_OK) != 0)
        bh_test_skip_or_fail("mkfs.ext4 is not installed (e2fsprogs)");
    cleanup_leftovers();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_quota, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resized_mount, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mount_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy_disk_is_never_detached, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oci_rootfs, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
