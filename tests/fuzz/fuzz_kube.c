/* The Kubernetes client's parsers of what a cluster (or a kubeconfig's author) sends: the
 * watch stream's line decoder and the kubeconfig parser. Input: a leading 'K' makes the rest a
 * kubeconfig (relative file names resolve under a directory that does not exist); anything
 * else is a watch stream whose first byte picks where it is split in two. Must never crash or
 * read out of bounds, and the events decoded must not depend on the split. */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "mem.h"

struct fuzz_events {
    char *log;
    size_t len;
};

static int fuzz_on_event(const char *type, const cJSON *obj, void *ud)
{
    struct fuzz_events *e = ud;
    char *text = cJSON_PrintUnformatted(obj);
    size_t n = strlen(type) + strlen(text) + 2;
    e->log = bh_xrealloc(e->log, e->len + n + 1);
    snprintf(e->log + e->len, n + 1, "%s %s\n", type, text);
    e->len += n;
    free(text);
    return 0;
}

/* Decodes data fed as pieces [0, cut) and [cut, size); *rc the first failure (0: none). */
static struct fuzz_events fuzz_decode(const char *data, size_t size, size_t cut, int *rc)
{
    struct fuzz_events e = {bh_xstrdup(""), 0};
    struct bh_kube_lines *d = bh_kube_lines_new(4096, fuzz_on_event, &e);
    struct bh_err err = {0};
    *rc = bh_kube_lines_feed(d, data, cut, &err);
    if (*rc == 0)
        *rc = bh_kube_lines_feed(d, data + cut, size - cut, &err);
    bh_kube_lines_free(d);
    return e;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 0 && data[0] == 'K') {
        struct bh_kube_config c;
        struct bh_err err = {0};
        if (bh_kube_config_parse((const char *)data + 1, size - 1, "/nonexistent", &c, &err) == 0)
            bh_kube_config_free(&c);
        return 0;
    }
    if (size == 0)
        return 0;
    const char *s = (const char *)data + 1;
    size_t n = size - 1, cut = n ? data[0] % (n + 1) : 0;
    int rc_whole, rc_split;
    struct fuzz_events whole = fuzz_decode(s, n, n, &rc_whole);
    struct fuzz_events split = fuzz_decode(s, n, cut, &rc_split);
    /* A stream that decodes whole decodes the same in two pieces. */
    if (rc_whole == 0 && (rc_split != 0 || strcmp(whole.log, split.log) != 0))
        abort();
    free(whole.log);
    free(split.log);
    return 0;
}
