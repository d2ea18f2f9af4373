/* Embedded resource store: SQLite (WAL, synchronous=FULL; see bh_store_update_status_lazy) with a
 * global resourceVersion and an append-only event log that watchers read from. See store.h for the
 * contract. */
#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "mem.h"
#include "objcache.h"

#define STORE_MAX_SUBSCRIBERS 16
#define STORE_DEFAULT_RETENTION 10000
/* Compaction costs a DELETE over the event index, so it runs every N writes, not each one. */
#define STORE_COMPACT_EVERY 256
/* One events_since answer is bounded; the caller continues from the last rv it saw. */
#define STORE_EVENTS_BATCH 1000
/* The label objects_tenant indexes (see store_schema). */
#define STORE_INDEXED_LABEL "boilerhouse.dev/tenant"
/* The label objects_pool_status indexes: a pool member's readiness. */
#define STORE_POOL_STATUS_LABEL "boilerhouse.dev/pool-status"
/* Kinds bh_store_cache_kind may name, and objects the read cache holds at most. */
#define STORE_MAX_CACHED_KINDS 4
#define STORE_CACHE_ENTRIES 4096
/* Kept statements: the write path's fixed ones (about 10, STORE_FIXED_STMTS at most) and the
 * list queries (one per label key filtered in SQL: a handful in the daemon's own use; a key
 * of a user's selector beyond the rest gets a statement of its own, prepared and dropped). */
#define STORE_MAX_STMTS 32
#define STORE_FIXED_STMTS 16
struct store_sub {
    bh_store_watch_fn fn;
    void *ud;
};

/* A statement prepared once and kept: its SQL (owned) and the statement. */
struct store_stmt {
    char *sql;
    sqlite3_stmt *st;
};

struct bh_store {
    sqlite3 *db;
    pthread_mutex_t mu;
    pthread_cond_t changed; /* broadcast after each commit; events_since waits on it */
    unsigned wakes;         /* bumped by bh_store_wake: events_since returns early */
    struct store_sub subs[STORE_MAX_SUBSCRIBERS];
    int nsubs;
    int64_t retention;
    int64_t writes_since_compact;
    /* The connection's PRAGMA synchronous: 1 FULL (the WAL is fsynced at each commit), 0
     * NORMAL (lazy writes). Switched only when a write wants the other one (store_sync), so a
     * run of lazy writes (a claim's) compiles no pragma. */
    int sync_full;
    bh_store_commit_fn on_commit; /* metrics: how long each commit took */
    void *on_commit_ud;
    /* The point read, prepared once (lazily, under mu): every REST call makes one or more,
     * and preparing costs more than the read itself. */
    sqlite3_stmt *load;
    /* The write path's statements, the same way (store_prepare_cached). */
    struct store_stmt stmts[STORE_MAX_STMTS];
    int nstmts;
    /* The read cache of the kinds named by bh_store_cache_kind (NULL: none). Filled by reads
     * and dropped by writes, both under mu, in the same critical section as the database read
     * or commit: a read can never put back an object older than the last commit, so no
     * resourceVersion or generation check is needed on a hit. */
    struct bh_objcache *cache;
    const char *cached_kinds[STORE_MAX_CACHED_KINDS];
    int ncached;
};

static const char *const store_schema =
    "CREATE TABLE IF NOT EXISTS objects (kind TEXT NOT NULL, name TEXT NOT NULL,"
    " uid TEXT NOT NULL, rv INTEGER NOT NULL, generation INTEGER NOT NULL, doc TEXT NOT NULL,"
    " PRIMARY KEY (kind, name));"
    "CREATE TABLE IF NOT EXISTS events (rv INTEGER PRIMARY KEY, kind TEXT NOT NULL,"
    " name TEXT NOT NULL, type INTEGER NOT NULL, doc TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
    "INSERT OR IGNORE INTO meta VALUES ('rv', 0), ('compacted_rv', 0);"
    "CREATE TABLE IF NOT EXISTS kv (ns TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
    " expires INTEGER NOT NULL, PRIMARY KEY (ns, key));"
    /* Per-claim paths list a tenant's claims and instances (one active instance per pair,
     * a claim policy's activeClaims): index that label so they read only the tenant's rows.
     * The expression is the one store_list_sql writes for a selector term on this key. */
    "CREATE INDEX IF NOT EXISTS objects_tenant ON objects (kind,"
    " json_extract(doc, '$.metadata.labels.\"" STORE_INDEXED_LABEL "\"'), name);"
    /* A pool claim lists the ready members of its pool by name (store_names_sql, whose
     * expression this is): without it, every instance's document was parsed in SQL. */
    "CREATE INDEX IF NOT EXISTS objects_pool_status ON objects (kind,"
    " json_extract(doc, '$.metadata.labels.\"" STORE_POOL_STATUS_LABEL "\"'), name);";

/* API tokens (core/store/token.c): only the SHA-256 of a token is kept. claim is set for the
 * per-claim tokens the claim controller mints and revokes. */
static const char *const store_schema_tokens =
    "CREATE TABLE IF NOT EXISTS tokens (id TEXT PRIMARY KEY, name TEXT NOT NULL,"
    " hash TEXT NOT NULL UNIQUE, scopes TEXT NOT NULL, workload TEXT, claim TEXT,"
    " created_by TEXT NOT NULL, created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL,"
    " revoked_ms INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS tokens_claim ON tokens (claim) WHERE claim IS NOT NULL;";

/* Schema migrations, applied in order: the database's user_version is how many ran. The first
 * is the schema from before versioning (idempotent, so a database made then takes it again
 * harmlessly). Append only; never edit one that shipped. */
static const char *const store_migrations[] = {store_schema, store_schema_tokens};

/* ---- small SQLite helpers ---------------------------------------------------------------- */

static int store_sqlerr(struct bh_store *s, struct bh_err *err, const char *what)
{
    return bh_err_set(err, BH_EIO, "store: %s: %s", what, sqlite3_errmsg(s->db));
}

static int store_exec(struct bh_store *s, const char *sql, struct bh_err *err)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) == SQLITE_OK)
        return 0;
    bh_err_set(err, BH_EIO, "store: %s: %s", sql, msg ? msg : "failed");
    sqlite3_free(msg);
    return -1;
}

static void store_finalizep(sqlite3_stmt **st)
{
    sqlite3_finalize(*st);
}
#define store_autostmt __attribute__((cleanup(store_finalizep))) sqlite3_stmt *

static int store_prepare(struct bh_store *s, const char *sql, sqlite3_stmt **st, struct bh_err *err)
{
    if (sqlite3_prepare_v2(s->db, sql, -1, st, NULL) != SQLITE_OK)
        return store_sqlerr(s, err, "prepare");
    return 0;
}

