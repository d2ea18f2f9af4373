/* Pulling from an OCI distribution registry with libcurl: manifests (picking linux/amd64
 * from an index), then config and layer blobs, each hashed while streamed to a temp file.
 * Auth: anonymous first; a 401 challenge (Bearer token service, or Basic) is answered once
 * with the configured credentials. */
#include "image_int.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fs.h"
#include "log.h"
#include "mem.h"

#define REG_CONNECT_TIMEOUT_S 30L
#define REG_SMALL_TIMEOUT_MS 60000L /* manifests and tokens */
#define REG_STALL_TIMEOUT_S 60L     /* blobs: no total limit, but no 60 s without data */
#define REG_ACCEPT                                                                                 \
    "Accept: " BH_IMAGE_MT_OCI_MANIFEST ", " BH_IMAGE_MT_OCI_INDEX                                 \
    ", " BH_IMAGE_MT_DOCKER_MANIFEST ", " BH_IMAGE_MT_DOCKER_LIST

struct reg {
    struct bh_image_store *st;      /* borrowed */
    const struct bh_image_ref *ref; /* borrowed */
    CURL *h;
    char *base;              /* "https://host" (owned) */
    int plain_ok;            /* plain HTTP allowed for this registry */
    const char *user, *pass; /* borrowed from st->registry_cfg, may be NULL */
    const char *ca_file;     /* borrowed, may be NULL */
    char *authz;             /* "Authorization: Bearer ..." once obtained (owned) */
    int basic;               /* send user/pass as Basic */
    char *challenge;         /* last WWW-Authenticate value (owned) */
};

struct reg_sink {
    struct reg *reg;
    char *buf; /* memory mode (owned by the caller) */
    size_t len, max;
    struct bh_image_blobw *w; /* blob mode (borrowed) */
    struct bh_err *err;
    int failed;
};

struct reg_req {
    const char *url;
    const char *accept; /* full header line or NULL */
    const char *authz;  /* full header line or NULL */
    int basic;
    long timeout_ms; /* 0: stall timeout only */
    struct reg_sink *sink;
};

/* ---- configuration --------------------------------------------------------------------- */

static int reg_host_is_loopback(const char *host)
{
    const char *names[] = {"localhost", "127.0.0.1", "[::1]"};
    for (size_t i = 0; i < BH_ARRAY_LEN(names); i++) {
        size_t n = strlen(names[i]);
        if (strncmp(host, names[i], n) == 0 && (host[n] == '\0' || host[n] == ':'))
            return 1;
    }
    return 0;
}

static int reg_host_is_insecure(const cJSON *cfg, const char *host)
{
    const cJSON *h;
    cJSON_ArrayForEach(h, cJSON_GetObjectItemCaseSensitive(cfg, "insecure")) {
        if (cJSON_IsString(h) && strcmp(h->valuestring, host) == 0)
            return 1;
    }
    return 0;
}

static const char *reg_cfg_string(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void reg_configure(struct reg *r)
{
    const cJSON *cfg = r->st->registry_cfg;
    const char *host = r->ref->host;
    r->plain_ok = reg_host_is_loopback(host) || reg_host_is_insecure(cfg, host);
    /* docker.io names an index; the registry API lives on registry-1.docker.io. */
    const char *api = strcmp(host, "docker.io") == 0 ? "registry-1.docker.io" : host;
    r->base = bh_xasprintf("%s://%s", r->plain_ok ? "http" : "https", api);
    const cJSON *auth =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(cfg, "auths"), host);
    r->user = reg_cfg_string(auth, "username");
    r->pass = reg_cfg_string(auth, "password");
    r->ca_file = reg_cfg_string(cfg, "caFile");
}

/* ---- transfers ------------------------------------------------------------------------- */

static size_t reg_on_data(char *data, size_t size, size_t nmemb, void *ud)
{
    struct reg_sink *s = ud;
    size_t n = size * nmemb;
    long code = 0;
    curl_easy_getinfo(s->reg->h, CURLINFO_RESPONSE_CODE, &code);
    if (code != 200)
        return n; /* error bodies are not content */
    if (s->w) {
        s->failed = bh_image_blobw_write(s->w, data, n, s->err) < 0;
        return s->failed ? 0 : n;
    }
    if (s->len + n > s->max) {
        s->failed = 1;
        bh_err_set(s->err, BH_ETOOLARGE, "registry response larger than %zu bytes", s->max);
        return 0;
    }
    s->buf = bh_xrealloc(s->buf, s->len + n + 1);
    memcpy(s->buf + s->len, data, n);
    s->len += n;
    s->buf[s->len] = '\0';
    return n;
}

