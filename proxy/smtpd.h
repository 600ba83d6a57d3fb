/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * smtpd.h - the SMTP front end: listeners and sessions.
 * smtpd_run() is the front process: one libev loop that accepts on the
 * listening sockets the master bound, runs one session state machine per
 * connection, offers every stage to the filter chain, spools the message
 * and commits it (in the worker pool) before "250 2.0.0 Ok: queued as ID".
 * Owns: its sessions, loop, worker pool. Borrows: cf, listeners, chains.
 * Threads: the loop thread, plus the pool's workers for commits.
 */
#ifndef SLUICE_SMTPD_H
#define SLUICE_SMTPD_H

#include <stddef.h>

#include "conf/cf.h"
#include "filters/filter.h"
#include "lib/tls.h"

struct smtpd_check;

struct smtpd_listener {
    int fd;                       /* bound, listening, non-blocking */
    const struct cf_service *svc; /* svc->cf: this service's parameters */
    struct tls_srv *tls;          /* STARTTLS / wrapper mode, or NULL */
    struct filter_chain *chain;   /* this service's filters (borrowed;
                                     services may share a chain) */
    struct smtpd_check *check;    /* its restrictions (borrowed), or NULL:
                                     smtpd_run makes them */
};

/* Load each listener's TLS certificate and key where its service has
 * smtpd_tls_security_level may or encrypt, or smtpd_tls_wrappermode:
 * called by the front before it drops root, as key files are often
 * readable by root only. A service whose files do not load is logged
 * ("...: disabling TLS support") and runs without TLS; with level
 * encrypt it then refuses mail (530 5.7.0). cf: main.cf, for listeners
 * without a service. */
void smtpd_tls_load(const struct cf *cf, struct smtpd_listener *ls, size_t n);

/* Make each listener's restrictions (smtpd_*_restrictions, shared by the
 * listeners of one service): called by the front before it drops root,
 * as the access tables (hash:, texthash:) may be readable by root only.
 * The configuration was checked (smtpd_check_conf): a failure here is
 * fatal. */
void smtpd_checks_load(const struct cf *cf, struct smtpd_listener *ls,
                       size_t n);

/* For sluice check: each service with smtpd_sasl_auth_enable whose SMTP
 * AUTH would not work as set (a type other than dovecot, unknown security
 * options, a back end that cannot be connected to now) gets a warning
 * line in out. */
void smtpd_sasl_check(const struct cf *cf, const struct cf_service *svcs,
                      size_t n, struct buf *out);

/* Runs until SIGTERM/SIGINT (stop accepting, finish or close sessions,
 * exit 0). SIGHUP (a reload: a new front already accepts on the same
 * sockets): stop accepting, let every session end on its own, exit 0 when
 * the last one is gone (at most 10 minutes, then as on SIGTERM). */
int smtpd_run(const struct cf *cf, struct smtpd_listener *ls, size_t n);

#endif
