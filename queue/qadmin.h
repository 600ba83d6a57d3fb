/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qadmin.h - queue operations for the admin tool (postqueue/postsuper).
 * They work on the queue directory directly, so they work whether or not
 * the daemon runs; each ends by waking the queue manager (spool_notify),
 * which copes with files that vanish or move under it.
 * ids: NULL-terminated queue IDs; "ALL" selects every message.
 * Functions return the number of messages acted on, or -1 with the
 * reason in err (an unknown ID is reported in err but is not fatal:
 * the others are still processed; the return is then -1).
 * Threads: blocking file I/O; the CLI only.
 */
#ifndef SLUICE_QADMIN_H
#define SLUICE_QADMIN_H

#include "lib/buf.h"

/* mailq format, or with json one JSON object per line as postqueue -j:
 * {"queue_name":..,"queue_id":..,"arrival_time":..,"message_size":..,
 *  "sender":..,"recipients":[{"address":..,"status":..}]} */
int qadmin_list(const char *qdir, int json, struct buf *out, struct buf *err);
int qadmin_delete(const char *qdir, char *const *ids, struct buf *err);
int qadmin_hold(const char *qdir, char *const *ids, struct buf *err);
int qadmin_release(const char *qdir, char *const *ids, struct buf *err);
int qadmin_requeue(const char *qdir, char *const *ids, struct buf *err);
/* Envelope summary then the content, to fd (like postcat -q). */
int qadmin_cat(const char *qdir, const char *id, int fd, struct buf *err);
/* Retry deferred mail now: a live qmgr is woken with "F"; with no
 * daemon, deferred files are made due (mtime = now). Returns count. */
int qadmin_flush(const char *qdir, struct buf *err);

#endif
