/* Snapshot storage in an S3-compatible object store (AWS S3, MinIO, s3rver...), over libcurl
 * with Signature V4.
 *
 * Atomicity: an object appears whole or not at all: a single PUT or a multipart upload's
 * CompleteMultipartUpload replaces the previous object in one step, so until put returns the
 * previous object under the key is untouched, and a crash mid-upload leaves it as it was (the
 * unfinished upload is aborted on failure; one a crash leaves behind is invisible to GETs).
 * Memory: a put holds one part in memory (part_size_mb), whatever the snapshot's size; a get
 * streams into the destination file. Checksums: each part carries Content-MD5 and a signed
 * sha256, and its returned ETag must equal the MD5 we computed; a get compares the body's MD5
 * with a single-part ETag (the host verifies the snapshot digest in every case). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include <boilerhouse/plugin.h>

#include "sigv4.h"

#define S3_NAME "s3"
#define S3_MIB (1024u * 1024u)
#define S3_MIN_PART_MB 5   /* S3's minimum part size (but the last) */
#define S3_MAX_PARTS 10000 /* S3's maximum part count */
#define S3_TEXT_CAP 65536  /* XML answers and error bodies kept */
#define S3_URL_MAX 4096
#define S3_BACKOFF_MS 200 /* first retry delay; doubles, capped at S3_BACKOFF_CAP_MS */
#define S3_BACKOFF_CAP_MS 5000
#define S3_MD5_HEX 33

static const struct bh_host_api *s3_host;

struct s3_state {
    struct bh_plugin_handle *h;
    char scheme[8];
    char host[256];      /* host[:port] of the endpoint */
    char base_path[256]; /* the endpoint's path, "" usually */
    char region[64];
    char bucket[64];
    char prefix[512];
    int vhost;
    size_t part_size;
    long connect_timeout;
    long stall_timeout;
    int retries;
    const char *secret, *key_id_field, *secret_field;
};

struct s3_creds {
    char *key_id;
    char *secret;
};

/* One HTTP exchange: the request... */
struct s3_call {
    const char *method;
    const char *key;   /* under the prefix; NULL: the bucket (a listing) */
    const char *query; /* canonical query, "" for none */
    const unsigned char *body;
    size_t body_len;
    const char *content_md5; /* base64, or NULL */
};

/* ...and what came back. */
struct s3_resp {
    long status;
    char etag[128];
    char text[S3_TEXT_CAP]; /* the body of XML answers and errors */
    size_t text_len;
    int fd;           /* a successful body goes here (downloads); -1 for none */
    EVP_MD_CTX *md5;  /* over what went to fd */
    int write_failed; /* errno of a failed write to fd */
    curl_off_t length;
    CURL *curl; /* during the transfer: s3_on_body asks it for the status */
};

/* Test hook like the core's bh_crashpoint: BOILERHOUSE_CRASH_AT=name kills the daemon here. */
static void s3_crashpoint(struct s3_state *s, const char *name)
{
    const char *at = getenv("BOILERHOUSE_CRASH_AT");
    if (at && strcmp(at, name) == 0) {
        s3_host->log(s->h, BH_LOG_WARN, "crash point %s reached (test hook)", name);
        kill(getpid(), SIGKILL);
    }
}

/* ---- checksums ------------------------------------------------------------------------------ */

static void s3_md5(const void *data, size_t len, unsigned char out[16])
{
    unsigned int n = 16;
    EVP_Digest(data, len, out, &n, EVP_md5(), NULL);
}

static void s3_md5_hex(const unsigned char md[16], char out[S3_MD5_HEX])
{
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* The ETag without quotes if it is a plain MD5 (single-part objects); "" otherwise. */
static void s3_etag_md5(const char *etag, char out[S3_MD5_HEX])
{
    size_t n = strlen(etag);
    const char *p = etag;
    if (n >= 2 && p[0] == '"' && p[n - 1] == '"')
        p++, n -= 2;
    out[0] = '\0';
    if (n == 32 && strspn(p, "0123456789abcdefABCDEF") >= 32) {
        for (int i = 0; i < 32; i++)
            out[i] = (char)(p[i] | 0x20); /* lowercase */
        out[32] = '\0';
    }
}

/* ---- requests ------------------------------------------------------------------------------- */

static size_t s3_on_header(char *buf, size_t size, size_t n, void *arg)
{
    struct s3_resp *r = arg;
    size_t len = size * n;
    if (len > 5 && strncasecmp(buf, "etag:", 5) == 0) {
        const char *v = buf + 5;
        size_t vl = len - 5;
        while (vl && (*v == ' ' || *v == '\t'))
            v++, vl--;
        while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
            vl--;
        snprintf(r->etag, sizeof(r->etag), "%.*s", (int)vl, v);
    }
    return len;
}

static size_t s3_on_body(char *buf, size_t size, size_t n, void *arg)
{
    struct s3_resp *r = arg;
    size_t len = size * n;
    curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &r->status);
    if (r->fd >= 0 && r->status >= 200 && r->status < 300) {
        for (size_t off = 0; off < len;) {
            ssize_t w = write(r->fd, buf + off, len - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                r->write_failed = w < 0 ? errno : EIO;
                return 0; /* aborts the transfer */
            }
            off += (size_t)w;
        }
        EVP_DigestUpdate(r->md5, buf, len);
        return len;
    }
    size_t keep = len < sizeof(r->text) - 1 - r->text_len ? len : sizeof(r->text) - 1 - r->text_len;
    memcpy(r->text + r->text_len, buf, keep);
    r->text_len += keep;
    r->text[r->text_len] = '\0';
    return len;
}

