/* Images: a content-addressed store of OCI images under <state>/images, filled by importing
 * a local OCI layout / OCI archive / docker archive, or by pulling from an OCI distribution
 * registry with libcurl. Layers are verified by digest and unpacked with libarchive into
 * <store>/layers/<shift>/<hex>/ (whiteouts honoured, no path escapes), with file ownership
 * shifted by uid_shift so that the user namespace mapping of instances lines up. */
#ifndef BH_IMAGE_H
#define BH_IMAGE_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* uid_shift used when $BOILERHOUSE_UID_BASE is unset: container uid 0 is this host uid. */
#define BH_DEFAULT_UID_BASE 1000000000u

struct bh_image_store;

struct bh_image {
    char *ref;         /* normalised reference, e.g. "docker.io/library/busybox:1.36" */
    char *digest;      /* manifest digest "sha256:<hex>" */
    char **layer_dirs; /* absolute paths of unpacked layers, bottom layer first */
    size_t n_layers;
    cJSON *config; /* the image config's "config" object (Entrypoint, Cmd, Env,
                      WorkingDir, User, ExposedPorts); never NULL (may be {}) */
};

/* registry_cfg (borrowed, may be NULL):
 *   {"insecure": ["127.0.0.1:5000"],                      plain HTTP registries
 *    "auths": {"host:port": {"username": "...", "password": "..."}},
 *    "caFile": "/path/ca.pem"}                            extra trust for HTTPS
 * Registries on 127.0.0.1/localhost are always allowed over plain HTTP. */
BH_MUST_CHECK int bh_image_store_open(const char *dir, uint32_t uid_shift,
                                      const cJSON *registry_cfg, struct bh_image_store **out,
                                      struct bh_err *err);
void bh_image_store_close(struct bh_image_store *st);

/* Imports an OCI image layout directory, an OCI archive or a docker-archive (tar) at path.
 * name ("name:tag") may be NULL to use the image's own ref annotation / RepoTags.
 * *out_ref (optional, owned) receives the name it was stored under. */
BH_MUST_CHECK int bh_image_import(struct bh_image_store *st, const char *path, const char *name,
                                  char **out_ref, struct bh_err *err);

/* Normalises a reference like docker: "busybox" -> "docker.io/library/busybox:latest";
 * "host[:port]/repo:tag" keeps its host; "name@sha256:<hex>" keeps the digest. *out owned. */
BH_MUST_CHECK int bh_image_ref_normalize(const char *ref, char **out, struct bh_err *err);

/* Fetches ref from its registry (always asking the registry, unlike resolve) and records it.
 * *out_digest (optional, owned) receives the image manifest digest. */
BH_MUST_CHECK int bh_image_pull(struct bh_image_store *st, const char *ref, char **out_digest,
                                struct bh_err *err);

/* The stored refs as a JSON object {"<ref>": "sha256:<hex>"}; *out owned. */
BH_MUST_CHECK int bh_image_list(struct bh_image_store *st, cJSON **out, struct bh_err *err);

/* Unpacks one layer tar (gzip, zstd or plain, detected by magic) into the existing empty
 * directory dest: absolute paths, ".." and writes through symlinks are refused, OCI
 * whiteouts become overlayfs whiteouts, device nodes are skipped and owners are shifted by
 * uid_shift. dest must be a canonical path (no symlinks in it). */
BH_MUST_CHECK int bh_image_layer_unpack(const char *tar_path, const char *dest, uint32_t uid_shift,
                                        struct bh_err *err);

/* Resolves ref to an unpacked image: an imported name first, then the registry (pulling
 * what is missing). Manifest lists/indexes pick linux/amd64. Safe to call concurrently.
 * *out owned, free with bh_image_free. */
BH_MUST_CHECK int bh_image_resolve(struct bh_image_store *st, const char *ref,
                                   struct bh_image **out, struct bh_err *err);
void bh_image_free(struct bh_image *img);

/* `boilerhouse image import PATH [NAME:TAG] | pull REF | ls` with --state-dir DIR (default
 * $BOILERHOUSE_STATE_DIR or /var/lib/boilerhouse); argv[0] is "image". Returns an exit code. */
int bh_image_cli_main(int argc, char **argv);

#endif
