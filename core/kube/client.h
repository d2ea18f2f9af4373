/* A small Kubernetes API client on libcurl + cJSON: the connection settings (a kubeconfig or
 * the in-cluster service account), JSON requests with TLS verification whose Kubernetes
 * Status errors become struct bh_err messages, paged lists, and watches streamed as JSON
 * lines with bookmarks.
 *
 * Thread-safe: every request uses its own curl handle, so any thread may call any function on
 * one client at once (the mirror watches on one thread while the lease renews on another).
 */
#ifndef BH_KUBE_CLIENT_H
#define BH_KUBE_CLIENT_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "err.h"

/* Where the in-cluster configuration lives (token, ca.crt, namespace). */
#define BH_KUBE_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

/* The connection settings; strings owned (bh_kube_config_free). Certificates and keys are
 * held as PEM bytes: files named by a kubeconfig are read when it is parsed. */
struct bh_kube_config {
    char *server;    /* "https://host:port", no trailing slash */
    char *ca_pem;    /* the server's CA bundle, or NULL: the system's */
    char *token;     /* bearer token, or NULL */
    char *cert_pem;  /* client certificate, or NULL */
    char *key_pem;   /* its key, or NULL */
    char *namespace; /* the current context's namespace ("default" if it names none) */
    int insecure;    /* insecure-skip-tls-verify: the server's certificate is not checked */
};

/* Parses a kubeconfig (YAML or JSON) of the current context: server, certificate-authority
 * (-data), token (or tokenFile), client-certificate/key (-data), namespace. Relative file
 * paths are relative to base_dir. Errors name the field: "users[admin].user.token: ...". */
BH_MUST_CHECK int bh_kube_config_parse(const char *text, size_t len, const char *base_dir,
                                       struct bh_kube_config *out, struct bh_err *err);
/* bh_kube_config_parse of the file at path. */
BH_MUST_CHECK int bh_kube_config_load(const char *path, struct bh_kube_config *out,
                                      struct bh_err *err);
/* The in-cluster configuration: KUBERNETES_SERVICE_HOST/PORT and sa_dir's token, ca.crt and
 * namespace (BH_KUBE_SA_DIR in a Pod; a test passes its own). */
BH_MUST_CHECK int bh_kube_config_in_cluster(const char *sa_dir, struct bh_kube_config *out,
                                            struct bh_err *err);
void bh_kube_config_free(struct bh_kube_config *c);

struct bh_kube_client;

/* Takes over cfg's strings (cfg is zeroed). */
struct bh_kube_client *bh_kube_client_new(struct bh_kube_config *cfg);
void bh_kube_client_free(struct bh_kube_client *c);
/* The namespace of the configuration (borrowed). */
const char *bh_kube_client_namespace(const struct bh_kube_client *c);

/* One request: method ("GET", "POST", "PUT", "PATCH", "DELETE") on path ("/apis/..."), body
 * (borrowed, or NULL) sent as content_type (NULL: application/json). A 2xx answer's JSON is
 * *out (optional, owned). Otherwise -1 with the code of the HTTP status (404 BH_ENOTFOUND,
 * 409 BH_ECONFLICT, 401 BH_EAUTH, 403 BH_EFORBIDDEN, 422/400 BH_EINVAL, else BH_EIO/EUNAVAIL)
 * and the Status' message; a connection failure is BH_EUNAVAIL. *http (optional) the HTTP
 * status, 0 when none came. */
BH_MUST_CHECK int bh_kube_request(struct bh_kube_client *c, const char *method, const char *path,
                                  const cJSON *body, const char *content_type, cJSON **out,
                                  long *http, struct bh_err *err);

/* Lists a collection path in pages of limit (continue tokens followed): *items an owned array
 * of the objects (each with apiVersion and kind set from the list), *rv the list's
 * resourceVersion (owned), to watch from. */
BH_MUST_CHECK int bh_kube_list(struct bh_kube_client *c, const char *path, int limit, cJSON **items,
                               char **rv, struct bh_err *err);

/* ---- watch ---- */

/* An event of a watch: type "ADDED", "MODIFIED" or "DELETED", object borrowed. Return
 * non-zero to end the watch. (Bookmarks only move the watch's resourceVersion on; an ERROR
 * event ends it: bh_kube_watch's BH_KUBE_WATCH_GONE.) */
typedef int (*bh_kube_event_fn)(const char *type, const cJSON *object, void *ud);

/* The decoder of a watch stream: bytes in any split, one event per complete JSON line
 * {"type": ..., "object": {...}}, each handed to fn with its type, BOOKMARK and ERROR
 * included. */
struct bh_kube_lines;
struct bh_kube_lines *bh_kube_lines_new(size_t max_line, bh_kube_event_fn fn, void *ud);
void bh_kube_lines_free(struct bh_kube_lines *d);
/* Feeds bytes; calls fn for each line completed. 0 when all was taken, 1 when fn asked to
 * stop (the rest of data is not decoded), -1 (BH_EINVAL) on a line that is not a watch event
 * or one longer than max_line. */
BH_MUST_CHECK int bh_kube_lines_feed(struct bh_kube_lines *d, const char *data, size_t len,
                                     struct bh_err *err);

/* How a watch ended. */
enum bh_kube_watch_end {
    BH_KUBE_WATCH_CLOSED = 0,  /* the server closed it (timeoutSeconds): resume from *rv */
    BH_KUBE_WATCH_STOPPED = 1, /* fn or the stop flag ended it */
    BH_KUBE_WATCH_GONE = 2,    /* 410 Gone or an ERROR event: *rv is too old, re-list */
};

/* Watches a collection path from resourceVersion *rv (owned, updated from every event's object
 * and bookmark) for at most timeout_s, calling fn per event. *stop (optional) is polled about
 * once a second and ends the watch when non-zero. Answers an enum bh_kube_watch_end, or -1 when
 * the connection failed (the caller reconnects with backoff). */
BH_MUST_CHECK int bh_kube_watch(struct bh_kube_client *c, const char *path, char **rv,
                                int timeout_s, bh_kube_event_fn fn, void *ud,
                                const volatile int *stop, struct bh_err *err);

#endif
