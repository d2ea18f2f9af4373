/* Errors as Kubernetes Status objects: the reason kubectl branches on (NotFound,
 * AlreadyExists, Conflict, Invalid...) and, for Invalid, details.causes[] with the field path,
 * so kubectl prints `The BoilerhouseWorkload "x" is invalid: spec.resources.vcpus: ...`. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "kapi_int.h"
#include "mem.h"
#include "resource.h"
#include "ssa.h"
#include "store.h"

static cJSON *status_new(int code, const char *reason, const char *msg)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "kind", "Status");
    cJSON_AddStringToObject(o, "apiVersion", "v1");
    cJSON_AddObjectToObject(o, "metadata");
    cJSON_AddStringToObject(o, "status", code < 400 ? "Success" : "Failure");
    cJSON_AddStringToObject(o, "message", msg);
    if (reason)
        cJSON_AddStringToObject(o, "reason", reason);
    cJSON_AddNumberToObject(o, "code", code);
    return o;
}

void bh_kapi_status(struct bh_kapi_resp *resp, int code, const char *reason, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    bh_kapi_json(resp, code, status_new(code, reason, msg));
}

void bh_kapi_status_ok(struct bh_kapi_resp *resp, const char *resource, const char *name)
{
    cJSON *o = status_new(200, NULL, "");
    cJSON *d = cJSON_AddObjectToObject(o, "details");
    cJSON_AddStringToObject(d, "name", name);
    cJSON_AddStringToObject(d, "kind", resource);
    bh_kapi_json(resp, 200, o);
}

static cJSON *status_details(cJSON *st, const char *resource, const char *kind, const char *name)
{
    cJSON *d = cJSON_AddObjectToObject(st, "details");
    cJSON_AddStringToObject(d, "name", name ? name : "");
    if (strstr(resource, ".")) /* "boilerhouseworkloads.boilerhouse.dev" */
        cJSON_AddStringToObject(d, "group", strchr(resource, '.') + 1);
    cJSON_AddStringToObject(d, "kind", kind ? kind : resource);
    return d;
}

/* The offending value at a dotted path ("spec.resources.vcpus", "spec.env[0].name"), printed
 * as kubectl shows it, or NULL. */
static char *status_value_at(const cJSON *obj, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    const cJSON *cur = obj;
    for (char *save = NULL, *t = strtok_r(buf, ".", &save); t && cur;
         t = strtok_r(NULL, ".", &save)) {
        char *br = strchr(t, '[');
        if (br)
            *br = '\0';
        cur = cJSON_GetObjectItemCaseSensitive(cur, t);
        for (; br && cur; br = strchr(br + 1, '['))
            cur = cJSON_GetArrayItem(cur, atoi(br + 1));
    }
    if (!cur || cJSON_IsObject(cur) || cJSON_IsArray(cur))
        return NULL;
    return cJSON_PrintUnformatted(cur);
}

/* "spec.x: must be ..." becomes a cause {field, message, reason} and the Invalid message. */
static void status_invalid(struct bh_kapi_resp *resp, const char *msg, const char *resource,
                           const char *kind, const char *name, const cJSON *obj)
{
    const char *colon = strstr(msg, ": ");
    bh_autofree char *field = colon ? bh_xstrndup(msg, (size_t)(colon - msg)) : NULL;
    const char *why = colon ? colon + 2 : msg;
    bh_autofree char *value = field && obj ? status_value_at(obj, field) : NULL;
    bh_autofree char *detail = !field ? bh_xstrdup(why)
                               : value
                                   ? bh_xasprintf("%s: Invalid value: %s: %s", field, value, why)
                                   : bh_xasprintf("%s: Invalid value: %s", field, why);
    bh_autofree char *full =
        bh_xasprintf("%s \"%s\" is invalid: %s", kind, name ? name : "", detail);
    cJSON *st = status_new(422, "Invalid", full);
    cJSON *d = status_details(st, resource, kind, name);
    cJSON *cause = cJSON_CreateObject();
    cJSON_AddStringToObject(cause, "reason", "FieldValueInvalid");
    cJSON_AddStringToObject(cause, "message", field ? detail + strlen(field) + 2 : why);
    cJSON_AddStringToObject(cause, "field", field ? field : "");
    cJSON_AddItemToArray(cJSON_AddArrayToObject(d, "causes"), cause);
    bh_kapi_json(resp, 422, st);
}

