/* An instance's root filesystem: overlayfs over the unpacked image layers. */
#ifndef BH_ROOTFS_H
#define BH_ROOTFS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* overlayfs at target: lower dirs bottom first, upper/work created with owner uid/gid. */
int bh_rootfs_mount(char *const *lower_dirs, size_t n_lower, const char *upper, const char *work,
                    const char *target, uint32_t owner, struct bh_err *err);
/* Unmounts target (detaching if busy); succeeds if not mounted. */
int bh_rootfs_umount(const char *target, struct bh_err *err);

#endif
