#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "fs.h"
#include "image.h"
#include "mem.h"
#include "proc.h"

#define TEST_SHIFT 100000u

/* One busybox OCI layout per test run, built by the project script (umoci). */
static char g_tmp[] = "/tmp/bh-test-image-XXXXXX";
static char *g_layout;

static int setup_all(void **state)
{
    if (!mkdtemp(g_tmp))
        return -1;
    g_layout = bh_xasprintf("%s/busybox", g_tmp);
    const char *argv[] = {BH_SOURCE_DIR "/scripts/build-busybox-image.sh", g_layout, "latest",
                          NULL};
    struct bh_err err;
    if (bh_proc_check(argv, &err) < 0) {
        fprintf(stderr, "build-busybox-image: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static int teardown_all(void **state)
{
    struct bh_err err;
    BH_IGNORE(bh_fs_rmtree(g_tmp, &err)); /* teardown: best effort */
    free(g_layout);
    return 0;
}

/* A fresh dir below the run's temp dir (owned). */
static char *test_dir(const char *name)
{
    char *dir = bh_xasprintf("%s/%s", g_tmp, name);
    struct bh_err err;
    BH_IGNORE(bh_fs_rmtree(dir, &err)); /* teardown: best effort */
    assert_int_equal(bh_fs_mkdirp(dir, 0755, &err), 0);
    return dir;
}

static struct bh_image_store *test_store(const char *name)
{
    bh_autofree char *dir = test_dir(name);
    struct bh_image_store *st = NULL;
    struct bh_err err;
    if (bh_image_store_open(dir, TEST_SHIFT, NULL, &st, &err) < 0)
        fail_msg("store open: %s", err.msg);
    return st;
}

/* The layout's manifest (owned): index.json's first entry. */
static cJSON *layout_json(const char *layout, const char *digest)
{
    bh_autofree char *path = digest ? bh_xasprintf("%s/blobs/sha256/%s", layout, digest + 7)
                                    : bh_xasprintf("%s/index.json", layout);
    bh_autofree char *text = NULL;
    struct bh_err err;
    assert_int_equal(bh_fs_read_all(path, 1 << 20, &text, NULL, &err), 0);
    return cJSON_Parse(text);
}

static cJSON *layout_manifest(const char *layout)
{
    cJSON *index = layout_json(layout, NULL);
    const cJSON *d = cJSON_GetArrayItem(cJSON_GetObjectItem(index, "manifests"), 0);
    cJSON *m = layout_json(layout, cJSON_GetObjectItem(d, "digest")->valuestring);
    cJSON_Delete(index);
    return m;
}

static const char *manifest_digest(const cJSON *m, const char *key, int layer)
{
    const cJSON *d = layer < 0 ? cJSON_GetObjectItem(m, key)
                               : cJSON_GetArrayItem(cJSON_GetObjectItem(m, key), layer);
    return cJSON_GetObjectItem(d, "digest")->valuestring;
}

static void assert_busybox(struct bh_image_store *st, const char *ref)
{
    struct bh_image *img = NULL;
    struct bh_err err;
    if (bh_image_resolve(st, ref, &img, &err) < 0)
        fail_msg("resolve %s: %s", ref, err.msg);
    assert_int_equal(img->n_layers, 1);
    bh_autofree char *bin = bh_xasprintf("%s/bin/busybox", img->layer_dirs[0]);
    struct stat sb;
    assert_int_equal(stat(bin, &sb), 0);
    assert_int_equal(sb.st_uid, TEST_SHIFT);
    assert_int_equal(sb.st_gid, TEST_SHIFT);
    assert_true(cJSON_IsArray(cJSON_GetObjectItem(img->config, "Cmd")));
    bh_image_free(img);
}

/* Entries in a directory, "." and ".." aside. */
static int dir_count(const char *path)
{
    DIR *d = opendir(path);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* ---- tar building -------------------------------------------------------------------- */

struct tar_ent {
    const char *path;
    mode_t type;      /* AE_IFREG, AE_IFDIR, AE_IFLNK, AE_IFCHR */
    const char *data; /* file content, or symlink / hardlink target */
    int hardlink;
};

static void tar_write(const char *path, const struct tar_ent *ents, size_t n)
{
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
    for (size_t i = 0; i < n; i++) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, ents[i].path);
        archive_entry_set_filetype(e, ents[i].type);
        archive_entry_set_perm(e, ents[i].type == AE_IFDIR ? 0755 : 0644);
        size_t len = ents[i].type == AE_IFREG && ents[i].data && !ents[i].hardlink
                         ? strlen(ents[i].data)
                         : 0;
        archive_entry_set_size(e, (la_int64_t)len);
        if (ents[i].type == AE_IFLNK)
            archive_entry_set_symlink(e, ents[i].data);
        if (ents[i].hardlink)
            archive_entry_set_hardlink(e, ents[i].data);
        assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
        if (len)
            assert_int_equal(archive_write_data(a, ents[i].data, len), (la_ssize_t)len);
        archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
}

/* Adds a file from disk to a tar under name. */
static void tar_add_file(struct archive *a, const char *name, const char *src)
{
    bh_autofree char *data = NULL;
    size_t len = 0;
    struct bh_err err;
    assert_int_equal(bh_fs_read_all(src, 64 << 20, &data, &len, &err), 0);
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, (la_int64_t)len);
    assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
    assert_int_equal(archive_write_data(a, data, len), (la_ssize_t)len);
    archive_entry_free(e);
}

static void tar_add_text(struct archive *a, const char *dir, const char *name, const char *text)
{
    bh_autofree char *path = bh_xasprintf("%s/%s", dir, name);
    struct bh_err err;
    assert_int_equal(bh_fs_write_atomic(path, text, strlen(text), 0644, &err), 0);
    tar_add_file(a, name, path);
}

/* ---- tests ---------------------------------------------------------------------------- */

static void test_ref_normalize(void **state)
{
    static const struct {
        const char *in, *want;
    } ok[] = {
        {"busybox", "docker.io/library/busybox:latest"},
        {"busybox:1.36", "docker.io/library/busybox:1.36"},
        {"alice/app:v2", "docker.io/alice/app:v2"},
        {"index.docker.io/library/busybox", "docker.io/library/busybox:latest"},
        {"ghcr.io/org/app", "ghcr.io/org/app:latest"},
        {"localhost/app:x", "localhost/app:x"},
        {"127.0.0.1:5000/test/busybox:1", "127.0.0.1:5000/test/busybox:1"},
        {"busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
         "docker.io/library/busybox@sha256:"
         "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
    };
    for (size_t i = 0; i < BH_ARRAY_LEN(ok); i++) {
        bh_autofree char *out = NULL;
        struct bh_err err;
        if (bh_image_ref_normalize(ok[i].in, &out, &err) < 0)
            fail_msg("%s: %s", ok[i].in, err.msg);
        assert_string_equal(out, ok[i].want);
    }
    const char *bad[] = {"",     "Busybox",    "a/../b",           "busybox:", "x@sha256:12",
                         "a//b", "busybox:-x", "host:5000/../etc", "/abs"};
    for (size_t i = 0; i < BH_ARRAY_LEN(bad); i++) {
        char *out = NULL;
        struct bh_err err;
        assert_int_equal(bh_image_ref_normalize(bad[i], &out, &err), -1);
        assert_int_equal(err.code, BH_EINVAL);
        assert_null(out);
    }
}

static void test_import_layout_and_resolve(void **state)
{
    struct bh_image_store *st = test_store("store-layout");
    bh_autofree char *ref = NULL;
    struct bh_err err;
    if (bh_image_import(st, g_layout, NULL, &ref, &err) < 0)
        fail_msg("import: %s", err.msg);
    /* The layout only says "latest"; the name comes from the directory. */
    assert_string_equal(ref, "docker.io/library/busybox:latest");
    assert_busybox(st, "busybox");
    bh_autofree char *ref2 = NULL;
    assert_int_equal(bh_image_import(st, g_layout, "example.com/team/bb:7", &ref2, &err), 0);
    assert_string_equal(ref2, "example.com/team/bb:7");
    assert_busybox(st, "example.com/team/bb:7"); /* imported names never reach a registry */
    cJSON *refs = NULL;
    assert_int_equal(bh_image_list(st, &refs, &err), 0);
    assert_int_equal(cJSON_GetArraySize(refs), 2);
    cJSON_Delete(refs);
    bh_image_store_close(st);
}

struct resolve_job {
    struct bh_image_store *st;
    int rc;
    char dir[4096];
};

static void *resolve_thread(void *arg)
{
    struct resolve_job *j = arg;
    struct bh_image *img = NULL;
    struct bh_err err;
    j->rc = bh_image_resolve(j->st, "conc:1", &img, &err);
    if (j->rc == 0) {
        snprintf(j->dir, sizeof(j->dir), "%s", img->layer_dirs[0]);
        bh_image_free(img);
    }
    return NULL;
}

/* Resolves racing to unpack the same layer all get the one complete layer dir. */
static void test_concurrent_resolve(void **state)
{
    struct bh_image_store *st = test_store("store-conc");
    struct bh_err err;
    assert_int_equal(bh_image_import(st, g_layout, "conc:1", NULL, &err), 0);
    struct resolve_job jobs[4] = {{0}};
    pthread_t tids[4];
    for (size_t i = 0; i < BH_ARRAY_LEN(jobs); i++) {
        jobs[i].st = st;
        assert_int_equal(pthread_create(&tids[i], NULL, resolve_thread, &jobs[i]), 0);
    }
    for (size_t i = 0; i < BH_ARRAY_LEN(jobs); i++) {
        pthread_join(tids[i], NULL);
        assert_int_equal(jobs[i].rc, 0);
        assert_string_equal(jobs[i].dir, jobs[0].dir);
    }
    bh_autofree char *layers = bh_xasprintf("%s/store-conc/layers/%u", g_tmp, TEST_SHIFT);
    assert_int_equal(dir_count(layers), 1); /* no leftover .tmp-* dirs either */
    bh_image_store_close(st);
}

static void test_digest_mismatch_refused(void **state)
{
    bh_autofree char *copy = bh_xasprintf("%s/corrupt", g_tmp);
    const char *cp[] = {"cp", "-a", g_layout, copy, NULL};
    struct bh_err err;
    assert_int_equal(bh_proc_check(cp, &err), 0);
    cJSON *m = layout_manifest(copy);
    const char *layer = manifest_digest(m, "layers", 0);
    bh_autofree char *blob = bh_xasprintf("%s/blobs/sha256/%s", copy, layer + 7);
    FILE *f = fopen(blob, "ab");
    assert_non_null(f);
    fputs("tampered", f);
    fclose(f);

    struct bh_image_store *st = test_store("store-corrupt");
    char *ref = NULL;
    assert_int_equal(bh_image_import(st, copy, "bad:1", &ref, &err), -1);
    assert_non_null(strstr(err.msg, layer));
    assert_null(ref);
    /* Nothing half-imported: the ref is absent and the bad layer never became a blob. */
    bh_autofree char *stored = bh_xasprintf("%s/store-corrupt/blobs/sha256/%s", g_tmp, layer + 7);
    assert_false(bh_fs_exists(stored));
    cJSON *refs = NULL;
    assert_int_equal(bh_image_list(st, &refs, &err), 0);
    assert_int_equal(cJSON_GetArraySize(refs), 0);
    cJSON_Delete(refs);
    cJSON_Delete(m);
    bh_image_store_close(st);
}

/* Unpacking each hostile tar fails and leaves nothing outside dest. */
static void test_layer_no_escape(void **state)
{
    bh_autofree char *outside = test_dir("outside");
    bh_autofree char *abs_target = bh_xasprintf("%s/abs", outside);
    const struct tar_ent dotdot[] = {{"a", AE_IFDIR, NULL, 0},
                                     {"a/../../escape", AE_IFREG, "x", 0}};
    const struct tar_ent absolute[] = {{abs_target, AE_IFREG, "x", 0}};
    const struct tar_ent via_link[] = {{"link", AE_IFLNK, outside, 0},
                                       {"link/pwned", AE_IFREG, "x", 0}};
    const struct tar_ent hardlink[] = {{"h", AE_IFREG, "../escape", 1}};
    const struct {
        const struct tar_ent *ents;
        size_t n;
    } cases[] = {{dotdot, 2}, {absolute, 1}, {via_link, 2}, {hardlink, 1}};
    for (size_t i = 0; i < BH_ARRAY_LEN(cases); i++) {
        bh_autofree char *tar = bh_xasprintf("%s/evil-%zu.tar", g_tmp, i);
        tar_write(tar, cases[i].ents, cases[i].n);
        bh_autofree char *dest = test_dir("evil-dest");
        struct bh_err err;
        assert_int_equal(bh_image_layer_unpack(tar, dest, TEST_SHIFT, &err), -1);
        assert_int_equal(err.code, BH_EINVAL);
        bh_autofree char *esc = bh_xasprintf("%s/escape", g_tmp);
        bh_autofree char *pwned = bh_xasprintf("%s/pwned", outside);
        assert_false(bh_fs_exists(esc));
        assert_false(bh_fs_exists(abs_target));
        assert_false(bh_fs_exists(pwned));
    }
}

static void test_layer_whiteouts(void **state)
{
    const struct tar_ent ents[] = {
        {"./", AE_IFDIR, NULL, 0},
        {"d", AE_IFDIR, NULL, 0},
        {"d/.wh.gone", AE_IFREG, "", 0},
        {"o", AE_IFDIR, NULL, 0},
        {"o/.wh..wh..opq", AE_IFREG, "", 0},
        {"new/deep/.wh.x", AE_IFREG, "", 0},
        {"dev/null", AE_IFCHR, NULL, 0},
        {"file", AE_IFREG, "hello", 0},
        {"same", AE_IFREG, "file", 1},
        {"abs-link", AE_IFLNK, "/etc/passwd",
         0}, /* pointing outside is fine; writing through not */
    };
    bh_autofree char *tar = bh_xasprintf("%s/wh.tar", g_tmp);
    tar_write(tar, ents, BH_ARRAY_LEN(ents));
    bh_autofree char *dest = test_dir("wh-dest");
    struct bh_err err;
    if (bh_image_layer_unpack(tar, dest, TEST_SHIFT, &err) < 0)
        fail_msg("unpack: %s", err.msg);
    struct stat sb;
    bh_autofree char *gone = bh_xasprintf("%s/d/gone", dest);
    assert_int_equal(lstat(gone, &sb), 0);
    assert_true(S_ISCHR(sb.st_mode));
    assert_int_equal(sb.st_rdev, makedev(0, 0));
    assert_int_equal(sb.st_uid, TEST_SHIFT);
    bh_autofree char *wh = bh_xasprintf("%s/d/.wh.gone", dest);
    assert_false(bh_fs_exists(wh));
    bh_autofree char *deep = bh_xasprintf("%s/new/deep/x", dest);
    assert_int_equal(lstat(deep, &sb), 0);
    assert_true(S_ISCHR(sb.st_mode));
    bh_autofree char *opq = bh_xasprintf("%s/o", dest);
    char val[4] = {0};
    assert_int_equal(getxattr(opq, "trusted.overlay.opaque", val, sizeof(val)), 1);
    assert_string_equal(val, "y");
    bh_autofree char *dev = bh_xasprintf("%s/dev/null", dest);
    assert_false(bh_fs_exists(dev));
    bh_autofree char *file = bh_xasprintf("%s/file", dest), *same = bh_xasprintf("%s/same", dest);
    struct stat sf, ss;
    assert_int_equal(stat(file, &sf), 0);
    assert_int_equal(stat(same, &ss), 0);
    assert_int_equal(sf.st_ino, ss.st_ino);
    assert_int_equal(sf.st_uid, TEST_SHIFT);
}

static void test_docker_archive_import(void **state)
{
    cJSON *m = layout_manifest(g_layout);
    const char *cfg = manifest_digest(m, "config", -1), *layer = manifest_digest(m, "layers", 0);
    bh_autofree char *work = test_dir("docker-work");
    bh_autofree char *tar = bh_xasprintf("%s/saved.tar", work);
    bh_autofree char *cfg_src = bh_xasprintf("%s/blobs/sha256/%s", g_layout, cfg + 7);
    bh_autofree char *layer_src = bh_xasprintf("%s/blobs/sha256/%s", g_layout, layer + 7);
    bh_autofree char *cfg_name = bh_xasprintf("%s.json", cfg + 7);
    bh_autofree char *layer_name = bh_xasprintf("%s/layer.tar", layer + 7);
    bh_autofree char *manifest =
        bh_xasprintf("[{\"Config\":\"%s\",\"RepoTags\":[\"dock/bb:2\"],\"Layers\":[\"%s\"]}]",
                     cfg_name, layer_name);
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    assert_int_equal(archive_write_open_filename(a, tar), ARCHIVE_OK);
    tar_add_text(a, work, "manifest.json", manifest);
    tar_add_file(a, cfg_name, cfg_src);
    tar_add_file(a, layer_name, layer_src);
    archive_write_close(a);
    archive_write_free(a);
    cJSON_Delete(m);

    struct bh_image_store *st = test_store("store-docker");
    bh_autofree char *ref = NULL;
    struct bh_err err;
    if (bh_image_import(st, tar, NULL, &ref, &err) < 0)
        fail_msg("import: %s", err.msg);
    assert_string_equal(ref, "docker.io/dock/bb:2");
    assert_busybox(st, "dock/bb:2");
    bh_image_store_close(st);
}

static void test_oci_archive_import(void **state)
{
    bh_autofree char *tar = bh_xasprintf("%s/layout.tar", g_tmp);
    const char *argv[] = {"tar", "-C", g_layout, "-cf", tar, ".", NULL};
    struct bh_err err;
    assert_int_equal(bh_proc_check(argv, &err), 0);
    struct bh_image_store *st = test_store("store-ociarch");
    bh_autofree char *ref = NULL;
    if (bh_image_import(st, tar, "oci/arch:3", &ref, &err) < 0)
        fail_msg("import: %s", err.msg);
    assert_string_equal(ref, "docker.io/oci/arch:3");
    assert_busybox(st, "oci/arch:3");
    bh_autofree char *tmp = bh_xasprintf("%s/store-ociarch/tmp", g_tmp);
    assert_int_equal(dir_count(tmp), 0); /* the extracted archive is gone */
    bh_image_store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ref_normalize),
        cmocka_unit_test(test_import_layout_and_resolve),
        cmocka_unit_test(test_concurrent_resolve),
        cmocka_unit_test(test_digest_mismatch_refused),
        cmocka_unit_test(test_layer_no_escape),
        cmocka_unit_test(test_layer_whiteouts),
        cmocka_unit_test(test_docker_archive_import),
        cmocka_unit_test(test_oci_archive_import),
    };
    return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
