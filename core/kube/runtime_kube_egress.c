/* The Pod runtime's side of the egress sidecar's control port
 * (plugins/network/restricted/sidecar/sidecar.h): a claim's tenant secrets go to the Pod's
 * sidecar, which holds them in memory and injects them; they never go into the Pod spec, a
 * Secret, a ConfigMap or a log line. The sidecar authenticates the daemon by the agents'
 * token, which the workload container does not mount. */
#include "runtime_kube_int.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bodybuf.h"
#include "crypto.h"
#include "log.h"
#include "mem.h"
#include "objects.h"

#define EGRESS_CONNECT_TIMEOUT_S 5L
#define EGRESS_TIMEOUT_S 15L
#define EGRESS_ERR_BODY_MAX 2048

/* {"headers": [{"domain", "name", "value"}...]} as text (owned; the caller wipes it). */
static char *egress_body(const struct bh_runtime_credential *creds, size_t n)
{
    cJSON *root = cJSON_CreateObject(), *hs = cJSON_AddArrayToObject(root, "headers");
    for (size_t i = 0; i < n; i++) {
        cJSON *h = cJSON_CreateObject();
        cJSON_AddStringToObject(h, "domain", creds[i].domain);
        cJSON_AddStringToObject(h, "name", creds[i].header);
        cJSON_AddStringToObject(h, "value", creds[i].value);
        cJSON_AddItemToArray(hs, h);
    }
    char *text = cJSON_PrintUnformatted(root);
    /* the tree's copies of the values */
    const cJSON *h;
    cJSON_ArrayForEach(h, hs) {
        char *v = cJSON_GetStringValue(cJSON_GetObjectItem(h, "value"));
        bh_crypto_wipe(v, strlen(v));
    }
    cJSON_Delete(root);
    if (!text)
        abort();
    return text;
}

/* An answer's meaning: none at all is BH_EUNAVAIL (the sidecar is not listening yet), a
 * refusal its status's class with the sidecar's first line. */
static int egress_fail(CURLcode cc, long status, const struct bh_bodybuf *body, struct bh_err *err)
{
    if (cc != CURLE_OK && !status)
        return bh_err_set(err, BH_EUNAVAIL, "egress sidecar: %s", curl_easy_strerror(cc));
    int code = status == 400 || status == 422 ? BH_EINVAL
               : status == 401                ? BH_EAUTH
               : status == 404                ? BH_ENOTFOUND
                                              : BH_EIO;
    const char *text = body->data ? body->data : curl_easy_strerror(cc);
    return bh_err_set(err, code, "egress sidecar: HTTP %ld: %.*s", status, (int)strcspn(text, "\n"),
                      text);
}

/* One PUT of body to base's control path. */
static int egress_put(const char *base, const char *token, const char *body, struct bh_err *err)
{
    CURL *h = curl_easy_init();
    if (!h)
        return bh_err_set(err, BH_EIO, "egress sidecar: no curl handle");
    bh_autofree char *url = bh_xasprintf("%s" BH_KUBE_PROXY_CONTROL_PATH, base);
    char *authz = bh_xasprintf("Authorization: Bearer %s", token);
    struct curl_slist *hdrs = curl_slist_append(NULL, authz);
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    bh_crypto_wipe(authz, strlen(authz)); /* curl_slist_append copied it */
    free(authz);
    struct bh_bodybuf answer = {.max = EGRESS_ERR_BODY_MAX};
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, EGRESS_CONNECT_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, EGRESS_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "boilerhouse");
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PUT");
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body); /* not copied: the caller wipes it after */
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, bh_bodybuf_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &answer);
    CURLcode cc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    for (struct curl_slist *s = hdrs; s; s = s->next)
        bh_crypto_wipe(s->data, strlen(s->data));
    curl_slist_free_all(hdrs);
    int rc = cc == CURLE_OK && status == 204 ? 0 : egress_fail(cc, status, &answer, err);
    free(answer.data);
    return rc;
}

struct egress_push {
    const char *token, *body;
};

static int egress_put_try(const char *base, void *ud, struct bh_err *err)
{
    const struct egress_push *p = ud;
    return egress_put(base, p->token, p->body, err);
}

/* Ready: every container runs, the sidecar too. One that could not have its port (a
 * workload that took it first) exited, and the Pod is never Ready again. */
int krt_egress_push(struct bh_kube_client *c, const char *token, const char *pod,
                    const struct bh_runtime_credential *creds, size_t n, int timeout_ms,
                    struct bh_err *err)
{
    char *body = egress_body(creds, n);
    struct egress_push p = {token, body};
    int tries = 0;
    int rc = krt_pod_retry(c, pod, BH_KUBE_PROXY_CONTROL_PORT, 1, timeout_ms,
                           "tenant credentials to", egress_put_try, &p, &tries, err);
    if (rc == 0)
        bh_debug("runtime", "tenant credentials (%zu) taken by Pod %s's sidecar (try %d)", n, pod,
                 tries);
    bh_crypto_wipe(body, strlen(body));
    free(body);
    return rc;
}