/* Locked. sql's statement, prepared on first use and kept until close (compiling costs about
 * as much as running these small statements, and every write runs several). Use it through
 * store_autoreset. Kept only while fewer than limit are: else *kept is 0 and the statement
 * is the caller's to finalize. */
static int store_prepare_kept(struct bh_store *s, const char *sql, int limit, sqlite3_stmt **st,
                              int *kept, struct bh_err *err)
{
    for (int i = 0; i < s->nstmts; i++)
        if (strcmp(s->stmts[i].sql, sql) == 0) {
            *st = s->stmts[i].st;
            *kept = 1;
            return 0;
        }
    *kept = s->nstmts < limit;
    if (sqlite3_prepare_v3(s->db, sql, -1, *kept ? SQLITE_PREPARE_PERSISTENT : 0, st, NULL) !=
        SQLITE_OK)
        return store_sqlerr(s, err, "prepare");
    if (*kept)
        s->stmts[s->nstmts++] = (struct store_stmt){bh_xstrdup(sql), *st};
    return 0;
}

/* Locked. store_prepare_kept for the write path's fixed statements: the list queries leave
 * STORE_FIXED_STMTS slots for them. */
static int store_prepare_cached(struct bh_store *s, const char *sql, sqlite3_stmt **st,
                                struct bh_err *err)
{
    int kept;
    if (store_prepare_kept(s, sql, STORE_MAX_STMTS, st, &kept, err) < 0)
        return -1;
    if (kept)
        return 0;
    sqlite3_finalize(*st);
    *st = NULL;
    return bh_err_set(err, BH_EIO, "store: more than %d kept statements", STORE_MAX_STMTS);
}

/* Ends a kept statement's use: reset (its read, if any, ends) and its bindings cleared. */
static void store_resetp(sqlite3_stmt **st)
{
    if (*st) {
        sqlite3_reset(*st);
        sqlite3_clear_bindings(*st);
    }
}
#define store_autoreset __attribute__((cleanup(store_resetp))) sqlite3_stmt *

/* Locked. One of the write path's statements without results (BEGIN, COMMIT, ROLLBACK). */
static int store_run(struct bh_store *s, const char *sql, struct bh_err *err)
{
    store_autoreset st = NULL;
    if (store_prepare_cached(s, sql, &st, err) < 0)
        return -1;
    if (sqlite3_step(st) != SQLITE_DONE)
        return bh_err_set(err, BH_EIO, "store: %s: %s", sql, sqlite3_errmsg(s->db));
    return 0;
}

static int store_meta_get(struct bh_store *s, const char *key, int64_t *out, struct bh_err *err)
{
    store_autoreset st = NULL;
    if (store_prepare_cached(s, "SELECT value FROM meta WHERE key = ?", &st, err) < 0)
        return -1;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW)
        return store_sqlerr(s, err, "read meta");
    *out = sqlite3_column_int64(st, 0);
    return 0;
}

static int store_meta_set(struct bh_store *s, const char *key, int64_t v, struct bh_err *err)
{
    store_autoreset st = NULL;
    if (store_prepare_cached(s, "UPDATE meta SET value = ? WHERE key = ?", &st, err) < 0)
        return -1;
    sqlite3_bind_int64(st, 1, v);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        return store_sqlerr(s, err, "write meta");
    return 0;
}

/* ---- open / close ------------------------------------------------------------------------ */

/* Runs the migrations the database has not had, in the caller's transaction. */
static int store_migrate(struct bh_store *s, struct bh_err *err)
{
    int64_t have = 0, want = (int64_t)BH_ARRAY_LEN(store_migrations);
    store_autostmt st = NULL;
    if (store_prepare(s, "PRAGMA user_version", &st, err) < 0)
        return -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        have = sqlite3_column_int64(st, 0);
    if (have > want)
        return bh_err_set(err, BH_EINVAL,
                          "store schema version %lld is newer than this daemon's (%lld)",
                          (long long)have, (long long)want);
    for (int64_t i = have; i < want; i++)
        if (store_exec(s, store_migrations[i], err) < 0)
            return bh_err_wrap(err, "migration %lld", (long long)i + 1);
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %lld", (long long)want);
    return have == want ? 0 : store_exec(s, sql, err);
}

static int store_init_db(struct bh_store *s, struct bh_err *err)
{
    sqlite3_busy_timeout(s->db, 5000);
    if (store_exec(s, "PRAGMA journal_mode=WAL", err) < 0 ||
        store_exec(s, "PRAGMA synchronous=FULL", err) < 0 ||
        store_exec(s, "BEGIN IMMEDIATE", err) < 0)
        return -1;
    if (store_migrate(s, err) < 0) {
        store_exec(s, "ROLLBACK", NULL);
        return -1;
    }
    return store_exec(s, "COMMIT", err);
}

static void store_init_sync(struct bh_store *s)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->changed, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&s->mu, NULL);
}

int bh_store_open(const char *path, struct bh_store **out, struct bh_err *err)
{
    struct bh_store *s = bh_xcalloc(1, sizeof(*s));
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX;
    if (sqlite3_open_v2(path, &s->db, flags, NULL) != SQLITE_OK) {
        bh_err_set(err, BH_EIO, "store: open %s: %s", path,
                   s->db ? sqlite3_errmsg(s->db) : "out of memory");
        sqlite3_close(s->db);
        free(s);
        return -1;
    }
    if (store_init_db(s, err) < 0) {
        bh_err_wrap(err, "store: open %s", path);
        sqlite3_close(s->db);
        free(s);
        return -1;
    }
    store_init_sync(s);
    s->retention = STORE_DEFAULT_RETENTION;
    s->sync_full = 1; /* store_init_db set it */
    *out = s;
    return 0;
}