/* Copies buffered body bytes to curl (uploads). */
struct s3_reader {
    const unsigned char *data;
    size_t len, off;
};

static size_t s3_on_read(char *buf, size_t size, size_t n, void *arg)
{
    struct s3_reader *rd = arg;
    size_t len = size * n, left = rd->len - rd->off;
    if (len > left)
        len = left;
    memcpy(buf, rd->data + rd->off, len);
    rd->off += len;
    return len;
}

/* The request's host and canonical URI, and its URL. */
static int s3_target(const struct s3_state *s, const struct s3_call *c, char *host, size_t hlen,
                     char *uri, size_t ulen, char *url, size_t urllen)
{
    char full[1536], enc[S3_URL_MAX];
    snprintf(full, sizeof(full), "%s%s", s->prefix, c->key ? c->key : "");
    if (s3_uri_encode(full, 1, enc, sizeof(enc)) < 0)
        return -1;
    if (!c->key) { /* the bucket itself (listing) */
        snprintf(host, hlen, "%s%s%s", s->vhost ? s->bucket : "", s->vhost ? "." : "", s->host);
        snprintf(uri, ulen, "%s/%s", s->base_path, s->vhost ? "" : s->bucket);
    } else if (s->vhost) {
        snprintf(host, hlen, "%s.%s", s->bucket, s->host);
        snprintf(uri, ulen, "%s/%s", s->base_path, enc);
    } else {
        snprintf(host, hlen, "%s", s->host);
        snprintf(uri, ulen, "%s/%s/%s", s->base_path, s->bucket, enc);
    }
    int n = snprintf(url, urllen, "%s://%s%s%s%s", s->scheme, host, uri, c->query[0] ? "?" : "",
                     c->query);
    return n < 0 || (size_t)n >= urllen ? -1 : 0;
}

static struct curl_slist *s3_sign_headers(const struct s3_state *s, const struct s3_creds *cr,
                                          const struct s3_call *c, const char *host,
                                          const char *uri)
{
    char date[20], payload[S3_HEX_SHA256_LEN], auth[1024], line[1200];
    time_t now = time(NULL);
    struct tm tm;
    strftime(date, sizeof(date), "%Y%m%dT%H%M%SZ", gmtime_r(&now, &tm));
    s3_sha256_hex(c->body ? (const void *)c->body : "", c->body_len, payload);
    struct s3_header h[4];
    size_t n = 0;
    if (c->content_md5)
        h[n++] = (struct s3_header){"content-md5", c->content_md5};
    h[n++] = (struct s3_header){"host", host};
    h[n++] = (struct s3_header){"x-amz-content-sha256", payload};
    h[n++] = (struct s3_header){"x-amz-date", date};
    struct s3_sign_req r = {.method = c->method,
                            .uri = uri,
                            .query = c->query,
                            .headers = h,
                            .n_headers = n,
                            .payload_hash = payload,
                            .amz_date = date,
                            .region = s->region,
                            .service = "s3",
                            .access_key = cr->key_id,
                            .secret_key = cr->secret};
    if (s3_sigv4_authorization(&r, auth, sizeof(auth)) < 0)
        return NULL;
    struct curl_slist *list = NULL;
    for (size_t i = 0; i < n; i++) {
        snprintf(line, sizeof(line), "%s: %s", h[i].name, h[i].value);
        list = curl_slist_append(list, line);
    }
    snprintf(line, sizeof(line), "Authorization: %s", auth);
    list = curl_slist_append(list, line);
    return curl_slist_append(list, "Expect:"); /* no 100-continue round trip */
}

