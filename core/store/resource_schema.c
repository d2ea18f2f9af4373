/* The schema of the four kinds, as data. the files in crds/ must say the same thing: the unit test
 * test_resource compares them via bh_resource_spec_schema(). */
#include "resource_int.h"

#include <ctype.h>
#include <string.h>

#include "mem.h"
#include "name.h"
#include "resource.h"

/* ---- rules the types cannot express ------------------------------------------------------ */

static int schema_exactly_one(const cJSON *v, const char *a, const char *b, const char *path,
                              struct bh_err *err)
{
    if (cJSON_HasObjectItem(v, a) == cJSON_HasObjectItem(v, b))
        return bh_err_set(err, BH_EINVAL, "%s: exactly one of %s or %s is required", path, a, b);
    return 0;
}

static int schema_image(const cJSON *v, const char *path, struct bh_err *err)
{
    return schema_exactly_one(v, "ref", "dockerfile", path, err);
}

static int schema_value_from(const cJSON *v, const char *path, struct bh_err *err)
{
    return schema_exactly_one(v, "secretKeyRef", "tenantSecretKeyRef", path, err);
}

/* Header names and values end up in HTTP requests the proxy writes: no CR/LF smuggling. */
static int schema_header(const cJSON *v, const char *path, struct bh_err *err)
{
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(v, "name"));
    const char *value = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(v, "value"));
    static const char tchar[] = "!#$%&'*+-.^_`|~0123456789"
                                "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    if (!*name || strspn(name, tchar) != strlen(name))
        return bh_err_set(err, BH_EINVAL, "%s.name: must be an HTTP header name", path);
    if (value && strpbrk(value, "\r\n"))
        return bh_err_set(err, BH_EINVAL, "%s.value: must not contain line breaks", path);
    return schema_exactly_one(v, "value", "valueFrom", path, err);
}

static int schema_tenant(const cJSON *v, const char *path, struct bh_err *err)
{
    if (!cJSON_HasObjectItem(v, "static") && !cJSON_HasObjectItem(v, "from"))
        return bh_err_set(err, BH_EINVAL, "%s: one of static or from is required", path);
    return 0;
}

static int schema_tenant_id(const cJSON *v, const char *path, struct bh_err *err)
{
    if (!bh_name_tenant_valid(v->valuestring))
        return bh_err_set(err, BH_EINVAL,
                          "%s: must be 1-63 characters of [A-Za-z0-9._-], beginning and ending "
                          "with a letter or digit",
                          path);
    return 0;
}

static int schema_name(const cJSON *v, const char *path, struct bh_err *err)
{
    if (!bh_name_label_valid(v->valuestring))
        return bh_err_set(err, BH_EINVAL,
                          "%s: must be a DNS-1123 label (lowercase letters, digits and '-', "
                          "at most 63 characters)",
                          path);
    return 0;
}

/* A hostname of DNS-1123 labels (any case), optionally "*." + one. */
static int schema_hostname_valid(const char *host)
{
    if (!strncmp(host, "*.", 2))
        host += 2;
    size_t len = strlen(host);
    if (!len || len > 253 || host[len - 1] == '.')
        return 0;
    for (const char *label = host; label;) {
        const char *dot = strchr(label, '.');
        size_t n = dot ? (size_t)(dot - label) : strlen(label);
        if (!n || n > 63 || label[0] == '-' || label[n - 1] == '-')
            return 0;
        for (size_t i = 0; i < n; i++)
            if (!isalnum((unsigned char)label[i]) && label[i] != '-')
                return 0;
        label = dot ? dot + 1 : NULL;
    }
    return 1;
}

static int schema_hostname(const cJSON *v, const char *path, struct bh_err *err)
{
    if (!schema_hostname_valid(v->valuestring))
        return bh_err_set(err, BH_EINVAL, "%s: must be a hostname or a *.domain wildcard", path);
    return 0;
}

static int schema_abs_path(const cJSON *v, const char *path, struct bh_err *err)
{
    const char *p = v->valuestring;
    int dotdot = !strcmp(p, "/..") || strstr(p, "/../") ||
                 (strlen(p) >= 3 && !strcmp(p + strlen(p) - 3, "/.."));
    if (p[0] != '/' || dotdot)
        return bh_err_set(err, BH_EINVAL, "%s: must be an absolute path without '..'", path);
    return 0;
}

