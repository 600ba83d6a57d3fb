/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test_wpool.c - worker pool: many jobs from several submitter threads,
 * done callbacks on the loop thread, wpool_post from a foreign thread,
 * wpool_free finishing queued work, every worker woken when the jobs
 * need them all at once, the threads' name.
 */
#include <ev.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmocka.h>
#include <dirent.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "lib/wpool.h"

#define NSUBMITTERS 4
#define PER_THREAD  250

struct ctx {
    struct wpool *pool;
    pthread_t loop_thread;
    pthread_mutex_t mu;
    int worked;     /* under mu */
    int done;       /* loop thread only */
    int wrong_done; /* done callbacks off the loop thread */
    int wrong_work; /* work on the loop thread */
    int gate;       /* under mu: work waits while 0 */
    pthread_cond_t cond;
};

struct job {
    struct ctx *c;
    int seq;
};

static void
job_work(void *arg)
{
    struct job *j = arg;
    struct ctx *c = j->c;

    pthread_mutex_lock(&c->mu);
    while (!c->gate)
        pthread_cond_wait(&c->cond, &c->mu);
    c->worked++;
    if (pthread_equal(pthread_self(), c->loop_thread))
        c->wrong_work++;
    pthread_mutex_unlock(&c->mu);
}

static void
job_done(void *arg)
{
    struct job *j = arg;

    if (!pthread_equal(pthread_self(), j->c->loop_thread))
        j->c->wrong_done++;
    j->c->done++;
    free(j);
}

static void
ctx_init_flags(struct ctx *c, struct ev_loop *loop, int nthreads, int flags)
{
    c->pool = wpool_new(loop, nthreads, "test-pool", flags);
    c->loop_thread = pthread_self();
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cond, NULL);
    c->worked = c->done = c->wrong_done = c->wrong_work = 0;
    c->gate = 1;
}

static void
ctx_init(struct ctx *c, struct ev_loop *loop, int nthreads)
{
    ctx_init_flags(c, loop, nthreads, 0);
}

static void
ctx_fini(struct ctx *c)
{
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cond);
}

static void
guard_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    *(int *) w->data = 1;
}

/* Run the loop until c->done reaches n (10 s guard). */
static void
run_until(struct ev_loop *loop, struct ctx *c, int n)
{
    ev_timer guard;
    int timeout = 0;

    ev_timer_init(&guard, guard_cb, 10.0, 0);
    guard.data = &timeout;
    ev_timer_start(loop, &guard);
    while (c->done < n && !timeout)
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &guard);
    assert_false(timeout);
}

static void *
submitter(void *arg)
{
    struct ctx *c = arg;
    int i;

    for (i = 0; i < PER_THREAD; i++) {
        struct job *j = malloc(sizeof(*j));

        j->c = c;
        j->seq = i;
        wpool_submit(c->pool, job_work, job_done, j);
    }
    return NULL;
}

static void
test_many_submitters(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct ctx c;
    pthread_t th[NSUBMITTERS];
    int i;

    ctx_init(&c, loop, 4);
    for (i = 0; i < NSUBMITTERS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, submitter, &c), 0);
    for (i = 0; i < NSUBMITTERS; i++)
        pthread_join(th[i], NULL);
    run_until(loop, &c, NSUBMITTERS * PER_THREAD);
    assert_int_equal(c.done, NSUBMITTERS * PER_THREAD);
    assert_int_equal(c.worked, NSUBMITTERS * PER_THREAD);
    assert_int_equal(c.wrong_done, 0);
    assert_int_equal(c.wrong_work, 0);
    assert_int_equal(wpool_pending(c.pool), 0);
    wpool_free(c.pool);
    ctx_fini(&c);
    ev_loop_destroy(loop);
}

static void *
poster(void *arg)
{
    struct ctx *c = arg;
    int i;

    for (i = 0; i < 100; i++) {
        struct job *j = malloc(sizeof(*j));

        j->c = c;
        j->seq = i;
        wpool_post(c->pool, job_done, j);
    }
    return NULL;
}

static void
test_post_foreign_thread(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct ctx c;
    pthread_t th;

    ctx_init(&c, loop, 1);
    assert_int_equal(pthread_create(&th, NULL, poster, &c), 0);
    pthread_join(th, NULL);
    assert_int_equal(c.done, 0); /* nothing runs until the loop does */
    run_until(loop, &c, 100);
    assert_int_equal(c.done, 100);
    assert_int_equal(c.worked, 0); /* post has no work step */
    assert_int_equal(c.wrong_done, 0);
    assert_int_equal(wpool_pending(c.pool), 0);
    wpool_free(c.pool);
    ctx_fini(&c);
    ev_loop_destroy(loop);
}

