/* The keyed work queue (workq.h): a FIFO list under one mutex; a worker takes the first job
 * none of whose keys is held by a running job or by an earlier job still queued, so jobs of
 * one key keep their order and never overlap. Queues are small (tens), a scan is cheap. */
#include "workq.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORKQ_MAX_WORKERS 16

struct workq_job {
    char keys[BHT_WORKQ_KEYS][BHT_WORKQ_KEY];
    void *job;
    int running;
    struct workq_job *next;
};

struct bht_workq {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct workq_job *head; /* queued and running jobs, in arrival order */
    int n, max, stopping;
    bht_work_fn fn;
    void (*free_job)(void *);
    void *arg;
    pthread_t threads[WORKQ_MAX_WORKERS];
    int n_threads;
};

static int workq_shares(const struct workq_job *a, const struct workq_job *b)
{
    for (int i = 0; i < BHT_WORKQ_KEYS; i++)
        for (int j = 0; a->keys[i][0] && j < BHT_WORKQ_KEYS; j++)
            if (strcmp(a->keys[i], b->keys[j]) == 0)
                return 1;
    return 0;
}

/* The first queued job no earlier job (running or queued) shares a key with. */
static struct workq_job *workq_next(struct bht_workq *q)
{
    for (struct workq_job *j = q->head; j; j = j->next) {
        if (j->running)
            continue;
        int blocked = 0;
        for (struct workq_job *e = q->head; e != j && !blocked; e = e->next)
            blocked = workq_shares(j, e);
        if (!blocked)
            return j;
    }
    return NULL;
}

static void workq_unlink(struct bht_workq *q, struct workq_job *j)
{
    for (struct workq_job **p = &q->head; *p; p = &(*p)->next)
        if (*p == j) {
            *p = j->next;
            break;
        }
    q->n--;
}

static void *workq_main(void *arg)
{
    struct bht_workq *q = arg;
    pthread_mutex_lock(&q->lock);
    for (;;) {
        struct workq_job *j = NULL;
        while (!q->stopping && !(j = workq_next(q)))
            pthread_cond_wait(&q->cond, &q->lock);
        if (q->stopping)
            break;
        j->running = 1;
        pthread_mutex_unlock(&q->lock);
        q->fn(q->arg, j->job);
        q->free_job(j->job);
        pthread_mutex_lock(&q->lock);
        workq_unlink(q, j);
        free(j);
        pthread_cond_broadcast(&q->cond); /* a job waiting on its keys may go now */
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

struct bht_workq *bht_workq_new(int workers, int max_jobs, bht_work_fn fn,
                                void (*free_job)(void *job), void *arg)
{
    struct bht_workq *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->cond, NULL);
    q->max = max_jobs;
    q->fn = fn;
    q->free_job = free_job;
    q->arg = arg;
    workers = workers < 1 ? 1 : workers > WORKQ_MAX_WORKERS ? WORKQ_MAX_WORKERS : workers;
    for (; q->n_threads < workers; q->n_threads++)
        if (pthread_create(&q->threads[q->n_threads], NULL, workq_main, q) != 0) {
            bht_workq_free(q);
            return NULL;
        }
    return q;
}

int bht_workq_push(struct bht_workq *q, const char *const keys[BHT_WORKQ_KEYS], void *job)
{
    struct workq_job *j = calloc(1, sizeof(*j));
    if (!j)
        return -1;
    for (int i = 0; i < BHT_WORKQ_KEYS; i++)
        snprintf(j->keys[i], sizeof(j->keys[i]), "%s", keys[i] ? keys[i] : "");
    j->job = job;
    pthread_mutex_lock(&q->lock);
    if (q->n >= q->max || q->stopping) {
        pthread_mutex_unlock(&q->lock);
        free(j);
        return -1;
    }
    struct workq_job **p = &q->head;
    while (*p)
        p = &(*p)->next;
    *p = j;
    q->n++;
    pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->lock);
    return 0;
}

void bht_workq_free(struct bht_workq *q)
{
    if (!q)
        return;
    pthread_mutex_lock(&q->lock);
    q->stopping = 1;
    pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->lock);
    for (int i = 0; i < q->n_threads; i++)
        pthread_join(q->threads[i], NULL);
    while (q->head) {
        struct workq_job *j = q->head;
        q->head = j->next;
        q->free_job(j->job);
        free(j);
    }
    pthread_cond_destroy(&q->cond);
    pthread_mutex_destroy(&q->lock);
    free(q);
}
