/* Watches: the JSON-lines decoder and the streaming request that feeds it. */
#include <stdlib.h>
#include <string.h>

#include "bodybuf.h"
#include "client_int.h"
#include "json.h"
#include "mem.h"

#define KUBE_WATCH_LINE_MAX (16 << 20) /* one object; the API server's own limit is 3 MiB */
#define KUBE_ERRBODY_MAX 65536

/* ---- the line decoder ---- */

struct bh_kube_lines {
    char *buf;
    size_t len, cap, max;
    bh_kube_event_fn fn;
    void *ud;
};

struct bh_kube_lines *bh_kube_lines_new(size_t max_line, bh_kube_event_fn fn, void *ud)
{
    struct bh_kube_lines *d = bh_xcalloc(1, sizeof(*d));
    d->max = max_line;
    d->fn = fn;
    d->ud = ud;
    return d;
}

void bh_kube_lines_free(struct bh_kube_lines *d)
{
    if (!d)
        return;
    free(d->buf);
    free(d);
}

static int kube_line_blank(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
            return 0;
    return 1;
}

/* One complete line: 0, 1 (fn stops) or -1. */
static int kube_line(struct bh_kube_lines *d, const char *p, size_t n, struct bh_err *err)
{
    if (kube_line_blank(p, n))
        return 0;
    cJSON *ev = cJSON_ParseWithLength(p, n);
    const char *type = bh_json_str(ev, "type");
    const cJSON *obj = cJSON_GetObjectItemCaseSensitive(ev, "object");
    if (!type || !cJSON_IsObject(obj)) {
        cJSON_Delete(ev);
        return bh_err_set(err, BH_EINVAL, "watch: a line is not an event {type, object}");
    }
    int stop = d->fn(type, obj, d->ud);
    cJSON_Delete(ev);
    return stop ? 1 : 0;
}

static void kube_lines_append(struct bh_kube_lines *d, const char *p, size_t n)
{
    if (d->len + n > d->cap) {
        d->cap = (d->len + n) * 2;
        d->buf = bh_xrealloc(d->buf, d->cap);
    }
    memcpy(d->buf + d->len, p, n);
    d->len += n;
}

int bh_kube_lines_feed(struct bh_kube_lines *d, const char *data, size_t len, struct bh_err *err)
{
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t take = nl ? (size_t)(nl - data) : len;
        if (d->len + take > d->max)
            return bh_err_set(err, BH_EINVAL, "watch: an event is longer than %zu bytes", d->max);
        int rc = 0;
        if (nl && d->len == 0) {
            rc = kube_line(d, data, take, err); /* the common case: no copy */
        } else {
            kube_lines_append(d, data, take);
            if (nl) {
                rc = kube_line(d, d->buf, d->len, err);
                d->len = 0;
            }
        }
        if (rc != 0)
            return rc;
        data += take + (nl ? 1 : 0);
        len -= take + (nl ? 1 : 0);
    }
    return 0;
}

/* ---- the streaming request ---- */

struct kube_watch {
    CURL *h;
    struct bh_kube_lines *dec;
    char **rv;
    bh_kube_event_fn fn;
    void *ud;
    const volatile int *stop;
    int gone, stopped, bad;
    long code;                 /* an ERROR event's Status code */
    struct bh_err derr;        /* the decoder's error */
    struct bh_bodybuf errbody; /* a non-200 answer's body */
};

static void kube_watch_set_rv(struct kube_watch *w, const cJSON *obj)
{
    const char *rv = bh_json_str(obj, "metadata.resourceVersion");
    if (rv && *rv) {
        free(*w->rv);
        *w->rv = bh_xstrdup(rv);
    }
}

static int kube_watch_on_event(const char *type, const cJSON *obj, void *ud)
{
    struct kube_watch *w = ud;
    if (strcmp(type, "ERROR") == 0) {
        w->gone = 1; /* 410 Gone, or another error: the watch cannot go on from *rv */
        w->code = bh_json_int(obj, "code", 0);
        return 1;
    }
    if (strcmp(type, "BOOKMARK") != 0 && w->fn(type, obj, w->ud) != 0) {
        w->stopped = 1;
        return 1;
    }
    kube_watch_set_rv(w, obj);
    return 0;
}

