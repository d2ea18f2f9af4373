#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "agent.h"
#include "crypto.h"
#include "fs.h"
#include "mem.h"
#include "snapshot.h"

#define BASE 1000000000u
#define BIG (5u << 20)

struct fx {
    char dir[64];
    char *src, *dst, *snap, *victim;
};

static char *dirs_ws[] = {"/workspace", "/home/claude", NULL};

static void put(const char *path, const char *data, size_t len, mode_t mode, uid_t uid)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    assert_int_equal(fchown(fd, uid, uid), 0);
    close(fd);
}

static void mk(const char *path, mode_t mode, uid_t uid)
{
    assert_int_equal(mkdir(path, mode), 0);
    assert_int_equal(chmod(path, mode), 0);
    assert_int_equal(lchown(path, uid, uid), 0);
}

static char *P(const char *a, const char *b)
{
    return bh_xasprintf("%s/%s", a, b);
}

/* src: workspace/{a.txt 0640, sub/deep.txt, empty/, link -> ../a.txt, big}, home/claude/rc */
static void make_source(const char *root)
{
    uid_t u = BASE + 1000;
    bh_autofree char *ws = P(root, "workspace"), *sub = P(ws, "sub"), *empty = P(ws, "empty");
    bh_autofree char *home = P(root, "home"), *claude = P(home, "claude");
    mk(ws, 0755, u);
    mk(sub, 0700, u);
    mk(empty, 0750, BASE);
    mk(home, 0755, BASE);
    mk(claude, 0700, u);
    bh_autofree char *a = P(ws, "a.txt"), *deep = P(sub, "deep.txt"), *rc = P(claude, "rc");
    put(a, "alpha", 5, 0640, u);
    put(deep, "deep", 4, 0600, BASE + 5);
    put(rc, "export X=1\n", 11, 0644, u);
    bh_autofree char *big = P(ws, "big"), *data = bh_xmalloc(BIG);
    uint64_t x = 88172645463325252ull; /* xorshift: incompressible, spans several chunks */
    for (size_t i = 0; i < BIG; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        data[i] = (char)x;
    }
    put(big, data, BIG, 0644, u);
    bh_autofree char *link = P(ws, "link");
    assert_int_equal(symlink("../a.txt", link), 0);
    assert_int_equal(lchown(link, u, u), 0);
    struct timespec ts[2] = {{1600000000, 123456789}, {1600000000, 123456789}};
    assert_int_equal(utimensat(AT_FDCWD, a, ts, 0), 0);
    assert_int_equal(utimensat(AT_FDCWD, sub, ts, 0), 0);
}

static int setup(void **state)
{
    struct fx *f = bh_xcalloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/bh-test-snap-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->src = P(f->dir, "src");
    f->dst = P(f->dir, "dst");
    f->snap = P(f->dir, "snap");
    f->victim = P(f->dir, "victim");
    mkdir(f->src, 0755);
    mkdir(f->dst, 0755);
    mkdir(f->victim, 0755);
    bh_autofree char *home = P(f->dst, "home");
    mkdir(home, 0755);
    make_source(f->src);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    struct bh_err err;
    assert_int_equal(bh_fs_rmtree(f->dir, &err), 0);
    free(f->src);
    free(f->dst);
    free(f->snap);
    free(f->victim);
    free(f);
    return 0;
}

static struct bh_snapshot_opts opts_for(const char *rootfs, const uint8_t *key)
{
    return (struct bh_snapshot_opts){.rootfs = rootfs,
                                     .dirs = dirs_ws,
                                     .uid_base = BASE,
                                     .uid_size = 65536,
                                     .master_key = key,
                                     .context = "w/t"};
}

static void same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    assert_int_equal(lstat(a, &sa), 0);
    assert_int_equal(lstat(b, &sb), 0);
    assert_int_equal(sa.st_mode, sb.st_mode);
    assert_int_equal(sa.st_uid, sb.st_uid);
    assert_int_equal(sa.st_gid, sb.st_gid);
    assert_int_equal(sa.st_size, sb.st_size);
    if (!S_ISDIR(sa.st_mode))
        assert_int_equal(sa.st_mtim.tv_sec, sb.st_mtim.tv_sec);
    if (!S_ISREG(sa.st_mode))
        return;
    char *da, *db;
    size_t la, lb;
    struct bh_err err;
    assert_int_equal(bh_fs_read_all(a, 64 << 20, &da, &la, &err), 0);
    assert_int_equal(bh_fs_read_all(b, 64 << 20, &db, &lb, &err), 0);
    assert_int_equal(la, lb);
    assert_memory_equal(da, db, la);
    free(da);
    free(db);
}

static void check_tree(struct fx *f)
{
    static const char *paths[] = {
        "workspace",       "workspace/a.txt", "workspace/sub", "workspace/sub/deep.txt",
        "workspace/empty", "workspace/link",  "workspace/big", "home/claude",
        "home/claude/rc"};
    for (size_t i = 0; i < BH_ARRAY_LEN(paths); i++) {
        bh_autofree char *a = P(f->src, paths[i]), *b = P(f->dst, paths[i]);
        same_file(a, b);
    }
    bh_autofree char *a = P(f->dst, "workspace/a.txt"), *link = P(f->dst, "workspace/link");
    struct stat st;
    assert_int_equal(stat(a, &st), 0);
    assert_int_equal(st.st_mtim.tv_nsec, 123456789);
    char target[64] = {0};
    assert_int_equal(readlink(link, target, sizeof(target)), 8);
    assert_string_equal(target, "../a.txt");
}

