/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * clam.h - the ClamAV filter: every message is scanned before its 250.
 *
 * One implementation of the filter interface (filter.h); the SMTP state
 * machine does not know it exists. Two back ends, chosen by
 * clamav_backend:
 *  - "libclamav" (default): one engine per process, loaded from
 *    clamav_database_directory and compiled once, shared read-only by
 *    clamav_scan_threads scan threads (a wpool of its own, so commits do
 *    not wait behind scans). At EOM the message is scanned straight from
 *    the queue file (env->spool_fd, a dup of it; no copy in memory) with
 *    the mail, archive, HTML, PDF and OLE2 parsers as configured.
 *    Reload: every clamav_reload_interval a worker checks the database
 *    directory (cl_statchkdir); when it changed, a new engine is loaded
 *    and compiled on a worker while scans go on with the old one, then
 *    swapped in on the loop; the old engine is freed when its last scan
 *    ends (engines are reference-counted on the loop thread). A database
 *    that fails to load leaves the old engine in service and is logged.
 *  - "clamd:unix:/path" or "clamd:inet:host:port": clamd's INSTREAM
 *    protocol (clamd.h), streaming the message while DATA arrives (from
 *    the HEADER/EOH/BODY stages), non-blocking on the loop.
 *
 * Verdicts at EOM:
 *  - clean: CONTINUE (plus the clamav_header field when configured);
 *    log "ID: clamav: clean (scan N ms)".
 *  - virus: clamav_virus_action = reject (554 5.7.1 "Message rejected:
 *    Infected: NAME"), discard, or hold (reason "Infected: NAME"); log
 *    "ID: filter=clamav, action=ACTION, virus=NAME (scan N ms)".
 *  - a scan limit hit (libclamav's Heuristics.Limits.Exceeded.*, clamd's
 *    size limit): clamav_limit_action = accept (logged with the reason:
 *    "ID: clamav: not fully scanned (REASON), accepted"), tempfail (451
 *    4.3.0) or reject (554 5.7.1).
 *  - failure (no engine loaded, scan error, clamd down or timing out):
 *    clamav_failure_action = tempfail (451 4.3.0 "Error: virus scanner
 *    failure", the default) or accept (logged "ID: clamav: unscanned
 *    (REASON), accepted by clamav_failure_action").
 *
 * Owns: the engines, the scan pool, the counters. Borrows: the cf given to
 * clam_conf_new (must outlive the conf).
 * Threads: everything on the loop thread but the scans and (re)loads.
 */
#ifndef SLUICE_CLAM_H
#define SLUICE_CLAM_H

#include "conf/cf.h"
#include "filters/filter.h"
#include "lib/buf.h"

extern const struct filter_ops clam_filter_ops;

struct clam_conf;

/* Messages up to this size are scanned from a map libclamav keeps on the
 * heap (cl_fmap_open_handle's use_aging 0): no mmap, page faults and
 * munmap per scan, each of which costs a TLB shoot-down interrupt to the
 * other cores in a multi-threaded process. Larger ones use its aging map,
 * which releases pages as the scan moves on (memory bound). The same
 * limit applies to the maps libclamav makes of the objects it extracts
 * (clam_fmap.c). */
#define CLAM_HEAP_MAP_MAX (2 * 1024 * 1024)
/* The configuration the one scanner of a front is built from (clamav_*
 * parameters work in main.cf only; a service's -o clamav_enable switches
 * the scanner on or off for that service): a copy of cf with
 * clamav_enable = yes when main.cf or any of the n services enables it,
 * else NULL. The caller frees it with cf_free (after the clam_conf). */
struct cf_service;
struct cf *clam_cf(const struct cf *cf, const struct cf_service *svcs,
                   size_t n);
/* Reads the clamav_* parameters; NULL with the reason in err on a bad
 * value (e.g. an unknown action). Loads nothing: ops->start does. */
struct clam_conf *clam_conf_new(const struct cf *cf, struct buf *err);
void clam_conf_free(struct clam_conf *cc); /* NULL ok */

/* For `sluice check` and start-up: load the database once, blocking, and
 * append to out one line per problem: "error: ..." (no usable database,
 * bad back end) or "warning: ..." (a limit below message_size_limit, so
 * that some mail would not be fully scanned). Returns -1 when there is an
 * error line, else 0. */
int clam_check(const struct cf *cf, struct buf *out);

/* Counters for the metrics that come later (loop thread). */
struct clam_stats {
    unsigned long long scans, clean, infected, limits, failures;
    unsigned long long reloads, reload_failures;
    double scan_ms;          /* total wall time of scans */
    char engine_version[64]; /* "ClamAV 1.4.6/db 27000" or "" */
};
void clam_get_stats(const struct clam_conf *cc, struct clam_stats *st);

#endif