void bh_store_close(struct bh_store *s)
{
    if (!s)
        return;
    sqlite3_finalize(s->load);
    for (int i = 0; i < s->nstmts; i++) {
        sqlite3_finalize(s->stmts[i].st);
        free(s->stmts[i].sql);
    }
    bh_objcache_free(s->cache);
    sqlite3_close(s->db);
    pthread_cond_destroy(&s->changed);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

void bh_store_set_event_retention(struct bh_store *s, int64_t n)
{
    pthread_mutex_lock(&s->mu);
    s->retention = n > 0 ? n : 1;
    pthread_mutex_unlock(&s->mu);
}

void bh_store_subscribe(struct bh_store *s, bh_store_watch_fn fn, void *ud)
{
    pthread_mutex_lock(&s->mu);
    if (s->nsubs == STORE_MAX_SUBSCRIBERS)
        bh_error("store", "too many subscribers; dropping one");
    else
        s->subs[s->nsubs++] = (struct store_sub){fn, ud};
    pthread_mutex_unlock(&s->mu);
}

void bh_store_cache_kind(struct bh_store *s, const char *kind)
{
    pthread_mutex_lock(&s->mu);
    if (s->ncached == STORE_MAX_CACHED_KINDS)
        bh_error("store", "too many cached kinds; %s is read from the database", kind);
    else
        s->cached_kinds[s->ncached++] = kind;
    if (!s->cache)
        s->cache = bh_objcache_new(STORE_CACHE_ENTRIES);
    pthread_mutex_unlock(&s->mu);
}

/* Locked. Whether kind's objects are cached. */
static int store_cached(const struct bh_store *s, const char *kind)
{
    for (int i = 0; i < s->ncached; i++)
        if (strcmp(s->cached_kinds[i], kind) == 0)
            return 1;
    return 0;
}

void bh_store_on_commit(struct bh_store *s, bh_store_commit_fn fn, void *ud)
{
    pthread_mutex_lock(&s->mu);
    s->on_commit = fn;
    s->on_commit_ud = ud;
    pthread_mutex_unlock(&s->mu);
}

static double store_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Reports a write's duration (lock wait included: that is what callers wait for). */
static void store_observe(struct bh_store *s, double t0)
{
    bh_store_commit_fn fn = s->on_commit;
    if (fn)
        fn(store_now() - t0, s->on_commit_ud);
}

/* ---- metadata helpers -------------------------------------------------------------------- */

static void store_uuid4(char out[37])
{
    unsigned char b[16];
    size_t got = 0;
    while (got < sizeof(b)) {
        ssize_t n = getrandom(b + got, sizeof(b) - got, 0);
        if (n < 0 && errno != EINTR)
            abort(); /* the kernel CSPRNG failing is not recoverable */
        got += n > 0 ? (size_t)n : 0;
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

static void store_now_rfc3339(char out[21])
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, 21, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void store_set(cJSON *obj, const char *key, cJSON *val)
{
    if (cJSON_HasObjectItem(obj, key))
        cJSON_ReplaceItemInObjectCaseSensitive(obj, key, val);
    else
        cJSON_AddItemToObject(obj, key, val);
}

static void store_set_rv(cJSON *meta, int64_t rv)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%lld", (long long)rv);
    store_set(meta, "resourceVersion", cJSON_CreateString(buf));
}

static const char *store_name(const cJSON *obj)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(obj, "metadata"), "name"));
}

static const char *store_kind(const cJSON *obj)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(obj, "kind"));
}

static int store_has_finalizers(const cJSON *obj)
{
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
    return cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(meta, "finalizers")) > 0;
}

static int store_is_deleting(const cJSON *obj)
{
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
    return cJSON_HasObjectItem(meta, "deletionTimestamp");
}

/* The resourceVersion a write was based on, if the caller sent one: 0 means "none sent". */
static int store_expected_rv(const cJSON *obj, int64_t *out, struct bh_err *err)
{
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
    const cJSON *rv = cJSON_GetObjectItemCaseSensitive(meta, "resourceVersion");
    *out = 0;
    if (!rv || cJSON_IsNull(rv) || (cJSON_IsString(rv) && !rv->valuestring[0]))
        return 0;
    char *end = NULL;
    if (cJSON_IsString(rv))
        *out = strtoll(rv->valuestring, &end, 10);
    if (!end || *end || *out <= 0)
        return bh_err_set(err, BH_EINVAL, "metadata.resourceVersion: must be a decimal string");
    return 0;
}

/* ---- reading ----------------------------------------------------------------------------- */

static cJSON *store_column_json(sqlite3_stmt *st, int col)
{
    return cJSON_Parse((const char *)sqlite3_column_text(st, col));
}

/* Locked. *out is NULL (and 0 returned) when absent. */
static int store_load(struct bh_store *s, const char *kind, const char *name, cJSON **out,
                      struct bh_err *err)
{
    *out = NULL;
    if (!s->load && sqlite3_prepare_v3(s->db, "SELECT doc FROM objects WHERE kind = ? AND name = ?",
                                       -1, SQLITE_PREPARE_PERSISTENT, &s->load, NULL) != SQLITE_OK)
        return store_sqlerr(s, err, "prepare");
    sqlite3_stmt *st = s->load;
    sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = store_column_json(st, 0);
    else if (rc != SQLITE_DONE)
        store_sqlerr(s, err, "read object");
    sqlite3_reset(st); /* ends the read; the bindings are rebound on every use */
    if (rc == SQLITE_ROW && !*out)
        return bh_err_set(err, BH_EIO, "store: %s/%s: stored document is corrupt", kind, name);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

/* Locked. store_load through the read cache when kind is cached. */
static int store_load_cached(struct bh_store *s, const char *kind, const char *name, cJSON **out,
                             struct bh_err *err)
{
    int cached = store_cached(s, kind);
    if (cached && (*out = bh_objcache_get(s->cache, kind, name)))
        return 0;
    int rc = store_load(s, kind, name, out, err);
    if (rc == 0 && *out && cached)
        bh_objcache_put(s->cache, kind, name, *out);
    return rc;
}

int bh_store_get(struct bh_store *s, const char *kind, const char *name, cJSON **out,
                 struct bh_err *err)
{
    pthread_mutex_lock(&s->mu);
    int rc = store_load_cached(s, kind, name, out, err);
    pthread_mutex_unlock(&s->mu);
    if (rc == 0 && !*out)
        return bh_err_set(err, BH_ENOTFOUND, "%s %s not found", kind, name);
    return rc;
}

/* ---- label selectors --------------------------------------------------------------------- */

/* One term of "k=v,k2!=v2,k3": matches labels? -1 if the term is malformed. */
static int store_term_matches(const cJSON *labels, const char *term)
{
    const char *op = strpbrk(term, "!=");
    size_t klen = op ? (size_t)(op - term) : strlen(term);
    bh_autofree char *key = bh_xstrndup(term, klen);
    const char *have = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(labels, key));
    if (!klen)
        return -1;
    if (!op)
        return have != NULL;
    int negate = op[0] == '!';
    if (negate && op[1] != '=')
        return -1;
    const char *val = op + (negate ? 2 : (op[1] == '=' ? 2 : 1));
    if (strpbrk(val, "!="))
        return -1;
    int eq = have && strcmp(have, val) == 0;
    return negate ? !eq : eq;
}

/* 1 if obj matches every term of selector, 0 if not, -1 if the selector is malformed. */
static int store_selector_matches(const cJSON *obj, const char *selector)
{
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(meta, "labels");
    bh_autofree char *copy = bh_xstrdup(selector);
    char *save = NULL;
    int all = 1;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int m = store_term_matches(labels, t);
        if (m < 0)
            return -1;
        all = all && m;
    }
    return all;
}

