/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * header_checks.h - Postfix's content checks as a filter (filter.h):
 * header_checks on each field of the message header, mime_header_checks
 * on each field of a MIME part's header, nested_header_checks on the
 * header of an attached message (message/rfc822), body_checks on each
 * body line (the first body_checks_size_limit bytes of each part; MIME
 * boundaries and part headers are not body lines). A field is looked up
 * as one string, "Name: value" with a folded field's line breaks as
 * "\n" (Sluice's own Received: included, as in Postfix's cleanup); the
 * first table that has a result decides, with Postfix's actions:
 *   REJECT [text]   the message is refused at end of DATA: 550 5.7.1 text
 *                   (default "Message content rejected"; a DSN at the
 *                   start of the text is used)
 *   DISCARD [text]  accepted and dropped      HOLD [text]  hold queue
 *   WARN text, INFO text   logged, the message goes on
 *   DUNNO, OK       nothing
 * and, for header_checks only (the message header is rewritten through
 * the filter's modifications):
 *   IGNORE          the field is deleted
 *   PREPEND text    the text (a header field) is inserted before it
 *   REPLACE text    the field is replaced by the text
 * Other actions (FILTER, REDIRECT, BCC, and the header modifications in
 * the MIME and body tables) are logged as not implemented. A REJECT,
 * DISCARD or HOLD ends the checks for the message. Each logged action has
 * Postfix's cleanup line: "ID: reject: header Subject: x from
 * host[addr]; from=<s> to=<r> proto=ESMTP helo=<h>: 5.7.1 text" (for a
 * body line "... reject: body LINE from ...").
 * MIME: the boundaries (RFC 2046: at most 70 characters; longer ones are
 * not followed) of multipart parts (nested at most 20 deep) are
 * followed line by line from the body stream; lines over 64 KB are
 * checked by their start.
 * Owns: the tables. Threads: the loop thread (lookups are in memory).
 */
#ifndef SLUICE_HEADER_CHECKS_H
#define SLUICE_HEADER_CHECKS_H

#include "conf/cf.h"
#include "filters/filter.h"
#include "lib/buf.h"

extern const struct filter_ops hc_filter_ops;

struct hc_conf;
/* The header_checks tables of cf; NULL with "header_checks: ..." in err
 * when one does not open; *none set when the parameter is empty (no
 * filter needed; NULL returned, err empty). */
struct hc_conf *hc_conf_new(const struct cf *cf, int *none, struct buf *err);
void hc_conf_free(struct hc_conf *c); /* NULL ok */
/* For sluiced's start and sluice check: do main.cf's tables and each
 * service's open? 0, or -1 with "MAIN: header_checks: ..." or
 * "FILE:LINE: service NAME: header_checks: ..." in err. */
struct cf_service;
int hc_conf_check(const struct cf *cf, const struct cf_service *svcs, size_t n,
                  const char *main, struct buf *err);

#endif
