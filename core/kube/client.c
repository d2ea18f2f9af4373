/* The Kubernetes client's configuration (kubeconfig, in-cluster) and its plain requests. */
#include "client.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#include "bodybuf.h"
#include "client_int.h"
#include "crypto.h"
#include "fs.h"
#include "json.h"
#include "mem.h"
#include "resource.h"

#define KUBE_FILE_MAX (1 << 20) /* kubeconfigs, certificates, tokens */
#define KUBE_BODY_MAX (64 << 20)
#define KUBE_CONNECT_TIMEOUT_S 10L
#define KUBE_REQUEST_TIMEOUT_S 30L

/* ---- kubeconfig ---- */

/* The entry of a named list ("clusters", "users", "contexts") called name: its `field`. */
static const cJSON *kube_named(const cJSON *doc, const char *list, const char *field,
                               const char *name, struct bh_err *err)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(doc, list)) {
        const char *n = bh_json_str(e, "name");
        if (n && strcmp(n, name) == 0) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(e, field);
            if (cJSON_IsObject(v))
                return v;
            bh_err_set(err, BH_EINVAL, "%s[%s].%s: missing", list, name, field);
            return NULL;
        }
    }
    bh_err_set(err, BH_EINVAL, "%s: no entry named \"%s\"", list, name);
    return NULL;
}

/* The file at path, relative to base_dir unless absolute, into *out (owned). */
static int kube_read_rel(const char *path, const char *base_dir, char **out, struct bh_err *err)
{
    bh_autofree char *full =
        path[0] == '/' || !base_dir ? bh_xstrdup(path) : bh_xasprintf("%s/%s", base_dir, path);
    size_t n = 0;
    return bh_fs_read_all(full, KUBE_FILE_MAX, out, &n, err);
}

/* A PEM given inline as base64 (`<key>-data`) or as a file (`<key>`). *out NULL when neither
 * is set. */
static int kube_data_or_file(const cJSON *obj, const char *key, const char *where,
                             const char *base_dir, char **out, struct bh_err *err)
{
    bh_autofree char *dkey = bh_xasprintf("%s-data", key);
    const char *data = bh_json_str(obj, dkey);
    const char *file = bh_json_str(obj, key);
    *out = NULL;
    if (data) {
        size_t n = 0;
        *out = (char *)bh_crypto_unbase64(data, &n);
        if (!*out)
            return bh_err_set(err, BH_EINVAL, "%s.%s: not base64", where, dkey);
        return 0;
    }
    if (file && kube_read_rel(file, base_dir, out, err) < 0)
        return bh_err_wrap(err, "%s.%s", where, key);
    return 0;
}

/* The fields this client cannot use: better refused by name than ignored. */
static int kube_user_unsupported(const cJSON *user, const char *where, struct bh_err *err)
{
    static const char *const keys[] = {"exec", "auth-provider", "username", "password"};
    for (size_t i = 0; i < BH_ARRAY_LEN(keys); i++)
        if (cJSON_GetObjectItemCaseSensitive(user, keys[i]))
            return bh_err_set(err, BH_EINVAL,
                              "%s.%s: not supported (use a token or a client "
                              "certificate)",
                              where, keys[i]);
    return 0;
}

static int kube_parse_user(const cJSON *doc, const char *name, const char *base_dir,
                           struct bh_kube_config *c, struct bh_err *err)
{
    const cJSON *u = kube_named(doc, "users", "user", name, err);
    if (!u)
        return -1;
    bh_autofree char *where = bh_xasprintf("users[%s].user", name);
    if (kube_user_unsupported(u, where, err) < 0)
        return -1;
    const char *token = bh_json_str(u, "token");
    const char *token_file = bh_json_str(u, "tokenFile");
    if (token)
        c->token = bh_xstrdup(token);
    else if (token_file) {
        if (kube_read_rel(token_file, base_dir, &c->token, err) < 0)
            return bh_err_wrap(err, "%s.tokenFile", where);
        c->token[strcspn(c->token, "\r\n")] = '\0';
    }
    if (kube_data_or_file(u, "client-certificate", where, base_dir, &c->cert_pem, err) < 0 ||
        kube_data_or_file(u, "client-key", where, base_dir, &c->key_pem, err) < 0)
        return -1;
    if (!c->cert_pem != !c->key_pem)
        return bh_err_set(err, BH_EINVAL, "%s: client-certificate and client-key go together",
                          where);
    return 0;
}

