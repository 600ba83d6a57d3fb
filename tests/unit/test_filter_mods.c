/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test_filter_mods.c - header and body modifications applied to real
 * message bytes in a temporary file.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "filters/filter.h"
#include "lib/buf.h"

static char tmpdir[64];

static int
setup(void **state)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_filter_mods.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int
teardown(void **state)
{
    char path[128];

    snprintf(path, sizeof(path), "%s/msg", tmpdir);
    unlink(path);
    return rmdir(tmpdir);
}

/* Write bytes to tmpdir/msg after `pad` bytes of junk; returns an fd. */
static int
msg_file(const void *p, size_t n, size_t pad)
{
    char path[128];
    int fd;
    char junk[64];

    memset(junk, '#', sizeof(junk));
    snprintf(path, sizeof(path), "%s/msg", tmpdir);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_true(pad <= sizeof(junk));
    assert_int_equal(write(fd, junk, pad), (ssize_t) pad);
    assert_int_equal(write(fd, p, n), (ssize_t) n);
    assert_int_equal(write(fd, junk, 7), 7); /* after the region */
    return fd;
}

struct sink {
    struct buf *b;
    size_t calls, maxn;
    int fail_after; /* fail the n-th call (1-based), 0 never */
};

static int
sink_out(void *arg, const void *p, size_t n)
{
    struct sink *s = arg;

    s->calls++;
    if (n > s->maxn)
        s->maxn = n;
    if (s->fail_after && (int) s->calls == s->fail_after) {
        errno = ENOSPC;
        return -1;
    }
    return buf_append(s->b, p, n);
}

/* Rewrite msg with mods; returns the output (caller frees) or NULL. */
static struct buf *
rewrite(const char *msg, const struct filter_mod *mods)
{
    struct sink s = {buf_new(1024, BUF_NOCAP), 0, 0, 0};
    size_t n = strlen(msg);
    int fd = msg_file(msg, n, 5);
    int r = filter_mods_rewrite(mods, fd, 5, (off_t) n, sink_out, &s);

    close(fd);
    if (r < 0) {
        buf_free(s.b);
        return NULL;
    }
    return s.b;
}

/* filter_mods_new_head() agrees with the rewrite (want, wlen bytes): for
 * every read limit, the new head followed by the message past *old_len is
 * want, or the answer is 1 (always with a body replacement; never when
 * the limit covers the message). */
static void
check_head(const char *msg, size_t n, const struct filter_mod *mods,
           const char *want, size_t wlen)
{
    size_t big[] = {1, 2, 3, 64, 1024, 65536, n / 2, n - 1, n, n + 1};
    size_t nmax = n <= 2048 ? n + 1 : sizeof(big) / sizeof(big[0]), k;
    const struct filter_mod *m;
    int replace = 0, fd = msg_file(msg, n, 5);

    for (m = mods; m; m = m->next)
        if (m->type == FILTER_MOD_REPLACE_BODY)
            replace = 1;
    for (k = 0; k < nmax; k++) {
        size_t max = n <= 2048 ? k + 1 : big[k], old = (size_t) -1;
        struct buf *b = buf_new(256, BUF_NOCAP);
        int rc = filter_mods_new_head(mods, fd, 5, (off_t) n, max, b, &old);

        if (replace || (rc != 0 && max < n))
            assert_int_equal(rc, 1);
        else
            assert_int_equal(rc, 0);
        if (rc == 0) {
            assert_true(old <= n);
            assert_int_equal(buf_len(b) + (n - old), wlen);
            assert_memory_equal(buf_data(b), want, buf_len(b));
            assert_memory_equal(want + buf_len(b), msg + old, n - old);
        }
        buf_free(b);
    }
    close(fd);
}

static void
check(const char *msg, const struct filter_mod *mods, const char *want)
{
    struct buf *b = rewrite(msg, mods);

    assert_non_null(b);
    assert_string_equal(buf_data(b), want);
    buf_free(b);
    check_head(msg, strlen(msg), mods, want, strlen(want));
}

