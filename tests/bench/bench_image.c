/* Image snapshot benchmark (not a test; needs root and loop devices): two data sets written
 * into the writable layer of a loop-mounted ext4 disk, as an instance would, then
 *   hibernate    sync + trim + image stream (bh_disk_quiesce + bh_snapshot_image_create)
 *                beside `tar czf` of the same tree;
 *   restore hot  same machine: rename the parked image + loop mount + keep the overlay dirs;
 *   restore arch hot copy evicted: verify + decompress the stream into a sparse image + mount,
 *                beside `tar xzf` of the same tree into a fresh disk of the same kind.
 * Restores: p50 of BENCH_RUNS (default 3) after a sync() each. Sets: "10k" (10,000 files of
 * 1-9 KB in 100 dirs + 5 x 10 MB, ~100 MB) and "node_modules" (30,000 files of 0.2-4 KB in
 * ~3,000 nested package dirs). Built and run by scripts/bench-snapshot.sh. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "disk.h"
#include "fs.h"
#include "mem.h"
#include "snapshot.h"

#include "bench_util.h"

#define BASE 1000000000u
#define DISK_BYTES (2ull << 30)

static uint64_t rng = 88172645463325252ull;

static uint64_t next(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}

/* Text-like content: source files and JSON compress about as well. */
static void fill(char *buf, size_t n)
{
    static const char *words[] = {"function ", "return ", "const x = ", "{\"k\": 1}, ", "\n"};
    for (size_t i = 0; i < n;) {
        const char *w = next() % 7 == 0 ? NULL : words[next() % 5];
        if (!w) {
            buf[i++] = (char)('a' + next() % 26);
            continue;
        }
        for (; *w && i < n; w++)
            buf[i++] = *w;
    }
}

static void put(const char *path, const char *buf, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, buf, n) != (ssize_t)n || fchown(fd, BASE + 1000, BASE + 1000) < 0)
        abort();
    close(fd);
}

static void mkdir_owned(const char *p)
{
    if ((mkdir(p, 0755) < 0 && errno != EEXIST) || chown(p, BASE + 1000, BASE + 1000) < 0)
        abort();
}

static uint64_t set_10k(const char *ws, char *buf)
{
    uint64_t total = 0;
    for (int d = 0; d < 100; d++) {
        bh_autofree char *dir = bh_xasprintf("%s/d%02d", ws, d);
        mkdir_owned(dir);
        for (int i = 0; i < 100; i++) {
            size_t n = 1024 + (size_t)(next() % 8192);
            fill(buf, n);
            bh_autofree char *p = bh_xasprintf("%s/f%03d", dir, i);
            put(p, buf, n);
            total += n;
        }
    }
    for (int i = 0; i < 5; i++) {
        fill(buf, 10u << 20);
        bh_autofree char *p = bh_xasprintf("%s/large%d", ws, i);
        put(p, buf, 10u << 20);
        total += 10u << 20;
    }
    return total;
}

/* 1,000 packages, each package.json + README + lib/ and dist/ with nested dirs: 30 files. */
static uint64_t set_node_modules(const char *ws, char *buf)
{
    uint64_t total = 0;
    bh_autofree char *nm = bh_xasprintf("%s/node_modules", ws);
    mkdir_owned(nm);
    for (int p = 0; p < 1000; p++) {
        bh_autofree char *pkg = bh_xasprintf("%s/pkg-%04d", nm, p);
        mkdir_owned(pkg);
        static const char *sub[] = {"lib", "lib/util", "dist", "dist/esm"};
        for (size_t s = 0; s < 4; s++) {
            bh_autofree char *d = bh_xasprintf("%s/%s", pkg, sub[s]);
            mkdir_owned(d);
        }
        for (int f = 0; f < 30; f++) {
            size_t n = 200 + (size_t)(next() % 3900);
            fill(buf, n);
            bh_autofree char *path = f == 0   ? bh_xasprintf("%s/package.json", pkg)
                                     : f == 1 ? bh_xasprintf("%s/README.md", pkg)
                                              : bh_xasprintf("%s/%s/m%02d.js", pkg, sub[f % 4], f);
            put(path, buf, n);
            total += n;
        }
    }
    return total;
}

static void check(int rc, const struct bh_err *err, const char *what)
{
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", what, err->msg);
        exit(1);
    }
}

static void sh(const char *cmd)
{
    if (system(cmd) != 0) {
        fprintf(stderr, "failed: %s\n", cmd);
        exit(1);
    }
}

static void new_disk(const char *img, const char *mnt)
{
    struct bh_err err;
    mkdir(mnt, 0700);
    check(bh_disk_create(img, DISK_BYTES, &err), &err, "mkfs");
    check(bh_disk_mount(img, mnt, &err), &err, "mount");
}

/* The restore as a boot does it: mount the image, keep the overlay dirs of its upper layer. */
static void mount_restored(const char *img, const char *mnt)
{
    static char *keep[] = {"/workspace", NULL};
    struct bh_err err;
    bh_autofree char *upper = bh_xasprintf("%s/upper", mnt);
    check(bh_disk_mount(img, mnt, &err), &err, "mount restored");
    check(bh_disk_keep(mnt, upper, keep, &err), &err, "keep");
}

struct row {
    double hib[2], tar_c, hot, arch[2], tar_x;
    uint64_t stored[2], tgz;
};

static const struct {
    const char *name;
    enum bh_snapshot_compression comp;
} comps[2] = {{"zstd", BH_SNAP_ZSTD}, {"lz4", BH_SNAP_LZ4}};