static int kube_parse_cluster(const cJSON *doc, const char *name, const char *base_dir,
                              struct bh_kube_config *c, struct bh_err *err)
{
    const cJSON *cl = kube_named(doc, "clusters", "cluster", name, err);
    if (!cl)
        return -1;
    bh_autofree char *where = bh_xasprintf("clusters[%s].cluster", name);
    const char *server = bh_json_str(cl, "server");
    if (!server || (strncmp(server, "https://", 8) != 0 && strncmp(server, "http://", 7) != 0))
        return bh_err_set(err, BH_EINVAL, "%s.server: must be an http(s) URL", where);
    c->server = bh_xstrdup(server);
    size_t n = strlen(c->server);
    while (n > 0 && c->server[n - 1] == '/')
        c->server[--n] = '\0';
    c->insecure = bh_json_bool(cl, "insecure-skip-tls-verify", 0);
    return kube_data_or_file(cl, "certificate-authority", where, base_dir, &c->ca_pem, err);
}

static int kube_parse_doc(const cJSON *doc, const char *base_dir, struct bh_kube_config *c,
                          struct bh_err *err)
{
    const char *cur = bh_json_str(doc, "current-context");
    if (!cur || !*cur)
        return bh_err_set(err, BH_EINVAL, "current-context: not set");
    const cJSON *ctx = kube_named(doc, "contexts", "context", cur, err);
    if (!ctx)
        return -1;
    const char *cluster = bh_json_str(ctx, "cluster");
    const char *user = bh_json_str(ctx, "user");
    const char *ns = bh_json_str(ctx, "namespace");
    if (!cluster)
        return bh_err_set(err, BH_EINVAL, "contexts[%s].context.cluster: missing", cur);
    c->namespace = bh_xstrdup(ns && *ns ? ns : "default");
    if (kube_parse_cluster(doc, cluster, base_dir, c, err) < 0)
        return -1;
    return user ? kube_parse_user(doc, user, base_dir, c, err) : 0;
}

int bh_kube_config_parse(const char *text, size_t len, const char *base_dir,
                         struct bh_kube_config *out, struct bh_err *err)
{
    cJSON *doc = NULL;
    memset(out, 0, sizeof(*out));
    if (bh_resource_parse(text, len, &doc, err) < 0)
        return bh_err_wrap(err, "kubeconfig");
    int rc = kube_parse_doc(doc, base_dir, out, err);
    cJSON_Delete(doc);
    if (rc < 0) {
        bh_kube_config_free(out);
        return bh_err_wrap(err, "kubeconfig");
    }
    return 0;
}

int bh_kube_config_load(const char *path, struct bh_kube_config *out, struct bh_err *err)
{
    bh_autofree char *text = NULL;
    size_t len = 0;
    memset(out, 0, sizeof(*out));
    if (bh_fs_read_all(path, KUBE_FILE_MAX, &text, &len, err) < 0)
        return -1;
    bh_autofree char *dir = bh_xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    if (bh_kube_config_parse(text, len, slash ? dir : ".", out, err) < 0)
        return bh_err_wrap(err, "%s", path);
    return 0;
}

static int kube_read_trimmed(const char *dir, const char *name, char **out, struct bh_err *err)
{
    bh_autofree char *path = bh_xasprintf("%s/%s", dir, name);
    size_t n = 0;
    if (bh_fs_read_all(path, KUBE_FILE_MAX, out, &n, err) < 0)
        return -1;
    while (n > 0 && ((*out)[n - 1] == '\n' || (*out)[n - 1] == '\r' || (*out)[n - 1] == ' '))
        (*out)[--n] = '\0';
    return 0;
}