static struct filter_mod *
mod(enum filter_mod_type t, const char *name, const char *value, int index,
    struct filter_mod *next)
{
    struct filter_mod *m =
        filter_mod_new(t, name, value, value ? strlen(value) : 0, index, NULL);

    m->next = next;
    return m;
}

static const char msg1[] = "Received: from a by b\r\n"
                           "\tid 1\r\n"
                           "Subject: a folded\r\n"
                           " subject line\r\n"
                           "received: from c by d\r\n"
                           "From: <s@example.org>\r\n"
                           "\r\n"
                           "Body line 1\r\n"
                           "Subject: not a header\r\n";

static void
test_no_mods(void **state)
{
    struct filter_mod *m = filter_mod_new(FILTER_MOD_ADD_RCPT, NULL, "r@x.org",
                                          7, 0, "NOTIFY=NEVER");

    check(msg1, NULL, msg1);
    check(msg1, m, msg1); /* envelope mods are ignored */
    assert_false(filter_mods_have_content(m));
    assert_false(filter_mods_have_content(NULL));
    filter_mods_free(m);
    filter_mods_free(NULL);
}

/* Insertions at the top: the bytes for the in-place prepend are exactly
 * what the rewrite puts in front; anything else needs the rewrite. */
static void
test_top_bytes(void **state)
{
    struct filter_mod *m = mod(
        FILTER_MOD_INSERT_HEADER, "X-Virus-Scanned", " ClamAV at mx; clean", 0,
        mod(FILTER_MOD_ADD_RCPT, NULL, "r@x.org", 0,
            mod(FILTER_MOD_INSERT_HEADER, "X-Two", "folded\nvalue", 0, NULL)));
    struct buf *top = buf_new(64, BUF_NOCAP), *rw = rewrite(msg1, m);

    assert_int_equal(filter_mods_top_bytes(m, top), 0);
    assert_string_equal(buf_data(top),
                        "X-Two: folded\r\n\tvalue\r\n"
                        "X-Virus-Scanned: ClamAV at mx; clean\r\n");
    buf_append(top, msg1, strlen(msg1));
    assert_non_null(rw);
    assert_string_equal(buf_data(top), buf_data(rw));
    buf_free(rw);
    filter_mods_free(m);

    buf_reset(top); /* not at the top, or not a header insertion: no */
    m = mod(FILTER_MOD_INSERT_HEADER, "X-A", "1", 1, NULL);
    assert_int_equal(filter_mods_top_bytes(m, top), -1);
    filter_mods_free(m);
    m = mod(FILTER_MOD_INSERT_HEADER, "X-A", "1", 0,
            mod(FILTER_MOD_ADD_HEADER, "X-B", "2", 0, NULL));
    assert_int_equal(filter_mods_top_bytes(m, top), -1);
    filter_mods_free(m);
    m = mod(FILTER_MOD_INSERT_HEADER, "Bad Name", "1", 0, NULL);
    assert_int_equal(filter_mods_top_bytes(m, top), -1);
    filter_mods_free(m);
    buf_free(top);
}

static void
test_mod_new(void **state)
{
    struct filter_mod *m =
        filter_mod_new(FILTER_MOD_REPLACE_BODY, NULL, "a\0b", 3, 0, NULL);

    assert_int_equal(m->len, 3);
    assert_memory_equal(m->value, "a\0b", 3);
    assert_null(m->name);
    assert_null(m->next);
    assert_true(filter_mods_have_content(m));
    filter_mods_free(m);
    m = filter_mod_new(FILTER_MOD_CHANGE_HEADER, "Subject", NULL, 0, 2, NULL);
    assert_null(m->value);
    assert_string_equal(m->name, "Subject");
    assert_int_equal(m->index, 2);
    filter_mods_free(m);
    m = filter_mod_new(FILTER_MOD_CHANGE_SENDER, NULL, "s@x.org", 7, 0,
                       "BODY=8BITMIME");
    assert_string_equal(m->args, "BODY=8BITMIME");
    assert_string_equal(m->value, "s@x.org");
    filter_mods_free(m);
}

