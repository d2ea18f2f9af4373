/* Internals shared by the image_*.c files (not part of the module's public contract; the
 * unit tests include it to reach the pieces directly). Layout of a store directory:
 *   blobs/sha256/<hex>          verified content, written via a temp file + rename
 *   refs.json                   {"<normalised ref>": "sha256:<hex>"} (image manifest digests)
 *   refs.lock                   flock'd around read-modify-write of refs.json
 *   layers/<shift>/<hex>/       unpacked layers, made visible by one rename
 *   tmp/                        partial blobs and extracted archives */
#ifndef BH_IMAGE_INT_H
#define BH_IMAGE_INT_H

#include <pthread.h>

#include "image.h"

#define BH_IMAGE_MAX_JSON (4u << 20) /* manifests, indexes, configs, refs.json */

#define BH_IMAGE_MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define BH_IMAGE_MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define BH_IMAGE_MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define BH_IMAGE_MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"

struct bh_image_store {
    char *dir; /* canonical (realpath) root, so no ancestor is a symlink (owned) */
    uint32_t uid_shift;
    cJSON *registry_cfg; /* owned copy, may be NULL */
    /* Serialises unpacking within this process so a layer is unpacked once; across
     * processes the final rename decides, and the loser discards its copy. */
    pthread_mutex_t lock;
};

/* A parsed reference; every field owned. Exactly one of tag/digest is set. */
struct bh_image_ref {
    char *host;   /* "docker.io", "127.0.0.1:5000" */
    char *repo;   /* "library/busybox" */
    char *tag;    /* "latest", or NULL */
    char *digest; /* "sha256:<hex>", or NULL */
};

BH_MUST_CHECK int bh_image_ref_parse(const char *in, struct bh_image_ref *out, struct bh_err *err);
void bh_image_ref_clear(struct bh_image_ref *ref);
/* "host/repo:tag" or "host/repo@digest" (owned). */
char *bh_image_ref_format(const struct bh_image_ref *ref);

/* True for "sha256:" followed by 64 lowercase hex digits: the only digests that may become
 * path components. */
int bh_image_digest_valid(const char *digest);
/* <store>/blobs/sha256/<hex> (owned); digest must be valid. */
char *bh_image_blob_path(const struct bh_image_store *st, const char *digest);

/* Streaming blob writer: hashes while writing to a temp file; commit verifies against the
 * expected digest (if any) and renames the file into place. */
struct bh_image_blobw;
BH_MUST_CHECK int bh_image_blobw_open(struct bh_image_store *st, struct bh_image_blobw **out,
                                      struct bh_err *err);
BH_MUST_CHECK int bh_image_blobw_write(struct bh_image_blobw *w, const void *data, size_t len,
                                       struct bh_err *err);
/* Consumes w (also on error). expect may be NULL; *out_digest (optional) is owned. */
BH_MUST_CHECK int bh_image_blobw_commit(struct bh_image_blobw *w, const char *expect,
                                        char **out_digest, struct bh_err *err);
void bh_image_blobw_abort(struct bh_image_blobw *w);

BH_MUST_CHECK int bh_image_blob_put_mem(struct bh_image_store *st, const void *data, size_t len,
                                        const char *expect, char **out_digest, struct bh_err *err);
BH_MUST_CHECK int bh_image_blob_put_file(struct bh_image_store *st, const char *path,
                                         const char *expect, char **out_digest, struct bh_err *err);
/* Reads and parses a JSON file of at most max bytes; *out owned. A missing file is
 * BH_ENOTFOUND. */
BH_MUST_CHECK int bh_image_read_json_file(const char *path, size_t max, cJSON **out,
                                          struct bh_err *err);
/* Parses a stored JSON blob; *out owned. */
BH_MUST_CHECK int bh_image_blob_read_json(const struct bh_image_store *st, const char *digest,
                                          cJSON **out, struct bh_err *err);

/* refs.json; ref must be normalised. get returns BH_ENOTFOUND when absent. */
BH_MUST_CHECK int bh_image_refs_set(struct bh_image_store *st, const char *ref, const char *digest,
                                    struct bh_err *err);
BH_MUST_CHECK int bh_image_refs_get(struct bh_image_store *st, const char *ref, char **out_digest,
                                    struct bh_err *err);
BH_MUST_CHECK int bh_image_refs_load(struct bh_image_store *st, cJSON **out, struct bh_err *err);

/* True if the manifest JSON is an index / manifest list rather than an image manifest. */
int bh_image_manifest_is_index(const cJSON *manifest);
/* The linux/amd64 descriptor of an index (borrowed from index). */
const cJSON *bh_image_index_pick(const cJSON *index, struct bh_err *err);
/* Digest of a descriptor, validated (borrowed). */
const char *bh_image_desc_digest(const cJSON *desc, struct bh_err *err);

/* Returns <store>/layers/<shift>/<hex> (owned), unpacking the stored blob first if needed. */
BH_MUST_CHECK int bh_image_layer_ensure(struct bh_image_store *st, const char *digest,
                                        char **out_dir, struct bh_err *err);

/* Fetches ref's manifest (platform-picked), config and layers into the store and records
 * the ref. *out_digest (optional, owned) is the image manifest digest. */
BH_MUST_CHECK int bh_image_registry_pull(struct bh_image_store *st, const struct bh_image_ref *ref,
                                         char **out_digest, struct bh_err *err);

/* Copies a manifest's config and layer blobs from an OCI layout dir (verified). */
BH_MUST_CHECK int bh_image_import_dir(struct bh_image_store *st, const char *dir, const char *name,
                                      const char *fallback_name, char **out_ref,
                                      struct bh_err *err);

#endif
