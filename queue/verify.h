/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * verify.h - the address verification service (Postfix's verify(8)),
 * run by the queue manager: what reject_unverified_recipient and
 * reject_unverified_sender ask.
 *
 * A front asks over the unix socket public/verify, in the policy
 * protocol's framing (proxy/policy.c is the client):
 *   request=verify
 *   address=ADDR
 *   (empty line)
 * and gets "action=STATUS TEXT" and an empty line, STATUS one of ok,
 * defer, bounce (the last probe's outcome: deliverable, undeliverable
 * for now, undeliverable) or todo (no answer yet: "Address verification
 * in progress").
 *
 * The answers live in a cache, by address as given, kept as Postfix's
 * verify(8) keeps them: an entry past address_verify_positive_expire_time
 * (ok) or _negative_expire_time (others) is as none; one past its
 * _refresh_time is answered and probed again; a probe is sent at most
 * once per VERIFY_PROBE_TTL seconds for an address; a failed probe does
 * not overwrite an ok entry that has not expired (it is probed again on
 * the next query); with address_verify_negative_cache = no an expired
 * negative entry is dropped when it is asked for. Unlike Postfix, an
 * address being probed always has an entry (so that it is probed once,
 * however many ask). The cache is in memory, at most VERIFY_CACHE_MAX
 * entries (expired ones purged every
 * address_verify_cache_cleanup_interval; when full, the least recently
 * updated sixteenth is dropped at once).
 * With address_verify_map (btree:PATH or hash:PATH; Postfix's default is
 * btree:$data_directory/verify_cache, Sluice's empty: memory only) the
 * cache is read from PATH.db at start and written back in the pool every
 * VERIFY_SAVE_INTERVAL seconds when it changed (a new file renamed over
 * the old: a crash leaves the last whole one) and at stop, in Postfix's
 * format: a Postfix verify_cache carries over. A file that cannot be
 * read is a warning and an empty cache.
 *
 * A probe is the queue manager's (the probe callback): it routes the
 * address as mail to it would go and asks the next hop (MAIL FROM
 * address_verify_sender, RCPT, QUIT), and reports the outcome through
 * verify_result. At most address_verify_pending_request_limit probes run
 * at once; a query past that is answered todo and not probed.
 *
 * Owns: the socket, its connections, the cache. Borrows: the loop and
 * cf. Threads: the loop's.
 */
#ifndef SLUICE_VERIFY_H
#define SLUICE_VERIFY_H

#include <ev.h>

#include "conf/cf.h"
#include "lib/buf.h"
#include "lib/wpool.h"

#define VERIFY_PROBE_TTL     1000   /* seconds: a probe is taken as lost */
#define VERIFY_CACHE_MAX     100000 /* entries */
#define VERIFY_REQUEST_MAX   4096   /* bytes of one request */
#define VERIFY_TEXT_MAX      512    /* bytes of an answer's text */
#define VERIFY_CONN_MAX      1024   /* client connections at once */
#define VERIFY_SAVE_INTERVAL 60.0 /* seconds between address_verify_map saves \
                                   */

enum verify_status {
    VERIFY_OK,     /* deliverable */
    VERIFY_DEFER,  /* undeliverable for now (4xx, no connection) */
    VERIFY_BOUNCE, /* undeliverable (5xx, no route) */
    VERIFY_TODO    /* no outcome yet */
};

struct verify;

/* Start a probe of addr; the outcome comes back through
 * verify_result(v, addr, ...), later or from inside the call. 0, or -1
 * when none could be started (the address stays todo). */
typedef int verify_probe_fn(void *arg, const char *addr);

/* NULL and the reason in err when the socket cannot be made, a
 * parameter is not valid or address_verify_map cannot be read. The pool
 * writes address_verify_map. */
struct verify *verify_new(struct ev_loop *loop, struct wpool *pool,
                          const struct cf *cf, const char *qdir,
                          verify_probe_fn *probe, void *arg, struct buf *err);
/* NULL ok; unlinks the socket; saves address_verify_map when it changed
 * (the pool must be done: wpool_free first). */
void verify_free(struct verify *v);
/* A probe's outcome (status not VERIFY_TODO). */
void verify_result(struct verify *v, const char *addr, enum verify_status st,
                   const char *text);

/* The clock (unix seconds) the cache's times come from: time(), or a
 * test's own. */
extern long long (*verify_clock)(void);
/* Seconds between two saves of address_verify_map: VERIFY_SAVE_INTERVAL,
 * or a test's own (read by verify_new). */
extern double verify_save_interval;

/* "ok", "defer", "bounce", "todo"; verify_status_parse: the word at the
 * start of s (followed by a space or its end) or -1. */
const char *verify_status_name(enum verify_status st);
int verify_status_parse(const char *s);

/* address_verify_map's value format, Postfix's verify(8)'s:
 * "STATUS:PROBED:UPDATED:TEXT" (status as enum verify_status, which has
 * Postfix's numbers; the times unix seconds). format: the length, or -1
 * when it does not fit in n. parse: 0 (*text points into s), or -1 when
 * malformed (a field not digits, a status past todo, both times 0). */
int verify_entry_format(char *out, size_t n, enum verify_status st,
                        long long probed, long long updated, const char *text);
int verify_entry_parse(const char *s, enum verify_status *st, long long *probed,
                       long long *updated, const char **text);

/* One request in buf (len bytes so far): 1 when complete (the address
 * into addr, its bytes in *used), 0 when more is needed, -1 when it is
 * malformed (no request=verify, no address or an empty one, a line
 * without '=', a NUL, a CR inside a line, an address of addrsz bytes or
 * more, VERIFY_REQUEST_MAX bytes without its end). Pure. */
int verify_parse_request(const char *buf, size_t len, char *addr, size_t addrsz,
                         size_t *used);

#endif
