/* The instance rootfs: an overlayfs of the image layers with a per-instance upper dir. */
#include "rootfs.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs.h"
#include "mem.h"

/* Creates dir (and parents) and hands it to the owner, so that container root, which maps to
 * owner on the host, can write to the overlay's upper layer. */
static int rootfs_owned_dir(const char *dir, uint32_t owner, struct bh_err *err)
{
    if (bh_fs_mkdirp(dir, 0755, err) < 0)
        return -1;
    if (chown(dir, owner, owner) < 0)
        return bh_err_errno(err, BH_EIO, "chown %s", dir);
    return 0;
}

/* Overlay wants lowerdir top first; ours come bottom first. */
static char *rootfs_lowerdir(char *const *lower, size_t n)
{
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(lower[i]) + 1;
    char *s = bh_xcalloc(1, len);
    for (size_t i = n; i-- > 0;) {
        strcat(s, lower[i]);
        if (i > 0)
            strcat(s, ":");
    }
    return s;
}

/* xino=on: with the upper dir on the instance's disk and the layers elsewhere, overlayfs would
 * report the upper filesystem's st_dev for files, and the snapshot would take them for mount
 * points; with xino every object reports the overlay's st_dev (inode numbers of both ext4
 * filesystems fit in 32 bits, so the kernel can fold the layer into them). */

/* The new mount API takes one lower dir per fsconfig call, so it has no page-size limit on
 * the option string that mount(2) has. */
static int rootfs_mount_fsconfig(char *const *lower, size_t n, const char *upper, const char *work,
                                 const char *target, struct bh_err *err)
{
    bh_autoclose int fs = fsopen("overlay", FSOPEN_CLOEXEC);
    if (fs < 0)
        return bh_err_errno(err, BH_EIO, "fsopen overlay");
    for (size_t i = n; i-- > 0;)
        if (fsconfig(fs, FSCONFIG_SET_STRING, "lowerdir+", lower[i], 0) < 0)
            return bh_err_errno(err, BH_EIO,
                                "overlay lowerdir+ %s (kernel too old for %zu "
                                "layers?)",
                                lower[i], n);
    if (fsconfig(fs, FSCONFIG_SET_STRING, "upperdir", upper, 0) < 0 ||
        fsconfig(fs, FSCONFIG_SET_STRING, "xino", "on", 0) < 0 ||
        fsconfig(fs, FSCONFIG_SET_STRING, "workdir", work, 0) < 0 ||
        fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        return bh_err_errno(err, BH_EIO, "overlay config for %s", target);
    bh_autoclose int mnt = fsmount(fs, FSMOUNT_CLOEXEC, 0);
    if (mnt < 0 || move_mount(mnt, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        return bh_err_errno(err, BH_EIO, "mount overlay at %s", target);
    return 0;
}

int bh_rootfs_mount(char *const *lower_dirs, size_t n_lower, const char *upper, const char *work,
                    const char *target, uint32_t owner, struct bh_err *err)
{
    if (n_lower == 0)
        return bh_err_set(err, BH_EINVAL, "overlay at %s: no lower layers", target);
    if (rootfs_owned_dir(upper, owner, err) < 0 || rootfs_owned_dir(work, owner, err) < 0 ||
        bh_fs_mkdirp(target, 0755, err) < 0)
        return -1;
    bh_autofree char *lowers = rootfs_lowerdir(lower_dirs, n_lower);
    bh_autofree char *opts =
        bh_xasprintf("lowerdir=%s,upperdir=%s,workdir=%s,xino=on", lowers, upper, work);
    if (strlen(opts) >= (size_t)sysconf(_SC_PAGESIZE))
        return rootfs_mount_fsconfig(lower_dirs, n_lower, upper, work, target, err);
    if (mount("overlay", target, "overlay", 0, opts) < 0)
        return bh_err_errno(err, BH_EIO, "mount overlay at %s", target);
    return 0;
}

int bh_rootfs_umount(const char *target, struct bh_err *err)
{
    if (umount2(target, 0) == 0)
        return 0;
    if (errno == EINVAL || errno == ENOENT)
        return 0;
    if (errno == EBUSY && umount2(target, MNT_DETACH) == 0)
        return 0;
    return bh_err_errno(err, BH_EIO, "umount %s", target);
}
