/* `boilerhouse kube render --workload FILE [options]`: prints the Kubernetes objects the Pod
 * runtime would create for one instance of a workload, as YAML (default) or JSON, so they can
 * be read, diffed or applied by hand. The workload is loaded and validated as the daemon
 * does (bh_resource_parse, bh_resource_validate). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "crypto.h"
#include "fs.h"
#include "json.h"
#include "mem.h"
#include "objects.h"
#include "resource.h"

#define CLI_MAX_CIDRS 16
#define CLI_MAX_FILE (1 << 20)

struct cli {
    const char *workload, *kind, *output, *ca_dir;
    struct bh_kube_instance inst;
    struct bh_kube_opts opts;
    const char *cidrs[CLI_MAX_CIDRS + 1];
    int n_cidrs;
    char id[13];
};

static int cli_usage(void)
{
    fputs("usage: boilerhouse kube render --workload FILE [--tenant ID] [--claim NAME]\n"
          "         [--pool NAME] [--id HEX12] [--image REF] [--image-user UID]\n"
          "         [--restore (the tenant has a snapshot: add the restore init container)]\n"
          "         [--kind pod|service|networkpolicy|secret|all] [--output yaml|json]\n"
          "         [--namespace NS] [--operator-namespace NS] [--cluster-cidr CIDR]...\n"
          "         [--dns-namespace NS] [--dns-label K=V] [--proxy-image REF]\n"
          "         [--ca-dir DIR (ca.crt, ca.key: the egress CA of a restricted workload)]\n",
          stderr);
    return 2;
}

/* ---- YAML output ------------------------------------------------------------------------- */

/* A string a YAML 1.2 reader would take for a number, bool or null unless quoted. */
static int cli_yaml_ambiguous(const char *s)
{
    static const char *const words[] = {
        "",      "~",   "null", "Null", "NULL",  "true", "True", "TRUE", "false", "False",
        "FALSE", "yes", "Yes",  "YES",  "no",    "No",   "NO",   "on",   "On",    "ON",
        "off",   "Off", "OFF",  ".inf", "-.inf", ".nan", "y",    "n",    "Y",     "N"};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (!strcmp(s, words[i]))
            return 1;
    char *end = NULL;
    (void)strtod(s, &end);
    return end != s && *end == '\0';
}

static int cli_yaml_scalar(yaml_emitter_t *em, const char *text, int plain)
{
    yaml_event_t ev;
    yaml_scalar_style_t style =
        strchr(text, '\n') ? YAML_LITERAL_SCALAR_STYLE : YAML_ANY_SCALAR_STYLE;
    yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)text, (int)strlen(text), plain, 1,
                                 style);
    return yaml_emitter_emit(em, &ev);
}

static int cli_yaml_node(yaml_emitter_t *em, const cJSON *v)
{
    yaml_event_t ev;
    const cJSON *c;
    if (cJSON_IsObject(v)) {
        yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
        if (!yaml_emitter_emit(em, &ev))
            return 0;
        cJSON_ArrayForEach(c, v)
            if (!cli_yaml_scalar(em, c->string, !cli_yaml_ambiguous(c->string)) ||
                !cli_yaml_node(em, c))
                return 0;
        yaml_mapping_end_event_initialize(&ev);
        return yaml_emitter_emit(em, &ev);
    }
    if (cJSON_IsArray(v)) {
        yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE);
        if (!yaml_emitter_emit(em, &ev))
            return 0;
        cJSON_ArrayForEach(c, v)
            if (!cli_yaml_node(em, c))
                return 0;
        yaml_sequence_end_event_initialize(&ev);
        return yaml_emitter_emit(em, &ev);
    }
    if (cJSON_IsString(v))
        return cli_yaml_scalar(em, v->valuestring, !cli_yaml_ambiguous(v->valuestring));
    bh_autofree char *text = cJSON_PrintUnformatted(v); /* number, bool, null */
    return cli_yaml_scalar(em, text, 1);
}

static int cli_yaml_write(void *data, unsigned char *buf, size_t n)
{
    return fwrite(buf, 1, n, data) == n;
}

