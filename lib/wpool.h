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
 * WPOOL_BATCH: CPU-bound jobs (scans). The threads run under SCHED_BATCH,
 * which the kernel treats as CPU-bound: other threads' wake-ups preempt
 * them less eagerly (fewer switches in the middle of a scan, whose cache
 * and TLB contents another task would evict). The loop and the I/O
 * pools stay SCHED_OTHER, so they still get a core at once. */
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
