/* API tokens (store/token.c) and the auth decisions (controllers/auth.c) on a real SQLite
 * store in a temp dir: mint, lookup by the secret only, expiry, revocation, per-claim
 * revocation, the store's schema migration from a database made before versioning, and the
 * table of scope x route need. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "fs.h"
#include "json.h"
#include "mem.h"
#include "store.h"
#include "token.h"

struct fx {
    char dir[64];
    char db[96];
    struct bh_store *s;
    struct bh_ctx ctx;
};

static int setup(void **state)
{
    struct fx *f = bh_xcalloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/bh-test-auth-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof(f->db), "%s/store.db", f->dir);
    struct bh_err err;
    if (bh_store_open(f->db, &f->s, &err) < 0)
        fail_msg("open: %s", err.msg);
    f->ctx.store = f->s;
    f->ctx.cfg.api_key = "the-admin-key";
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    struct bh_err err;
    bh_store_close(f->s);
    assert_int_equal(bh_fs_rmtree(f->dir, &err), 0);
    free(f);
    return 0;
}

static char *mint(struct fx *f, const char *scope, long long ttl, const char *claim, char *id)
{
    const char *scopes[] = {scope};
    struct bh_token_spec spec = {.name = "t",
                                 .scopes = scopes,
                                 .n_scopes = 1,
                                 .ttl_s = ttl,
                                 .workload = claim ? "agent" : NULL,
                                 .claim = claim};
    char *secret = NULL;
    struct bh_err err;
    if (bh_token_mint(f->s, &spec, &secret, id, &err) < 0)
        fail_msg("mint: %s", err.msg);
    return secret;
}

static int principal(struct fx *f, const char *secret, enum bh_auth_via via, struct bh_principal *p)
{
    struct bh_err err;
    bh_autofree char *h = secret ? bh_xasprintf("Bearer %s", secret) : NULL;
    return bh_auth_principal(&f->ctx, h, via, p, &err);
}

static void test_mint_lookup_revoke(void **state)
{
    struct fx *f = *state;
    char id[BH_TOKEN_ID_LEN];
    bh_autofree char *secret = mint(f, "viewer", 0, NULL, id);
    assert_int_equal(strlen(secret), 4 + 64);
    struct bh_principal p;
    assert_int_equal(principal(f, secret, BH_AUTH_VIA_LISTENER, &p), 0);
    assert_int_equal(p.scopes, BH_AUTH_SCOPE_VIEWER);
    assert_true(strncmp(p.actor, "token:tok-", 10) == 0);
    /* One character off is no token. */
    secret[10] = secret[10] == 'a' ? 'b' : 'a';
    assert_int_equal(principal(f, secret, BH_AUTH_VIA_LISTENER, &p), -1);
    secret[10] = secret[10] == 'a' ? 'b' : 'a';
    struct bh_err err;
    assert_int_equal(bh_token_revoke(f->s, id, &err), 0);
    assert_int_equal(principal(f, secret, BH_AUTH_VIA_LISTENER, &p), -1);
    assert_int_equal(bh_token_revoke(f->s, "tok-000000000000", &err), -1);
    assert_int_equal(err.code, BH_ENOTFOUND);
}

static void test_expiry(void **state)
{
    struct fx *f = *state;
    char id[BH_TOKEN_ID_LEN];
    bh_autofree char *secret = mint(f, "admin", 1, NULL, id);
    struct bh_principal p;
    assert_int_equal(principal(f, secret, BH_AUTH_VIA_LISTENER, &p), 0);
    /* The expiry is in the row; wait it out on the wall clock (ms resolution). */
    for (int i = 0; i < 300 && principal(f, secret, BH_AUTH_VIA_LISTENER, &p) == 0; i++)
        usleep(10000);
    assert_int_equal(principal(f, secret, BH_AUTH_VIA_LISTENER, &p), -1);
}

