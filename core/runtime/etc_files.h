/* The identity and name-resolution files of an instance, as Docker and Kubernetes provide
 * them: /etc/hostname, /etc/hosts and /etc/resolv.conf, written by the daemon under the
 * instance's directory and bind-mounted read-only over the image's own (oci_config.h). */
#ifndef BH_ETC_FILES_H
#define BH_ETC_FILES_H

#include <stddef.h>

#include "err.h"

/* The files, in the order they are mounted; resolv.conf is last, so a caller that keeps the
 * image's resolver (a plugin that names none) mounts one fewer. */
extern const char *const bh_etc_files[3];
#define BH_ETC_N_FILES 3

struct bh_etc_params {
    const char *hostname;    /* the instance's hostname */
    const char *address;     /* its IPv4 address; NULL while unknown or without a network */
    const char *nameservers; /* space-separated; "" for none; NULL: write no resolv.conf */
};

/* Writes DIR/hostname, DIR/hosts and (if nameservers is set) DIR/resolv.conf, each
 * atomically, mode 0644. DIR must exist. */
int bh_etc_files_write(const char *dir, const struct bh_etc_params *p, struct bh_err *err);

/* Rewrites DIR/hosts in place (same inode), for the address learnt after the container was
 * created: a bind mount holds the inode it was made from, so a rename would not reach the
 * container. Called before the container starts, when nothing inside can read it. */
int bh_etc_hosts_update(const char *dir, const struct bh_etc_params *p, struct bh_err *err);

/* Creates the first n of bh_etc_files as empty files in the rootfs's /etc where the image has
 * none: the runtime would have to create these mount points itself, as the container's root,
 * which may not write to the image's /etc. Existing entries are left alone. */
int bh_etc_mountpoints(const char *rootfs, size_t n, struct bh_err *err);

#endif
