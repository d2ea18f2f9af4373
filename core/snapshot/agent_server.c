/* The snapshot agent's HTTP side (agent.h): libmicrohttpd through bh_listen, one archive
 * operation at a time, archives staged in the scratch directory and never left there. */
#include "agent_int.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto.h"
#include "json.h"
#include "listen.h"
#include "log.h"
#include "mem.h"

/* A snapshot in flight is one HTTP exchange; an idle or stalled client is cut after this. */
#define AGENT_IDLE_TIMEOUT_S 300
#define AGENT_HEAD_TIMEOUT_S 30
#define AGENT_MAX_CONNS 16

struct bh_agent {
    struct bh_agent_cfg cfg; /* pointers borrowed from the caller */
    struct bh_listen *listen;
    int port;
    pthread_mutex_t op;           /* one archive operation at a time */
    unsigned long seq;            /* names staged files; under op */
    int done_pipe[2];             /* restore mode: written once the restore is done */
    struct bh_agent_activity act; /* a sidecar's (not in restore mode) */
    int act_on;
};

/* One PUT being received, or a POST /v1/done. */
struct agent_put {
    char *path; /* staged upload, owned; unlinked when the request ends */
    int fd;
    struct bh_err err; /* a failed write, answered when the upload ends */
    int done;          /* answered 204: restore mode ends once the answer is out */
};

static struct bh_snapshot_opts agent_opts(const struct bh_agent *a)
{
    /* Pod files carry the container's own ids: base 0 keeps the archive in the container's
     * view, as local mode stores it, so snapshots move between the two modes. */
    return (struct bh_snapshot_opts){.rootfs = a->cfg.root,
                                     .dirs = a->cfg.dirs,
                                     .uid_base = 0,
                                     .uid_size = UINT32_MAX,
                                     .compression = a->cfg.compression};
}

static char *agent_stage_path(struct bh_agent *a, const char *what)
{
    return bh_xasprintf("%s/%s-%d-%lu.snap", a->cfg.scratch, what, (int)getpid(), ++a->seq);
}

static enum MHD_Result agent_reply(struct MHD_Connection *conn, unsigned status, const char *text)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "text/plain; charset=utf-8");
    enum MHD_Result rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result agent_reply_err(struct MHD_Connection *conn, const struct bh_err *err)
{
    unsigned status = err->code == BH_EINVAL ? MHD_HTTP_UNPROCESSABLE_CONTENT
                                             : (unsigned)bh_err_http_status(err->code);
    bh_warn("agent", "%u: %s", status, err->msg);
    bh_autofree char *text = bh_xasprintf("%s\n", err->msg);
    return agent_reply(conn, status, text);
}

/* Archives the overlay directories and answers with the file, unlinked already (the open fd
 * is all the response needs, so nothing is left behind however the client goes away). */
static enum MHD_Result agent_get(struct bh_agent *a, struct MHD_Connection *conn)
{
    struct bh_err err = {0};
    struct bh_snapshot_info info = {0};
    struct bh_snapshot_opts o = agent_opts(a);
    pthread_mutex_lock(&a->op);
    bh_autofree char *path = agent_stage_path(a, "get");
    int rc = bh_snapshot_create(&o, path, &info, &err);
    int fd = rc < 0 ? -1 : open(path, O_RDONLY | O_CLOEXEC);
    if (rc == 0 && fd < 0)
        rc = bh_err_errno(&err, BH_EIO, "open %s", path);
    unlink(path);
    pthread_mutex_unlock(&a->op);
    if (rc < 0)
        return agent_reply_err(conn, &err);
    struct MHD_Response *r = MHD_create_response_from_fd64(info.size, fd);
    char files[32];
    snprintf(files, sizeof(files), "%llu", (unsigned long long)info.files);
    MHD_add_response_header(r, "Content-Type", "application/octet-stream");
    MHD_add_response_header(r, BH_AGENT_DIGEST_HEADER, info.digest);
    MHD_add_response_header(r, BH_AGENT_FILES_HEADER, files);
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    bh_info("agent", "sent a snapshot: %llu entries, %llu bytes", (unsigned long long)info.files,
            (unsigned long long)info.size);
    return ret;
}

