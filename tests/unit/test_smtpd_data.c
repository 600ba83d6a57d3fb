/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test_smtpd_data.c - the DATA stream decoder: unstuffing, end of data at
 * every split point, bare LF / CR, header splitting, limits, flags.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/buf.h"
#include "proxy/smtpd_data.h"

/* What the callbacks saw. trace: "H:name=value\n" per field, "E\n" for
 * eoh, "B:" before a run of body bytes (adjacent body calls merged). */
struct seen {
    struct buf *content;
    struct buf *trace;
    int last_body;
    int ncontent;
    int neoh;
};

struct result {
    struct seen s;
    ssize_t used; /* bytes consumed in all, or -1 */
    int done;
    int flags;
    size_t size;
};

static void
cb_content(void *arg, const void *p, size_t n)
{
    struct seen *s = arg;

    assert_true(n > 0);
    assert_int_equal(buf_append(s->content, p, n), 0);
    s->ncontent++;
}

static void
cb_header(void *arg, const char *name, size_t nlen, const char *value,
          size_t vlen)
{
    struct seen *s = arg;

    assert_int_equal(s->neoh, 0);
    buf_puts(s->trace, "H:");
    buf_append(s->trace, name, nlen);
    buf_putc(s->trace, '=');
    buf_append(s->trace, value, vlen);
    buf_putc(s->trace, '\n');
    s->last_body = 0;
}

static void
cb_eoh(void *arg)
{
    struct seen *s = arg;

    s->neoh++;
    buf_puts(s->trace, "E\n");
    s->last_body = 0;
}

static void
cb_body(void *arg, const void *p, size_t n)
{
    struct seen *s = arg;

    assert_true(n > 0);
    assert_int_equal(s->neoh, 1);
    if (!s->last_body)
        buf_puts(s->trace, "B:");
    buf_append(s->trace, p, n);
    s->last_body = 1;
}

static const struct smtpd_data_cb cbs = {cb_content, cb_header, cb_eoh,
                                         cb_body};

/* Feed in[0..n) in pieces ending at cuts[] (ascending), each piece in its
 * own allocation so that a read past a piece is caught by ASan. */
static void
decode_cuts(struct result *r, const char *in, size_t n, const size_t *cuts,
            size_t ncuts, size_t max_size, size_t header_max, int forbid)
{
    struct smtpd_data *d;
    size_t off = 0;

    memset(r, 0, sizeof(*r));
    r->s.content = buf_new(64, BUF_NOCAP);
    r->s.trace = buf_new(64, BUF_NOCAP);
    d = smtpd_data_new(&cbs, &r->s, max_size, header_max, forbid);
    for (size_t c = 0; c <= ncuts; c++) {
        size_t end = c < ncuts ? cuts[c] : n;
        size_t len = end - off;
        char *piece = malloc(len ? len : 1);
        ssize_t got;

        memcpy(piece, in + off, len);
        got = smtpd_data_feed(d, piece, len, &r->done);
        free(piece);
        if (got < 0) {
            r->used = -1;
            break;
        }
        assert_true((size_t) got <= len);
        if (r->done) {
            r->used = (ssize_t) (off + (size_t) got);
            break;
        }
        assert_int_equal((size_t) got, len);
        off = end;
        r->used = (ssize_t) off;
    }
    r->flags = smtpd_data_flags(d);
    r->size = smtpd_data_size(d);
    smtpd_data_free(d);
}

static void
decode(struct result *r, const char *in, size_t n, size_t max_size,
       size_t header_max, int forbid)
{
    decode_cuts(r, in, n, NULL, 0, max_size, header_max, forbid);
}

static void
result_free(struct result *r)
{
    buf_free(r->s.content);
    buf_free(r->s.trace);
}

static void
assert_bytes(const struct buf *b, const char *want, size_t wlen)
{
    if (buf_len(b) != wlen || memcmp(buf_data(b), want, wlen) != 0)
        fail_msg("got [%.*s] (%zu), want [%.*s] (%zu)", (int) buf_len(b),
                 buf_data(b), buf_len(b), (int) wlen, want, wlen);
}

#define ASSERT_BUF(b, s) assert_bytes((b), (s), sizeof(s) - 1)
#define DECODE(r, s, max, hmax, forbid) \
    decode((r), (s), sizeof(s) - 1, (max), (hmax), (forbid))

