/* `boilerhouse policy test SCRIPT --event FILE|JSON [--workload FILE|JSON]`: runs a script on
 * a sample input, offline, under the daemon's limits, and prints what it decided. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "fs.h"
#include "lua_host.h"
#include "mem.h"
#include "resource.h"

/* An argument that is JSON ({...}) or names a JSON/YAML file. *out owned. */
static int cli_input(const char *arg, const char *what, cJSON **out, struct bh_err *err)
{
    bh_autofree char *text = NULL;
    size_t len = strlen(arg);
    if (arg[0] != '{' && bh_fs_read_all(arg, 1 << 20, &text, &len, err) < 0)
        return bh_err_wrap(err, "--%s", what);
    if (bh_resource_parse(text ? text : arg, len, out, err) < 0)
        return bh_err_wrap(err, "--%s", what);
    return 0;
}

static int cli_usage(void)
{
    fputs("usage: boilerhouse policy test SCRIPT --event FILE|JSON [--workload FILE|JSON]\n"
          "exit status: 0 allow, 1 deny, 2 error\n",
          stderr);
    return 2;
}

static int cli_test(const char *script, const char *event, const char *workload)
{
    cJSON *ev = NULL, *wl = NULL, *out = NULL;
    struct bh_err err = {0};
    int rc = cli_input(event, "event", &ev, &err);
    if (rc == 0 && workload)
        rc = cli_input(workload, "workload", &wl, &err);
    if (rc == 0)
        rc = bh_lua_policy_test(NULL, script, NULL, ev, wl, &out, &err);
    cJSON_Delete(ev);
    cJSON_Delete(wl);
    if (rc < 0) {
        fprintf(stderr, "boilerhouse: %s\n", err.msg);
        return 2;
    }
    bh_autofree char *text = cJSON_Print(out);
    puts(text);
    const char *decision = cJSON_GetStringValue(cJSON_GetObjectItem(out, "decision"));
    rc = strcmp(decision, "allow") == 0 ? 0 : strcmp(decision, "deny") == 0 ? 1 : 2;
    cJSON_Delete(out);
    return rc;
}

int bh_lua_cli_main(int argc, char **argv)
{
    static const struct option opts[] = {{"event", required_argument, NULL, 'e'},
                                         {"workload", required_argument, NULL, 'w'},
                                         {NULL, 0, NULL, 0}};
    if (argc < 3 || strcmp(argv[1], "test") != 0)
        return cli_usage();
    const char *event = NULL, *workload = NULL;
    int c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'e')
            event = optarg;
        else if (c == 'w')
            workload = optarg;
        else
            return cli_usage();
    }
    if (!event || optind != argc - 1)
        return cli_usage();
    return cli_test(argv[optind], event, workload);
}
