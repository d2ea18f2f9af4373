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
 * snapshot; on failure the instance is thawed and left running. */
int bh_hibernate_save(struct bh_ctx *ctx, const cJSON *workload, const char *tenant, const char *id,
                      struct bh_err *err);
/* Fetches, verifies and extracts a snapshot into rootfs (a host path). */
int bh_hibernate_restore(struct bh_ctx *ctx, const cJSON *workload, const cJSON *snapshot,
                         const char *rootfs, struct bh_err *err);
/* Deletes the tenant's snapshot for workload, if any. */
int bh_hibernate_forget(struct bh_ctx *ctx, const char *tenant, const char *workload,
                        struct bh_err *err);
/* The Snapshot record of (tenant, workload); BH_ENOTFOUND if none. */
int bh_hibernate_record(struct bh_ctx *ctx, const char *tenant, const char *workload, cJSON **out,
                        struct bh_err *err);

#endif