static void
same_result(const struct result *a, const struct result *b)
{
    assert_int_equal(a->used, b->used);
    assert_int_equal(a->done, b->done);
    assert_int_equal(a->flags, b->flags);
    assert_int_equal(a->size, b->size);
    assert_bytes(b->s.content, buf_data(a->s.content), buf_len(a->s.content));
    assert_bytes(b->s.trace, buf_data(a->s.trace), buf_len(a->s.trace));
}

static void
test_basic(void **state)
{
    static const char in[] = "Subject: hi\r\nFrom: a@b\r\n\r\nbody\r\n"
                             "..dot\r\n.\r\n";
    struct result r;

    DECODE(&r, in, 0, 0, 1);
    assert_int_equal(r.used, sizeof(in) - 1);
    assert_true(r.done);
    assert_int_equal(r.flags, 0);
    ASSERT_BUF(r.s.content, "Subject: hi\r\nFrom: a@b\r\n\r\nbody\r\n.dot\r\n");
    ASSERT_BUF(r.s.trace, "H:Subject= hi\nH:From= a@b\nE\nB:body\r\n"
                          ".dot\r\n");
    assert_int_equal(r.size, buf_len(r.s.content));
    /* One feed, nothing to unstuff before the dot: two content pieces. */
    assert_int_equal(r.s.ncontent, 2);
    result_free(&r);
}

static void
test_unstuff(void **state)
{
    struct result r;

    DECODE(&r, "\r\n..\r\n...x\r\n. x\r\n.y\r\n.\r\n", 0, 0, 1);
    assert_true(r.done);
    ASSERT_BUF(r.s.content, "\r\n.\r\n..x\r\n x\r\ny\r\n");
    ASSERT_BUF(r.s.trace, "E\nB:.\r\n..x\r\n x\r\ny\r\n");
    result_free(&r);
}

static void
test_empty_message(void **state)
{
    struct result r;

    DECODE(&r, ".\r\nQUIT\r\n", 0, 0, 1);
    assert_true(r.done);
    assert_int_equal(r.used, 3);
    assert_int_equal(r.size, 0);
    ASSERT_BUF(r.s.content, "");
    ASSERT_BUF(r.s.trace, "E\n");
    assert_int_equal(r.s.ncontent, 0);
    result_free(&r);
}

static void
test_only_header(void **state)
{
    struct result r;

    DECODE(&r, "A: 1\r\nB:2\r\n.\r\n", 0, 0, 1);
    assert_true(r.done);
    ASSERT_BUF(r.s.content, "A: 1\r\nB:2\r\n");
    ASSERT_BUF(r.s.trace, "H:A= 1\nH:B=2\nE\n");
    result_free(&r);
}

static void
test_folded(void **state)
{
    struct result r;

    DECODE(&r, "Subject: a\r\n b\r\n\tc\r\nX-Y: \r\n\r\n z\r\n.\r\n", 0, 0, 1);
    assert_true(r.done);
    ASSERT_BUF(r.s.trace, "H:Subject= a\r\n b\r\n\tc\nH:X-Y= \nE\nB: z\r\n");
    result_free(&r);
}

static void
test_no_blank_line(void **state)
{
    struct result r;

    /* The first line that is not a field starts the body. */
    DECODE(&r, "A: 1\r\nthis is body\r\nC: 3\r\n.\r\n", 0, 0, 1);
    assert_true(r.done);
    ASSERT_BUF(r.s.content, "A: 1\r\nthis is body\r\nC: 3\r\n");
    ASSERT_BUF(r.s.trace, "H:A= 1\nE\nB:this is body\r\nC: 3\r\n");
    result_free(&r);

    /* A name holding a space is no name; nor is a continuation first. */
    DECODE(&r, "From x@y\r\nA: 1\r\n.\r\n", 0, 0, 1);
    ASSERT_BUF(r.s.trace, "E\nB:From x@y\r\nA: 1\r\n");
    result_free(&r);
    DECODE(&r, " A: 1\r\n.\r\n", 0, 0, 1);
    ASSERT_BUF(r.s.trace, "E\nB: A: 1\r\n");
    result_free(&r);
    DECODE(&r, ": 1\r\n.\r\n", 0, 0, 1);
    ASSERT_BUF(r.s.trace, "E\nB:: 1\r\n");
    result_free(&r);
}

