/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * milter.h - the MTA side of the milter protocol (Sendmail/Postfix
 * milters: OpenDKIM, OpenDMARC, clamav-milter, rspamd, spamass-milter,
 * milter-greylist ...), as filters of the filter chain (filter.h): one
 * filter per configured milter, in smtpd_milters order. The SMTP state
 * machine does not know about milters.
 * Configuration as in Postfix: smtpd_milters = inet:host:port, unix:/path,
 * and the per-milter form { inet:host:port, connect_timeout=10s,
 * command_timeout=10s, content_timeout=300s, default_action=accept,
 * protocol=6 }; milter_* parameters for the defaults and the macros.
 * Owns: one connection per milter per SMTP session, reused across its
 * transactions. Threads: the front's loop thread.
 */
#ifndef SLUICE_MILTER_H
#define SLUICE_MILTER_H

#include "conf/cf.h"
#include "filters/filter.h"
#include "lib/buf.h"

extern const struct filter_ops milter_filter_ops;

struct milter_conf;
/* One conf per milter listed in the parameter (smtpd_milters or
 * non_smtpd_milters) of cf, NULL-terminated, in order; NULL with
 * "PARAM: ..." in err on a syntax error (bad address, unknown or bad
 * per-milter setting). An empty list gives an array holding only NULL. */
struct milter_conf **milter_confs_new(const struct cf *cf, const char *param,
                                      struct buf *err);
void milter_confs_free(struct milter_conf **v); /* NULL ok */
/* Do main.cf's smtpd_milters and milter_* settings, and each of the n
 * services' (with their -o overrides), make milter confs? 0, or -1 with
 * the first problem in err: "MAIN: smtpd_milters: ..." for main.cf's
 * (MAIN names the file), "FILE:LINE: service NAME: ..." for a service's. */
struct cf_service;
int milter_confs_check(const struct cf *cf, const struct cf_service *svcs,
                       size_t n, const char *main, struct buf *err);
const char *milter_conf_name(const struct milter_conf *mc); /* as written */

#endif
