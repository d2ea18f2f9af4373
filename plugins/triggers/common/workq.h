/* A bounded work queue with keyed ordering, for trigger plugins that acknowledge a request at
 * once and work on it afterwards (Slack's 3-second rule, Telegram's webhook): jobs sharing a
 * key (a user, a chat) run one at a time in arrival order, other jobs run in parallel on a
 * few worker threads. Code shared by the trigger plugins, compiled into each that pulls it in
 * through its deps.cmake. */
#ifndef BH_TRIGGER_COMMON_WORKQ_H
#define BH_TRIGGER_COMMON_WORKQ_H

#define BHT_WORKQ_KEYS 2
#define BHT_WORKQ_KEY 64

struct bht_workq;

/* Runs one job; the queue frees it afterwards with free_job. */
typedef void (*bht_work_fn)(void *arg, void *job);

/* workers threads, at most max_jobs jobs queued or running. NULL if threads cannot start. */
struct bht_workq *bht_workq_new(int workers, int max_jobs, bht_work_fn fn,
                                void (*free_job)(void *job), void *arg);
/* Queues job (taken) under keys (up to BHT_WORKQ_KEYS, NULL or "" for none; a job waits
 * while an earlier one sharing any key is queued or running). 0, or -1 when the queue is
 * full: job is not taken, the caller answers "busy". */
int bht_workq_push(struct bht_workq *q, const char *const keys[BHT_WORKQ_KEYS], void *job);
/* Drops the queued jobs, waits for the running ones, stops the workers. NULL is a no-op. */
void bht_workq_free(struct bht_workq *q);

#endif