static size_t kube_watch_on_data(char *p, size_t size, size_t n, void *ud)
{
    struct kube_watch *w = ud;
    long status = 0;
    size_t len = size * n;
    curl_easy_getinfo(w->h, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200)
        return bh_bodybuf_write(p, size, n, &w->errbody);
    int rc = bh_kube_lines_feed(w->dec, p, len, &w->derr);
    if (rc < 0)
        w->bad = 1;
    return rc == 0 ? len : 0;
}

static int kube_watch_on_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    (void)a, (void)b, (void)c, (void)d;
    struct kube_watch *w = ud;
    if (w->stop && *w->stop) {
        w->stopped = 1;
        return 1;
    }
    return 0;
}

static int kube_watch_result(struct kube_watch *w, CURLcode cc, const char *path,
                             struct bh_err *err)
{
    long status = 0;
    curl_easy_getinfo(w->h, CURLINFO_RESPONSE_CODE, &status);
    if (w->gone || status == 410)
        return BH_KUBE_WATCH_GONE;
    if (w->stopped)
        return BH_KUBE_WATCH_STOPPED;
    if (w->bad) {
        *err = w->derr;
        return bh_err_wrap(err, "watch %s", path);
    }
    if (cc != CURLE_OK)
        return bh_err_set(err, BH_EUNAVAIL, "watch %s: %s", path, curl_easy_strerror(cc));
    if (status != 200) {
        bh_autofree char *what = bh_xasprintf("watch %s", path);
        cJSON *st = w->errbody.data ? cJSON_ParseWithLength(w->errbody.data, w->errbody.len) : NULL;
        int rc = bh_kube_status_err(status, st, what, err);
        cJSON_Delete(st);
        return rc;
    }
    return BH_KUBE_WATCH_CLOSED;
}

int bh_kube_watch(struct bh_kube_client *c, const char *path, char **rv, int timeout_s,
                  bh_kube_event_fn fn, void *ud, const volatile int *stop, struct bh_err *err)
{
    struct kube_watch w = {
        .rv = rv, .fn = fn, .ud = ud, .stop = stop, .errbody = {.max = KUBE_ERRBODY_MAX}};
    struct curl_slist *hdrs = NULL;
    bh_autofree char *url =
        bh_xasprintf("%s%swatch=1&allowWatchBookmarks=true&timeoutSeconds=%d%s%s", path,
                     strchr(path, '?') ? "&" : "?", timeout_s,
                     *rv && **rv ? "&resourceVersion=" : "", *rv ? *rv : "");
    w.h = bh_kube_curl(c, "GET", url, &hdrs, NULL);
    if (!w.h)
        return bh_err_set(err, BH_EIO, "watch %s: curl init failed", path);
    w.dec = bh_kube_lines_new(KUBE_WATCH_LINE_MAX, kube_watch_on_event, &w);
    /* The server ends the watch after timeout_s; a little more is the stall backstop. */
    curl_easy_setopt(w.h, CURLOPT_TIMEOUT, (long)timeout_s + 30L);
    curl_easy_setopt(w.h, CURLOPT_WRITEFUNCTION, kube_watch_on_data);
    curl_easy_setopt(w.h, CURLOPT_WRITEDATA, &w);
    curl_easy_setopt(w.h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(w.h, CURLOPT_XFERINFOFUNCTION, kube_watch_on_progress);
    curl_easy_setopt(w.h, CURLOPT_XFERINFODATA, &w);
    CURLcode cc = curl_easy_perform(w.h);
    int rc = kube_watch_result(&w, cc, path, err);
    curl_easy_cleanup(w.h);
    curl_slist_free_all(hdrs);
    bh_kube_lines_free(w.dec);
    free(w.errbody.data);
    return rc;
}