static void test_claim_tokens_revoked_together(void **state)
{
    struct fx *f = *state;
    char a[BH_TOKEN_ID_LEN], b[BH_TOKEN_ID_LEN], c[BH_TOKEN_ID_LEN];
    bh_autofree char *s1 = mint(f, "tenant:alice", 0, "claim-1", a);
    bh_autofree char *s2 = mint(f, "tenant:alice", 0, "claim-1", b);
    bh_autofree char *s3 = mint(f, "tenant:bob", 0, "claim-2", c);
    int n = 0;
    struct bh_err err;
    assert_int_equal(bh_token_revoke_claim(f->s, "claim-1", &n, &err), 0);
    assert_int_equal(n, 2);
    struct bh_principal p;
    assert_int_equal(principal(f, s1, BH_AUTH_VIA_LISTENER, &p), -1);
    assert_int_equal(principal(f, s2, BH_AUTH_VIA_LISTENER, &p), -1);
    assert_int_equal(principal(f, s3, BH_AUTH_VIA_INSTANCE, &p), 0);
    assert_string_equal(p.workload, "agent");
    assert_int_equal(p.n_tenants, 1);
    assert_string_equal(p.tenants[0], "bob");
}

static void test_bad_specs(void **state)
{
    struct fx *f = *state;
    static const char *const bad[] = {"root", "tenant:", "tenant:a/b", "tenant:-x", "Admin", ""};
    for (size_t i = 0; i < BH_ARRAY_LEN(bad); i++) {
        const char *scopes[] = {bad[i]};
        struct bh_token_spec spec = {.name = "t", .scopes = scopes, .n_scopes = 1};
        char id[BH_TOKEN_ID_LEN], *secret = NULL;
        struct bh_err err;
        assert_int_equal(bh_token_mint(f->s, &spec, &secret, id, &err), -1);
        assert_int_equal(err.code, BH_EINVAL);
        assert_non_null(strstr(err.msg, "scopes[0]"));
        assert_null(secret);
    }
    cJSON *list = NULL;
    struct bh_err err;
    assert_int_equal(bh_token_list(f->s, &list, &err), 0);
    assert_int_equal(cJSON_GetArraySize(list), 0);
    cJSON_Delete(list);
}

static void test_admin_key_and_open_access(void **state)
{
    struct fx *f = *state;
    struct bh_principal p;
    assert_int_equal(principal(f, "the-admin-key", BH_AUTH_VIA_LISTENER, &p), 0);
    assert_string_equal(p.actor, "admin");
    assert_int_equal(principal(f, NULL, BH_AUTH_VIA_LISTENER, &p), -1);
    f->ctx.cfg.api_key = NULL; /* loopback without a key: open, but never from an instance */
    assert_int_equal(principal(f, NULL, BH_AUTH_VIA_LISTENER, &p), 0);
    assert_string_equal(p.actor, "anonymous");
    assert_int_equal(principal(f, "local-mode", BH_AUTH_VIA_LISTENER, &p), 0);
    assert_string_equal(p.actor, "anonymous");
    assert_int_equal(principal(f, NULL, BH_AUTH_VIA_INSTANCE, &p), -1);
    assert_int_equal(principal(f, "local-mode", BH_AUTH_VIA_INSTANCE, &p), -1);
}

