/* The code shared by the trigger plugins (plugins/triggers/common): Slack's v0 signature
 * against the example in Slack's own documentation, the secret-token header, the window of
 * seen ids, and the keyed work queue (one key's jobs in order and never overlapping, other
 * keys in parallel, the bound). Waits are on conditions with generous deadlines. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "seen.h"
#include "sig.h"
#include "workq.h"

/* https://api.slack.com/authentication/verifying-requests-from-slack */
static const char SLACK_SECRET[] = "8f742231b10e8888abcd99yyyzzz85a5";
static const char SLACK_TS[] = "1531420618";
static const char SLACK_SIG[] =
    "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
static const char SLACK_BODY[] =
    "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id="
    "G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-"
    "collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700"
    "885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2"
    "c447fce8b6703c";

static int slack(const char *ts, const char *sig, const char *body, long long now)
{
    return sig_slack_verify(SLACK_SECRET, ts, sig, body, strlen(body), now);
}

static void test_slack_signature(void **state)
{
    long long now = 1531420618 + 60;
    assert_int_equal(slack(SLACK_TS, SLACK_SIG, SLACK_BODY, now), SIG_OK);
    char upper[sizeof(SLACK_SIG)];
    snprintf(upper, sizeof(upper),
             "v0=A2114D57B48EAC39B9AD189DD8316235A7B4A8D21A10BD27519666489C69B503");
    assert_int_equal(slack(SLACK_TS, upper, SLACK_BODY, now), SIG_OK); /* hex is hex */
    /* One byte of the body, the timestamp or the MAC changed: no. */
    char body[sizeof(SLACK_BODY)];
    memcpy(body, SLACK_BODY, sizeof(body));
    body[10] ^= 1;
    assert_int_equal(slack(SLACK_TS, SLACK_SIG, body, now), SIG_MISMATCH);
    assert_int_equal(slack("1531420619", SLACK_SIG, SLACK_BODY, now), SIG_MISMATCH);
    char sig[sizeof(SLACK_SIG)];
    memcpy(sig, SLACK_SIG, sizeof(sig));
    sig[sizeof(sig) - 2] = sig[sizeof(sig) - 2] == '3' ? '4' : '3';
    assert_int_equal(slack(SLACK_TS, sig, SLACK_BODY, now), SIG_MISMATCH);
    /* The 5-minute window, both ways. */
    assert_int_equal(slack(SLACK_TS, SLACK_SIG, SLACK_BODY, 1531420618 + 300), SIG_OK);
    assert_int_equal(slack(SLACK_TS, SLACK_SIG, SLACK_BODY, 1531420618 + 301), SIG_STALE);
    assert_int_equal(slack(SLACK_TS, SLACK_SIG, SLACK_BODY, 1531420618 - 301), SIG_STALE);
    /* Headers missing or malformed. */
    assert_int_equal(slack(NULL, SLACK_SIG, SLACK_BODY, now), SIG_MISSING);
    assert_int_equal(slack(SLACK_TS, NULL, SLACK_BODY, now), SIG_MISSING);
    assert_int_equal(slack("15314x0618", SLACK_SIG, SLACK_BODY, now), SIG_MALFORMED);
    assert_int_equal(slack(SLACK_TS, SLACK_SIG + 3, SLACK_BODY, now), SIG_MALFORMED);
    assert_int_equal(slack(SLACK_TS, "v1=a2114d57", SLACK_BODY, now), SIG_MALFORMED);
    memcpy(sig, SLACK_SIG, sizeof(sig));
    sig[5] = 'g';
    assert_int_equal(slack(SLACK_TS, sig, SLACK_BODY, now), SIG_MALFORMED);
}

static void test_token(void **state)
{
    assert_int_equal(sig_token_verify("abc123", "abc123"), SIG_OK);
    assert_int_equal(sig_token_verify("abc123", "abc124"), SIG_MISMATCH);
    assert_int_equal(sig_token_verify("abc123", "abc12"), SIG_MISMATCH);
    assert_int_equal(sig_token_verify("abc123", "abc1234"), SIG_MISMATCH);
    assert_int_equal(sig_token_verify("abc123", ""), SIG_MISMATCH);
    assert_int_equal(sig_token_verify("", ""), SIG_MISMATCH); /* no token set: nothing passes */
    assert_int_equal(sig_token_verify("abc123", NULL), SIG_MISSING);
}

static void test_seen(void **state)
{
    static struct bht_seen s;
    memset(&s, 0, sizeof(s));
    assert_int_equal(bht_seen_check(&s, "a", 1000, 10), 0);
    assert_int_equal(bht_seen_check(&s, "a", 1005, 10), 1);
    assert_int_equal(bht_seen_check(&s, "b", 1005, 10), 0);
    assert_int_equal(bht_seen_check(&s, "a", 1011, 10), 0); /* expired: new again */
    /* Full: the entry closest to expiry makes room, the others stay. */
    char id[16];
    for (int i = 0; i < BHT_SEEN_MAX + 10; i++) {
        snprintf(id, sizeof(id), "id%d", i);
        assert_int_equal(bht_seen_check(&s, id, 2000, 100 + i), 0);
    }
    assert_true(s.n <= BHT_SEEN_MAX);
    snprintf(id, sizeof(id), "id%d", BHT_SEEN_MAX + 9);
    assert_int_equal(bht_seen_check(&s, id, 2000, 100), 1);
}

/* ---- the keyed work queue ---- */

struct record {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int order[64], n;
    int inside[2]; /* jobs of key a / b running now */
    int max_inside_a;
    int gate_open;   /* job "hold" waits for it */
    int b_done;      /* a job of key b finished */
    int hold_saw_b;  /* "hold" (key a) saw b finish while it waited: parallel */
    int hold_inside; /* "hold" is running */
};

