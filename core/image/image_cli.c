/* `boilerhouse image import PATH [NAME:TAG] | pull REF | ls [--state-dir DIR]
 *  [--registry-config FILE]`. */
#include "image_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"

#define CLI_DEFAULT_STATE_DIR "/var/lib/boilerhouse"
#define CLI_MAX_ARGS 3

struct cli_opts {
    const char *state_dir;
    const char *registry_config;
    const char *args[CLI_MAX_ARGS]; /* subcommand and its operands */
    int n_args;
};

static int cli_usage(void)
{
    fputs("usage: boilerhouse image import PATH [NAME:TAG] | pull REF | ls\n"
          "       options: --state-dir DIR  --registry-config FILE\n",
          stderr);
    return 2;
}

static int cli_parse(int argc, char **argv, struct cli_opts *o)
{
    const char *env = getenv("BOILERHOUSE_STATE_DIR");
    o->state_dir = env && env[0] ? env : CLI_DEFAULT_STATE_DIR;
    for (int i = 1; i < argc; i++) {
        const char **opt = strcmp(argv[i], "--state-dir") == 0         ? &o->state_dir
                           : strcmp(argv[i], "--registry-config") == 0 ? &o->registry_config
                                                                       : NULL;
        if (opt && i + 1 < argc)
            *opt = argv[++i];
        else if (opt || argv[i][0] == '-' || o->n_args == CLI_MAX_ARGS)
            return -1;
        else
            o->args[o->n_args++] = argv[i];
    }
    return o->n_args > 0 ? 0 : -1;
}

static int cli_uid_base(uint32_t *out, struct bh_err *err)
{
    const char *env = getenv("BOILERHOUSE_UID_BASE");
    if (!env || !env[0]) {
        *out = BH_DEFAULT_UID_BASE;
        return 0;
    }
    char *end;
    errno = 0;
    unsigned long v = strtoul(env, &end, 10);
    if (errno || *end || env[0] == '-' || v > 0xffff0000ul)
        return bh_err_set(err, BH_EINVAL, "BOILERHOUSE_UID_BASE=%s is not a valid uid", env);
    *out = (uint32_t)v;
    return 0;
}

static int cli_open(const struct cli_opts *o, struct bh_image_store **st, struct bh_err *err)
{
    uint32_t shift = BH_DEFAULT_UID_BASE;
    if (cli_uid_base(&shift, err) < 0)
        return -1;
    cJSON *cfg = NULL;
    if (o->registry_config) {
        if (bh_image_read_json_file(o->registry_config, 1u << 20, &cfg, err) < 0)
            return -1;
        if (!cJSON_IsObject(cfg)) {
            cJSON_Delete(cfg);
            return bh_err_set(err, BH_EINVAL, "%s: not a JSON object", o->registry_config);
        }
    }
    bh_autofree char *dir = bh_xasprintf("%s/images", o->state_dir);
    int r = bh_image_store_open(dir, shift, cfg, st, err);
    cJSON_Delete(cfg);
    return r;
}

static int cli_print_image(struct bh_image_store *st, const char *ref, struct bh_err *err)
{
    struct bh_image *img;
    if (bh_image_resolve(st, ref, &img, err) < 0)
        return -1;
    printf("%s %s\n", img->ref, img->digest);
    bh_image_free(img);
    return 0;
}

static int cli_import(struct bh_image_store *st, const struct cli_opts *o, struct bh_err *err)
{
    if (o->n_args < 2)
        return bh_err_set(err, BH_EINVAL, "image import needs a PATH");
    bh_autofree char *ref = NULL;
    if (bh_image_import(st, o->args[1], o->n_args > 2 ? o->args[2] : NULL, &ref, err) < 0)
        return -1;
    return cli_print_image(st, ref, err); /* also unpacks, so problems show now */
}

static int cli_pull(struct bh_image_store *st, const struct cli_opts *o, struct bh_err *err)
{
    if (o->n_args != 2)
        return bh_err_set(err, BH_EINVAL, "image pull needs exactly one REF");
    if (bh_image_pull(st, o->args[1], NULL, err) < 0)
        return -1;
    return cli_print_image(st, o->args[1], err);
}

static int cli_ls(struct bh_image_store *st, const struct cli_opts *o, struct bh_err *err)
{
    cJSON *refs = NULL;
    if (bh_image_list(st, &refs, err) < 0)
        return -1;
    const cJSON *r;
    cJSON_ArrayForEach(r, refs) {
        if (cJSON_IsString(r))
            printf("%s %s\n", r->string, r->valuestring);
    }
    cJSON_Delete(refs);
    return 0;
}

int bh_image_cli_main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(struct bh_image_store *, const struct cli_opts *, struct bh_err *);
    } cmds[] = {{"import", cli_import}, {"pull", cli_pull}, {"ls", cli_ls}};
    struct cli_opts o = {0};
    if (cli_parse(argc, argv, &o) < 0)
        return cli_usage();
    for (size_t i = 0; i < BH_ARRAY_LEN(cmds); i++) {
        if (strcmp(o.args[0], cmds[i].name) != 0)
            continue;
        struct bh_err err = {0};
        struct bh_image_store *st = NULL;
        int r = cli_open(&o, &st, &err);
        if (r == 0)
            r = cmds[i].run(st, &o, &err);
        bh_image_store_close(st);
        if (r < 0)
            fprintf(stderr, "boilerhouse image: %s\n", err.msg);
        return r < 0 ? 1 : 0;
    }
    return cli_usage();
}
