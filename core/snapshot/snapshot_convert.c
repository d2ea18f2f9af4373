/* A snapshot file re-wrapped between its plain and encrypted forms without unpacking it: the
 * snapshot agent of a Pod (agent.h) sends and takes plain snapshots, because the key never
 * leaves the daemon, which keeps them encrypted at rest when the workload says so. */
#include "snapshot_int.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "mem.h"

static int convert_copy(struct bh_snapshot_writer *w, void *ud, struct bh_err *err)
{
    struct bh_snapshot_reader *r = ud;
    for (;;) {
        const void *buf;
        ssize_t n = bh_snapshot_reader_cb(NULL, r, &buf);
        if (n < 0)
            return bh_err_set(err, r->err.code, "%s", r->err.msg);
        if (n == 0)
            return 0;
        if (bh_snapshot_writer_cb(NULL, w, buf, (size_t)n) < 0)
            return bh_err_set(err, w->err.code, "%s", w->err.msg);
    }
}

int bh_snapshot_convert(const struct bh_snapshot_convert_opts *o, struct bh_snapshot_info *info,
                        struct bh_err *err)
{
    bh_autoclose int fd = open(o->in_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return bh_err_errno(err, errno == ENOENT ? BH_ENOTFOUND : BH_EIO, "snapshot: open %s",
                            o->in_path);
    if (bh_snapshot_check_digest(fd, o->in_digest, err) < 0)
        return -1;
    struct bh_snapshot_reader r;
    int rc = bh_snapshot_reader_init(&r, fd, o->in_key, o->context, err);
    if (rc == 0)
        rc = bh_snapshot_write_file(o->out_path, o->out_key, o->context, convert_copy, &r, info,
                                    err);
    bh_snapshot_reader_free(&r);
    return rc;
}

int bh_snapshot_compression_parse(const char *name, enum bh_snapshot_compression *out)
{
    static const char *const names[] = {
        [BH_SNAP_ZSTD] = "zstd", [BH_SNAP_GZIP] = "gzip", [BH_SNAP_LZ4] = "lz4"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (name && !strcmp(name, names[i])) {
            *out = (enum bh_snapshot_compression)i;
            return 0;
        }
    return -1;
}