/* One attempt. Returns the transport's result; resp->status is the HTTP status. */
static CURLcode s3_perform(const struct s3_state *s, const struct s3_creds *cr,
                           const struct s3_call *c, struct s3_resp *resp)
{
    char host[512], uri[S3_URL_MAX], url[S3_URL_MAX + 1024];
    if (s3_target(s, c, host, sizeof(host), uri, sizeof(uri), url, sizeof(url)) < 0)
        return CURLE_URL_MALFORMAT;
    CURL *curl = curl_easy_init();
    struct curl_slist *hdrs = s3_sign_headers(s, cr, c, host, uri);
    if (!curl || !hdrs) {
        curl_slist_free_all(hdrs);
        curl_easy_cleanup(curl);
        return CURLE_OUT_OF_MEMORY;
    }
    struct s3_reader rd = {c->body, c->body_len, 0};
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, s->connect_timeout);
    /* A stalled transfer (under 1 KiB/s for stall_timeout) is a timeout, retried. */
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, s->stall_timeout);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, s3_on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, resp);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, s3_on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, resp);
    if (strcmp(c->method, "HEAD") == 0) {
        curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    } else if (strcmp(c->method, "PUT") == 0 || strcmp(c->method, "POST") == 0) {
        curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(curl, CURLOPT_READFUNCTION, s3_on_read);
        curl_easy_setopt(curl, CURLOPT_READDATA, &rd);
        curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)c->body_len);
    }
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, c->method);
    resp->curl = curl;
    CURLcode rc = curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &resp->status);
    curl_easy_getinfo(curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &resp->length);
    resp->curl = NULL;
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(curl);
    return rc;
}

static int s3_retryable(CURLcode rc, long status)
{
    if (rc == CURLE_URL_MALFORMAT || rc == CURLE_OUT_OF_MEMORY || rc == CURLE_WRITE_ERROR)
        return 0;
    return rc != CURLE_OK || status >= 500 || status == 429;
}

/* Starts an attempt afresh: a retried download rewrites the file from its start. */
static int s3_resp_reset(struct s3_resp *resp)
{
    resp->status = 0;
    resp->etag[0] = '\0';
    resp->text_len = 0;
    resp->text[0] = '\0';
    resp->write_failed = 0;
    if (resp->fd < 0)
        return 0;
    EVP_DigestInit_ex(resp->md5, EVP_md5(), NULL);
    return ftruncate(resp->fd, 0) == 0 && lseek(resp->fd, 0, SEEK_SET) == 0 ? 0 : -1;
}

/* "<Code>: <Message>" of an S3 error body, or the start of the body. */
static void s3_error_text(const struct s3_resp *resp, char *out, size_t len)
{
    const char *code = strstr(resp->text, "<Code>"), *msg = strstr(resp->text, "<Message>");
    if (!code) {
        snprintf(out, len, "%.200s", resp->text);
        return;
    }
    code += 6;
    size_t cl = strcspn(code, "<"), ml = 0;
    if (msg)
        msg += 9, ml = strcspn(msg, "<");
    snprintf(out, len, "%.*s%s%.*s", (int)cl, code, msg ? ": " : "", (int)(ml > 300 ? 300 : ml),
             msg ? msg : "");
}

static void s3_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* One request with retries (exponential backoff with jitter) on transport failures, 5xx and
 * 429. 0 on a 2xx; otherwise err says why (404 is BH_ENOTFOUND). */
static int s3_request(struct s3_state *s, const struct s3_creds *cr, const struct s3_call *c,
                      struct s3_resp *resp, struct bh_err *err)
{
    CURLcode rc = CURLE_OK;
    for (int attempt = 0;; attempt++) {
        if (s3_resp_reset(resp) < 0)
            return s3_host->err_set(s->h, err, BH_EIO, "rewind download: %s", strerror(errno));
        rc = s3_perform(s, cr, c, resp);
        if (!s3_retryable(rc, resp->status) || attempt >= s->retries)
            break;
        long delay = (long)S3_BACKOFF_MS << (attempt < 5 ? attempt : 5);
        delay = delay > S3_BACKOFF_CAP_MS ? S3_BACKOFF_CAP_MS : delay;
        delay += rand() % (delay / 2 + 1);
        s3_host->log(s->h, BH_LOG_WARN, "%s %s: %s (attempt %d), retrying in %ld ms", c->method,
                     c->key, rc != CURLE_OK ? curl_easy_strerror(rc) : "server error", attempt + 1,
                     delay);
        s3_sleep_ms(delay);
    }
    if (resp->write_failed)
        return s3_host->err_set(s->h, err, BH_EIO, "write %s: %s", c->key,
                                strerror(resp->write_failed));
    if (rc != CURLE_OK)
        return s3_host->err_set(s->h, err,
                                rc == CURLE_OPERATION_TIMEDOUT ? BH_ETIMEOUT : BH_EUNAVAIL,
                                "%s %s: %s", c->method, c->key, curl_easy_strerror(rc));
    if (resp->status >= 200 && resp->status < 300)
        return 0;
    char why[512];
    s3_error_text(resp, why, sizeof(why));
    return s3_host->err_set(s->h, err, resp->status == 404 ? BH_ENOTFOUND : BH_EIO,
                            "%s %s: HTTP %ld %s", c->method, c->key, resp->status, why);
}

