/* Importing local images: an OCI image layout directory (index.json + blobs), or a tar of
 * one (OCI archive), or a `docker save` archive (manifest.json with Config/RepoTags/Layers).
 * Tars are extracted with the layer rules into the store's tmp dir first. */
#include "image_int.h"

#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fs.h"
#include "mem.h"

#define IMPORT_ANN_REF "org.opencontainers.image.ref.name"
#define IMPORT_ANN_CONTAINERD "io.containerd.image.name"
#define IMPORT_MAX_INDEX_DEPTH 4

/* Path of a file named inside the image (docker manifest.json): relative, no "..". */
static char *import_member_path(const char *dir, const char *rel, struct bh_err *err)
{
    bh_autofree char *copy = bh_xstrdup(rel);
    char *save = NULL;
    if (rel[0] == '/' || !rel[0]) {
        bh_err_set(err, BH_EINVAL, "image file \"%s\": must be a relative path", rel);
        return NULL;
    }
    for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (!bh_fs_safe_component(c) && strcmp(c, ".") != 0) {
            bh_err_set(err, BH_EINVAL, "image file \"%s\": \"..\" component", rel);
            return NULL;
        }
    }
    return bh_xasprintf("%s/%s", dir, rel);
}

static const char *import_annotation(const cJSON *desc, const char *key)
{
    const cJSON *ann = cJSON_GetObjectItemCaseSensitive(desc, "annotations");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(ann, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* containerd's full-name annotation wins over the OCI one, which is often just a tag. */
static const char *import_own_name(const cJSON *desc)
{
    const char *full = import_annotation(desc, IMPORT_ANN_CONTAINERD);
    return full ? full : import_annotation(desc, IMPORT_ANN_REF);
}

/* The name for an image: the one given, else the image's own (a bare tag annotation is
 * combined with fallback, the layout's file name). *out owned, normalised. */
static int import_name(const char *given, const char *own, const char *fallback, char **out,
                       struct bh_err *err)
{
    if (given)
        return bh_image_ref_normalize(given, out, err);
    if (!own)
        return bh_err_set(err, BH_EINVAL, "image has no name: give NAME:TAG");
    if (strchr(own, ':') || strchr(own, '/'))
        return bh_image_ref_normalize(own, out, err);
    bh_autofree char *full = bh_xasprintf("%s:%s", fallback, own);
    if (bh_image_ref_normalize(full, out, err) < 0)
        return bh_err_wrap(err, "image is only tagged \"%s\": give NAME:TAG", own);
    return 0;
}

/* ---- OCI layout ------------------------------------------------------------------------- */

/* Copies a layout blob into the store, verifying its digest (skipped when already stored). */
static int layout_fetch(struct bh_image_store *st, const char *dir, const char *digest,
                        struct bh_err *err)
{
    bh_autofree char *have = bh_image_blob_path(st, digest);
    if (bh_fs_exists(have))
        return 0;
    bh_autofree char *src = bh_xasprintf("%s/blobs/sha256/%s", dir, digest + 7);
    return bh_image_blob_put_file(st, src, digest, NULL, err);
}

/* The index.json entry for the wanted tag (or the first one). Borrowed from index. */
static const cJSON *layout_pick(const cJSON *index, const char *given, struct bh_err *err)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(index, "manifests");
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) == 0) {
        bh_err_set(err, BH_EINVAL, "index.json lists no manifests");
        return NULL;
    }
    struct bh_image_ref want = {0};
    struct bh_err ignored;
    if (given && bh_image_ref_parse(given, &want, &ignored) < 0)
        return cJSON_GetArrayItem(list, 0);
    const cJSON *d, *found = NULL;
    cJSON_ArrayForEach(d, list) {
        const char *ann = import_annotation(d, IMPORT_ANN_REF);
        if (!found && ann && want.tag && strcmp(ann, want.tag) == 0)
            found = d;
    }
    bh_image_ref_clear(&want);
    return found ? found : cJSON_GetArrayItem(list, 0);
}

/* Follows indexes down to an image manifest, storing each blob. *out_digest owned. */
static int layout_manifest(struct bh_image_store *st, const char *dir, const char *digest,
                           int depth, char **out_digest, cJSON **out_manifest, struct bh_err *err)
{
    if (depth > IMPORT_MAX_INDEX_DEPTH)
        return bh_err_set(err, BH_EINVAL, "image indexes nested too deeply at %s", digest);
    cJSON *m = NULL;
    if (layout_fetch(st, dir, digest, err) < 0 || bh_image_blob_read_json(st, digest, &m, err) < 0)
        return -1;
    if (!bh_image_manifest_is_index(m)) {
        *out_digest = bh_xstrdup(digest);
        *out_manifest = m;
        return 0;
    }
    const cJSON *d = bh_image_index_pick(m, err);
    const char *next = d ? bh_image_desc_digest(d, err) : NULL;
    int r = next ? layout_manifest(st, dir, next, depth + 1, out_digest, out_manifest, err)
                 : bh_err_wrap(err, "index %s", digest);
    cJSON_Delete(m);
    return r;
}

