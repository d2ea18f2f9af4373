/* The audit log (audit.h) on SQLite: one table, an index per filter, pruned by id. */
#include "audit.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "fs.h"
#include "json.h"
#include "log.h"
#include "mem.h"

/* Pruning runs every this many appends (once per batch at most), so the bound costs one
 * DELETE per batch. */
#define AUDIT_PRUNE_EVERY 64
/* Queued records that wake the writer before its interval: one transaction per this many
 * when records come faster than that (10,000 a second at 100 ms: about one per tick). */
#define AUDIT_WAKE_AT 2048
/* Queued records at most; an append past it commits the queue itself (the writer is behind:
 * the disk is the bottleneck, and waiting for it is the only bound that loses nothing). */
#define AUDIT_QUEUE_MAX 32768
/* The journal is emptied once every record in it is committed and it has grown past this. */
#define AUDIT_JOURNAL_TRUNCATE_AT (256 * 1024)
/* What a journal left by a crash may hold at most to be read back (records of a few seconds
 * of claims; a longer one is a writer that failed for long, and its records are logged). */
#define AUDIT_JOURNAL_MAX (256 * 1024 * 1024)

/* An append waiting for its commit: on the appender's stack (bh_audit_append) until the
 * commit of its sequence number, or an audit_copy owned by the queue (async). */
struct audit_wait {
    struct audit_wait *next;
    const struct bh_audit_rec *rec;
    long long at_ms;
    char at[32];
    uint64_t seq;
    uint64_t jseq; /* its journal line's number (bh_audit_append_logged), else 0 */
    int async;
    int rc;
    char error[256];
};

/* A queued record of bh_audit_append_async, with copies of its strings. */
struct audit_copy {
    struct audit_wait w;
    struct bh_audit_rec rec;
};

/* Group commit: appenders queue their records; whichever finds no commit running (a
 * synchronous appender, the writer thread, a query) writes the whole queue in one transaction
 * while the next ones queue up behind it. A synchronous append returns once its record is
 * committed; concurrent appends share the commit's cost. Records are committed in the order
 * they were queued. */
struct bh_audit {
    pthread_mutex_t lock;  /* the connection */
    pthread_mutex_t qlock; /* everything below */
    pthread_cond_t qdone;  /* a commit finished */
    pthread_cond_t wake;   /* the writer: a full batch, or stop (CLOCK_MONOTONIC) */
    struct audit_wait *head, **tail;
    int writing;
    uint64_t seq;       /* of the last record queued */
    uint64_t committed; /* every record up to this seq is committed (or failed) */
    size_t queued;      /* records in the queue */
    pthread_t writer;
    int has_writer, stopping;
    int flush_ms;
    sqlite3 *db;
    sqlite3_stmt *insert; /* prepared once: an append is on every audited call's path */
    long long max_records;
    int unpruned; /* records appended since the last prune */
    /* The journal (bh_audit_append_logged): <path>.pending, lines "<jseq> <record JSON>",
     * appended under qlock in the order of the queue. audit_journal's row holds the last
     * jseq committed, in the same transaction as its record: a line at or below it is in
     * audit already, one above it is committed when the next writer starts. */
    char *jpath;
    int jfd;               /* -1: no journal (no writer) */
    uint64_t jseq;         /* of the last line written */
    uint64_t jqueued;      /* journaled records queued, not yet committed */
    size_t jbytes;         /* written since the journal was last emptied */
    sqlite3_stmt *jcommit; /* records the last jseq committed */
};

static const char audit_schema[] =
    "PRAGMA journal_mode=WAL;"
    /* A process crash keeps every commit (it is in the OS); only a power loss may lose the
     * last ones, which is the store's rule for what is not a resource spec. */
    "PRAGMA synchronous=NORMAL;"
    "CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER NOT "
    "NULL, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, tenant TEXT, target "
    "TEXT, outcome TEXT, status INTEGER, error TEXT);"
    "CREATE INDEX IF NOT EXISTS audit_tenant ON audit(tenant, id);"
    "CREATE INDEX IF NOT EXISTS audit_actor ON audit(actor, id);"
    "CREATE TABLE IF NOT EXISTS audit_journal (id INTEGER PRIMARY KEY CHECK (id = 1), seq "
    "INTEGER NOT NULL);";

