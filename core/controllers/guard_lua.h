/* The built-in guard type "lua": a trigger's guard {type: lua, config: {script: NAME.lua} or
 * {source: "function guard(e) ... end"}} runs through the Lua host (bh_lua_guard) with the
 * event {tenantId, workload, trigger, source, text, raw}. */
#ifndef BH_GUARD_LUA_H
#define BH_GUARD_LUA_H

#include "ctx.h"
#include "err.h"

/* Registers the type for ctx's policy set. The guard registry is process-wide and has no
 * unregister, so a second call (a second daemon in one process: tests) points the one
 * registration at the newer policy set. */
int bh_guard_lua_register(struct bh_ctx *ctx, struct bh_err *err);

#endif