/* Each item of items as one YAML document. */
static int cli_print_yaml(const cJSON *items, FILE *f)
{
    yaml_emitter_t em;
    yaml_event_t ev;
    yaml_emitter_initialize(&em);
    yaml_emitter_set_output(&em, cli_yaml_write, f);
    yaml_emitter_set_unicode(&em, 1);
    yaml_emitter_set_width(&em, 100);
    yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
    int ok = yaml_emitter_emit(&em, &ev);
    const cJSON *it;
    cJSON_ArrayForEach(it, items) {
        yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 0);
        ok = ok && yaml_emitter_emit(&em, &ev) && cli_yaml_node(&em, it);
        yaml_document_end_event_initialize(&ev, 1);
        ok = ok && yaml_emitter_emit(&em, &ev);
    }
    yaml_stream_end_event_initialize(&ev);
    ok = ok && yaml_emitter_emit(&em, &ev);
    if (!ok)
        fprintf(stderr, "boilerhouse kube render: YAML output: %s\n",
                em.problem ? em.problem : "write failed");
    yaml_emitter_delete(&em);
    return ok ? 0 : -1;
}

/* ---- rendering --------------------------------------------------------------------------- */

static int cli_load(const char *path, cJSON **out, struct bh_err *err)
{
    bh_autofree char *text = NULL;
    size_t len = 0;
    if (bh_fs_read_all(path, CLI_MAX_FILE, &text, &len, err) < 0 ||
        bh_resource_parse(text, len, out, err) < 0)
        return bh_err_wrap(err, "--workload %s", path);
    if (strcmp(bh_json_str(*out, "kind") ? bh_json_str(*out, "kind") : "", "BoilerhouseWorkload") !=
        0)
        return bh_err_set(err, BH_EINVAL, "--workload %s: kind: must be BoilerhouseWorkload", path);
    if (bh_resource_validate(*out, err) < 0)
        return bh_err_wrap(err, "--workload %s", path);
    return 0;
}

static int cli_secret(const struct cli *o, const cJSON *wl, cJSON *items, struct bh_err *err)
{
    if (strcmp(bh_json_str(wl, "spec.network.access"), "restricted") != 0)
        return bh_err_set(err, BH_EINVAL, "--kind secret: only a restricted workload has one");
    if (!o->ca_dir)
        return bh_err_set(err, BH_EINVAL, "--kind secret: needs --ca-dir DIR");
    bh_autofree char *crt_path = bh_xasprintf("%s/ca.crt", o->ca_dir);
    bh_autofree char *key_path = bh_xasprintf("%s/ca.key", o->ca_dir);
    bh_autofree char *crt = NULL;
    char *key = NULL;
    size_t n = 0;
    cJSON *s = NULL;
    int rc = bh_fs_read_all(crt_path, CLI_MAX_FILE, &crt, &n, err);
    if (rc == 0)
        rc = bh_fs_read_all(key_path, CLI_MAX_FILE, &key, &n, err);
    if (rc == 0)
        rc = bh_kube_ca_secret(wl, crt, key, &o->opts, &s, err);
    if (key)
        bh_crypto_wipe(key, n);
    free(key);
    if (s)
        cJSON_AddItemToArray(items, s);
    return rc;
}

static int cli_want(const struct cli *o, const char *kind)
{
    return !strcmp(o->kind, "all") || !strcmp(o->kind, kind);
}

static int cli_render(const struct cli *o, const cJSON *wl, cJSON *items, struct bh_err *err)
{
    cJSON *obj = NULL;
    int restricted = !strcmp(bh_json_str(wl, "spec.network.access"), "restricted");
    if (!strcmp(o->kind, "secret") || (!strcmp(o->kind, "all") && restricted && o->ca_dir)) {
        if (cli_secret(o, wl, items, err) < 0)
            return -1;
    } else if (!strcmp(o->kind, "all") && restricted) {
        fputs("boilerhouse kube render: no --ca-dir: the egress CA Secret is left out\n", stderr);
    }
    if (cli_want(o, "pod")) {
        if (bh_kube_pod(wl, &o->inst, &o->opts, &obj, err) < 0)
            return -1;
        cJSON_AddItemToArray(items, obj);
    }
    if (cli_want(o, "service")) {
        if (bh_kube_service(wl, &o->inst, &o->opts, &obj, err) < 0)
            return -1;
        if (obj)
            cJSON_AddItemToArray(items, obj);
    }
    if (cli_want(o, "networkpolicy")) {
        if (bh_kube_network_policy(wl, &o->inst, &o->opts, &obj, err) < 0)
            return -1;
        cJSON_AddItemToArray(items, obj);
    }
    return 0;
}

/* JSON: one object as itself, several as a v1 List (which kubectl applies). */
static int cli_print(const struct cli *o, cJSON *items)
{
    if (strcmp(o->output, "yaml") == 0)
        return cli_print_yaml(items, stdout);
    cJSON *list = NULL;
    if (cJSON_GetArraySize(items) != 1) {
        list = cJSON_CreateObject();
        cJSON_AddStringToObject(list, "apiVersion", "v1");
        cJSON_AddStringToObject(list, "kind", "List");
        cJSON_AddItemReferenceToObject(list, "items", items);
    }
    bh_autofree char *text = cJSON_Print(list ? list : cJSON_GetArrayItem(items, 0));
    cJSON_Delete(list);
    puts(text);
    return 0;
}