static void
test_header_max(void **state)
{
    struct result r;

    /* A: fits (16 bytes), B: would make 32 > 20. */
    DECODE(&r, "A: 0123456789\r\nB: 0123456789\r\n\r\nbody\r\n.\r\n", 0, 20, 1);
    assert_true(r.done);
    assert_int_equal(r.flags, SMTPD_DATA_HEADER_TOO_BIG);
    ASSERT_BUF(r.s.content, "A: 0123456789\r\nB: 0123456789\r\n\r\nbody\r\n");
    ASSERT_BUF(r.s.trace,
               "H:A= 0123456789\nE\nB:B: 0123456789\r\n\r\nbody\r\n");
    result_free(&r);

    /* Exactly at the limit, then the empty line: fine. */
    DECODE(&r, "A: 0123456789\r\n\r\nx\r\n.\r\n", 0, 15, 1);
    assert_int_equal(r.flags, 0);
    ASSERT_BUF(r.s.trace, "H:A= 0123456789\nE\nB:x\r\n");
    result_free(&r);

    /* One field longer than header_max, without any line end in sight. */
    DECODE(&r, "Subject: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n.\r\n", 0,
           10, 1);
    assert_true(r.done);
    assert_int_equal(r.flags, SMTPD_DATA_HEADER_TOO_BIG);
    ASSERT_BUF(r.s.trace,
               "E\nB:Subject: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n");
    result_free(&r);

    /* A continuation line pushing the field over. */
    DECODE(&r, "A: 1\r\n 23456789\r\n.\r\n", 0, 12, 1);
    assert_int_equal(r.flags, SMTPD_DATA_HEADER_TOO_BIG);
    ASSERT_BUF(r.s.trace, "H:A= 1\nE\nB: 23456789\r\n");
    result_free(&r);
}

static void
test_max_size(void **state)
{
    static const char in[] = "A: 1\r\n\r\n0123456789\r\nabcdefghij\r\n.\r\n"
                             "QUIT\r\n";
    struct result r;

    DECODE(&r, in, 12, 0, 1);
    assert_true(r.done);
    assert_int_equal(r.used, sizeof(in) - 1 - 6);
    assert_int_equal(r.flags, SMTPD_DATA_TOO_BIG);
    assert_int_equal(r.size, 32);
    ASSERT_BUF(r.s.content, "A: 1\r\n\r\n0123");
    ASSERT_BUF(r.s.trace, "H:A= 1\nE\nB:0123");
    result_free(&r);

    /* Exactly max_size is not too big. */
    DECODE(&r, "abc\r\n.\r\n", 5, 0, 1);
    assert_int_equal(r.flags, 0);
    ASSERT_BUF(r.s.content, "abc\r\n");
    result_free(&r);

    /* Too big inside the header: eoh() still comes at the end. */
    DECODE(&r, "Subject: 0123456789\r\nX: y\r\n.\r\n", 8, 0, 1);
    assert_true(r.done);
    assert_int_equal(r.flags, SMTPD_DATA_TOO_BIG);
    ASSERT_BUF(r.s.content, "Subject:");
    ASSERT_BUF(r.s.trace, "E\n");
    result_free(&r);

    /* Bare LF after max_size is still refused. */
    DECODE(&r, "0123456789\n.\r\n", 4, 0, 1);
    assert_int_equal(r.used, -1);
    assert_int_equal(r.flags, SMTPD_DATA_TOO_BIG | SMTPD_DATA_BARE_LF);
    result_free(&r);
}

static void
test_bare_lf(void **state)
{
    struct result r;

    DECODE(&r, "a\nb\r\n.\r\n", 0, 0, 1);
    assert_int_equal(r.used, -1);
    assert_false(r.done);
    assert_int_equal(r.flags, SMTPD_DATA_BARE_LF);
    result_free(&r);

    DECODE(&r, "a\nb\r\n.\r\n", 0, 0, 0);
    assert_true(r.done);
    assert_int_equal(r.used, 8);
    assert_true(r.flags & SMTPD_DATA_BARE_LF);
    ASSERT_BUF(r.s.content, "a\r\nb\r\n");
    result_free(&r);

    /* ".\n" is not the end, with or without forbid. */
    DECODE(&r, "x\r\n.\n", 0, 0, 1);
    assert_int_equal(r.used, -1);
    assert_int_equal(r.flags, SMTPD_DATA_BARE_LF);
    result_free(&r);
    DECODE(&r, "x\r\n.\ny\r\n.\r\n", 0, 0, 0);
    assert_true(r.done);
    assert_int_equal(r.used, 11);
    ASSERT_BUF(r.s.content, "x\r\n.\r\ny\r\n");
    result_free(&r);

    /* "\n.\r\n": a line begun by a bare LF never ends the message. */
    DECODE(&r, "x\n.\r\ny\r\n.\r\nQUIT\r\n", 0, 0, 0);
    assert_true(r.done);
    assert_int_equal(r.used, 11);
    ASSERT_BUF(r.s.content, "x\r\n.\r\ny\r\n");
    result_free(&r);

    /* "\n.\n" alone is just content: no end of data. */
    DECODE(&r, "\n.\n", 0, 0, 0);
    assert_false(r.done);
    assert_int_equal(r.used, 3);
    ASSERT_BUF(r.s.content, "\r\n.\r\n");
    result_free(&r);
}