/* Environment names cannot hold '=' (it separates name from value in environ). */
static int schema_env(const cJSON *v, const char *path, struct bh_err *err)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        if (!e->string[0] || strchr(e->string, '='))
            return bh_err_set(err, BH_EINVAL, "%s.%s: invalid environment variable name", path,
                              e->string);
    }
    return 0;
}

/* ---- field constructors ------------------------------------------------------------------ */

#define REQ BH_F_REQUIRED
#define STR(n, fl)                                                                                 \
    {                                                                                              \
        .name = (n), .type = BH_T_STRING, .flags = (fl)                                            \
    }
#define STRC(n, fl, fn)                                                                            \
    {                                                                                              \
        .name = (n), .type = BH_T_STRING, .flags = (fl), .check = (fn)                             \
    }
#define BOOL(n)                                                                                    \
    {                                                                                              \
        .name = (n), .type = BH_T_BOOL                                                             \
    }
#define INT_GE(n, fl, lo)                                                                          \
    {                                                                                              \
        .name = (n), .type = BH_T_INT, .flags = (fl) | BH_F_MIN, .min = (lo)                       \
    }
#define PORT(n, fl)                                                                                \
    {                                                                                              \
        .name = (n), .type = BH_T_INT, .flags = (fl) | BH_F_MIN | BH_F_MAX, .min = 1, .max = 65535 \
    }
#define OBJ(n, fl, children, fn)                                                                   \
    {                                                                                              \
        .name = (n), .type = BH_T_OBJECT, .flags = (fl), .fields = (children), .check = (fn)       \
    }
#define ARR(n, fl, item)                                                                           \
    {                                                                                              \
        .name = (n), .type = BH_T_ARRAY, .flags = (fl), .items = (item)                            \
    }
#define FREE(n)                                                                                    \
    {                                                                                              \
        .name = (n), .type = BH_T_FREEFORM                                                         \
    }
#define END                                                                                        \
    {                                                                                              \
        .name = NULL                                                                               \
    }

static const struct bh_resource_field string_item[] = {STR("", 0)};
static const struct bh_resource_field host_item[] = {STRC("", 0, schema_hostname)};
static const struct bh_resource_field abs_path_item[] = {STRC("", 0, schema_abs_path)};

/* ---- BoilerhouseWorkload ----------------------------------------------------------------- */

static const char *const idle_action_enum[] = {"hibernate", "destroy", NULL};

static const struct bh_resource_field image_fields[] = {
    STR("ref", 0),
    STR("dockerfile", 0),
    END,
};

static const struct bh_resource_field resources_fields[] = {
    {.name = "vcpus", .type = BH_T_NUMBER, .flags = REQ | BH_F_EXCL_MIN, .min = 0},
    {.name = "memoryMb", .type = BH_T_INT, .flags = REQ | BH_F_EXCL_MIN, .min = 0},
    /* 0 = unbounded; at most 64 TiB, so the byte count fits anything that takes it. */
    {.name = "diskGb",
     .type = BH_T_INT,
     .flags = REQ | BH_F_MIN | BH_F_MAX,
     .min = 0,
     .max = 65536},
    END,
};

static const struct bh_resource_field key_ref_fields[] = {
    STR("name", REQ),
    STR("key", REQ),
    END,
};

static const struct bh_resource_field value_from_fields[] = {
    OBJ("secretKeyRef", 0, key_ref_fields, NULL),
    OBJ("tenantSecretKeyRef", 0, key_ref_fields, NULL),
    END,
};

static const struct bh_resource_field header_fields[] = {
    STR("name", REQ),
    STR("value", 0),
    OBJ("valueFrom", 0, value_from_fields, schema_value_from),
    END,
};
static const struct bh_resource_field header_item[] = {OBJ("", 0, header_fields, schema_header)};

static const struct bh_resource_field credential_fields[] = {
    STRC("domain", REQ, schema_hostname),
    ARR("headers", 0, header_item),
    END,
};
static const struct bh_resource_field credential_item[] = {OBJ("", 0, credential_fields, NULL)};