int bh_kube_config_in_cluster(const char *sa_dir, struct bh_kube_config *out, struct bh_err *err)
{
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    memset(out, 0, sizeof(*out));
    if (!host || !*host || !port || !*port)
        return bh_err_set(err, BH_EINVAL,
                          "in-cluster configuration: KUBERNETES_SERVICE_HOST "
                          "and KUBERNETES_SERVICE_PORT must be set");
    /* An IPv6 service address needs brackets in a URL. */
    int v6 = strchr(host, ':') != NULL;
    out->server = bh_xasprintf("https://%s%s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "", port);
    if (kube_read_trimmed(sa_dir, "token", &out->token, err) < 0 ||
        kube_read_trimmed(sa_dir, "ca.crt", &out->ca_pem, err) < 0 ||
        kube_read_trimmed(sa_dir, "namespace", &out->namespace, err) < 0) {
        bh_kube_config_free(out);
        return bh_err_wrap(err, "in-cluster configuration");
    }
    return 0;
}

void bh_kube_config_free(struct bh_kube_config *c)
{
    free(c->server);
    free(c->ca_pem);
    if (c->token)
        bh_crypto_wipe(c->token, strlen(c->token));
    free(c->token);
    free(c->cert_pem);
    if (c->key_pem)
        bh_crypto_wipe(c->key_pem, strlen(c->key_pem));
    free(c->key_pem);
    free(c->namespace);
    memset(c, 0, sizeof(*c));
}

/* ---- client ---- */

struct bh_kube_client *bh_kube_client_new(struct bh_kube_config *cfg)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct bh_kube_client *c = bh_xcalloc(1, sizeof(*c));
    c->cfg = *cfg;
    memset(cfg, 0, sizeof(*cfg));
    if (c->cfg.token)
        c->authz = bh_xasprintf("Authorization: Bearer %s", c->cfg.token);
    return c;
}

void bh_kube_client_free(struct bh_kube_client *c)
{
    if (!c)
        return;
    bh_kube_config_free(&c->cfg);
    if (c->authz)
        bh_crypto_wipe(c->authz, strlen(c->authz));
    free(c->authz);
    free(c);
}

const char *bh_kube_client_namespace(const struct bh_kube_client *c)
{
    return c->cfg.namespace;
}

static void kube_blob(CURL *h, CURLoption opt, const char *pem)
{
    struct curl_blob b = {.data = (void *)pem, .len = strlen(pem), .flags = CURL_BLOB_COPY};
    curl_easy_setopt(h, opt, &b);
}

CURL *bh_kube_curl(struct bh_kube_client *c, const char *method, const char *path,
                   struct curl_slist **hdrs, const char *content_type)
{
    CURL *h = curl_easy_init();
    if (!h)
        return NULL;
    bh_autofree char *url = bh_xasprintf("%s%s", c->cfg.server, path);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, KUBE_CONNECT_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "boilerhouse-operator");
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    if (c->cfg.ca_pem)
        kube_blob(h, CURLOPT_CAINFO_BLOB, c->cfg.ca_pem);
    if (c->cfg.cert_pem) {
        kube_blob(h, CURLOPT_SSLCERT_BLOB, c->cfg.cert_pem);
        kube_blob(h, CURLOPT_SSLKEY_BLOB, c->cfg.key_pem);
    }
    if (c->cfg.insecure) {
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    *hdrs = curl_slist_append(NULL, "Accept: application/json");
    if (c->authz)
        *hdrs = curl_slist_append(*hdrs, c->authz);
    if (content_type) {
        bh_autofree char *ct = bh_xasprintf("Content-Type: %s", content_type);
        *hdrs = curl_slist_append(*hdrs, ct);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, *hdrs);
    return h;
}

static int kube_code_of(long http)
{
    switch (http) {
    case 400:
    case 422:
        return BH_EINVAL;
    case 401:
        return BH_EAUTH;
    case 403:
        return BH_EFORBIDDEN;
    case 404:
        return BH_ENOTFOUND;
    case 409:
        return BH_ECONFLICT;
    case 413:
        return BH_ETOOLARGE;
    case 429:
    case 503:
        return BH_EUNAVAIL;
    case 504:
        return BH_ETIMEOUT;
    default:
        return BH_EIO;
    }
}

int bh_kube_status_err(long http, const cJSON *status, const char *what, struct bh_err *err)
{
    const char *msg = bh_json_str(status, "message");
    const char *reason = bh_json_str(status, "reason");
    return bh_err_set(err, kube_code_of(http), "%s: %ld %s%s%s", what, http, reason ? reason : "",
                      reason && msg ? ": " : "", msg ? msg : "");
}

