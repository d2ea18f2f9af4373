/* Filesystem helpers: durable atomic writes, recursive create/remove, safe path joins. */
#ifndef BH_FS_H
#define BH_FS_H

#include <stddef.h>
#include <sys/types.h>

#include "err.h"

/* mkdir -p with mode for the created components. */
BH_MUST_CHECK int bh_fs_mkdirp(const char *path, mode_t mode, struct bh_err *err);
/* Writes data to path atomically and durably: temp file in the same dir, fsync, rename,
 * fsync of the directory. Readers see the old or the new content, never a mix. */
BH_MUST_CHECK int bh_fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
                                     struct bh_err *err);
/* The same, atomic but not durable (no fsync): for files that live no longer than the
 * machine's uptime, such as a container's bundle and /etc files, which a reboot ends anyway.
 * Each fsync costs ~0.3-3 ms on a cold claim's path. */
BH_MUST_CHECK int bh_fs_write_replace(const char *path, const void *data, size_t len, mode_t mode,
                                      struct bh_err *err);
/* Reads a whole file (NUL-terminated, *len excludes the NUL) up to max bytes. Owned result. */
BH_MUST_CHECK int bh_fs_read_all(const char *path, size_t max, char **out, size_t *len,
                                 struct bh_err *err);
/* rm -rf that does not cross mount points and does not follow symlinks. */
BH_MUST_CHECK int bh_fs_rmtree(const char *path, struct bh_err *err);
BH_MUST_CHECK int bh_fs_fsync_dir(const char *dir, struct bh_err *err);
/* True if `name` is one safe path component: non-empty, no '/', not "." or "..". */
int bh_fs_safe_component(const char *name);
int bh_fs_exists(const char *path);
/* Files inside a container rootfs, resolved by the kernel as if root were "/" (openat2
 * RESOLVE_IN_ROOT): a symlink in the rootfs can never lead to a host path. path is absolute
 * within the rootfs. */
BH_MUST_CHECK int bh_fs_read_in_root(const char *root, const char *path, size_t max, char **out,
                                     size_t *len, struct bh_err *err);
/* Opens path inside root the same way; returns an fd or -1 with errno set. */
int bh_fs_open_in_root(const char *root, const char *path, int flags);
/* Newest mtime (wall ms) under dir inside root, resolved as bh_fs_open_in_root does and walked
 * physically (no symlink followed, no mount crossed), stopping after max_entries entries so
 * a huge tree costs a bounded scan; 0 when dir is missing or empty. */
long long bh_fs_newest_mtime_in_root(const char *root, const char *dir, int max_entries);
/* Atomic replace (temp + rename in the same dir), creating missing parent dirs (0755). */
BH_MUST_CHECK int bh_fs_write_in_root(const char *root, const char *path, const void *data,
                                      size_t len, mode_t mode, struct bh_err *err);

#endif
