/* The daemon's side of the snapshot agent (agent.h): libcurl, the archive streamed to or from
 * a file, never held in memory. */
#include "agent.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bodybuf.h"
#include "json.h"
#include "mem.h"
#include "snapshot_int.h"

#define AGENT_CONNECT_TIMEOUT_S 10L
/* An archive is made before its first byte is sent: a transfer may be silent that long. */
#define AGENT_STALL_S 300L
#define AGENT_ERR_BODY_MAX 4096
/* Idle detection asks every few seconds; an agent that does not answer soon counts as no
 * activity this time (the next sample asks again). */
#define AGENT_ACTIVITY_TIMEOUT_S 5L

struct agent_get {
    int fd;
    char digest[65];
    unsigned long long files;
    int write_failed;       /* errno of a failed write, 0 if none */
    struct bh_bodybuf body; /* a non-2xx answer's text */
    long status;            /* read once the body starts */
    CURL *h;
};

static CURL *agent_curl(const char *base, const char *path, const char *token,
                        struct curl_slist **hdrs)
{
    CURL *h = curl_easy_init();
    if (!h)
        return NULL;
    bh_autofree char *url = bh_xasprintf("%s%s", base, path);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, AGENT_CONNECT_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, AGENT_STALL_S);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "boilerhouse");
    if (token) {
        bh_autofree char *authz = bh_xasprintf("Authorization: Bearer %s", token);
        *hdrs = curl_slist_append(*hdrs, authz);
    }
    return h;
}

/* What a failed exchange means: no answer at all is BH_EUNAVAIL (the Pod is not there yet or
 * any more), an answer is its status's class with the agent's text. */
static int agent_fail(CURLcode cc, long status, const struct bh_bodybuf *body, const char *what,
                      struct bh_err *err)
{
    if (cc != CURLE_OK && !status)
        return bh_err_set(err, BH_EUNAVAIL, "snapshot agent: %s: %s", what, curl_easy_strerror(cc));
    int code = status == 400 || status == 422 ? BH_EINVAL
               : status == 401                ? BH_EAUTH
               : status == 404                ? BH_ENOTFOUND
               : status == 507                ? BH_ETOOLARGE
                                              : BH_EIO;
    const char *text = body && body->data ? body->data : curl_easy_strerror(cc);
    int n = (int)strcspn(text, "\n");
    return bh_err_set(err, code, "snapshot agent: %s: HTTP %ld: %.*s", what, status, n, text);
}

/* The value of header line p (len bytes, not NUL-terminated past the line's CRLF) if it is
 * name's, leading blanks skipped; NULL otherwise. */
static const char *agent_header_value(const char *p, size_t len, const char *name)
{
    size_t n = strlen(name);
    if (len <= n || strncasecmp(p, name, n) != 0 || p[n] != ':')
        return NULL;
    const char *v = p + n + 1;
    while (*v == ' ')
        v++;
    return v;
}

static size_t agent_get_header(char *p, size_t size, size_t n, void *ud)
{
    struct agent_get *g = ud;
    size_t len = size * n;
    const char *v;
    if ((v = agent_header_value(p, len, BH_AGENT_DIGEST_HEADER)))
        snprintf(g->digest, sizeof(g->digest), "%.*s", (int)strcspn(v, "\r\n"), v);
    else if ((v = agent_header_value(p, len, BH_AGENT_FILES_HEADER)))
        g->files = strtoull(v, NULL, 10);
    return len;
}

static size_t agent_get_body(char *p, size_t size, size_t n, void *ud)
{
    struct agent_get *g = ud;
    size_t len = size * n;
    if (!g->status)
        curl_easy_getinfo(g->h, CURLINFO_RESPONSE_CODE, &g->status);
    if (g->status < 200 || g->status > 299)
        return bh_bodybuf_write(p, size, n, &g->body);
    for (size_t done = 0; done < len;) {
        ssize_t w = write(g->fd, p + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            g->write_failed = errno;
            return 0; /* curl ends the transfer */
        }
        done += (size_t)w;
    }
    return len;
}