/* The list query: one equality term "k=v" of the selector (k of plain label characters, so
 * it can stand in the JSON path literally; the indexed label's if there is one, else the
 * first) is filtered in SQL, where objects_tenant serves the indexed label; the whole
 * selector is still checked on each row. *val is the term's value to bind, or NULL. Owned. */
static char *store_list_sql(const char *selector, char **val)
{
    bh_autofree char *copy = bh_xstrdup(selector ? selector : "");
    char *save = NULL, *key = NULL;
    *val = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        size_t klen = strcspn(t, "!=");
        if (klen == 0 || t[klen] != '=' ||
            strspn(t, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/-") != klen)
            continue;
        char *v = t + klen + (t[klen + 1] == '=' ? 2 : 1);
        t[klen] = '\0';
        if (key && strcmp(t, STORE_INDEXED_LABEL) != 0)
            continue;
        key = t;
        free(*val);
        *val = bh_xstrdup(v);
        if (strcmp(key, STORE_INDEXED_LABEL) == 0)
            break;
    }
    if (!key)
        return bh_xstrdup("SELECT doc FROM objects WHERE kind = ? ORDER BY name");
    return bh_xasprintf("SELECT doc FROM objects WHERE kind = ? AND"
                        " json_extract(doc, '$.metadata.labels.\"%s\"') = ? ORDER BY name",
                        key);
}

static int store_list_locked(struct bh_store *s, const char *kind, const char *selector, cJSON *arr,
                             int64_t *rv, struct bh_err *err)
{
    int filter = selector && *selector;
    cJSON *none = cJSON_CreateObject();
    int valid = !filter || store_selector_matches(none, selector) >= 0;
    cJSON_Delete(none);
    if (!valid)
        return bh_err_set(err, BH_EINVAL, "invalid label selector \"%s\"", selector);
    bh_autofree char *val = NULL;
    bh_autofree char *sql = store_list_sql(selector, &val);
    store_autoreset st = NULL;
    int kept = 1;
    if (store_prepare_kept(s, sql, STORE_MAX_STMTS - STORE_FIXED_STMTS, &st, &kept, err) < 0)
        return -1;
    sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
    if (val)
        sqlite3_bind_text(st, 2, val, -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        cJSON *obj = store_column_json(st, 0);
        if (obj && (!filter || store_selector_matches(obj, selector) > 0))
            cJSON_AddItemToArray(arr, obj);
        else
            cJSON_Delete(obj);
    }
    if (rc != SQLITE_DONE)
        rc = store_sqlerr(s, err, "list");
    else
        rc = rv ? store_meta_get(s, "rv", rv, err) : 0;
    if (!kept) {
        sqlite3_finalize(st);
        st = NULL;
    }
    return rc;
}

int bh_store_list(struct bh_store *s, const char *kind, const char *label_selector, cJSON **out,
                  int64_t *rv, struct bh_err *err)
{
    cJSON *arr = cJSON_CreateArray();
    pthread_mutex_lock(&s->mu);
    int rc = store_list_locked(s, kind, label_selector, arr, rv, err);
    pthread_mutex_unlock(&s->mu);
    if (rc < 0) {
        cJSON_Delete(arr);
        return -1;
    }
    *out = arr;
    return 0;
}

#define STORE_NAMES_MAX_TERMS 4

/* The names query of bh_store_list_names: one json_extract equality per term of selector,
 * whose values go to vals (borrowed from copy, which the caller frees). NULL if the selector
 * is not "k=v" terms of plain keys (at most STORE_NAMES_MAX_TERMS). Owned. */
static char *store_names_sql(char *copy, const char **vals, int *n)
{
    char *sql = bh_xstrdup("SELECT name FROM objects WHERE kind = ?");
    char *save = NULL;
    *n = 0;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        size_t klen = strcspn(t, "!=");
        int plain =
            klen > 0 && t[klen] == '=' &&
            strspn(t, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/-") == klen;
        const char *v = t + klen + (plain && t[klen + 1] == '=' ? 2 : 1);
        if (!plain || *n == STORE_NAMES_MAX_TERMS || strpbrk(v, "!=")) {
            free(sql);
            return NULL;
        }
        t[klen] = '\0';
        vals[(*n)++] = v;
        char *more =
            bh_xasprintf("%s AND json_extract(doc, '$.metadata.labels.\"%s\"') = ?", sql, t);
        free(sql);
        sql = more;
    }
    char *done = bh_xasprintf("%s ORDER BY name", sql);
    free(sql);
    return done;
}

static int store_names_locked(struct bh_store *s, const char *kind, const char *sql,
                              const char **vals, int n, cJSON *arr, struct bh_err *err)
{
    store_autoreset st = NULL;
    int kept = 1;
    if (store_prepare_kept(s, sql, STORE_MAX_STMTS - STORE_FIXED_STMTS, &st, &kept, err) < 0)
        return -1;
    sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
    for (int i = 0; i < n; i++)
        sqlite3_bind_text(st, i + 2, vals[i], -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        cJSON_AddItemToArray(arr, cJSON_CreateString((const char *)sqlite3_column_text(st, 0)));
    rc = rc == SQLITE_DONE ? 0 : store_sqlerr(s, err, "list names");
    if (!kept) {
        sqlite3_finalize(st);
        st = NULL;
    }
    return rc;
}

int bh_store_list_names(struct bh_store *s, const char *kind, const char *label_selector,
                        cJSON **out, struct bh_err *err)
{
    bh_autofree char *copy = bh_xstrdup(label_selector ? label_selector : "");
    const char *vals[STORE_NAMES_MAX_TERMS];
    int n;
    bh_autofree char *sql = store_names_sql(copy, vals, &n);
    if (!sql)
        return bh_err_set(err, BH_EINVAL, "label selector \"%s\": only k=v terms (at most %d)",
                          label_selector, STORE_NAMES_MAX_TERMS);
    cJSON *arr = cJSON_CreateArray();
    pthread_mutex_lock(&s->mu);
    int rc = store_names_locked(s, kind, sql, vals, n, arr, err);
    pthread_mutex_unlock(&s->mu);
    if (rc < 0) {
        cJSON_Delete(arr);
        return -1;
    }
    *out = arr;
    return 0;
}

/* ---- writing ----------------------------------------------------------------------------- */

/* One pending write: built under the lock, committed, then announced outside it. */
struct store_write {
    enum bh_store_event_type type;
    int64_t rv;
    cJSON *doc; /* owned: the document the event carries */
};

/* text: doc as printed (the object row and its event carry the same text). */
static int store_put_object(struct bh_store *s, const cJSON *doc, const char *text, int64_t rv,
                            struct bh_err *err)
{
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(doc, "metadata");
    const cJSON *gen = cJSON_GetObjectItemCaseSensitive(meta, "generation");
    store_autoreset st = NULL;
    if (store_prepare_cached(s, "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?, ?)", &st,
                             err) < 0)
        return -1;
    sqlite3_bind_text(st, 1, store_kind(doc), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, store_name(doc), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(meta, "uid")),
                      -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, rv);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)cJSON_GetNumberValue(gen));
    sqlite3_bind_text(st, 6, text, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        return store_sqlerr(s, err, "write object");
    return 0;
}