static int restore(struct fx *f, const uint8_t *key, struct bh_err *err)
{
    char hex[65];
    struct bh_snapshot_opts o = opts_for(f->dst, key);
    assert_int_equal(bh_crypto_sha256_file(f->snap, hex, err), 0);
    return bh_snapshot_restore(&o, f->snap, hex, err);
}

static void roundtrip(struct fx *f, enum bh_snapshot_compression comp, const uint8_t *key)
{
    struct bh_snapshot_opts o = opts_for(f->src, key);
    o.compression = comp;
    struct bh_snapshot_info info;
    struct bh_err err;
    if (bh_snapshot_create(&o, f->snap, &info, &err) < 0)
        fail_msg("create: %s", err.msg);
    assert_int_equal(info.files, 9);
    char hex[65];
    assert_int_equal(bh_crypto_sha256_file(f->snap, hex, &err), 0);
    assert_string_equal(hex, info.digest);
    struct stat st;
    assert_int_equal(stat(f->snap, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal((uint64_t)st.st_size, info.size);
    bh_autofree char *stray = P(f->dst, "workspace");
    mkdir(stray, 0777);
    bh_autofree char *junk = P(stray, "junk");
    put(junk, "x", 1, 0644, 0);
    if (restore(f, key, &err) < 0)
        fail_msg("restore: %s", err.msg);
    check_tree(f);
    assert_false(bh_fs_exists(junk));
}

/* The plain archive stores container ids (host id - base). */
static void check_stored_ids(const char *snap)
{
    struct archive *a = archive_read_new();
    archive_read_support_filter_all(a);
    archive_read_support_format_tar(a);
    assert_int_equal(archive_read_open_filename(a, snap, 65536), ARCHIVE_OK);
    struct archive_entry *e;
    int seen = 0;
    while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
        if (!strcmp(archive_entry_pathname(e), "workspace/a.txt")) {
            assert_int_equal(archive_entry_uid(e), 1000);
            assert_int_equal(archive_entry_gid(e), 1000);
            seen = 1;
        }
        assert_true(archive_entry_uid(e) < 65536);
    }
    archive_read_free(a);
    assert_true(seen);
}

static void test_roundtrip_zstd(void **state)
{
    struct fx *f = *state;
    roundtrip(f, BH_SNAP_ZSTD, NULL);
    check_stored_ids(f->snap);
}

static void test_roundtrip_gzip(void **state)
{
    struct fx *f = *state;
    roundtrip(f, BH_SNAP_GZIP, NULL);
    check_stored_ids(f->snap);
}

static const uint8_t key1[BH_KEY_LEN] = {1, 2, 3}, key2[BH_KEY_LEN] = {9};

static void test_roundtrip_encrypted(void **state)
{
    struct fx *f = *state;
    roundtrip(f, BH_SNAP_ZSTD, key1);
    char *data;
    size_t len;
    struct bh_err err;
    assert_int_equal(bh_fs_read_all(f->snap, 64 << 20, &data, &len, &err), 0);
    assert_memory_equal(data, "BHSNAP1", 8);
    assert_null(memmem(data, len, "workspace/a.txt", 15));
    free(data);
}

/* A refused or finished restore leaves no staging dir next to any overlay dir. */
static void no_staging(struct fx *f)
{
    bh_autofree char *home = P(f->dst, "home");
    const char *parents[] = {f->dst, home};
    for (size_t i = 0; i < BH_ARRAY_LEN(parents); i++) {
        DIR *d = opendir(parents[i]);
        if (!d)
            continue;
        for (struct dirent *de; (de = readdir(d));)
            if (!strncmp(de->d_name, ".bh-restore", 11))
                fail_msg("staging dir left: %s/%s", parents[i], de->d_name);
        closedir(d);
    }
}

/* dst/workspace holds a marker; a refused restore must leave it in place. */
static void marker(struct fx *f, int present)
{
    bh_autofree char *ws = P(f->dst, "workspace"), *m = P(ws, "marker");
    if (present < 0) {
        mkdir(ws, 0755);
        put(m, "m", 1, 0644, 0);
        return;
    }
    assert_int_equal(bh_fs_exists(m), present);
    no_staging(f);
}

static void make_encrypted(struct fx *f)
{
    struct bh_snapshot_opts o = opts_for(f->src, key1);
    struct bh_snapshot_info info;
    struct bh_err err;
    assert_int_equal(bh_snapshot_create(&o, f->snap, &info, &err), 0);
    marker(f, -1);
}

static void test_wrong_key_refused(void **state)
{
    struct fx *f = *state;
    make_encrypted(f);
    struct bh_err err;
    assert_int_equal(restore(f, key2, &err), -1);
    assert_int_equal(err.code, BH_EINVAL);
    assert_non_null(strstr(err.msg, "authentication failed"));
    assert_int_equal(restore(f, NULL, &err), -1);
    marker(f, 1);
}

static void tamper_and_expect_refusal(struct fx *f, off_t at, int truncate_to, int append)
{
    int fd = open(f->snap, O_RDWR);
    assert_true(fd >= 0);
    if (truncate_to)
        assert_int_equal(ftruncate(fd, at), 0);
    else if (append)
        assert_int_equal(pwrite(fd, "x", 1, lseek(fd, 0, SEEK_END)), 1);
    else {
        uint8_t b;
        assert_int_equal(pread(fd, &b, 1, at), 1);
        b ^= 0x40;
        assert_int_equal(pwrite(fd, &b, 1, at), 1);
    }
    close(fd);
    struct bh_err err;
    assert_int_equal(restore(f, key1, &err), -1);
    assert_int_equal(err.code, BH_EINVAL);
    marker(f, 1);
}

static void test_tampering_refused(void **state)
{
    struct fx *f = *state;
    struct stat st;
    /* magic, salt, first length word, first nonce, middle of chunk 2, last byte (tag),
     * truncation at a chunk boundary region, appended garbage */
    off_t spots[] = {0, 10, 24, 30, (1 << 20) + 4000, -1};
    for (size_t i = 0; i < BH_ARRAY_LEN(spots); i++) {
        make_encrypted(f);
        assert_int_equal(stat(f->snap, &st), 0);
        tamper_and_expect_refusal(f, spots[i] < 0 ? st.st_size - 1 : spots[i], 0, 0);
    }
    make_encrypted(f);
    assert_int_equal(stat(f->snap, &st), 0);
    tamper_and_expect_refusal(f, st.st_size - 20, 1, 0);
    make_encrypted(f);
    tamper_and_expect_refusal(f, (1 << 20) + 24 + 32, 1, 0);
    make_encrypted(f);
    tamper_and_expect_refusal(f, 0, 0, 1);
}

static void create_plain(struct fx *f, struct bh_snapshot_info *info)
{
    struct bh_snapshot_opts o = opts_for(f->src, NULL);
    struct bh_err err;
    if (bh_snapshot_create(&o, f->snap, info, &err) < 0)
        fail_msg("create: %s", err.msg);
}

static void test_digest_mismatch(void **state)
{
    struct fx *f = *state;
    struct bh_snapshot_opts o = opts_for(f->src, NULL);
    struct bh_snapshot_info info;
    struct bh_err err;
    create_plain(f, &info);
    marker(f, -1);
    o.rootfs = f->dst;
    info.digest[0] = info.digest[0] == 'a' ? 'b' : 'a';
    assert_int_equal(bh_snapshot_restore(&o, f->snap, info.digest, &err), -1);
    assert_non_null(strstr(err.msg, "digest mismatch"));
    marker(f, 1);
}

struct hentry {
    const char *path;
    mode_t type;
    const char *link;
    int64_t uid;
};

static void build_hostile(const char *path, const struct hentry *es, size_t n)
{
    struct archive *a = archive_write_new();
    archive_write_add_filter_zstd(a);
    archive_write_set_format_pax_restricted(a);
    assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
    for (size_t i = 0; i < n; i++) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, es[i].path);
        archive_entry_set_filetype(e, es[i].type);
        archive_entry_set_perm(e, 0755);
        archive_entry_set_uid(e, es[i].uid);
        archive_entry_set_gid(e, 0);
        if (es[i].link)
            archive_entry_set_symlink(e, es[i].link);
        if (es[i].type == AE_IFCHR)
            archive_entry_set_rdev(e, makedev(1, 3));
        archive_entry_set_size(e, es[i].type == AE_IFREG ? 4 : 0);
        assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
        if (es[i].type == AE_IFREG)
            archive_write_data(a, "evil", 4);
        archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
}

