/* Internal to the hibernate module: what hibernate.c and the hot tier (hibernate_hot.c)
 * share. */
#ifndef BH_HIBERNATE_INT_H
#define BH_HIBERNATE_INT_H

#include <cjson/cJSON.h>

#include "ctx.h"
#include "err.h"

#define SNAPSHOT_KIND "Snapshot"

/* <state>/instances/<id>/<what> (owned). */
char *bh_hibernate_instance_path(struct bh_ctx *ctx, const char *id, const char *what);

/* Where the image of snapshot record rec is parked: <state>/hot/<record>-<digest[0:16]>.img
 * (owned). */
char *bh_hibernate_hot_path(struct bh_ctx *ctx, const cJSON *rec);
/* Once rec names the new snapshot of instance id: deletes the container, unmounts its disk and
 * moves the disk image into the tier, then evicts down to the budget. Best effort (logged);
 * never for an encrypted snapshot (the image is plaintext). */
void bh_hibernate_hot_park(struct bh_ctx *ctx, const char *id, const cJSON *rec);
/* Moves snap's parked image to image if it is there and is the one snap names; 1 if it did. */
int bh_hibernate_hot_take(struct bh_ctx *ctx, const cJSON *snap, const char *image);
/* Drops the tier after a host reboot, removes images no record names, evicts to the budget. */
int bh_hibernate_hot_gc(struct bh_ctx *ctx, struct bh_err *err);

#endif