static int store_remove_object(struct bh_store *s, const cJSON *doc, struct bh_err *err)
{
    store_autoreset st = NULL;
    if (store_prepare_cached(s, "DELETE FROM objects WHERE kind = ? AND name = ?", &st, err) < 0)
        return -1;
    sqlite3_bind_text(st, 1, store_kind(doc), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, store_name(doc), -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        return store_sqlerr(s, err, "delete object");
    return 0;
}

static int store_append_event(struct bh_store *s, const struct store_write *w, const char *text,
                              struct bh_err *err)
{
    store_autoreset st = NULL;
    if (store_prepare_cached(s, "INSERT INTO events VALUES (?, ?, ?, ?, ?)", &st, err) < 0)
        return -1;
    sqlite3_bind_int64(st, 1, w->rv);
    sqlite3_bind_text(st, 2, store_kind(w->doc), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, store_name(w->doc), -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, w->type);
    sqlite3_bind_text(st, 5, text, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        return store_sqlerr(s, err, "append event");
    return 0;
}

/* Drops events older than the retention window, remembering the newest dropped rv so that
 * watchers resuming from before it are told to re-list instead of silently missing events. */
static int store_compact(struct bh_store *s, int64_t rv, struct bh_err *err)
{
    if (++s->writes_since_compact < STORE_COMPACT_EVERY || rv <= s->retention)
        return 0;
    s->writes_since_compact = 0;
    int64_t cut = rv - s->retention;
    store_autoreset st = NULL;
    if (store_prepare_cached(s, "DELETE FROM events WHERE rv <= ?", &st, err) < 0)
        return -1;
    sqlite3_bind_int64(st, 1, cut);
    if (sqlite3_step(st) != SQLITE_DONE)
        return store_sqlerr(s, err, "compact events");
    return store_meta_set(s, "compacted_rv", cut, err);
}

/* Locked, inside a transaction: records w (whose doc already carries w->rv). */
static int store_record(struct bh_store *s, const struct store_write *w, struct bh_err *err)
{
    bh_autofree char *text = cJSON_PrintUnformatted(w->doc);
    int rc = w->type == BH_EV_DELETED ? store_remove_object(s, w->doc, err)
                                      : store_put_object(s, w->doc, text, w->rv, err);
    if (rc < 0 || store_append_event(s, w, text, err) < 0 ||
        store_meta_set(s, "rv", w->rv, err) < 0)
        return -1;
    return store_compact(s, w->rv, err);
}

/* What the caller asked for: the object addressed, and its input document (NULL for delete). */
struct store_req {
    const char *kind;
    const char *name;
    const cJSON *in;
    int lazy; /* commit without syncing the WAL (bh_store_update_status_lazy) */
};

/* Builds the change from the current object (NULL if absent) and the request. Fills w->type
 * and w->doc; w->doc stays NULL when there is nothing to write. */
typedef int (*store_mutate_fn)(const cJSON *cur, const struct store_req *req, int64_t rv,
                               struct store_write *w, struct bh_err *err);

static void store_notify(struct bh_store *s, const struct store_write *w)
{
    struct bh_store_event ev = {w->type, w->rv, store_kind(w->doc), store_name(w->doc), w->doc};
    pthread_mutex_lock(&s->mu);
    int n = s->nsubs;
    struct store_sub subs[STORE_MAX_SUBSCRIBERS];
    memcpy(subs, s->subs, sizeof(subs));
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < n; i++)
        subs[i].fn(&ev, subs[i].ud);
}

/* Locked. The connection's synchronous setting for the next commit: FULL (fsynced) when full,
 * else NORMAL (lazy). A pragma takes effect when compiled, so it is run as text, and only
 * when the setting changes. A failure leaves the setting as recorded, and the write fails:
 * a durable write never commits unsynced. */
static int store_sync(struct bh_store *s, int full, struct bh_err *err)
{
    if (s->sync_full == full)
        return 0;
    if (store_exec(s, full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", err) < 0)
        return -1;
    s->sync_full = full;
    return 0;
}

static int store_write_locked(struct bh_store *s, const struct store_req *req,
                              store_mutate_fn mutate, struct store_write *w, struct bh_err *err)
{
    cJSON *cur = NULL;
    int64_t rv = 0;
    if (store_sync(s, !req->lazy, err) < 0 || store_run(s, "BEGIN IMMEDIATE", err) < 0)
        return -1;
    int rc = store_load(s, req->kind, req->name, &cur, err);
    if (rc == 0)
        rc = store_meta_get(s, "rv", &rv, err);
    if (rc == 0)
        rc = mutate(cur, req, rv + 1, w, err);
    if (rc == 0 && w->doc) {
        w->rv = rv + 1;
        rc = store_record(s, w, err);
    }
    if (rc == 0 && w->doc)
        rc = store_run(s, "COMMIT", err);
    else
        store_run(s, "ROLLBACK", NULL);
    /* A COMMIT that failed leaves the transaction open; close it or every later BEGIN fails. */
    if (rc < 0 && w->doc && sqlite3_get_autocommit(s->db) == 0)
        store_run(s, "ROLLBACK", NULL);
    if (rc == 0 && !w->doc)
        w->doc = BH_STEAL(cur); /* a no-op write answers with the current object */
    cJSON_Delete(cur);
    return rc;
}

/* Runs one write transaction and, once committed, wakes watchers and calls subscribers.
 * *out (optional) receives the resulting object. */
static int store_write(struct bh_store *s, const struct store_req *req, store_mutate_fn mutate,
                       cJSON **out, struct bh_err *err)
{
    struct store_write w = {0};
    if (!req->kind || !req->name)
        return bh_err_set(err, BH_EINVAL, "kind and metadata.name are required");
    double t0 = store_now();
    pthread_mutex_lock(&s->mu);
    int rc = store_write_locked(s, req, mutate, &w, err);
    if (store_cached(s, req->kind)) /* whatever the outcome: the next read loads the truth */
        bh_objcache_drop(s->cache, req->kind, req->name);
    if (rc == 0 && w.rv)
        pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->mu);
    if (w.rv)
        store_observe(s, t0);
    if (rc == 0 && w.rv)
        store_notify(s, &w);
    if (rc == 0 && out)
        *out = BH_STEAL(w.doc);
    cJSON_Delete(w.doc);
    return rc;
}

/* The current object exists and the caller's resourceVersion (if any) is its current one. */
static int store_check_current(const cJSON *cur, const struct store_req *req, struct bh_err *err)
{
    int64_t want;
    if (!cur)
        return bh_err_set(err, BH_ENOTFOUND, "%s %s not found", req->kind, req->name);
    if (store_expected_rv(req->in, &want, err) < 0)
        return -1;
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(cur, "metadata");
    const char *have =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(meta, "resourceVersion"));
    if (want && (!have || strtoll(have, NULL, 10) != want))
        return bh_err_set(err, BH_ECONFLICT,
                          "%s %s (resourceVersion %s, not %lld): " BH_STORE_STALE_MSG, req->kind,
                          req->name, have ? have : "?", (long long)want);
    return 0;
}

/* The system metadata of a new object; user metadata (labels, ...) is copied from `in`. */
static cJSON *store_new_metadata(const cJSON *in_meta, int64_t rv)
{
    cJSON *meta = cJSON_Duplicate(in_meta, 1);
    static const char *const system[] = {"uid", "generation", "resourceVersion",
                                         "creationTimestamp", "deletionTimestamp"};
    for (size_t i = 0; i < BH_ARRAY_LEN(system); i++)
        cJSON_DeleteItemFromObjectCaseSensitive(meta, system[i]);
    char uid[37], ts[21];
    store_uuid4(uid);
    store_now_rfc3339(ts);
    if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(meta, "namespace")))
        store_set(meta, "namespace", cJSON_CreateString("default"));
    cJSON_AddStringToObject(meta, "uid", uid);
    cJSON_AddNumberToObject(meta, "generation", 1);
    store_set_rv(meta, rv);
    cJSON_AddStringToObject(meta, "creationTimestamp", ts);
    return meta;
}