static void
test_pending(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct ctx c;
    struct job *j = malloc(sizeof(*j));

    ctx_init(&c, loop, 2);
    c.gate = 0; /* work blocks */
    j->c = &c;
    wpool_submit(c.pool, job_work, job_done, j);
    assert_int_equal(wpool_pending(c.pool), 1);
    usleep(10000);
    assert_int_equal(c.worked, 0);
    pthread_mutex_lock(&c.mu);
    c.gate = 1;
    pthread_cond_broadcast(&c.cond);
    pthread_mutex_unlock(&c.mu);
    run_until(loop, &c, 1);
    assert_int_equal(wpool_pending(c.pool), 0);
    wpool_free(c.pool);
    ctx_fini(&c);
    ev_loop_destroy(loop);
}

/* wpool_free() without running the loop: queued work still runs, and
 * every done callback runs on the calling (loop) thread. */
static void
test_free_finishes(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct ctx c;
    int i;

    ctx_init(&c, loop, 2);
    c.gate = 0;
    for (i = 0; i < 50; i++) {
        struct job *j = malloc(sizeof(*j));

        j->c = &c;
        j->seq = i;
        wpool_submit(c.pool, job_work, job_done, j);
    }
    struct job *pj = malloc(sizeof(*pj));
    pj->c = &c;
    pj->seq = 50;
    wpool_post(c.pool, job_done, pj);
    pthread_mutex_lock(&c.mu);
    c.gate = 1;
    pthread_cond_broadcast(&c.cond);
    pthread_mutex_unlock(&c.mu);
    wpool_free(c.pool);
    assert_int_equal(c.worked, 50);
    assert_int_equal(c.done, 51);
    assert_int_equal(c.wrong_done, 0);
    ctx_fini(&c);
    ev_loop_destroy(loop);
}

/* Jobs that can finish only when NTHR of them run at the same time: a
 * submit that failed to wake an idle worker would leave the barrier
 * short and hang (the 10 s guard fails the test). Submitted one at a
 * time with pauses (each worker asleep again by the next submit), then
 * in a burst (wake-ups still on their way when the next job comes). */
#define NTHR 4

struct meet {
    struct ctx *c;
    pthread_barrier_t *bar;
};

static void
meet_work(void *arg)
{
    struct meet *m = arg;

    pthread_barrier_wait(m->bar);
    pthread_mutex_lock(&m->c->mu);
    m->c->worked++;
    pthread_mutex_unlock(&m->c->mu);
}

static void
meet_done(void *arg)
{
    struct meet *m = arg;

    m->c->done++;
    free(m);
}

static void
test_all_workers_woken(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    pthread_barrier_t bar;
    struct ctx c;
    int round, i;

    ctx_init(&c, loop, NTHR);
    pthread_barrier_init(&bar, NULL, NTHR);
    for (round = 0; round < 40; round++) {
        for (i = 0; i < NTHR; i++) {
            struct meet *m = malloc(sizeof(*m));

            m->c = &c;
            m->bar = &bar;
            wpool_submit(c.pool, meet_work, meet_done, m);
            if (round % 2 == 0)
                usleep(2000);
        }
        run_until(loop, &c, (round + 1) * NTHR);
    }
    assert_int_equal(c.worked, 40 * NTHR);
    assert_int_equal(wpool_pending(c.pool), 0);
    wpool_free(c.pool);
    pthread_barrier_destroy(&bar);
    ctx_fini(&c);
    ev_loop_destroy(loop);
}

/* ps -L and /proc/PID/task/TID/comm show the pool's name; WPOOL_BATCH
 * threads run under SCHED_BATCH, the others (and the caller) do not. */
static int
count_threads(const char *name, int policy)
{
    struct dirent *de;
    DIR *d;
    int n = 0;

    assert_non_null(d = opendir("/proc/self/task"));
    while ((de = readdir(d)) != NULL) {
        char path[300], comm[32] = "";
        FILE *f;

        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/proc/self/task/%s/comm", de->d_name);
        if ((f = fopen(path, "r")) == NULL)
            continue;
        if (fgets(comm, sizeof(comm), f)
            && strncmp(comm, name, strlen(name)) == 0
            && comm[strlen(name)] == '\n'
            && sched_getscheduler(atoi(de->d_name)) == policy)
            n++;
        fclose(f);
    }
    closedir(d);
    return n;
}

static void
test_thread_name(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct ctx c, b;

    ctx_init(&c, loop, 3);
    ctx_init_flags(&b, loop, 2, WPOOL_BATCH);
    usleep(20000); /* the threads name themselves as they start */
    assert_int_equal(count_threads("test-pool", SCHED_OTHER), 3);
    assert_int_equal(count_threads("test-pool", SCHED_BATCH), 2);
    assert_int_equal(sched_getscheduler(0), SCHED_OTHER);
    wpool_free(c.pool);
    wpool_free(b.pool);
    ctx_fini(&c);
    ctx_fini(&b);
    ev_loop_destroy(loop);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_submitters),
        cmocka_unit_test(test_post_foreign_thread),
        cmocka_unit_test(test_pending),
        cmocka_unit_test(test_free_finishes),
        cmocka_unit_test(test_all_workers_woken),
        cmocka_unit_test(test_thread_name),
    };

    wpool_free(NULL);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