/* A response buffer for calls whose body is XML or nothing. Owned: free(). */
static struct s3_resp *s3_resp_new(int fd)
{
    struct s3_resp *r = calloc(1, sizeof(*r));
    if (r)
        r->fd = fd;
    if (r && fd >= 0 && !(r->md5 = EVP_MD_CTX_new())) {
        free(r);
        return NULL;
    }
    return r;
}

static void s3_resp_free(struct s3_resp *r)
{
    if (r)
        EVP_MD_CTX_free(r->md5);
    free(r);
}

/* ---- credentials -------------------------------------------------------------------------- */

/* Read for every operation, so a rotated key is used without a restart. */
static int s3_creds_load(struct s3_state *s, struct s3_creds *c, struct bh_err *err)
{
    memset(c, 0, sizeof(*c));
    if (s3_host->secret_get(s->h, s->secret, s->key_id_field, NULL, &c->key_id, err) < 0 ||
        s3_host->secret_get(s->h, s->secret, s->secret_field, NULL, &c->secret, err) < 0) {
        s3_host->free(s->h, c->key_id);
        memset(c, 0, sizeof(*c));
        return -1;
    }
    return 0;
}

static void s3_creds_free(struct s3_state *s, struct s3_creds *c)
{
    s3_host->free(s->h, c->key_id);
    s3_host->free(s->h, c->secret);
}

/* ---- put ------------------------------------------------------------------------------------ */

