/* The host's function table. Every call takes the plugin instance's handle: log lines are
 * attributed from it, and config, state dir and secrets are the instance's own, so several
 * instances of one plugin never share process globals. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "plugin_int.h"
#include "proc.h"
#include "secret.h"

/* Commands plugins run (ip, nsenter) finish in milliseconds; a hung one must not wedge the
 * reconciler thread that called the plugin. */
#define HOST_RUN_TIMEOUT_MS 60000

static void host_log(struct bh_plugin_handle *h, uint32_t level, const char *fmt, ...)
{
    /* The level comes from outside the daemon: clamp it before it indexes anything. */
    if (level > BH_LOG_DEBUG)
        level = BH_LOG_DEBUG;
    va_list ap;
    va_start(ap, fmt);
    bh_logv(level, h ? h->module : "plugin/?", fmt, ap);
    va_end(ap);
}

static int host_err_set(struct bh_plugin_handle *h, struct bh_err *err, int code, const char *fmt,
                        ...)
{
    if (!err)
        return -1;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return -1;
}

static const cJSON *host_config_item(struct bh_plugin_handle *h, const char *key)
{
    return h ? bh_plugin_config_item(h->config, key) : NULL;
}

static const char *host_config_string(struct bh_plugin_handle *h, const char *key)
{
    const cJSON *v = host_config_item(h, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static long long host_config_int(struct bh_plugin_handle *h, const char *key)
{
    const cJSON *v = host_config_item(h, key);
    return cJSON_IsNumber(v) ? (long long)v->valuedouble : 0;
}

static int host_config_bool(struct bh_plugin_handle *h, const char *key)
{
    return cJSON_IsTrue(host_config_item(h, key));
}

/* Drops trailing blanks so the stderr excerpt ends the one-line error cleanly. */
static void host_trim(char *s, size_t len)
{
    while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == ' '))
        s[--len] = '\0';
}

static int host_run(struct bh_plugin_handle *h, const char *const argv[], char *out, size_t outlen,
                    struct bh_err *err)
{
    if (!argv || !argv[0])
        return bh_err_set(err, BH_EINVAL, "run: empty argv");
    struct bh_proc_opts opts = {.stdout_fd = -1, .timeout_ms = HOST_RUN_TIMEOUT_MS};
    struct bh_proc_result res;
    int rc = bh_proc_run(argv, &opts, &res, err);
    if (rc == 0 && out && outlen > 0)
        snprintf(out, outlen, "%s", res.out);
    if (rc == 0 && res.exit_code != 0) {
        host_trim(res.errout, res.err_len);
        rc = bh_err_set(err, BH_EIO, "%s %s exited %d: %.300s", argv[0], argv[1] ? argv[1] : "",
                        res.exit_code, res.errout);
    }
    bh_proc_result_free(&res);
    return rc;
}

static const char *host_state_dir(struct bh_plugin_handle *h)
{
    return h ? h->state_dir : NULL;
}

static int host_secret_get(struct bh_plugin_handle *h, const char *name, const char *key,
                           const char *tenant, char **value, struct bh_err *err)
{
    if (!h || !h->secrets)
        return bh_err_set(err, BH_EUNAVAIL, "the host has no secret store");
    return bh_secrets_get(h->secrets, tenant, name, key, value, err);
}

/* Everything the host hands out is a NUL-terminated string (secret values): wipe it. */
static void host_free(struct bh_plugin_handle *h, void *p)
{
    if (!p)
        return;
    bh_crypto_wipe(p, strlen(p));
    free(p);
}

/* ---- 2.1: trigger and guard instances ---- */

static const char *host_config_json(struct bh_plugin_handle *h, const char *key)
{
    const cJSON *v = host_config_item(h, key);
    if (!v)
        return NULL;
    /* Printed once per key and kept with the handle, so the answer lives until fini. */
    pthread_mutex_lock(&h->json_lock);
    if (!h->json_texts)
        h->json_texts = cJSON_CreateObject();
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(h->json_texts, key);
    if (!t) {
        bh_autofree char *text = bh_json_print(v);
        t = cJSON_AddStringToObject(h->json_texts, key, text);
    }
    pthread_mutex_unlock(&h->json_lock);
    return t->valuestring;
}

