/* The Kubernetes-compatible API of local mode: a second listener (HTTPS, default
 * 127.0.0.1:6443) that serves the four boilerhouse.dev kinds, namespaces and secrets the way
 * an API server does, so kubectl manages Boilerhouse with no cluster. It is one more front
 * door: objects go through the same validation (resource.h) and store as REST's, and claims
 * through the claim controller.
 *
 * Files: kapi.c (listener, auth, routing, watch streaming), kapi_path.c (request paths and
 * selectors), kapi_status.c (Status objects); the certificates come from util/tls.c,
 * kapi_discovery.c (discovery, OpenAPI), kapi_objects.c (the four kinds, Tables),
 * kapi_core.c (namespaces, secrets, CRDs), kapi_patch.c (merge and JSON patches). */
#ifndef BH_KAPI_H
#define BH_KAPI_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "ctx.h"
#include "err.h"

#define BH_KAPI_NAMESPACE "boilerhouse" /* the namespace local mode has */
#define BH_KAPI_DEFAULT_PORT 6443

struct bh_kapi;
/* Makes (once) the CA and serving certificate under <state_dir>/kapi/ and listens on host:port
 * with TLS. Off loopback only with an API key, which is then the bearer token. */
int bh_kapi_start(struct bh_ctx *ctx, const char *host, int port, struct bh_kapi **out,
                  struct bh_err *err);
void bh_kapi_stop(struct bh_kapi *k);
/* A kubeconfig (YAML) for the listener: server, CA data, token, a context whose namespace is
 * boilerhouse. Makes the certificates if they are missing. Owned. */
int bh_kapi_kubeconfig(const char *state_dir, const char *host, int port, const char *token,
                       char **out, struct bh_err *err);

/* ---- request paths (kapi_path.c) ---- */

enum bh_kapi_path_type {
    BH_KAPI_P_VERSION = 1,
    BH_KAPI_P_LEGACY,     /* /api */
    BH_KAPI_P_GROUPS,     /* /apis */
    BH_KAPI_P_GROUP,      /* /apis/<group> */
    BH_KAPI_P_RESOURCES,  /* /api/v1, /apis/<group>/<version> */
    BH_KAPI_P_OBJECT,     /* a collection or an object */
    BH_KAPI_P_OPENAPI_V2, /* /openapi/v2 */
    BH_KAPI_P_OPENAPI_V3, /* /openapi/v3 */
    BH_KAPI_P_OPENAPI_GV, /* /openapi/v3/api/v1, /openapi/v3/apis/<group>/<version> */
    BH_KAPI_P_HEALTH,     /* /healthz, /livez, /readyz */
};

struct bh_kapi_path {
    enum bh_kapi_path_type type;
    char group[64]; /* "" for the core group */
    char version[16];
    char ns[64];       /* "" when not namespaced in the URL */
    char resource[64]; /* plural */
    char name[254];    /* "" for a collection */
    char sub[16];      /* "status" or "" */
};

/* Parses a request path (no query). BH_ENOTFOUND for a path the API does not have. */
int bh_kapi_path_parse(const char *url, struct bh_kapi_path *p, struct bh_err *err);

/* A label or field selector: comma-separated requirements "k=v", "k==v", "k!=v", "k", "!k". */
#define BH_KAPI_SEL_MAX 16
struct bh_kapi_sel {
    int n;
    struct {
        char key[256];
        char value[64];
        enum { BH_KAPI_SEL_EQ, BH_KAPI_SEL_NE, BH_KAPI_SEL_EXISTS, BH_KAPI_SEL_ABSENT } op;
    } req[BH_KAPI_SEL_MAX];
};
/* BH_EINVAL naming the bad requirement ("in" and "notin" sets are not supported). */
int bh_kapi_sel_parse(const char *text, struct bh_kapi_sel *sel, struct bh_err *err);
/* Label selector against metadata.labels; field selector against dotted paths of obj. */
int bh_kapi_sel_match_labels(const struct bh_kapi_sel *sel, const cJSON *obj);
int bh_kapi_sel_match_fields(const struct bh_kapi_sel *sel, const cJSON *obj);

/* ---- patches (kapi_patch.c) ---- */

/* RFC 7386 JSON merge patch, applied to *doc in place (*doc may be replaced). */
void bh_kapi_merge_patch(cJSON **doc, const cJSON *patch);
/* RFC 6902 JSON patch (add, remove, replace, move, copy, test); BH_EINVAL naming the failing
 * operation, with *doc then in an unspecified state (callers patch a copy). */
int bh_kapi_json_patch(cJSON **doc, const cJSON *ops, struct bh_err *err);

/* ---- protobuf (kapi_proto.c) ---- */

/* A v1 Secret in Kubernetes's protobuf envelope ("k8s\0"), as {kind, metadata{name, labels,
 * annotations}, type, stringData} (binary values become strings; NUL bytes are refused). */
int bh_kapi_proto_secret(const void *data, size_t len, cJSON **out, struct bh_err *err);
/* An OpenAPI v2 document (JSON, as /openapi/v2 serves it) as the protobuf kubectl before 1.27
 * asks for (gnostic's openapi_v2.Document). *out owned, *len bytes. */
#define BH_KAPI_OPENAPI_PB "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
void bh_kapi_proto_openapi(const cJSON *doc, char **out, size_t *len);

#endif