static void test_hostile_archives(void **state)
{
    struct fx *f = *state;
    bh_autofree char *vx = P(f->victim, "x"), *l2 = bh_xasprintf("%s/x", f->victim + 1);
    bh_autofree char *escape = bh_xasprintf("workspace/l/%s", l2);
    const struct hentry ws = {"workspace", AE_IFDIR, NULL, 0};
    const struct hentry cases[][2] = {
        {ws, {"../x", AE_IFREG, NULL, 0}},
        {ws, {"/etc/x", AE_IFREG, NULL, 0}},
        {ws, {"workspace/../../x", AE_IFREG, NULL, 0}},
        {{"workspace/l", AE_IFLNK, "/", 0}, {escape, AE_IFREG, NULL, 0}},
        {{"workspace/l", AE_IFLNK, ".", 0}, {"workspace/l/x", AE_IFREG, NULL, 0}},
        {ws, {"workspace", AE_IFREG, NULL, 0}},
        {ws, {"workspace/x/y", AE_IFREG, NULL, 0}},
        {ws, {"etc/x", AE_IFREG, NULL, 0}},
        {ws, {"workspacex/x", AE_IFREG, NULL, 0}},
        {ws, {"workspace/null", AE_IFCHR, NULL, 0}},
        {ws, {"workspace/fifo", AE_IFIFO, NULL, 0}},
        {ws, {"workspace/x", AE_IFREG, NULL, 65536}},
    };
    for (size_t i = 0; i < BH_ARRAY_LEN(cases); i++) {
        marker(f, -1);
        build_hostile(f->snap, cases[i], 2);
        struct bh_err err;
        assert_int_equal(restore(f, NULL, &err), -1);
        assert_false(bh_fs_exists(vx));
        bh_autofree char *abs_etc = P(f->dst, "etc");
        assert_false(bh_fs_exists(abs_etc));
        marker(f, 1); /* extraction went to a staging dir, never swapped in */
    }
}