static enum MHD_Result agent_activity(struct bh_agent *a, struct MHD_Connection *conn)
{
    struct bh_err err = {0};
    if (!a->act_on)
        return agent_reply(conn, MHD_HTTP_NOT_FOUND, "no activity in restore mode\n");
    if (bh_agent_activity_sample(&a->act, &err) < 0)
        return agent_reply_err(conn, &err);
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddNumberToObject(doc, "netActivity", (double)bh_agent_activity_net(&a->act));
    cJSON_AddNumberToObject(doc, "newestMtimeMs", (double)bh_agent_activity_newest_mtime(&a->act));
    char *text = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result rc = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return rc;
}

static void agent_finish(struct bh_agent *a)
{
    if (a->cfg.restore_once && write(a->done_pipe[1], "x", 1) < 0)
        bh_warn("agent", "signal done: %s", strerror(errno));
}

static int agent_write_all(int fd, const char *p, size_t n, struct bh_err *err)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return bh_err_errno(err, errno == ENOSPC ? BH_ETOOLARGE : BH_EIO, "stage upload");
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The staged upload goes before the answer: whoever reads the answer finds nothing left. */
static void agent_put_discard(struct agent_put *p)
{
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
    if (p->path)
        unlink(p->path);
    free(p->path);
    p->path = NULL;
}

/* The upload is complete: verify and restore it (the digest check is bh_snapshot_restore's
 * first step, so a truncated or altered body changes nothing). */
static enum MHD_Result agent_put_end(struct bh_agent *a, struct MHD_Connection *conn,
                                     struct agent_put *p)
{
    const char *digest = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, BH_AGENT_DIGEST_HEADER);
    struct bh_err err = p->err;
    int rc = err.code ? -1 : 0;
    if (rc == 0) {
        struct bh_snapshot_opts o = agent_opts(a);
        pthread_mutex_lock(&a->op);
        rc = bh_snapshot_restore(&o, p->path, digest, &err);
        pthread_mutex_unlock(&a->op);
    }
    agent_put_discard(p);
    if (rc < 0)
        return agent_reply_err(conn, &err);
    bh_info("agent", "restored a snapshot");
    p->done = 1;
    return agent_reply(conn, MHD_HTTP_NO_CONTENT, "");
}

static enum MHD_Result agent_put(struct bh_agent *a, struct MHD_Connection *conn, const char *data,
                                 size_t *size, void **req)
{
    struct agent_put *p = *req;
    if (!p) {
        if (!MHD_lookup_connection_value(conn, MHD_HEADER_KIND, BH_AGENT_DIGEST_HEADER))
            return agent_reply(conn, MHD_HTTP_BAD_REQUEST,
                               "header " BH_AGENT_DIGEST_HEADER " is required\n");
        p = bh_xcalloc(1, sizeof(*p));
        p->path = agent_stage_path(a, "put");
        p->fd = open(p->path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (p->fd < 0)
            bh_err_errno(&p->err, BH_EIO, "stage upload %s", p->path);
        *req = p;
        return MHD_YES;
    }
    if (*size > 0) {
        if (!p->err.code)
            BH_IGNORE(agent_write_all(p->fd, data, *size, &p->err)); /* answered at the end */
        *size = 0;
        return MHD_YES;
    }
    return agent_put_end(a, conn, p);
}

static int agent_authorized(const struct bh_agent *a, struct MHD_Connection *conn)
{
    if (!a->cfg.token)
        return 1;
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    return h && bh_crypto_bearer_matches(h, a->cfg.token);
}

static enum MHD_Result agent_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                     const char *method, const char *version, const char *data,
                                     size_t *size, void **req)
{
    (void)version;
    struct bh_agent *a = cls;
    if (!strcmp(url, "/healthz"))
        return agent_reply(conn, MHD_HTTP_OK, "ok\n");
    if (!*req && !agent_authorized(a, conn))
        return agent_reply(conn, MHD_HTTP_UNAUTHORIZED, "a valid bearer token is required\n");
    if (!strcmp(url, BH_AGENT_PATH) && !strcmp(method, "GET"))
        return agent_get(a, conn);
    if (!strcmp(url, BH_AGENT_PATH) && !strcmp(method, "PUT"))
        return agent_put(a, conn, data, size, req);
    if (!strcmp(url, BH_AGENT_ACTIVITY_PATH) && !strcmp(method, "GET"))
        return agent_activity(a, conn);
    if (!strcmp(url, BH_AGENT_DONE_PATH) && !strcmp(method, "POST")) {
        struct agent_put *p = bh_xcalloc(1, sizeof(*p));
        p->fd = -1;
        p->done = 1;
        *req = p;
        return agent_reply(conn, MHD_HTTP_NO_CONTENT, "");
    }
    if (!strcmp(url, BH_AGENT_PATH) || !strcmp(url, BH_AGENT_DONE_PATH) ||
        !strcmp(url, BH_AGENT_ACTIVITY_PATH))
        return agent_reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
    return agent_reply(conn, MHD_HTTP_NOT_FOUND, "not found\n");
}