static const struct bh_resource_field expose_fields[] = {
    PORT("guest", REQ),
    PORT("host", 0),
    END,
};
static const struct bh_resource_field expose_item[] = {OBJ("", 0, expose_fields, NULL)};

static const struct bh_resource_field network_fields[] = {
    /* Open: the loaded network plugins say which values exist (bh_plugins_check_resource). */
    {.name = "access",
     .type = BH_T_STRING,
     .flags = BH_F_DEFAULT,
     .check = schema_name,
     .default_str = "none"},
    ARR("expose", 0, expose_item),
    ARR("allowlist", 0, host_item),
    ARR("credentials", 0, credential_item),
    STR("websocket", 0),
    END,
};

static const struct bh_resource_field filesystem_fields[] = {
    ARR("overlayDirs", 0, abs_path_item),
    BOOL("encryptOverlays"),
    END,
};

static const struct bh_resource_field idle_fields[] = {
    INT_GE("timeoutSeconds", 0, 0),
    {.name = "action",
     .type = BH_T_STRING,
     .flags = BH_F_DEFAULT,
     .enums = idle_action_enum,
     .default_str = "hibernate"},
    ARR("watchDirs", 0, abs_path_item),
    END,
};

static const struct bh_resource_field http_get_fields[] = {
    STR("path", 0),
    PORT("port", REQ),
    END,
};

static const struct bh_resource_field exec_fields[] = {
    ARR("command", REQ, string_item),
    END,
};

static const struct bh_resource_field health_fields[] = {
    INT_GE("intervalSeconds", 0, 1),   INT_GE("unhealthyThreshold", 0, 1),
    INT_GE("timeoutSeconds", 0, 1),    OBJ("httpGet", 0, http_get_fields, NULL),
    OBJ("exec", 0, exec_fields, NULL), END,
};

static const struct bh_resource_field entrypoint_fields[] = {
    STR("cmd", 0),
    ARR("args", 0, string_item),
    {.name = "env", .type = BH_T_STRMAP, .check = schema_env},
    STR("workdir", 0),
    END,
};

/* What a claim's token may do (docs: "Per-claim tokens"): "tenant" is the claim's own tenant
 * scope narrowed to the workload; "none" (or no apiAccess) mints no token. */
static const char *const api_scope_enum[] = {"tenant", "none", NULL};
static const struct bh_resource_field api_scope_item[] = {
    {.name = "", .type = BH_T_STRING, .enums = api_scope_enum}};

static const struct bh_resource_field api_access_fields[] = {
    ARR("scopes", 0, api_scope_item),
    END,
};

/* A file name in the policy dir (docs/lua.md): nothing that could leave it. */
static int schema_policy(const cJSON *v, const char *path, struct bh_err *err)
{
    static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";
    const char *s = v->valuestring;
    size_t n = strlen(s);
    if (n <= 4 || n > 63 || s[0] == '.' || s[0] == '-' || strspn(s, ok) != n ||
        strcmp(s + n - 4, ".lua") != 0)
        return bh_err_set(err, BH_EINVAL,
                          "%s: must be a script file name NAME.lua (letters, digits, '.', '_', "
                          "'-'; at most 63 characters)",
                          path);
    return 0;
}

static const struct bh_resource_field workload_spec[] = {
    STR("version", REQ),
    OBJ("image", REQ, image_fields, schema_image),
    OBJ("resources", REQ, resources_fields, NULL),
    OBJ("network", BH_F_DEFAULT, network_fields, NULL),
    OBJ("filesystem", 0, filesystem_fields, NULL),
    OBJ("idle", 0, idle_fields, NULL),
    OBJ("health", 0, health_fields, NULL),
    OBJ("entrypoint", 0, entrypoint_fields, NULL),
    OBJ("apiAccess", 0, api_access_fields, NULL),
    STRC("claimPolicy", 0, schema_policy),
    END,
};

/* ---- BoilerhousePool, BoilerhouseClaim --------------------------------------------------- */

