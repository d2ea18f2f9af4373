/* `boilerhouse secret set NAME KEY | get NAME KEY | list | delete NAME [KEY]` with
 * [--tenant T] [--state-dir DIR]. set reads the value from stdin (one trailing newline is
 * dropped, so `echo v | ...` stores "v"); get prints it followed by a newline. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crypto.h"
#include "mem.h"
#include "secret.h"

#define SCLI_DEFAULT_STATE_DIR "/var/lib/boilerhouse"
#define SCLI_MAX_ARGS 3
#define SCLI_MAX_VALUE (1u << 20)

struct scli {
    const char *state_dir, *tenant;
    const char *args[SCLI_MAX_ARGS]; /* subcommand and operands */
    int n;
};

static int scli_usage(void)
{
    fputs("usage: boilerhouse secret set NAME KEY (value on stdin) | get NAME KEY | list\n"
          "                         | delete NAME [KEY]\n"
          "       options: --tenant T  --state-dir DIR (BOILERHOUSE_STATE_DIR)\n",
          stderr);
    return 2;
}

static int scli_parse(int argc, char **argv, struct scli *o)
{
    const char *env = getenv("BOILERHOUSE_STATE_DIR");
    o->state_dir = env && env[0] ? env : SCLI_DEFAULT_STATE_DIR;
    for (int i = 1; i < argc; i++) {
        const char **opt = !strcmp(argv[i], "--state-dir") ? &o->state_dir
                           : !strcmp(argv[i], "--tenant")  ? &o->tenant
                                                           : NULL;
        if (opt && i + 1 < argc)
            *opt = argv[++i];
        else if (opt || argv[i][0] == '-' || o->n == SCLI_MAX_ARGS)
            return -1;
        else
            o->args[o->n++] = argv[i];
    }
    return o->n > 0 ? 0 : -1;
}

/* Owned, wipe before free. */
static char *scli_read_stdin(void)
{
    size_t cap = 4096, len = 0;
    char *buf = bh_xmalloc(cap);
    for (size_t n; (n = fread(buf + len, 1, cap - len - 1, stdin)) > 0;) {
        len += n;
        if (len + 1 < cap)
            continue;
        if (cap >= SCLI_MAX_VALUE)
            break;
        char *bigger = bh_xmalloc(cap * 2); /* not realloc: the old copy must be wiped */
        memcpy(bigger, buf, len);
        bh_crypto_wipe(buf, cap);
        free(buf);
        buf = bigger;
        cap *= 2;
    }
    if (len && buf[len - 1] == '\n')
        len--;
    buf[len] = '\0';
    return buf;
}

static int scli_set(struct bh_secrets *s, const struct scli *o, struct bh_err *err)
{
    char *value = scli_read_stdin();
    int rc = bh_secrets_set(s, o->tenant, o->args[1], o->args[2], value, err);
    bh_crypto_wipe(value, strlen(value));
    free(value);
    return rc;
}

static int scli_get(struct bh_secrets *s, const struct scli *o, struct bh_err *err)
{
    char *value = NULL;
    if (bh_secrets_get(s, o->tenant, o->args[1], o->args[2], &value, err) < 0)
        return -1;
    printf("%s\n", value);
    bh_crypto_wipe(value, strlen(value));
    free(value);
    return 0;
}

static int scli_list(struct bh_secrets *s, const struct scli *o, struct bh_err *err)
{
    cJSON *list = NULL;
    if (bh_secrets_list(s, &list, err) < 0)
        return -1;
    char *text = cJSON_Print(list);
    puts(text);
    free(text);
    cJSON_Delete(list);
    return 0;
}

static int scli_delete(struct bh_secrets *s, const struct scli *o, struct bh_err *err)
{
    return bh_secrets_delete(s, o->tenant, o->args[1], o->n > 2 ? o->args[2] : NULL, err);
}

static const struct {
    const char *name;
    int min_args, max_args; /* counting the subcommand */
    int (*run)(struct bh_secrets *s, const struct scli *o, struct bh_err *err);
} scli_cmds[] = {
    {"set", 3, 3, scli_set},
    {"get", 3, 3, scli_get},
    {"list", 1, 1, scli_list},
    {"delete", 2, 3, scli_delete},
};

int bh_secret_cli_main(int argc, char **argv)
{
    struct scli o = {0};
    if (scli_parse(argc, argv, &o) < 0)
        return scli_usage();
    for (size_t i = 0; i < BH_ARRAY_LEN(scli_cmds); i++) {
        if (strcmp(o.args[0], scli_cmds[i].name))
            continue;
        if (o.n < scli_cmds[i].min_args || o.n > scli_cmds[i].max_args)
            return scli_usage();
        struct bh_err err = {0};
        struct bh_secrets *s = NULL;
        int rc = bh_secrets_open(o.state_dir, &s, &err);
        rc = rc < 0 ? rc : scli_cmds[i].run(s, &o, &err);
        bh_secrets_close(s);
        if (rc < 0)
            fprintf(stderr, "boilerhouse secret: %s\n", err.msg);
        return rc < 0 ? 1 : 0;
    }
    return scli_usage();
}
