/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * wpool.h - worker threads that hand results back to a libev loop.
 * wpool_submit() queues work(arg) for a worker thread; when it returns,
 * done(arg) runs on the loop thread (woken through ev_async). Anything
 * that may block or burn CPU goes here: fsync, rename, scans, password
 * hashing, getaddrinfo.
 * wpool_post() lets any thread schedule done(arg) on the loop thread with
 * no work step: a filter that answers from its own thread uses it.
 * Owns: its threads and queued jobs. Borrows: the loop.
 * Threads: wpool_submit/wpool_post from any thread; new/free on the loop.
 */
#ifndef SLUICE_WPOOL_H
#define SLUICE_WPOOL_H

#include <ev.h>

struct wpool;

typedef void (*wpool_fn)(void *arg);

/* name: the threads' name (ps -L, /proc/PID/task/TID/comm), at most
 * 15 bytes kept; NULL: the process's.
 * WPOOL_BATCH: CPU-bound jobs (scans). The threads run under SCHED_BATCH:
 * Linux decides wake-up preemption by the policy of the thread that wakes,
 * so a batch thread that wakes does not preempt the one running. That a
 * scan is not preempted by the loop's and the I/O threads' wake-ups (each
 * switch costs the scan its cache and TLB contents) comes from
 * sluice_batch_scheduling, which puts the whole process under SCHED_BATCH
 * (sluiced.c); this flag keeps the scan threads there when it is off. */
#define WPOOL_BATCH 1
struct wpool *wpool_new(struct ev_loop *loop, int nthreads, const char *name,
                        int flags);
/* Waits for queued work to finish, runs pending done callbacks, joins. */
void wpool_free(struct wpool *p); /* NULL ok */
void wpool_submit(struct wpool *p, wpool_fn work, wpool_fn done, void *arg);
void wpool_post(struct wpool *p, wpool_fn done, void *arg);
/* Jobs submitted and not yet completed on the loop. */
unsigned wpool_pending(struct wpool *p);

#endif
