/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fuzz_smtpd_data.c - the DATA stream decoder.
 * Input: byte 0 picks forbid, max_size and header_max; bytes 1..8 are the
 * piece sizes (used in turn); the rest is the stream after "354". The
 * stream is decoded twice, whole and in pieces (each piece in its own
 * allocation), and both runs must agree. Checked: content has CRLF lines
 * only (no bare CR or LF), stays within max_size, header fields are well
 * formed and come before eoh(), body only after it, eoh() at most once,
 * the end of data is a real "CRLF.CRLF", and -1 only with forbid set and a
 * BARE_* flag. abort() on a broken invariant.
 * Inputs up to 2 MB are taken, so that a run with a large -max_len (and
 * large seeds) reaches the default header limit (header_max 0: 100 KB)
 * and long bodies; libFuzzer's default -max_len (4 KB) keeps runs small.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "proxy/smtpd_data.h"

struct run {
    struct buf *content;
    struct buf *trace; /* headers, eoh, body: order kept */
    size_t hbytes, bbytes;
    int neoh;
    int last_body;
    ssize_t used;
    int done;
    int flags;
    size_t size;
};

static void
on_content(void *arg, const void *p, size_t n)
{
    struct run *r = arg;

    if (n == 0 || buf_append(r->content, p, n) < 0)
        abort();
}

static void
on_header(void *arg, const char *name, size_t nlen, const char *value,
          size_t vlen)
{
    struct run *r = arg;

    if (r->neoh != 0 || nlen == 0)
        abort();
    for (size_t i = 0; i < nlen; i++) {
        unsigned char c = (unsigned char) name[i];

        if (c < 33 || c > 126 || c == ':')
            abort();
    }
    if (vlen > 0 && value[vlen - 1] == '\n')
        abort();
    r->hbytes += nlen + 1 + vlen + 2;
    buf_puts(r->trace, "H");
    buf_append(r->trace, name, nlen);
    buf_putc(r->trace, ':');
    buf_append(r->trace, value, vlen);
    buf_putc(r->trace, '\n');
    r->last_body = 0;
}

static void
on_eoh(void *arg)
{
    struct run *r = arg;

    if (++r->neoh != 1)
        abort();
    buf_puts(r->trace, "E\n");
    r->last_body = 0;
}

static void
on_body(void *arg, const void *p, size_t n)
{
    struct run *r = arg;

    if (r->neoh != 1 || n == 0)
        abort();
    if (!r->last_body)
        buf_puts(r->trace, "B");
    buf_append(r->trace, p, n);
    r->bbytes += n;
    r->last_body = 1;
}

static const struct smtpd_data_cb fuzz_cb = {on_content, on_header, on_eoh,
                                             on_body};

static void
decode(struct run *r, const uint8_t *in, size_t n, const uint8_t *sizes,
       size_t nsizes, size_t max_size, size_t header_max, int forbid)
{
    struct smtpd_data *d;
    size_t off = 0, k = 0;
    int was_empty = 0;

    memset(r, 0, sizeof(*r));
    r->content = buf_new(256, BUF_NOCAP);
    r->trace = buf_new(256, BUF_NOCAP);
    d = smtpd_data_new(&fuzz_cb, r, max_size, header_max, forbid);
    for (;;) {
        size_t len = nsizes ? sizes[k++ % nsizes] % 40 : n - off;
        char *piece;
        ssize_t got;

        if (len == 0 && was_empty)
            len = 1; /* an empty piece now and then, not forever */
        was_empty = len == 0;
        if (len > n - off)
            len = n - off;
        piece = malloc(len ? len : 1);
        memcpy(piece, in + off, len);
        got = smtpd_data_feed(d, piece, len, &r->done);
        free(piece);
        if (got < 0) {
            r->used = -1;
            break;
        }
        if ((size_t) got > len || (!r->done && (size_t) got != len))
            abort();
        off += (size_t) got;
        r->used = (ssize_t) off;
        if (r->done || off == n)
            break;
    }
    r->flags = smtpd_data_flags(d);
    r->size = smtpd_data_size(d);
    smtpd_data_free(d);
}

static void
check(const struct run *r, const uint8_t *in, size_t max_size, int forbid)
{
    const char *c = buf_data(r->content);
    size_t n = buf_len(r->content);

    if (r->used < 0) {
        if (!forbid || !(r->flags & (SMTPD_DATA_BARE_LF | SMTPD_DATA_BARE_CR)))
            abort();
        return;
    }
    if (forbid && (r->flags & (SMTPD_DATA_BARE_LF | SMTPD_DATA_BARE_CR)))
        abort();
    /* CRLF line endings only; a cut at max_size may split one. */
    for (size_t i = 0; i < n; i++) {
        if (c[i] == '\n' && (i == 0 || c[i - 1] != '\r'))
            abort();
        if (c[i] == '\r' && i + 1 < n && c[i + 1] != '\n')
            abort();
    }
    if (r->flags & SMTPD_DATA_TOO_BIG) {
        if (max_size == 0 || n != max_size || r->size <= max_size)
            abort();
    } else {
        if (r->size != n || (n > 0 && c[n - 1] == '\r' && r->done))
            abort();
        if (r->done && n > 0 && (n < 2 || c[n - 1] != '\n'))
            abort();
    }
    if (r->bbytes > n || r->hbytes > n)
        abort();
    if (r->done) {
        size_t u = (size_t) r->used;

        /* ends in ".\r\n" at the start or after a real "\r\n" */
        if (u < 3 || memcmp(in + u - 3, ".\r\n", 3) != 0)
            abort();
        if (u > 3 && (u < 5 || memcmp(in + u - 5, "\r\n", 2) != 0))
            abort();
        if (r->neoh != 1)
            abort();
    }
}

static void
same(const struct run *a, const struct run *b)
{
    if (a->used != b->used || a->done != b->done || a->flags != b->flags
        || a->size != b->size || a->neoh != b->neoh)
        abort();
    if (buf_len(a->content) != buf_len(b->content)
        || memcmp(buf_data(a->content), buf_data(b->content),
                  buf_len(a->content))
               != 0)
        abort();
    if (buf_len(a->trace) != buf_len(b->trace)
        || memcmp(buf_data(a->trace), buf_data(b->trace), buf_len(a->trace))
               != 0)
        abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t max_sizes[] = {0, 1, 3, 10, 40, 200, 1000, 0};
    static const size_t header_maxes[] = {0, 1, 2, 8, 20, 64, 300, 5000};
    struct run whole, pieces;
    size_t max_size, header_max;
    int forbid;

    if (size < 9 || size > 2 * 1024 * 1024)
        return 0;
    forbid = data[0] & 1;
    max_size = max_sizes[(data[0] >> 1) & 7];
    header_max = header_maxes[(data[0] >> 4) & 7];

    decode(&whole, data + 9, size - 9, NULL, 0, max_size, header_max, forbid);
    check(&whole, data + 9, max_size, forbid);
    decode(&pieces, data + 9, size - 9, data + 1, 8, max_size, header_max,
           forbid);
    check(&pieces, data + 9, max_size, forbid);
    same(&whole, &pieces);

    buf_free(whole.content);
    buf_free(whole.trace);
    buf_free(pieces.content);
    buf_free(pieces.trace);
    return 0;
}
