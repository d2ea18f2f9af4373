/* The image store: opening it, the refs index, and resolving a ref to unpacked layers. */
#include "image.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs.h"
#include "image_int.h"
#include "mem.h"

static int store_mkdirs(const char *dir, uint32_t shift, struct bh_err *err)
{
    const char *subs[] = {"blobs/sha256", "tmp", "layers"};
    for (size_t i = 0; i < BH_ARRAY_LEN(subs); i++) {
        bh_autofree char *p = bh_xasprintf("%s/%s", dir, subs[i]);
        if (bh_fs_mkdirp(p, 0700, err) < 0)
            return -1;
    }
    bh_autofree char *layers = bh_xasprintf("%s/layers/%u", dir, shift);
    /* Instances read their layers through overlayfs as shifted uids: the layer tree itself
     * must be traversable by them. */
    if (bh_fs_mkdirp(layers, 0755, err) < 0 || chmod(layers, 0755) < 0)
        return bh_err_errno(err, BH_EIO, "prepare %s", layers);
    bh_autofree char *layers_root = bh_xasprintf("%s/layers", dir);
    return chmod(layers_root, 0755) < 0 ? bh_err_errno(err, BH_EIO, "chmod %s", layers_root) : 0;
}

int bh_image_store_open(const char *dir, uint32_t uid_shift, const cJSON *registry_cfg,
                        struct bh_image_store **out, struct bh_err *err)
{
    if (bh_fs_mkdirp(dir, 0711, err) < 0)
        return -1;
    char real[PATH_MAX];
    if (!realpath(dir, real))
        return bh_err_errno(err, BH_EIO, "realpath %s", dir);
    if (store_mkdirs(real, uid_shift, err) < 0)
        return -1;
    struct bh_image_store *st = bh_xcalloc(1, sizeof(*st));
    st->dir = bh_xstrdup(real);
    st->uid_shift = uid_shift;
    st->registry_cfg = registry_cfg ? cJSON_Duplicate(registry_cfg, 1) : NULL;
    pthread_mutex_init(&st->lock, NULL);
    *out = st;
    return 0;
}

void bh_image_store_close(struct bh_image_store *st)
{
    if (!st)
        return;
    pthread_mutex_destroy(&st->lock);
    cJSON_Delete(st->registry_cfg);
    free(st->dir);
    free(st);
}

/* ---- refs.json ------------------------------------------------------------------------- */

int bh_image_refs_load(struct bh_image_store *st, cJSON **out, struct bh_err *err)
{
    bh_autofree char *path = bh_xasprintf("%s/refs.json", st->dir);
    struct bh_err rerr;
    if (bh_image_read_json_file(path, BH_IMAGE_MAX_JSON, out, &rerr) < 0) {
        if (rerr.code != BH_ENOTFOUND)
            return bh_err_set(err, rerr.code, "%s", rerr.msg);
        *out = cJSON_CreateObject();
        return 0;
    }
    if (!cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        return bh_err_set(err, BH_EIO, "%s is not a JSON object", path);
    }
    return 0;
}

/* Exclusive lock on refs.lock so a CLI import and the daemon do not lose each other's
 * updates. Returns the fd (close to unlock). */
