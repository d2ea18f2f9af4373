/* The OCI driver of the runtime seam: runc or crun through their CLI (runc.h), rootfs as
 * overlayfs over the image layers (rootfs.h), a hardened config.json (oci_config.h), and
 * liveness, stats and network namespaces read from /proc and the container's cgroup. */
#ifndef BH_RUNTIME_OCI_H
#define BH_RUNTIME_OCI_H

#include "err.h"
#include "runtime.h"

/* prefer: "runc", "crun" or NULL (auto: the first that can really run a container here).
 * root_dir: the runtime's --root (created if missing). *out owned (bh_runtime_close). */
int bh_runtime_oci_open(const char *root_dir, const char *prefer, struct bh_runtime **out,
                        struct bh_err *err);

#endif
