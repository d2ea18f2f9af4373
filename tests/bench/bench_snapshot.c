/* Snapshot benchmark (not a test): 10k small files + 5 large ones (~100 MB) under
 * <tmp>/src/workspace, random or compressible, owned by base+1000; times create/restore for
 * zstd, gzip, zstd+AES-GCM and `tar czf`/`tar xzf` (restores and `tar xzf`: p50 of BENCH_RUNS,
 * default 5). Built and run by scripts/bench-snapshot.sh; BENCH_DIR picks the filesystem
 * (default /tmp). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crypto.h"
#include "fs.h"
#include "mem.h"
#include "snapshot.h"

#include "bench_util.h"

#define BASE 1000000000u
#define SMALL 10000
#define LARGE 5
#define LARGE_SIZE (10u << 20)

static uint64_t rng = 88172645463325252ull;

static void fill(char *buf, size_t n, int compressible)
{
    static const char *words[] = {"alpha ", "beta ", "gamma ", "delta\n", "{\"k\": 1}, "};
    for (size_t i = 0; i < n; i++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        if (!compressible) {
            buf[i] = (char)rng;
            continue;
        }
        const char *w = words[rng % 5];
        for (; *w && i < n; w++)
            buf[i++] = *w;
        i--;
    }
}

static void put(const char *path, const char *buf, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, buf, n) != (ssize_t)n || fchown(fd, BASE + 1000, BASE + 1000) < 0)
        abort();
    close(fd);
}

static uint64_t make_dataset(const char *ws, int compressible)
{
    bh_autofree char *buf = bh_xmalloc(LARGE_SIZE);
    uint64_t total = 0;
    mkdir(ws, 0755);
    for (int d = 0; d < 100; d++) {
        bh_autofree char *dir = bh_xasprintf("%s/d%02d", ws, d);
        mkdir(dir, 0755);
        for (int i = 0; i < SMALL / 100; i++) {
            size_t n = 1024 + (size_t)(rng % 8192);
            fill(buf, n, compressible);
            bh_autofree char *p = bh_xasprintf("%s/f%03d", dir, i);
            put(p, buf, n);
            total += n;
        }
    }
    for (int i = 0; i < LARGE; i++) {
        fill(buf, LARGE_SIZE, compressible);
        bh_autofree char *p = bh_xasprintf("%s/large%d", ws, i);
        put(p, buf, LARGE_SIZE);
        total += LARGE_SIZE;
    }
    return total;
}

static void report(const char *what, double ms, uint64_t bytes, uint64_t stored)
{
    printf("  %-22s %8.0f ms %8.0f MB/s  (stored %.1f MB)\n", what, ms, bytes / 1e6 / (ms / 1e3),
           stored / 1e6);
}

/* Restores are timed bench_runs(5) times after a sync() each (so one run's writeback does not land
 * in the next); the p50 is reported with the range. */
static void report_runs(const char *what, double *ms, int n, uint64_t bytes, uint64_t stored)
{
    qsort(ms, (size_t)n, sizeof(*ms), cmp_double);
    bh_autofree char *label = bh_xasprintf("%s p50", what);
    printf("  %-22s %8.0f ms %8.0f MB/s  (stored %.1f MB; %d runs %.0f..%.0f ms)\n", label,
           ms[n / 2], bytes / 1e6 / (ms[n / 2] / 1e3), stored / 1e6, n, ms[0], ms[n - 1]);
}

static void run_one(const char *tmp, const char *label, enum bh_snapshot_compression comp,
                    const uint8_t *key, uint64_t bytes)
{
    static char *dirs[] = {"/workspace", NULL};
    bh_autofree char *src = bh_xasprintf("%s/src", tmp), *dst = bh_xasprintf("%s/dst", tmp);
    bh_autofree char *snap = bh_xasprintf("%s/snap", tmp);
    struct bh_snapshot_opts o = {.rootfs = src,
                                 .dirs = dirs,
                                 .uid_base = BASE,
                                 .uid_size = 65536,
                                 .compression = comp,
                                 .master_key = key,
                                 .context = "bench"};
    struct bh_snapshot_info info;
    struct bh_err err;
    double t0 = now_ms();
    if (bh_snapshot_create(&o, snap, &info, &err) < 0) {
        fprintf(stderr, "create: %s\n", err.msg);
        exit(1);
    }
    double t1 = now_ms();
    o.rootfs = dst;
    double ms[64];
    int n = bench_runs(5);
    for (int i = 0; i < n; i++) {
        sync();
        double t2 = now_ms();
        if (bh_snapshot_restore(&o, snap, info.digest, &err) < 0) {
            fprintf(stderr, "restore: %s\n", err.msg);
            exit(1);
        }
        ms[i] = now_ms() - t2;
    }
    bh_autofree char *c = bh_xasprintf("%s create", label), *r = bh_xasprintf("%s restore", label);
    report(c, t1 - t0, bytes, info.size);
    report_runs(r, ms, n, bytes, info.size);
    unlink(snap);
}

static void run_tar(const char *tmp, uint64_t bytes)
{
    bh_autofree char *c = bh_xasprintf("tar czf %s/snap.tgz -C %s/src workspace", tmp, tmp);
    bh_autofree char *x = bh_xasprintf("rm -rf %s/dst/workspace && tar xzf %s/snap.tgz -C %s/dst "
                                       "--same-owner -p",
                                       tmp, tmp, tmp);
    double t0 = now_ms();
    if (system(c) != 0)
        exit(1);
    double t1 = now_ms();
    double ms[64];
    int n = bench_runs(5);
    for (int i = 0; i < n; i++) {
        sync();
        double t2 = now_ms();
        if (system(x) != 0)
            exit(1);
        ms[i] = now_ms() - t2;
    }
    struct stat st;
    bh_autofree char *p = bh_xasprintf("%s/snap.tgz", tmp);
    stat(p, &st);
    report("tar czf", t1 - t0, bytes, (uint64_t)st.st_size);
    report_runs("tar xzf", ms, n, bytes, (uint64_t)st.st_size);
    unlink(p);
}

int main(void)
{
    const char *base = getenv("BENCH_DIR"); /* e.g. /dev/shm to take the disk out */
    bh_autofree char *tmp = bh_xasprintf("%s/bh-bench-snap-XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(tmp))
        return 1;
    uint8_t key[BH_KEY_LEN] = {42};
    for (int compressible = 0; compressible < 2; compressible++) {
        bh_autofree char *src = bh_xasprintf("%s/src", tmp), *dst = bh_xasprintf("%s/dst", tmp);
        bh_autofree char *ws = bh_xasprintf("%s/workspace", src);
        mkdir(src, 0755);
        mkdir(dst, 0755);
        uint64_t bytes = make_dataset(ws, compressible);
        sync();
        printf("%s data: %d small + %d large files, %.1f MB\n",
               compressible ? "compressible" : "random", SMALL, LARGE, bytes / 1e6);
        run_one(tmp, "zstd", BH_SNAP_ZSTD, NULL, bytes);
        run_one(tmp, "gzip", BH_SNAP_GZIP, NULL, bytes);
        run_one(tmp, "zstd+aes-gcm", BH_SNAP_ZSTD, key, bytes);
        run_tar(tmp, bytes);
        struct bh_err err;
        if (bh_fs_rmtree(src, &err) < 0 || bh_fs_rmtree(dst, &err) < 0)
            fprintf(stderr, "cleanup: %s\n", err.msg);
    }
    rmdir(tmp);
    return 0;
}