static int refs_lock(struct bh_image_store *st, struct bh_err *err)
{
    bh_autofree char *path = bh_xasprintf("%s/refs.lock", st->dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return bh_err_errno(err, BH_EIO, "open %s", path);
    while (flock(fd, LOCK_EX) < 0) {
        if (errno != EINTR) {
            close(fd);
            return bh_err_errno(err, BH_EIO, "lock %s", path);
        }
    }
    return fd;
}

static int refs_store(struct bh_image_store *st, const cJSON *refs, struct bh_err *err)
{
    bh_autofree char *path = bh_xasprintf("%s/refs.json", st->dir);
    bh_autofree char *text = cJSON_PrintUnformatted(refs);
    if (!text)
        return bh_err_set(err, BH_EIO, "serialise %s", path);
    return bh_fs_write_atomic(path, text, strlen(text), 0644, err);
}

int bh_image_refs_set(struct bh_image_store *st, const char *ref, const char *digest,
                      struct bh_err *err)
{
    bh_autoclose int lock = refs_lock(st, err);
    if (lock < 0)
        return -1;
    cJSON *refs = NULL;
    if (bh_image_refs_load(st, &refs, err) < 0)
        return -1;
    cJSON_DeleteItemFromObjectCaseSensitive(refs, ref);
    cJSON_AddStringToObject(refs, ref, digest);
    int r = refs_store(st, refs, err);
    cJSON_Delete(refs);
    return r;
}

int bh_image_refs_get(struct bh_image_store *st, const char *ref, char **out_digest,
                      struct bh_err *err)
{
    cJSON *refs = NULL;
    if (bh_image_refs_load(st, &refs, err) < 0)
        return -1;
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(refs, ref);
    int r = 0;
    if (!cJSON_IsString(d))
        r = bh_err_set(err, BH_ENOTFOUND, "image %s not in the store", ref);
    else if (!bh_image_digest_valid(d->valuestring))
        r = bh_err_set(err, BH_EIO, "refs.json: bad digest for %s", ref);
    else
        *out_digest = bh_xstrdup(d->valuestring);
    cJSON_Delete(refs);
    return r;
}

int bh_image_list(struct bh_image_store *st, cJSON **out, struct bh_err *err)
{
    return bh_image_refs_load(st, out, err);
}

/* ---- manifests ------------------------------------------------------------------------- */

int bh_image_manifest_is_index(const cJSON *manifest)
{
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(manifest, "mediaType");
    if (cJSON_IsString(mt))
        return strcmp(mt->valuestring, BH_IMAGE_MT_OCI_INDEX) == 0 ||
               strcmp(mt->valuestring, BH_IMAGE_MT_DOCKER_LIST) == 0;
    /* OCI allows omitting mediaType; an index is what has "manifests". */
    return cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(manifest, "manifests"));
}

const char *bh_image_desc_digest(const cJSON *desc, struct bh_err *err)
{
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(desc, "digest");
    if (!cJSON_IsString(d) || !bh_image_digest_valid(d->valuestring)) {
        bh_err_set(err, BH_EINVAL, "descriptor without a valid sha256 digest");
        return NULL;
    }
    return d->valuestring;
}

static int desc_is_platform(const cJSON *desc, const char *os, const char *arch)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(desc, "platform");
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(p, "os");
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(p, "architecture");
    return cJSON_IsString(o) && cJSON_IsString(a) && strcmp(o->valuestring, os) == 0 &&
           strcmp(a->valuestring, arch) == 0;
}

const cJSON *bh_image_index_pick(const cJSON *index, struct bh_err *err)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(index, "manifests");
    const cJSON *d;
    cJSON_ArrayForEach(d, list) {
        if (desc_is_platform(d, "linux", "amd64"))
            return d;
    }
    bh_err_set(err, BH_ENOTFOUND, "image index has no linux/amd64 manifest");
    return NULL;
}

/* ---- resolve --------------------------------------------------------------------------- */

void bh_image_free(struct bh_image *img)
{
    if (!img)
        return;
    free(img->ref);
    free(img->digest);
    for (size_t i = 0; i < img->n_layers; i++)
        free(img->layer_dirs[i]);
    free(img->layer_dirs);
    cJSON_Delete(img->config);
    free(img);
}

