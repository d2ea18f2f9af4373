/* Secret store files: <state>/secrets/global/<name>.sec (tenant NULL) and
 * <state>/secrets/tenants/<tenant>/<name>.sec, each
 *   "BHSEC1\0\0" (8) | nonce (12, random) | AES-256-GCM(JSON {key: value}) | tag (16)
 * under HKDF(master, no salt, "boilerhouse secrets v1"), with AAD "<tenant or empty>/<name>"
 * so a file moved to another secret's place does not decrypt. Written atomically, 0600.
 * Read-modify-write cycles hold flock on the secrets dir (daemon and CLI may both write). */
#include "secret.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto.h"
#include "fs.h"
#include "mem.h"
#include "name.h"

#define SEC_MAGIC "BHSEC1\0"
#define SEC_MAGIC_LEN 8
#define SEC_HEAD (SEC_MAGIC_LEN + BH_GCM_NONCE_LEN)
#define SEC_MAX_FILE (1u << 20)
#define SEC_EXT ".sec"

struct bh_secrets {
    char *dir;               /* <state>/secrets, owned */
    int lock_fd;             /* the dir, for flock */
    uint8_t key[BH_KEY_LEN]; /* wiped on close */
};

static int sec_name_valid(const char *s)
{
    size_t len = s ? strlen(s) : 0;
    if (!len || len > 253 || !strcmp(s, ".") || !strcmp(s, ".."))
        return 0;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == len;
}

static int sec_check(const char *tenant, const char *name, const char *key, struct bh_err *err)
{
    if (tenant && !bh_name_tenant_valid(tenant))
        return bh_err_set(err, BH_EINVAL, "invalid tenant id");
    if (!sec_name_valid(name))
        return bh_err_set(err, BH_EINVAL, "invalid secret name (want [A-Za-z0-9._-]{1,253})");
    if (key && !sec_name_valid(key))
        return bh_err_set(err, BH_EINVAL, "invalid secret key (want [A-Za-z0-9._-]{1,253})");
    return 0;
}

static char *sec_dir_of(const struct bh_secrets *s, const char *tenant)
{
    return tenant ? bh_xasprintf("%s/tenants/%s", s->dir, tenant)
                  : bh_xasprintf("%s/global", s->dir);
}

static char *sec_path(const struct bh_secrets *s, const char *tenant, const char *name)
{
    bh_autofree char *dir = sec_dir_of(s, tenant);
    return bh_xasprintf("%s/%s" SEC_EXT, dir, name);
}

static char *sec_aad(const char *tenant, const char *name)
{
    return bh_xasprintf("%s/%s", tenant ? tenant : "", name);
}

/* Values are secret: wipe every string before the tree is freed. */
static void sec_json_free(cJSON *obj)
{
    for (cJSON *it = obj ? obj->child : NULL; it; it = it->next)
        if (it->valuestring)
            bh_crypto_wipe(it->valuestring, strlen(it->valuestring));
    cJSON_Delete(obj);
}

static void sec_json_freep(cJSON **obj)
{
    sec_json_free(*obj);
}

#define sec_autojson __attribute__((cleanup(sec_json_freep)))