struct job {
    int id, key; /* key 0 = a, 1 = b */
    int hold;
};

static int wait_until(struct record *r, const int *flag)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 20;
    int rc = 0;
    while (!*flag && rc == 0)
        rc = pthread_cond_timedwait(&r->cond, &r->lock, &until);
    return *flag;
}

static void job_run(void *arg, void *p)
{
    struct record *r = arg;
    struct job *j = p;
    pthread_mutex_lock(&r->lock);
    r->inside[j->key]++;
    if (j->key == 0 && r->inside[0] > r->max_inside_a)
        r->max_inside_a = r->inside[0];
    if (j->hold) {
        r->hold_inside = 1;
        pthread_cond_broadcast(&r->cond);
        r->hold_saw_b = wait_until(r, &r->b_done);
        wait_until(r, &r->gate_open);
    }
    r->order[r->n++] = j->id;
    r->inside[j->key]--;
    if (j->key == 1)
        r->b_done = 1;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

static struct job *job_new(int id, int key, int hold)
{
    struct job *j = calloc(1, sizeof(*j));
    *j = (struct job){id, key, hold};
    return j;
}

static int push(struct bht_workq *q, int id, int key, int hold)
{
    const char *keys[BHT_WORKQ_KEYS] = {key ? "b" : "a", key ? "chan-b" : NULL};
    struct job *j = job_new(id, key, hold);
    if (bht_workq_push(q, keys, j) == 0)
        return 0;
    free(j);
    return -1;
}

static void test_workq(void **state)
{
    struct record r = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    struct bht_workq *q = bht_workq_new(4, 16, job_run, free, &r);
    assert_non_null(q);
    /* a0 holds until b has run: b runs beside it (parallel keys). a1..a3 wait behind a0. */
    assert_int_equal(push(q, 0, 0, 1), 0);
    pthread_mutex_lock(&r.lock);
    assert_true(wait_until(&r, &r.hold_inside));
    pthread_mutex_unlock(&r.lock);
    for (int i = 1; i <= 3; i++)
        assert_int_equal(push(q, i, 0, 0), 0);
    assert_int_equal(push(q, 10, 1, 0), 0);
    assert_int_equal(push(q, 4, 0, 0), 0);
    pthread_mutex_lock(&r.lock);
    assert_true(wait_until(&r, &r.b_done));
    r.gate_open = 1;
    pthread_cond_broadcast(&r.cond);
    while (r.n < 6)
        assert_true(pthread_cond_wait(&r.cond, &r.lock) == 0);
    pthread_mutex_unlock(&r.lock);
    bht_workq_free(q);
    assert_true(r.hold_saw_b);
    assert_int_equal(r.max_inside_a, 1);
    int a_order[5], na = 0;
    for (int i = 0; i < r.n; i++)
        if (r.order[i] < 10)
            a_order[na++] = r.order[i];
    int want[] = {0, 1, 2, 3, 4};
    assert_int_equal(na, 5);
    assert_memory_equal(a_order, want, sizeof(want));
    assert_int_equal(r.order[0], 10); /* b finished first, while a0 held */
}

/* At most max_jobs queued or running: the next push is refused (the caller answers busy). */
static void test_workq_bound(void **state)
{
    struct record r = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    r.b_done = 1;
    struct bht_workq *q = bht_workq_new(2, 3, job_run, free, &r);
    assert_int_equal(push(q, 0, 0, 1), 0); /* held while running */
    pthread_mutex_lock(&r.lock);
    assert_true(wait_until(&r, &r.hold_inside));
    pthread_mutex_unlock(&r.lock);
    assert_int_equal(push(q, 1, 0, 0), 0); /* both wait behind it (one key) */
    assert_int_equal(push(q, 2, 0, 0), 0);
    assert_int_equal(push(q, 3, 0, 0), -1);
    assert_int_equal(push(q, 4, 1, 0), -1); /* full for every key */
    pthread_mutex_lock(&r.lock);
    r.gate_open = 1;
    pthread_cond_broadcast(&r.cond);
    while (r.n < 3)
        assert_true(pthread_cond_wait(&r.cond, &r.lock) == 0);
    pthread_mutex_unlock(&r.lock);
    assert_int_equal(push(q, 5, 0, 0), 0); /* room again */
    bht_workq_free(q);
}

/* Queued jobs are dropped (freed) when the queue stops; running ones finish. */
static void test_workq_free_drops_queued(void **state)
{
    struct record r = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    r.b_done = 1;
    struct bht_workq *q = bht_workq_new(1, 8, job_run, free, &r);
    assert_int_equal(push(q, 0, 0, 1), 0);
    pthread_mutex_lock(&r.lock);
    assert_true(wait_until(&r, &r.hold_inside));
    pthread_mutex_unlock(&r.lock);
    assert_int_equal(push(q, 1, 0, 0), 0);
    assert_int_equal(push(q, 2, 0, 0), 0);
    pthread_mutex_lock(&r.lock);
    r.gate_open = 1;
    pthread_cond_broadcast(&r.cond);
    pthread_mutex_unlock(&r.lock);
    bht_workq_free(q); /* the running job finishes; ASan/LSan see the queued ones freed */
    assert_true(r.n >= 1);
    assert_int_equal(r.order[0], 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slack_signature),
        cmocka_unit_test(test_token),
        cmocka_unit_test(test_seen),
        cmocka_unit_test(test_workq),
        cmocka_unit_test(test_workq_bound),
        cmocka_unit_test(test_workq_free_drops_queued),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
