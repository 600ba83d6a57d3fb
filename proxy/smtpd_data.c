/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * smtpd_data.c - the DATA stream decoder.
 * Two stages. The line stage walks the raw bytes with a small state
 * machine (start of line, '.' at the start of a line, ".\r", inside a line,
 * '\r' inside a line), finds "CRLF.CRLF", drops the stuffing dot and turns
 * bare LF / bare CR into CRLF (or stops on them with forbid set). What it
 * passes on is a list of spans of the caller's input, joined when they
 * are adjacent, plus the few bytes it makes up ("\r\n", "."), so the
 * message stage sees large pieces in which every line ends in CRLF and
 * every '\n' ends a line.
 * The message stage counts bytes against max_size, calls content() with
 * each piece and then routes the same piece to the header splitter or to
 * body(). Only header lines are copied (into a line buf and a field buf,
 * both capped by header_max); body bytes are never copied.
 * Rules at the start of a line: "." then CRLF ends the data when the line
 * began after a real CRLF (or at the start); otherwise (after a bare line
 * ending) the "." is kept as content. A leading '.' followed by other
 * characters is removed (RFC 5321 4.5.2). A line that is only "." ended by
 * a bare LF / CR keeps its dot. Without forbid, BARE_LF / BARE_CR are still
 * set in the flags (for logging) while the message goes on.
 * max_size 0 means no limit; header_max 0 means SMTPD_DATA_HEADER_DEFAULT.
 * Owns: its line and field bufs. Borrows: cb (copied) and arg.
 * Threads: one at a time.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "proxy/smtpd_data.h"

#define SMTPD_DATA_HEADER_DEFAULT 102400 /* Postfix header_size_limit */

enum smtpd_data_state {
    SMTPD_DS_BOL,    /* at the start of a line */
    SMTPD_DS_DOT,    /* '.' at the start of a line, held back */
    SMTPD_DS_DOT_CR, /* ".\r" at the start of a line, held back */
    SMTPD_DS_TEXT,   /* inside a line */
    SMTPD_DS_CR,     /* '\r' inside a line, held back */
    SMTPD_DS_DONE,   /* ".\r\n" seen */
    SMTPD_DS_ERROR   /* bare LF / CR with forbid set */
};

enum smtpd_data_part {
    SMTPD_DP_HEADER, /* splitting header fields */
    SMTPD_DP_BODY    /* eoh() called; everything goes to body() */
};

struct smtpd_data {
    struct smtpd_data_cb cb;
    void *arg;
    size_t max_size;
    size_t header_max;
    int forbid;

    enum smtpd_data_state state;
    int crlf_bol; /* this line began after a real CRLF (or at the start) */
    int flags;
    size_t size; /* content bytes, dropped ones included */

    const char *span; /* input bytes passed through, not yet handed on */
    size_t span_len;

    enum smtpd_data_part part;
    size_t hdr_bytes;  /* complete header lines so far */
    struct buf *line;  /* the header line being read */
    struct buf *field; /* the last field, with its continuation lines */
};

static void
smtpd_data_enter(struct smtpd_data *d, enum smtpd_data_state to)
{
    d->state = to;
}

struct smtpd_data *
smtpd_data_new(const struct smtpd_data_cb *cb, void *arg, size_t max_size,
               size_t header_max, int forbid_bare_newline)
{
    struct smtpd_data *d = xcalloc(1, sizeof(*d));

    if (header_max == 0)
        header_max = SMTPD_DATA_HEADER_DEFAULT;
    if (header_max > BUF_NOCAP / 2)
        header_max = BUF_NOCAP / 2;
    d->cb = *cb;
    d->arg = arg;
    d->max_size = max_size;
    d->header_max = header_max;
    d->forbid = forbid_bare_newline;
    d->state = SMTPD_DS_BOL;
    d->crlf_bol = 1;
    d->part = SMTPD_DP_HEADER;
    d->line = buf_new(256, header_max + 2);
    d->field = buf_new(256, header_max);
    return d;
}