static size_t reg_on_header(char *data, size_t size, size_t nmemb, void *ud)
{
    struct reg *r = ud;
    size_t n = size * nmemb;
    const char key[] = "WWW-Authenticate:";
    if (n > sizeof(key) - 1 && strncasecmp(data, key, sizeof(key) - 1) == 0) {
        size_t skip = sizeof(key) - 1;
        while (skip < n && (data[skip] == ' ' || data[skip] == '\t'))
            skip++;
        size_t len = n - skip;
        while (len > 0 && (data[skip + len - 1] == '\r' || data[skip + len - 1] == '\n'))
            len--;
        free(r->challenge);
        r->challenge = bh_xstrndup(data + skip, len);
    }
    return n;
}

static void reg_set_options(struct reg *r, const struct reg_req *q, struct curl_slist *hdrs)
{
    CURL *h = r->h;
    const char *protos = r->plain_ok ? "http,https" : "https";
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, q->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, protos);
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, protos);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L); /* blob stores redirect to a CDN */
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, REG_CONNECT_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, q->timeout_ms);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, REG_STALL_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "boilerhouse/" BH_VERSION);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, reg_on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, q->sink);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, reg_on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    if (r->ca_file)
        curl_easy_setopt(h, CURLOPT_CAINFO, r->ca_file);
    if (q->basic) {
        curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(h, CURLOPT_USERNAME, r->user);
        curl_easy_setopt(h, CURLOPT_PASSWORD, r->pass);
    }
}

/* One HTTP GET; *code is the final status. Transport failures are errors, statuses not. */
static int reg_perform(struct reg *r, const struct reg_req *q, long *code, struct bh_err *err)
{
    struct curl_slist *hdrs = NULL;
    if (q->accept)
        hdrs = curl_slist_append(hdrs, q->accept);
    if (q->authz)
        hdrs = curl_slist_append(hdrs, q->authz);
    reg_set_options(r, q, hdrs);
    CURLcode c = curl_easy_perform(r->h);
    curl_slist_free_all(hdrs);
    if (q->sink->failed)
        return -1;
    if (c != CURLE_OK)
        return bh_err_set(err, c == CURLE_OPERATION_TIMEDOUT ? BH_ETIMEOUT : BH_EIO,
                          "registry request %s: %s", q->url, curl_easy_strerror(c));
    curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, code);
    return 0;
}

/* ---- auth ------------------------------------------------------------------------------ */

struct reg_challenge {
    char *realm, *service, *scope; /* owned */
};

/* Reads one `key="value"` (or key=token) pair at *p; returns 0 at the end. */
static int reg_next_param(const char **p, char **key, char **val)
{
    const char *s = *p + strspn(*p, " ,\t");
    const char *eq = strchr(s, '=');
    if (!*s || !eq)
        return 0;
    *key = bh_xstrndup(s, (size_t)(eq - s));
    const char *v = eq + 1;
    size_t n;
    if (*v == '"') {
        v++;
        const char *end = strchr(v, '"');
        n = end ? (size_t)(end - v) : strlen(v);
        *p = v + n + (end ? 1 : 0);
    } else {
        n = strcspn(v, ",");
        *p = v + n;
    }
    *val = bh_xstrndup(v, n);
    return 1;
}

static void reg_parse_params(const char *params, struct reg_challenge *c)
{
    struct {
        const char *key;
        char **field;
    } table[] = {{"realm", &c->realm}, {"service", &c->service}, {"scope", &c->scope}};
    char *key, *val;
    while (reg_next_param(&params, &key, &val)) {
        for (size_t i = 0; i < BH_ARRAY_LEN(table); i++) {
            if (strcasecmp(key, table[i].key) == 0 && !*table[i].field)
                *table[i].field = BH_STEAL(val);
        }
        free(key);
        free(val);
    }
}

static void reg_challenge_clear(struct reg_challenge *c)
{
    free(c->realm);
    free(c->service);
    free(c->scope);
}

static char *reg_token_url(struct reg *r, const struct reg_challenge *c)
{
    bh_autofree char *def_scope = bh_xasprintf("repository:%s:pull", r->ref->repo);
    char *svc = curl_easy_escape(r->h, c->service ? c->service : "", 0);
    char *scope = curl_easy_escape(r->h, c->scope ? c->scope : def_scope, 0);
    char *url = bh_xasprintf("%s%cservice=%s&scope=%s", c->realm, strchr(c->realm, '?') ? '&' : '?',
                             svc, scope);
    curl_free(svc);
    curl_free(scope);
    return url;
}

