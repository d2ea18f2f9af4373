/* The sidecar's configuration (sidecar.h): BOILERHOUSE_EGRESS_CONFIG as the Pod builder writes
 * it, checked field by field so a mismatch between builder and sidecar is an error that names
 * the field, never a proxy that silently enforces less. */
#include "sidecar.h"

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "egress_int.h"

#define CFG SIDECAR_CONFIG_ENV ": "

/* o is an object holding only keys (NULL-terminated). */
static int cfg_only_keys(const cJSON *o, const char *path, const char *const *keys,
                         struct bh_err *err)
{
    if (!cJSON_IsObject(o))
        return eg_fail(err, BH_EINVAL, CFG "%s: must be an object", *path ? path : "the value");
    const cJSON *c;
    cJSON_ArrayForEach(c, o) {
        size_t i = 0;
        while (keys[i] && strcmp(keys[i], c->string) != 0)
            i++;
        if (!keys[i])
            return eg_fail(err, BH_EINVAL, CFG "%s%s%s: unknown field", path, *path ? "." : "",
                           c->string);
    }
    return 0;
}

/* A non-empty string field, copied into *out. */
static int cfg_string(const cJSON *o, const char *key, const char *path, char **out,
                      struct bh_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(v) || !v->valuestring[0])
        return eg_fail(err, BH_EINVAL, CFG "%s%s%s: must be a non-empty string", path,
                       *path ? "." : "", key);
    *out = eg_xstrdup(v->valuestring);
    return 0;
}

/* prefix: the object's path with its dot ("ports."). */
static int cfg_port(const cJSON *o, const char *prefix, const char *key, int *out,
                    struct bh_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    /* range first: converting an out-of-range double to int is undefined */
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 1 && v->valuedouble <= 65535) ||
        v->valuedouble != (double)(int)v->valuedouble)
        return eg_fail(err, BH_EINVAL, CFG "%s%s: must be a port number (1-65535)", prefix, key);
    *out = v->valueint;
    return 0;
}

static int cfg_ports(const cJSON *root, struct sidecar_config *c, struct bh_err *err)
{
    static const char *const keys[] = {"http", "tls", "dns", NULL};
    const cJSON *ports = cJSON_GetObjectItemCaseSensitive(root, "ports");
    if (cfg_only_keys(ports, "ports", keys, err) < 0 ||
        cfg_port(ports, "ports.", "http", &c->http_port, err) < 0 ||
        cfg_port(ports, "ports.", "tls", &c->tls_port, err) < 0 ||
        cfg_port(ports, "ports.", "dns", &c->dns_port, err) < 0)
        return -1;
    return 0;
}

static int cfg_allowlist(const cJSON *root, struct sidecar_config *c, struct bh_err *err)
{
    const cJSON *allow = cJSON_GetObjectItemCaseSensitive(root, "allowlist");
    if (!cJSON_IsArray(allow))
        return eg_fail(err, BH_EINVAL, CFG "allowlist: must be an array of names");
    c->allow = eg_xcalloc((size_t)cJSON_GetArraySize(allow), sizeof(char *));
    const cJSON *v;
    cJSON_ArrayForEach(v, allow) {
        if (!cJSON_IsString(v) || !v->valuestring[0])
            return eg_fail(err, BH_EINVAL, CFG "allowlist[%zu]: must be a non-empty string",
                           c->n_allow);
        c->allow[c->n_allow++] = eg_xstrdup(v->valuestring);
    }
    return 0;
}

/* The value of a header from "env": a variable of the BOILERHOUSE_EGRESS_CRED_ family. */
static int cfg_env_value(const cJSON *var, const char *path, sidecar_env_fn env, char **out,
                         struct bh_err *err)
{
    if (!cJSON_IsString(var) ||
        strncmp(var->valuestring, SIDECAR_CRED_ENV, strlen(SIDECAR_CRED_ENV)) != 0)
        return eg_fail(err, BH_EINVAL, CFG "%s.env: must name a " SIDECAR_CRED_ENV "* variable",
                       path);
    const char *value = env(var->valuestring);
    if (!value)
        return eg_fail(err, BH_EINVAL, CFG "%s.env: %s is not set", path, var->valuestring);
    *out = eg_xstrdup(value);
    return 0;
}