static void test_overlay_symlink_not_followed(void **state)
{
    struct fx *f = *state;
    bh_autofree char *ws = P(f->src, "workspace"), *moved = P(f->src, "ws-real");
    bh_autofree char *secret = P(f->victim, "secret");
    put(secret, "s", 1, 0600, 0);
    assert_int_equal(rename(ws, moved), 0);
    assert_int_equal(symlink(f->victim, ws), 0);
    struct bh_snapshot_opts o = opts_for(f->src, NULL);
    struct bh_snapshot_info info;
    struct bh_err err;
    assert_int_equal(bh_snapshot_create(&o, f->snap, &info, &err), -1);
    assert_non_null(strstr(err.msg, "symlink"));
    /* restore into a rootfs whose /workspace points at the victim: refused, victim intact */
    assert_int_equal(unlink(ws), 0);
    assert_int_equal(rename(moved, ws), 0);
    assert_int_equal(bh_snapshot_create(&o, f->snap, &info, &err), 0);
    bh_autofree char *dws = P(f->dst, "workspace");
    if (symlink(f->victim, dws) < 0)
        fail_msg("symlink %s: %m", dws);
    /* the symlink itself is replaced by the archived dir; nothing lands in the victim */
    assert_int_equal(restore(f, NULL, &err), 0);
    assert_true(bh_fs_exists(secret));
    bh_autofree char *leak = P(f->victim, "a.txt");
    assert_false(bh_fs_exists(leak));
    struct stat st;
    assert_int_equal(lstat(dws, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    /* a symlink above an overlay dir is refused outright */
    bh_autofree char *home = P(f->dst, "home");
    assert_int_equal(bh_fs_rmtree(home, &err), 0);
    assert_int_equal(symlink(f->victim, home), 0);
    assert_int_equal(restore(f, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "symlink"));
    bh_autofree char *vclaude = P(f->victim, "claude");
    assert_false(bh_fs_exists(vclaude));
}

/* Symlinks already in the live overlay dir are not written through: the dir is replaced. */
static void test_live_symlinks_replaced(void **state)
{
    struct fx *f = *state;
    struct bh_snapshot_info info;
    struct bh_err err;
    create_plain(f, &info);
    bh_autofree char *ws = P(f->dst, "workspace"), *sub = P(ws, "sub"), *a = P(ws, "a.txt");
    mkdir(ws, 0755);
    assert_int_equal(symlink(f->victim, sub), 0);
    bh_autofree char *secret = P(f->victim, "secret");
    put(secret, "s", 1, 0600, 0);
    assert_int_equal(symlink(secret, a), 0);
    if (restore(f, NULL, &err) < 0)
        fail_msg("restore: %s", err.msg);
    check_tree(f);
    bh_autofree char *leak = P(f->victim, "deep.txt");
    assert_false(bh_fs_exists(leak));
    char *data;
    size_t len;
    assert_int_equal(bh_fs_read_all(secret, 16, &data, &len, &err), 0);
    assert_int_equal(len, 1);
    free(data);
    no_staging(f);
}

/* A later duplicate replaces an earlier file (as tar does) but never a directory. */
static void test_duplicate_entries(void **state)
{
    struct fx *f = *state;
    const struct hentry ws = {"workspace", AE_IFDIR, NULL, 0};
    const struct hentry file_twice[] = {
        ws, {"workspace/x", AE_IFREG, NULL, 0}, {"workspace/x", AE_IFLNK, "t", 0}};
    build_hostile(f->snap, file_twice, 3);
    struct bh_err err;
    if (restore(f, NULL, &err) < 0)
        fail_msg("restore: %s", err.msg);
    bh_autofree char *x = P(f->dst, "workspace/x");
    struct stat st;
    assert_int_equal(lstat(x, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    const struct hentry dir_then_file[] = {
        ws, {"workspace/d", AE_IFDIR, NULL, 0}, {"workspace/d", AE_IFREG, NULL, 0}};
    marker(f, -1);
    build_hostile(f->snap, dir_then_file, 3);
    assert_int_equal(restore(f, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "replaces a directory"));
    marker(f, 1);
}

static void test_absent_dir_removed(void **state)
{
    struct fx *f = *state;
    bh_autofree char *claude = P(f->src, "home/claude");
    struct bh_err err;
    assert_int_equal(bh_fs_rmtree(claude, &err), 0);
    struct bh_snapshot_opts o = opts_for(f->src, NULL);
    struct bh_snapshot_info info;
    assert_int_equal(bh_snapshot_create(&o, f->snap, &info, &err), 0);
    bh_autofree char *dclaude = P(f->dst, "home/claude");
    mkdir(dclaude, 0755);
    assert_int_equal(restore(f, NULL, &err), 0);
    assert_false(bh_fs_exists(dclaude));
}

static void test_roundtrip_lz4(void **state)
{
    struct fx *f = *state;
    roundtrip(f, BH_SNAP_LZ4, NULL);
    check_stored_ids(f->snap);
}

/* ---- image snapshots (image-v1) ---- */

/* A sparse 64 MiB "image": data at 0, a zero block (written, not a hole) at 1 MiB, data at
 * 8 MiB + 100 (unaligned) and a last partial block at the end. */
static void make_image(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 64 << 20), 0);
    char buf[12288];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (char)(i * 7 + 1);
    char zero[4096] = {0};
    assert_int_equal(pwrite(fd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
    assert_int_equal(pwrite(fd, zero, sizeof(zero), 1 << 20), (ssize_t)sizeof(zero));
    assert_int_equal(pwrite(fd, buf, 5000, (8 << 20) + 100), 5000);
    assert_int_equal(pwrite(fd, buf, 10, (64 << 20) - 10), 10);
    close(fd);
}

static void same_bytes(const char *a, const char *b)
{
    bh_autofree char *x = NULL, *y = NULL;
    size_t nx, ny;
    struct bh_err err;
    assert_int_equal(bh_fs_read_all(a, 128 << 20, &x, &nx, &err), 0);
    assert_int_equal(bh_fs_read_all(b, 128 << 20, &y, &ny, &err), 0);
    assert_int_equal(nx, ny);
    assert_memory_equal(x, y, nx);
}

static void image_roundtrip(struct fx *f, enum bh_snapshot_compression comp, const uint8_t *key)
{
    bh_autofree char *img = P(f->dir, "disk.img"), *out = P(f->dir, "restored.img");
    make_image(img);
    struct bh_snapshot_image_opts o = {
        .image = img, .compression = comp, .master_key = key, .context = "notes/ana"};
    struct bh_snapshot_info info;
    struct bh_err err;
    assert_int_equal(bh_snapshot_image_create(&o, f->snap, &info, &err), 0);
    assert_true(info.size < (1u << 20)); /* holes and zero blocks are not stored */
    o.image = out;
    assert_int_equal(bh_snapshot_image_restore(&o, f->snap, info.digest, &err), 0);
    same_bytes(img, out);
    struct stat st;
    assert_int_equal(stat(out, &st), 0);
    assert_true(st.st_blocks * 512 < (1 << 20)); /* restored sparse */
    /* The target must not exist: a restore never writes over an image. */
    assert_int_equal(bh_snapshot_image_restore(&o, f->snap, info.digest, &err), -1);
}

static void test_image_roundtrip(void **state)
{
    struct fx *f = *state;
    image_roundtrip(f, BH_SNAP_ZSTD, NULL);
}

static void test_image_roundtrip_lz4_encrypted(void **state)
{
    struct fx *f = *state;
    image_roundtrip(f, BH_SNAP_LZ4, key1);
}

/* An image of thousands of records: 3,000 scattered blocks (apart, each its own record), three
 * 3 MiB runs (1 MiB records) and odd small writes, so the restore's writer takes many batches,
 * handed over both for their record count and for their bytes. */
static void make_image_many(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 96 << 20), 0);
    bh_autofree uint8_t *buf = bh_xmalloc(3 << 20);
    uint32_t x = 12345;
    for (size_t i = 0; i < (3u << 20); i++)
        buf[i] = (uint8_t)((x = x * 1103515245 + 12345) >> 16) | 1; /* never a zero block */
    for (int i = 0; i < 3000; i++) /* every other block of the first 24 MiB */
        assert_int_equal(pwrite(fd, buf + (i % 700) * 4096, 4096, (off_t)i * 8192), 4096);
    for (int i = 0; i < 3; i++)
        assert_int_equal(pwrite(fd, buf, 3 << 20, (off_t)(32 + 20 * i) << 20), 3 << 20);
    for (int i = 0; i < 50; i++)
        assert_int_equal(pwrite(fd, buf + i, 7 + i, ((off_t)90 << 20) + i * 9000 + 3), 7 + i);
    close(fd);
}

static void test_image_many_records(void **state)
{
    struct fx *f = *state;
    bh_autofree char *img = P(f->dir, "disk.img"), *out = P(f->dir, "restored.img");
    make_image_many(img);
    struct bh_snapshot_image_opts o = {.image = img, .compression = BH_SNAP_ZSTD};
    struct bh_snapshot_info info;
    struct bh_err err;
    assert_int_equal(bh_snapshot_image_create(&o, f->snap, &info, &err), 0);
    o.image = out;
    if (bh_snapshot_image_restore(&o, f->snap, info.digest, &err) < 0)
        fail_msg("restore: %s", err.msg);
    same_bytes(img, out);
}

/* A restore that cannot write (a full filesystem) fails naming the write, leaves no image
 * behind, and its writer thread does not hang the reader. */
static void test_image_restore_write_fails(void **state)
{
    struct fx *f = *state;
    bh_autofree char *img = P(f->dir, "disk.img"), *small = P(f->dir, "small");
    bh_autofree char *out = P(small, "restored.img");
    make_image_many(img);
    struct bh_snapshot_image_opts o = {.image = img};
    struct bh_snapshot_info info;
    struct bh_err err;
    assert_int_equal(bh_snapshot_image_create(&o, f->snap, &info, &err), 0);
    assert_int_equal(mkdir(small, 0700), 0);
    assert_int_equal(mount("tmpfs", small, "tmpfs", 0, "size=4m"), 0);
    o.image = out;
    int rc = bh_snapshot_image_restore(&o, f->snap, info.digest, &err);
    int exists = bh_fs_exists(out);
    bh_autofree char *part = bh_xasprintf("%s.part", out);
    int part_exists = bh_fs_exists(part);
    assert_int_equal(umount2(small, MNT_DETACH), 0);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err.msg, "write at"));
    assert_false(exists);
    assert_false(part_exists);
}

