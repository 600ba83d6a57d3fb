/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sasl.h - SMTP AUTH's back end: a client of Dovecot's authentication
 * protocol (version 1), as Postfix's smtpd_sasl_type = dovecot.
 *
 * One struct sasl_srv is one connection to one auth server (a unix socket,
 * or inet:host:port), shared by every session of the front's loop that uses
 * that path: each exchange is a request with its own id, answered in any
 * order. The connection is opened at sasl_srv_new and again, after a loss,
 * when a request or a waiter needs it: at once after a connection that
 * worked, and not within a second of an attempt that failed.
 * The server's mechanism list, learned in the handshake, is kept across
 * reconnections.
 *
 * The password check happens in the auth server; nothing here blocks:
 * connect, read and write are non-blocking on the loop. Bounded: a server
 * line over SASL_LINE_MAX, or anything but its protocol in the handshake,
 * drops the connection ("protocol error"); the handshake has
 * SASL_CONNECT_TIMEOUT seconds, each request the timeout given to it.
 *
 * Owns: its socket, watchers, buffers and requests. Borrows: the loop.
 * Threads: the loop thread only.
 */
#ifndef SLUICE_SASL_H
#define SLUICE_SASL_H

#include <stddef.h>

#include <ev.h>

#include "lib/buf.h"

#define SASL_LINE_MAX        16384 /* a server line, LF included */
#define SASL_CONNECT_TIMEOUT 5.0   /* connect + handshake, seconds */

/* A mechanism's properties, from the words on Dovecot's MECH line; the
 * security options (smtpd_sasl_security_options) are masks of these. */
#define SASL_MF_ANONYMOUS  0x01u
#define SASL_MF_PLAINTEXT  0x02u
#define SASL_MF_DICTIONARY 0x04u
#define SASL_MF_ACTIVE     0x08u
#define SASL_MF_FWD_SECRET 0x10u
#define SASL_MF_MUTUAL     0x20u
#define SASL_MF_PRIVATE    0x40u /* never offered to SMTP clients */

struct sasl_policy {
    unsigned deny; /* a mechanism with any of these is not offered */
    unsigned need; /* nor one without all of these */
};

enum sasl_status {
    SASL_CONT, /* text: the server's challenge, base64 */
    SASL_OK,   /* text: the authenticated user name (printable) */
    SASL_FAIL, /* text: why (printable): 535 */
    SASL_TEMP  /* text: why (printable): 454 */
};

/* Runs on the loop, never inside sasl_start/sasl_next. After SASL_CONT
 * the request waits for sasl_next or sasl_cancel; after the others it is
 * already freed when the callback runs (do not cancel it there). */
typedef void (*sasl_cb)(void *arg, enum sasl_status st, const char *text);

/* What the auth server is told about the SMTP client (all copied). */
struct sasl_client {
    const char *service; /* smtpd_sasl_service: "smtp" */
    const char *laddr, *raddr;
    int lport, rport;
    int secured; /* over TLS */
};

struct sasl_srv;
struct sasl_req;

/* A waiter for the mechanism list (EHLO): caller-owned, zeroed. */
struct sasl_wait {
    struct sasl_wait *next, *prev;
    void (*cb)(void *arg);
    void *arg;
    int linked;
};

/* path: smtpd_sasl_path as configured ("private/auth" is taken under
 * qdir, "/abs/path" and "unix:/abs/path" are unix sockets,
 * "inet:host:port" TCP; a host name is resolved here, once). NULL with
 * the reason in err when the path does not parse or resolve. Starts
 * connecting at once. */
struct sasl_srv *sasl_srv_new(struct ev_loop *loop, const char *path,
                              const char *qdir, struct buf *err);
void sasl_srv_free(struct sasl_srv *sv); /* NULL ok; pending requests are
                                           dropped without callbacks */
const char *sasl_srv_path(const struct sasl_srv *sv); /* as configured */

/* For sluice check (blocking: not for the loop): can path be parsed and
 * connected to (2 s at most)? 0, or -1 with the reason in err. */
int sasl_probe(const char *path, const char *qdir, struct buf *err);

/* smtpd_sasl_security_options words (noanonymous, noplaintext,
 * nodictionary, noactive, mutual_auth, forward_secrecy) into pol: 0, or
 * -1 with the first unknown word in err (the others still apply). */
int sasl_policy_parse(char *const *words, struct sasl_policy *pol,
                      struct buf *err);

/* The mechanisms offered under pol, space-separated, into out: 0, or -1
 * while the list is not known (no handshake has completed yet; once
 * learned it is kept across reconnections). */
int sasl_mechs(const struct sasl_srv *sv, const struct sasl_policy *pol,
               struct buf *out);
/* Is mech (any case) one of them: 1, 0; -1 while the list is not known. */
int sasl_mech_offered(const struct sasl_srv *sv, const struct sasl_policy *pol,
                      const char *mech);

/* Wait until the mechanism list is known, or the attempt to learn it
 * failed: 0 when there is nothing to wait for (known, or the last attempt
 * failed less than a second ago), 1 when w->cb will run once, later. */
int sasl_wait(struct sasl_srv *sv, struct sasl_wait *w, void (*cb)(void *arg),
              void *arg);
void sasl_wait_cancel(struct sasl_srv *sv, struct sasl_wait *w); /* ok twice */

/* RFC 4954 base64 as the client sent it: only the alphabet, '=' padding
 * at the end, a multiple of 4 long; 1 or 0. */
int sasl_b64_ok(const char *s);

/* Start an exchange: mech must be one sasl_mech_offered accepted; resp
 * the initial response (base64, checked with sasl_b64_ok; "" for an
 * empty one) or NULL. NULL with the reason in why when it cannot start
 * (the connection failed less than a second ago: 454). */
struct sasl_req *sasl_start(struct sasl_srv *sv, const struct sasl_client *cl,
                            const char *mech, const char *resp, double timeout,
                            sasl_cb cb, void *arg, struct buf *why);
/* The client's answer to a SASL_CONT (base64, checked): 0, or -1 with
 * the reason in why and the request freed (the connection is gone). */
int sasl_next(struct sasl_req *rq, const char *resp, struct buf *why);
/* The exchange is over for the caller (abort, session gone): no callback
 * runs; a late answer from the server is ignored. NULL ok. */
void sasl_cancel(struct sasl_req *rq);

/* Dovecot's tab-escaping undone in place (\001 followed by 0 1 t r n l),
 * then anything unprintable turned into '?'. */
void sasl_unescape(char *s);

#endif
