/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qmgr.h - the queue manager and delivery process.
 * qmgr_run() owns the queue after commit: it learns of new mail from the
 * public/qmgr datagram socket and from a periodic scan, moves messages
 * incoming -> active, picks the transport and next hop of each recipient,
 * runs the delivery agents (dlv.h), records each recipient's outcome
 * durably, defers with backoff, expires after maximal_queue_lifetime and
 * removes finished messages.
 * Threads: the loop thread, plus a worker pool for fsync and lookups.
 */
#ifndef SLUICE_QMGR_H
#define SLUICE_QMGR_H

#include "conf/cf.h"

struct qmgr;
/* Opens the lookup tables (transport_maps, smtp_tls_policy_maps,
 * smtp_sasl_password_maps): called before the process drops root, as
 * such files (a password table) are often readable by root only. NULL
 * when one does not open (logged). */
struct qmgr *qmgr_new(const struct cf *cf);
/* The master's listening sockets (before they are closed): their
 * addresses and ports are this system's own for the SMTP client's loop
 * detection (an MX that is us). */
void qmgr_listeners(struct qmgr *q, const int *fds, size_t n);
/* For sluice check and sluiced's start: do those tables open? 0, or -1
 * with "PARAM: SPEC: why" in err. */
int qmgr_check(const struct cf *cf, struct buf *err);
/* Runs until SIGTERM/SIGINT; frees q; returns the exit status. */
int qmgr_run(struct qmgr *q);

#endif