/* The download is complete: the file must be what the agent says it sent. */
static int agent_get_check(struct agent_get *g, struct bh_snapshot_info *info, struct bh_err *err)
{
    if (!g->digest[0])
        return bh_err_set(err, BH_EIO, "snapshot agent: no " BH_AGENT_DIGEST_HEADER " header");
    if (fsync(g->fd) < 0)
        return bh_err_errno(err, BH_EIO, "snapshot agent: fsync");
    struct stat st;
    if (fstat(g->fd, &st) < 0)
        return bh_err_errno(err, BH_EIO, "snapshot agent: stat");
    if (bh_snapshot_check_digest(g->fd, g->digest, err) < 0)
        return bh_err_wrap(err, "snapshot agent: download");
    memcpy(info->digest, g->digest, sizeof(info->digest));
    info->size = (uint64_t)st.st_size;
    info->files = g->files;
    return 0;
}

static int agent_get_run(const char *base, const char *token, struct agent_get *g,
                         struct bh_snapshot_info *info, struct bh_err *err)
{
    struct curl_slist *hdrs = NULL;
    g->h = agent_curl(base, BH_AGENT_PATH, token, &hdrs);
    if (!g->h)
        return bh_err_set(err, BH_EIO, "snapshot agent: no curl handle");
    curl_easy_setopt(g->h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(g->h, CURLOPT_HEADERFUNCTION, agent_get_header);
    curl_easy_setopt(g->h, CURLOPT_HEADERDATA, g);
    curl_easy_setopt(g->h, CURLOPT_WRITEFUNCTION, agent_get_body);
    curl_easy_setopt(g->h, CURLOPT_WRITEDATA, g);
    CURLcode cc = curl_easy_perform(g->h);
    curl_easy_getinfo(g->h, CURLINFO_RESPONSE_CODE, &g->status);
    curl_easy_cleanup(g->h);
    curl_slist_free_all(hdrs);
    if (g->write_failed)
        return bh_err_set(err, g->write_failed == ENOSPC ? BH_ETOOLARGE : BH_EIO,
                          "snapshot agent: write download: %s", strerror(g->write_failed));
    if (cc != CURLE_OK || g->status != 200)
        return agent_fail(cc, g->status, &g->body, "GET " BH_AGENT_PATH, err);
    return agent_get_check(g, info, err);
}

int bh_agent_fetch(const char *base, const char *token, const char *out_path,
                   struct bh_snapshot_info *info, struct bh_err *err)
{
    struct agent_get g = {.body = {.max = AGENT_ERR_BODY_MAX}};
    g.fd = open(out_path, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (g.fd < 0)
        return bh_err_errno(err, BH_EIO, "snapshot agent: create %s", out_path);
    int rc = agent_get_run(base, token, &g, info, err);
    close(g.fd);
    free(g.body.data);
    if (rc < 0)
        unlink(out_path);
    return rc;
}

/* POSTs nothing or PUTs a file; 204 is success. */
/* Performs the request set up on h (answer into body), frees h and hdrs; *status is the HTTP
 * status (0 when none came). */
static CURLcode agent_exchange(CURL *h, struct curl_slist *hdrs, struct bh_bodybuf *body,
                               long *status)
{
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, bh_bodybuf_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, body);
    CURLcode cc = curl_easy_perform(h);
    *status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    curl_easy_cleanup(h);
    curl_slist_free_all(hdrs);
    return cc;
}

static int agent_send(const char *base, const char *token, const char *path, FILE *in,
                      curl_off_t size, const char *digest, struct bh_err *err)
{
    struct curl_slist *hdrs = NULL;
    CURL *h = agent_curl(base, path, token, &hdrs);
    if (!h)
        return bh_err_set(err, BH_EIO, "snapshot agent: no curl handle");
    bh_autofree char *dh = digest ? bh_xasprintf(BH_AGENT_DIGEST_HEADER ": %s", digest) : NULL;
    if (dh)
        hdrs = curl_slist_append(hdrs, dh);
    /* An upload waits for the agent's go-ahead: refused (401, 400) before the body is sent,
     * the refusal is what curl reads, not a connection the agent closed mid-upload (which
     * would look like an agent that is not there). */
    hdrs = curl_slist_append(hdrs, in ? "Expect: 100-continue" : "Expect:");
    struct bh_bodybuf body = {.max = AGENT_ERR_BODY_MAX};
    if (in) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_READDATA, in);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, size);
    } else {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
    }
    long status;
    CURLcode cc = agent_exchange(h, hdrs, &body, &status);
    bh_autofree char *what = bh_xasprintf("%s %s", in ? "PUT" : "POST", path);
    int rc = cc == CURLE_OK && status == 204 ? 0 : agent_fail(cc, status, &body, what, err);
    free(body.data);
    return rc;
}