static void agent_completed(void *cls, struct MHD_Connection *conn, void **req,
                            enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    struct bh_agent *a = cls;
    struct agent_put *p = *req;
    if (!p)
        return;
    /* Restore mode ends only once the 204 is out: ended before, the process would close the
     * connection under it and the daemon would take a done restore for a failed one. */
    int finished = p->done && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK;
    agent_put_discard(p); /* an upload cut short */
    free(p);
    *req = NULL;
    if (finished)
        agent_finish(a);
}

int bh_agent_start(const struct bh_agent_cfg *cfg, struct bh_agent **out, struct bh_err *err)
{
    struct bh_agent *a = bh_xcalloc(1, sizeof(*a));
    a->cfg = *cfg;
    pthread_mutex_init(&a->op, NULL);
    if (pipe2(a->done_pipe, O_CLOEXEC) < 0) {
        pthread_mutex_destroy(&a->op);
        free(a);
        return bh_err_errno(err, BH_EIO, "agent: pipe");
    }
    const struct bh_listen_cfg lc = {
        .what = "snapshot agent",
        .host = cfg->host,
        .port = cfg->port,
        .handler = agent_handler,
        .handler_cls = a,
        .completed = agent_completed,
        .completed_cls = a,
        .limits = {.idle_timeout_s = AGENT_IDLE_TIMEOUT_S,
                   .max_conns = AGENT_MAX_CONNS,
                   .max_per_ip = AGENT_MAX_CONNS,
                   .head_timeout_s = AGENT_HEAD_TIMEOUT_S},
    };
    if (bh_listen_start(&lc, &a->listen, err) < 0) {
        bh_agent_stop(a);
        return -1;
    }
    a->port = bh_listen_port(a->listen);
    if (!cfg->restore_once) {
        if (bh_agent_activity_start(&a->act, cfg, a->port, err) < 0) {
            bh_agent_stop(a);
            return -1;
        }
        a->act_on = 1;
    }
    *out = a;
    return 0;
}

int bh_agent_port(const struct bh_agent *a)
{
    return a->port;
}

int bh_agent_wait(struct bh_agent *a)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    bh_autoclose int sfd = signalfd(-1, &set, SFD_CLOEXEC);
    if (sfd < 0)
        return -1;
    struct pollfd fds[2] = {{.fd = sfd, .events = POLLIN},
                            {.fd = a->done_pipe[0], .events = POLLIN}};
    while (poll(fds, 2, -1) < 0)
        if (errno != EINTR)
            return -1;
    return 0;
}

void bh_agent_stop(struct bh_agent *a)
{
    if (!a)
        return;
    bh_listen_stop(a->listen);
    if (a->act_on)
        bh_agent_activity_stop(&a->act);
    close(a->done_pipe[0]);
    close(a->done_pipe[1]);
    pthread_mutex_destroy(&a->op);
    free(a);
}