static void
test_bare_cr(void **state)
{
    struct result r;

    DECODE(&r, "a\rb\r\n.\r\n", 0, 0, 1);
    assert_int_equal(r.used, -1);
    assert_int_equal(r.flags, SMTPD_DATA_BARE_CR);
    result_free(&r);

    DECODE(&r, "a\rb\r\n.\r\n", 0, 0, 0);
    assert_true(r.done);
    assert_true(r.flags & SMTPD_DATA_BARE_CR);
    ASSERT_BUF(r.s.content, "a\r\nb\r\n");
    result_free(&r);

    /* "\r.\r\n" (smuggling form) and ".\r" + text are not the end. */
    DECODE(&r, "a\r.\r\nMAIL FROM:<x@y>\r\n.\r\n", 0, 0, 0);
    assert_true(r.done);
    assert_int_equal(r.used, 25);
    ASSERT_BUF(r.s.content, "a\r\n.\r\nMAIL FROM:<x@y>\r\n");
    result_free(&r);
    DECODE(&r, "a\r.\r\n", 0, 0, 1);
    assert_int_equal(r.used, -1);
    assert_int_equal(r.flags, SMTPD_DATA_BARE_CR);
    result_free(&r);
    DECODE(&r, "\r\n.\rx\r\n.\r\n", 0, 0, 0);
    assert_true(r.done);
    ASSERT_BUF(r.s.content, "\r\n.\r\nx\r\n");
    result_free(&r);
    DECODE(&r, "\r\n.\rx\r\n.\r\n", 0, 0, 1);
    assert_int_equal(r.used, -1);
    assert_int_equal(r.flags, SMTPD_DATA_BARE_CR);
    result_free(&r);

    /* CR CR LF: one bare CR, then a line end. */
    DECODE(&r, "a\r\r\n.\r\n", 0, 0, 0);
    assert_true(r.done);
    ASSERT_BUF(r.s.content, "a\r\n\r\n");
    result_free(&r);
}

static void
test_pipelined(void **state)
{
    static const char in[] = "a\r\n.\r\nQUIT\r\n";
    struct smtpd_data *d;
    struct seen s = {0};
    int done = 0;

    s.content = buf_new(64, BUF_NOCAP);
    s.trace = buf_new(64, BUF_NOCAP);
    d = smtpd_data_new(&cbs, &s, 0, 0, 1);
    assert_int_equal(smtpd_data_feed(d, in, sizeof(in) - 1, &done), 6);
    assert_true(done);
    done = 0;
    assert_int_equal(smtpd_data_feed(d, "QUIT\r\n", 6, &done), 0);
    assert_true(done);
    ASSERT_BUF(s.content, "a\r\n");
    smtpd_data_free(d);

    /* After an error, every feed fails. */
    d = smtpd_data_new(&cbs, &s, 0, 0, 1);
    assert_int_equal(smtpd_data_feed(d, "\n", 1, &done), -1);
    assert_false(done);
    assert_int_equal(smtpd_data_feed(d, ".\r\n", 3, &done), -1);
    smtpd_data_free(d);
    buf_free(s.content);
    buf_free(s.trace);
}

static void
test_flags_8bit_nul(void **state)
{
    struct result r;

    decode(&r, "h\xc3\xa9\r\n.\r\n", 8, 0, 0, 1);
    assert_int_equal(r.flags, SMTPD_DATA_8BIT);
    result_free(&r);

    decode(&r, "a\0b\r\n.\r\n", 8, 0, 0, 1);
    assert_true(r.done);
    assert_int_equal(r.flags, SMTPD_DATA_NUL);
    assert_bytes(r.s.content, "a\0b\r\n", 5);
    result_free(&r);

    DECODE(&r, "plain ascii\r\n.\r\n", 0, 0, 1);
    assert_int_equal(r.flags, 0);
    result_free(&r);
}