static void
test_add_header(void **state)
{
    struct filter_mod *m =
        mod(FILTER_MOD_ADD_HEADER, "X-Spam", "yes", 0,
            mod(FILTER_MOD_ADD_HEADER, "X-Folded", "a\nb\r\n c\n", 0,
                mod(FILTER_MOD_ADD_HEADER, "X-Sp", " spaced", 0,
                    mod(FILTER_MOD_ADD_HEADER, "X-Empty", "", 0, NULL))));

    check(msg1, m,
          "Received: from a by b\r\n"
          "\tid 1\r\n"
          "Subject: a folded\r\n"
          " subject line\r\n"
          "received: from c by d\r\n"
          "From: <s@example.org>\r\n"
          "X-Spam: yes\r\n"
          "X-Folded: a\r\n\tb\r\n c\r\n"
          "X-Sp: spaced\r\n"
          "X-Empty: \r\n"
          "\r\n"
          "Body line 1\r\n"
          "Subject: not a header\r\n");
    assert_true(filter_mods_have_content(m));
    filter_mods_free(m);
}

static void
test_insert_header(void **state)
{
    struct filter_mod *m =
        mod(FILTER_MOD_INSERT_HEADER, "X-Top", "0", 0,
            mod(FILTER_MOD_INSERT_HEADER, "X-Two", "2", 2,
                mod(FILTER_MOD_INSERT_HEADER, "X-End", "99", 99, NULL)));

    check("A: 1\r\nB: 2\r\n\r\nbody\r\n", m,
          "X-Top: 0\r\nA: 1\r\nX-Two: 2\r\nB: 2\r\nX-End: 99\r\n\r\nbody\r\n");
    filter_mods_free(m);
}

static void
test_change_header(void **state)
{
    /* second "Received" case-insensitively; delete the folded Subject;
     * change of a missing occurrence adds */
    struct filter_mod *m =
        mod(FILTER_MOD_CHANGE_HEADER, "RECEIVED", "from x by y", 2,
            mod(FILTER_MOD_CHANGE_HEADER, "subject", NULL, 1,
                mod(FILTER_MOD_CHANGE_HEADER, "X-New", "n", 3,
                    mod(FILTER_MOD_CHANGE_HEADER, "X-Gone", NULL, 1, NULL))));

    check(msg1, m,
          "Received: from a by b\r\n"
          "\tid 1\r\n"
          "RECEIVED: from x by y\r\n"
          "From: <s@example.org>\r\n"
          "X-New: n\r\n"
          "\r\n"
          "Body line 1\r\n"
          "Subject: not a header\r\n");
    filter_mods_free(m);

    /* index 0 acts as 1; mods apply in list order */
    m = mod(FILTER_MOD_CHANGE_HEADER, "From", "<t@example.org>", 0,
            mod(FILTER_MOD_INSERT_HEADER, "X-I", "i", 1,
                mod(FILTER_MOD_CHANGE_HEADER, "Received", NULL, 1,
                    mod(FILTER_MOD_CHANGE_HEADER, "Received", NULL, 1, NULL))));
    check(msg1, m,
          "X-I: i\r\n"
          "Subject: a folded\r\n"
          " subject line\r\n"
          "From: <t@example.org>\r\n"
          "\r\n"
          "Body line 1\r\n"
          "Subject: not a header\r\n");
    filter_mods_free(m);
}

