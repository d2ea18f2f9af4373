#include "state_file.h"

#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

long long bht_state_read(const struct bh_host_api *host, struct bh_plugin_handle *h,
                         const char *name, long long absent)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", host->state_dir(h), name);
    FILE *f = fopen(path, "r");
    long long v = absent;
    if (f && fscanf(f, "%lld", &v) != 1)
        v = absent;
    if (f)
        fclose(f);
    return v;
}

/* mkdir -p: the instance's directory may not exist yet. */
static void bht_mkdir_p(const char *dir)
{
    char p[1024];
    snprintf(p, sizeof(p), "%s", dir);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = '\0';
            mkdir(p, 0700);
            *s = '/';
        }
    mkdir(p, 0700);
}

int bht_state_write(const struct bh_host_api *host, struct bh_plugin_handle *h, const char *name,
                    long long value)
{
    const char *dir = host->state_dir(h);
    char path[1024], tmp[1040];
    bht_mkdir_p(dir);
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    int ok = f && fprintf(f, "%lld\n", value) > 0;
    ok = f && fflush(f) == 0 && fsync(fileno(f)) == 0 && ok;
    int e = errno;
    if (f)
        fclose(f);
    if (ok && rename(tmp, path) == 0)
        return 0;
    errno = ok ? errno : e;
    return -1;
}