/* Kubernetes's reasons for our error classes. */
static const struct {
    int code;
    int http;
    const char *reason;
} status_reasons[] = {
    {BH_ENOTFOUND, 404, "NotFound"},
    {BH_ECONFLICT, 409, "Conflict"},
    {BH_EUNAVAIL, 503, "ServiceUnavailable"},
    {BH_ETIMEOUT, 504, "Timeout"},
    {BH_ETOOLARGE, 413, "RequestEntityTooLarge"},
    {BH_EAUTH, 401, "Unauthorized"},
    {BH_EFORBIDDEN, 403, "Forbidden"},
};

void bh_kapi_status_from_err(struct bh_kapi_resp *resp, const struct bh_err *err,
                             const char *resource, const char *kind, const char *name,
                             const cJSON *obj)
{
    if (err->code == BH_EINVAL) {
        status_invalid(resp, err->msg, resource, kind, name, obj);
        return;
    }
    int http = 500;
    const char *reason = "InternalError";
    for (size_t i = 0; i < BH_ARRAY_LEN(status_reasons); i++)
        if (status_reasons[i].code == err->code) {
            http = status_reasons[i].http;
            reason = status_reasons[i].reason;
        }
    /* A stale resourceVersion is worded as the API server words it (no store detail). */
    const char *stale = err->code == BH_ECONFLICT ? strstr(err->msg, BH_STORE_STALE_MSG) : NULL;
    bh_autofree char *msg = err->code == BH_ENOTFOUND
                                ? bh_xasprintf("%s \"%s\" not found", resource, name ? name : "")
                            : err->code == BH_ECONFLICT
                                ? bh_xasprintf("Operation cannot be fulfilled on %s \"%s\": %s",
                                               resource, name ? name : "", stale ? stale : err->msg)
                                : bh_xstrdup(err->msg);
    cJSON *st = status_new(http, reason, msg);
    status_details(st, resource, kind, name);
    bh_kapi_json(resp, http, st);
}

/* A server-side apply that conflicts: 409 Conflict with one FieldManagerConflict cause per
 * field, naming the manager that owns it, as kubectl's --force-conflicts advice expects. */
void bh_kapi_status_conflicts(struct bh_kapi_resp *resp, const struct bh_ssa_result *res,
                              const char *resource, const char *kind, const char *name)
{
    bh_autofree char *msg = bh_ssa_conflict_message(res, BH_API_VERSION);
    cJSON *st = status_new(409, "Conflict", msg);
    cJSON *causes = cJSON_AddArrayToObject(status_details(st, resource, kind, name), "causes");
    int n = res->n_conflicts < BH_SSA_CONFLICTS_MAX ? res->n_conflicts : BH_SSA_CONFLICTS_MAX;
    for (int i = 0; i < n; i++) {
        cJSON *c = cJSON_CreateObject();
        bh_autofree char *m = bh_xasprintf("conflict with \"%s\" using %s",
                                           res->conflicts[i].manager, BH_API_VERSION);
        cJSON_AddStringToObject(c, "reason", "FieldManagerConflict");
        cJSON_AddStringToObject(c, "message", m);
        cJSON_AddStringToObject(c, "field", res->conflicts[i].field);
        cJSON_AddItemToArray(causes, c);
    }
    bh_kapi_json(resp, 409, st);
}

void bh_kapi_warn(struct bh_kapi_resp *resp, const char *fmt, ...)
{
    if (resp->n_warnings >= BH_KAPI_WARN_MAX)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(resp->warnings[resp->n_warnings++], sizeof(resp->warnings[0]), fmt, ap);
    va_end(ap);
}