/* The 8-bit check reads 64 bytes at a time: a high byte at any offset,
 * in pieces of any length (block, word and byte tails), is found; text
 * without one is not flagged. */
static void
test_flags_8bit_every_offset(void **state)
{
    char in[300];
    size_t len, pos, n;
    struct result r;

    for (len = 1; len <= 200; len += (len < 140 ? 1 : 7)) {
        for (pos = 0; pos <= len; pos++) { /* pos == len: no high byte */
            memset(in, 'x', len);
            if (pos < len)
                in[pos] = (char) 0x80;
            memcpy(in + len, "\r\n.\r\n", 5);
            n = len + 5;
            decode(&r, in, n, 0, 0, 1);
            assert_true(r.done);
            assert_int_equal(r.flags, pos < len ? SMTPD_DATA_8BIT : 0);
            result_free(&r);
        }
    }
}

static void
test_big_chunk(void **state)
{
    size_t n = 65536;
    char *in = malloc(n + 3);
    struct result r;

    for (size_t i = 0; i < n; i++)
        in[i] = (i % 64 == 62) ? '\r' : (i % 64 == 63) ? '\n' : 'x';
    memcpy(in + n, ".\r\n", 3);
    decode(&r, in, n + 3, 0, 0, 1);
    assert_true(r.done);
    assert_int_equal(r.s.ncontent, 1);
    assert_int_equal(buf_len(r.s.content), n);
    assert_memory_equal(buf_data(r.s.content), in, n);
    result_free(&r);
    free(in);
}

static const struct {
    const char *in;
    size_t max, hmax;
    size_t len; /* 0: strlen(in) */
} split_cases[] = {
    {"Subject: hi\r\nFrom: a@b\r\n\r\nbody\r\n..dot\r\n.\r\nQUIT\r\n", 0, 0, 0},
    {"A: 1\r\n b\r\nC: 2\r\n\r\n\r\n.\r\n", 0, 0, 0},
    {"A: 1\r\nnot a field\r\n.x\r\n.\r\n", 0, 0, 0},
    {".\r\nRSET\r\n", 0, 0, 0},
    {"\r\n.\r\n", 0, 0, 0},
    {"A: 0123456789\r\nB: 0123456789\r\n\r\nbody\r\n.\r\n", 0, 20, 0},
    {"A: 1\r\n\r\n0123456789\r\nabcdefghij\r\n.\r\nX", 12, 0, 0},
    {"..\r\n...\r\n. \r\n.\r\n", 0, 0, 0},
    {"a\nb\r\n.\n.\r.\r\nx\r\n.\r\n", 0, 0, 0},
    {"a\r\r\n\r\r.\r\r\n.\r\n", 0, 0, 0},
    {"Subject: \xe9\0\r\n\r\n\0\r\n.\r\n", 0, 0, 21},
};

static void
test_splits(void **state)
{
    for (size_t c = 0; c < sizeof(split_cases) / sizeof(split_cases[0]); c++) {
        const char *in = split_cases[c].in;
        size_t n = split_cases[c].len ? split_cases[c].len : strlen(in);
        size_t cuts[256];

        for (int forbid = 0; forbid <= 1; forbid++) {
            struct result whole, r;

            decode(&whole, in, n, split_cases[c].max, split_cases[c].hmax,
                   forbid);
            /* every single split point, and every pair */
            for (size_t i = 0; i <= n; i++) {
                for (size_t j = i; j <= n; j++) {
                    cuts[0] = i;
                    cuts[1] = j;
                    decode_cuts(&r, in, n, cuts, 2, split_cases[c].max,
                                split_cases[c].hmax, forbid);
                    same_result(&whole, &r);
                    result_free(&r);
                }
            }
            /* byte by byte */
            for (size_t i = 0; i < n; i++)
                cuts[i] = i + 1;
            decode_cuts(&r, in, n, cuts, n, split_cases[c].max,
                        split_cases[c].hmax, forbid);
            same_result(&whole, &r);
            result_free(&r);
            result_free(&whole);
        }
    }
}

/* The cases above in detail: what the splits are compared against. */
static void
test_split_expectations(void **state)
{
    struct result r;

    decode(&r, split_cases[8].in, strlen(split_cases[8].in), 0, 0, 0);
    assert_true(r.done);
    ASSERT_BUF(r.s.content, "a\r\nb\r\n.\r\n.\r\n.\r\nx\r\n");
    result_free(&r);
    decode(&r, split_cases[9].in, strlen(split_cases[9].in), 0, 0, 0);
    assert_true(r.done);
    ASSERT_BUF(r.s.content, "a\r\n\r\n\r\n\r\n.\r\n\r\n");
    result_free(&r);
}

