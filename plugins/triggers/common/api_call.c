/* JSON web API calls (api_call.h). */
#include "api_call.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

struct api_buf {
    char *data;
    size_t len;
};

static size_t api_write(char *ptr, size_t size, size_t n, void *ud)
{
    struct api_buf *b = ud;
    size_t add = size * n;
    if (b->len + add > BHT_API_ANSWER_MAX)
        return 0;
    char *grown = realloc(b->data, b->len + add + 1);
    if (!grown)
        return 0;
    b->data = grown;
    memcpy(b->data + b->len, ptr, add);
    b->len += add;
    b->data[b->len] = '\0';
    return add;
}

/* Aborts a (long-polling) call as soon as the owner asks. */
static int api_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    const volatile int *stop = ud;
    return stop && *stop;
}

static CURLcode api_post(const char *url, const char *auth, const char *json, long timeout_s,
                         const volatile int *stop, struct api_buf *b)
{
    CURL *c = curl_easy_init();
    if (!c)
        return CURLE_OUT_OF_MEMORY;
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    char *auth_hdr = NULL;
    if (auth && (auth_hdr = malloc(strlen(auth) + 16))) {
        strcpy(auth_hdr, "Authorization: ");
        strcat(auth_hdr, auth);
        hdrs = curl_slist_append(hdrs, auth_hdr);
        memset(auth_hdr, 0, strlen(auth_hdr));
    }
    free(auth_hdr);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout_s);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, api_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, (void *)stop);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, api_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
    CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    return rc;
}

int bht_api_call(const struct bh_host_api *host, struct bh_plugin_handle *h, const char *url,
                 const char *auth, const char *what, const cJSON *body, long timeout_s,
                 const volatile int *stop, cJSON **answer, struct bh_err *err)
{
    char *json = cJSON_PrintUnformatted(body);
    struct api_buf b = {0};
    CURLcode rc = json ? api_post(url, auth, json, timeout_s, stop, &b) : CURLE_OUT_OF_MEMORY;
    free(json);
    cJSON *a = rc == CURLE_OK ? cJSON_ParseWithLength(b.data, b.len) : NULL;
    free(b.data);
    if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "ok"))) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(a, "description");
        d = cJSON_IsString(d) ? d : cJSON_GetObjectItemCaseSensitive(a, "error");
        host->err_set(h, err, BH_EIO, "%s: %s", what,
                      rc != CURLE_OK      ? curl_easy_strerror(rc)
                      : cJSON_IsString(d) ? d->valuestring
                                          : "not an ok answer");
        cJSON_Delete(a);
        return -1;
    }
    if (answer)
        *answer = a;
    else
        cJSON_Delete(a);
    return 0;
}

const char *bht_reply_text(const struct bh_event_reply *r, cJSON **parsed)
{
    *parsed = r->body ? cJSON_ParseWithLength(r->body, r->body_len) : NULL;
    const char *keys[] = {"reply", "text"};
    for (int i = 0; i < 2; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(*parsed, keys[i]);
        if (cJSON_IsString(v))
            return v->valuestring;
    }
    return r->body ? r->body : "";
}

int bht_base_url_ok(const char *u)
{
    if (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0)
        return 0;
    return strcspn(u, " \t\r\n?#") == strlen(u) && strlen(u) < 512 && u[strlen(u) - 1] != '/';
}