static void flip_byte(const char *path, off_t at)
{
    int fd = open(path, O_RDWR);
    uint8_t c;
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &c, 1, at), 1);
    c ^= 0x5a;
    assert_int_equal(pwrite(fd, &c, 1, at), 1);
    close(fd);
}

/* The restore of o from snap fails (naming want, when given) and leaves neither the image nor
 * its .part file: nothing that could be mounted. */
static void image_refused(const struct bh_snapshot_image_opts *o, const char *snap,
                          const char *digest, const char *want)
{
    struct bh_err err;
    assert_int_equal(bh_snapshot_image_restore(o, snap, digest, &err), -1);
    if (want && !strstr(err.msg, want))
        fail_msg("expected \"%s\", got: %s", want, err.msg);
    bh_autofree char *part = bh_xasprintf("%s.part", o->image);
    assert_false(bh_fs_exists(o->image));
    assert_false(bh_fs_exists(part));
}

static void sha_of(const char *path, char hex[65])
{
    struct bh_err err;
    assert_int_equal(bh_crypto_sha256_file(path, hex, &err), 0);
}

static const enum bh_snapshot_compression all_comps[] = {BH_SNAP_ZSTD, BH_SNAP_LZ4, BH_SNAP_GZIP};

/* The digest is checked beside the decoding, not before it: a stored object with one byte
 * changed (in the middle, or its last byte) is still refused by it, whatever the decoder made
 * of the bytes meanwhile, and no image is left. For each compression. */
