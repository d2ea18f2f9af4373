/* Hibernate and restore: a tenant's overlay directories saved through the storage plugin and
 * put back into a fresh or warm instance; the Snapshot records that name them. */
#ifndef BH_HIBERNATE_H
#define BH_HIBERNATE_H

#include <cjson/cJSON.h>

#include "ctx.h"
#include "err.h"

/* Whether releasing instances of this workload saves their overlay dirs. */
int bh_hibernate_wanted(const cJSON *workload);
/* Freezes the instance, archives its overlay dirs, stores them durably and records the
 * snapshot; on failure the instance is thawed and left running. With a remote runtime
 * (Kubernetes mode) nothing is saved yet: it warns and succeeds, and the release goes on. */
int bh_hibernate_save(struct bh_ctx *ctx, const cJSON *workload, const char *tenant, const char *id,
                      struct bh_err *err);
/* Fetches, verifies and extracts a snapshot into rootfs (a host path). */
int bh_hibernate_restore(struct bh_ctx *ctx, const cJSON *workload, const cJSON *snapshot,
                         const char *rootfs, struct bh_err *err);
/* Whether the snapshot is an image ("image-v1"): restored only by a boot (bh_hibernate_disk),
 * never into a running instance. */
int bh_hibernate_is_image(const cJSON *snapshot);
/* 1 if snapshot can only be restored as an instance boots, never into a running (pool)
 * instance: a disk image is a disk the boot mounts; a remote runtime's instance takes its
 * data before its workload starts (bh_hibernate_restore_remote). 0 for NULL. */
int bh_hibernate_at_boot(struct bh_ctx *ctx, const cJSON *snapshot);
/* A remote runtime's instance (launched with restore set) gets the snapshot: fetched, made
 * plain if it was encrypted (the key stays here), and handed to the runtime within
 * timeout_ms. A disk-image snapshot cannot go into a Pod: BH_EUNAVAIL. */
int bh_hibernate_restore_remote(struct bh_ctx *ctx, const cJSON *workload, const cJSON *snapshot,
                                const char *cid, int timeout_ms, struct bh_err *err);
/* For a boot: puts the image snapshot's disk at image (a path that must not exist), from the
 * hot tier by rename if it is parked there, else from storage (verified, then decompressed).
 * Returns 1 if it did, 0 if the snapshot is not an image (restore it into the rootfs with
 * bh_hibernate_restore), -1 on error (image absent). */
int bh_hibernate_disk(struct bh_ctx *ctx, const cJSON *workload, const cJSON *snapshot,
                      const char *image, struct bh_err *err);
/* Removes what no record references: hot images (and the whole hot tier after a host reboot),
 * and storage objects older than grace_s if the plugin can list (0 only while no
 * hibernate can run: at startup); then holds the hot tier to its budget. */
int bh_hibernate_gc(struct bh_ctx *ctx, long grace_s, struct bh_err *err);
/* The queue key "SnapshotGC/all": bh_hibernate_gc with a grace period, again every hour. */
int bh_hibernate_gc_reconcile(struct bh_ctx *ctx, const char *name, long *requeue_ms,
                              struct bh_err *err);
/* Deletes the tenant's snapshot for workload, if any: record, hot copy, stored object. */
int bh_hibernate_forget(struct bh_ctx *ctx, const char *tenant, const char *workload,
                        struct bh_err *err);
/* The Snapshot record of (tenant, workload); BH_ENOTFOUND if none. */
int bh_hibernate_record(struct bh_ctx *ctx, const char *tenant, const char *workload, cJSON **out,
                        struct bh_err *err);

#endif
