/* The watch fan-out's CPU per event (scripts/bench-kapi.py's server side, without the network):
 * a claim changed EVENTS times in a real store, then four watches read every event's shared
 * line in turn: JSON, JSON again, Table (the first Table watch prints the Table lines of events
 * from before any Table watch), Table again (a copy each). Thread CPU time, so the machine's
 * other load does not count.
 *
 *   bench_kapi_lines [EVENTS]   (default 1000) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs.h"
#include "json.h"
#include "kapi_int.h"
#include "mem.h"
#include "store.h"

/* As bench-kapi.py's claim after its first patch: labels, one managedFields entry, status. */
static const char claim[] =
    "{\"apiVersion\":\"boilerhouse.dev/v1alpha1\",\"kind\":\"BoilerhouseClaim\",\"metadata\":{"
    "\"name\":\"claim-t0-benchwl\",\"labels\":{\"seq\":\"0\",\"run\":\"r0\",\"boilerhouse.dev/"
    "tenant\":\"t0\"},\"managedFields\":[{\"manager\":\"python\",\"operation\":\"Update\","
    "\"apiVersion\":\"boilerhouse.dev/v1alpha1\",\"time\":\"2026-12-02T13:00:00Z\","
    "\"fieldsType\":\"FieldsV1\",\"fieldsV1\":{\"f:metadata\":{\"f:labels\":{\".\":{},"
    "\"f:seq\":{},\"f:run\":{}}}}}]},\"spec\":{\"tenantId\":\"t0\",\"workloadRef\":\"benchwl\"},"
    "\"status\":{\"phase\":\"Error\",\"detail\":\"image localhost/absent:1 not found\"}}";

static double cpu_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int every(const cJSON *obj, void *ud)
{
    return 1;
}

static void die(const struct bh_err *err)
{
    fprintf(stderr, "bench_kapi_lines: %s\n", err->msg);
    exit(1);
}

/* Changes the stored claim n times; the versions before the first and of the last change. */
static void changes(struct bh_store *s, int n, int64_t *first, int64_t *last)
{
    cJSON *obj = cJSON_Parse(claim), *stored = NULL;
    struct bh_err err;
    if (bh_store_create(s, obj, &stored, &err) < 0)
        die(&err);
    cJSON_Delete(obj);
    *first = *last = strtoll(bh_json_str(stored, "metadata.resourceVersion"), NULL, 10);
    for (int i = 0; i < n; i++) {
        char seq[16];
        snprintf(seq, sizeof(seq), "%d", i);
        cJSON_ReplaceItemInObject(bh_json_get(stored, "metadata.labels"), "seq",
                                  cJSON_CreateString(seq));
        cJSON *next = NULL;
        if (bh_store_update(s, stored, &next, &err) < 0)
            die(&err);
        cJSON_Delete(stored);
        stored = next;
        *last = strtoll(bh_json_str(stored, "metadata.resourceVersion"), NULL, 10);
    }
    cJSON_Delete(stored);
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    char dir[] = "/tmp/bh-bench-lines-XXXXXX";
    struct bh_store *s;
    struct bh_err err;
    if (n <= 0 || n > 4000 || !mkdtemp(dir)) { /* the ring keeps 4,096 */
        fprintf(stderr, "usage: bench_kapi_lines [EVENTS, 1-4000]\n");
        return 2;
    }
    bh_autofree char *path = bh_xasprintf("%s/store.db", dir);
    if (bh_store_open(path, &s, &err) < 0)
        die(&err);
    struct bh_kapi_fanout *fan = bh_kapi_fanout_start(s);
    int64_t first, last;
    changes(s, n, &first, &last);
    static const char *const names[] = {"JSON, first watch", "JSON, second watch",
                                        "Table, first watch (prints)", "Table, second watch"};
    for (int w = 0; w < 4; w++) {
        struct bh_kapi_fanout_lines r = {
            .kind = "BoilerhouseClaim", .table = w >= 2, .since = first, .match = every};
        struct bh_kapi_buf out = {0};
        double t0 = cpu_us();
        while (r.since < last)
            if (bh_kapi_fanout_lines(fan, &r, 2000, &out) != 0)
                break;
        double us = cpu_us() - t0;
        const char *second = memchr(out.data, '\n', out.len);
        printf("%-28s %6.2f us/event, %zu bytes in all, the second line %zu bytes\n", names[w],
               us / n, out.len, second ? (size_t)(strchr(second + 1, '\n') - second) : 0);
        free(out.data);
    }
    bh_kapi_fanout_stop(fan);
    bh_store_close(s);
    BH_IGNORE(bh_fs_rmtree(dir, &err)); /* a temp dir: best effort */
    return 0;
}