static const char audit_insert[] = "INSERT INTO audit (at_ms, at, actor, action, tenant, target, "
                                   "outcome, status, error) VALUES (?,?,?,?,?,?,?,?,?)";
static const char audit_jcommit[] = "INSERT OR REPLACE INTO audit_journal (id, seq) VALUES (1, ?)";

int bh_audit_open(const char *path, long long max_records, struct bh_audit **out,
                  struct bh_err *err)
{
    sqlite3 *db = NULL;
    char *msg = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        bh_err_set(err, BH_EIO, "open audit log %s: %s", path, db ? sqlite3_errmsg(db) : "?");
        sqlite3_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *insert = NULL, *jcommit = NULL;
    if (sqlite3_exec(db, audit_schema, NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_prepare_v2(db, audit_insert, -1, &insert, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, audit_jcommit, -1, &jcommit, NULL) != SQLITE_OK) {
        bh_err_set(err, BH_EIO, "audit log %s: %s", path, msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        sqlite3_finalize(insert);
        sqlite3_close(db);
        return -1;
    }
    struct bh_audit *a = bh_xcalloc(1, sizeof(*a));
    pthread_mutex_init(&a->lock, NULL);
    pthread_mutex_init(&a->qlock, NULL);
    pthread_cond_init(&a->qdone, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&a->wake, &ca);
    pthread_condattr_destroy(&ca);
    a->tail = &a->head;
    a->db = db;
    a->insert = insert;
    a->jcommit = jcommit;
    a->jpath = bh_xasprintf("%s.pending", path);
    a->jfd = -1;
    a->max_records = max_records;
    a->unpruned = AUDIT_PRUNE_EVERY;
    *out = a;
    return 0;
}

void bh_audit_close(struct bh_audit *a)
{
    if (!a)
        return;
    pthread_mutex_lock(&a->qlock);
    int joined = a->has_writer;
    a->stopping = 1;
    pthread_cond_signal(&a->wake);
    pthread_mutex_unlock(&a->qlock);
    if (joined) /* it commits what is queued before it returns */
        pthread_join(a->writer, NULL);
    if (a->jfd >= 0) {
        /* Everything in it is committed: the writer commits the queue before it returns. */
        if (ftruncate(a->jfd, 0) < 0)
            bh_warn("audit", "empty %s: %s", a->jpath, strerror(errno));
        close(a->jfd);
    }
    free(a->jpath);
    sqlite3_finalize(a->jcommit);
    sqlite3_finalize(a->insert);
    sqlite3_close(a->db);
    pthread_mutex_destroy(&a->lock);
    pthread_mutex_destroy(&a->qlock);
    pthread_cond_destroy(&a->qdone);
    pthread_cond_destroy(&a->wake);
    free(a);
}

static void audit_bind_text(sqlite3_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

/* Locked (lock), after a batch's inserted records: prunes at the first batch (a lowered bound
 * applies at once) and then once per AUDIT_PRUNE_EVERY records, at most once per batch. */
static void audit_prune(struct bh_audit *a, int inserted)
{
    sqlite3_stmt *st = NULL;
    a->unpruned += inserted;
    if (a->unpruned < AUDIT_PRUNE_EVERY)
        return;
    a->unpruned = 0;
    if (sqlite3_prepare_v2(a->db, "DELETE FROM audit WHERE id <= (SELECT MAX(id) FROM audit) - ?",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, a->max_records);
        sqlite3_step(st);
    }
    sqlite3_finalize(st);
}

/* Locked (lock). Inserts one record; 0 or -1 with w->error set. */
static int audit_insert_one(struct bh_audit *a, struct audit_wait *w)
{
    const struct bh_audit_rec *r = w->rec;
    sqlite3_stmt *st = a->insert;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)w->at_ms);
    const char *texts[] = {w->at, r->actor, r->action, r->tenant, r->target, r->outcome};
    for (int i = 0; i < 6; i++)
        audit_bind_text(st, i + 2, texts[i]);
    sqlite3_bind_int(st, 8, r->status);
    audit_bind_text(st, 9, r->error);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        snprintf(w->error, sizeof(w->error), "audit append: %s", sqlite3_errmsg(a->db));
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* Writes a batch (a list of waits) in one transaction and sets each one's rc. */
static void audit_commit(struct bh_audit *a, struct audit_wait *batch)
{
    pthread_mutex_lock(&a->lock);
    int tx = sqlite3_exec(a->db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
    int inserted = 0;
    uint64_t jseq = 0;
    for (struct audit_wait *w = batch; w; w = w->next) {
        inserted += (w->rc = audit_insert_one(a, w)) == 0;
        jseq = w->jseq ? w->jseq : jseq;
    }
    audit_prune(a, inserted);
    if (jseq) { /* with the records: a journal line at or below it is never read back */
        sqlite3_bind_int64(a->jcommit, 1, (sqlite3_int64)jseq);
        sqlite3_step(a->jcommit);
        sqlite3_reset(a->jcommit);
    }
    if (tx && sqlite3_exec(a->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        for (struct audit_wait *w = batch; w; w = w->next) {
            w->rc = -1;
            snprintf(w->error, sizeof(w->error), "audit commit: %s", sqlite3_errmsg(a->db));
        }
        sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
    }
    pthread_mutex_unlock(&a->lock);
}

/* Locked (qlock). Queues w, stamped with the next sequence number. */
static void audit_enqueue(struct bh_audit *a, struct audit_wait *w)
{
    w->seq = ++a->seq;
    *a->tail = w;
    a->tail = &w->next;
    a->queued++;
}

static void audit_stamp(struct audit_wait *w)
{
    w->at_ms = bh_clock_wall_ms();
    bh_clock_rfc3339(w->at);
}

/* Logs the failures of a committed batch's queued records: nobody waits for them. */
static void audit_report_async(const struct audit_wait *batch)
{
    for (const struct audit_wait *w = batch; w; w = w->next)
        if (w->async && w->rc < 0)
            bh_error("audit", "%s by %s not recorded: %s", w->rec->action, w->rec->actor, w->error);
}

static void audit_copy_free(struct audit_copy *c)
{
    free((char *)c->rec.actor);
    free((char *)c->rec.action);
    free((char *)c->rec.tenant);
    free((char *)c->rec.target);
    free((char *)c->rec.outcome);
    free((char *)c->rec.error);
    free(c);
}

/* Locked (qlock), after a commit: empties the journal once it is long enough and every line
 * in it is committed, so that it stays short (no line is being written: they are written
 * under qlock). */
static void audit_journal_trim(struct bh_audit *a)
{
    if (a->jfd < 0 || a->jqueued || a->jbytes < AUDIT_JOURNAL_TRUNCATE_AT)
        return;
    if (ftruncate(a->jfd, 0) < 0)
        bh_warn("audit", "empty %s: %s", a->jpath, strerror(errno));
    else
        a->jbytes = 0;
}

/* Locked (qlock), no commit running: takes the whole queue and commits it (qlock released
 * meanwhile), then marks it committed, frees the queued copies and wakes the waiters. */
static void audit_drain(struct bh_audit *a)
{
    struct audit_wait *batch = a->head;
    a->head = NULL;
    a->tail = &a->head;
    a->queued = 0;
    a->writing = 1;
    pthread_mutex_unlock(&a->qlock);
    audit_commit(a, batch);
    audit_report_async(batch);
    pthread_mutex_lock(&a->qlock);
    for (struct audit_wait *w = batch, *next; w; w = next) {
        next = w->next; /* a synchronous appender's w is gone once committed covers it */
        a->committed = w->seq;
        a->jqueued -= w->jseq != 0; /* a failure is logged, as any queued record's */
        if (w->async)
            audit_copy_free((struct audit_copy *)w);
    }
    audit_journal_trim(a);
    a->writing = 0;
    pthread_cond_broadcast(&a->qdone);
}

/* Locked (qlock). Returns once every record up to seq is committed, committing the queue
 * itself whenever no one else is. */
static void audit_wait_for(struct bh_audit *a, uint64_t seq)
{
    while (a->committed < seq) {
        if (a->writing)
            pthread_cond_wait(&a->qdone, &a->qlock);
        else if (a->head)
            audit_drain(a);
    }
}

int bh_audit_append(struct bh_audit *a, const struct bh_audit_rec *r, struct bh_err *err)
{
    struct audit_wait me = {.rec = r};
    audit_stamp(&me);
    pthread_mutex_lock(&a->qlock);
    audit_enqueue(a, &me);
    audit_wait_for(a, me.seq);
    pthread_mutex_unlock(&a->qlock);
    return me.rc < 0 ? bh_err_set(err, BH_EIO, "%s", me.error) : 0;
}

static char *audit_dup(const char *s)
{
    return s ? bh_xstrdup(s) : NULL;
}

/* Fills queued copy c with copies of r's strings. */
static void audit_copy_rec(struct audit_copy *c, const struct bh_audit_rec *r)
{
    c->rec = (struct bh_audit_rec){.actor = audit_dup(r->actor),
                                   .action = audit_dup(r->action),
                                   .tenant = audit_dup(r->tenant),
                                   .target = audit_dup(r->target),
                                   .outcome = audit_dup(r->outcome),
                                   .status = r->status,
                                   .error = audit_dup(r->error)};
    c->w.rec = &c->rec;
    c->w.async = 1;
}

void bh_audit_append_async(struct bh_audit *a, const struct bh_audit_rec *r)
{
    struct audit_copy *c = bh_xcalloc(1, sizeof(*c));
    audit_copy_rec(c, r);
    audit_stamp(&c->w);
    pthread_mutex_lock(&a->qlock);
    audit_enqueue(a, &c->w);
    if (!a->has_writer || a->queued > AUDIT_QUEUE_MAX)
        audit_wait_for(a, a->seq); /* c may be freed from here on */
    else if (a->queued == AUDIT_WAKE_AT)
        pthread_cond_signal(&a->wake);
    pthread_mutex_unlock(&a->qlock);
}

/* A record as one journal line's JSON (owned): the fields of audit's row. */
static char *audit_journal_json(const struct audit_wait *w)
{
    const struct bh_audit_rec *r = w->rec;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "at_ms", (double)w->at_ms);
    cJSON_AddStringToObject(o, "at", w->at);
    const char *names[] = {"actor", "action", "tenant", "target", "outcome", "error"};
    const char *vals[] = {r->actor, r->action, r->tenant, r->target, r->outcome, r->error};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (vals[i])
            cJSON_AddStringToObject(o, names[i], vals[i]);
    cJSON_AddNumberToObject(o, "status", r->status);
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

/* Locked (qlock). Writes w's journal line, numbered with the next jseq: one write(2), so a
 * process crash keeps all of it or none. 0, or -1 (nothing numbered). */
static int audit_journal_write(struct bh_audit *a, struct audit_wait *w, const char *json)
{
    char head[32];
    int n = snprintf(head, sizeof(head), "%llu ", (unsigned long long)(a->jseq + 1));
    struct iovec iov[] = {{head, (size_t)n}, {(void *)json, strlen(json)}, {"\n", 1}};
    size_t len = iov[0].iov_len + iov[1].iov_len + 1;
    ssize_t wrote = writev(a->jfd, iov, 3);
    if (wrote != (ssize_t)len) {
        /* A short line is not read back (not JSON, or no newline); the next one starts on a
         * line of its own. */
        if (wrote > 0 && write(a->jfd, "\n", 1) == 1)
            a->jbytes += (size_t)wrote + 1;
        return -1;
    }
    a->jbytes += len;
    w->jseq = ++a->jseq;
    a->jqueued++;
    return 0;
}

int bh_audit_append_logged(struct bh_audit *a, const struct bh_audit_rec *r, struct bh_err *err)
{
    struct audit_copy *c = bh_xcalloc(1, sizeof(*c));
    audit_copy_rec(c, r);
    audit_stamp(&c->w);
    bh_autofree char *json = audit_journal_json(&c->w);
    pthread_mutex_lock(&a->qlock);
    /* The writer commits it: without one (or stopping), committed here and now. */
    int journal = a->jfd >= 0 && a->has_writer && !a->stopping;
    if (!journal || audit_journal_write(a, &c->w, json) < 0) {
        pthread_mutex_unlock(&a->qlock);
        if (journal)
            bh_warn("audit", "journal %s: %s; committing the record now", a->jpath,
                    strerror(errno));
        audit_copy_free(c);
        return bh_audit_append(a, r, err);
    }
    audit_enqueue(a, &c->w);
    if (a->queued > AUDIT_QUEUE_MAX)
        audit_wait_for(a, a->seq); /* c may be freed from here on */
    else if (a->queued == AUDIT_WAKE_AT)
        pthread_cond_signal(&a->wake);
    pthread_mutex_unlock(&a->qlock);
    return 0;
}

/* Locked (qlock): sleeps until the next flush is due, or a wake. */
static void audit_writer_sleep(struct bh_audit *a)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += a->flush_ms / 1000;
    until.tv_nsec += (long)(a->flush_ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&a->wake, &a->qlock, &until);
}

/* The writer: every flush interval (or at a full batch) commits what is queued; on stop,
 * everything queued, then returns. */
static void *audit_writer(void *arg)
{
    struct bh_audit *a = arg;
    pthread_mutex_lock(&a->qlock);
    for (;;) {
        int stopping = a->stopping;
        if (!stopping && a->queued < AUDIT_WAKE_AT)
            audit_writer_sleep(a);
        audit_wait_for(a, a->seq);
        if (stopping)
            break;
    }
    pthread_mutex_unlock(&a->qlock);
    return NULL;
}

/* Locked (lock), in a transaction. Inserts one journal line's record (text: "<jseq> <JSON>")
 * if it is above done; 1 inserted, 0 skipped (committed before, or not a whole line), -1 a
 * failed insert. *seq: its jseq. */
static int audit_replay_line(struct bh_audit *a, const char *text, uint64_t done, uint64_t *seq)
{
    char *end = NULL;
    *seq = strtoull(text, &end, 10);
    cJSON *o = end && *end == ' ' ? cJSON_Parse(end + 1) : NULL;
    if (!o || *seq <= done) {
        cJSON_Delete(o);
        *seq = o ? *seq : 0;
        return 0;
    }
    struct bh_audit_rec r = {.actor = bh_json_str(o, "actor"),
                             .action = bh_json_str(o, "action"),
                             .tenant = bh_json_str(o, "tenant"),
                             .target = bh_json_str(o, "target"),
                             .outcome = bh_json_str(o, "outcome"),
                             .status = (int)bh_json_int(o, "status", 0),
                             .error = bh_json_str(o, "error")};
    struct audit_wait w = {.rec = &r, .at_ms = bh_json_int(o, "at_ms", 0)};
    snprintf(w.at, sizeof(w.at), "%s", bh_json_str(o, "at") ? bh_json_str(o, "at") : "");
    int rc = r.actor && r.action ? audit_insert_one(a, &w) : 0;
    if (rc < 0)
        bh_error("audit", "journal line %llu: %s", (unsigned long long)*seq, w.error);
    cJSON_Delete(o);
    return rc < 0 ? -1 : 1;
}

/* Locked (lock). The last jseq committed (0: none yet). */
static uint64_t audit_journal_done(struct bh_audit *a)
{
    sqlite3_stmt *st = NULL;
    uint64_t done = 0;
    if (sqlite3_prepare_v2(a->db, "SELECT seq FROM audit_journal WHERE id = 1", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        done = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return done;
}

/* Commits the records a crash left in the journal (the lines above the last jseq committed),
 * in their order, after every record committed before: they were the queue's tail. Sets
 * a->jseq to the last number used. */
static int audit_journal_replay(struct bh_audit *a, struct bh_err *err)
{
    bh_autofree char *text = NULL;
    struct bh_err rerr;
    size_t len = 0;
    pthread_mutex_lock(&a->lock);
    uint64_t done = audit_journal_done(a), last = done;
    a->jseq = done;
    if (bh_fs_read_all(a->jpath, AUDIT_JOURNAL_MAX, &text, &len, &rerr) < 0) {
        pthread_mutex_unlock(&a->lock);
        if (rerr.code != BH_ETOOLARGE)
            return rerr.code == BH_ENOTFOUND ? 0 : (*err = rerr, -1);
        /* Not read back, kept aside for an operator: the daemon starts all the same. */
        bh_autofree char *aside = bh_xasprintf("%s.unread", a->jpath);
        bh_error("audit", "%s; moved to %s, its records not committed", rerr.msg, aside);
        return rename(a->jpath, aside) < 0 ? bh_err_errno(err, BH_EIO, "rename %s", a->jpath) : 0;
    }
    int rc = sqlite3_exec(a->db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK ? 0 : -1, replayed = 0;
    for (char *line = text, *nl; rc == 0 && (nl = strchr(line, '\n')); line = nl + 1) {
        *nl = '\0'; /* a last line without its newline was cut short: not read */
        uint64_t seq;
        int one = audit_replay_line(a, line, done, &seq);
        replayed += one > 0;
        last = seq > last ? seq : last;
    }
    sqlite3_bind_int64(a->jcommit, 1, (sqlite3_int64)last);
    sqlite3_step(a->jcommit);
    sqlite3_reset(a->jcommit);
    if (rc < 0 || sqlite3_exec(a->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        rc = bh_err_set(err, BH_EIO, "audit journal %s: %s", a->jpath, sqlite3_errmsg(a->db));
        sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
    }
    pthread_mutex_unlock(&a->lock);
    if (rc == 0 && replayed)
        bh_info("audit", "committed %d records a daemon crash left in %s", replayed, a->jpath);
    a->jseq = last;
    return rc;
}

/* The journal of bh_audit_append_logged, empty, once what a crash left in it is committed. */
static int audit_journal_open(struct bh_audit *a, struct bh_err *err)
{
    if (audit_journal_replay(a, err) < 0)
        return -1;
    a->jfd = open(a->jpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (a->jfd < 0 || ftruncate(a->jfd, 0) < 0) {
        bh_err_errno(err, BH_EIO, "audit journal %s", a->jpath);
        if (a->jfd >= 0)
            close(a->jfd);
        a->jfd = -1;
        return -1;
    }
    return 0;
}

int bh_audit_start_writer(struct bh_audit *a, int flush_ms, struct bh_err *err)
{
    if (a->jfd < 0 && !a->has_writer && audit_journal_open(a, err) < 0)
        return -1;
    pthread_mutex_lock(&a->qlock);
    a->flush_ms = flush_ms > 0 ? flush_ms : 1;
    int rc = a->has_writer ? bh_err_set(err, BH_EINVAL, "the audit writer is already running")
             : pthread_create(&a->writer, NULL, audit_writer, a) != 0
                 ? bh_err_set(err, BH_EIO, "audit writer: cannot start a thread")
                 : 0;
    a->has_writer = rc == 0 || a->has_writer;
    pthread_mutex_unlock(&a->qlock);
    return rc;
}

static cJSON *audit_row(sqlite3_stmt *st)
{
    static const char *const cols[] = {"at", "actor", "action", "tenant", "target", "outcome"};
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", (double)sqlite3_column_int64(st, 0));
    for (int i = 0; i < 6; i++) {
        const unsigned char *v = sqlite3_column_text(st, i + 1);
        if (v)
            cJSON_AddStringToObject(o, cols[i], (const char *)v);
    }
    if (sqlite3_column_int(st, 7))
        cJSON_AddNumberToObject(o, "status", sqlite3_column_int(st, 7));
    const unsigned char *e = sqlite3_column_text(st, 8);
    if (e)
        cJSON_AddStringToObject(o, "error", (const char *)e);
    return o;
}

int bh_audit_query(struct bh_audit *a, const struct bh_audit_query *q, cJSON **out,
                   struct bh_err *err)
{
    static const char sql[] =
        "SELECT id, at, actor, action, tenant, target, outcome, status, error FROM audit "
        "WHERE (?1 IS NULL OR tenant = ?1) AND (?2 IS NULL OR actor = ?2) AND at_ms >= ?3 "
        "ORDER BY id DESC LIMIT ?4";
    pthread_mutex_lock(&a->qlock); /* what was appended before is part of the answer */
    audit_wait_for(a, a->seq);
    pthread_mutex_unlock(&a->qlock);
    pthread_mutex_lock(&a->lock);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(a->db, sql, -1, &st, NULL);
    cJSON *list = cJSON_CreateArray();
    if (rc == SQLITE_OK) {
        audit_bind_text(st, 1, q->tenant);
        audit_bind_text(st, 2, q->actor);
        sqlite3_bind_int64(st, 3, q->since_ms);
        sqlite3_bind_int(st, 4, q->limit > 0 ? q->limit : 100);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            cJSON_AddItemToArray(list, audit_row(st));
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        bh_err_set(err, BH_EIO, "audit query: %s", sqlite3_errmsg(a->db));
        cJSON_Delete(list);
        list = NULL;
    }
    pthread_mutex_unlock(&a->lock);
    *out = list;
    return list ? 0 : -1;
}
