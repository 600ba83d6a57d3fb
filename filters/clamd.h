/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * clamd.h - a clamd INSTREAM client, one per message, on a libev loop.
 * clamd_scan_new connects (non-blocking) to "unix:/path" or
 * "inet:host:port" (numeric host, IPv6 in brackets) and sends
 * "zINSTREAM\0"; clamd_scan_feed queues message bytes, sent as
 * <length:4 bytes big-endian><data> chunks as the socket takes them;
 * clamd_scan_end sends the zero-length chunk and waits for the reply
 * ("stream: OK", "stream: NAME FOUND", "INSTREAM size limit exceeded.
 * ERROR", "... ERROR"). Every wait is bounded by the timeout (seconds of
 * no progress). The result arrives once through done, on the loop thread,
 * never from inside clamd_scan_new/feed/end.
 * Owns: its socket and buffered bytes. Borrows: the loop.
 * Threads: loop thread only.
 */
#ifndef SLUICE_CLAMD_H
#define SLUICE_CLAMD_H

#include <stddef.h>

enum clamd_result {
    CLAMD_CLEAN,
    CLAMD_VIRUS, /* text: the signature name */
    CLAMD_LIMIT, /* text: why (clamd's size limit) */
    CLAMD_ERROR  /* text: why (connect, timeout, protocol, clamd error) */
};

typedef void (*clamd_done_fn)(void *arg, enum clamd_result r, const char *text);

struct clamd_scan;
/* loop: a struct ev_loop *. Never NULL: a connect failure is reported
 * through done after clamd_scan_end (or at once if done is set). */
struct clamd_scan *clamd_scan_new(void *loop, const char *spec, double timeout);
/* Queue bytes (copied). Returns the bytes buffered and not yet sent, so
 * the caller can hold back when it is large (CLAMD_BUF_HIGH). */
size_t clamd_scan_feed(struct clamd_scan *c, const void *p, size_t n);
#define CLAMD_BUF_HIGH (256 * 1024)
/* Called (on the loop) whenever the buffered bytes fall below
 * CLAMD_BUF_HIGH / 2 after having been over CLAMD_BUF_HIGH. */
void clamd_scan_set_drain(struct clamd_scan *c, void (*cb)(void *), void *arg);
void clamd_scan_end(struct clamd_scan *c, clamd_done_fn done, void *arg);
/* Cancel (no callback afterwards) and free. NULL ok. */
void clamd_scan_free(struct clamd_scan *c);

#endif