static int reg_parse_token(struct reg *r, const char *body, struct bh_err *err)
{
    cJSON *j = cJSON_Parse(body);
    const char *tok = reg_cfg_string(j, "token");
    if (!tok)
        tok = reg_cfg_string(j, "access_token");
    int found = tok != NULL; /* tok is borrowed from j */
    if (found)
        r->authz = bh_xasprintf("Authorization: Bearer %s", tok);
    cJSON_Delete(j);
    return found ? 0
                 : bh_err_set(err, BH_EAUTH, "registry %s: token response has no token",
                              r->ref->host);
}

static int reg_fetch_token(struct reg *r, const struct reg_challenge *c, struct bh_err *err)
{
    if (!c->realm)
        return bh_err_set(err, BH_EAUTH, "registry %s: Bearer challenge without realm",
                          r->ref->host);
    if (strncmp(c->realm, "https://", 8) != 0 && !(r->plain_ok && !strncmp(c->realm, "http://", 7)))
        return bh_err_set(err, BH_EAUTH, "registry %s: token realm %s is not https", r->ref->host,
                          c->realm);
    bh_autofree char *url = reg_token_url(r, c);
    struct reg_sink sink = {.reg = r, .max = 1u << 20, .err = err};
    struct reg_req q = {
        .url = url, .basic = r->user && r->pass, .timeout_ms = REG_SMALL_TIMEOUT_MS, .sink = &sink};
    long code = 0;
    int rc = reg_perform(r, &q, &code, err);
    if (rc == 0 && code != 200)
        rc = bh_err_set(err, BH_EAUTH, "registry %s: token service %s answered HTTP %ld",
                        r->ref->host, c->realm, code);
    if (rc == 0)
        rc = reg_parse_token(r, sink.buf ? sink.buf : "", err);
    free(sink.buf);
    return rc;
}

/* Answers the last 401's challenge; afterwards requests carry the credentials. */
static int reg_authenticate(struct reg *r, struct bh_err *err)
{
    bh_autofree char *chal = r->challenge ? bh_xstrdup(r->challenge) : NULL;
    if (chal && strncasecmp(chal, "Bearer ", 7) == 0) {
        struct reg_challenge c = {0};
        reg_parse_params(chal + 7, &c);
        int rc = reg_fetch_token(r, &c, err);
        reg_challenge_clear(&c);
        return rc;
    }
    if (chal && strncasecmp(chal, "Basic", 5) == 0 && r->user && r->pass) {
        r->basic = 1;
        return 0;
    }
    return bh_err_set(err, BH_EAUTH,
                      "registry %s requires credentials: set auths[\"%s\"] in the registry "
                      "config",
                      r->ref->host, r->ref->host);
}

/* GET with one authentication retry; maps HTTP failures to errors naming what. */
static int reg_get(struct reg *r, struct reg_req *q, const char *what, struct bh_err *err)
{
    long code = 0;
    for (int attempt = 0;; attempt++) {
        q->authz = r->authz;
        q->basic = r->basic;
        if (reg_perform(r, q, &code, err) < 0)
            return -1;
        if (code != 401 || attempt > 0 || (r->authz || r->basic))
            break;
        if (reg_authenticate(r, err) < 0)
            return -1;
        q->sink->len = 0;
    }
    if (code == 200)
        return 0;
    if (code == 401 || code == 403)
        return bh_err_set(err, code == 401 ? BH_EAUTH : BH_EFORBIDDEN,
                          "registry %s refused access to %s (HTTP %ld)", r->ref->host, what, code);
    if (code == 404)
        return bh_err_set(err, BH_ENOTFOUND, "registry %s has no %s", r->ref->host, what);
    return bh_err_set(err, BH_EIO, "registry %s: HTTP %ld for %s", r->ref->host, code, what);
}

/* ---- manifests and blobs --------------------------------------------------------------- */

/* Fetches a manifest (or index) by tag or digest, stores it (verified against expect when
 * fetched by digest) and parses it. *out_digest and *out owned. */
