/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * smtpd_data.h - the DATA stream decoder.
 * Fed the raw bytes that follow "354", in whatever pieces they arrive, it
 * removes dot-stuffing, finds the end of data (only "CRLF.CRLF": a bare
 * LF or bare CR never ends a message), splits the header into fields and
 * hands out, through callbacks:
 *   content(): every message byte, CRLF line endings, unstuffed, in order
 *              (this is what goes into the queue file);
 *   header():  each header field, when complete (name; value after the
 *              colon with continuation lines included, CRLFs kept,
 *              trailing CRLF removed);
 *   eoh():     end of the header (empty line, or the body started without
 *              one, or the end of data);
 *   body():    body bytes (after the empty line), CRLF line endings.
 * Bounds: max_size content bytes (then content stops, TOO_BIG is set and
 * the rest is read and dropped up to the end); header_max bytes of header
 * (past it the rest of the header is treated as body: HEADER_TOO_BIG);
 * one header field at most header_max bytes.
 * Bare LF / bare CR: with forbid set, the decoder stops at the first one
 * and smtpd_data_feed() returns -1 with BARE_LF / BARE_CR set (the caller
 * replies 5xx and closes: the end of data cannot be trusted). Without
 * forbid, a bare LF or CR is taken as a line ending in the content (the
 * content gets CRLF), but still never ends the message.
 * Owns: its line buffer. Threads: one at a time.
 */
#ifndef SLUICE_SMTPD_DATA_H
#define SLUICE_SMTPD_DATA_H

#include <stddef.h>
#include <sys/types.h>

#define SMTPD_DATA_TOO_BIG        0x01
#define SMTPD_DATA_BARE_LF        0x02
#define SMTPD_DATA_BARE_CR        0x04
#define SMTPD_DATA_HEADER_TOO_BIG 0x08
#define SMTPD_DATA_8BIT           0x10 /* bytes >= 0x80 seen */
#define SMTPD_DATA_NUL            0x20 /* NUL bytes seen (kept) */

struct smtpd_data_cb {
    void (*content)(void *arg, const void *p, size_t n);
    void (*header)(void *arg, const char *name, size_t nlen, const char *value,
                   size_t vlen);
    void (*eoh)(void *arg);
    void (*body)(void *arg, const void *p, size_t n);
};

struct smtpd_data;
struct smtpd_data *smtpd_data_new(const struct smtpd_data_cb *cb, void *arg,
                                  size_t max_size, size_t header_max,
                                  int forbid_bare_newline);
void smtpd_data_free(struct smtpd_data *d); /* NULL ok */
/* Consume bytes. Returns how many were used: all of n, or fewer when the
 * end of data was reached (*done = 1; the rest are pipelined commands).
 * -1 on bare LF/CR with forbid set. */
ssize_t smtpd_data_feed(struct smtpd_data *d, const char *p, size_t n,
                        int *done);
int smtpd_data_flags(const struct smtpd_data *d);
/* Content bytes seen (including those past max_size that were dropped). */
size_t smtpd_data_size(const struct smtpd_data *d);

#endif