void
smtpd_data_free(struct smtpd_data *d)
{
    if (d == NULL)
        return;
    buf_free(d->field);
    buf_free(d->line);
    free(d);
}

int
smtpd_data_flags(const struct smtpd_data *d)
{
    return d->flags;
}

size_t
smtpd_data_size(const struct smtpd_data *d)
{
    return d->size;
}

/* ---- message stage: header fields, eoh, body ---- */

static void
smtpd_data_body(struct smtpd_data *d, const char *p, size_t n)
{
    if (n > 0 && d->cb.body != NULL)
        d->cb.body(d->arg, p, n);
}

/* Hand out the pending field, if any. */
static void
smtpd_data_field_flush(struct smtpd_data *d)
{
    const char *f = buf_data(d->field);
    size_t len = buf_len(d->field);
    const char *colon;

    if (len == 0)
        return;
    /* A field line starts with a name and ':' and ends in CRLF. */
    colon = memchr(f, ':', len);
    if (colon == NULL || len < (size_t) (colon - f) + 3)
        log_panic("smtpd_data: malformed pending header field");
    if (d->cb.header != NULL)
        d->cb.header(d->arg, f, (size_t) (colon - f), colon + 1,
                     len - (size_t) (colon - f) - 3);
    buf_reset(d->field);
}

/* Leave the header: the pending field, then eoh(). */
static void
smtpd_data_eoh(struct smtpd_data *d)
{
    if (d->part != SMTPD_DP_HEADER)
        return;
    smtpd_data_field_flush(d);
    d->part = SMTPD_DP_BODY;
    if (d->cb.eoh != NULL)
        d->cb.eoh(d->arg);
}

/* The header grew past header_max: what is in the line buf and all that
 * follows is body. */
static void
smtpd_data_header_overflow(struct smtpd_data *d)
{
    d->flags |= SMTPD_DATA_HEADER_TOO_BIG;
    smtpd_data_eoh(d);
    smtpd_data_body(d, buf_data(d->line), buf_len(d->line));
    buf_reset(d->line);
}

/* "Name:" with a name of printable ASCII except ':' and space. */
static int
smtpd_data_is_field(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char) s[i];

        if (c == ':')
            break;
        if (c < 33 || c > 126)
            return 0;
    }
    return i > 0 && i < n;
}

/* A complete header line (ending in CRLF) is in d->line. */
static void
smtpd_data_header_line(struct smtpd_data *d)
{
    const char *s = buf_data(d->line);
    size_t len = buf_len(d->line);

    if (len == 2 && s[0] == '\r') {
        /* The empty line: content, but neither header nor body. */
        smtpd_data_eoh(d);
        buf_reset(d->line);
        return;
    }
    if (d->hdr_bytes + len > d->header_max) {
        smtpd_data_header_overflow(d);
        return;
    }
    if (s[0] == ' ' || s[0] == '\t') {
        if (buf_len(d->field) > 0) {
            if (buf_append(d->field, s, len) < 0)
                log_panic("smtpd_data: header field over its bound");
            d->hdr_bytes += len;
            buf_reset(d->line);
            return;
        }
    } else if (smtpd_data_is_field(s, len)) {
        smtpd_data_field_flush(d);
        if (buf_set(d->field, s, len) < 0)
            log_panic("smtpd_data: header field over its bound");
        d->hdr_bytes += len;
        buf_reset(d->line);
        return;
    }
    /* Neither a field nor a continuation: the body starts here. */
    smtpd_data_eoh(d);
    smtpd_data_body(d, s, len);
    buf_reset(d->line);
}