/* Stores the config and layer blobs a manifest names. */
static int layout_fetch_parts(struct bh_image_store *st, const char *dir, const cJSON *manifest,
                              struct bh_err *err)
{
    const char *cfg =
        bh_image_desc_digest(cJSON_GetObjectItemCaseSensitive(manifest, "config"), err);
    if (!cfg || layout_fetch(st, dir, cfg, err) < 0)
        return bh_err_wrap(err, "config");
    const cJSON *l;
    cJSON_ArrayForEach(l, cJSON_GetObjectItemCaseSensitive(manifest, "layers")) {
        const char *digest = bh_image_desc_digest(l, err);
        if (!digest || layout_fetch(st, dir, digest, err) < 0)
            return bh_err_wrap(err, "layer");
    }
    return 0;
}

static int import_oci_layout(struct bh_image_store *st, const char *dir, const char *given,
                             const char *fallback, char **out_ref, struct bh_err *err)
{
    bh_autofree char *path = bh_xasprintf("%s/index.json", dir);
    cJSON *index = NULL;
    if (bh_image_read_json_file(path, BH_IMAGE_MAX_JSON, &index, err) < 0)
        return -1;
    const cJSON *desc = layout_pick(index, given, err);
    const char *digest = desc ? bh_image_desc_digest(desc, err) : NULL;
    bh_autofree char *ref = NULL, *mdigest = NULL;
    cJSON *manifest = NULL;
    int r = -1;
    if (digest && import_name(given, import_own_name(desc), fallback, &ref, err) == 0 &&
        layout_manifest(st, dir, digest, 0, &mdigest, &manifest, err) == 0 &&
        layout_fetch_parts(st, dir, manifest, err) == 0)
        r = bh_image_refs_set(st, ref, mdigest, err);
    cJSON_Delete(manifest);
    cJSON_Delete(index);
    if (r == 0 && out_ref)
        *out_ref = BH_STEAL(ref);
    return r < 0 ? bh_err_wrap(err, "import %s", dir) : 0;
}

/* ---- docker save ------------------------------------------------------------------------ */

/* Stores a file of a docker archive and describes it as an OCI descriptor (owned). */
static cJSON *docker_put(struct bh_image_store *st, const char *dir, const cJSON *rel,
                         const char *media_type, struct bh_err *err)
{
    if (!cJSON_IsString(rel)) {
        bh_err_set(err, BH_EINVAL, "manifest.json: Config/Layers entries must be strings");
        return NULL;
    }
    bh_autofree char *path = import_member_path(dir, rel->valuestring, err);
    bh_autofree char *digest = NULL;
    struct stat sb;
    if (!path || bh_image_blob_put_file(st, path, NULL, &digest, err) < 0)
        return NULL;
    if (stat(path, &sb) < 0) {
        bh_err_errno(err, BH_EIO, "stat %s", path);
        return NULL;
    }
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "mediaType", media_type);
    cJSON_AddStringToObject(d, "digest", digest);
    cJSON_AddNumberToObject(d, "size", (double)sb.st_size);
    return d;
}

/* Builds and stores an OCI manifest for one manifest.json entry. *out_digest owned. */
static int docker_manifest(struct bh_image_store *st, const char *dir, const cJSON *entry,
                           char **out_digest, struct bh_err *err)
{
    cJSON *m = cJSON_CreateObject(), *layers = cJSON_CreateArray();
    cJSON_AddNumberToObject(m, "schemaVersion", 2);
    cJSON_AddStringToObject(m, "mediaType", BH_IMAGE_MT_OCI_MANIFEST);
    cJSON *cfg = docker_put(st, dir, cJSON_GetObjectItemCaseSensitive(entry, "Config"),
                            "application/vnd.oci.image.config.v1+json", err);
    cJSON_AddItemToObject(m, "config", cfg ? cfg : cJSON_CreateNull());
    cJSON_AddItemToObject(m, "layers", layers);
    int ok = cfg != NULL;
    const cJSON *l;
    cJSON_ArrayForEach(l, cJSON_GetObjectItemCaseSensitive(entry, "Layers")) {
        cJSON *d =
            ok ? docker_put(st, dir, l, "application/vnd.oci.image.layer.v1.tar", err) : NULL;
        ok = d != NULL;
        if (d)
            cJSON_AddItemToArray(layers, d);
    }
    bh_autofree char *text = ok ? cJSON_PrintUnformatted(m) : NULL;
    cJSON_Delete(m);
    if (!text)
        return -1;
    return bh_image_blob_put_mem(st, text, strlen(text), NULL, out_digest, err);
}