int bh_secrets_open(const char *state_dir, struct bh_secrets **out, struct bh_err *err)
{
    uint8_t master[BH_KEY_LEN];
    struct bh_secrets *s = bh_xcalloc(1, sizeof(*s));
    s->dir = bh_xasprintf("%s/secrets", state_dir);
    s->lock_fd = -1;
    int rc = bh_crypto_master_key(state_dir, master, err);
    rc = rc < 0 ? rc : bh_crypto_derive(master, NULL, 0, "boilerhouse secrets v1", s->key, err);
    bh_crypto_wipe(master, sizeof(master));
    rc = rc < 0 ? rc : bh_fs_mkdirp(s->dir, 0700, err);
    if (rc == 0 && (s->lock_fd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        rc = bh_err_errno(err, BH_EIO, "open %s", s->dir);
    if (rc < 0) {
        bh_secrets_close(s);
        return -1;
    }
    *out = s;
    return 0;
}

void bh_secrets_close(struct bh_secrets *s)
{
    if (!s)
        return;
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    bh_crypto_wipe(s->key, sizeof(s->key));
    free(s->dir);
    free(s);
}

/* ---- one file ------------------------------------------------------------------------------ */

static int sec_decrypt(const struct bh_secrets *s, const char *aad, uint8_t *data, size_t len,
                       cJSON **out, struct bh_err *err)
{
    if (len < SEC_HEAD + BH_GCM_TAG_LEN || memcmp(data, SEC_MAGIC, SEC_MAGIC_LEN))
        return bh_err_set(err, BH_EINVAL, "not a secret file");
    size_t n = len - SEC_HEAD - BH_GCM_TAG_LEN;
    bh_autofree char *plain = bh_xmalloc(n + 1);
    int rc = bh_crypto_open(s->key, data + SEC_MAGIC_LEN, aad, strlen(aad), data + SEC_HEAD, n,
                            plain, data + SEC_HEAD + n, err);
    plain[rc < 0 ? 0 : n] = '\0';
    *out = rc < 0 ? NULL : cJSON_Parse(plain);
    bh_crypto_wipe(plain, n + 1);
    if (rc < 0)
        return -1;
    if (!cJSON_IsObject(*out)) {
        sec_json_free(*out);
        return bh_err_set(err, BH_EINVAL, "secret file holds no JSON object");
    }
    return 0;
}

/* BH_ENOTFOUND if the secret does not exist. */
static int sec_load(const struct bh_secrets *s, const char *tenant, const char *name, cJSON **out,
                    struct bh_err *err)
{
    bh_autofree char *path = sec_path(s, tenant, name), *aad = sec_aad(tenant, name);
    bh_autofree char *data = NULL;
    size_t len = 0;
    if (bh_fs_read_all(path, SEC_MAX_FILE, &data, &len, err) < 0) {
        if (err->code != BH_ENOTFOUND) /* the path says nothing to whoever reads the error */
            return -1;
        return tenant ? bh_err_set(err, BH_ENOTFOUND, "tenant %s has no secret %s", tenant, name)
                      : bh_err_set(err, BH_ENOTFOUND, "no secret %s", name);
    }
    if (sec_decrypt(s, aad, (uint8_t *)data, len, out, err) < 0)
        return bh_err_wrap(err, "secret %s%s%s", tenant ? tenant : "", tenant ? "/" : "", name);
    return 0;
}

static int sec_store(const struct bh_secrets *s, const char *tenant, const char *name,
                     const cJSON *obj, struct bh_err *err)
{
    bh_autofree char *dir = sec_dir_of(s, tenant), *aad = sec_aad(tenant, name);
    bh_autofree char *path = sec_path(s, tenant, name);
    bh_autofree char *json = cJSON_PrintUnformatted(obj);
    size_t n = strlen(json);
    bh_autofree uint8_t *out = bh_xmalloc(SEC_HEAD + n + BH_GCM_TAG_LEN);
    memcpy(out, SEC_MAGIC, SEC_MAGIC_LEN);
    int rc = bh_crypto_random(out + SEC_MAGIC_LEN, BH_GCM_NONCE_LEN, err);
    rc = rc < 0 ? rc
                : bh_crypto_seal(s->key, out + SEC_MAGIC_LEN, aad, strlen(aad), json, n,
                                 out + SEC_HEAD, out + SEC_HEAD + n, err);
    bh_crypto_wipe(json, n);
    rc = rc < 0 ? rc : bh_fs_mkdirp(dir, 0700, err);
    return rc < 0 ? rc : bh_fs_write_atomic(path, out, SEC_HEAD + n + BH_GCM_TAG_LEN, 0600, err);
}

static void sec_unlockp(struct bh_secrets **s)
{
    if (*s)
        flock((*s)->lock_fd, LOCK_UN);
}

#define sec_locked(s)                                                                              \
    __attribute__((cleanup(sec_unlockp), unused)) struct bh_secrets *sec_lock_ =                   \
        flock((s)->lock_fd, LOCK_EX) == 0 ? (s) : NULL

/* ---- the API ------------------------------------------------------------------------------- */

int bh_secrets_set(struct bh_secrets *s, const char *tenant, const char *name, const char *key,
                   const char *value, struct bh_err *err)
{
    if (!key || !value)
        return bh_err_set(err, BH_EINVAL, "secret key and value needed");
    if (sec_check(tenant, name, key, err) < 0)
        return -1;
    sec_locked(s);
    sec_autojson cJSON *obj = NULL;
    struct bh_err lerr = {0};
    if (sec_load(s, tenant, name, &obj, &lerr) < 0 && lerr.code != BH_ENOTFOUND)
        return bh_err_set(err, lerr.code, "%s", lerr.msg);
    if (!obj)
        obj = cJSON_CreateObject();
    cJSON *old = cJSON_DetachItemFromObjectCaseSensitive(obj, key);
    sec_json_free(old);
    cJSON_AddStringToObject(obj, key, value);
    return sec_store(s, tenant, name, obj, err);
}

int bh_secrets_get(struct bh_secrets *s, const char *tenant, const char *name, const char *key,
                   char **value, struct bh_err *err)
{
    if (!key)
        return bh_err_set(err, BH_EINVAL, "secret key needed");
    if (sec_check(tenant, name, key, err) < 0)
        return -1;
    sec_autojson cJSON *obj = NULL;
    if (sec_load(s, tenant, name, &obj, err) < 0)
        return -1;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsString(v))
        return bh_err_set(err, BH_ENOTFOUND, "secret %s has no key %s", name, key);
    *value = bh_xstrdup(v->valuestring);
    return 0;
}

int bh_secrets_delete(struct bh_secrets *s, const char *tenant, const char *name, const char *key,
                      struct bh_err *err)
{
    if (sec_check(tenant, name, key, err) < 0)
        return -1;
    sec_locked(s);
    bh_autofree char *path = sec_path(s, tenant, name);
    sec_autojson cJSON *obj = NULL;
    if (sec_load(s, tenant, name, &obj, err) < 0)
        return -1;
    if (key && !cJSON_GetObjectItemCaseSensitive(obj, key))
        return bh_err_set(err, BH_ENOTFOUND, "secret %s has no key %s", name, key);
    if (key)
        sec_json_free(cJSON_DetachItemFromObjectCaseSensitive(obj, key));
    if (key && obj->child)
        return sec_store(s, tenant, name, obj, err);
    if (unlink(path) < 0)
        return bh_err_errno(err, BH_EIO, "delete secret %s", name);
    return 0;
}

/* ---- listing ------------------------------------------------------------------------------- */

static cJSON *sec_list_item(const char *tenant, const char *name, const cJSON *obj)
{
    cJSON *item = cJSON_CreateObject(), *keys = cJSON_CreateArray();
    cJSON_AddStringToObject(item, "name", name);
    if (tenant)
        cJSON_AddStringToObject(item, "tenant", tenant);
    for (const cJSON *it = obj->child; it; it = it->next)
        cJSON_AddItemToArray(keys, cJSON_CreateString(it->string));
    cJSON_AddItemToObject(item, "keys", keys);
    return item;
}

static void sec_closedirp(DIR **d)
{
    if (*d)
        closedir(*d);
}

/* Adds every "<name>.sec" in one dir; other files (e.g. atomic-write temps) are ignored. */
static int sec_list_dir(struct bh_secrets *s, const char *tenant, cJSON *arr, struct bh_err *err)
{
    bh_autofree char *dir = sec_dir_of(s, tenant);
    __attribute__((cleanup(sec_closedirp))) DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : bh_err_errno(err, BH_EIO, "open %s", dir);
    for (struct dirent *de; (de = readdir(d));) {
        size_t len = strlen(de->d_name);
        if (len <= strlen(SEC_EXT) || strcmp(de->d_name + len - strlen(SEC_EXT), SEC_EXT))
            continue;
        bh_autofree char *name = bh_xstrndup(de->d_name, len - strlen(SEC_EXT));
        sec_autojson cJSON *obj = NULL;
        if (!sec_name_valid(name))
            continue;
        if (sec_load(s, tenant, name, &obj, err) < 0)
            return -1;
        cJSON_AddItemToArray(arr, sec_list_item(tenant, name, obj));
    }
    return 0;
}

int bh_secrets_list(struct bh_secrets *s, cJSON **out, struct bh_err *err)
{
    cJSON *arr = cJSON_CreateArray();
    bh_autofree char *tdir = bh_xasprintf("%s/tenants", s->dir);
    __attribute__((cleanup(sec_closedirp))) DIR *d = opendir(tdir);
    int rc = sec_list_dir(s, NULL, arr, err);
    for (struct dirent *de; rc == 0 && d && (de = readdir(d));)
        if (bh_name_tenant_valid(de->d_name) && strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            rc = sec_list_dir(s, de->d_name, arr, err);
    if (rc < 0) {
        cJSON_Delete(arr);
        return -1;
    }
    *out = arr;
    return 0;
}
