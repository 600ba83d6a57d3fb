/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * rate.h - per-client event rates, as Postfix's anvil(8) counts them for
 * smtpd_client_connection_rate_limit, smtpd_client_message_rate_limit,
 * smtpd_client_recipient_rate_limit, smtpd_client_auth_rate_limit and
 * smtpd_client_new_tls_session_rate_limit.
 * One entry per (service, client address): each kind of event counted in
 * a window that starts at the entry's first event and lasts unit seconds
 * (anvil_rate_time_unit); an event after the window starts a new one
 * with every count at zero. At most max entries: windows that have ended
 * are swept out, at the latest once per unit; when the table is full of
 * live windows a new client is not counted (its events are allowed) and
 * rate_hit says so once (the caller warns).
 * Owns: the entries. Threads: the loop thread only.
 */
#ifndef SLUICE_RATE_H
#define SLUICE_RATE_H

#include <stddef.h>

enum rate_kind {
    RATE_CONN,
    RATE_MAIL,
    RATE_RCPT,
    RATE_AUTH,
    RATE_NEWTLS,
    RATE_KINDS
};

struct rate_tab;

struct rate_tab *rate_new(double unit, size_t max);
void rate_free(struct rate_tab *t); /* NULL ok */
/* One event of kind for client addr of service at time now (seconds):
 * the count in the current window, this one included; 0 when the table
 * is full (*full set to 1 the first time). */
unsigned rate_hit(struct rate_tab *t, const char *service, const char *addr,
                  enum rate_kind kind, double now, int *full);
/* The count in the current window without an event (0: none). */
unsigned rate_peek(const struct rate_tab *t, const char *service,
                   const char *addr, enum rate_kind kind, double now);
size_t rate_count(const struct rate_tab *t); /* entries held */

#endif