/* The decision table: scope x need x tenant. */
static void test_allow_table(void **state)
{
    (void)state;
    static struct bh_principal admin = {.actor = "admin", .scopes = BH_AUTH_SCOPE_ADMIN};
    static struct bh_principal viewer = {.actor = "v", .scopes = BH_AUTH_SCOPE_VIEWER};
    static struct bh_principal alice = {.actor = "a", .n_tenants = 1, .tenants = {"alice"}};
    static struct bh_principal agent = {
        .actor = "c", .n_tenants = 1, .tenants = {"alice"}, .workload = "agent"};
    const struct {
        const struct bh_principal *p;
        enum bh_auth_need need;
        const char *tenant, *workload;
        int ok;
    } rows[] = {
        {&admin, BH_AUTH_ADMIN, NULL, NULL, 1},
        {&admin, BH_AUTH_CLAIM, "bob", "x", 1},
        {&viewer, BH_AUTH_READ, NULL, NULL, 1},
        {&viewer, BH_AUTH_TENANT_READ, "bob", NULL, 1},
        {&viewer, BH_AUTH_CLAIM, "bob", "x", 0},
        {&viewer, BH_AUTH_ADMIN, NULL, NULL, 0},
        {&alice, BH_AUTH_CLAIM, "alice", "x", 1},
        {&alice, BH_AUTH_CLAIM, "bob", "x", 0},
        {&alice, BH_AUTH_TENANT_READ, "alice", NULL, 1},
        {&alice, BH_AUTH_TENANT_READ, "bob", NULL, 0},
        {&alice, BH_AUTH_READ, NULL, NULL, 0},
        {&alice, BH_AUTH_ADMIN, NULL, NULL, 0},
        {&alice, BH_AUTH_ANY, NULL, NULL, 1},
        {&agent, BH_AUTH_CLAIM, "alice", "agent", 1},
        {&agent, BH_AUTH_CLAIM, "alice", "other", 0},
        {&agent, BH_AUTH_CLAIM, "bob", "agent", 0},
    };
    for (size_t i = 0; i < BH_ARRAY_LEN(rows); i++) {
        struct bh_err err = {0};
        int rc = bh_auth_allow(rows[i].p, rows[i].need, rows[i].tenant, rows[i].workload, &err);
        if ((rc == 0) != rows[i].ok)
            fail_msg("row %zu: %d (%s)", i, rc, err.msg);
        if (rc < 0) {
            assert_int_equal(err.code, BH_EFORBIDDEN);
            assert_non_null(strstr(err.msg, "token scope "));
        }
    }
    const char *t = NULL;
    struct bh_err err;
    assert_int_equal(bh_auth_ws_tenant(&alice, NULL, &t, &err), 0);
    assert_string_equal(t, "alice");
    assert_int_equal(bh_auth_ws_tenant(&alice, "bob", &t, &err), -1);
    assert_int_equal(bh_auth_ws_tenant(&viewer, "bob", &t, &err), 0);
    assert_null(t);
}

/* A store.db made before migrations (no user_version, no tokens table) opens, gains the
 * table and keeps its objects. */
static void test_migration_from_unversioned(void **state)
{
    struct fx *f = *state;
    bh_store_close(f->s);
    f->s = NULL;
    unlink(f->db);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db,
                     "CREATE TABLE objects (kind TEXT NOT NULL, name TEXT NOT NULL, uid TEXT NOT "
                     "NULL, rv INTEGER NOT NULL, generation INTEGER NOT NULL, doc TEXT NOT NULL,"
                     " PRIMARY KEY (kind, name));"
                     "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
                     "INSERT INTO meta VALUES ('rv', 7), ('compacted_rv', 0);"
                     "INSERT INTO objects VALUES ('Instance', 'old', 'u', 7, 1,"
                     " '{\"kind\":\"Instance\",\"metadata\":{\"name\":\"old\"}}');",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    struct bh_err err;
    if (bh_store_open(f->db, &f->s, &err) < 0)
        fail_msg("open: %s", err.msg);
    f->ctx.store = f->s;
    cJSON *old = NULL;
    assert_int_equal(bh_store_get(f->s, "Instance", "old", &old, &err), 0);
    cJSON_Delete(old);
    char id[BH_TOKEN_ID_LEN];
    bh_autofree char *secret = mint(f, "viewer", 0, NULL, id);
    cJSON *rows = NULL;
    assert_int_equal(bh_store_sql(f->s, "PRAGMA user_version", NULL, 0, &rows, NULL, &err), 0);
    assert_int_equal(bh_json_int(cJSON_GetArrayItem(rows, 0), "user_version", 0), 2);
    cJSON_Delete(rows);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_mint_lookup_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_tokens_revoked_together, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_specs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admin_key_and_open_access, setup, teardown),
        cmocka_unit_test_setup_teardown(test_allow_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_from_unversioned, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