/* Route content bytes to the header splitter or to body(). */
static void
smtpd_data_route(struct smtpd_data *d, const char *p, size_t n)
{
    while (n > 0) {
        const char *nl;
        size_t take, room;

        switch (d->part) {
        case SMTPD_DP_BODY:
            smtpd_data_body(d, p, n);
            return;
        case SMTPD_DP_HEADER:
            break;
        }
        nl = memchr(p, '\n', n);
        take = nl != NULL ? (size_t) (nl - p) + 1 : n;
        /* hdr_bytes <= header_max; +2 lets the empty line through. */
        room = d->header_max - d->hdr_bytes + 2;
        if (buf_len(d->line) + take > room) {
            smtpd_data_header_overflow(d);
            continue;
        }
        if (buf_append(d->line, p, take) < 0)
            log_panic("smtpd_data: header line over its bound");
        p += take;
        n -= take;
        if (nl != NULL)
            smtpd_data_header_line(d);
    }
}

/* Any byte >= 0x80 in p[0..n)? Eight bytes at a time, checked every 64:
 * a 7-bit message is read once at memory speed, not byte by byte. */
static int
smtpd_data_8bit(const char *p, size_t n)
{
    const uint64_t high = 0x8080808080808080ull;
    uint64_t acc = 0, w;
    size_t i = 0, j;

    for (; i + 64 <= n; i += 64) {
        for (j = 0; j < 64; j += 8) {
            memcpy(&w, p + i + j, 8);
            acc |= w;
        }
        if (acc & high)
            return 1;
    }
    for (; i < n; i++)
        acc |= (unsigned char) p[i];
    return (acc & high) != 0;
}

static void
smtpd_data_flag_bytes(struct smtpd_data *d, const char *p, size_t n)
{
    if (!(d->flags & SMTPD_DATA_NUL) && memchr(p, '\0', n) != NULL)
        d->flags |= SMTPD_DATA_NUL;
    if (!(d->flags & SMTPD_DATA_8BIT) && smtpd_data_8bit(p, n))
        d->flags |= SMTPD_DATA_8BIT;
}

/* One piece of message content (CRLF lines, unstuffed). */
static void
smtpd_data_put(struct smtpd_data *d, const char *p, size_t n)
{
    size_t used = d->size;

    d->size += n;
    smtpd_data_flag_bytes(d, p, n);
    if (d->flags & SMTPD_DATA_TOO_BIG)
        return;
    if (d->max_size > 0 && d->size > d->max_size) {
        d->flags |= SMTPD_DATA_TOO_BIG;
        n = d->max_size - used;
        if (n == 0)
            return;
    }
    if (d->cb.content != NULL)
        d->cb.content(d->arg, p, n);
    smtpd_data_route(d, p, n);
}

/* ---- line stage: raw bytes to content pieces ---- */

static void
smtpd_data_flush(struct smtpd_data *d)
{
    if (d->span_len > 0)
        smtpd_data_put(d, d->span, d->span_len);
    d->span = NULL;
    d->span_len = 0;
}

/* Pass n input bytes at p through unchanged. */
static void
smtpd_data_pass(struct smtpd_data *d, const char *p, size_t n)
{
    if (n == 0)
        return;
    if (d->span_len > 0 && d->span + d->span_len == p) {
        d->span_len += n;
        return;
    }
    smtpd_data_flush(d);
    d->span = p;
    d->span_len = n;
}

/* Made-up bytes (not in the input, or in an earlier feed). */
static void
smtpd_data_emit(struct smtpd_data *d, const char *s, size_t n)
{
    smtpd_data_flush(d);
    smtpd_data_put(d, s, n);
}

/* A line ended with a bare LF or CR (flag). -1 with forbid. */
static int
smtpd_data_bare(struct smtpd_data *d, int flag)
{
    d->flags |= flag;
    if (d->forbid) {
        smtpd_data_flush(d);
        smtpd_data_enter(d, SMTPD_DS_ERROR);
        return -1;
    }
    smtpd_data_emit(d, "\r\n", 2);
    d->crlf_bol = 0;
    smtpd_data_enter(d, SMTPD_DS_BOL);
    return 0;
}