static int image_load_config(struct bh_image_store *st, const cJSON *manifest, struct bh_image *img,
                             struct bh_err *err)
{
    const char *digest =
        bh_image_desc_digest(cJSON_GetObjectItemCaseSensitive(manifest, "config"), err);
    if (!digest)
        return bh_err_wrap(err, "image %s: config", img->ref);
    cJSON *cfg = NULL;
    if (bh_image_blob_read_json(st, digest, &cfg, err) < 0)
        return bh_err_wrap(err, "image %s: config", img->ref);
    cJSON *inner = cJSON_DetachItemFromObjectCaseSensitive(cfg, "config");
    cJSON_Delete(cfg);
    if (inner && !cJSON_IsObject(inner)) {
        cJSON_Delete(inner);
        return bh_err_set(err, BH_EINVAL, "image %s: config blob %s: \"config\" is not an object",
                          img->ref, digest);
    }
    img->config = inner ? inner : cJSON_CreateObject();
    return 0;
}

static int image_load_layers(struct bh_image_store *st, const cJSON *manifest, struct bh_image *img,
                             struct bh_err *err)
{
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(manifest, "layers");
    if (!cJSON_IsArray(layers))
        return bh_err_set(err, BH_EINVAL, "image %s: manifest %s has no layers", img->ref,
                          img->digest);
    size_t n = (size_t)cJSON_GetArraySize(layers);
    img->layer_dirs = bh_xcalloc(n ? n : 1, sizeof(char *));
    const cJSON *l;
    cJSON_ArrayForEach(l, layers) {
        const char *digest = bh_image_desc_digest(l, err);
        if (!digest)
            return bh_err_wrap(err, "image %s: layer", img->ref);
        if (bh_image_layer_ensure(st, digest, &img->layer_dirs[img->n_layers], err) < 0)
            return bh_err_wrap(err, "image %s", img->ref);
        img->n_layers++;
    }
    return 0;
}

static int image_build(struct bh_image_store *st, struct bh_image *img, struct bh_err *err)
{
    cJSON *manifest = NULL;
    if (bh_image_blob_read_json(st, img->digest, &manifest, err) < 0)
        return bh_err_wrap(err, "image %s: manifest", img->ref);
    int r = -1;
    if (bh_image_manifest_is_index(manifest))
        bh_err_set(err, BH_EINVAL, "image %s: %s is an index, not an image manifest", img->ref,
                   img->digest);
    else if (image_load_config(st, manifest, img, err) == 0)
        r = image_load_layers(st, manifest, img, err);
    cJSON_Delete(manifest);
    return r;
}

/* The manifest digest for a parsed ref: the refs index, a by-digest blob already present,
 * or a registry pull. */
static int image_lookup(struct bh_image_store *st, const struct bh_image_ref *r, const char *name,
                        char **digest, struct bh_err *err)
{
    struct bh_err lerr;
    if (bh_image_refs_get(st, name, digest, &lerr) == 0)
        return 0;
    if (lerr.code != BH_ENOTFOUND)
        return bh_err_set(err, lerr.code, "%s", lerr.msg);
    if (r->digest) {
        bh_autofree char *path = bh_image_blob_path(st, r->digest);
        if (bh_fs_exists(path)) {
            *digest = bh_xstrdup(r->digest);
            return 0;
        }
    }
    return bh_image_registry_pull(st, r, digest, err);
}

int bh_image_resolve(struct bh_image_store *st, const char *ref, struct bh_image **out,
                     struct bh_err *err)
{
    struct bh_image_ref r;
    if (bh_image_ref_parse(ref, &r, err) < 0)
        return -1;
    struct bh_image *img = bh_xcalloc(1, sizeof(*img));
    img->ref = bh_image_ref_format(&r);
    int rc = image_lookup(st, &r, img->ref, &img->digest, err);
    bh_image_ref_clear(&r);
    if (rc == 0)
        rc = image_build(st, img, err);
    if (rc < 0) {
        bh_image_free(img);
        return -1;
    }
    *out = img;
    return 0;
}

int bh_image_pull(struct bh_image_store *st, const char *ref, char **out_digest, struct bh_err *err)
{
    struct bh_image_ref r;
    if (bh_image_ref_parse(ref, &r, err) < 0)
        return -1;
    int rc = bh_image_registry_pull(st, &r, out_digest, err);
    bh_image_ref_clear(&r);
    return rc;
}