static void bench_hot(const char *tmp, struct row *r)
{
    bh_autofree char *img = bh_xasprintf("%s/disk.img", tmp), *mnt = bh_xasprintf("%s/mnt", tmp);
    bh_autofree char *hot = bh_xasprintf("%s/hot.img", tmp);
    double ms[64];
    int n = bench_runs(3);
    if (rename(img, hot) < 0)
        abort();
    for (int i = 0; i < n; i++) {
        sync();
        double t0 = now_ms();
        if (rename(hot, img) < 0)
            abort();
        mount_restored(img, mnt);
        ms[i] = now_ms() - t0;
        umount2(mnt, 0);
        if (rename(img, hot) < 0)
            abort();
    }
    r->hot = p50(ms, n);
    if (rename(hot, img) < 0)
        abort();
}

static double bench_archive(const char *tmp, const char *snap, const char *digest)
{
    bh_autofree char *mnt = bh_xasprintf("%s/mnt", tmp);
    bh_autofree char *img2 = bh_xasprintf("%s/restored.img", tmp);
    struct bh_snapshot_image_opts io = {.image = img2};
    struct bh_err err;
    double ms[64];
    int n = bench_runs(3);
    for (int i = 0; i < n; i++) {
        sync();
        double t0 = now_ms();
        check(bh_snapshot_image_restore(&io, snap, digest, &err), &err, "image restore");
        mount_restored(img2, mnt);
        ms[i] = now_ms() - t0;
        umount2(mnt, 0);
        unlink(img2);
    }
    return p50(ms, n);
}

static void bench_tar_x(const char *tmp, struct row *r)
{
    bh_autofree char *img = bh_xasprintf("%s/tar.img", tmp), *mnt = bh_xasprintf("%s/tarmnt", tmp);
    bh_autofree char *x = bh_xasprintf("tar xzf %s/snap.tgz -C %s/upper --same-owner -p", tmp, mnt);
    double ms[64];
    int n = bench_runs(3);
    for (int i = 0; i < n; i++) {
        new_disk(img, mnt);
        bh_autofree char *up = bh_xasprintf("%s/upper", mnt);
        mkdir(up, 0755);
        sync();
        double t0 = now_ms();
        sh(x);
        ms[i] = now_ms() - t0;
        umount2(mnt, 0);
        unlink(img);
    }
    r->tar_x = p50(ms, n);
}

static void bench_set(const char *tmp, const char *name, uint64_t (*make)(const char *, char *),
                      int files)
{
    bh_autofree char *img = bh_xasprintf("%s/disk.img", tmp), *mnt = bh_xasprintf("%s/mnt", tmp);
    bh_autofree char *ws = bh_xasprintf("%s/upper/workspace", mnt);
    bh_autofree char *snap = bh_xasprintf("%s/snap", tmp);
    bh_autofree char *buf = bh_xmalloc(10u << 20);
    struct row r = {0};
    struct bh_err err;
    new_disk(img, mnt);
    bh_autofree char *up = bh_xasprintf("%s/upper", mnt);
    mkdir_owned(up);
    mkdir_owned(ws);
    uint64_t bytes = make(ws, buf);
    sync();
    bh_autofree char *c = bh_xasprintf("tar czf %s/snap.tgz -C %s/upper workspace", tmp, mnt);
    double t0 = now_ms();
    sh(c);
    r.tar_c = now_ms() - t0;
    umount2(mnt, 0);
    for (int k = 0; k < 2; k++) {
        struct bh_snapshot_image_opts io = {.image = img, .compression = comps[k].comp};
        struct bh_snapshot_info info;
        check(bh_disk_mount(img, mnt, &err), &err, "mount");
        sync();
        t0 = now_ms();
        check(bh_disk_quiesce(mnt, &err), &err, "quiesce");
        check(bh_snapshot_image_create(&io, snap, &info, &err), &err, "image create");
        r.hib[k] = now_ms() - t0;
        r.stored[k] = info.size;
        umount2(mnt, 0);
        r.arch[k] = bench_archive(tmp, snap, info.digest);
        unlink(snap);
    }
    bench_hot(tmp, &r);
    bench_tar_x(tmp, &r);
    struct stat st;
    bh_autofree char *tgz = bh_xasprintf("%s/snap.tgz", tmp);
    r.tgz = stat(tgz, &st) == 0 ? (uint64_t)st.st_size : 0;
    printf("%s: %d files, %.1f MB (tgz %.1f MB), p50 of %d runs\n", name, files, bytes / 1e6,
           r.tgz / 1e6, bench_runs(3));
    for (int k = 0; k < 2; k++) {
        printf("  hibernate, image %-4s (%5.1f MB) %6.0f ms | tar czf %6.0f ms | ratio %.2f "
               "(target <= 0.20)\n",
               comps[k].name, r.stored[k] / 1e6, r.hib[k], r.tar_c, r.hib[k] / r.tar_c);
        printf("  restore from archive, %-4s      %6.0f ms | tar xzf %6.0f ms | %.1fx faster "
               "(target >= 5x)\n",
               comps[k].name, r.arch[k], r.tar_x, r.tar_x / r.arch[k]);
    }
    printf("  restore same machine (hot tier)  %6.0f ms | (target <= 100 ms)\n", r.hot);
    fflush(stdout);
    unlink(tgz);
}

int main(void)
{
    const char *base = getenv("BENCH_DIR");
    bh_autofree char *tmp = bh_xasprintf("%s/bh-bench-img-XXXXXX", base ? base : "/var/tmp");
    if (!mkdtemp(tmp))
        return 1;
    bench_set(tmp, "10k files + 5 large (~100 MB)", set_10k, 10005);
    bench_set(tmp, "node_modules-like", set_node_modules, 30000);
    struct bh_err err;
    if (bh_fs_rmtree(tmp, &err) < 0)
        fprintf(stderr, "cleanup: %s\n", err.msg);
    return 0;
}