/* A tenantSecretKeyRef header of credential cred: its value comes through the control
 * endpoint (the daemon resolves it per claim). Takes name. */
static void cfg_tenant(struct sidecar_config *c, size_t cred, char *name)
{
    struct sidecar_tenant_header *n = realloc(c->tenant, (c->n_tenant + 1) * sizeof(*n));
    if (!n)
        abort();
    c->tenant = n;
    c->tenant[c->n_tenant++] = (struct sidecar_tenant_header){.cred = cred, .name = name};
}

/* One header into hs[*n], or into c->tenant for a tenant's secret (credential cred). */
static int cfg_header(const cJSON *h, const char *path, sidecar_env_fn env, size_t cred,
                      struct egress_header *hs, size_t *n, struct sidecar_config *c,
                      struct bh_err *err)
{
    static const char *const keys[] = {"name", "value", "env", "tenantSecretKeyRef", NULL};
    const cJSON *lit = cJSON_GetObjectItemCaseSensitive(h, "value");
    const cJSON *var = cJSON_GetObjectItemCaseSensitive(h, "env");
    const cJSON *tref = cJSON_GetObjectItemCaseSensitive(h, "tenantSecretKeyRef");
    char *name = NULL, *value = NULL;
    if (cfg_only_keys(h, path, keys, err) < 0 || cfg_string(h, "name", path, &name, err) < 0)
        return -1;
    int rc = 0;
    if (!!lit + !!var + !!tref != 1)
        rc = eg_fail(err, BH_EINVAL, CFG "%s: needs exactly one of value, env, tenantSecretKeyRef",
                     path);
    else if (lit && !cJSON_IsString(lit))
        rc = eg_fail(err, BH_EINVAL, CFG "%s.value: must be a string", path);
    else if (lit)
        value = eg_xstrdup(lit->valuestring);
    else if (var)
        rc = cfg_env_value(var, path, env, &value, err);
    else
        return cfg_tenant(c, cred, name), 0;
    if (!value) {
        free(name);
        return rc;
    }
    hs[*n].name = name;
    hs[(*n)++].value = value;
    return 0;
}

static int cfg_credential(const cJSON *cj, size_t i, sidecar_env_fn env, struct sidecar_config *c,
                          struct bh_err *err)
{
    static const char *const keys[] = {"domain", "headers", NULL};
    char path[64];
    snprintf(path, sizeof(path), "credentials[%zu]", i);
    struct egress_credential *cred = &c->creds[c->n_creds++];
    char *domain = NULL;
    if (cfg_only_keys(cj, path, keys, err) < 0 || cfg_string(cj, "domain", path, &domain, err) < 0)
        return -1;
    cred->domain = domain;
    const cJSON *headers = cJSON_GetObjectItemCaseSensitive(cj, "headers");
    if (!cJSON_IsArray(headers))
        return eg_fail(err, BH_EINVAL, CFG "%s.headers: must be an array", path);
    struct egress_header *hs = eg_xcalloc((size_t)cJSON_GetArraySize(headers), sizeof(*hs));
    cred->headers = hs;
    size_t j = 0;
    const cJSON *h;
    cJSON_ArrayForEach(h, headers) {
        char hpath[96];
        snprintf(hpath, sizeof(hpath), "%s.headers[%zu]", path, j++);
        if (cfg_header(h, hpath, env, i, hs, &cred->n_headers, c, err) < 0)
            return -1;
    }
    return 0;
}