int bh_kube_request(struct bh_kube_client *c, const char *method, const char *path,
                    const cJSON *body, const char *content_type, cJSON **out, long *http,
                    struct bh_err *err)
{
    struct curl_slist *hdrs = NULL;
    struct bh_bodybuf b = {.max = KUBE_BODY_MAX};
    bh_autofree char *text = body ? cJSON_PrintUnformatted(body) : NULL;
    long status = 0;
    if (out)
        *out = NULL;
    CURL *h = bh_kube_curl(c, method, path, &hdrs,
                           body ? (content_type ? content_type : "application/json") : NULL);
    if (!h)
        return bh_err_set(err, BH_EIO, "%s %s: curl init failed", method, path);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, KUBE_REQUEST_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, bh_bodybuf_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    if (text)
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, text);
    CURLcode cc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    curl_slist_free_all(hdrs);
    if (http)
        *http = cc == CURLE_OK ? status : 0;
    bh_autofree char *data = b.data;
    bh_autofree char *what = bh_xasprintf("%s %s", method, path);
    if (cc != CURLE_OK)
        return bh_err_set(err, b.over ? BH_ETOOLARGE : BH_EUNAVAIL, "%s: %s", what,
                          b.over ? "answer too large" : curl_easy_strerror(cc));
    cJSON *doc = data ? cJSON_ParseWithLength(data, b.len) : NULL;
    if (status < 200 || status > 299) {
        int rc = bh_kube_status_err(status, doc, what, err);
        cJSON_Delete(doc);
        return rc;
    }
    if (!doc && out)
        return bh_err_set(err, BH_EIO, "%s: answer is not JSON", what);
    if (out)
        *out = doc;
    else
        cJSON_Delete(doc);
    return 0;
}

/* Items of a list carry no apiVersion/kind; the list's kind without "List" is theirs. */
static void kube_set_item_kinds(cJSON *list, cJSON *items)
{
    const char *api = bh_json_str(list, "apiVersion");
    const char *kind = bh_json_str(list, "kind");
    bh_autofree char *ikind = NULL;
    if (kind && strlen(kind) > 4 && strcmp(kind + strlen(kind) - 4, "List") == 0)
        ikind = bh_xstrndup(kind, strlen(kind) - 4);
    cJSON *it;
    cJSON_ArrayForEach(it, items) {
        if (api && !cJSON_GetObjectItemCaseSensitive(it, "apiVersion"))
            cJSON_AddStringToObject(it, "apiVersion", api);
        if (ikind && !cJSON_GetObjectItemCaseSensitive(it, "kind"))
            cJSON_AddStringToObject(it, "kind", ikind);
    }
}

int bh_kube_list(struct bh_kube_client *c, const char *path, int limit, cJSON **items, char **rv,
                 struct bh_err *err)
{
    cJSON *all = cJSON_CreateArray();
    bh_autofree char *cont = NULL;
    *items = NULL;
    *rv = NULL;
    for (;;) {
        char *esc = cont ? curl_easy_escape(NULL, cont, 0) : NULL;
        bh_autofree char *url =
            bh_xasprintf("%s%slimit=%d%s%s", path, strchr(path, '?') ? "&" : "?", limit,
                         esc ? "&continue=" : "", esc ? esc : "");
        curl_free(esc);
        cJSON *page = NULL;
        if (bh_kube_request(c, "GET", url, NULL, NULL, &page, NULL, err) < 0) {
            cJSON_Delete(all);
            return -1;
        }
        cJSON *its = cJSON_DetachItemFromObjectCaseSensitive(page, "items");
        kube_set_item_kinds(page, its);
        while (its && cJSON_GetArraySize(its) > 0)
            cJSON_AddItemToArray(all, cJSON_DetachItemFromArray(its, 0));
        cJSON_Delete(its);
        free(cont);
        const char *next = bh_json_str(page, "metadata.continue");
        cont = next && *next ? bh_xstrdup(next) : NULL;
        if (!cont) {
            const char *v = bh_json_str(page, "metadata.resourceVersion");
            *rv = bh_xstrdup(v ? v : "");
            cJSON_Delete(page);
            break;
        }
        cJSON_Delete(page);
    }
    *items = all;
    return 0;
}