static void
test_replace_body(void **state)
{
    struct filter_mod *m =
        mod(FILTER_MOD_REPLACE_BODY, NULL, "line1\nli", 0,
            mod(FILTER_MOD_ADD_HEADER, "X-R", "1", 0,
                mod(FILTER_MOD_REPLACE_BODY, NULL, "ne2\r", 0,
                    mod(FILTER_MOD_REPLACE_BODY, NULL, "\nlast\n", 0, NULL))));

    check("A: 1\r\n\r\nold body\r\nmore\r\n", m,
          "A: 1\r\nX-R: 1\r\n\r\nline1\r\nline2\r\nlast\r\n");
    /* a message without separator gets one before the new body */
    check("A: 1\r\n", m, "A: 1\r\nX-R: 1\r\n\r\nline1\r\nline2\r\nlast\r\n");
    check("A: 1", m, "A: 1\r\nX-R: 1\r\n\r\nline1\r\nline2\r\nlast\r\n");
    filter_mods_free(m);
    m = mod(FILTER_MOD_REPLACE_BODY, NULL, "new\n", 0, NULL);
    check("A: 1", m, "A: 1\r\n\r\nnew\r\n");
    check("A: 1\r\nnot a header\r\n", m, "A: 1\r\n\r\nnew\r\n");
    filter_mods_free(m);

    /* a large replacement body, LF only */
    size_t n = 300000, i;
    char *big = malloc(n);
    for (i = 0; i < n; i++)
        big[i] = i % 50 == 49 ? '\n' : 'x';
    m = filter_mod_new(FILTER_MOD_REPLACE_BODY, NULL, big, n, 0, NULL);
    struct buf *b = rewrite("A: 1\r\n\r\nold\r\n", m);
    assert_non_null(b);
    assert_int_equal(buf_len(b), 8 + n + n / 50);
    assert_memory_equal(buf_data(b) + 8, "xxx", 3);
    assert_memory_equal(buf_data(b) + 8 + 49, "\r\nxxx", 5);
    assert_memory_equal(buf_data(b) + buf_len(b) - 2, "\r\n", 2);
    buf_free(b);
    filter_mods_free(m);
    free(big);
}

static void
test_no_body(void **state)
{
    struct filter_mod *m = mod(FILTER_MOD_ADD_HEADER, "X-A", "1", 0, NULL);

    /* header and separator, no body */
    check("Subject: x\r\n\r\n", m, "Subject: x\r\nX-A: 1\r\n\r\n");
    /* no separator at all */
    check("Subject: x\r\n", m, "Subject: x\r\nX-A: 1\r\n");
    /* last line without line end */
    check("Subject: x", m, "Subject: x\r\nX-A: 1\r\n");
    check("Subject: x", NULL, "Subject: x"); /* unchanged without mods */
    /* a non-header line ends the header and starts the body */
    check("Subject: x\r\nthis is body\r\n", m,
          "Subject: x\r\nX-A: 1\r\nthis is body\r\n");
    check("Subject: x\r\n: empty name\r\n", m,
          "Subject: x\r\nX-A: 1\r\n: empty name\r\n");
    /* no header at all */
    check("just body\r\n", m, "X-A: 1\r\njust body\r\n");
    check("", m, "X-A: 1\r\n");
    /* blank before the colon is still a header (Postfix) */
    check("Subject : x\r\n\r\nb\r\n", m, "Subject : x\r\nX-A: 1\r\n\r\nb\r\n");
    /* bare LF separator is kept as it was */
    check("A: 1\n\nb\n", m, "A: 1\nX-A: 1\r\n\nb\n");
    filter_mods_free(m);
}