/* Reads up to len bytes at off; the count read, or -1. */
static ssize_t s3_pread_full(int fd, unsigned char *buf, size_t len, off_t off)
{
    size_t got = 0;
    while (got < len) {
        ssize_t r = pread(fd, buf + got, len - got, off + (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* PUTs one body (an object or a part) with its MD5, and checks the ETag the server computed. */
static int s3_put_body(struct s3_state *s, const struct s3_creds *cr, struct s3_call *c,
                       char etag_out[S3_MD5_HEX], struct bh_err *err)
{
    unsigned char md[16];
    char b64[32], hex[S3_MD5_HEX], got[S3_MD5_HEX];
    s3_md5(c->body, c->body_len, md);
    EVP_EncodeBlock((unsigned char *)b64, md, 16);
    s3_md5_hex(md, hex);
    c->content_md5 = b64;
    struct s3_resp *resp = s3_resp_new(-1);
    if (!resp)
        return s3_host->err_set(s->h, err, BH_EIO, "out of memory");
    int rc = s3_request(s, cr, c, resp, err);
    s3_etag_md5(resp->etag, got);
    if (rc == 0 && strcmp(got, hex) != 0)
        rc =
            s3_host->err_set(s->h, err, BH_EIO, "PUT %s: the server's checksum %s is not ours (%s)",
                             c->key, resp->etag, hex);
    s3_resp_free(resp);
    snprintf(etag_out, S3_MD5_HEX, "%s", hex);
    return rc;
}

/* The text between <tag> and </tag> in xml, into out; -1 if absent. */
static int s3_xml_value(const char *xml, const char *tag, char *out, size_t len)
{
    char open[64];
    snprintf(open, sizeof(open), "<%s>", tag);
    const char *p = strstr(xml, open);
    if (!p)
        return -1;
    p += strlen(open);
    size_t n = strcspn(p, "<");
    snprintf(out, len, "%.*s", (int)n, p);
    return n < len ? 0 : -1;
}

struct s3_upload {
    char id_enc[1024]; /* the upload id, URI-encoded for queries */
    char *parts_xml;   /* the CompleteMultipartUpload body being built */
    size_t xml_len, xml_cap;
};

static int s3_upload_start(struct s3_state *s, const struct s3_creds *cr, const char *key,
                           struct s3_upload *u, struct bh_err *err)
{
    struct s3_call c = {.method = "POST", .key = key, .query = "uploads="};
    struct s3_resp *resp = s3_resp_new(-1);
    char id[768];
    if (!resp)
        return s3_host->err_set(s->h, err, BH_EIO, "out of memory");
    int rc = s3_request(s, cr, &c, resp, err);
    if (rc == 0 && (s3_xml_value(resp->text, "UploadId", id, sizeof(id)) < 0 ||
                    s3_uri_encode(id, 0, u->id_enc, sizeof(u->id_enc)) < 0))
        rc = s3_host->err_set(s->h, err, BH_EIO, "start upload of %s: no usable UploadId", key);
    s3_resp_free(resp);
    return rc;
}

static int s3_upload_note_part(struct s3_upload *u, int number, const char *md5_hex)
{
    if (u->xml_cap - u->xml_len < 128) {
        size_t cap = u->xml_cap ? 2 * u->xml_cap : 4096;
        char *p = realloc(u->parts_xml, cap);
        if (!p)
            return -1;
        u->parts_xml = p, u->xml_cap = cap;
    }
    u->xml_len += (size_t)snprintf(u->parts_xml + u->xml_len, u->xml_cap - u->xml_len,
                                   "<Part><PartNumber>%d</PartNumber><ETag>\"%s\"</ETag></Part>",
                                   number, md5_hex);
    return 0;
}

static int s3_upload_complete(struct s3_state *s, const struct s3_creds *cr, const char *key,
                              struct s3_upload *u, struct bh_err *err)
{
    char query[1100];
    size_t len = u->xml_len + 128;
    char *body = malloc(len);
    struct s3_resp *resp = s3_resp_new(-1);
    if (!body || !resp) {
        free(body);
        s3_resp_free(resp);
        return s3_host->err_set(s->h, err, BH_EIO, "out of memory");
    }
    int n = snprintf(body, len, "<CompleteMultipartUpload>%.*s</CompleteMultipartUpload>",
                     (int)u->xml_len, u->parts_xml);
    snprintf(query, sizeof(query), "uploadId=%s", u->id_enc);
    struct s3_call c = {.method = "POST",
                        .key = key,
                        .query = query,
                        .body = (unsigned char *)body,
                        .body_len = (size_t)n};
    int rc = s3_request(s, cr, &c, resp, err);
    /* S3 may answer 200 and report the failure in the body. */
    if (rc == 0 && strstr(resp->text, "<Error>")) {
        char why[512];
        s3_error_text(resp, why, sizeof(why));
        rc = s3_host->err_set(s->h, err, BH_EIO, "complete upload of %s: %s", key, why);
    }
    free(body);
    s3_resp_free(resp);
    return rc;
}

/* Best effort: an unfinished upload holds storage until aborted. */
static void s3_upload_abort(struct s3_state *s, const struct s3_creds *cr, const char *key,
                            const struct s3_upload *u)
{
    char query[1100];
    struct bh_err err;
    snprintf(query, sizeof(query), "uploadId=%s", u->id_enc);
    struct s3_call c = {.method = "DELETE", .key = key, .query = query};
    struct s3_resp *resp = s3_resp_new(-1);
    if (!resp || s3_request(s, cr, &c, resp, &err) < 0)
        s3_host->log(s->h, BH_LOG_WARN, "abort upload of %s: %s", key,
                     resp ? err.msg : "out of memory");
    s3_resp_free(resp);
}

/* Streams the file in parts of part_size, each read into the one buffer. */
static int s3_put_multipart(struct s3_state *s, const struct s3_creds *cr, const char *key, int fd,
                            uint64_t size, unsigned char *buf, struct bh_err *err)
{
    struct s3_upload u = {0};
    if (s3_upload_start(s, cr, key, &u, err) < 0)
        return -1;
    int rc = 0;
    uint64_t off = 0;
    for (int number = 1; rc == 0 && off < size; number++) {
        char query[1200], md5[S3_MD5_HEX];
        ssize_t got = s3_pread_full(fd, buf, s->part_size, (off_t)off);
        if (got <= 0) {
            rc = s3_host->err_set(s->h, err, BH_EIO, "read for %s: %s", key,
                                  got < 0 ? strerror(errno) : "file shrank");
            break;
        }
        snprintf(query, sizeof(query), "partNumber=%d&uploadId=%s", number, u.id_enc);
        struct s3_call c = {
            .method = "PUT", .key = key, .query = query, .body = buf, .body_len = (size_t)got};
        rc = s3_put_body(s, cr, &c, md5, err);
        if (rc == 0 && s3_upload_note_part(&u, number, md5) < 0)
            rc = s3_host->err_set(s->h, err, BH_EIO, "out of memory");
        off += (uint64_t)got;
        if (rc == 0)
            s3_crashpoint(s, "s3.put.after-part");
    }
    if (rc == 0)
        rc = s3_upload_complete(s, cr, key, &u, err);
    if (rc < 0)
        s3_upload_abort(s, cr, key, &u);
    free(u.parts_xml);
    return rc;
}

static int s3_put(void *state, const char *key, const char *src_path, struct bh_err *err)
{
    struct s3_state *s = state;
    struct s3_creds cr = {0};
    struct stat st;
    int fd = open(src_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return s3_host->err_set(s->h, err, BH_EIO, "open %s: %s", src_path, strerror(e));
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size > (uint64_t)s->part_size * S3_MAX_PARTS) {
        close(fd);
        return s3_host->err_set(s->h, err, BH_ETOOLARGE,
                                "%s: %llu bytes need more than %d parts; raise part_size_mb", key,
                                (unsigned long long)size, S3_MAX_PARTS);
    }
    size_t bufsize = size < s->part_size ? (size_t)size : s->part_size;
    unsigned char *buf = malloc(bufsize ? bufsize : 1);
    int rc =
        buf ? s3_creds_load(s, &cr, err) : s3_host->err_set(s->h, err, BH_EIO, "out of memory");
    if (rc == 0 && size <= s->part_size) {
        char md5[S3_MD5_HEX];
        ssize_t got = s3_pread_full(fd, buf, bufsize, 0);
        struct s3_call c = {
            .method = "PUT", .key = key, .query = "", .body = buf, .body_len = (size_t)got};
        rc = got == (ssize_t)size
                 ? s3_put_body(s, &cr, &c, md5, err)
                 : s3_host->err_set(s->h, err, BH_EIO, "read %s: short read", src_path);
    } else if (rc == 0) {
        rc = s3_put_multipart(s, &cr, key, fd, size, buf, err);
    }
    s3_creds_free(s, &cr);
    free(buf);
    close(fd);
    return rc;
}

/* ---- get, stat, del ------------------------------------------------------------------------- */

/* One request (no body) with credentials loaded for it; resp may be NULL (out of memory). */
static int s3_request_keyed(struct s3_state *s, const char *method, const char *key,
                            struct s3_resp *resp, struct bh_err *err)
{
    struct s3_creds cr;
    if (!resp)
        return s3_host->err_set(s->h, err, BH_EIO, "out of memory");
    if (s3_creds_load(s, &cr, err) < 0)
        return -1;
    const struct s3_call c = {.method = method, .key = key, .query = ""};
    int rc = s3_request(s, &cr, &c, resp, err);
    s3_creds_free(s, &cr);
    return rc;
}

/* The object's body checked against a single-part ETag (a multipart ETag is not an MD5). */
static int s3_check_download(struct s3_state *s, const char *key, struct s3_resp *resp,
                             uint64_t written, struct bh_err *err)
{
    unsigned char md[16];
    unsigned int n = 16;
    char hex[S3_MD5_HEX], want[S3_MD5_HEX];
    if (resp->length >= 0 && (uint64_t)resp->length != written)
        return s3_host->err_set(s->h, err, BH_EIO, "GET %s: %llu of %lld bytes", key,
                                (unsigned long long)written, (long long)resp->length);
    EVP_DigestFinal_ex(resp->md5, md, &n);
    s3_md5_hex(md, hex);
    s3_etag_md5(resp->etag, want);
    if (want[0] && strcmp(want, hex) != 0)
        return s3_host->err_set(s->h, err, BH_EIO, "GET %s: body MD5 %s, ETag %s", key, hex,
                                resp->etag);
    return 0;
}

static int s3_get(void *state, const char *key, const char *dst_path, struct bh_err *err)
{
    struct s3_state *s = state;
    int fd = open(dst_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return s3_host->err_set(s->h, err, BH_EIO, "create %s: %s", dst_path, strerror(errno));
    struct s3_resp *resp = s3_resp_new(fd);
    int rc = s3_request_keyed(s, "GET", key, resp, err);
    off_t written = rc == 0 ? lseek(fd, 0, SEEK_CUR) : 0;
    if (rc == 0)
        rc = s3_check_download(s, key, resp, (uint64_t)written, err);
    s3_resp_free(resp);
    close(fd);
    if (rc < 0)
        unlink(dst_path);
    return rc;
}

static int s3_stat(void *state, const char *key, uint64_t *size, struct bh_err *err)
{
    struct s3_state *s = state;
    struct s3_resp *resp = s3_resp_new(-1);
    int rc = s3_request_keyed(s, "HEAD", key, resp, err);
    if (rc == 0 && resp->length < 0)
        rc = s3_host->err_set(s->h, err, BH_EIO, "HEAD %s: no Content-Length", key);
    if (rc == 0)
        *size = (uint64_t)resp->length;
    s3_resp_free(resp);
    return rc;
}

static int s3_del(void *state, const char *key, struct bh_err *err)
{
    struct s3_state *s = state;
    struct s3_resp *resp = s3_resp_new(-1);
    int rc = s3_request_keyed(s, "DELETE", key, resp, err);
    s3_resp_free(resp);
    return rc < 0 && err->code == BH_ENOTFOUND ? 0 : rc; /* already gone */
}

/* ---- list ---------------------------------------------------------------------------------- */

static long long s3_time(const char *iso)
{
    struct tm tm = {0};
    return strptime(iso, "%Y-%m-%dT%H:%M:%S", &tm) ? (long long)timegm(&tm) : 0;
}

/* One ListObjectsV2 page: each key under our prefix (relative to it); *token is set to the
 * next page's continuation token, or emptied after the last page. */
static int s3_list_page(struct s3_state *s, const char *xml,
                        int (*each)(void *ud, const char *key, long long mtime), void *ud,
                        char *token, size_t tlen)
{
    size_t plen = strlen(s->prefix);
    for (const char *p = strstr(xml, "<Contents>"); p; p = strstr(p + 1, "<Contents>")) {
        const char *end = strstr(p, "</Contents>");
        char key[1536], when[64];
        if (!end || s3_xml_value(p, "Key", key, sizeof(key)) < 0 ||
            s3_xml_value(p, "LastModified", when, sizeof(when)) < 0 ||
            strncmp(key, s->prefix, plen) != 0 || strchr(key, '&'))
            continue; /* not ours, or with XML entities (no key of ours has one) */
        if (each(ud, key + plen, s3_time(when))) {
            token[0] = '\0'; /* stopped: no next page */
            return 0;
        }
    }
    char truncated[8] = "";
    s3_xml_value(xml, "IsTruncated", truncated, sizeof(truncated));
    if (strcmp(truncated, "true") != 0 ||
        s3_xml_value(xml, "NextContinuationToken", token, tlen) < 0)
        token[0] = '\0';
    return 0;
}

static int s3_list(void *state, const char *prefix,
                   int (*each)(void *ud, const char *key, long long mtime), void *ud,
                   struct bh_err *err)
{
    struct s3_state *s = state;
    char full[1536], pfx[S3_URL_MAX], token[1024] = "", tok[3 * 1024], query[2 * S3_URL_MAX];
    snprintf(full, sizeof(full), "%s%s", s->prefix, prefix ? prefix : "");
    if (s3_uri_encode(full, 0, pfx, sizeof(pfx)) < 0)
        return s3_host->err_set(s->h, err, BH_EINVAL, "list: prefix too long");
    struct s3_creds cr;
    if (s3_creds_load(s, &cr, err) < 0)
        return -1;
    struct s3_resp *resp = s3_resp_new(-1);
    int rc = resp ? 0 : s3_host->err_set(s->h, err, BH_EIO, "out of memory");
    do {
        tok[0] = '\0';
        if (token[0] && s3_uri_encode(token, 0, tok, sizeof(tok)) < 0)
            rc = s3_host->err_set(s->h, err, BH_EIO, "list: continuation token too long");
        /* Canonical query: parameters in name order. */
        snprintf(query, sizeof(query), "%s%s%slist-type=2&max-keys=100&prefix=%s",
                 tok[0] ? "continuation-token=" : "", tok, tok[0] ? "&" : "", pfx);
        struct s3_call c = {.method = "GET", .key = NULL, .query = query};
        if (rc == 0)
            rc = s3_request(s, &cr, &c, resp, err);
        if (rc == 0)
            rc = s3_list_page(s, resp->text, each, ud, token, sizeof(token));
    } while (rc == 0 && token[0]);
    s3_resp_free(resp);
    s3_creds_free(s, &cr);
    return rc;
}

/* ---- init ----------------------------------------------------------------------------------- */

/* Splits endpoint ("http[s]://host[:port][/path]") into the state. */
static int s3_parse_endpoint(struct s3_state *s, const char *endpoint, struct bh_err *err)
{
    const char *rest = NULL;
    if (strncmp(endpoint, "http://", 7) == 0)
        snprintf(s->scheme, sizeof(s->scheme), "http"), rest = endpoint + 7;
    else if (strncmp(endpoint, "https://", 8) == 0)
        snprintf(s->scheme, sizeof(s->scheme), "https"), rest = endpoint + 8;
    size_t hl = rest ? strcspn(rest, "/") : 0;
    if (!rest || hl == 0 || hl >= sizeof(s->host))
        return s3_host->err_set(s->h, err, BH_EINVAL,
                                "endpoint \"%.200s\" is not http[s]://host[:port][/path]",
                                endpoint);
    snprintf(s->host, sizeof(s->host), "%.*s", (int)hl, rest);
    snprintf(s->base_path, sizeof(s->base_path), "%s", rest + hl);
    size_t bl = strlen(s->base_path);
    while (bl && s->base_path[bl - 1] == '/')
        s->base_path[--bl] = '\0';
    return 0;
}

static int s3_read_config(struct s3_state *s, struct bh_err *err)
{
    struct bh_plugin_handle *h = s->h;
    const char *addressing = s3_host->config_string(h, "addressing");
    long long part_mb = s3_host->config_int(h, "part_size_mb");
    if (s3_parse_endpoint(s, s3_host->config_string(h, "endpoint"), err) < 0)
        return -1;
    snprintf(s->region, sizeof(s->region), "%s", s3_host->config_string(h, "region"));
    snprintf(s->bucket, sizeof(s->bucket), "%s", s3_host->config_string(h, "bucket"));
    snprintf(s->prefix, sizeof(s->prefix), "%s", s3_host->config_string(h, "prefix"));
    if (strcmp(addressing, "path") != 0 && strcmp(addressing, "virtual") != 0)
        return s3_host->err_set(h, err, BH_EINVAL, "addressing \"%.64s\": path or virtual",
                                addressing);
    s->vhost = strcmp(addressing, "virtual") == 0;
    if (part_mb < S3_MIN_PART_MB || part_mb > 5120)
        return s3_host->err_set(h, err, BH_EINVAL, "part_size_mb %lld: 5 to 5120", part_mb);
    s->part_size = (size_t)part_mb * S3_MIB;
    s->connect_timeout = (long)s3_host->config_int(h, "connect_timeout_seconds");
    s->stall_timeout = (long)s3_host->config_int(h, "stall_timeout_seconds");
    s->retries = (int)s3_host->config_int(h, "retries");
    if (s->connect_timeout < 1 || s->stall_timeout < 1 || s->retries < 0 || s->retries > 20)
        return s3_host->err_set(h, err, BH_EINVAL, "timeouts must be >= 1 s and retries 0 to 20");
    s->secret = s3_host->config_string(h, "credentials_secret");
    s->key_id_field = s3_host->config_string(h, "access_key_id_key");
    s->secret_field = s3_host->config_string(h, "secret_access_key_key");
    if (!s->bucket[0] || !s->secret || !s->secret[0])
        return s3_host->err_set(h, err, BH_EINVAL, "bucket and credentials_secret are required");
    return 0;
}

static int s3_init(struct bh_plugin_handle *h, void **state, struct bh_err *err)
{
    struct s3_state *s = calloc(1, sizeof(*s));
    if (!s)
        return s3_host->err_set(h, err, BH_EIO, "out of memory");
    s->h = h;
    if (s3_read_config(s, err) < 0) {
        free(s);
        return -1;
    }
    *state = s;
    s3_host->log(h, BH_LOG_INFO, "bucket %s at %s://%s%s (%s addressing), prefix \"%s\"", s->bucket,
                 s->scheme, s->host, s->base_path, s->vhost ? "virtual" : "path", s->prefix);
    return 0;
}

static void s3_fini(void *state)
{
    free(state);
}

static const struct bh_config_field s3_schema[] = {
    {"endpoint", BH_CFG_STRING, 1, NULL, "http[s]://host[:port][/path] of the S3 service"},
    {"region", BH_CFG_STRING, 0, "us-east-1", "the region requests are signed for"},
    {"bucket", BH_CFG_STRING, 1, NULL, "the bucket snapshots go to"},
    {"prefix", BH_CFG_STRING, 0, "", "prepended to every key, e.g. \"boilerhouse/\""},
    {"addressing", BH_CFG_STRING, 0, "path", "path (host/bucket/key) or virtual (bucket.host/key)"},
    {"part_size_mb", BH_CFG_INT, 0, "16",
     "multipart part size: a put holds one part in memory; larger files go in parts"},
    {"connect_timeout_seconds", BH_CFG_INT, 0, "10", "connection timeout of one request"},
    {"stall_timeout_seconds", BH_CFG_INT, 0, "30",
     "a transfer under 1 KiB/s for this long is abandoned and retried"},
    {"retries", BH_CFG_INT, 0, "4", "retries (with backoff) on timeouts, 5xx and 429"},
    {"credentials_secret", BH_CFG_STRING, 1, NULL,
     "the secret-store entry holding the access key id and secret key"},
    {"access_key_id_key", BH_CFG_STRING, 0, "access_key_id", "its key holding the key id"},
    {"secret_access_key_key", BH_CFG_STRING, 0, "secret_access_key",
     "its key holding the secret key"},
};

static const struct bh_storage_ops s3_ops = {
    .size = sizeof(struct bh_storage_ops),
    .init = s3_init,
    .fini = s3_fini,
    .put = s3_put,
    .get = s3_get,
    .stat = s3_stat,
    .del = s3_del,
    .list = s3_list,
};

static const struct bh_plugin_info s3_info = {
    .size = sizeof(struct bh_plugin_info),
    .abi_major = BH_PLUGIN_ABI_MAJOR,
    .abi_minor = BH_PLUGIN_ABI_MINOR,
    .build_sig = BH_PLUGIN_BUILD_SIG,
    .kind = BH_PLUGIN_STORAGE,
    /* Each call has its own curl handle and buffers; the state is read-only after init. */
    .flags = BH_PLUGIN_THREADSAFE,
    .name = S3_NAME,
    .version = "0.1.0",
    .field_size = sizeof(struct bh_config_field),
    .config_schema = s3_schema,
    .n_config = sizeof(s3_schema) / sizeof(s3_schema[0]),
    .ops = &s3_ops,
};

BH_PLUGIN_EXPORT const struct bh_plugin_info *bh_plugin_entry(const struct bh_host_api *host)
{
    /* libcurl's global init is not thread-safe: done here, once, before any op runs. */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    s3_host = host;
    return &s3_info;
}