static void test_image_tampered(void **state)
{
    struct fx *f = *state;
    bh_autofree char *img = P(f->dir, "disk.img"), *out = P(f->dir, "restored.img");
    make_image_many(img);
    for (size_t c = 0; c < sizeof(all_comps) / sizeof(*all_comps); c++)
        for (int last = 0; last < 2; last++) {
            struct bh_snapshot_image_opts o = {.image = img, .compression = all_comps[c]};
            struct bh_snapshot_info info;
            struct bh_err err;
            assert_int_equal(bh_snapshot_image_create(&o, f->snap, &info, &err), 0);
            flip_byte(f->snap, last ? (off_t)info.size - 1 : (off_t)info.size / 2);
            o.image = out;
            image_refused(&o, f->snap, info.digest, "digest mismatch");
        }
}

/* What the decoders see before the digest is known, with the digest made to match: a stream
 * cut short or with a byte after it is refused by the decoding itself; bytes changed anywhere
 * are either refused (nothing left) or decode into some image (the record checks keep every
 * write inside it). Run under ASan, this is the decoders' bad-input test. */
static void test_image_decoder_bad_input(void **state)
{
    struct fx *f = *state;
    bh_autofree char *img = P(f->dir, "disk.img"), *out = P(f->dir, "restored.img");
    bh_autofree char *copy = P(f->dir, "copy");
    make_image(img);
    for (size_t c = 0; c < sizeof(all_comps) / sizeof(*all_comps); c++) {
        struct bh_snapshot_image_opts o = {.image = img, .compression = all_comps[c]};
        struct bh_snapshot_info info;
        struct bh_err err;
        char hex[65];
        assert_int_equal(bh_snapshot_image_create(&o, f->snap, &info, &err), 0);
        o.image = out;
        bh_autofree char *bytes = NULL;
        size_t n;
        assert_int_equal(bh_fs_read_all(f->snap, 1 << 20, &bytes, &n, &err), 0);
        for (size_t at = 0; at < n; at += 1 + n / 40) {
            bytes[at] ^= 0x5a;
            assert_int_equal(bh_fs_write_replace(copy, bytes, n, 0600, &err), 0);
            bytes[at] ^= 0x5a;
            sha_of(copy, hex);
            if (bh_snapshot_image_restore(&o, copy, hex, &err) == 0)
                assert_int_equal(unlink(out), 0);
            else
                image_refused(&o, copy, hex, NULL);
        }
        assert_int_equal(truncate(f->snap, (off_t)info.size - 1), 0);
        sha_of(f->snap, hex);
        image_refused(&o, f->snap, hex, "snapshot image");
        if (all_comps[c] == BH_SNAP_GZIP)
            continue; /* libarchive's gzip reader stops at the end of the member */
        assert_int_equal(truncate(f->snap, (off_t)info.size + 1), 0);
        sha_of(f->snap, hex);
        image_refused(&o, f->snap, hex, "snapshot image");
    }
}

