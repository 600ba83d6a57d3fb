/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * policy.h - the client side of Postfix's policy delegation protocol
 * (check_policy_service; SMTPD_POLICY_README), on a libev loop.
 * A request is "name=value" lines and an empty line; the server answers
 * the same way, and its "action" attribute is an access(5) action.
 * One struct policy per server ("inet:host:port" or "unix:path", a
 * relative path under queue_directory as in Postfix). Each request has a
 * connection to itself; a connection that answered is kept for the next
 * request (at most smtpd_policy_service_max_idle unused, max_ttl in all,
 * request_limit requests). A request that fails (connect, write, read,
 * a malformed or oversized reply, no answer within the timeout) is tried
 * again on a new connection after retry_delay, up to try_limit attempts;
 * then its callback gets NULL. Each failure is logged as Postfix does:
 * "warning: problem talking to server SERVER: REASON".
 * Owns: its connections and the requests until their callbacks ran or
 * they were cancelled. Borrows: the loop. Threads: the loop's.
 */
#ifndef SLUICE_POLICY_H
#define SLUICE_POLICY_H

#include <ev.h>
#include <stddef.h>

#include "lib/buf.h"

#define POLICY_REPLY_MAX  8192 /* bytes of one reply */
#define POLICY_ACTION_MAX 1024 /* bytes of its action, with the NUL */

struct policy_conf {
    double timeout;     /* smtpd_policy_service_timeout, per attempt */
    double max_idle;    /* smtpd_policy_service_max_idle */
    double max_ttl;     /* smtpd_policy_service_max_ttl */
    long request_limit; /* smtpd_policy_service_request_limit; 0: none */
    long try_limit;     /* smtpd_policy_service_try_limit, at least 1 */
    double retry_delay; /* smtpd_policy_service_retry_delay */
};

/* action: the server's, or NULL when every attempt failed. */
typedef void policy_cb(void *arg, const char *action);

struct policy;
struct policy_req;

/* server: "inet:host:port" ("[v6]" allowed; a host name is resolved
 * here, once: call it before the loop serves) or "unix:path"; qdir for
 * a relative path. NULL and the reason in err when it is not one. */
struct policy *policy_new(struct ev_loop *loop, const char *server,
                          const char *qdir, const struct policy_conf *pc,
                          struct buf *err);
/* Closes the connections and drops the open requests (no callbacks). */
void policy_free(struct policy *p); /* NULL ok */
const char *policy_server(const struct policy *p);
/* Send the attributes (len bytes of "name=value\n" lines, without the
 * final empty line). cb runs later on the loop, never from inside
 * policy_ask; the handle is good for policy_cancel until then. */
struct policy_req *policy_ask(struct policy *p, const char *attrs, size_t len,
                              policy_cb *cb, void *arg);
void policy_cancel(struct policy_req *r);

/* A reply in buf (len bytes so far): 1 when complete (its action into
 * action, "" when it had none; the bytes it took in *used), 0 when more
 * is needed, -1 when it is malformed (a line without '=', a NUL, an
 * action too long, or POLICY_REPLY_MAX bytes without its end). Pure. */
int policy_parse_reply(const char *buf, size_t len, char *action, size_t actsz,
                       size_t *used);

#endif