/* Index of the first CR or LF in p[0..n), or n. */
static size_t
smtpd_data_scan(const char *p, size_t n)
{
    const char *lf = memchr(p, '\n', n);
    size_t upto = lf != NULL ? (size_t) (lf - p) : n;
    const char *cr = memchr(p, '\r', upto);

    return cr != NULL ? (size_t) (cr - p) : upto;
}

ssize_t
smtpd_data_feed(struct smtpd_data *d, const char *p, size_t n, int *done)
{
    size_t i = 0, k;

    *done = 0;
    switch (d->state) {
    case SMTPD_DS_DONE:
        *done = 1;
        return 0;
    case SMTPD_DS_ERROR:
        return -1;
    case SMTPD_DS_BOL:
    case SMTPD_DS_DOT:
    case SMTPD_DS_DOT_CR:
    case SMTPD_DS_TEXT:
    case SMTPD_DS_CR:
        break;
    }

    while (i < n) {
        switch (d->state) {
        case SMTPD_DS_BOL:
            if (p[i] == '.') {
                i++;
                smtpd_data_enter(d, SMTPD_DS_DOT);
            } else {
                smtpd_data_enter(d, SMTPD_DS_TEXT);
            }
            break;
        case SMTPD_DS_DOT:
            if (p[i] == '\r') {
                i++;
                smtpd_data_enter(d, SMTPD_DS_DOT_CR);
            } else if (p[i] == '\n') {
                /* "." and a bare LF: not the end; the dot stays. */
                if (!d->forbid)
                    smtpd_data_emit(d, ".", 1);
                i++;
                if (smtpd_data_bare(d, SMTPD_DATA_BARE_LF) < 0)
                    goto fail;
            } else {
                /* Stuffing: the dot is dropped, the line goes on. */
                smtpd_data_enter(d, SMTPD_DS_TEXT);
            }
            break;
        case SMTPD_DS_DOT_CR:
            if (p[i] == '\n') {
                i++;
                if (d->crlf_bol) {
                    smtpd_data_flush(d);
                    smtpd_data_enter(d, SMTPD_DS_DONE);
                    smtpd_data_eoh(d);
                    *done = 1;
                    return (ssize_t) i;
                }
                /* ".\r\n" after a bare line ending is content. */
                if (i >= 3)
                    smtpd_data_pass(d, p + i - 3, 3);
                else
                    smtpd_data_emit(d, ".\r\n", 3);
                d->crlf_bol = 1;
                smtpd_data_enter(d, SMTPD_DS_BOL);
            } else {
                /* "." and a bare CR: not the end; the dot stays. */
                if (!d->forbid)
                    smtpd_data_emit(d, ".", 1);
                if (smtpd_data_bare(d, SMTPD_DATA_BARE_CR) < 0)
                    goto fail;
            }
            break;
        case SMTPD_DS_TEXT:
            k = smtpd_data_scan(p + i, n - i);
            smtpd_data_pass(d, p + i, k);
            i += k;
            if (i == n)
                break;
            if (p[i] == '\r') {
                i++;
                smtpd_data_enter(d, SMTPD_DS_CR);
            } else {
                i++;
                if (smtpd_data_bare(d, SMTPD_DATA_BARE_LF) < 0)
                    goto fail;
            }
            break;
        case SMTPD_DS_CR:
            if (p[i] == '\n') {
                if (i >= 1)
                    smtpd_data_pass(d, p + i - 1, 2);
                else
                    smtpd_data_emit(d, "\r\n", 2);
                i++;
                d->crlf_bol = 1;
                smtpd_data_enter(d, SMTPD_DS_BOL);
            } else if (smtpd_data_bare(d, SMTPD_DATA_BARE_CR) < 0) {
                goto fail;
            }
            break;
        case SMTPD_DS_DONE:
        case SMTPD_DS_ERROR:
            log_panic("smtpd_data: feed loop in final state");
        }
    }
    smtpd_data_flush(d);
    return (ssize_t) n;

fail:
    return -1;
}
