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

/* Runs until SIGTERM/SIGINT; returns the exit status. */
int qmgr_run(const struct cf *cf);

#endif
