/* The Lua host: operators' scripts (claim policies, guards) run in a sandbox the daemon keeps
 * in charge of. Each script is compiled once from text (never bytecode) into a lua_State of
 * its own that every call reuses; a call sees a curated environment (no load, require, io,
 * os but time/clock/date, debug, package, string.dump), cannot leave state for the next call,
 * and runs under an instruction budget, a memory ceiling and a wall-clock deadline. Any error,
 * limit hit or wrong return value fails closed, with a message naming script, line and cause.
 *
 * A policy set (struct bh_lua_policies) is the scripts of a policy directory, reloaded when a
 * file changes (a script that fails to compile keeps the previous version), with their stats.
 * See docs/lua.md. */
#ifndef BH_LUA_HOST_H
#define BH_LUA_HOST_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "err.h"

struct bh_store;

struct bh_lua_limits {
    long long instructions; /* VM instructions per call */
    size_t memory;          /* bytes the script's state may hold */
    int deadline_ms;        /* wall clock per call */
};

/* 1M instructions, 8 MiB, 100 ms: a policy that needs more is doing something else. */
#define BH_LUA_LIMITS_DEFAULT                                                                      \
    {                                                                                              \
        1000000, 8u << 20, 100                                                                     \
    }

/* What one call did, for `policy test` and the stats. */
struct bh_lua_report {
    long long instructions; /* executed, to the hook's granularity (1000) */
    size_t memory;          /* bytes the state held at its peak during the call */
    long long micros;       /* wall time */
    cJSON *logs;            /* owned array of {"level", "msg"} from bh.log, or NULL */
};
void bh_lua_report_free(struct bh_lua_report *rep);

/* ---- one script ---- */

struct bh_lua_script;

/* Compiles src (text only) as script `name` and runs its top level once, which must define
 * a function `policy` or `guard`. store (borrowed, may be NULL) is what bh.claims and bh.pool
 * read; kv (borrowed, may be NULL: no bh.kv) keeps bh.kv under the script's name. */
int bh_lua_script_new(const char *name, const char *src, size_t len,
                      const struct bh_lua_limits *limits, struct bh_store *store,
                      struct bh_store *kv, struct bh_lua_script **out, struct bh_err *err);
void bh_lua_script_free(struct bh_lua_script *s);
/* Calls entry(event) ("policy" or "guard"; event borrowed, its tenantId scopes bh.claims).
 * *out (owned) is the array of the values returned. Thread-safe: calls of one script run one
 * at a time. rep optional. */
int bh_lua_script_call(struct bh_lua_script *s, const char *entry, const cJSON *event, cJSON **out,
                       struct bh_lua_report *rep, struct bh_err *err);

/* ---- the policy directory ---- */

struct bh_lua_policies;

/* dir is created if missing (0700). store borrowed. */
int bh_lua_policies_open(const char *dir, struct bh_store *store,
                         const struct bh_lua_limits *limits, struct bh_lua_policies **out,
                         struct bh_err *err);
void bh_lua_policies_close(struct bh_lua_policies *p);
/* The global default claim policy ("default.lua" in the dir, if present) applies to workloads
 * without spec.claimPolicy. */
#define BH_LUA_DEFAULT_POLICY "default.lua"
/* True if name is a script file name: [A-Za-z0-9_][A-Za-z0-9._-]*\.lua, at most 63 bytes. */
int bh_lua_script_name_valid(const char *name);

/* A claim policy's verdict. overrides (owned, validated) holds what the policy set:
 * idleTimeoutSeconds, idleAction, source, resources {vcpus, memoryMb}, labels {k: v}. */
struct bh_lua_decision {
    int allow;
    int failed;   /* the script failed (error, limit, wrong return): denied, fail closed */
    char *reason; /* owned; why it was denied or failed */
    char *script; /* owned; which script decided, NULL if none applies */
    cJSON *overrides;
};
void bh_lua_decision_free(struct bh_lua_decision *d);

/* The claim event of (tenant, workload): {tenantId, workload, labels, now}. A policy also
 * reads activeClaims (the tenant's other claims that hold or are getting an instance) and
 * poolReady, which the host reads from the store when (if) the script does. */
cJSON *bh_lua_claim_event(const char *tenant, const cJSON *workload, const cJSON *labels);
/* Runs the workload's claim policy (or the default) on event. No policy applies (p NULL, or
 * no spec.claimPolicy and no default script): allow, d->script NULL. Fails only on a bad call
 * (err); a script that fails is a decision with failed set. */
int bh_lua_policy_decide(struct bh_lua_policies *p, const cJSON *workload, const cJSON *event,
                         struct bh_lua_decision *d, struct bh_err *err);
/* A guard: script is a file of the policy dir, or source (inline) when script is NULL.
 * event {tenantId, workload, trigger, source, text, raw}. Returns 1 allow, 0 deny (*reason
 * owned), -1 on failure (err: fails closed, the caller denies). */
int bh_lua_guard(struct bh_lua_policies *p, const char *script, const char *source,
                 const cJSON *event, char **reason, struct bh_err *err);
/* Runs script (a file name in the policy dir, or a path to any file for the CLI when p is
 * NULL) on event under the same limits: {decision, reason, overrides, logs, instructions,
 * memoryBytes, micros, error}. *out owned. Fails when the script cannot be read or compiled. */
int bh_lua_policy_test(struct bh_lua_policies *p, const char *script, const char *source,
                       const cJSON *event, const cJSON *workload, cJSON **out, struct bh_err *err);
/* Every script of the dir (reloaded if changed): {name, versionHash, loadedAt, lastError,
 * calls, denials, failures, p99Micros}. Owned array. */
cJSON *bh_lua_policies_list(struct bh_lua_policies *p);

/* `boilerhouse policy ...` (policy_cli.c); argv[0] is "policy". Exit status. */
int bh_lua_cli_main(int argc, char **argv);

#endif