static int reg_manifest(struct reg *r, const char *tag_or_digest, const char *expect,
                        char **out_digest, cJSON **out, struct bh_err *err)
{
    bh_autofree char *url =
        bh_xasprintf("%s/v2/%s/manifests/%s", r->base, r->ref->repo, tag_or_digest);
    bh_autofree char *what = bh_xasprintf("manifest %s:%s", r->ref->repo, tag_or_digest);
    struct reg_sink sink = {.reg = r, .max = BH_IMAGE_MAX_JSON, .err = err};
    struct reg_req q = {
        .url = url, .accept = REG_ACCEPT, .timeout_ms = REG_SMALL_TIMEOUT_MS, .sink = &sink};
    bh_autofree char *body = NULL;
    int rc = reg_get(r, &q, what, err);
    body = sink.buf;
    if (rc < 0)
        return -1;
    if (!body || bh_image_blob_put_mem(r->st, body, sink.len, expect, out_digest, err) < 0)
        return body ? -1 : bh_err_set(err, BH_EINVAL, "registry %s: empty %s", r->ref->host, what);
    *out = cJSON_ParseWithLength(body, sink.len);
    if (!*out)
        return bh_err_set(err, BH_EINVAL, "registry %s: %s is not JSON", r->ref->host, what);
    return 0;
}

static int reg_blob(struct reg *r, const char *digest, struct bh_err *err)
{
    bh_autofree char *have = bh_image_blob_path(r->st, digest);
    if (bh_fs_exists(have))
        return 0;
    bh_autofree char *url = bh_xasprintf("%s/v2/%s/blobs/%s", r->base, r->ref->repo, digest);
    bh_autofree char *what = bh_xasprintf("blob %s", digest);
    struct bh_image_blobw *w;
    if (bh_image_blobw_open(r->st, &w, err) < 0)
        return -1;
    struct reg_sink sink = {.reg = r, .w = w, .err = err};
    struct reg_req q = {.url = url, .sink = &sink};
    if (reg_get(r, &q, what, err) < 0) {
        bh_image_blobw_abort(w);
        return -1;
    }
    return bh_image_blobw_commit(w, digest, NULL, err);
}

static int reg_blobs(struct reg *r, const cJSON *manifest, struct bh_err *err)
{
    const char *cfg =
        bh_image_desc_digest(cJSON_GetObjectItemCaseSensitive(manifest, "config"), err);
    if (!cfg || reg_blob(r, cfg, err) < 0)
        return -1;
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(manifest, "layers");
    if (!cJSON_IsArray(layers))
        return bh_err_set(err, BH_EINVAL, "manifest has no layers (schema 1 is not supported)");
    const cJSON *l;
    cJSON_ArrayForEach(l, layers) {
        const char *digest = bh_image_desc_digest(l, err);
        if (!digest || reg_blob(r, digest, err) < 0)
            return -1;
    }
    return 0;
}

/* Manifest for the ref, descending from an index to linux/amd64. */
static int reg_image_manifest(struct reg *r, char **digest, cJSON **manifest, struct bh_err *err)
{
    const char *want = r->ref->digest ? r->ref->digest : r->ref->tag;
    if (reg_manifest(r, want, r->ref->digest, digest, manifest, err) < 0)
        return -1;
    if (!bh_image_manifest_is_index(*manifest))
        return 0;
    const cJSON *d = bh_image_index_pick(*manifest, err);
    const char *next = d ? bh_image_desc_digest(d, err) : NULL;
    bh_autofree char *pick = next ? bh_xstrdup(next) : NULL;
    cJSON_Delete(*manifest);
    *manifest = NULL;
    free(*digest);
    *digest = NULL;
    if (!pick)
        return -1;
    return reg_manifest(r, pick, pick, digest, manifest, err);
}

static int reg_pull(struct reg *r, char **out_digest, struct bh_err *err)
{
    bh_autofree char *digest = NULL;
    cJSON *manifest = NULL;
    int rc = reg_image_manifest(r, &digest, &manifest, err);
    if (rc == 0)
        rc = reg_blobs(r, manifest, err);
    cJSON_Delete(manifest);
    bh_autofree char *name = bh_image_ref_format(r->ref);
    if (rc == 0)
        rc = bh_image_refs_set(r->st, name, digest, err);
    if (rc < 0)
        return bh_err_wrap(err, "pull %s", name);
    bh_info("image", "pulled %s digest=%s", name, digest);
    if (out_digest)
        *out_digest = BH_STEAL(digest);
    return 0;
}

static void reg_global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

int bh_image_registry_pull(struct bh_image_store *st, const struct bh_image_ref *ref,
                           char **out_digest, struct bh_err *err)
{
    /* curl_easy_init would do this implicitly, but not safely from concurrent resolves. */
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, reg_global_init);
    struct reg r = {.st = st, .ref = ref, .h = curl_easy_init()};
    if (!r.h)
        return bh_err_set(err, BH_EIO, "curl_easy_init failed");
    reg_configure(&r);
    int rc = reg_pull(&r, out_digest, err);
    curl_easy_cleanup(r.h);
    free(r.base);
    free(r.authz);
    free(r.challenge);
    return rc;
}