static int store_mutate_create(const cJSON *cur, const struct store_req *req, int64_t rv,
                               struct store_write *w, struct bh_err *err)
{
    if (cur)
        return bh_err_set(err, BH_ECONFLICT, "%s %s already exists", req->kind, req->name);
    w->type = BH_EV_ADDED;
    w->doc = cJSON_Duplicate(req->in, 1);
    store_set(w->doc, "metadata",
              store_new_metadata(cJSON_GetObjectItemCaseSensitive(req->in, "metadata"), rv));
    return 0;
}

static struct store_req store_req_of(const cJSON *obj)
{
    return (struct store_req){store_kind(obj), store_name(obj), obj, 0};
}

int bh_store_create(struct bh_store *s, const cJSON *obj, cJSON **out, struct bh_err *err)
{
    struct store_req req = store_req_of(obj);
    return store_write(s, &req, store_mutate_create, out, err);
}

int bh_store_create_lazy(struct bh_store *s, const cJSON *obj, cJSON **out, struct bh_err *err)
{
    struct store_req req = store_req_of(obj);
    req.lazy = 1;
    return store_write(s, &req, store_mutate_create, out, err);
}

/* Replaces key in dst with a copy of src's (or removes it when src has none). */
static void store_copy_field(cJSON *dst, const cJSON *src, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(src, key);
    if (v)
        store_set(dst, key, cJSON_Duplicate(v, 1));
    else
        cJSON_DeleteItemFromObjectCaseSensitive(dst, key);
}

/* Everything but metadata and status is "the spec" for generation purposes, so internal kinds
 * that keep their desired state in other top-level fields get the same semantics. */
static int store_replace_spec(cJSON *doc, const cJSON *in)
{
    cJSON *before = cJSON_Duplicate(doc, 1);
    const cJSON *f;
    cJSON_ArrayForEach(f, in) {
        if (strcmp(f->string, "metadata") && strcmp(f->string, "status"))
            store_set(doc, f->string, cJSON_Duplicate(f, 1));
    }
    for (cJSON *g = doc->child, *next; g; g = next) {
        next = g->next;
        if (strcmp(g->string, "metadata") && strcmp(g->string, "status") &&
            !cJSON_HasObjectItem(in, g->string))
            cJSON_DeleteItemFromObjectCaseSensitive(doc, g->string);
    }
    cJSON_DeleteItemFromObjectCaseSensitive(before, "metadata");
    cJSON_DeleteItemFromObjectCaseSensitive(before, "status");
    cJSON *after = cJSON_Duplicate(doc, 1);
    cJSON_DeleteItemFromObjectCaseSensitive(after, "metadata");
    cJSON_DeleteItemFromObjectCaseSensitive(after, "status");
    int changed = !cJSON_Compare(before, after, 1);
    cJSON_Delete(before);
    cJSON_Delete(after);
    return changed;
}

static void store_bump_generation(cJSON *meta)
{
    double g = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(meta, "generation"));
    store_set(meta, "generation", cJSON_CreateNumber(g + 1));
}

/* Finishes a mutation that produced doc: a no-op is not written; a deleting object whose last
 * finalizer went away is removed. */
static void store_finish(const cJSON *cur, cJSON *doc, int64_t rv, struct store_write *w)
{
    if (cJSON_Compare(cur, doc, 1)) {
        cJSON_Delete(doc);
        return;
    }
    store_set_rv(cJSON_GetObjectItemCaseSensitive(doc, "metadata"), rv);
    w->doc = doc;
    w->type = store_is_deleting(doc) && !store_has_finalizers(doc) ? BH_EV_DELETED : BH_EV_MODIFIED;
}

/* Spec and user metadata from req->in; status too when with_status. */
static int store_update_doc(const cJSON *cur, const struct store_req *req, int64_t rv,
                            int with_status, struct store_write *w, struct bh_err *err)
{
    if (store_check_current(cur, req, err) < 0)
        return -1;
    cJSON *doc = cJSON_Duplicate(cur, 1);
    cJSON *meta = cJSON_GetObjectItemCaseSensitive(doc, "metadata");
    const cJSON *in_meta = cJSON_GetObjectItemCaseSensitive(req->in, "metadata");
    static const char *const user[] = {"labels", "annotations", "finalizers"};
    for (size_t i = 0; i < BH_ARRAY_LEN(user); i++)
        store_copy_field(meta, in_meta, user[i]);
    /* Field owners (the Kubernetes-compatible API's server-side apply) change only when a
     * writer sends them; the controllers' writes keep them. */
    if (cJSON_GetObjectItemCaseSensitive(in_meta, "managedFields"))
        store_copy_field(meta, in_meta, "managedFields");
    if (store_replace_spec(doc, req->in))
        store_bump_generation(meta);
    if (with_status)
        store_copy_field(doc, req->in, "status");
    store_finish(cur, doc, rv, w);
    return 0;
}

