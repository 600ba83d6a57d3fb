/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * wpool.c - worker threads that hand results back to a libev loop.
 * Two FIFO lists under one mutex: todo (for workers) and done (for the
 * loop). A worker moves a job from todo to done and signals the ev_async;
 * the async callback drains done on the loop thread.
 * Wake-ups cost more than the work of most jobs (a context switch each on
 * a busy 2-core box), so: a submit wakes a worker only when one is
 * asleep and no wake-up is already on its way, and signals after the
 * unlock (a thread woken under the lock would sleep again on it); a
 * worker takes the next job before it sleeps; the loop accounts a
 * drained batch under one lock.
 */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

#include "lib/log.h"
#include "lib/wpool.h"
#include "lib/xalloc.h"

struct wpool_job {
    wpool_fn work;
    wpool_fn done;
    void *arg;
    struct wpool_job *next;
};

struct wpool_list {
    struct wpool_job *head, *tail;
};

struct wpool {
    struct ev_loop *loop;
    ev_async async;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    struct wpool_list todo, done;
    pthread_t *threads;
    int nthreads;
    int stopping;
    int idle;   /* workers in pthread_cond_wait */
    int waking; /* signals sent and not yet taken up by a worker */
    unsigned ntodo;
    unsigned pending;
    int flags;
    char name[16];
};

static void
wpool_push(struct wpool_list *l, struct wpool_job *j)
{
    j->next = NULL;
    if (l->tail)
        l->tail->next = j;
    else
        l->head = j;
    l->tail = j;
}

static struct wpool_job *
wpool_pop(struct wpool_list *l)
{
    struct wpool_job *j = l->head;

    if (j) {
        l->head = j->next;
        if (l->head == NULL)
            l->tail = NULL;
    }
    return j;
}

static void *
wpool_main(void *arg)
{
    struct wpool *p = arg;
    struct wpool_job *j;

    if (p->name[0])
        (void) pthread_setname_np(pthread_self(), p->name);
    if (p->flags & WPOOL_BATCH) {
        struct sched_param sp = {0};

        if (pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp) != 0)
            log_debug("wpool %s: SCHED_BATCH refused", p->name);
    }
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->todo.head == NULL && !p->stopping) {
            p->idle++;
            pthread_cond_wait(&p->cond, &p->mu);
            p->idle--;
            if (p->waking > 0)
                p->waking--;
        }
        if ((j = wpool_pop(&p->todo)) == NULL)
            break; /* stopping and nothing left */
        p->ntodo--;
        pthread_mutex_unlock(&p->mu);
        if (j->work)
            j->work(j->arg);
        pthread_mutex_lock(&p->mu);
        wpool_push(&p->done, j);
        ev_async_send(p->loop, &p->async);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void
wpool_drain(struct wpool *p)
{
    struct wpool_list l;
    struct wpool_job *j;
    unsigned n = 0;

    pthread_mutex_lock(&p->mu);
    l = p->done;
    p->done.head = p->done.tail = NULL;
    pthread_mutex_unlock(&p->mu);
    for (j = l.head; j; j = j->next)
        n++;
    if (n == 0)
        return;
    /* done() may submit again: pending already counts this batch out */
    pthread_mutex_lock(&p->mu);
    p->pending -= n;
    pthread_mutex_unlock(&p->mu);
    while ((j = wpool_pop(&l)) != NULL) {
        if (j->done)
            j->done(j->arg);
        free(j);
    }
}

static void
wpool_async_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void) loop;
    (void) revents;
    wpool_drain(w->data);
}

struct wpool *
wpool_new(struct ev_loop *loop, int nthreads, const char *name, int flags)
{
    struct wpool *p = xcalloc(1, sizeof(*p));
    int i;

    if (nthreads < 1)
        nthreads = 1;
    if (name)
        snprintf(p->name, sizeof(p->name), "%s", name);
    p->flags = flags;
    p->loop = loop;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cond, NULL);
    ev_async_init(&p->async, wpool_async_cb);
    p->async.data = p;
    ev_async_start(loop, &p->async);
    ev_unref(loop); /* the pool alone does not keep the loop running */
    p->threads = xcalloc((size_t) nthreads, sizeof(pthread_t));
    for (i = 0; i < nthreads; i++)
        if (pthread_create(&p->threads[i], NULL, wpool_main, p) != 0)
            log_fatal("wpool: cannot create worker thread");
    p->nthreads = nthreads;
    return p;
}

void
wpool_free(struct wpool *p)
{
    int i;

    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
    for (i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    wpool_drain(p);
    ev_ref(p->loop);
    ev_async_stop(p->loop, &p->async);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cond);
    free(p->threads);
    free(p);
}

void
wpool_submit(struct wpool *p, wpool_fn work, wpool_fn done, void *arg)
{
    struct wpool_job *j = xmalloc(sizeof(*j));

    int wake = 0;

    j->work = work;
    j->done = done;
    j->arg = arg;
    pthread_mutex_lock(&p->mu);
    p->pending++;
    wpool_push(&p->todo, j);
    p->ntodo++;
    /* one sleeper per queued job not already covered by a wake-up */
    if (p->idle > p->waking && p->ntodo > (unsigned) p->waking) {
        p->waking++;
        wake = 1;
    }
    pthread_mutex_unlock(&p->mu);
    if (wake)
        pthread_cond_signal(&p->cond);
}

void
wpool_post(struct wpool *p, wpool_fn done, void *arg)
{
    struct wpool_job *j = xmalloc(sizeof(*j));

    j->work = NULL;
    j->done = done;
    j->arg = arg;
    pthread_mutex_lock(&p->mu);
    p->pending++;
    wpool_push(&p->done, j);
    ev_async_send(p->loop, &p->async);
    pthread_mutex_unlock(&p->mu);
}

unsigned
wpool_pending(struct wpool *p)
{
    unsigned n;

    pthread_mutex_lock(&p->mu);
    n = p->pending;
    pthread_mutex_unlock(&p->mu);
    return n;
}
