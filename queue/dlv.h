/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dlv.h - delivery agents, as the queue manager sees them.
 * A dlv_job is one message and the subset of its recipients that go to
 * one next hop by one transport. The agent delivers, logs one Postfix-form
 * line per recipient:
 *   ID: to=<rcpt>, relay=host[addr]:port, delay=1.2, delays=a/b/c/d,
 *       dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as X)
 * (local: relay=local), records each outcome in job->result[], and calls
 * done(job) once, on the loop thread.
 * Marking recipients in the queue file and syncing it is the queue
 * manager's job, not the agent's.
 * Owns: nothing of the job. Borrows: the job, msg, cf, loop and pool
 * until done runs. Threads: loop thread; blocking steps (getaddrinfo,
 * Maildir fsync) go through the wpool.
 */
#ifndef SLUICE_DLV_H
#define SLUICE_DLV_H

#include <ev.h>

#include "conf/cf.h"
#include "lib/wpool.h"
#include "queue/spool.h"

enum dlv_status {
    DLV_SENT,
    DLV_DEFER, /* 4xx, connection failure, timeout */
    DLV_BOUNCE /* 5xx: failed permanently */
};

struct dlv_result {
    enum dlv_status status;
    char dsn[16]; /* "2.0.0", "4.4.1", "5.1.1" */
    char *text;   /* reply or reason (malloc'd; freed by the qmgr) */
};

/* The SMTP client's TLS level for a next hop (Postfix's levels; dane
 * is taken as may, as Postfix does without DNSSEC-validated TLSA). */
enum dlv_tls {
    DLV_TLS_NONE,
    DLV_TLS_MAY,     /* STARTTLS when offered; clear when not or failing */
    DLV_TLS_ENCRYPT, /* TLS or no delivery; any certificate */
    DLV_TLS_VERIFY,  /* and a trusted certificate with the expected name */
    DLV_TLS_SECURE
};

struct tls_cli;
struct dns;
struct dlv_resolve_opts;
struct dlv_self;
struct dlv_alias_opts;

struct dlv_job {
    struct spool_msg *msg;
    size_t *rcpt; /* indexes into msg->env.rcpt */
    size_t nrcpt;
    struct dlv_result *result; /* nrcpt entries, filled by the agent */
    const char *transport;     /* "smtp" or "local" */
    const char *host;          /* smtp: next-hop host or IP literal */
    int port;                  /* smtp: port */
    enum dlv_tls tls_level;    /* smtp: from smtp_tls_security_level or
                                  smtp_tls_policy_maps */
    const char *tls_match;     /* smtp: verify/secure names, or NULL */
    struct tls_cli *tls;       /* smtp: the client context, or NULL */
    const char *sasl_user;     /* smtp: AUTH as this user (from
                                  smtp_sasl_password_maps), or NULL */
    const char *sasl_pass;
    int mx;          /* smtp: the next hop is a domain (no []) */
    int lmtp;        /* smtp: speak LMTP (RFC 2033): LHLO, one reply per
                        accepted recipient after the dot; logged as
                        lmtp; host "/path" or "path" (under
                        queue_directory) with port 0: a unix socket */
    int verify;      /* smtp: an address verification probe: MAIL and
                        RCPT, no DATA; a RCPT accepted is DLV_SENT (its
                        reply the text), logged status=deliverable, any
                        other outcome status=undeliverable */
    struct dns *dns; /* smtp: MX and address lookups, or NULL
                        (smtp_dns_support_level = disabled, or
                        smtp_host_lookup = native: getaddrinfo) */
    const struct dlv_resolve_opts *resolve;    /* smtp: for hosts */
    const struct dlv_resolve_opts *resolve_mx; /* smtp: for domains */
    const struct dlv_self *self;               /* smtp: loop detection */
    const struct cf *cf;
    struct ev_loop *loop;
    struct wpool *pool;
    const struct dlv_alias_opts *alias; /* local: alias_maps and co. */
    void (*done)(struct dlv_job *job);
    /* local: a forwarded copy was queued (loop thread, before done) */
    void (*queued)(struct dlv_job *job);
    void *arg; /* the qmgr's */
};

/* Start delivery; done(job) is called later, never from inside start. */
void dlv_smtp_start(struct dlv_job *job);
/* The SMTP client's settings that cf_check cannot judge (numeric bind
 * addresses; with smtp_sasl_auth_enable, a password table that is set,
 * and security option words): 0, or -1 and the reason in err. */
int dlv_smtp_check(const struct cf *cf, struct buf *err);
/* The SMTP client's TLS settings, for sluice check: one line per problem
 * (a level that is not one or not supported, a protocol list, CA files
 * that do not load) appended to warn. */
void dlv_smtp_check_tls(const struct cf *cf, struct buf *warn);
/* A TLS policy: its first word the level (Postfix's names), then
 * attributes, of which match= (verify and secure: the names the server's
 * certificate must carry) is used, into *match (malloc'd, or NULL; match
 * NULL: not wanted). The level as enum dlv_tls; -1 when the word is not a
 * level, -2 for one this Sluice does not have (dane-only, fingerprint: no
 * DNSSEC, no fingerprint tables). */
int dlv_tls_parse(const char *v, char **match);
void dlv_local_start(struct dlv_job *job);

/* Shared helpers for the agents' log lines. */
/* "delay=%.1f" value: seconds since arrival, as Postfix rounds it. */
double dlv_delay(const struct spool_msg *m);
/* A delay as Postfix prints it: 0, 0.04, 0.38, 3.5, 12, 2063. Returns out. */
char *dlv_fmt_delay(double d, char *out, size_t n);
/* ", orig_to=<ADDR>" for a recipient virtual_alias_maps rewrote (ADDR
 * made safe for a log line), "" for one it did not: out, as Postfix puts
 * it between to= and relay=. */
char *dlv_orig_to(const struct spool_rcpt *r, char *out, size_t n);

#endif