static int store_mutate_update(const cJSON *cur, const struct store_req *req, int64_t rv,
                               struct store_write *w, struct bh_err *err)
{
    return store_update_doc(cur, req, rv, 0, w, err);
}

static int store_mutate_update_all(const cJSON *cur, const struct store_req *req, int64_t rv,
                                   struct store_write *w, struct bh_err *err)
{
    return store_update_doc(cur, req, rv, 1, w, err);
}

int bh_store_update(struct bh_store *s, const cJSON *obj, cJSON **out, struct bh_err *err)
{
    struct store_req req = store_req_of(obj);
    return store_write(s, &req, store_mutate_update, out, err);
}

int bh_store_update_lazy(struct bh_store *s, const cJSON *obj, cJSON **out, struct bh_err *err)
{
    struct store_req req = store_req_of(obj);
    req.lazy = 1;
    return store_write(s, &req, store_mutate_update, out, err);
}

int bh_store_update_all_lazy(struct bh_store *s, const cJSON *obj, cJSON **out, struct bh_err *err)
{
    struct store_req req = store_req_of(obj);
    req.lazy = 1;
    return store_write(s, &req, store_mutate_update_all, out, err);
}

static int store_mutate_status(const cJSON *cur, const struct store_req *req, int64_t rv,
                               struct store_write *w, struct bh_err *err)
{
    if (store_check_current(cur, req, err) < 0)
        return -1;
    cJSON *doc = cJSON_Duplicate(cur, 1);
    store_copy_field(doc, req->in, "status");
    store_finish(cur, doc, rv, w);
    return 0;
}

int bh_store_update_status(struct bh_store *s, const cJSON *obj, cJSON **out, struct bh_err *err)
{
    struct store_req req = store_req_of(obj);
    return store_write(s, &req, store_mutate_status, out, err);
}

int bh_store_update_status_lazy(struct bh_store *s, const cJSON *obj, cJSON **out,
                                struct bh_err *err)
{
    struct store_req req = store_req_of(obj);
    req.lazy = 1;
    return store_write(s, &req, store_mutate_status, out, err);
}

static int store_mutate_delete(const cJSON *cur, const struct store_req *req, int64_t rv,
                               struct store_write *w, struct bh_err *err)
{
    if (store_check_current(cur, req, err) < 0)
        return -1;
    if (store_is_deleting(cur))
        return 0; /* already waiting for its finalizers */
    cJSON *doc = cJSON_Duplicate(cur, 1);
    cJSON *meta = cJSON_GetObjectItemCaseSensitive(doc, "metadata");
    char ts[21];
    store_now_rfc3339(ts);
    cJSON_AddStringToObject(meta, "deletionTimestamp", ts);
    store_finish(cur, doc, rv, w);
    return 0;
}

int bh_store_delete(struct bh_store *s, const char *kind, const char *name, struct bh_err *err)
{
    struct store_req req = {kind, name, NULL, 0};
    return store_write(s, &req, store_mutate_delete, NULL, err);
}

/* The metadata a replica takes from its source (bh_store_put_replica). */
static cJSON *store_replica_metadata(const cJSON *in_meta)
{
    static const char *const kept[] = {"name",        "namespace",         "labels",
                                       "annotations", "finalizers",        "uid",
                                       "generation",  "creationTimestamp", "deletionTimestamp"};
    cJSON *meta = cJSON_CreateObject();
    for (size_t i = 0; i < BH_ARRAY_LEN(kept); i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(in_meta, kept[i]);
        if (v)
            cJSON_AddItemToObject(meta, kept[i], cJSON_Duplicate(v, 1));
    }
    return meta;
}

static int store_mutate_replica(const cJSON *cur, const struct store_req *req, int64_t rv,
                                struct store_write *w, struct bh_err *err)
{
    (void)err;
    if (!req->in) { /* the source removed it */
        if (cur) {
            w->type = BH_EV_DELETED;
            w->doc = cJSON_Duplicate(cur, 1);
            store_set_rv(cJSON_GetObjectItemCaseSensitive(w->doc, "metadata"), rv);
        }
        return 0;
    }
    cJSON *doc = cJSON_Duplicate(req->in, 1);
    cJSON *meta = store_replica_metadata(cJSON_GetObjectItemCaseSensitive(req->in, "metadata"));
    store_set(doc, "metadata", meta);
    if (!cur) {
        store_set_rv(meta, rv);
        w->type = BH_EV_ADDED;
        w->doc = doc;
        return 0;
    }
    /* Compared with the stored object as it is, its resourceVersion included. */
    const cJSON *cur_meta = cJSON_GetObjectItemCaseSensitive(cur, "metadata");
    store_copy_field(meta, cur_meta, "resourceVersion");
    store_finish(cur, doc, rv, w);
    return 0;
}

int bh_store_put_replica(struct bh_store *s, const cJSON *obj, cJSON **out, struct bh_err *err)
{
    struct store_req req = store_req_of(obj);
    return store_write(s, &req, store_mutate_replica, out, err);
}

int bh_store_remove_replica(struct bh_store *s, const char *kind, const char *name,
                            struct bh_err *err)
{
    struct store_req req = {kind, name, NULL, 0};
    return store_write(s, &req, store_mutate_replica, NULL, err);
}

/* ---- watching ---------------------------------------------------------------------------- */

static const char *store_event_type_name(int type)
{
    static const char *const names[] = {"", "ADDED", "MODIFIED", "DELETED"};
    return type >= BH_EV_ADDED && type <= BH_EV_DELETED ? names[type] : "ERROR";
}

static int store_read_events(struct bh_store *s, const char *kind, int64_t since, cJSON *arr,
                             struct bh_err *err)
{
    store_autostmt st = NULL;
    if (store_prepare(s,
                      "SELECT type, doc FROM events WHERE rv > ?1 AND (?2 IS NULL OR kind = ?2)"
                      " ORDER BY rv LIMIT ?3",
                      &st, err) < 0)
        return -1;
    sqlite3_bind_int64(st, 1, since);
    sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, STORE_EVENTS_BATCH);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        cJSON *ev = cJSON_CreateObject();
        cJSON_AddStringToObject(ev, "type", store_event_type_name(sqlite3_column_int(st, 0)));
        cJSON *doc = store_column_json(st, 1);
        cJSON_AddItemToObject(ev, "object", doc ? doc : cJSON_CreateNull());
        cJSON_AddItemToArray(arr, ev);
    }
    return rc == SQLITE_DONE ? 0 : store_sqlerr(s, err, "read events");
}