static const char *docker_first_tag(const cJSON *entry)
{
    const cJSON *t = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(entry, "RepoTags"), 0);
    return cJSON_IsString(t) ? t->valuestring : NULL;
}

static int import_docker(struct bh_image_store *st, const char *dir, const char *given,
                         const char *fallback, char **out_ref, struct bh_err *err)
{
    bh_autofree char *path = bh_xasprintf("%s/manifest.json", dir);
    cJSON *list = NULL;
    if (bh_image_read_json_file(path, BH_IMAGE_MAX_JSON, &list, err) < 0)
        return -1;
    const cJSON *entry = cJSON_GetArrayItem(list, 0);
    bh_autofree char *ref = NULL, *digest = NULL;
    int r = -1;
    if (!cJSON_IsObject(entry))
        bh_err_set(err, BH_EINVAL, "%s: expected a list of image entries", path);
    else if (import_name(given, docker_first_tag(entry), fallback, &ref, err) == 0 &&
             docker_manifest(st, dir, entry, &digest, err) == 0)
        r = bh_image_refs_set(st, ref, digest, err);
    cJSON_Delete(list);
    if (r == 0 && out_ref)
        *out_ref = BH_STEAL(ref);
    return r < 0 ? bh_err_wrap(err, "import docker archive %s", dir) : 0;
}

/* ---- entry points ----------------------------------------------------------------------- */

int bh_image_import_dir(struct bh_image_store *st, const char *dir, const char *name,
                        const char *fallback_name, char **out_ref, struct bh_err *err)
{
    bh_autofree char *docker = bh_xasprintf("%s/manifest.json", dir);
    bh_autofree char *oci = bh_xasprintf("%s/index.json", dir);
    /* docker >= 25 writes both; manifest.json is the one that carries RepoTags. */
    if (bh_fs_exists(docker))
        return import_docker(st, dir, name, fallback_name, out_ref, err);
    if (bh_fs_exists(oci))
        return import_oci_layout(st, dir, name, fallback_name, out_ref, err);
    return bh_err_set(err, BH_EINVAL,
                      "%s: neither an OCI layout (index.json) nor a docker "
                      "archive (manifest.json)",
                      dir);
}

/* The file name without directory and archive extension: "busybox.tar" -> "busybox". */
static char *import_fallback_name(const char *path)
{
    bh_autofree char *copy = bh_xstrdup(path);
    char *base = bh_xstrdup(basename(copy));
    const char *exts[] = {".tar.gz", ".tgz", ".tar"};
    for (size_t i = 0; i < BH_ARRAY_LEN(exts); i++) {
        size_t n = strlen(base), e = strlen(exts[i]);
        if (n > e && strcmp(base + n - e, exts[i]) == 0) {
            base[n - e] = '\0';
            break;
        }
    }
    return base;
}

static int import_archive(struct bh_image_store *st, const char *path, const char *name,
                          const char *fallback, char **out_ref, struct bh_err *err)
{
    bh_autofree char *tmp = bh_xasprintf("%s/tmp/import-XXXXXX", st->dir);
    if (!mkdtemp(tmp))
        return bh_err_errno(err, BH_EIO, "mkdtemp %s", tmp);
    int r = bh_image_layer_unpack(path, tmp, 0, err);
    if (r == 0)
        r = bh_image_import_dir(st, tmp, name, fallback, out_ref, err);
    else
        bh_err_wrap(err, "import %s", path);
    struct bh_err ignored;
    BH_IGNORE(bh_fs_rmtree(tmp, &ignored)); /* a temp dir: a leftover costs space only */
    return r;
}

int bh_image_import(struct bh_image_store *st, const char *path, const char *name, char **out_ref,
                    struct bh_err *err)
{
    struct stat sb;
    if (stat(path, &sb) < 0)
        return bh_err_errno(err, errno == ENOENT ? BH_ENOTFOUND : BH_EIO, "import %s", path);
    bh_autofree char *fallback = import_fallback_name(path);
    if (S_ISDIR(sb.st_mode))
        return bh_image_import_dir(st, path, name, fallback, out_ref, err);
    return import_archive(st, path, name, fallback, out_ref, err);
}