int bh_agent_push(const char *base, const char *token, const char *in_path, const char *digest,
                  struct bh_err *err)
{
    FILE *in = fopen(in_path, "rbe");
    if (!in)
        return bh_err_errno(err, errno == ENOENT ? BH_ENOTFOUND : BH_EIO, "snapshot agent: open %s",
                            in_path);
    struct stat st;
    int rc = fstat(fileno(in), &st) < 0
                 ? bh_err_errno(err, BH_EIO, "snapshot agent: stat %s", in_path)
                 : agent_send(base, token, BH_AGENT_PATH, in, (curl_off_t)st.st_size, digest, err);
    fclose(in);
    return rc;
}

int bh_agent_done(const char *base, const char *token, struct bh_err *err)
{
    return agent_send(base, token, BH_AGENT_DONE_PATH, NULL, 0, NULL, err);
}

/* A counter of the answer: a whole number >= 0. */
static int agent_counter(const cJSON *doc, const char *key, long long *out, struct bh_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, key);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 ||
        v->valuedouble != (double)(long long)v->valuedouble)
        return bh_err_set(err, BH_EIO,
                          "snapshot agent: GET " BH_AGENT_ACTIVITY_PATH ": \"%s\" is not a count",
                          key);
    *out = (long long)v->valuedouble;
    return 0;
}

int bh_agent_activity(const char *base, const char *token, struct bh_agent_counters *out,
                      struct bh_err *err)
{
    struct curl_slist *hdrs = NULL;
    CURL *h = agent_curl(base, BH_AGENT_ACTIVITY_PATH, token, &hdrs);
    if (!h)
        return bh_err_set(err, BH_EIO, "snapshot agent: no curl handle");
    struct bh_bodybuf body = {.max = AGENT_ERR_BODY_MAX};
    curl_easy_setopt(h, CURLOPT_TIMEOUT, AGENT_ACTIVITY_TIMEOUT_S);
    long status;
    CURLcode cc = agent_exchange(h, hdrs, &body, &status);
    int rc = 0;
    if (cc != CURLE_OK || status != 200) {
        rc = agent_fail(cc, status, &body, "GET " BH_AGENT_ACTIVITY_PATH, err);
    } else {
        cJSON *doc = body.data ? cJSON_ParseWithLength(body.data, body.len) : NULL;
        rc = !doc ? bh_err_set(err, BH_EIO,
                               "snapshot agent: GET " BH_AGENT_ACTIVITY_PATH ": not JSON")
             : agent_counter(doc, "netActivity", &out->net, err) < 0 ||
                     agent_counter(doc, "newestMtimeMs", &out->newest_mtime_ms, err) < 0
                 ? -1
                 : 0;
        cJSON_Delete(doc);
    }
    free(body.data);
    return rc;
}