/* ---- options ----------------------------------------------------------------------------- */

static int cli_kind_valid(const char *k)
{
    static const char *const kinds[] = {"pod", "service", "networkpolicy", "secret", "all"};
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (!strcmp(k, kinds[i]))
            return 1;
    return 0;
}

static int cli_option(struct cli *o, int c, const char *arg)
{
    const char **slot[] = {
        ['w'] = &o->workload,
        ['t'] = &o->inst.tenant,
        ['c'] = &o->inst.claim,
        ['p'] = &o->inst.pool,
        ['i'] = &o->inst.id,
        ['m'] = &o->inst.image,
        ['u'] = &o->inst.image_user,
        ['k'] = &o->kind,
        ['o'] = &o->output,
        ['n'] = &o->opts.namespace,
        ['N'] = &o->opts.operator_namespace,
        ['D'] = &o->opts.dns_namespace,
        ['L'] = &o->opts.dns_label,
        ['P'] = &o->opts.proxy_image,
        ['a'] = &o->ca_dir,
    };
    if (c == 'R') {
        o->inst.restore = 1;
        return 0;
    }
    if (c == 'r') {
        if (o->n_cidrs == CLI_MAX_CIDRS)
            return -1;
        o->cidrs[o->n_cidrs++] = arg;
        return 0;
    }
    if (c <= 0 || (size_t)c >= sizeof(slot) / sizeof(slot[0]) || !slot[c])
        return -1;
    *slot[c] = arg;
    return 0;
}

static int cli_parse(int argc, char **argv, struct cli *o)
{
    static const struct option opts[] = {{"workload", required_argument, NULL, 'w'},
                                         {"tenant", required_argument, NULL, 't'},
                                         {"claim", required_argument, NULL, 'c'},
                                         {"pool", required_argument, NULL, 'p'},
                                         {"id", required_argument, NULL, 'i'},
                                         {"image", required_argument, NULL, 'm'},
                                         {"image-user", required_argument, NULL, 'u'},
                                         {"kind", required_argument, NULL, 'k'},
                                         {"output", required_argument, NULL, 'o'},
                                         {"namespace", required_argument, NULL, 'n'},
                                         {"operator-namespace", required_argument, NULL, 'N'},
                                         {"cluster-cidr", required_argument, NULL, 'r'},
                                         {"dns-namespace", required_argument, NULL, 'D'},
                                         {"dns-label", required_argument, NULL, 'L'},
                                         {"proxy-image", required_argument, NULL, 'P'},
                                         {"ca-dir", required_argument, NULL, 'a'},
                                         {"restore", no_argument, NULL, 'R'},
                                         {NULL, 0, NULL, 0}};
    int c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1)
        if (cli_option(o, c, optarg) < 0)
            return -1;
    if (optind != argc || !o->workload || !cli_kind_valid(o->kind) ||
        (strcmp(o->output, "yaml") != 0 && strcmp(o->output, "json") != 0))
        return -1;
    o->opts.cluster_cidrs = o->cidrs;
    bh_kube_opts_defaults(&o->opts);
    return 0;
}

/* Without --id, a fresh one, as the daemon would make. */
static int cli_id(struct cli *o, struct bh_err *err)
{
    unsigned char raw[6];
    if (o->inst.id)
        return 0;
    if (bh_crypto_random(raw, sizeof(raw), err) < 0)
        return -1;
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(o->id + 2 * i, 3, "%02x", raw[i]);
    o->inst.id = o->id;
    return 0;
}

int bh_kube_cli_main(int argc, char **argv)
{
    struct cli o = {.kind = "all", .output = "yaml"};
    if (argc < 2 || strcmp(argv[1], "render") != 0 || cli_parse(argc, argv, &o) < 0)
        return cli_usage();
    struct bh_err err = {0};
    cJSON *wl = NULL, *items = cJSON_CreateArray();
    int rc = cli_id(&o, &err);
    if (rc == 0)
        rc = cli_load(o.workload, &wl, &err);
    if (rc == 0)
        rc = cli_render(&o, wl, items, &err);
    if (rc < 0)
        fprintf(stderr, "boilerhouse kube render: %s\n", err.msg);
    else
        rc = cli_print(&o, items);
    cJSON_Delete(wl);
    cJSON_Delete(items);
    return rc < 0 ? 1 : 0;
}