/* Refused, and no image left behind: a wrong digest, a wrong key, tampering, truncation. */
static void test_image_refusals(void **state)
{
    struct fx *f = *state;
    bh_autofree char *img = P(f->dir, "disk.img"), *out = P(f->dir, "restored.img");
    make_image(img);
    struct bh_snapshot_image_opts o = {.image = img, .master_key = key1, .context = "notes/ana"};
    struct bh_snapshot_info info;
    struct bh_err err;
    assert_int_equal(bh_snapshot_image_create(&o, f->snap, &info, &err), 0);
    o.image = out;
    char zeros[65];
    memset(zeros, '0', 64);
    zeros[64] = 0;
    assert_int_equal(bh_snapshot_image_restore(&o, f->snap, zeros, &err), -1);
    assert_string_equal(strstr(err.msg, "digest mismatch") ? "ok" : err.msg, "ok");
    o.master_key = key2;
    assert_int_equal(bh_snapshot_image_restore(&o, f->snap, info.digest, &err), -1);
    assert_false(bh_fs_exists(out));
    o.master_key = key1;
    o.context = "notes/bob"; /* another owner's key */
    assert_int_equal(bh_snapshot_image_restore(&o, f->snap, info.digest, &err), -1);
    assert_false(bh_fs_exists(out));
    o.context = "notes/ana";
    /* A plain stream cut short: its digest is the recorded one, and it is still refused. */
    o.master_key = NULL;
    o.image = img;
    assert_int_equal(bh_snapshot_image_create(&o, f->snap, &info, &err), 0);
    struct stat st;
    assert_int_equal(stat(f->snap, &st), 0);
    assert_int_equal(truncate(f->snap, st.st_size / 2), 0);
    char hex[65];
    assert_int_equal(bh_crypto_sha256_file(f->snap, hex, &err), 0);
    o.image = out;
    assert_int_equal(bh_snapshot_image_restore(&o, f->snap, hex, &err), -1);
    assert_false(bh_fs_exists(out));
}

/* ---- re-wrapping between plain and encrypted (bh_snapshot_convert) ------------------------ */

static void convert(const char *in, const char *digest, const uint8_t *in_key, const char *out,
                    const uint8_t *out_key, struct bh_snapshot_info *info)
{
    struct bh_snapshot_convert_opts c = {.in_path = in,
                                         .in_digest = digest,
                                         .in_key = in_key,
                                         .out_path = out,
                                         .out_key = out_key,
                                         .context = "w/t"};
    struct bh_err err;
    if (bh_snapshot_convert(&c, info, &err) < 0)
        fail_msg("convert: %s", err.msg);
}

static void test_convert_roundtrip(void **state)
{
    struct fx *f = *state;
    struct bh_snapshot_info plain, sealed, back;
    struct bh_err err;
    create_plain(f, &plain);
    bh_autofree char *enc = P(f->dir, "enc"), *dec = P(f->dir, "dec");
    convert(f->snap, plain.digest, NULL, enc, key1, &sealed);
    convert(enc, sealed.digest, key1, dec, NULL, &back);
    same_bytes(f->snap, dec); /* the archive inside is copied as it was */
    assert_string_equal(back.digest, plain.digest);
    assert_int_equal(rename(enc, f->snap), 0);
    if (restore(f, key1, &err) < 0)
        fail_msg("restore: %s", err.msg);
    check_tree(f);
}

static void test_convert_refusals(void **state)
{
    struct fx *f = *state;
    struct bh_snapshot_info plain, sealed, info;
    struct bh_err err;
    create_plain(f, &plain);
    bh_autofree char *enc = P(f->dir, "enc"), *out = P(f->dir, "out");
    convert(f->snap, plain.digest, NULL, enc, key1, &sealed);
    struct bh_snapshot_convert_opts c = {.in_path = enc,
                                         .in_digest = sealed.digest,
                                         .in_key = key2,
                                         .out_path = out,
                                         .context = "w/t"};
    assert_int_equal(bh_snapshot_convert(&c, &info, &err), -1); /* wrong key */
    assert_false(bh_fs_exists(out));
    c.in_key = NULL; /* an encrypted file read as plain */
    assert_int_equal(bh_snapshot_convert(&c, &info, &err), -1);
    assert_false(bh_fs_exists(out));
    c = (struct bh_snapshot_convert_opts){.in_path = f->snap,
                                          .in_digest = sealed.digest,
                                          .out_path = out,
                                          .out_key = key1,
                                          .context = "w/t"};
    assert_int_equal(bh_snapshot_convert(&c, &info, &err), -1);
    assert_non_null(strstr(err.msg, "digest mismatch"));
    assert_false(bh_fs_exists(out));
}

/* ---- the snapshot agent (agent.h), on loopback -------------------------------------------- */