static const struct bh_resource_field pool_spec[] = {
    STRC("workloadRef", REQ, schema_name),
    INT_GE("size", REQ, 0),
    {.name = "maxFillConcurrency",
     .type = BH_T_INT,
     .flags = BH_F_MIN | BH_F_DEFAULT,
     .min = 1,
     .default_int = 2},
    END,
};

static const struct bh_resource_field claim_spec[] = {
    STRC("tenantId", REQ, schema_tenant_id),
    STRC("workloadRef", REQ, schema_name),
    BOOL("resume"),
    END,
};

/* ---- BoilerhouseTrigger ------------------------------------------------------------------ */

static const char *const trigger_type_enum[] = {"webhook", "slack", "telegram", "cron", NULL};

static const struct bh_resource_field trigger_tenant_fields[] = {
    STRC("static", 0, schema_tenant_id),
    STR("from", 0),
    STR("prefix", 0),
    END,
};

static const struct bh_resource_field guard_fields[] = {
    STR("type", REQ),
    FREE("config"),
    END,
};
static const struct bh_resource_field guard_item[] = {OBJ("", 0, guard_fields, NULL)};

static const struct bh_resource_field trigger_spec[] = {
    {.name = "type", .type = BH_T_STRING, .flags = REQ, .enums = trigger_type_enum},
    STRC("workloadRef", REQ, schema_name),
    OBJ("tenant", 0, trigger_tenant_fields, schema_tenant),
    STR("driver", 0),
    FREE("driverOptions"),
    ARR("guards", 0, guard_item),
    FREE("config"),
    END,
};

/* ---- metadata and the kind table --------------------------------------------------------- */

/* System fields are accepted (kubectl sends them back) but owned by the store. */
const struct bh_resource_field bh_resource_metadata_fields[] = {
    STRC("name", REQ, schema_name),
    STR("namespace", 0),
    {.name = "labels", .type = BH_T_STRMAP},
    {.name = "annotations", .type = BH_T_STRMAP},
    ARR("finalizers", 0, string_item),
    {.name = "uid", .type = BH_T_ANY},
    {.name = "resourceVersion", .type = BH_T_ANY},
    {.name = "generation", .type = BH_T_ANY},
    {.name = "creationTimestamp", .type = BH_T_ANY},
    {.name = "deletionTimestamp", .type = BH_T_ANY},
    {.name = "deletionGracePeriodSeconds", .type = BH_T_ANY}, /* a cluster's deleting object */
    {.name = "selfLink", .type = BH_T_ANY},                   /* clusters before 1.24 */
    {.name = "managedFields", .type = BH_T_ANY},
    {.name = "ownerReferences", .type = BH_T_ANY},
    END,
};

static const struct bh_resource_kind schema_kinds[] = {
    {"BoilerhouseWorkload", "boilerhouseworkloads", "bhw", workload_spec, BH_RESOURCE_FINALIZER},
    {"BoilerhousePool", "boilerhousepools", "bhp", pool_spec, NULL},
    {"BoilerhouseClaim", "boilerhouseclaims", "bhc", claim_spec, NULL},
    {"BoilerhouseTrigger", "boilerhousetriggers", "bht", trigger_spec, NULL},
};

const struct bh_resource_kind *bh_resource_kind_find(const char *kind)
{
    for (size_t i = 0; kind && i < BH_ARRAY_LEN(schema_kinds); i++)
        if (!strcmp(schema_kinds[i].kind, kind))
            return &schema_kinds[i];
    return NULL;
}

const char *bh_resource_plural(const char *kind)
{
    const struct bh_resource_kind *k = bh_resource_kind_find(kind);
    return k ? k->plural : NULL;
}

const char *bh_resource_short_name(const char *kind)
{
    const struct bh_resource_kind *k = bh_resource_kind_find(kind);
    return k ? k->short_name : NULL;
}

const char *bh_resource_kind_for_plural(const char *plural)
{
    for (size_t i = 0; plural && i < BH_ARRAY_LEN(schema_kinds); i++)
        if (!strcmp(schema_kinds[i].plural, plural))
            return schema_kinds[i].kind;
    return NULL;
}

const char *bh_resource_kind_names(void)
{
    return "BoilerhouseWorkload, BoilerhousePool, BoilerhouseClaim, BoilerhouseTrigger";
}
