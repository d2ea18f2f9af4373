/* Content-addressed blobs: every byte is hashed on its way in, and a blob only appears under
 * blobs/sha256/<hex> (by rename) once its digest is known to be right. */
#include "image_int.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs.h"
#include "mem.h"

#define BLOB_HEX_LEN 64

struct bh_image_blobw {
    struct bh_image_store *st; /* borrowed */
    EVP_MD_CTX *md;
    int fd;
    char *tmp; /* temp file path (owned) */
};

int bh_image_digest_valid(const char *digest)
{
    if (!digest || strncmp(digest, "sha256:", 7) != 0)
        return 0;
    const char *hex = digest + 7;
    return strlen(hex) == BLOB_HEX_LEN && strspn(hex, "0123456789abcdef") == BLOB_HEX_LEN;
}

char *bh_image_blob_path(const struct bh_image_store *st, const char *digest)
{
    return bh_xasprintf("%s/blobs/sha256/%s", st->dir, digest + 7);
}

int bh_image_blobw_open(struct bh_image_store *st, struct bh_image_blobw **out, struct bh_err *err)
{
    bh_autofree char *tmp = bh_xasprintf("%s/tmp/blob-XXXXXX", st->dir);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return bh_err_errno(err, BH_EIO, "create %s", tmp);
    struct bh_image_blobw *w = bh_xcalloc(1, sizeof(*w));
    w->st = st;
    w->fd = fd;
    w->tmp = BH_STEAL(tmp);
    w->md = EVP_MD_CTX_new();
    if (!w->md || EVP_DigestInit_ex(w->md, EVP_sha256(), NULL) != 1) {
        bh_image_blobw_abort(w);
        return bh_err_set(err, BH_EIO, "sha256 init failed");
    }
    *out = w;
    return 0;
}

int bh_image_blobw_write(struct bh_image_blobw *w, const void *data, size_t len, struct bh_err *err)
{
    if (EVP_DigestUpdate(w->md, data, len) != 1)
        return bh_err_set(err, BH_EIO, "sha256 update failed");
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(w->fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return bh_err_errno(err, BH_EIO, "write %s", w->tmp);
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

void bh_image_blobw_abort(struct bh_image_blobw *w)
{
    if (!w)
        return;
    if (w->fd >= 0)
        close(w->fd);
    unlink(w->tmp);
    free(w->tmp);
    EVP_MD_CTX_free(w->md);
    free(w);
}

static char *blobw_final_digest(struct bh_image_blobw *w)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(w->md, md, &n) != 1 || n * 2 != BLOB_HEX_LEN)
        return NULL;
    char *out = bh_xmalloc(7 + BLOB_HEX_LEN + 1);
    memcpy(out, "sha256:", 7);
    for (unsigned int i = 0; i < n; i++)
        snprintf(out + 7 + 2 * i, 3, "%02x", md[i]);
    return out;
}

static int blobw_install(struct bh_image_blobw *w, const char *digest, struct bh_err *err)
{
    if (fsync(w->fd) < 0)
        return bh_err_errno(err, BH_EIO, "fsync %s", w->tmp);
    if (fchmod(w->fd, 0644) < 0)
        return bh_err_errno(err, BH_EIO, "chmod %s", w->tmp);
    bh_autofree char *path = bh_image_blob_path(w->st, digest);
    if (rename(w->tmp, path) < 0)
        return bh_err_errno(err, BH_EIO, "rename blob %s", digest);
    bh_autofree char *dir = bh_xasprintf("%s/blobs/sha256", w->st->dir);
    return bh_fs_fsync_dir(dir, err);
}

int bh_image_blobw_commit(struct bh_image_blobw *w, const char *expect, char **out_digest,
                          struct bh_err *err)
{
    bh_autofree char *digest = blobw_final_digest(w);
    int r = 0;
    if (!digest)
        r = bh_err_set(err, BH_EIO, "sha256 final failed");
    else if (expect && strcmp(expect, digest) != 0)
        r = bh_err_set(err, BH_EINVAL, "blob %s: content has digest %s (corrupt or tampered)",
                       expect, digest);
    else
        r = blobw_install(w, digest, err);
    bh_image_blobw_abort(w); /* after a successful rename the unlink is a harmless ENOENT */
    if (r == 0 && out_digest)
        *out_digest = BH_STEAL(digest);
    return r;
}

int bh_image_blob_put_mem(struct bh_image_store *st, const void *data, size_t len,
                          const char *expect, char **out_digest, struct bh_err *err)
{
    struct bh_image_blobw *w;
    if (bh_image_blobw_open(st, &w, err) < 0)
        return -1;
    if (bh_image_blobw_write(w, data, len, err) < 0) {
        bh_image_blobw_abort(w);
        return -1;
    }
    return bh_image_blobw_commit(w, expect, out_digest, err);
}

static int blob_copy_fd(struct bh_image_blobw *w, int fd, const char *path, struct bh_err *err)
{
    char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return bh_err_errno(err, BH_EIO, "read %s", path);
        if (n == 0)
            return 0;
        if (bh_image_blobw_write(w, buf, (size_t)n, err) < 0)
            return -1;
    }
}

int bh_image_blob_put_file(struct bh_image_store *st, const char *path, const char *expect,
                           char **out_digest, struct bh_err *err)
{
    bh_autoclose int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return bh_err_errno(err, errno == ENOENT ? BH_ENOTFOUND : BH_EIO, "open %s", path);
    struct bh_image_blobw *w;
    if (bh_image_blobw_open(st, &w, err) < 0)
        return -1;
    if (blob_copy_fd(w, fd, path, err) < 0) {
        bh_image_blobw_abort(w);
        return -1;
    }
    return bh_image_blobw_commit(w, expect, out_digest, err);
}

int bh_image_read_json_file(const char *path, size_t max, cJSON **out, struct bh_err *err)
{
    bh_autofree char *data = NULL;
    size_t len = 0;
    if (bh_fs_read_all(path, max, &data, &len, err) < 0)
        return -1;
    *out = cJSON_ParseWithLength(data, len);
    return *out ? 0 : bh_err_set(err, BH_EINVAL, "%s is not valid JSON", path);
}

int bh_image_blob_read_json(const struct bh_image_store *st, const char *digest, cJSON **out,
                            struct bh_err *err)
{
    if (!bh_image_digest_valid(digest))
        return bh_err_set(err, BH_EINVAL, "bad digest %s", digest ? digest : "(null)");
    bh_autofree char *path = bh_image_blob_path(st, digest);
    if (bh_image_read_json_file(path, BH_IMAGE_MAX_JSON, out, err) < 0)
        return bh_err_wrap(err, "blob %s", digest);
    return 0;
}