static struct bh_agent *agent_on(const char *root, const char *scratch, const char *token, int once,
                                 char base[64])
{
    struct bh_agent_cfg cfg = {.host = "127.0.0.1",
                               .root = root,
                               .dirs = dirs_ws,
                               .scratch = scratch,
                               .token = token,
                               .restore_once = once};
    struct bh_agent *a = NULL;
    struct bh_err err;
    if (bh_agent_start(&cfg, &a, &err) < 0)
        fail_msg("agent: %s", err.msg);
    snprintf(base, 64, "http://127.0.0.1:%d", bh_agent_port(a));
    return a;
}

static char *scratch_dir(struct fx *f)
{
    char *scratch = P(f->dir, "scratch");
    assert_int_equal(mkdir(scratch, 0700), 0);
    return scratch;
}

static void scratch_empty(const char *scratch)
{
    DIR *d = opendir(scratch);
    assert_non_null(d);
    for (struct dirent *de; (de = readdir(d));)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            fail_msg("staged file left: %s/%s", scratch, de->d_name);
    closedir(d);
}

/* A Pod's files out through one agent and in through another: what a hibernate on a cluster
 * and the restore on the next claim do. */
static void test_agent_roundtrip(void **state)
{
    struct fx *f = *state;
    bh_autofree char *scratch = scratch_dir(f);
    char base[64];
    struct bh_err err;
    struct bh_snapshot_info info;
    struct bh_agent *a = agent_on(f->src, scratch, "s3cret", 0, base);
    if (bh_agent_fetch(base, "s3cret", f->snap, &info, &err) < 0)
        fail_msg("fetch: %s", err.msg);
    bh_agent_stop(a);
    assert_int_equal(info.files, 9);
    char hex[65];
    assert_int_equal(bh_crypto_sha256_file(f->snap, hex, &err), 0);
    assert_string_equal(hex, info.digest);
    scratch_empty(scratch);
    a = agent_on(f->dst, scratch, "s3cret", 1, base);
    if (bh_agent_push(base, "s3cret", f->snap, info.digest, &err) < 0)
        fail_msg("push: %s", err.msg);
    assert_int_equal(bh_agent_wait(a), 0); /* restore mode: done after one restore */
    bh_agent_stop(a);
    scratch_empty(scratch);
    check_tree(f);
}

static void test_agent_refusals(void **state)
{
    struct fx *f = *state;
    bh_autofree char *scratch = scratch_dir(f);
    char base[64];
    struct bh_err err;
    struct bh_snapshot_info info;
    create_plain(f, &info);
    marker(f, -1);
    struct bh_agent *a = agent_on(f->dst, scratch, "s3cret", 0, base);
    assert_int_equal(bh_agent_push(base, NULL, f->snap, info.digest, &err), -1);
    assert_int_equal(err.code, BH_EAUTH);
    assert_int_equal(bh_agent_push(base, "wrong", f->snap, info.digest, &err), -1);
    assert_int_equal(err.code, BH_EAUTH);
    bh_autofree char *other = P(f->dir, "other");
    assert_int_equal(bh_agent_fetch(base, "x", other, &info, &err), -1);
    assert_int_equal(err.code, BH_EAUTH);
    assert_false(bh_fs_exists(other));
    char bad[65];
    memcpy(bad, info.digest, sizeof(bad));
    bad[0] = bad[0] == 'a' ? 'b' : 'a';
    assert_int_equal(bh_agent_push(base, "s3cret", f->snap, bad, &err), -1);
    assert_int_equal(err.code, BH_EINVAL);
    assert_non_null(strstr(err.msg, "digest mismatch"));
    marker(f, 1); /* nothing changed */
    scratch_empty(scratch);
    bh_agent_stop(a);
    assert_int_equal(bh_agent_done(base, NULL, &err), -1); /* nobody listens any more */
    assert_int_equal(err.code, BH_EUNAVAIL);
}

/* A fresh tenant: the init container is told there is nothing to restore. */
static void test_agent_done(void **state)
{
    struct fx *f = *state;
    char base[64];
    struct bh_err err;
    struct bh_agent *a = agent_on(f->dst, f->dir, NULL, 1, base);
    if (bh_agent_done(base, NULL, &err) < 0)
        fail_msg("done: %s", err.msg);
    assert_int_equal(bh_agent_wait(a), 0);
    bh_agent_stop(a);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_roundtrip_zstd),         T(test_roundtrip_gzip),
        T(test_roundtrip_encrypted),    T(test_wrong_key_refused),
        T(test_tampering_refused),      T(test_digest_mismatch),
        T(test_hostile_archives),       T(test_overlay_symlink_not_followed),
        T(test_live_symlinks_replaced), T(test_duplicate_entries),
        T(test_absent_dir_removed),     T(test_roundtrip_lz4),
        T(test_image_roundtrip),        T(test_image_roundtrip_lz4_encrypted),
        T(test_image_refusals),         T(test_convert_roundtrip),
        T(test_image_many_records),     T(test_image_restore_write_fails),
        T(test_image_tampered),         T(test_image_decoder_bad_input),
        T(test_convert_refusals),       T(test_agent_roundtrip),
        T(test_agent_refusals),         T(test_agent_done),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