/* Random streams: decoded in one piece, byte by byte and at two random
 * cuts, the results must agree. Lines of every length, with dots, bare
 * CRs and LFs, NULs and 8-bit bytes at every offset. */
static void
test_random_streams(void **state)
{
    static const char alphabet[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaa:: ...\r\r\r\n"
                                   "\n\n\x80\x00";
    char in[600];
    size_t cuts[sizeof(in)];
    unsigned seed = 20261206;

    for (int iter = 0; iter < 20000; iter++) {
        size_t n = 0, len = (size_t) rand_r(&seed) % 500;

        while (n < len) {
            if (rand_r(&seed) % 4 == 0) { /* a plain line, 0-24 bytes */
                size_t l = (size_t) rand_r(&seed) % 25;

                for (size_t i = 0; i < l && n < len; i++)
                    in[n++] = (char) ('b' + i % 20);
                if (n + 2 <= len) {
                    in[n++] = '\r';
                    in[n++] = '\n';
                }
            } else {
                in[n++] =
                    alphabet[(size_t) rand_r(&seed) % (sizeof(alphabet) - 1)];
            }
        }
        if (rand_r(&seed) % 2) {
            memcpy(in + n, "\r\n.\r\n", 5);
            n += 5;
        }
        for (int forbid = 0; forbid <= 1; forbid++) {
            size_t max = rand_r(&seed) % 3 == 0 ? 200 : 0;
            size_t hmax = rand_r(&seed) % 3 == 0 ? 64 : 0;
            struct result whole, r;

            decode(&whole, in, n, max, hmax, forbid);
            for (size_t i = 0; i < n; i++)
                cuts[i] = i + 1;
            decode_cuts(&r, in, n, cuts, n, max, hmax, forbid);
            same_result(&whole, &r);
            result_free(&r);
            cuts[0] = n ? (size_t) rand_r(&seed) % n : 0;
            cuts[1] =
                cuts[0]
                + (n - cuts[0] ? (size_t) rand_r(&seed) % (n - cuts[0]) : 0);
            decode_cuts(&r, in, n, cuts, 2, max, hmax, forbid);
            same_result(&whole, &r);
            result_free(&r);
            result_free(&whole);
        }
    }
}

/* Line ends on both sides of 8-byte boundaries, a stuffed dot between
 * plain lines, a bare LF and a bare CR next to real line ends. */
static void
test_plain_lines(void **state)
{
    struct result r;

    /* 7, 8 and 9 bytes before the CRLF; a dot line after; a bare LF in
     * the 9th byte of a line; CR LF split by the word boundary */
    DECODE(&r,
           "abcdefg\r\nabcdefgh\r\nabcdefghi\r\n..x\r\n1234567\r\n"
           "abcdefgh\nz\r\n\r\n.\r\n",
           0, 0, 0);
    assert_true(r.done);
    ASSERT_BUF(r.s.content, "abcdefg\r\nabcdefgh\r\nabcdefghi\r\n.x\r\n"
                            "1234567\r\nabcdefgh\r\nz\r\n\r\n");
    assert_int_equal(r.flags, SMTPD_DATA_BARE_LF);
    result_free(&r);
    /* a bare CR right before the CRLF: refused with forbid */
    DECODE(&r, "Subject: s\r\n\r\nabcdefg\r\r\nx\r\n.\r\n", 0, 0, 1);
    assert_int_equal(r.used, -1);
    assert_int_equal(r.flags, SMTPD_DATA_BARE_CR);
    result_free(&r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_unstuff),
        cmocka_unit_test(test_empty_message),
        cmocka_unit_test(test_only_header),
        cmocka_unit_test(test_folded),
        cmocka_unit_test(test_no_blank_line),
        cmocka_unit_test(test_header_max),
        cmocka_unit_test(test_max_size),
        cmocka_unit_test(test_bare_lf),
        cmocka_unit_test(test_bare_cr),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_flags_8bit_nul),
        cmocka_unit_test(test_flags_8bit_every_offset),
        cmocka_unit_test(test_big_chunk),
        cmocka_unit_test(test_splits),
        cmocka_unit_test(test_split_expectations),
        cmocka_unit_test(test_random_streams),
        cmocka_unit_test(test_plain_lines),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