static int cfg_credentials(const cJSON *root, sidecar_env_fn env, struct sidecar_config *c,
                           struct bh_err *err)
{
    const cJSON *creds = cJSON_GetObjectItemCaseSensitive(root, "credentials");
    if (!creds)
        return 0;
    if (!cJSON_IsArray(creds))
        return eg_fail(err, BH_EINVAL, CFG "credentials: must be an array");
    c->creds = eg_xcalloc((size_t)cJSON_GetArraySize(creds), sizeof(*c->creds));
    size_t i = 0;
    const cJSON *cj;
    cJSON_ArrayForEach(cj, creds) {
        if (cfg_credential(cj, i++, env, c, err) < 0)
            return -1;
    }
    return 0;
}

/* "control": present exactly when a header's value comes from the tenant. */
static int cfg_control(const cJSON *root, struct sidecar_config *c, struct bh_err *err)
{
    static const char *const keys[] = {"port", "tokenFile", NULL};
    const cJSON *ctl = cJSON_GetObjectItemCaseSensitive(root, "control");
    if (!ctl && c->n_tenant)
        return eg_fail(err, BH_EINVAL, CFG "control: needed for the tenantSecretKeyRef headers");
    if (!ctl)
        return 0;
    if (!c->n_tenant)
        return eg_fail(err, BH_EINVAL, CFG "control: no tenantSecretKeyRef header needs it");
    if (cfg_only_keys(ctl, "control", keys, err) < 0 ||
        cfg_port(ctl, "control.", "port", &c->control_port, err) < 0 ||
        cfg_string(ctl, "tokenFile", "control", &c->control_token, err) < 0)
        return -1;
    if (c->control_token[0] != '/')
        return eg_fail(err, BH_EINVAL, CFG "control.tokenFile: must be an absolute path");
    return 0;
}

int sidecar_config_parse(const char *json, sidecar_env_fn env, struct sidecar_config *out,
                         struct bh_err *err)
{
    static const char *const keys[] = {"workload", "allowlist", "credentials", "ports",
                                       "caDir",    "control",   NULL};
    memset(out, 0, sizeof(*out));
    if (!json)
        return eg_fail(err, BH_EINVAL, SIDECAR_CONFIG_ENV " is not set");
    cJSON *root = cJSON_Parse(json);
    if (!root)
        return eg_fail(err, BH_EINVAL, CFG "not valid JSON");
    int rc = -1;
    if (cfg_only_keys(root, "", keys, err) == 0 &&
        cfg_string(root, "workload", "", &out->workload, err) == 0 &&
        cfg_allowlist(root, out, err) == 0 && cfg_credentials(root, env, out, err) == 0 &&
        cfg_ports(root, out, err) == 0 && cfg_string(root, "caDir", "", &out->ca_dir, err) == 0 &&
        cfg_control(root, out, err) == 0)
        rc = 0;
    if (rc == 0 && out->ca_dir[0] != '/')
        rc = eg_fail(err, BH_EINVAL, CFG "caDir: must be an absolute path");
    cJSON_Delete(root);
    return rc;
}

static void cfg_free_strings(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void sidecar_config_free(struct sidecar_config *c)
{
    for (size_t i = 0; i < c->n_creds; i++) {
        struct egress_credential *cred = &c->creds[i];
        for (size_t j = 0; j < cred->n_headers; j++) {
            char *value = (char *)cred->headers[j].value;
            OPENSSL_cleanse(value, strlen(value));
            free(value);
            free((char *)cred->headers[j].name);
        }
        free((struct egress_header *)cred->headers);
        free((char *)cred->domain);
    }
    free(c->creds);
    cfg_free_strings(c->allow, c->n_allow);
    for (size_t i = 0; i < c->n_tenant; i++)
        free(c->tenant[i].name);
    free(c->tenant);
    free(c->workload);
    free(c->ca_dir);
    free(c->control_token);
    memset(c, 0, sizeof(*c));
}

struct egress_policy sidecar_config_policy(const struct sidecar_config *c)
{
    struct egress_policy p = {.workload = c->workload,
                              .allowlist = (const char *const *)c->allow,
                              .n_allow = c->n_allow,
                              .credentials = c->creds,
                              .n_credentials = c->n_creds};
    return p;
}