static int store_events_locked(struct bh_store *s, const char *kind, int64_t since, int timeout_ms,
                               cJSON *arr, struct bh_err *err)
{
    struct timespec deadline;
    bh_clock_deadline(CLOCK_MONOTONIC, timeout_ms > 0 ? timeout_ms : 0, &deadline);
    unsigned wakes = s->wakes;
    for (;;) {
        int64_t compacted;
        if (store_meta_get(s, "compacted_rv", &compacted, err) < 0)
            return -1;
        if (since < compacted)
            return bh_err_set(err, BH_ECONFLICT,
                              "resourceVersion %lld is too old (oldest retained is %lld)",
                              (long long)since, (long long)compacted + 1);
        if (store_read_events(s, kind, since, arr, err) < 0)
            return -1;
        if (cJSON_GetArraySize(arr) > 0 || s->wakes != wakes ||
            pthread_cond_timedwait(&s->changed, &s->mu, &deadline) == ETIMEDOUT)
            return 0;
    }
}

void bh_store_wake(struct bh_store *s)
{
    pthread_mutex_lock(&s->mu);
    s->wakes++;
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->mu);
}

int bh_store_events_since(struct bh_store *s, const char *kind, int64_t since, int timeout_ms,
                          cJSON **out, struct bh_err *err)
{
    cJSON *arr = cJSON_CreateArray();
    pthread_mutex_lock(&s->mu);
    int rc = store_events_locked(s, kind, since, timeout_ms, arr, err);
    pthread_mutex_unlock(&s->mu);
    if (rc < 0) {
        cJSON_Delete(arr);
        return -1;
    }
    *out = arr;
    return 0;
}

/* ---- the key-value store of Lua scripts ---------------------------------------------------- */

/* One kv statement, lazily committed (like bh_store_update_status_lazy: a daemon crash loses
 * nothing, a power loss the counts since the last ordinary write). s->mu keeps it out of the
 * transactions of resource writes on the same connection. */
static int store_kv_run(struct bh_store *s, const char *sql, const char *ns, const char *key,
                        const char *value, long long expires, char **out, struct bh_err *err)
{
    pthread_mutex_lock(&s->mu);
    int rc = store_sync(s, 0, err);
    sqlite3_stmt *st = NULL;
    if (rc == 0)
        rc = store_prepare(s, sql, &st, err);
    if (rc == 0) {
        /* Statements use the parameters they need; binding one a statement lacks is a no-op. */
        long long now = (long long)time(NULL);
        sqlite3_bind_text(st, 1, ns, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, now);
        sqlite3_bind_text(st, 4, value ? value : "", -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, expires > 0 ? now + expires : 0);
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW && out)
            *out = bh_xstrdup((const char *)sqlite3_column_text(st, 0));
        else if (step != SQLITE_ROW && step != SQLITE_DONE)
            rc = store_sqlerr(s, err, "kv");
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* A row whose expires is set and past counts as absent (?3 is now). */
#define STORE_KV_LIVE "(expires = 0 OR expires > ?3)"

int bh_store_kv_get(struct bh_store *s, const char *ns, const char *key, char **out,
                    struct bh_err *err)
{
    *out = NULL;
    return store_kv_run(s, "SELECT value FROM kv WHERE ns = ?1 AND key = ?2 AND " STORE_KV_LIVE, ns,
                        key, NULL, 0, out, err);
}

int bh_store_kv_set(struct bh_store *s, const char *ns, const char *key, const char *value,
                    long long ttl_s, struct bh_err *err)
{
    return store_kv_run(s,
                        "INSERT INTO kv VALUES (?1, ?2, ?4, ?5) ON CONFLICT (ns, key) DO UPDATE"
                        " SET value = ?4, expires = ?5",
                        ns, key, value, ttl_s, NULL, err);
}

int bh_store_kv_incr(struct bh_store *s, const char *ns, const char *key, long long ttl_s,
                     long long *out, struct bh_err *err)
{
    /* One statement, so concurrent increments never lose a count. An expired counter starts
     * over with a fresh TTL; a live one keeps the expiry it was given when it started. */
    bh_autofree char *v = NULL;
    int rc = store_kv_run(
        s,
        "INSERT INTO kv VALUES (?1, ?2, '1', ?5) ON CONFLICT (ns, key) DO UPDATE SET"
        " value = CASE WHEN " STORE_KV_LIVE " THEN CAST(CAST(value AS INTEGER) + 1 AS TEXT)"
        " ELSE '1' END,"
        " expires = CASE WHEN " STORE_KV_LIVE " THEN expires ELSE ?5 END"
        " RETURNING value",
        ns, key, NULL, ttl_s, &v, err);
    if (rc == 0)
        *out = v ? strtoll(v, NULL, 10) : 0;
    return rc;
}

int bh_store_kv_del(struct bh_store *s, const char *ns, const char *key, struct bh_err *err)
{
    return store_kv_run(s, "DELETE FROM kv WHERE ns = ?1 AND key = ?2", ns, key, NULL, 0, NULL,
                        err);
}

/* ---- statements of modules with their own tables (token.c) ---------------------------------- */

static cJSON *store_row_json(sqlite3_stmt *st)
{
    cJSON *row = cJSON_CreateObject();
    for (int i = 0; i < sqlite3_column_count(st); i++) {
        const char *col = sqlite3_column_name(st, i);
        int type = sqlite3_column_type(st, i);
        if (type == SQLITE_INTEGER)
            cJSON_AddNumberToObject(row, col, (double)sqlite3_column_int64(st, i));
        else if (type == SQLITE_NULL)
            cJSON_AddNullToObject(row, col);
        else
            cJSON_AddStringToObject(row, col, (const char *)sqlite3_column_text(st, i));
    }
    return row;
}

static int store_sql_locked(struct bh_store *s, const char *sql, const char *const *args, int nargs,
                            cJSON *rows, int *changes, struct bh_err *err)
{
    store_autostmt st = NULL;
    if (store_sync(s, 1, err) < 0 || store_prepare(s, sql, &st, err) < 0)
        return -1;
    for (int i = 0; i < nargs; i++)
        sqlite3_bind_text(st, i + 1, args[i], -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if (rows)
            cJSON_AddItemToArray(rows, store_row_json(st));
    if (rc != SQLITE_DONE)
        return store_sqlerr(s, err, "statement");
    if (changes)
        *changes = sqlite3_changes(s->db);
    return 0;
}

int bh_store_sql(struct bh_store *s, const char *sql, const char *const *args, int nargs,
                 cJSON **rows, int *changes, struct bh_err *err)
{
    cJSON *arr = rows ? cJSON_CreateArray() : NULL;
    double t0 = store_now();
    pthread_mutex_lock(&s->mu);
    int rc = store_sql_locked(s, sql, args, nargs, arr, changes, err);
    pthread_mutex_unlock(&s->mu);
    if (changes && *changes > 0)
        store_observe(s, t0);
    if (rc < 0) {
        cJSON_Delete(arr);
        return -1;
    }
    if (rows)
        *rows = arr;
    return 0;
}
