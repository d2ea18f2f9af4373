/* `boilerhouse token create NAME --scope S [--scope S ...] [--ttl SECONDS] | list | revoke ID`
 * with [--state-dir DIR]: API tokens (token.h) managed on the store directly, so the first
 * token can be minted before any credential exists. create prints the token once (stdout,
 * alone on its line) and its id on stderr; mint and revoke are recorded in the audit log with
 * the actor "cli". */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "crypto.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "num.h"
#include "store.h"
#include "token.h"

#define TCLI_DEFAULT_STATE_DIR "/var/lib/boilerhouse"

struct tcli {
    const char *state_dir;
    const char *cmd, *operand;
    const char *scopes[BH_TOKEN_MAX_SCOPES];
    int n_scopes;
    long long ttl_s;
};

static int tcli_usage(void)
{
    fputs("usage: boilerhouse token create NAME --scope admin|viewer|tenant:ID [--scope ...]\n"
          "                         [--ttl SECONDS] | list | revoke ID\n"
          "       options: --state-dir DIR (BOILERHOUSE_STATE_DIR)\n",
          stderr);
    return 2;
}

static int tcli_option(struct tcli *o, const char *opt, const char *val)
{
    struct bh_err err;
    if (!strcmp(opt, "--state-dir"))
        o->state_dir = val;
    else if (!strcmp(opt, "--scope") && o->n_scopes < BH_TOKEN_MAX_SCOPES)
        o->scopes[o->n_scopes++] = val;
    else if (!strcmp(opt, "--ttl") && bh_num_parse(val, 0, LLONG_MAX, &o->ttl_s, &err) < 0)
        return fprintf(stderr, "boilerhouse token: --ttl: %s\n", err.msg), -1;
    else if (strcmp(opt, "--ttl") != 0)
        return -1;
    return 0;
}

static int tcli_parse(int argc, char **argv, struct tcli *o)
{
    const char *env = getenv("BOILERHOUSE_STATE_DIR");
    o->state_dir = env && env[0] ? env : TCLI_DEFAULT_STATE_DIR;
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-') {
            if (i + 1 >= argc || tcli_option(o, argv[i], argv[i + 1]) < 0)
                return -1;
            i++;
        } else if (!o->cmd) {
            o->cmd = argv[i];
        } else if (!o->operand) {
            o->operand = argv[i];
        } else {
            return -1;
        }
    }
    if (!o->cmd)
        return -1;
    return (strcmp(o->cmd, "list") == 0) == !o->operand ? 0 : -1;
}

static void tcli_audit(const struct tcli *o, const char *action, const char *target, int rc,
                       const struct bh_err *err)
{
    struct bh_audit *a = NULL;
    struct bh_err aerr;
    bh_autofree char *path = bh_xasprintf("%s/audit.db", o->state_dir);
    struct bh_audit_rec rec = {.actor = "cli",
                               .action = action,
                               .target = target,
                               .outcome = rc == 0 ? "ok" : "error",
                               .error = rc == 0 ? NULL : err->msg};
    if (bh_audit_open(path, LLONG_MAX, &a, &aerr) < 0 || bh_audit_append(a, &rec, &aerr) < 0)
        fprintf(stderr, "boilerhouse token: %s not recorded in the audit log: %s\n", action,
                aerr.msg);
    bh_audit_close(a);
}

static int tcli_create(struct bh_store *s, const struct tcli *o, struct bh_err *err)
{
    struct bh_token_spec spec = {.name = o->operand,
                                 .scopes = o->scopes,
                                 .n_scopes = o->n_scopes,
                                 .ttl_s = o->ttl_s,
                                 .created_by = "cli"};
    char id[BH_TOKEN_ID_LEN] = "";
    char *secret = NULL;
    int rc = bh_token_mint(s, &spec, &secret, id, err);
    bh_autofree char *target = bh_xasprintf("%s (%s)", o->operand, id);
    tcli_audit(o, "token.mint", rc == 0 ? target : o->operand, rc, err);
    if (rc < 0)
        return -1;
    printf("%s\n", secret);
    fprintf(stderr, "token %s (%s) minted; it is shown only now\n", o->operand, id);
    bh_crypto_wipe(secret, strlen(secret));
    free(secret);
    return 0;
}

static int tcli_run(struct bh_store *s, const struct tcli *o, struct bh_err *err)
{
    if (strcmp(o->cmd, "create") == 0)
        return tcli_create(s, o, err);
    if (strcmp(o->cmd, "revoke") == 0) {
        int rc = bh_token_revoke(s, o->operand, err);
        tcli_audit(o, "token.revoke", o->operand, rc, err);
        return rc;
    }
    cJSON *list = NULL;
    if (bh_token_list(s, &list, err) < 0)
        return -1;
    bh_autofree char *text = cJSON_Print(list);
    printf("%s\n", text);
    cJSON_Delete(list);
    return 0;
}

int bh_token_cli_main(int argc, char **argv)
{
    struct tcli o = {0};
    if (tcli_parse(argc, argv, &o) < 0 ||
        (strcmp(o.cmd, "create") && strcmp(o.cmd, "list") && strcmp(o.cmd, "revoke")))
        return tcli_usage();
    struct bh_store *s = NULL;
    struct bh_err err = {0};
    bh_autofree char *db = bh_xasprintf("%s/store.db", o.state_dir);
    if (access(o.state_dir, W_OK) < 0) {
        fprintf(stderr, "boilerhouse token: state dir %s is not writable\n", o.state_dir);
        return 1;
    }
    int rc = bh_store_open(db, &s, &err);
    if (rc == 0)
        rc = tcli_run(s, &o, &err);
    bh_store_close(s);
    if (rc < 0)
        fprintf(stderr, "boilerhouse token: %s\n", err.msg);
    return rc < 0 ? 1 : 0;
}
