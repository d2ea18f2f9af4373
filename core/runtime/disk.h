/* An instance's disk: a sparse ext4 image of the workload's diskGb, loop-mounted, that holds
 * the container's writable layer. Whatever the container writes outside tmpfs lands on it, so
 * a write past the size fails with ENOSPC inside the container and the host file never grows
 * past it. */
#ifndef BH_DISK_H
#define BH_DISK_H

#include <stdint.h>

#include "err.h"

/* Makes image a sparse file of bytes with an empty ext4 filesystem on it (replacing any). */
BH_MUST_CHECK int bh_disk_create(const char *image, uint64_t bytes, struct bh_err *err);
/* Mounts image at target (an existing dir) through a loop device that the kernel frees by
 * itself once the filesystem is unmounted, or if this process dies before mounting it. */
BH_MUST_CHECK int bh_disk_mount(const char *image, const char *target, struct bh_err *err);

/* Mounts a restored image at target, first made as long as bytes if it is shorter, its
 * filesystem then grown to fill it (e2fsck + resize2fs, before the mount): a tenant's disk
 * follows a larger diskGb of its workload. A longer image keeps its size (not shrunk), and so
 * does one whose grow fails: a warning each, the tenant's files come back either way. */
BH_MUST_CHECK int bh_disk_mount_resized(const char *image, const char *target, uint64_t bytes,
                                        struct bh_err *err);
/* Unmounts the disk mounted at target (nothing mounted there is success), which frees its
 * loop device. Never lazily: a detached filesystem would live on, writing into the image
 * after the caller has parked, moved or mounted it again. A mount point busy only for a
 * moment (a concurrent stat or statvfs of it) is tried again; busy longer, it fails. */
BH_MUST_CHECK int bh_disk_umount(const char *target, struct bh_err *err);

/* On a disk restored from a snapshot (mounted at disk): removes everything below disk but
 * upper and lost+found, and everything below upper that is not on the way to, or below, one of
 * keep (absolute in-container paths). Never follows a symlink or crosses a mount. */
BH_MUST_CHECK int bh_disk_keep(const char *disk, const char *upper, char *const *keep,
                               struct bh_err *err);
/* Before the image under the disk mounted at mnt is read (its writers frozen): flushes the
 * filesystem into the image and punches out its free blocks (FITRIM), so the image holds
 * exactly the files, not deleted data. */
BH_MUST_CHECK int bh_disk_quiesce(const char *mnt, struct bh_err *err);

#endif