static void
test_errors(void **state)
{
    struct filter_mod *m = mod(FILTER_MOD_ADD_HEADER, "Bad Name", "1", 0, NULL);
    struct sink s = {buf_new(64, BUF_NOCAP), 0, 0, 0};
    int fd;

    /* a header name with a blank is refused, not written */
    errno = 0;
    assert_null(rewrite(msg1, m));
    fd = msg_file(msg1, strlen(msg1), 0);
    size_t old;
    errno = 0;
    assert_int_equal(
        filter_mods_new_head(m, fd, 0, (off_t) strlen(msg1), 65536, s.b, &old),
        -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(buf_len(s.b), 0);
    close(fd);
    filter_mods_free(m);
    m = mod(FILTER_MOD_INSERT_HEADER, "X:Y", "1", 0, NULL);
    assert_null(rewrite(msg1, m));
    filter_mods_free(m);

    /* region longer than the file */
    fd = msg_file(msg1, strlen(msg1), 0);
    errno = 0;
    assert_int_equal(filter_mods_rewrite(NULL, fd, 0, 100000, sink_out, &s),
                     -1);
    assert_int_equal(errno, EIO);
    /* bad fd */
    assert_int_equal(filter_mods_rewrite(NULL, -1, 0, 10, sink_out, &s), -1);
    assert_int_equal(errno, EBADF);
    /* out() failure is passed on */
    buf_reset(s.b);
    s.calls = 0;
    s.fail_after = 2;
    assert_int_equal(
        filter_mods_rewrite(NULL, fd, 0, (off_t) strlen(msg1), sink_out, &s),
        -1);
    assert_int_equal(errno, ENOSPC);
    close(fd);
    buf_free(s.b);
}

/* Several MB of body stream through in bounded pieces. */
static void
test_large_body(void **state)
{
    const char *hdr = "Subject: big\r\n\r\n";
    size_t hl = strlen(hdr), n = 5 * 1024 * 1024 + 123, i;
    char *msg = malloc(hl + n);
    struct sink s = {buf_new(1024, BUF_NOCAP), 0, 0, 0};
    struct filter_mod *m = mod(FILTER_MOD_ADD_HEADER, "X-A", "1", 0, NULL);
    int fd;

    memcpy(msg, hdr, hl);
    for (i = 0; i < n; i++)
        msg[hl + i] = i % 80 == 78 ? '\r' : i % 80 == 79 ? '\n' : 'a' + i % 26;
    fd = msg_file(msg, hl + n, 3);
    assert_int_equal(
        filter_mods_rewrite(m, fd, 3, (off_t) (hl + n), sink_out, &s), 0);
    close(fd);
    assert_int_equal(buf_len(s.b), hl + n + 8);
    assert_memory_equal(buf_data(s.b), "Subject: big\r\nX-A: 1\r\n\r\n", 24);
    assert_memory_equal(buf_data(s.b) + 24, msg + hl, n);
    assert_true(s.maxn <= 64 * 1024); /* never the whole body at once */
    assert_true(s.calls > 80);
    /* the head alone, from the first 64 KB */
    check_head(msg, hl + n, m, buf_data(s.b), buf_len(s.b));
    buf_free(s.b);
    filter_mods_free(m);
    free(msg);
}

/* A header over 1 MB: the rest is body, nothing lost. */
static void
test_huge_header(void **state)
{
    struct buf *msg = buf_new(1024, BUF_NOCAP), *out;
    struct filter_mod *m = mod(FILTER_MOD_ADD_HEADER, "X-A", "1", 0, NULL);
    size_t i, at;
    char *p;

    for (i = 0; buf_len(msg) < 1200 * 1024; i++)
        buf_printf(msg, "X-Field-%zu: %0100zu\r\n", i, i);
    buf_puts(msg, "\r\nbody\r\n");
    out = rewrite(buf_data(msg), NULL);
    assert_non_null(out);
    assert_int_equal(buf_len(out), buf_len(msg));
    assert_memory_equal(buf_data(out), buf_data(msg), buf_len(msg));
    buf_free(out);

    out = rewrite(buf_data(msg), m);
    assert_non_null(out);
    assert_int_equal(buf_len(out), buf_len(msg) + 8);
    /* in place only when the limit covers it all */
    check_head(buf_data(msg), buf_len(msg), m, buf_data(out), buf_len(out));
    p = memmem(buf_data(out), buf_len(out), "X-A: 1\r\n", 8);
    assert_non_null(p);
    at = (size_t) (p - buf_data(out));
    assert_true(at >= 1024 * 1024 - 200 && at <= 1024 * 1024 + 200);
    assert_memory_equal(p - 2, "\r\nX-A: 1\r\nX-Field-", 18);
    buf_free(out);

    /* one endless line: all body */
    buf_reset(msg);
    buf_puts(msg, "X-Long: ");
    for (i = 0; i < 1100 * 1024; i++)
        buf_putc(msg, 'a');
    buf_puts(msg, "\r\n\r\nb\r\n");
    out = rewrite(buf_data(msg), m);
    assert_non_null(out);
    assert_int_equal(buf_len(out), buf_len(msg) + 8);
    assert_memory_equal(buf_data(out), "X-A: 1\r\nX-Long: aaa", 19);
    buf_free(out);
    buf_free(msg);
    filter_mods_free(m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_no_mods, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mod_new, setup, teardown),
        cmocka_unit_test_setup_teardown(test_top_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_add_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_insert_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_change_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_huge_header, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
