/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * msgmark.h - where and how a benchmark makes each copy of a message
 * unique, so that no scanner's cache turns a scan into a hash lookup.
 *
 * Two patch points, found once per message template:
 *  - text: the start of a prose line (printable, has a space, at least
 *    2 * MSGMARK_TEXT_LEN bytes, not a MIME boundary) in a text part or in
 *    the body of a single-part text message; MSGMARK_TEXT_LEN decimal
 *    digits (the counter modulo 10^10) are written over it;
 *  - b64: the start of the first line of a base64 part body (4-aligned in
 *    the base64 stream); MSGMARK_B64_LEN base64 characters (the low 48
 *    bits of the counter) are written over it, so the part stays valid
 *    base64.
 * Lines may end in LF or CRLF. The finder reads only; the encoders write
 * exactly the patch length into the caller's array (no NUL).
 *
 * Users: tests/bench/bench_scan.c (patches scan files) and
 * tests/bench/loadgen.c (patches the SMTP wire form as it sends); both
 * also take their latency percentiles from here (msgmark_sort_ms,
 * msgmark_percentile), so the two report them the same way.
 * Owns: nothing. Threads: all functions are pure and thread-safe.
 */
#ifndef SLUICE_MSGMARK_H
#define SLUICE_MSGMARK_H

#include <stddef.h>
#include <stdint.h>

#define MSGMARK_TEXT_LEN 10 /* decimal digits over a text line */
#define MSGMARK_B64_LEN  8  /* base64 chars (48 bits) over a b64 line */

struct msgmark {
    long text_pos; /* MSGMARK_TEXT_LEN bytes go here; -1: none */
    long b64_pos;  /* MSGMARK_B64_LEN bytes go here; -1: none */
};

/* Finds the patch points of the message data[0..len). */
void msgmark_find(const char *data, size_t len, struct msgmark *mm);

/* The counter as MSGMARK_TEXT_LEN decimal digits (modulo 10^10). */
void msgmark_text(uint64_t seq, char out[MSGMARK_TEXT_LEN]);

/* The low 48 bits of the counter as MSGMARK_B64_LEN base64 chars. */
void msgmark_b64(uint64_t seq, char out[MSGMARK_B64_LEN]);

/* Writes both patches for counter seq into a copy of the message. */
void msgmark_apply(char *data, size_t len, const struct msgmark *mm,
                   uint64_t seq);

/* Read a whole message file of 1 to max bytes into a new buffer (free()
 * it): 0, or -1 after a message on stderr that starts with "who: path". */
int msgmark_read(const char *who, const char *path, unsigned long max,
                 char **data, size_t *len);

/* Sort latencies ascending; then the nearest-rank percentile p (0-100)
 * of the sorted array, 0 when it is empty. */
void msgmark_sort_ms(double *v, size_t n);
double msgmark_percentile(const double *v, size_t n, double p);

#endif
