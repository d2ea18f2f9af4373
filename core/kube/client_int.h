/* Shared by the client's files (client.c, client_watch.c); not for other modules. */
#ifndef BH_KUBE_CLIENT_INT_H
#define BH_KUBE_CLIENT_INT_H

#include <curl/curl.h>

#include "client.h"

struct bh_kube_client {
    struct bh_kube_config cfg;
    char *authz; /* "Authorization: Bearer ..." or NULL */
};

/* A curl handle for method on path with the client's TLS settings and credentials; *hdrs
 * (owned by the caller, curl_slist_free_all after the transfer) holds the headers. NULL if curl
 * cannot make a handle. */
CURL *bh_kube_curl(struct bh_kube_client *c, const char *method, const char *path,
                   struct curl_slist **hdrs, const char *content_type);
/* The error of a non-2xx answer: its Kubernetes Status (may be NULL) turned into err. -1. */
int bh_kube_status_err(long http, const cJSON *status, const char *what, struct bh_err *err);

#endif