static int host_emit(struct bh_plugin_handle *h, const struct bh_event *ev,
                     struct bh_event_reply *reply, struct bh_err *err)
{
    if (!h || !h->hooks || !ev || !reply)
        return bh_err_set(err, BH_EINVAL, "emit: not a trigger instance, or no event/reply");
    return h->hooks->emit(h, ev, reply, err);
}

static void host_reply_free(struct bh_plugin_handle *h, struct bh_event_reply *reply)
{
    if (!reply)
        return;
    free(reply->body);
    reply->body = NULL;
    reply->body_len = 0;
}

static int host_http_route(struct bh_plugin_handle *h, const char *path, bh_http_handler_fn fn,
                           void *arg, struct bh_err *err)
{
    if (!h || !h->hooks || !path || !fn)
        return bh_err_set(err, BH_EINVAL, "http_route: not a trigger instance, or no path/fn");
    return h->hooks->http_route(h, path, fn, arg, err);
}

static void host_http_respond(struct bh_plugin_handle *h, struct bh_http_response *resp,
                              uint32_t status, const char *content_type, const char *body,
                              size_t len)
{
    if (!resp)
        return;
    bh_plugin_response_clear(resp);
    /* A status outside HTTP's range would make the listener send garbage. */
    resp->status = status >= 200 && status <= 599 ? (int)status : 500;
    resp->content_type = bh_xstrdup(content_type ? content_type : "text/plain; charset=utf-8");
    resp->body = bh_xstrndup(body ? body : "", body ? len : 0);
    resp->len = body ? len : 0;
}

static void host_failed(struct bh_plugin_handle *h, const char *reason)
{
    if (h && h->hooks)
        h->hooks->failed(h, reason ? reason : "the adapter failed");
}

static void host_status_set(struct bh_plugin_handle *h, const char *key, const char *value)
{
    if (h && h->hooks && key)
        h->hooks->status_set(h, key, value);
}

void bh_plugin_response_clear(struct bh_http_response *r)
{
    free(r->content_type);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

static const struct bh_host_api host_api = {
    .size = sizeof(struct bh_host_api),
    .abi_major = BH_PLUGIN_ABI_MAJOR,
    .abi_minor = BH_PLUGIN_ABI_MINOR,
    .log = host_log,
    .err_set = host_err_set,
    .config_string = host_config_string,
    .config_int = host_config_int,
    .config_bool = host_config_bool,
    .run = host_run,
    .state_dir = host_state_dir,
    .secret_get = host_secret_get,
    .free = host_free,
    .config_json = host_config_json,
    .emit = host_emit,
    .reply_free = host_reply_free,
    .http_route = host_http_route,
    .http_respond = host_http_respond,
    .failed = host_failed,
    .status_set = host_status_set,
};

const struct bh_host_api *bh_plugin_host_api(void)
{
    return &host_api;
}

struct bh_plugin_handle *bh_plugin_handle_new(struct bh_plugin *p, const char *state_dir,
                                              struct bh_secrets *secrets, struct bh_config *cfg)
{
    struct bh_plugin_handle *h = bh_xcalloc(1, sizeof(*h));
    h->plugin = p;
    h->module = bh_xasprintf("plugin/%s", p->info->name);
    h->state_dir = bh_xstrdup(state_dir);
    h->secrets = secrets;
    h->config = cfg;
    pthread_mutex_init(&h->json_lock, NULL);
    return h;
}

void bh_plugin_handle_free(struct bh_plugin_handle *h)
{
    if (!h)
        return;
    bh_plugin_config_free(h->config);
    cJSON_Delete(h->json_texts);
    pthread_mutex_destroy(&h->json_lock);
    free(h->module);
    free(h->state_dir);
    free(h);
}

struct bh_plugin_handle *bh_plugin_instance_handle(struct bh_plugin *p, const char *name,
                                                   struct bh_config *cfg,
                                                   const struct bh_plugin_hooks *hooks, void *owner)
{
    bh_autofree char *dir = bh_xasprintf("%s/%s", p->handle->state_dir, name);
    struct bh_plugin_handle *h = bh_plugin_handle_new(p, dir, p->handle->secrets, cfg);
    free(h->module);
    h->module = bh_xasprintf("plugin/%s/%s", p->info->name, name);
    h->hooks = hooks;
    h->owner = owner;
    return h;
}

void bh_plugin_instance_handle_free(struct bh_plugin_handle *h)
{
    bh_plugin_handle_free(h);
}

void *bh_plugin_handle_owner(struct bh_plugin_handle *h)
{
    return h ? h->owner : NULL;
}
