/* Guards: the registry of guard types and the deadline-bounded evaluation of one guard.
 *
 * A guard type is either built into the daemon and registered here (the Lua host registers
 * "lua", issue 9) or served by a loaded guard plugin (bh-guard-<name>.so, its info->serves or
 * name). Lookup asks the registry first, then the plugins. An unknown type is a validation
 * error, never a skip. */
#ifndef BH_GUARD_H
#define BH_GUARD_H

#include <boilerhouse/plugin.h>
#include <cjson/cJSON.h>

#include "ctx.h"
#include "err.h"

/* A built-in guard type. where names the config in errors ("spec.guards[1].config"). */
struct bh_guard_type {
    const char *name; /* the spec.guards[].type it serves */
    void *ud;
    /* Validates config (may be NULL) without keeping anything: apply-time checks. */
    int (*check)(void *ud, const char *where, const cJSON *config, struct bh_err *err);
    /* Makes one guard instance for a running trigger. */
    int (*open)(void *ud, const char *where, const cJSON *config, void **inst, struct bh_err *err);
    void (*close)(void *inst);
    /* Judges ev: 0 with *v filled (BH_GUARD_ALLOW / BH_GUARD_DENY), or -1 (refuses). */
    int (*evaluate)(void *inst, const struct bh_event *ev, struct bh_guard_verdict *v,
                    struct bh_err *err);
};

/* Registers t (borrowed; must outlive the daemon) for its name; BH_ECONFLICT if taken. */
int bh_guard_register(const struct bh_guard_type *t, struct bh_err *err);

/* One open guard of a running trigger; shared with a late evaluation, so refcounted. */
struct bh_guard;

/* Validates spec.guards[i] (type known, config valid). */
int bh_guard_check(struct bh_ctx *ctx, const cJSON *entry, const char *where, struct bh_err *err);
/* Opens spec.guards[i] for trigger `trigger`. *out owned: release with bh_guard_close. */
int bh_guard_open(struct bh_ctx *ctx, const cJSON *entry, const char *trigger, size_t index,
                  struct bh_guard **out, struct bh_err *err);
void bh_guard_close(struct bh_guard *g);
/* Evaluates with a deadline of deadline_ms: past it the event is refused (BH_ETIMEOUT) and the
 * late answer dropped. 0 with *v filled, or -1 with err naming the guard. */
int bh_guard_evaluate(struct bh_guard *g, const struct bh_event *ev, long deadline_ms,
                      struct bh_guard_verdict *v, struct bh_err *err);
/* "allowlist", "lua", ...: the guard's type. */
const char *bh_guard_type_name(const struct bh_guard *g);

#endif
